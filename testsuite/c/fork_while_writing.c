/* A thread writes memory without syscalls while another forks: the child's copy of the memory
 * must be the same at record and at every replay. Each child prints the counter it sees.
 * Under ftexec a fork holds the token, so no other thread of the program runs while the kernel
 * copies the address space (redis forks its AOF rewrite while a bio thread frees memory). */
#include <err.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile unsigned long counter;
static volatile int stop;

static void *writer(void *arg)
{
    (void)arg;
    while (!stop) {
        for (int i = 0; i < 20000; i++)
            counter++;
        usleep(10);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int forks = argc > 1 ? atoi(argv[1]) : 30;
    pthread_t t;
    if (pthread_create(&t, NULL, writer, NULL) != 0)
        errx(1, "pthread_create");
    unsigned long seen = 0;
    for (int k = 0; k < forks; k++) {
        usleep(200);
        pid_t pid = fork();
        if (pid < 0)
            err(1, "fork");
        if (pid == 0) {
            printf("child %d sees %lu\n", k, counter);
            fflush(stdout);
            _exit(0);
        }
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
            errx(1, "child %d did not exit", k);
        seen = counter;
    }
    stop = 1;
    pthread_join(t, NULL);
    printf("parent saw %s\n", seen > 0 ? "the writer run" : "no writes");
    return 0;
}
