/* Benchmark load: N raw syscalls of one kind.
 *   loop clock N     clock_gettime as a raw syscall (always traced and recorded)
 *   loop allowed N   close(-1) (allowed by the seccomp filter, never stops)
 *   loop sockpair N  N/2 times: write 64 bytes to a non-blocking socketpair, read them from the
 *                    other end (glibc's write and read: the syscall buffer's case)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: loop clock|allowed N\n");
        return 2;
    }
    long n = atol(argv[2]);
    struct timespec ts = {0};
    long acc = 0;
    if (strcmp(argv[1], "clock") == 0) {
        for (long i = 0; i < n; i++) {
            syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
            acc += ts.tv_nsec & 1;
        }
    } else if (strcmp(argv[1], "sockpair") == 0) {
        int sv[2];
        char buf[64] = {1};
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
            return 1;
        for (long i = 0; i < n / 2; i++) {
            acc += write(sv[0], buf, sizeof buf);
            acc += read(sv[1], buf, sizeof buf);
        }
    } else {
        for (long i = 0; i < n; i++)
            acc += syscall(SYS_close, -1);
    }
    printf("done %ld\n", acc);
    return 0;
}
