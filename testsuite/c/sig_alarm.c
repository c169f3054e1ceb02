// alarm(1): the SIGALRM handler sets a flag while the main loop makes syscalls (clock_gettime,
// getppid). Prints how many iterations ran before the handler fired and how long that took; both
// differ between native runs, and a misplaced signal changes them at replay.
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t fired;

static void on_alarm(int sig) {
    (void)sig;
    fired = 1;
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
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    unsigned left = alarm(1);
    long iterations = 0;
    while (!fired) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (iterations % 64 == 0)
            getppid();
        iterations++;
    }
    long ns = (now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec);
    printf("previous alarm %u\n", left);
    printf("iterations before SIGALRM %ld\n", iterations);
    printf("elapsed ns %ld\n", ns);
    printf("last clock %ld.%09ld\n", (long)now.tv_sec, now.tv_nsec);
    return 0;
}
