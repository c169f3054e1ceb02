/* Exercises eventfd: counter mode and EFD_SEMAPHORE mode, and a non-blocking
 * read of an empty eventfd (EAGAIN). */
#include <err.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <unistd.h>

int main(void)
{
    int fd = eventfd(3, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        err(1, "eventfd");
    if (eventfd_write(fd, 4) != 0)
        err(1, "eventfd_write");
    eventfd_t v;
    if (eventfd_read(fd, &v) != 0)
        err(1, "eventfd_read");
    printf("eventfd counter read %llu\n", (unsigned long long)v);
    errno = 0;
    int rc = eventfd_read(fd, &v);
    printf("eventfd empty read rc %d errno_is_eagain %d\n", rc, errno == EAGAIN);
    close(fd);

    int sem = eventfd(2, EFD_CLOEXEC | EFD_SEMAPHORE);
    if (sem < 0)
        err(1, "eventfd semaphore");
    for (int i = 0; i < 2; i++) {
        uint64_t x;
        if (read(sem, &x, sizeof x) != (ssize_t)sizeof x)
            err(1, "read semaphore");
        printf("eventfd semaphore read %d value %llu\n", i, (unsigned long long)x);
    }
    close(sem);
    return 0;
}
