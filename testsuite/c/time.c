/* Exercises time(2): through glibc (vDSO natively) and as the raw SYS_time
 * syscall. Its resolution is one second, so two native runs only differ when
 * a second boundary lies between them (the test waits for that). */
#include <err.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(void)
{
    time_t t = time(NULL);
    if (t == (time_t)-1)
        err(1, "time");
    printf("time %lld\n", (long long)t);
    time_t raw = 0;
    long r = syscall(SYS_time, &raw);
    if (r == -1)
        err(1, "SYS_time");
    printf("raw time %ld stored %lld\n", r, (long long)raw);
    return 0;
}
