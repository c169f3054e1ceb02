// SA_RESTART vs not: a child sends SIGUSR1 to the parent while the parent blocks in read() on a
// pipe, and writes to the pipe 100 ms later. With SA_RESTART (argv[1] "restart") the read returns
// the data; without it (argv[1] "norestart") the read fails with EINTR and a second read gets the
// data. The time the read took differs natively.
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t handled;

static void on_usr1(int sig) {
    (void)sig;
    handled++;
}

static void round_with(int flags, const char *name) {
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    int p[2];
    if (pipe(p) != 0) {
        perror("pipe");
        exit(1);
    }
    handled = 0;
    pid_t parent = getpid();
    pid_t child = fork();
    if (child == 0) {
        close(p[0]);
        struct timespec d = {0, 100000000};
        nanosleep(&d, NULL);
        kill(parent, SIGUSR1);
        nanosleep(&d, NULL);
        if (write(p[1], "data", 4) != 4)
            _exit(2);
        _exit(0);
    }
    close(p[1]);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char buf[8] = {0};
    ssize_t n = read(p[0], buf, sizeof buf - 1);
    int e = errno;
    int count = handled;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    if (n >= 0)
        printf("%s: read returned %zd \"%s\", handler count %d, after %ld ms\n", name, n, buf, count, ms);
    else
        printf("%s: read returned %zd %s, handler count %d, after %ld ms\n", name, n, e == EINTR ? "EINTR" : strerror(e),
               count, ms);
    if (n < 0) {
        n = read(p[0], buf, sizeof buf - 1);
        printf("%s: read again returned %zd \"%s\"\n", name, n, n > 0 ? buf : "");
    }
    close(p[0]);
    int status;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && strcmp(argv[1], "norestart") == 0)
        round_with(0, "no SA_RESTART");
    else
        round_with(SA_RESTART, "SA_RESTART");
    return 0;
}
