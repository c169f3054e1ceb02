/* Prints, then sleeps for a minute in one nanosleep: a test kills it (kill -9) mid-syscall. */
#include <stdio.h>
#include <time.h>

int main(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    printf("started %ld\n", (long)t.tv_sec);
    fflush(stdout);
    struct timespec d = {60, 0};
    nanosleep(&d, NULL);
    printf("woke\n");
    return 0;
}
