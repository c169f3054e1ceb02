/* Exercises clock_gettime and gettimeofday as raw syscalls (syscall(2)),
 * bypassing the vDSO: the tracer sees a real syscall it must record. */
#include <err.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int main(void)
{
    struct timespec ts;
    if (syscall(SYS_clock_gettime, CLOCK_REALTIME, &ts) != 0)
        err(1, "SYS_clock_gettime(CLOCK_REALTIME)");
    printf("raw clock_gettime realtime %lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
    if (syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts) != 0)
        err(1, "SYS_clock_gettime(CLOCK_MONOTONIC)");
    printf("raw clock_gettime monotonic %lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
    if (syscall(SYS_clock_getres, CLOCK_REALTIME, &ts) != 0)
        err(1, "SYS_clock_getres");
    printf("raw clock_getres realtime %lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
    struct timeval tv;
    if (syscall(SYS_gettimeofday, &tv, NULL) != 0)
        err(1, "SYS_gettimeofday");
    printf("raw gettimeofday %lld.%06ld\n", (long long)tv.tv_sec, (long)tv.tv_usec);
    return 0;
}
