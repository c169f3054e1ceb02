/* Exercises the rdtsc and rdtscp instructions (no syscall involved). Under
 * ftexec PR_SET_TSC makes them fault so their values can be recorded. */
#include <stdio.h>
#include <x86intrin.h>

int main(void)
{
    unsigned long long a = __rdtsc();
    unsigned int aux = 0;
    unsigned long long b = __rdtscp(&aux);
    unsigned int lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    unsigned long long c = ((unsigned long long)hi << 32) | lo;
    printf("rdtsc %llu\n", a);
    printf("rdtscp %llu aux %u\n", b, aux);
    printf("rdtsc asm %llu\n", c);
    return 0;
}
