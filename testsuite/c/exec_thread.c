/* execve from a thread that is not the main thread. Three threads: main waits in pthread_join
 * (argv[1] "join") or makes syscalls in a loop (argv[1] "busy"), one sleeps in a loop, the third
 * calls execve of this same program with argument "after" and
 * the old pid and tid. The kernel ends every other thread, and the new image runs with the pid
 * of the old thread-group leader (the exec'ing thread takes over its tid); it prints how many
 * threads it has (/proc/self/status) and that its pid and tid are the old pid. Pids differ
 * natively; the printed comparisons do not. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char self_path[4096];

static void *sleeper(void *arg)
{
    (void)arg;
    for (;;)
        usleep(1000);
    return NULL;
}

static void *execer(void *arg)
{
    (void)arg;
    char pid[32], tid[32];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    snprintf(tid, sizeof tid, "%d", (int)gettid());
    printf("thread: pid %s tid %s is the main thread %d; calling execve\n", pid, tid, gettid() == getpid());
    fflush(stdout);
    char *argv[] = {self_path, "after", pid, tid, NULL};
    char *envp[] = {NULL};
    execve(self_path, argv, envp);
    perror("execve");
    exit(1);
}

static int threads_now(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    int n = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1)
            break;
    fclose(f);
    return n;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "after") == 0) {
        int old_pid = atoi(argv[2]), old_tid = atoi(argv[3]);
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        printf("after execve: pid is the old pid %d, tid is the old pid %d, old exec'ing tid differed %d, threads %d\n",
               getpid() == old_pid, gettid() == old_pid, old_tid != old_pid, threads_now());
        printf("after execve: pid %d clock %ld.%09ld\n", (int)getpid(), (long)now.tv_sec, now.tv_nsec);
        return 0;
    }
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (n <= 0) {
        perror("readlink");
        return 1;
    }
    self_path[n] = 0;
    printf("main: pid %d threads before %d\n", (int)getpid(), threads_now());
    fflush(stdout);
    pthread_t s, e;
    if (pthread_create(&s, NULL, sleeper, NULL) != 0 || pthread_create(&e, NULL, execer, NULL) != 0)
        return 1;
    if (argc > 1 && strcmp(argv[1], "busy") == 0)
        for (;;)
            getppid();
    pthread_join(e, NULL);
    printf("main: pthread_join returned, execve failed\n");
    return 1;
}
