/* A caught SIGALRM ends a loop that spins without syscalls on a flag its handler sets
 * (`while (!flag);`): natively the signal interrupts the spin; ftexec must deliver it into the
 * spinning thread at a recorded point. Three rounds with setitimer; each prints when (in
 * clock reads) the handler ran, so runs differ natively. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static volatile sig_atomic_t flag;
static volatile long handled_at;

static void on_alarm(int sig) {
    (void)sig;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    handled_at = ts.tv_nsec;
    flag = 1;
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    for (int round = 0; round < 3; round++) {
        flag = 0;
        struct itimerval it = {{0, 0}, {0, 30000}};
        setitimer(ITIMER_REAL, &it, NULL);
        while (!flag)
            ;
        printf("round %d handled at %ld\n", round, handled_at);
    }
    return 0;
}
