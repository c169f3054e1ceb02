/* Exercises a TCP server driven by select(2): listens on 127.0.0.1:argv[1],
 * serves argv[2] clients (see tcp_server_common.h), then exits. */
#define _GNU_SOURCE
#include <sys/select.h>

#include "tcp_server_common.h"

int main(int argc, char **argv)
{
    int port;
    int want = parse_args(argc, argv, &port);
    int listener = listen_on(port);
    struct client clients[MAX_CLIENTS];
    int accepted = 0, done = 0, wakeups = 0;
    while (done < want) {
        fd_set rfds;
        FD_ZERO(&rfds);
        int maxfd = -1;
        if (accepted < want) {
            FD_SET(listener, &rfds);
            maxfd = listener;
        }
        for (int i = 0; i < accepted; i++) {
            if (clients[i].fd >= 0) {
                FD_SET(clients[i].fd, &rfds);
                if (clients[i].fd > maxfd)
                    maxfd = clients[i].fd;
            }
        }
        struct timeval timeout = { .tv_sec = 30 };
        int ready = select(maxfd + 1, &rfds, NULL, NULL, &timeout);
        if (ready < 0)
            err(1, "select");
        if (ready == 0)
            errx(1, "select timed out after 30 s");
        wakeups++;
        if (accepted < want && FD_ISSET(listener, &rfds)) {
            accept_client(listener, &clients[accepted], accepted + 1);
            accepted++;
        }
        for (int i = 0; i < accepted; i++)
            if (clients[i].fd >= 0 && FD_ISSET(clients[i].fd, &rfds))
                done += serve_readable(&clients[i]);
    }
    close(listener);
    printf("served %d clients in %d select wakeups\n", done, wakeups);
    return 0;
}
