/* Syscalls ftexec refuses with an errno: io_uring (bypasses interposition, rr #2613), ptrace by the
 * tracee (it is already traced), SysV shared memory (written by processes nobody traces). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <unistd.h>

static void show(const char *what, long r) {
    printf("%s %ld %s\n", what, r, r < 0 ? strerrorname_np(errno) : "ok");
}

int main(void) {
    char params[120] = {0};
    show("io_uring_setup", syscall(SYS_io_uring_setup, 8, params));
    show("ptrace_traceme", ptrace(PTRACE_TRACEME, 0, 0, 0));
    show("shmget", shmget(IPC_PRIVATE, 4096, 0600));
    return 0;
}
