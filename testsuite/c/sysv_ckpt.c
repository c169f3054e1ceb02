/* System V objects that a checkpoint keeps: a semaphore set of three (values 1, 5, 9 set with
 * SETALL, one changed by a semop), a message queue holding three messages (types 3, 1, 2)
 * while the program sleeps between steps (a checkpoint may fall anywhere), and the ids of the
 * next objects made (a queue made and removed first moves the kernel's cycle). Prints the
 * messages taken by type, the values, and those ids. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <unistd.h>

struct msg {
    long type;
    char text[16];
};

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void pause_a_little(void)
{
    for (int i = 0; i < 3; i++)
        usleep(1000);
}

int main(void)
{
    int gone = msgget(IPC_PRIVATE, 0600);
    if (gone < 0 || msgctl(gone, IPC_RMID, NULL) != 0)
        die("first queue");
    int set = semget(IPC_PRIVATE, 3, 0640);
    unsigned short values[3] = { 1, 5, 9 };
    if (set < 0 || semctl(set, 0, SETALL, values) != 0)
        die("semaphore set");
    int q = msgget(IPC_PRIVATE, 0600);
    if (q < 0)
        die("msgget");
    long types[3] = { 3, 1, 2 };
    for (int i = 0; i < 3; i++) {
        struct msg m = { types[i], "" };
        snprintf(m.text, sizeof m.text, "message %ld", types[i]);
        if (msgsnd(q, &m, strlen(m.text) + 1, IPC_NOWAIT) != 0)
            die("msgsnd");
        pause_a_little();
    }
    struct sembuf op = { 1, -2, 0 };
    if (semop(set, &op, 1) != 0)
        die("semop");
    pause_a_little();
    for (long t = 1; t <= 3; t++) {
        struct msg m;
        ssize_t n = msgrcv(q, &m, sizeof m.text, t, IPC_NOWAIT);
        if (n < 0)
            die("msgrcv");
        printf("took type %ld: %s (%zd bytes)\n", m.type, m.text, n);
        pause_a_little();
    }
    if (semctl(set, 0, GETALL, values) != 0)
        die("GETALL");
    printf("semaphores %u %u %u\n", values[0], values[1], values[2]);
    int next_q = msgget(IPC_PRIVATE, 0600), next_set = semget(IPC_PRIVATE, 1, 0600);
    printf("first queue %d, set %d, queue %d, next queue %d, next set %d\n", gone, set, q, next_q, next_set);
    msgctl(q, IPC_RMID, NULL);
    msgctl(next_q, IPC_RMID, NULL);
    semctl(set, 0, IPC_RMID);
    semctl(next_set, 0, IPC_RMID);
    return 0;
}
