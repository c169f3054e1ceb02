/* System V IPC among the program's processes, as PostgreSQL uses it: a shared memory segment
 * with a counter, a semaphore as its lock, a message queue. The parent creates them with a
 * fixed key and IPC_EXCL (so two runs at once must not share them: each has its own IPC
 * namespace under ftexec), forks 3 children that each add 1000 to the counter under the lock
 * (blocking semop, contended) and send a message; the parent receives the 3 messages (blocking
 * msgrcv), reaps the children, prints the counter, the messages in order of arrival, and what
 * IPC_STAT says, then removes everything. argv[1] = seconds to sleep while holding the objects
 * (default 0), so that a test can run two at once; argv[2] = "undo": the lock's semops have
 * SEM_UNDO. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

struct msg {
    long type;
    char text[32];
};

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static short sem_flags;

static void sem(int id, int delta)
{
    struct sembuf op = { 0, (short)delta, sem_flags };
    if (semop(id, &op, 1) != 0)
        die("semop");
}

int main(int argc, char **argv)
{
    int hold = argc > 1 ? atoi(argv[1]) : 0;
    if (argc > 2 && strcmp(argv[2], "undo") == 0)
        sem_flags = SEM_UNDO;
    key_t key = 0x46544558; /* "FTEX" */
    int shm = shmget(key, 4096, IPC_CREAT | IPC_EXCL | 0600);
    if (shm < 0)
        die("shmget (is another run sharing this IPC namespace?)");
    int semid = semget(key, 1, IPC_CREAT | IPC_EXCL | 0600);
    int q = msgget(key, IPC_CREAT | IPC_EXCL | 0600);
    if (semid < 0 || q < 0)
        die("semget/msgget");
    if (semctl(semid, 0, SETVAL, 1) != 0)
        die("semctl SETVAL");
    volatile long *counter = shmat(shm, NULL, 0);
    if (counter == (void *)-1)
        die("shmat");
    *counter = 0;
    for (int c = 0; c < 3; c++) {
        pid_t p = fork();
        if (p < 0)
            die("fork");
        if (p == 0) {
            for (int i = 0; i < 1000; i++) {
                sem(semid, -1);
                long v = *counter;
                if (i % 100 == 0)
                    usleep(100); /* hold the lock a while: the others wait in semop */
                *counter = v + 1;
                sem(semid, 1);
            }
            struct msg m = { 1 + c, "" };
            snprintf(m.text, sizeof m.text, "child %d done", c);
            if (msgsnd(q, &m, sizeof m.text, 0) != 0)
                die("msgsnd");
            shmdt((void *)counter);
            _exit(0);
        }
    }
    for (int c = 0; c < 3; c++) {
        struct msg m;
        if (msgrcv(q, &m, sizeof m.text, 0, 0) < 0)
            die("msgrcv");
        printf("message type %ld: %s\n", m.type, m.text);
    }
    while (wait(NULL) > 0) {
    }
    struct shmid_ds ds;
    if (shmctl(shm, IPC_STAT, &ds) != 0)
        die("shmctl IPC_STAT");
    printf("counter %ld, semaphore %d, attached %lu, segment size %zu\n", *counter, semctl(semid, 0, GETVAL),
           (unsigned long)ds.shm_nattch, ds.shm_segsz);
    fflush(stdout);
    sleep(hold);
    shmdt((void *)counter);
    shmctl(shm, IPC_RMID, NULL);
    semctl(semid, 0, IPC_RMID);
    msgctl(q, IPC_RMID, NULL);
    return 0;
}
