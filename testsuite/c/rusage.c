/* Exercises getrusage(2) and times(2) after burning a little CPU. */
#include <err.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/times.h>

int main(void)
{
    volatile unsigned long x = 0;
    for (unsigned long i = 0; i < 20000000; i++)
        x += i;
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        err(1, "getrusage");
    printf("ru_utime %ld.%06ld ru_stime %ld.%06ld\n", (long)ru.ru_utime.tv_sec,
           (long)ru.ru_utime.tv_usec, (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec);
    printf("ru_maxrss %ld ru_minflt %ld ru_majflt %ld ru_nvcsw %ld ru_nivcsw %ld\n",
           ru.ru_maxrss, ru.ru_minflt, ru.ru_majflt, ru.ru_nvcsw, ru.ru_nivcsw);
    struct tms t;
    clock_t now = times(&t);
    if (now == (clock_t)-1)
        err(1, "times");
    printf("times %ld utime %ld stime %ld cutime %ld cstime %ld\n", (long)now,
           (long)t.tms_utime, (long)t.tms_stime, (long)t.tms_cutime, (long)t.tms_cstime);
    return 0;
}
