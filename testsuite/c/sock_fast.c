// Socket syscalls that ftexec answers on a copy of the fd (one ptrace stop) and those that must
// still run in the program: EAGAIN, MSG_PEEK, short reads, writev, sendto, epoll_wait with and
// without events, a full socket buffer, EPIPE and EOF after the peer closed, and a blocking read
// that waits for a child. Every line is the same natively and in every replay.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static void show(const char *what, long r, const char *buf) {
    if (r < 0)
        printf("%s: -1 %s\n", what, strerror(errno));
    else if (buf)
        printf("%s: %ld \"%.*s\"\n", what, r, (int)r, buf);
    else
        printf("%s: %ld\n", what, r);
}

int main(void) {
    int sv[2];
    char buf[64];
    signal(SIGPIPE, SIG_IGN);
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 1;
    int a = sv[0], b = sv[1];
    nonblock(a);
    show("read empty", read(a, buf, sizeof buf), NULL);
    show("write blocking", write(b, "hello", 5), NULL);
    show("peek", recv(a, buf, sizeof buf, MSG_PEEK), buf);
    show("read 3", read(a, buf, 3), buf);
    show("read rest", read(a, buf, sizeof buf), buf);
    nonblock(b);
    struct iovec iov[2] = {{"ab", 2}, {"cd", 2}};
    show("writev", writev(b, iov, 2), NULL);
    show("sendto", sendto(b, "xyz", 3, MSG_NOSIGNAL, NULL, 0), NULL);
    show("recvfrom", recvfrom(a, buf, sizeof buf, 0, NULL, NULL), buf);

    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x1234};
    epoll_ctl(ep, EPOLL_CTL_ADD, a, &ev);
    struct epoll_event got[8];
    show("epoll_wait none ready", epoll_wait(ep, got, 8, 0), NULL);
    show("epoll_wait none ready, 30 ms", epoll_wait(ep, got, 8, 30), NULL);
    write(b, "q", 1);
    int n = epoll_wait(ep, got, 8, 1000);
    printf("epoll_wait ready: %d events %#x data %#llx\n", n, n > 0 ? got[0].events : 0,
           n > 0 ? (unsigned long long)got[0].data.u64 : 0ULL);
    show("read after epoll", read(a, buf, sizeof buf), buf);

    // Fill b's buffer until EAGAIN, then take everything out of a.
    static char big[4096];
    memset(big, 'z', sizeof big);
    long sent = 0, r;
    while ((r = write(b, big, sizeof big)) > 0) sent += r;
    printf("filled: %s after %s\n", r < 0 && errno == EAGAIN ? "EAGAIN" : "?", sent > 0 ? "some bytes" : "nothing");
    long taken = 0;
    while ((r = read(a, big, sizeof big)) > 0) taken += r;
    printf("drained: %s\n", taken == sent ? "every byte" : "bytes missing");

    close(a);
    show("write to closed peer", write(b, "x", 1), NULL);
    show("read at EOF", read(b, buf, sizeof buf), NULL);

    // A blocking read with nothing to read yet: it waits in the program.
    int sw[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sw);
    pid_t pid = fork();
    if (pid == 0) {
        struct timespec ts = {0, 30 * 1000 * 1000};
        nanosleep(&ts, NULL);
        write(sw[1], "late", 4);
        _exit(0);
    }
    show("blocking read", read(sw[0], buf, sizeof buf), buf);
    int st;
    waitpid(pid, &st, 0);
    printf("child exit %d\n", WEXITSTATUS(st));
    return 0;
}
