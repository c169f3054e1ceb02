/* Pids inside ftexec's PID namespace: the program is 2 (its init is 1), then threads and
 * children in creation order; /proc/<own pid> is the program itself. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static void *thread_main(void *arg)
{
    (void)arg;
    printf("thread tid %d\n", (int)gettid());
    return NULL;
}

int main(void)
{
    printf("pid %d ppid %d\n", (int)getpid(), (int)getppid());
    fflush(stdout);
    pthread_t th;
    if (pthread_create(&th, NULL, thread_main, NULL) != 0 || pthread_join(th, NULL) != 0)
        return 1;
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        printf("child pid %d ppid %d\n", (int)getpid(), (int)getppid());
        fflush(stdout);
        _exit(0);
    }
    waitpid(c, NULL, 0);
    char path[64], comm[32] = "?\n";
    snprintf(path, sizeof path, "/proc/%d/comm", (int)getpid());
    FILE *f = fopen(path, "r");
    if (f) {
        if (!fgets(comm, sizeof comm, f))
            comm[0] = '?';
        fclose(f);
    }
    printf("forked %d; /proc/<own pid>/comm %s", (int)c, comm);
    return 0;
}
