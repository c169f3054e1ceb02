/* fork and waitpid: the child exits 7 and the parent prints that status and exits 0. */
#include <err.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    pid_t pid = fork();
    if (pid < 0)
        err(1, "fork");
    if (pid == 0)
        _exit(7);
    int status;
    if (waitpid(pid, &status, 0) != pid)
        err(1, "waitpid");
    printf("child exited %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}
