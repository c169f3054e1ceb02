/* Exercises timerfd_create, timerfd_settime, timerfd_gettime and read of the
 * expiration count of a periodic 2 ms timer. */
#include <err.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/timerfd.h>
#include <unistd.h>

int main(void)
{
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    if (fd < 0)
        err(1, "timerfd_create");
    struct itimerspec its = {
        .it_value = { .tv_sec = 0, .tv_nsec = 2000000 },
        .it_interval = { .tv_sec = 0, .tv_nsec = 2000000 },
    };
    if (timerfd_settime(fd, 0, &its, NULL) != 0)
        err(1, "timerfd_settime");
    uint64_t total = 0;
    for (int i = 0; i < 5; i++) {
        uint64_t expirations;
        if (read(fd, &expirations, sizeof expirations) != (ssize_t)sizeof expirations)
            err(1, "read timerfd");
        total += expirations;
        struct itimerspec cur;
        if (timerfd_gettime(fd, &cur) != 0)
            err(1, "timerfd_gettime");
        printf("timerfd read %d expirations %llu remaining_ns %ld\n", i,
               (unsigned long long)expirations, cur.it_value.tv_nsec);
    }
    printf("timerfd total expirations %llu\n", (unsigned long long)total);
    close(fd);
    return 0;
}
