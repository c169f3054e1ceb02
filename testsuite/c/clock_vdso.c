/* Exercises clock_gettime and gettimeofday through glibc, which uses the vDSO
 * natively (no syscall at all). Under ftexec the vDSO is hidden, so these must
 * trap and their recorded values must come back on replay. */
#include <err.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

int main(void)
{
    static const struct { clockid_t id; const char *name; } clocks[] = {
        { CLOCK_REALTIME, "realtime" },
        { CLOCK_MONOTONIC, "monotonic" },
        { CLOCK_MONOTONIC_RAW, "monotonic_raw" },
        { CLOCK_BOOTTIME, "boottime" },
        { CLOCK_PROCESS_CPUTIME_ID, "process_cputime" },
    };
    for (size_t i = 0; i < sizeof clocks / sizeof clocks[0]; i++) {
        struct timespec ts;
        if (clock_gettime(clocks[i].id, &ts) != 0)
            err(1, "clock_gettime(%s)", clocks[i].name);
        printf("clock_gettime %s %lld.%09ld\n", clocks[i].name, (long long)ts.tv_sec, ts.tv_nsec);
    }
    struct timeval tv;
    if (gettimeofday(&tv, NULL) != 0)
        err(1, "gettimeofday");
    printf("gettimeofday %lld.%06ld\n", (long long)tv.tv_sec, (long)tv.tv_usec);
    return 0;
}
