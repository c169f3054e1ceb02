/* vfork + execve, and posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK) + execve), each starting
 * this program again with argument "child": the child prints its argv and whether its parent is
 * the process that started it, and exits with a code of its own. The parent reaps it with
 * waitpid and prints the status. A second posix_spawn redirects the child's stdout into a pipe
 * (posix_spawn_file_actions_adddup2) that the parent reads and prints. Pids differ natively. */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static char self_path[4096];

static int reap(pid_t pid, const char *how)
{
    int status;
    pid_t w = waitpid(pid, &status, 0);
    printf("%s: waitpid returned the child %d, exited %d with %d\n", how, w == pid, WIFEXITED(status),
           WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return w == pid ? 0 : 1;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && strcmp(argv[1], "child") == 0) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        printf("child of %s: parent is the starter %d; pid %d clock %ld.%09ld\n", argv[2],
               getppid() == atoi(argv[3]), (int)getpid(), (long)now.tv_sec, now.tv_nsec);
        return strcmp(argv[2], "vfork") == 0 ? 3 : 4;
    }
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (n <= 0) {
        perror("readlink");
        return 1;
    }
    self_path[n] = 0;
    char me[32];
    snprintf(me, sizeof me, "%d", (int)getpid());

    char *vargv[] = {self_path, "child", "vfork", me, NULL};
    pid_t v = vfork();
    if (v < 0) {
        perror("vfork");
        return 1;
    }
    if (v == 0) {
        execve(self_path, vargv, environ);
        _exit(127);
    }
    if (reap(v, "vfork"))
        return 1;

    char *sargv[] = {self_path, "child", "posix_spawn", me, NULL};
    pid_t s;
    int r = posix_spawn(&s, self_path, NULL, NULL, sargv, environ);
    if (r != 0) {
        printf("posix_spawn failed: %s\n", strerror(r));
        return 1;
    }
    if (reap(s, "posix_spawn"))
        return 1;

    int p[2];
    if (pipe(p) != 0) {
        perror("pipe");
        return 1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addclose(&fa, p[0]);
    char *pargv[] = {self_path, "child", "posix_spawn-to-pipe", me, NULL};
    r = posix_spawn(&s, self_path, &fa, NULL, pargv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (r != 0) {
        printf("posix_spawn failed: %s\n", strerror(r));
        return 1;
    }
    close(p[1]);
    char buf[512];
    size_t got = 0;
    ssize_t k;
    while (got < sizeof buf - 1 && (k = read(p[0], buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)k;
    buf[got] = 0;
    printf("read from the pipe: %s", buf);
    return reap(s, "posix_spawn-to-pipe");
}
