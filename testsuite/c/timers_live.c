// Timers that a replica going live must make again (replay runs none of their syscalls): a
// periodic timerfd watched by epoll (5 ticks), a one-shot absolute timerfd, and POSIX timers:
// one created and deleted, then a one-shot one whose SIGUSR1 (value 42) sigtimedwait takes,
// then one more, whose id must follow the recording's. Each wait gives up after 5 s with a
// "silent" line and status 1: a timer that was not armed again must not hang a test.
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static int fail(const char *what) {
    perror(what);
    return 1;
}

int main(void) {
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (tfd < 0)
        return fail("timerfd_create");
    struct itimerspec every = {{0, 20000000}, {0, 20000000}};
    if (timerfd_settime(tfd, 0, &every, NULL) != 0)
        return fail("timerfd_settime");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 7};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev) != 0)
        return fail("epoll");
    int ticks = 0;
    while (ticks < 5) {
        struct epoll_event got[4];
        int n = epoll_wait(ep, got, 4, 5000);
        if (n == 0) {
            printf("periodic timerfd silent after %d ticks\n", ticks);
            return 1;
        }
        if (n < 0)
            return fail("epoll_wait");
        uint64_t expirations;
        if (got[0].data.u64 == 7 && read(tfd, &expirations, sizeof expirations) == sizeof expirations)
            ticks++;
    }
    struct itimerspec off = {{0, 0}, {0, 0}};
    timerfd_settime(tfd, 0, &off, NULL);
    printf("periodic timerfd ticks %d\n", ticks);

    int once = timerfd_create(CLOCK_MONOTONIC, 0);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ns = now.tv_nsec + 30000000;
    struct itimerspec at = {{0, 0}, {now.tv_sec + ns / 1000000000, ns % 1000000000}};
    if (once < 0 || timerfd_settime(once, TFD_TIMER_ABSTIME, &at, NULL) != 0)
        return fail("one-shot timerfd");
    struct pollfd p = {.fd = once, .events = POLLIN};
    if (poll(&p, 1, 5000) != 1) {
        printf("one-shot timerfd silent\n");
        return 1;
    }
    uint64_t expirations = 0;
    if (read(once, &expirations, sizeof expirations) != sizeof expirations)
        return fail("read one-shot timerfd");
    printf("one-shot timerfd expirations %llu\n", (unsigned long long)expirations);

    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, NULL);
    struct sigevent sev = {0};
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGUSR1;
    sev.sigev_value.sival_int = 42;
    timer_t first, timer, next;
    if (timer_create(CLOCK_MONOTONIC, &sev, &first) != 0 || timer_delete(first) != 0)
        return fail("first timer");
    if (timer_create(CLOCK_MONOTONIC, &sev, &timer) != 0)
        return fail("timer_create");
    printf("posix timer id %ld\n", (long)(intptr_t)timer);
    struct itimerspec in40ms = {{0, 0}, {0, 40000000}};
    if (timer_settime(timer, 0, &in40ms, NULL) != 0)
        return fail("timer_settime");
    siginfo_t info;
    struct timespec patience = {5, 0};
    if (sigtimedwait(&usr1, &info, &patience) != SIGUSR1) {
        printf("posix timer silent\n");
        return 1;
    }
    printf("posix timer signal value %d\n", info.si_value.sival_int);
    if (timer_create(CLOCK_MONOTONIC, &sev, &next) != 0)
        return fail("next timer_create");
    printf("posix timer next id %ld\n", (long)(intptr_t)next);
    return 0;
}
