/* Exercises a TCP server driven by poll(2): listens on 127.0.0.1:argv[1],
 * serves argv[2] clients (see tcp_server_common.h), then exits. */
#define _GNU_SOURCE
#include <poll.h>

#include "tcp_server_common.h"

int main(int argc, char **argv)
{
    int port;
    int want = parse_args(argc, argv, &port);
    int listener = listen_on(port);
    struct client clients[MAX_CLIENTS];
    int accepted = 0, done = 0, wakeups = 0;
    while (done < want) {
        struct pollfd pfds[MAX_CLIENTS + 1];
        int idx[MAX_CLIENTS + 1];
        nfds_t n = 0;
        if (accepted < want) {
            pfds[n] = (struct pollfd){ .fd = listener, .events = POLLIN };
            idx[n++] = -1;
        }
        for (int i = 0; i < accepted; i++) {
            if (clients[i].fd >= 0) {
                pfds[n] = (struct pollfd){ .fd = clients[i].fd, .events = POLLIN };
                idx[n++] = i;
            }
        }
        int ready = poll(pfds, n, 30000);
        if (ready < 0)
            err(1, "poll");
        if (ready == 0)
            errx(1, "poll timed out after 30 s");
        wakeups++;
        for (nfds_t k = 0; k < n; k++) {
            if (pfds[k].revents == 0)
                continue;
            if (idx[k] < 0) {
                accept_client(listener, &clients[accepted], accepted + 1);
                accepted++;
            } else {
                done += serve_readable(&clients[idx[k]]);
            }
        }
    }
    close(listener);
    printf("served %d clients in %d poll wakeups\n", done, wakeups);
    return 0;
}
