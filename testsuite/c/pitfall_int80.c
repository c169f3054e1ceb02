/* A 32-bit syscall (int 0x80) is of another architecture: the filter kills the process (SIGSYS)
 * rather than let an unrecorded syscall through. */
#include <stdio.h>

int main(void) {
    printf("before\n");
    fflush(stdout);
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory"); /* 32-bit getpid */
    printf("after %ld\n", r);
    return 0;
}
