/* A statically linked program (built with gcc -static, chosen by the static_
 * prefix of this file name): no dynamic loader, and glibc's static start-up
 * finds the vDSO and AT_RANDOM itself. Exercises clock_gettime,
 * gettimeofday, time, getrandom, getpid and the AT_RANDOM bytes. */
#include <err.h>
#include <stdio.h>
#include <sys/auxv.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int main(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        err(1, "clock_gettime");
    printf("clock_gettime realtime %lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
    struct timeval tv;
    if (gettimeofday(&tv, NULL) != 0)
        err(1, "gettimeofday");
    printf("gettimeofday %lld.%06ld\n", (long long)tv.tv_sec, (long)tv.tv_usec);
    printf("time %lld\n", (long long)time(NULL));
    unsigned char buf[16];
    if (getrandom(buf, sizeof buf, 0) != (ssize_t)sizeof buf)
        err(1, "getrandom");
    printf("getrandom ");
    for (size_t i = 0; i < sizeof buf; i++)
        printf("%02x", buf[i]);
    printf("\n");
    const unsigned char *r = (const unsigned char *)getauxval(AT_RANDOM);
    if (r == NULL)
        errx(1, "getauxval(AT_RANDOM) returned NULL");
    printf("at_random ");
    for (int i = 0; i < 16; i++)
        printf("%02x", r[i]);
    printf("\n");
    printf("getpid %d\n", (int)getpid());
    return 0;
}
