// argv[1] "self": kill() and raise() of itself. An unblocked signal sent to the calling thread is
// delivered on the way out of the syscall, so the handler count read right after kill (and after
// raise) is already incremented; the time printed differs natively.
// argv[1] "child": kill() of a forked child that spins in syscalls until its SIGUSR1 handler
// fires; the child prints how many iterations it made, the parent reaps it with waitpid.
// argv[1] "pidfd": the same, with the signal sent through pidfd_open + pidfd_send_signal.
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t got;

static void on_usr1(int sig) {
    (void)sig;
    got++;
}

int main(int argc, char **argv) {
    int self = argc > 1 && strcmp(argv[1], "self") == 0;
    int by_pidfd = argc > 1 && strcmp(argv[1], "pidfd") == 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL) != 0) {
        perror("sigaction");
        return 1;
    }

    if (self) {
        int before = got;
        kill(getpid(), SIGUSR1);
        int after_kill = got;
        raise(SIGUSR1);
        int after_raise = got;
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        printf("self: handler count before kill %d, right after kill %d, right after raise %d\n", before, after_kill,
               after_raise);
        printf("self: clock %ld.%09ld\n", (long)now.tv_sec, now.tv_nsec);
        return 0;
    }

    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        got = 0;
        long iterations = 0;
        while (!got) {
            getppid();
            iterations++;
        }
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        printf("child: got SIGUSR1 after %ld iterations at %ld.%09ld\n", iterations, (long)now.tv_sec, now.tv_nsec);
        exit(7);
    }
    struct timespec pause = {0, 20000000};
    nanosleep(&pause, NULL);
    if (by_pidfd) {
        int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
        if (pidfd < 0 || syscall(SYS_pidfd_send_signal, pidfd, SIGUSR1, NULL, 0) != 0) {
            perror("pidfd_send_signal");
            return 1;
        }
        close(pidfd);
    } else if (kill(child, SIGUSR1) != 0) {
        perror("kill child");
        return 1;
    }
    int status;
    pid_t reaped;
    while ((reaped = waitpid(child, &status, 0)) < 0 && errno == EINTR) {
    }
    if (reaped != child) {
        perror("waitpid");
        return 1;
    }
    printf("parent: child exited %d, signaled %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
           WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    return 0;
}
