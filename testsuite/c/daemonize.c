/* A daemon's start: the first process forks a child that goes on in the background and exits
 * 0. Under ftexec the program is its PID namespace, which ends with its first process: the
 * child is killed before it prints, and ftexec says why. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    pid_t child = fork();
    if (child == 0) {
        struct timespec t = {3, 0};
        nanosleep(&t, NULL);
        printf("the background child is still running\n");
        return 0;
    }
    printf("parent: forked the background child, exiting\n");
    return 0;
}
