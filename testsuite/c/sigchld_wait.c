// A child exits with status 3; the parent, which catches SIGCHLD with SA_SIGINFO, sleeps 1 ms at
// a time until its handler has run, then reaps the child with waitpid(child, 0). Prints what the
// handler saw (count, si_code, si_status, whether si_pid is the child's) and what waitpid got.
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t got, code, status, from;

static void on_chld(int sig, siginfo_t *si, void *ctx) {
    (void)sig;
    (void)ctx;
    got++;
    code = si->si_code;
    status = si->si_status;
    from = si->si_pid;
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_chld;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGCHLD, &sa, NULL) != 0) {
        perror("sigaction");
        return 1;
    }
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0)
        _exit(3);
    int naps = 0;
    while (!got) {
        struct timespec ms = { 0, 1000000 };
        nanosleep(&ms, NULL);
        if (++naps == 10000) {
            printf("no SIGCHLD after 10 s\n");
            return 1;
        }
    }
    int st = 0;
    pid_t r = waitpid(child, &st, 0);
    printf("sigchld %d: si_code %d si_status %d from the child %d\n", (int)got, (int)code, (int)status,
           (pid_t)from == child);
    printf("waitpid reaped the child %d, exit status %d\n", r == child, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return 0;
}
