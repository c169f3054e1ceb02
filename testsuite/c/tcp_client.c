/* Exercises a TCP client: socket, connect to 127.0.0.1:argv[1], send a line,
 * print what the server answers until it closes. At replay time the server
 * is gone, so every result must come from the log. */
#include <arpa/inet.h>
#include <err.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 2)
        errx(2, "usage: %s PORT", argv[0]);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        err(1, "socket");
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])) };
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&addr, sizeof addr) != 0)
        err(1, "connect 127.0.0.1:%s", argv[1]);
    struct sockaddr_in local;
    socklen_t len = sizeof local;
    if (getsockname(s, (struct sockaddr *)&local, &len) != 0)
        err(1, "getsockname");
    printf("connected from port %u\n", ntohs(local.sin_port));
    const char *line = "hello from tcp_client\n";
    if (send(s, line, strlen(line), 0) != (ssize_t)strlen(line))
        err(1, "send");
    char buf[512];
    ssize_t n;
    while ((n = recv(s, buf, sizeof buf, 0)) > 0)
        printf("received %zd bytes: %.*s\n", n, (int)n, buf);
    if (n < 0)
        err(1, "recv");
    printf("server closed\n");
    close(s);
    return 0;
}
