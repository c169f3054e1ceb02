/* Syscalls ftexec refuses with an errno: io_uring (bypasses interposition, rr #2613), ptrace by the
 * tracee (it is already traced), mq_notify (a message queue's notification is not replayed yet). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

static void show(const char *what, long r) {
    printf("%s %ld %s\n", what, r, r < 0 ? strerrorname_np(errno) : "ok");
}

int main(void) {
    char params[120] = {0};
    show("io_uring_setup", syscall(SYS_io_uring_setup, 8, params));
    show("ptrace_traceme", ptrace(PTRACE_TRACEME, 0, 0, 0));
    show("mq_notify", syscall(SYS_mq_notify, -1, NULL));
    return 0;
}
