/* Exercises the 16 AT_RANDOM bytes the kernel puts in the auxiliary vector
 * and the stack canary glibc derives from them (read from %fs:0x28). Neither
 * involves a syscall: ftexec must record and restore them at launch. */
#include <err.h>
#include <stdio.h>
#include <sys/auxv.h>

int main(void)
{
    const unsigned char *r = (const unsigned char *)getauxval(AT_RANDOM);
    if (r == NULL)
        errx(1, "getauxval(AT_RANDOM) returned NULL");
    printf("at_random ");
    for (int i = 0; i < 16; i++)
        printf("%02x", r[i]);
    printf("\n");
    unsigned long canary;
    __asm__ volatile("mov %%fs:0x28, %0" : "=r"(canary));
    printf("stack_canary %016lx\n", canary);
    return 0;
}
