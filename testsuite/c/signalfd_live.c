// A signalfd that a replica going live must make again: SIGUSR1 blocked, a nonblocking
// signalfd for it watched by epoll, five rounds of kill(self, SIGUSR1) then epoll_wait and a
// read of the signalfd. At the end no SIGUSR1 may be pending: each was taken by a read (a
// replica going live must not send one again). A wait gives up after 5 s with a "silent" line
// and status 1.
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

int main(void) {
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    if (sigprocmask(SIG_BLOCK, &usr1, NULL) != 0) {
        perror("sigprocmask");
        return 1;
    }
    int sfd = signalfd(-1, &usr1, SFD_NONBLOCK | SFD_CLOEXEC);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 9};
    if (sfd < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev) != 0) {
        perror("signalfd");
        return 1;
    }
    for (int round = 0; round < 5; round++) {
        kill(getpid(), SIGUSR1);
        struct epoll_event got;
        if (epoll_wait(ep, &got, 1, 5000) != 1) {
            printf("signalfd silent in round %d\n", round);
            return 1;
        }
        struct signalfd_siginfo info;
        if (read(sfd, &info, sizeof info) != sizeof info) {
            perror("read signalfd");
            return 1;
        }
        printf("round %d took signal %u from self %d\n", round, info.ssi_signo, info.ssi_pid == (unsigned)getpid());
    }
    sigset_t pending;
    sigpending(&pending);
    printf("SIGUSR1 pending at the end %d\n", sigismember(&pending, SIGUSR1));
    return 0;
}
