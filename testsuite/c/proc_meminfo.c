/* Exercises reading /proc/meminfo: a kernel-generated file whose content must
 * be recorded. Prints it verbatim. */
#include <err.h>
#include <stdio.h>

int main(void)
{
    FILE *f = fopen("/proc/meminfo", "re");
    if (f == NULL)
        err(1, "open /proc/meminfo");
    char line[512];
    int lines = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        fputs(line, stdout);
        lines++;
    }
    if (ferror(f))
        err(1, "read /proc/meminfo");
    fclose(f);
    printf("proc_meminfo %d lines\n", lines);
    return 0;
}
