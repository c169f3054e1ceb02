/* msgsnd to a full System V message queue: natively the sender waits until its child receives.
 * Under ftexec msgsnd runs holding the token, so that wait could never end: the recording stops
 * with an error that says so. With room in the queue (argument "room"), nothing waits. */
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct msg {
    long type;
    char text[6000];
};

int main(int argc, char **argv) {
    int room = argc > 1 && strcmp(argv[1], "room") == 0;
    int id = msgget(IPC_PRIVATE, 0600);
    if (id < 0)
        return 1;
    pid_t child = fork();
    if (child == 0) {
        struct timespec t = {0, 100 * 1000 * 1000};
        nanosleep(&t, NULL);
        struct msg m;
        for (int i = 0; i < 3; i++)
            if (msgrcv(id, &m, sizeof m.text, 0, 0) < 0)
                return 1;
        return 0;
    }
    struct msg m = {.type = 1};
    memset(m.text, 'x', sizeof m.text);
    /* Three of 6000 bytes do not fit the default 16384-byte queue; three of 100 do. */
    size_t len = room ? 100 : sizeof m.text;
    for (int i = 0; i < 3; i++)
        if (msgsnd(id, &m, len, 0) != 0)
            return 1;
    int status;
    waitpid(child, &status, 0);
    msgctl(id, IPC_RMID, NULL);
    printf("sent 3 messages of %zu bytes, child exited %d\n", len, WEXITSTATUS(status));
    return 0;
}
