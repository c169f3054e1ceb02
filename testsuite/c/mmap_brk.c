/* Exercises the addresses the kernel chooses for brk and mmap: sbrk(0), a
 * small malloc (brk heap), a big malloc (mmap), an anonymous mmap, and the
 * address of a stack variable. All differ between native runs under ASLR. */
#include <err.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void)
{
    int on_stack = 0;
    printf("sbrk0 %p\n", sbrk(0));
    char *small = malloc(64);
    char *big = malloc(8 << 20);
    if (small == NULL || big == NULL)
        errx(1, "malloc failed");
    memset(small, 1, 64);
    memset(big, 2, 8 << 20);
    printf("malloc small %p\n", (void *)small);
    printf("malloc big %p\n", (void *)big);
    printf("sbrk0 after malloc %p\n", sbrk(0));
    void *m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        err(1, "mmap");
    memset(m, 3, 1 << 20);
    printf("mmap anon %p\n", m);
    printf("stack %p\n", (void *)&on_stack);
    printf("checksum %u\n", (unsigned)(small[0] + big[(8 << 20) - 1] + ((char *)m)[12345]));
    if (munmap(m, 1 << 20) != 0)
        err(1, "munmap");
    free(big);
    free(small);
    return 0;
}
