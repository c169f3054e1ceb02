/* Reads CLOCK_MONOTONIC twice and 16 random bytes, and prints what it got, so a test can find
 * the same values in `ftdbg events` and the duration in `ftdbg stats`. */
#include <stdio.h>
#include <sys/random.h>
#include <time.h>

int main(void) {
    struct timespec a, b;
    unsigned char r[16];
    if (clock_gettime(CLOCK_MONOTONIC, &a) != 0)
        return 1;
    volatile unsigned long spin = 0;
    for (unsigned long i = 0; i < 1000000; i++)
        spin += i;
    if (clock_gettime(CLOCK_MONOTONIC, &b) != 0)
        return 1;
    if (getrandom(r, sizeof r, 0) != sizeof r)
        return 1;
    printf("t1 %lld %ld\n", (long long)a.tv_sec, a.tv_nsec);
    printf("t2 %lld %ld\n", (long long)b.tv_sec, b.tv_nsec);
    printf("random ");
    for (unsigned i = 0; i < sizeof r; i++)
        printf("%02x", r[i]);
    printf("\n");
    return 0;
}
