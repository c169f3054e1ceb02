// setitimer(ITIMER_REAL) every 20 ms, 5 firings; the handler counts them and notes the main
// loop's iteration counter at each firing (the placement of every signal).
#include <signal.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

#define FIRINGS 5

static volatile sig_atomic_t count;
static volatile long iterations;
static long at_firing[FIRINGS];

static void on_alarm(int sig) {
    (void)sig;
    if (count < FIRINGS)
        at_firing[count] = iterations;
    count++;
}

int main(void) {
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGALRM, &sa, NULL) != 0) {
        perror("sigaction");
        return 1;
    }
    struct itimerval it = {{0, 20000}, {0, 20000}};
    if (setitimer(ITIMER_REAL, &it, NULL) != 0) {
        perror("setitimer");
        return 1;
    }
    struct timespec now;
    while (count < FIRINGS) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        iterations++;
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    printf("handler count %d\n", (int)count);
    for (int i = 0; i < FIRINGS; i++)
        printf("firing %d at iteration %ld\n", i, at_firing[i]);
    printf("iterations %ld\n", iterations);
    printf("last clock %ld.%09ld\n", (long)now.tv_sec, now.tv_nsec);
    return 0;
}
