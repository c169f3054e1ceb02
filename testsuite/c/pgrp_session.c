/* Process groups and sessions.
 * Part 1: two children join a new process group whose leader is the first one (setpgid in the
 * child and in the parent, the classic race-free way); each child waits (usleep loop) for a
 * SIGUSR1 that the parent sends to the whole group with kill(-pgid), then exits 10 + its index;
 * the parent reaps exactly those two with waitpid(-pgid) and then gets ECHILD.
 * Part 2: a child calls setsid(): it becomes the leader of a new session and process group, and
 * as a session leader it may not change its process group (EPERM); the parent sees the new
 * session with getsid(child).
 * Pids differ natively; everything else is a relation between them. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t got;

static void on_usr1(int sig)
{
    (void)sig;
    got = 1;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL) != 0)
        die("sigaction");
    int ready[2];
    if (pipe(ready) != 0)
        die("pipe");

    pid_t child[2];
    pid_t pgid = 0;
    for (int i = 0; i < 2; i++) {
        child[i] = fork();
        if (child[i] < 0)
            die("fork");
        if (child[i] == 0) {
            if (setpgid(0, i == 0 ? 0 : pgid) != 0)
                die("setpgid in child");
            char c = 'r';
            if (write(ready[1], &c, 1) != 1)
                die("write");
            while (!got)
                usleep(1000);
            _exit(10 + i);
        }
        if (i == 0)
            pgid = child[0];
        if (setpgid(child[i], pgid) != 0 && errno != EACCES)
            die("setpgid in parent");
    }
    for (int i = 0; i < 2; i++) {
        char c;
        if (read(ready[0], &c, 1) != 1)
            die("read");
    }
    printf("children %d %d group %d\n", (int)child[0], (int)child[1], (int)pgid);
    printf("getpgid(first) is first %d, getpgid(second) is first %d, parent in it %d\n",
           getpgid(child[0]) == child[0], getpgid(child[1]) == child[0], getpgrp() == pgid);
    printf("kill(-group, SIGUSR1) returned %d\n", kill(-pgid, SIGUSR1));
    int codes[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        int status;
        pid_t w = waitpid(-pgid, &status, 0);
        if (w != child[0] && w != child[1]) {
            printf("waitpid(-group) returned %d\n", (int)w);
            return 1;
        }
        codes[w == child[0] ? 0 : 1] = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    printf("waitpid(-group) reaped the first with %d and the second with %d\n", codes[0], codes[1]);
    pid_t w = waitpid(-pgid, NULL, WNOHANG);
    printf("waitpid(-group) again: %d %s\n", (int)w, w < 0 && errno == ECHILD ? "ECHILD" : "?");

    int up[2], down[2];
    if (pipe(up) != 0 || pipe(down) != 0)
        die("pipe");
    pid_t s = fork();
    if (s < 0)
        die("fork");
    if (s == 0) {
        pid_t before = getsid(0);
        pid_t sid = setsid();
        int e_setpgid = setpgid(0, before) == 0 ? 0 : errno;
        printf("setsid returned own pid %d, getsid(0) is own pid %d, getpgrp() is own pid %d, old session differs "
               "%d, setpgid as session leader %s\n",
               sid == getpid(), getsid(0) == getpid(), getpgrp() == getpid(), before != sid,
               e_setpgid == EPERM ? "EPERM" : strerror(e_setpgid));
        char c = 's';
        if (write(up[1], &c, 1) != 1)
            die("write");
        if (read(down[0], &c, 1) != 1)
            die("read");
        _exit(0);
    }
    char c;
    if (read(up[0], &c, 1) != 1)
        die("read");
    printf("parent: getsid(child) is child %d, own session differs %d\n", getsid(s) == s, getsid(0) != s);
    if (write(down[1], &c, 1) != 1)
        die("write");
    int status;
    if (waitpid(s, &status, 0) != s)
        die("waitpid");
    printf("session child exited %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}
