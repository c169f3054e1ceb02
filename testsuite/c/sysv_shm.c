/* System V shared memory across a checkpoint: segments with and without a key, one removed
 * while attached (SHM_DEST), one removed before, children forked each round that inherit the
 * attachments and write into them, and a new segment made every round, whose id must be the
 * recording's after a restore (the kernel allocates ids in a cycle that a restore must put
 * back). The parent prints what it reads from the segments, each new id, and IPC_STAT's size,
 * mode and attach count. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void *attach(int id)
{
    void *p = shmat(id, NULL, 0);
    if (p == (void *)-1)
        die("shmat");
    return p;
}

static void stat_of(const char *name, int id)
{
    struct shmid_ds ds;
    if (shmctl(id, IPC_STAT, &ds) != 0)
        die("shmctl IPC_STAT");
    printf("%s: size %zu mode %o attached %lu\n", name, ds.shm_segsz, ds.shm_perm.mode & 0777,
           (unsigned long)ds.shm_nattch);
}

int main(void)
{
    int a = shmget(IPC_PRIVATE, 3 * 4096 + 100, IPC_CREAT | 0600);
    int b = shmget(0x46545348, 4096, IPC_CREAT | IPC_EXCL | 0640);
    int before = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    if (a < 0 || b < 0 || before < 0)
        die("shmget");
    shmctl(before, IPC_RMID, NULL);
    char *pa = attach(a);
    long *pb = attach(b);
    int g = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    if (g < 0)
        die("shmget");
    long *pg = attach(g);
    shmctl(g, IPC_RMID, NULL);
    printf("segments %d %d %d, removed %d\n", a, b, g, before);
    for (int r = 0; r < 4; r++) {
        int fds[2];
        if (pipe(fds) != 0)
            die("pipe");
        pid_t p = fork();
        if (p < 0)
            die("fork");
        if (p == 0) {
            for (int i = 0; i < 40; i++) {
                pb[0] += 1;
                pa[i * 300] = (char)('a' + r);
                pg[0] += 2;
                getppid();
            }
            if (write(fds[1], "x", 1) != 1)
                _exit(2);
            _exit(0);
        }
        char c;
        if (read(fds[0], &c, 1) != 1)
            die("read");
        close(fds[0]);
        close(fds[1]);
        waitpid(p, NULL, 0);
        int n = shmget(IPC_PRIVATE, 4096 * (r + 1), IPC_CREAT | 0600);
        if (n < 0)
            die("shmget");
        printf("round %d: new segment %d, b %ld, g %ld, a[%d] %c, a[last] %d\n", r, n, pb[0], pg[0], 39 * 300,
               pa[39 * 300], pa[3 * 4096 + 99]);
        stat_of("b", b);
        if (r % 2)
            shmctl(n, IPC_RMID, NULL);
        pa[3 * 4096 + 99] = (char)(r + 1);
        fflush(stdout);
    }
    stat_of("a", a);
    shmdt(pa);
    shmdt(pb);
    shmdt(pg);
    shmctl(a, IPC_RMID, NULL);
    shmctl(b, IPC_RMID, NULL);
    return 0;
}
