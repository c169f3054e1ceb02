// timer_create(CLOCK_MONOTONIC, SIGEV_SIGNAL) + timer_settime every 20 ms, 5 firings; the
// handler counts and notes the main loop's iteration counter at each firing. The signal is
// argv[1] ("usr2" or "rtmin"; default usr2).
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define FIRINGS 5

static volatile sig_atomic_t count;
static volatile long iterations;
static long at_firing[FIRINGS];

static void on_timer(int sig) {
    (void)sig;
    if (count < FIRINGS)
        at_firing[count] = iterations;
    count++;
}

int main(int argc, char **argv) {
    int signo = (argc > 1 && strcmp(argv[1], "rtmin") == 0) ? SIGRTMIN : SIGUSR2;
    struct sigaction sa = {0};
    sa.sa_handler = on_timer;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(signo, &sa, NULL) != 0) {
        perror("sigaction");
        return 1;
    }
    struct sigevent sev = {0};
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = signo;
    timer_t timer;
    if (timer_create(CLOCK_MONOTONIC, &sev, &timer) != 0) {
        perror("timer_create");
        return 1;
    }
    struct itimerspec its = {{0, 20000000}, {0, 20000000}};
    if (timer_settime(timer, 0, &its, NULL) != 0) {
        perror("timer_settime");
        return 1;
    }
    struct timespec now;
    while (count < FIRINGS) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        iterations++;
    }
    timer_delete(timer);
    printf("signal %s\n", signo == SIGUSR2 ? "SIGUSR2" : "SIGRTMIN");
    printf("handler count %d\n", (int)count);
    for (int i = 0; i < FIRINGS; i++)
        printf("firing %d at iteration %ld\n", i, at_firing[i]);
    printf("iterations %ld\n", iterations);
    printf("last clock %ld.%09ld\n", (long)now.tv_sec, now.tv_nsec);
    return 0;
}
