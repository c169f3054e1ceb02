// A POSIX timer armed for an absolute time 30 ms ahead, its SIGUSR2 caught by a handler, while
// the program sleeps 1 ms at a time until it fires. A log cut after the arming and continued
// later makes the timer when that time has passed: it fires at once, while going live still
// injects syscalls into the process (a signal must not stop them). Gives up after 5 s.
#include <signal.h>
#include <stdio.h>
#include <time.h>

static volatile sig_atomic_t fired;

static void on_timer(int sig) {
    (void)sig;
    fired++;
}

int main(void) {
    struct sigaction sa = {0};
    sa.sa_handler = on_timer;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR2, &sa, NULL) != 0) {
        perror("sigaction");
        return 1;
    }
    struct sigevent sev = {0};
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGUSR2;
    timer_t timer;
    if (timer_create(CLOCK_MONOTONIC, &sev, &timer) != 0) {
        perror("timer_create");
        return 1;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ns = now.tv_nsec + 30000000;
    struct itimerspec at = {{0, 0}, {now.tv_sec + ns / 1000000000, ns % 1000000000}};
    if (timer_settime(timer, TIMER_ABSTIME, &at, NULL) != 0) {
        perror("timer_settime");
        return 1;
    }
    for (int i = 0; i < 5000 && !fired; i++) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    printf("fired %d\n", (int)fired);
    return fired == 1 ? 0 : 1;
}
