/* Job control on a sleeping child: the parent stops it with SIGSTOP in the middle of a 300 ms
 * nanosleep and continues it with SIGCONT. Round 1, no handler: the kernel resumes the sleep
 * through restart_syscall and nanosleep returns 0 after the whole time. Round 2, a SIGCONT
 * handler without SA_RESTART: nanosleep fails with EINTR and reports the time left. The parent
 * sees both job-control changes with waitpid(WUNTRACED | WCONTINUED). The times differ natively;
 * the time left is written by the kernel's restart_syscall, which the recording must capture. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t conts;

static void on_cont(int sig) {
    (void)sig;
    conts++;
}

static long ms_since(const struct timespec *t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

static void child(int round, int ready) {
    if (round == 2) {
        struct sigaction sa = {0};
        sa.sa_handler = on_cont;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGCONT, &sa, NULL);
    }
    struct timespec t0, d = {0, 300000000}, rem = {0, 0};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (write(ready, "r", 1) != 1)
        _exit(9);
    int r = nanosleep(&d, &rem);
    int e = errno;
    long took = ms_since(&t0);
    /* Stay a while, so the parent's waitpid(WCONTINUED) comes before this child's exit. */
    struct timespec stay = {0, 300000000};
    nanosleep(&stay, NULL);
    if (r == 0)
        printf("round %d: nanosleep returned 0 after %ld ms (at least 300: %s), handler %d\n", round, took,
               took >= 300 ? "yes" : "no", (int)conts);
    else
        printf("round %d: nanosleep returned -1 %s after %ld ms, %ld ms left (some: %s), handler %d\n", round,
               e == EINTR ? "EINTR" : strerror(e), took, rem.tv_nsec / 1000000,
               rem.tv_sec > 0 || rem.tv_nsec > 0 ? "yes" : "no", (int)conts);
    fflush(stdout);
    _exit(round);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    for (int round = 1; round <= 2; round++) {
        int ready[2];
        if (pipe(ready) != 0)
            return 1;
        pid_t c = fork();
        if (c == 0)
            child(round, ready[1]);
        /* The child is about to sleep: the signals come 80 and 160 ms into its sleep. */
        char b;
        if (read(ready[0], &b, 1) != 1)
            return 1;
        close(ready[0]);
        close(ready[1]);
        struct timespec d = {0, 80000000};
        nanosleep(&d, NULL);
        kill(c, SIGSTOP);
        int st;
        pid_t w = waitpid(c, &st, WUNTRACED);
        printf("round %d: waitpid %s, stopped by %s\n", round, w == c ? "found the child" : "failed",
               WIFSTOPPED(st) && WSTOPSIG(st) == SIGSTOP ? "SIGSTOP" : "something else");
        nanosleep(&d, NULL);
        kill(c, SIGCONT);
        w = waitpid(c, &st, WCONTINUED);
        printf("round %d: waitpid %s, continued: %s\n", round, w == c ? "found the child" : "failed",
               WIFCONTINUED(st) ? "yes" : "no");
        w = waitpid(c, &st, 0);
        printf("round %d: child exited with %d\n", round, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    }
    return 0;
}
