// signalfd: SIGUSR2 blocked, raised, and read from a signalfd as a struct signalfd_siginfo.
#include <signal.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <unistd.h>

int main(void) {
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR2);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0) {
        perror("sigprocmask");
        return 1;
    }
    int fd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (fd < 0) {
        perror("signalfd");
        return 1;
    }
    for (int round = 0; round < 2; round++) {
        raise(SIGUSR2);
        struct signalfd_siginfo si;
        ssize_t n = read(fd, &si, sizeof si);
        if (n != (ssize_t)sizeof si) {
            perror("read signalfd");
            return 1;
        }
        printf("round %d: read %zd bytes, ssi_signo %u (SIGUSR2 %d), ssi_code %d, ssi_pid is getpid %d, ssi_pid %u\n",
               round, n, si.ssi_signo, SIGUSR2, si.ssi_code, si.ssi_pid == (unsigned)getpid(), si.ssi_pid);
    }
    close(fd);
    return 0;
}
