// The syscall buffer's families (issue 17): a parent and a forked child talk over a stream
// socketpair, and the parent multiplexes with epoll. Covered: full and partial reads, EAGAIN on
// a non-blocking socket, recv with MSG_DONTWAIT and MSG_PEEK, write/send/sendto, epoll_wait
// with events and with a zero timeout, a signal arriving while the parent sits in a read, a
// blocking read that has to wait, a fork with replies in flight, writev, sendmsg (plain, and
// with SCM_RIGHTS control data, which the tracee makes itself), poll (of the socket and the
// epoll fd, with a zero timeout and with one), and EOF when the peer closes.
// Every value that differs between native runs (the pids, clock readings, a hash of what was
// read) is printed, so a wrong replay changes the output.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/un.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t alarms;
static void on_alarm(int sig) { (void)sig; alarms++; }

static uint64_t fnv(const char *p, size_t n, uint64_t h) {
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
    return h;
}

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

// The child: answers each request line with "<n>:<its pid>:<clock>\n", in two writes for odd
// requests (a reply that arrives in pieces), then closes.
static void child(int s, int rounds) {
    char buf[256];
    for (int i = 0; i < rounds; i++) {
        ssize_t n = read(s, buf, sizeof buf);
        if (n <= 0) _exit(3);
        char out[128];
        int len = snprintf(out, sizeof out, "%d:%d:%ld:%016llx\n", i, (int)getpid(), now_ns() % 1000003,
                           (unsigned long long)fnv(buf, (size_t)n, 1469598103934665603ULL));
        if (i % 4 == 3) {
            // sendmsg of two iovecs; every other time with an fd in its control data (the
            // parent's read() drops it).
            struct iovec iov[2] = {{out, 6}, {out + 6, (size_t)len - 6}};
            char control[CMSG_SPACE(sizeof(int))];
            struct msghdr msg;
            memset(&msg, 0, sizeof msg);
            msg.msg_iov = iov;
            msg.msg_iovlen = 2;
            if (i % 8 == 7) {
                memset(control, 0, sizeof control);
                msg.msg_control = control;
                msg.msg_controllen = sizeof control;
                struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(c), &s, sizeof(int));
            }
            // MSG_DONTWAIT: the tracer may send it from its copy of the fd (the socket blocks).
            if (sendmsg(s, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) != len) _exit(4);
        } else if (i % 3 == 1) {
            if (write(s, out, 5) != 5 || send(s, out + 5, (size_t)len - 5, 0) != len - 5) _exit(4);
        } else if (i % 3 == 2) {
            struct iovec iov[3] = {{out, 3}, {out + 3, 4}, {out + 7, (size_t)len - 7}};
            if (writev(s, iov, 3) != len) _exit(4);
        } else if (sendto(s, out, (size_t)len, 0, NULL, 0) != len) {
            _exit(4);
        }
        if (i == rounds - 2) usleep(30000); // the parent's next read has to wait
    }
    close(s);
    _exit(0);
}

int main(void) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 1;
    const int rounds = 40;
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        child(sv[1], rounds);
    }
    close(sv[1]);
    int s = sv[0];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x5157};
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
    fcntl(s, F_SETFL, O_NONBLOCK);
    char buf[512];
    uint64_t h = 1469598103934665603ULL;
    int eagain = 0, partial = 0, polls = 0;
    uint64_t pollsum = 0;
    for (int i = 0; i < rounds; i++) {
        char req[64];
        int len = snprintf(req, sizeof req, "request %d at %ld\n", i, now_ns() % 1000003);
        if (i % 4 == 3) {
            struct iovec iov[2] = {{req, 4}, {req + 4, (size_t)len - 4}};
            if (writev(s, iov, 2) != len) return 5;
        } else if (write(s, req, (size_t)len) != len) {
            return 5;
        }
        // poll: whether the reply is there yet (timing: the replay must give the same answers).
        struct pollfd pf[2] = {{.fd = s, .events = POLLIN}, {.fd = ep, .events = POLLIN | POLLOUT}};
        int pn = poll(pf, 2, i % 2 ? 0 : 50);
        if (pn < 0 && errno != EINTR) return 11;
        pollsum = pollsum * 31 + (uint64_t)(pn + 1) * 7 + (uint64_t)pf[0].revents * 3 + (uint64_t)pf[1].revents;
        size_t got = 0;
        while (got == 0 || buf[got - 1] != '\n') {
            struct epoll_event out[4];
            int n = epoll_wait(ep, out, 4, 0);
            polls++;
            if (n == 0) n = epoll_wait(ep, out, 4, 2000);
            if (n < 0 && errno == EINTR) continue;
            if (n != 1 || out[0].data.u64 != 0x5157) return 6;
            char peek[4];
            if (recv(s, peek, sizeof peek, MSG_PEEK | MSG_DONTWAIT) <= 0) return 7;
            ssize_t r = i % 3 == 0 ? read(s, buf + got, sizeof buf - got) : recvfrom(s, buf + got, 3, 0, NULL, NULL);
            if (r < 0 && errno == EAGAIN) { eagain++; continue; }
            if (r <= 0) return 8;
            if (buf[got] != peek[0]) return 9;
            if (i % 3 != 0 && r == 3) partial++;
            got += (size_t)r;
        }
        h = fnv(buf, got, h);
        if (i == 10) {
            // EAGAIN on the non-blocking socket: nothing is there now.
            if (read(s, buf, sizeof buf) != -1 || errno != EAGAIN) return 10;
            eagain++;
        }
        if (i == 20) {
            // A signal while a blocking read waits (SA_RESTART: the read goes on).
            fcntl(s, F_SETFL, 0);
            ualarm(20000, 0);
            len = snprintf(req, sizeof req, "slow %d\n", i);
            (void)len;
        }
        if (i == 21) fcntl(s, F_SETFL, O_NONBLOCK);
    }
    // The peer closed: EOF once its data is read.
    fcntl(s, F_SETFL, 0);
    ssize_t r = read(s, buf, sizeof buf);
    int status = 0;
    waitpid(pid, &status, 0);
    printf("child %d exit %d\n", (int)pid, WEXITSTATUS(status));
    printf("eof read %zd\n", r);
    printf("hash %016llx\n", (unsigned long long)h);
    printf("poll %016llx\n", (unsigned long long)pollsum);
    printf("partial reads %d\npolls %d\neagain %d\nalarms %d\n", partial, polls, eagain, (int)alarms);
    return 0;
}
