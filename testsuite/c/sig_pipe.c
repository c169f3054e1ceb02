// SIGPIPE: a write to a pipe whose read end is closed fails with EPIPE when SIGPIPE is ignored
// (argv[1] "ignore"), and runs the handler before write returns when one is installed
// (argv[1] "handler": the handler count read right after write is already 1).
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t pipes;

static void on_pipe(int sig) {
    (void)sig;
    pipes++;
}

int main(int argc, char **argv) {
    int handler = argc > 1 && strcmp(argv[1], "handler") == 0;
    int p[2];
    if (pipe(p) != 0) {
        perror("pipe");
        return 1;
    }
    close(p[0]);

    struct timespec now;
    ssize_t r;
    int e;
    if (!handler) {
        signal(SIGPIPE, SIG_IGN);
        for (int i = 0; i < 2; i++) {
            r = write(p[1], "x", 1);
            e = errno;
            printf("ignored: write returned %zd %s\n", r, e == EPIPE ? "EPIPE" : strerror(e));
        }
        clock_gettime(CLOCK_REALTIME, &now);
        printf("clock %ld.%09ld\n", (long)now.tv_sec, now.tv_nsec);
        return 0;
    }

    struct sigaction sa = {0};
    sa.sa_handler = on_pipe;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
    r = write(p[1], "y", 1);
    e = errno;
    int count = pipes;
    printf("handler: write returned %zd %s, handler count right after write %d\n", r,
           e == EPIPE ? "EPIPE" : strerror(e), count);
    r = write(p[1], "z", 1);
    count = pipes;
    printf("handler: second write returned %zd, handler count %d\n", r, count);
    clock_gettime(CLOCK_REALTIME, &now);
    printf("clock %ld.%09ld\n", (long)now.tv_sec, now.tv_nsec);
    return 0;
}
