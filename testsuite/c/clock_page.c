#define _GNU_SOURCE
/* Reads the clock through every vDSO function, far more often than there are syscalls: 5,000
 * clock_gettime calls in a row (more than the clock page buffer holds, so the recording also
 * takes the buffer-full path), gettimeofday with and without a timezone, time() with and without
 * a pointer, clock_getres and sched_getcpu (traced syscalls behind the vDSO), and a forked child
 * that reads the clock on its own. Prints checksums of every value read, so one value replayed
 * wrong changes the output. */
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t mix(uint64_t h, uint64_t v)
{
    return (h ^ v) * 0x100000001b3ull;
}

static uint64_t burst(int n, clockid_t id, long *ns_spread)
{
    uint64_t h = 0xcbf29ce484222325ull;
    struct timespec first = { 0 }, ts = { 0 };
    for (int i = 0; i < n; i++) {
        if (clock_gettime(id, &ts) != 0)
            return 0;
        if (i == 0)
            first = ts;
        h = mix(h, (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec);
    }
    *ns_spread = (ts.tv_sec - first.tv_sec) * 1000000000L + (ts.tv_nsec - first.tv_nsec);
    return h;
}

int main(void)
{
    long spread;
    uint64_t h = burst(5000, CLOCK_MONOTONIC, &spread);
    printf("5000 monotonic reads: checksum %016llx spread %ld ns\n", (unsigned long long)h, spread);
    printf("pid %d\n", (int)getpid()); /* a syscall between bursts */
    h = burst(300, CLOCK_REALTIME, &spread);
    printf("300 realtime reads: checksum %016llx spread %ld ns\n", (unsigned long long)h, spread);

    struct timeval tv;
    struct timezone tz;
    if (gettimeofday(&tv, NULL) != 0 || gettimeofday(&tv, &tz) != 0)
        return 1;
    printf("gettimeofday %lld.%06ld tz %d\n", (long long)tv.tv_sec, (long)tv.tv_usec, tz.tz_minuteswest);
    time_t t1 = time(NULL), t2 = 0;
    time(&t2);
    printf("time %lld %lld\n", (long long)t1, (long long)t2);
    struct timespec res;
    if (clock_getres(CLOCK_MONOTONIC, &res) != 0)
        return 1;
    printf("resolution %ld ns, cpu %d\n", res.tv_nsec, sched_getcpu());

    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        uint64_t hc = burst(1000, CLOCK_BOOTTIME, &spread);
        printf("child: 1000 boottime reads: checksum %016llx\n", (unsigned long long)hc);
        fflush(stdout);
        _exit(0);
    }
    int status;
    waitpid(child, &status, 0);
    h = burst(200, CLOCK_MONOTONIC_COARSE, &spread);
    printf("parent after child: checksum %016llx child status %d\n", (unsigned long long)h, status);
    return 0;
}
