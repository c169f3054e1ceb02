/* Exercises pipe2, write and read within one process (no fork). */
#define _GNU_SOURCE
#include <err.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        err(1, "pipe2");
    for (int i = 0; i < 3; i++) {
        char msg[64];
        int len = snprintf(msg, sizeof msg, "message %d through the pipe", i);
        if (write(fds[1], msg, (size_t)len) != len)
            err(1, "write pipe");
        char buf[64];
        ssize_t n = read(fds[0], buf, sizeof buf - 1);
        if (n < 0)
            err(1, "read pipe");
        buf[n] = '\0';
        printf("pipe read %zd bytes: %s\n", n, buf);
    }
    close(fds[1]);
    char buf[8];
    printf("pipe read after close %zd\n", read(fds[0], buf, sizeof buf));
    close(fds[0]);
    return 0;
}
