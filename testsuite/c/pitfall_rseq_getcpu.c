/* rseq must be refused (rr #2277, #3090) so glibc never reads a CPU number from the rseq area,
 * and getcpu is emulated (CPU 0) so sched_getcpu() is the same on every run and replica. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
    char area[64] __attribute__((aligned(32))) = {0};
    long r = syscall(SYS_rseq, area, 32, 0, 0x53053053);
    printf("rseq %ld %s\n", r, r < 0 ? strerrorname_np(errno) : "registered");
    for (int i = 0; i < 3; i++)
        printf("sched_getcpu %d\n", sched_getcpu());
    unsigned cpu = 99, node = 99;
    r = syscall(SYS_getcpu, &cpu, &node, NULL);
    printf("getcpu %ld cpu %u node %u\n", r, cpu, node);
    return 0;
}
