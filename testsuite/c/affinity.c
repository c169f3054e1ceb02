/* Exercises sched_getaffinity(2) and get_nprocs/get_nprocs_conf (which glibc
 * answers from /sys/devices/system/cpu). */
#define _GNU_SOURCE
#include <err.h>
#include <sched.h>
#include <stdio.h>
#include <sys/sysinfo.h>

int main(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        err(1, "sched_getaffinity");
    printf("affinity count %d cpus", CPU_COUNT(&set));
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &set))
            printf(" %d", i);
    printf("\n");
    printf("get_nprocs %d\n", get_nprocs());
    printf("get_nprocs_conf %d\n", get_nprocs_conf());
    return 0;
}
