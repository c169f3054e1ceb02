/* POSIX message queues among the program's processes: the parent makes a queue of 4 messages
 * (O_EXCL: two runs at once must not share it; each has its own IPC namespace under ftexec),
 * forks a child that takes 6 messages with blocking receives (it waits for most), and sends 6
 * with priorities 1..3 and a pause every other one; then a non-blocking receive on the empty
 * queue (EAGAIN), the attributes, a pause with the queue closed, and the unlink. argv[1] =
 * "full": the parent fills the queue and sends one more (a blocking send on a full queue, which
 * ftexec refuses by name). */
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
    perror(what);
    exit(1);
}

int main(int argc, char **argv)
{
    const char *name = "/ftexec-mqueue-test";
    struct mq_attr attr = { .mq_maxmsg = 4, .mq_msgsize = 32 };
    mqd_t q = mq_open(name, O_CREAT | O_EXCL | O_RDWR, 0600, &attr);
    if (q == (mqd_t)-1)
        die("mq_open (is another run sharing this IPC namespace?)");
    if (argc > 1 && strcmp(argv[1], "full") == 0) {
        for (int i = 0; i < 5; i++) {
            if (mq_send(q, "m", 2, 1) != 0)
                die("mq_send");
            printf("sent %d\n", i);
            fflush(stdout);
        }
        return 0;
    }
    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        for (int i = 0; i < 6; i++) {
            char buf[32];
            unsigned prio;
            ssize_t n = mq_receive(q, buf, sizeof buf, &prio);
            if (n < 0)
                die("mq_receive");
            printf("child took \"%s\" (priority %u, %zd bytes)\n", buf, prio, n);
            fflush(stdout);
        }
        _exit(0);
    }
    for (int i = 0; i < 6; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "message %d", i);
        if (mq_send(q, buf, strlen(buf) + 1, 1 + i % 3) != 0)
            die("mq_send");
        if (i % 2 == 1) {
            struct timespec pause = { 0, 2000000 };
            nanosleep(&pause, NULL);
        }
    }
    int status;
    if (waitpid(child, &status, 0) != child)
        die("waitpid");
    struct mq_attr now;
    mqd_t nb = mq_open(name, O_RDONLY | O_NONBLOCK);
    char buf[32];
    errno = 0;
    ssize_t n = mq_receive(nb, buf, sizeof buf, NULL);
    if (mq_getattr(q, &now) != 0)
        die("mq_getattr");
    printf("child status %d; non-blocking receive on the empty queue: %zd (%s); maxmsg %ld, msgsize %ld, now %ld\n",
           WEXITSTATUS(status), n, errno == EAGAIN ? "EAGAIN" : strerror(errno), now.mq_maxmsg, now.mq_msgsize,
           now.mq_curmsgs);
    mq_close(nb);
    mq_close(q);
    // The queue outlives its fds for a while: a checkpoint must not lose it.
    struct timespec pause = { 0, 1000000 };
    nanosleep(&pause, NULL);
    if (mq_unlink(name) != 0)
        die("mq_unlink");
    return 0;
}
