// Real-time signals (SIGRTMIN = 34 and up).
// Part 1: SIGRTMIN and SIGRTMIN+1 blocked; sigqueue() queues SIGRTMIN+1 (value 100) and then
// SIGRTMIN three times (values 1, 2, 3); all four stay pending (real-time signals queue, they are
// not merged). Unblocking them runs an SA_SIGINFO handler four times, each with its si_value,
// si_code SI_QUEUE and si_pid. The handler makes no syscall; its log is printed after a later
// syscall (where exactly it runs is not the point). The order: with argv[1] "masked" the handler
// blocks both signals, so the kernel delivers lowest number first and each signal's instances in
// the order they were sent (SIGRTMIN 1, 2, 3, then SIGRTMIN+1); with "nested" it blocks nothing,
// so SIGRTMIN+1 interrupts the first SIGRTMIN handler before it runs (SIGRTMIN+1 first).
// Part 2: a child with the default action for SIGRTMIN+2 waits in pause(); the parent sends it
// SIGRTMIN+2 and reads the signal number from waitpid's status. The pid and the time printed
// differ natively.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_SEEN 8

static volatile sig_atomic_t seen;
static int seen_signo[MAX_SEEN], seen_value[MAX_SEEN], seen_code[MAX_SEEN], seen_pid[MAX_SEEN];

static void on_rt(int sig, siginfo_t *si, void *ctx) {
    (void)ctx;
    int i = seen;
    if (i < MAX_SEEN) {
        seen_signo[i] = sig;
        seen_value[i] = si->si_value.sival_int;
        seen_code[i] = si->si_code;
        seen_pid[i] = si->si_pid;
    }
    seen = i + 1;
}

static const char *rt_name(int sig) {
    if (sig == SIGRTMIN)
        return "SIGRTMIN";
    if (sig == SIGRTMIN + 1)
        return "SIGRTMIN+1";
    return "other";
}

int main(int argc, char **argv) {
    int masked = argc > 1 && strcmp(argv[1], "masked") == 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa = {0};
    sa.sa_sigaction = on_rt;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (masked) {
        sigaddset(&sa.sa_mask, SIGRTMIN);
        sigaddset(&sa.sa_mask, SIGRTMIN + 1);
    }
    if (sigaction(SIGRTMIN, &sa, NULL) != 0 || sigaction(SIGRTMIN + 1, &sa, NULL) != 0) {
        perror("sigaction");
        return 1;
    }
    sigset_t rt, pending;
    sigemptyset(&rt);
    sigaddset(&rt, SIGRTMIN);
    sigaddset(&rt, SIGRTMIN + 1);
    if (sigprocmask(SIG_BLOCK, &rt, NULL) != 0) {
        perror("sigprocmask");
        return 1;
    }
    union sigval v;
    v.sival_int = 100;
    if (sigqueue(getpid(), SIGRTMIN + 1, v) != 0) {
        perror("sigqueue");
        return 1;
    }
    for (int i = 1; i <= 3; i++) {
        v.sival_int = i;
        if (sigqueue(getpid(), SIGRTMIN, v) != 0) {
            perror("sigqueue");
            return 1;
        }
    }
    sigpending(&pending);
    printf("SIGRTMIN is %d, pending SIGRTMIN %d SIGRTMIN+1 %d, handled while blocked %d\n", SIGRTMIN,
           sigismember(&pending, SIGRTMIN), sigismember(&pending, SIGRTMIN + 1), (int)seen);
    sigprocmask(SIG_UNBLOCK, &rt, NULL);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    usleep(1000);
    printf("handled %d\n", (int)seen);
    for (int i = 0; i < seen && i < MAX_SEEN; i++)
        printf("handler %d: %s value %d si_code %s si_pid is getpid %d\n", i, rt_name(seen_signo[i]), seen_value[i],
               seen_code[i] == SI_QUEUE ? "SI_QUEUE" : "other", seen_pid[i] == getpid());
    printf("pid %d clock %ld.%09ld\n", (int)getpid(), (long)now.tv_sec, now.tv_nsec);

    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        for (;;)
            pause();
    }
    kill(child, SIGRTMIN + 2);
    int status;
    if (waitpid(child, &status, 0) != child) {
        perror("waitpid");
        return 1;
    }
    printf("child signaled %d by signal %d (SIGRTMIN+2 is %d)\n", WIFSIGNALED(status),
           WIFSIGNALED(status) ? WTERMSIG(status) : 0, SIGRTMIN + 2);
    return 0;
}
