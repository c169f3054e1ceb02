/* Exercises nanosleep and clock_nanosleep (relative and TIMER_ABSTIME) and
 * prints the elapsed CLOCK_MONOTONIC time of each, in nanoseconds. */
#include <err.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static long long now_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        err(1, "clock_gettime");
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(void)
{
    struct timespec req = { .tv_sec = 0, .tv_nsec = 5000000 };
    long long t0 = now_ns();
    if (nanosleep(&req, NULL) != 0)
        err(1, "nanosleep");
    long long t1 = now_ns();
    printf("nanosleep 5ms elapsed_ns %lld\n", t1 - t0);

    int rc = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, NULL);
    if (rc != 0)
        errx(1, "clock_nanosleep relative: %s", strerror(rc));
    long long t2 = now_ns();
    printf("clock_nanosleep relative 5ms elapsed_ns %lld\n", t2 - t1);

    long long deadline = t2 + 5000000;
    struct timespec abs = { .tv_sec = deadline / 1000000000LL, .tv_nsec = deadline % 1000000000LL };
    rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &abs, NULL);
    if (rc != 0)
        errx(1, "clock_nanosleep absolute: %s", strerror(rc));
    long long t3 = now_ns();
    printf("clock_nanosleep absolute 5ms elapsed_ns %lld\n", t3 - t2);
    return 0;
}
