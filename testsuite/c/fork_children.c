/* Forks 50 children; each prints its pid and the time, then exits with its index; the parent
 * reaps them all with wait4 and prints the exit statuses in reap order. */
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    for (int i = 0; i < 50; i++) {
        pid_t p = fork();
        if (p == 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            printf("child %d pid %d time %ld.%09ld\n", i, getpid(), (long)ts.tv_sec, ts.tv_nsec);
            _exit(i);
        }
    }
    int status;
    pid_t p;
    while ((p = wait(&status)) > 0)
        printf("reaped %d status %d\n", p, WEXITSTATUS(status));
    return 0;
}
