/* Is there a hardware PMU? Opens a counter of retired instructions for this thread
 * (perf_event_open, PERF_TYPE_HARDWARE). Prints "yes", or "no: <errno text>" and exits 1. */
#include <errno.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.type = PERF_TYPE_HARDWARE;
    a.config = PERF_COUNT_HW_INSTRUCTIONS;
    a.exclude_kernel = 1;
    a.exclude_hv = 1;
    a.disabled = 1;
    int fd = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
    if (fd < 0) {
        printf("no: perf_event_open(PERF_TYPE_HARDWARE, instructions) failed with %s (%s)\n",
               errno == ENOENT ? "ENOENT" : "an error", strerror(errno));
        return 1;
    }
    close(fd);
    printf("yes\n");
    return 0;
}
