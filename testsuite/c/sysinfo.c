/* Exercises sysinfo(2): uptime, load, memory and process counts. */
#include <err.h>
#include <stdio.h>
#include <sys/sysinfo.h>

int main(void)
{
    struct sysinfo si;
    if (sysinfo(&si) != 0)
        err(1, "sysinfo");
    printf("uptime %ld\n", si.uptime);
    printf("loads %lu %lu %lu\n", si.loads[0], si.loads[1], si.loads[2]);
    printf("totalram %lu freeram %lu sharedram %lu bufferram %lu\n",
           si.totalram, si.freeram, si.sharedram, si.bufferram);
    printf("totalswap %lu freeswap %lu\n", si.totalswap, si.freeswap);
    printf("procs %u mem_unit %u\n", (unsigned)si.procs, si.mem_unit);
    return 0;
}
