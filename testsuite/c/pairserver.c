/* A server whose work is done by a forked child it talks to over socketpairs, as nginx's master
 * talks to its workers or python's multiprocessing to its children.
 *
 * pairserver PORT: the parent accepts TCP connections on 127.0.0.1:PORT, one request line each.
 * - "TICKS": the parent answers with what the child sent on the notice pair so far and the
 *   parent has not read yet (read without waiting; "none" if nothing): bytes that wait in the
 *   socketpair, across a failover too.
 * - any other line L: forwarded to the child over the request pair (SOCK_STREAM); the child
 *   answers "child#N:L" (N counts its requests) and writes "tN," on the notice pair
 *   (SOCK_SEQPACKET would keep boundaries; a stream is what the parent reads here), and the
 *   same on a SOCK_SEQPACKET pair.
 * - "DTICKS": the messages waiting on the SOCK_SEQPACKET pair (sendmsg, recvmsg), each followed
 *   by '|': their boundaries, across a failover too. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static int read_line(int fd, char *buf, int cap) {
    int n = 0;
    while (n < cap - 1) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r <= 0)
            return r < 0 ? -1 : (n ? n : 0);
        if (c == '\n')
            break;
        buf[n++] = c;
    }
    buf[n] = 0;
    return n;
}

static void write_all(int fd, const char *p, size_t len) {
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w <= 0)
            exit(3);
        p += w;
        len -= (size_t)w;
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: pairserver PORT\n");
        return 2;
    }
    int req[2], notice[2], dnotice[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, req) || socketpair(AF_UNIX, SOCK_STREAM, 0, notice) ||
        socketpair(AF_UNIX, SOCK_SEQPACKET, 0, dnotice)) {
        perror("socketpair");
        return 1;
    }
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        close(req[0]);
        close(notice[0]);
        close(dnotice[0]);
        char line[256], out[300];
        for (int n = 1;; n++) {
            int len = read_line(req[1], line, sizeof line);
            if (len <= 0)
                _exit(0);
            int m = snprintf(out, sizeof out, "child#%d:%s\n", n, line);
            write_all(req[1], out, (size_t)m);
            m = snprintf(out, sizeof out, "t%d,", n);
            write_all(notice[1], out, (size_t)m);
            /* sendmsg with two iovecs ("t", "N,"): one message. */
            struct iovec iov[2] = {{out, 1}, {out + 1, (size_t)m - 1}};
            struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
            if (sendmsg(dnotice[1], &mh, 0) != m)
                _exit(4);
        }
    }
    close(req[1]);
    close(notice[1]);
    close(dnotice[1]);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1]))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 16)) {
        perror("bind");
        return 1;
    }
    printf("pairserver listening on %s\n", argv[1]);
    fflush(stdout);
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0)
            continue;
        char line[256], out[4096];
        int len = read_line(c, line, sizeof line);
        if (len > 0 && strcmp(line, "TICKS") == 0) {
            ssize_t n = recv(notice[0], out, sizeof out - 2, MSG_DONTWAIT);
            if (n <= 0)
                n = snprintf(out, sizeof out, "none");
            out[n++] = '\n';
            write_all(c, out, (size_t)n);
        } else if (len > 0 && strcmp(line, "DTICKS") == 0) {
            size_t n = 0;
            for (;;) {
                struct iovec iov = {out + n, 64};
                struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
                ssize_t r = recvmsg(dnotice[0], &mh, MSG_DONTWAIT);
                if (r <= 0 || n + (size_t)r + 66 > sizeof out)
                    break;
                n += (size_t)r;
                out[n++] = '|';
            }
            if (n == 0)
                n = (size_t)snprintf(out, sizeof out, "none");
            out[n++] = '\n';
            write_all(c, out, n);
        } else if (len > 0) {
            write_all(req[0], line, (size_t)len);
            write_all(req[0], "\n", 1);
            int m = read_line(req[0], out, sizeof out - 1);
            if (m < 0)
                m = snprintf(out, sizeof out, "child gone (errno %d)", errno);
            out[m++] = '\n';
            write_all(c, out, (size_t)m);
        }
        close(c);
    }
}
