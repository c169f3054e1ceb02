/* A semop that waits and fails: the child's blocking decrement is interrupted by a signal
 * (EINTR), and right after the kill the parent increments the semaphore. At record the child's
 * failure can be logged after that increment; replay runs the decrement where the log has its
 * failure, and must give the failure, not take the semaphore the increment made available.
 * Then a semtimedop whose timeout runs out. The values each process sees are printed. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void on_usr1(int sig) { (void)sig; }

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    int id = semget(IPC_PRIVATE, 1, 0600);
    if (id < 0)
        return 1;
    int ready[2];
    if (pipe(ready) != 0)
        return 1;
    pid_t child = fork();
    if (child == 0) {
        struct sigaction sa = {.sa_handler = on_usr1};
        sigaction(SIGUSR1, &sa, NULL);
        if (write(ready[1], "r", 1) != 1)
            return 1;
        struct sembuf down = {0, -1, 0};
        int r = semop(id, &down, 1);
        printf("child: semop = %d %s\n", r, r < 0 && errno == EINTR ? "EINTR" : "");
        struct timespec t = {0, 50 * 1000 * 1000};
        struct sembuf two = {0, -2, 0};
        r = semtimedop(id, &two, 1, &t);
        printf("child: semtimedop(-2) = %d %s\n", r, r < 0 && errno == EAGAIN ? "EAGAIN" : "");
        return 0;
    }
    char c;
    if (read(ready[0], &c, 1) != 1)
        return 1;
    /* Until the child waits in semop (syscall 65 in /proc/PID/syscall). */
    char path[64], line[64];
    snprintf(path, sizeof(path), "/proc/%d/syscall", (int)child);
    for (int i = 0; i < 2000; i++) {
        FILE *f = fopen(path, "r");
        int waiting = f && fgets(line, sizeof(line), f) && strncmp(line, "65 ", 3) == 0;
        if (f)
            fclose(f);
        if (waiting)
            break;
        struct timespec ms = {0, 1000 * 1000};
        nanosleep(&ms, NULL);
    }
    kill(child, SIGUSR1);
    struct sembuf up = {0, 1, 0};
    semop(id, &up, 1);
    int status;
    waitpid(child, &status, 0);
    printf("parent: value %d, child exited %d\n", semctl(id, 0, GETVAL), WEXITSTATUS(status));
    semctl(id, 0, IPC_RMID);
    return 0;
}
