// argv[1] "suspend": sigprocmask blocks SIGUSR1, raise() leaves it pending, sigsuspend() with an
// empty mask lets the handler run and returns -1 EINTR.
// argv[1] "timedwait": rt_sigtimedwait receives a blocked pending SIGUSR2 (its si_pid differs
// natively), then times out with nothing pending.
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t handled;

static void on_usr1(int sig) {
    (void)sig;
    handled++;
}

int main(int argc, char **argv) {
    int suspend = argc > 1 && strcmp(argv[1], "suspend") == 0;
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL) != 0) {
        perror("sigaction");
        return 1;
    }
    sigset_t block, old, empty;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGUSR2);
    sigemptyset(&empty);
    if (sigprocmask(SIG_BLOCK, &block, &old) != 0) {
        perror("sigprocmask");
        return 1;
    }
    if (!suspend)
        goto timedwait;
    raise(SIGUSR1);
    int before = handled;
    sigset_t pending;
    sigpending(&pending);
    int is_pending = sigismember(&pending, SIGUSR1);
    int r = sigsuspend(&empty);
    int e = errno;
    int after = handled;
    printf("blocked SIGUSR1 pending %d, handled before sigsuspend %d\n", is_pending, before);
    printf("sigsuspend returned %d %s, handled after %d\n", r, e == EINTR ? "EINTR" : strerror(e), after);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    printf("clock %ld.%09ld\n", (long)now.tv_sec, now.tv_nsec);
    return 0;

timedwait:

    raise(SIGUSR2);
    sigset_t want;
    sigemptyset(&want);
    sigaddset(&want, SIGUSR2);
    siginfo_t info;
    struct timespec timeout = {1, 0};
    int got = sigtimedwait(&want, &info, &timeout);
    printf("sigtimedwait returned %d (SIGUSR2 is %d), si_signo %d, si_code %d, si_pid is getpid %d, si_pid %d\n", got,
           SIGUSR2, info.si_signo, info.si_code, info.si_pid == getpid(), (int)info.si_pid);

    struct timespec short_wait = {0, 1000000};
    got = sigtimedwait(&want, &info, &short_wait);
    printf("sigtimedwait with nothing pending returned %d %s\n", got, errno == EAGAIN ? "EAGAIN" : strerror(errno));
    return 0;
}
