/* RDRAND cannot be trapped on this machine (no CPUID faulting, hermit #49): replay must detect
 * the divergence it causes instead of replaying silently. Prints "no-rdrand" where absent. */
#include <cpuid.h>
#include <stdio.h>

int main(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_RDRND)) {
        printf("no-rdrand\n");
        return 0;
    }
    unsigned long long v = 0;
    unsigned char ok = 0;
    for (int i = 0; i < 10 && !ok; i++)
        __asm__ volatile("rdrand %0; setc %1" : "=r"(v), "=qm"(ok));
    printf("rdrand %016llx\n", v);
    return 0;
}
