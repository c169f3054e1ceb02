/* Exercises reading /proc/self/stat (pid, times, start time, addresses): a
 * kernel-generated file whose content must be recorded. Prints it verbatim. */
#include <err.h>
#include <stdio.h>

int main(void)
{
    FILE *f = fopen("/proc/self/stat", "re");
    if (f == NULL)
        err(1, "open /proc/self/stat");
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    if (ferror(f))
        err(1, "read /proc/self/stat");
    fclose(f);
    printf("proc_self_stat %zu bytes\n", n);
    fwrite(buf, 1, n, stdout);
    return 0;
}
