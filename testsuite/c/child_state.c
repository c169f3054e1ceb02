/* A child whose umask and resource limits differ from its parent's (as PostgreSQL's postmaster
 * sets umask 077 under runuser): a restore forks it from the restored parent and must give it
 * its own. The child reports both, with syscalls in between so that checkpoints fall there. */
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    umask(022);
    pid_t p = fork();
    if (p < 0)
        return 1;
    if (p == 0) {
        umask(077);
        struct rlimit r = { 200, 300 };
        if (setrlimit(RLIMIT_NOFILE, &r) != 0)
            return 2;
        for (int i = 0; i < 30; i++)
            getppid();
        mode_t m = umask(0);
        struct rlimit now;
        getrlimit(RLIMIT_NOFILE, &now);
        printf("child: umask %03o, nofile %lu/%lu\n", (unsigned)m, (unsigned long)now.rlim_cur,
               (unsigned long)now.rlim_max);
        return 0;
    }
    int st;
    waitpid(p, &st, 0);
    mode_t m = umask(0);
    printf("parent: umask %03o, child status %d\n", (unsigned)m, WEXITSTATUS(st));
    return 0;
}
