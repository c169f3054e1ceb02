/* Shared parts of tcp_server_{poll,select,epoll}.c: the listening socket and
 * what happens to one client. Each client sends one line; the server prints
 * it, sends back "echo: LINE\n" and closes the connection. The servers differ
 * only in how they wait for readiness. */
#ifndef TCP_SERVER_COMMON_H
#define TCP_SERVER_COMMON_H

#include <arpa/inet.h>
#include <err.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CLIENTS 16

struct client {
    int fd; /* -1 when closed */
    int id;
    size_t len;
    char buf[256];
};

static int parse_args(int argc, char **argv, int *port)
{
    if (argc != 3)
        errx(2, "usage: %s PORT NCLIENTS", argv[0]);
    *port = atoi(argv[1]);
    int n = atoi(argv[2]);
    if (n < 1 || n > MAX_CLIENTS)
        errx(2, "NCLIENTS must be between 1 and %d", MAX_CLIENTS);
    return n;
}

static int listen_on(int port)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        err(1, "socket");
    int one = 1;
    if (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        err(1, "setsockopt SO_REUSEADDR");
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&addr, sizeof addr) != 0)
        err(1, "bind 127.0.0.1:%d", port);
    if (listen(s, MAX_CLIENTS) != 0)
        err(1, "listen");
    printf("listening on 127.0.0.1:%d\n", port);
    fflush(stdout);
    return s;
}

/* Accepts one pending connection into *c, numbered id. */
static void accept_client(int listener, struct client *c, int id)
{
    struct sockaddr_in peer;
    socklen_t len = sizeof peer;
    int fd = accept4(listener, (struct sockaddr *)&peer, &len, SOCK_CLOEXEC);
    if (fd < 0)
        err(1, "accept4");
    c->fd = fd;
    c->id = id;
    c->len = 0;
    printf("accepted client %d from port %u\n", id, ntohs(peer.sin_port));
}

/* Reads what client c has sent. Returns 1 when the client is done (its line is
 * complete or it closed) and has been answered and closed, 0 otherwise. */
static int serve_readable(struct client *c)
{
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len, 0);
    if (n < 0)
        err(1, "recv from client %d", c->id);
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    char *nl = strchr(c->buf, '\n');
    if (n > 0 && nl == NULL && c->len < sizeof c->buf - 1)
        return 0;
    if (nl != NULL)
        *nl = '\0';
    printf("client %d says: %s\n", c->id, c->buf);
    char reply[300];
    int rlen = snprintf(reply, sizeof reply, "echo: %s\n", c->buf);
    if (send(c->fd, reply, (size_t)rlen, MSG_NOSIGNAL) != rlen)
        err(1, "send to client %d", c->id);
    close(c->fd);
    c->fd = -1;
    printf("client %d done\n", c->id);
    return 1;
}

#endif
