/* waitid(P_PID, child, WEXITED): a child blocked on a pipe is not reaped by WNOHANG (returns 0
 * with si_pid 0); once released it exits 42; WNOWAIT reports it and leaves it waitable; the
 * next waitid reaps it (CLD_EXITED, si_status 42, si_pid the child); a last one fails with
 * ECHILD. A second child killed by SIGTERM is reported with CLD_KILLED and si_status SIGTERM.
 * Pids differ natively. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *code_name(int code)
{
    switch (code) {
    case CLD_EXITED:
        return "CLD_EXITED";
    case CLD_KILLED:
        return "CLD_KILLED";
    case CLD_DUMPED:
        return "CLD_DUMPED";
    default:
        return "other";
    }
}

static void show(const char *what, int r, const siginfo_t *si, pid_t child)
{
    printf("%s: returned %d, si_pid is the child %d, si_signo %s, si_code %s, si_status %d\n", what, r,
           si->si_pid == child, si->si_signo == SIGCHLD ? "SIGCHLD" : "0", code_name(si->si_code), si->si_status);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int go[2];
    if (pipe(go) != 0) {
        perror("pipe");
        return 1;
    }
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        char c;
        close(go[1]);
        if (read(go[0], &c, 1) != 1)
            _exit(1);
        _exit(42);
    }
    close(go[0]);
    printf("child %d\n", (int)child);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int r = waitid(P_PID, (id_t)child, &si, WEXITED | WNOHANG);
    printf("WNOHANG while it waits: returned %d, si_pid %d\n", r, (int)si.si_pid);
    if (write(go[1], "x", 1) != 1) {
        perror("write");
        return 1;
    }
    memset(&si, 0, sizeof si);
    r = waitid(P_PID, (id_t)child, &si, WEXITED | WNOWAIT);
    show("WNOWAIT", r, &si, child);
    memset(&si, 0, sizeof si);
    r = waitid(P_PID, (id_t)child, &si, WEXITED);
    show("WEXITED", r, &si, child);
    r = waitid(P_PID, (id_t)child, &si, WEXITED);
    printf("again: returned %d %s\n", r, r < 0 && errno == ECHILD ? "ECHILD" : strerror(errno));

    pid_t victim = fork();
    if (victim < 0) {
        perror("fork");
        return 1;
    }
    if (victim == 0) {
        for (;;)
            pause();
    }
    kill(victim, SIGTERM);
    memset(&si, 0, sizeof si);
    r = waitid(P_PID, (id_t)victim, &si, WEXITED);
    show("killed", r, &si, victim);
    return 0;
}
