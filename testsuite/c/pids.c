/* Exercises getpid, getppid and gettid (glibc wrappers and raw syscalls). */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
    printf("getpid %d\n", (int)getpid());
    printf("getppid %d\n", (int)getppid());
    printf("gettid %d\n", (int)gettid());
    printf("raw getpid %ld\n", syscall(SYS_getpid));
    printf("raw gettid %ld\n", syscall(SYS_gettid));
    return 0;
}
