/* Exercises a TCP server driven by epoll (epoll_create1, epoll_ctl,
 * epoll_wait): listens on 127.0.0.1:argv[1], serves argv[2] clients (see
 * tcp_server_common.h), then exits. */
#define _GNU_SOURCE
#include <sys/epoll.h>

#include "tcp_server_common.h"

#define LISTENER_TAG (-1)

int main(int argc, char **argv)
{
    int port;
    int want = parse_args(argc, argv, &port);
    int listener = listen_on(port);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        err(1, "epoll_create1");
    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)LISTENER_TAG };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev) != 0)
        err(1, "epoll_ctl add listener");
    struct client clients[MAX_CLIENTS];
    int accepted = 0, done = 0, wakeups = 0;
    while (done < want) {
        struct epoll_event events[MAX_CLIENTS + 1];
        int n = epoll_wait(ep, events, MAX_CLIENTS + 1, 30000);
        if (n < 0)
            err(1, "epoll_wait");
        if (n == 0)
            errx(1, "epoll_wait timed out after 30 s");
        wakeups++;
        for (int k = 0; k < n; k++) {
            int i = (int)events[k].data.u32;
            if (i == LISTENER_TAG) {
                accept_client(listener, &clients[accepted], accepted + 1);
                ev = (struct epoll_event){ .events = EPOLLIN, .data.u32 = (uint32_t)accepted };
                if (epoll_ctl(ep, EPOLL_CTL_ADD, clients[accepted].fd, &ev) != 0)
                    err(1, "epoll_ctl add client");
                accepted++;
                if (accepted == want && epoll_ctl(ep, EPOLL_CTL_DEL, listener, NULL) != 0)
                    err(1, "epoll_ctl del listener");
            } else {
                /* serve_readable closes the fd, which removes it from the set. */
                done += serve_readable(&clients[i]);
            }
        }
    }
    close(ep);
    close(listener);
    printf("served %d clients in %d epoll wakeups\n", done, wakeups);
    return 0;
}
