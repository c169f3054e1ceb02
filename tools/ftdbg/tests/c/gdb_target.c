/* A target for `ftdbg gdb`: two rounds, each takes a value from getrandom into a global and
 * reports it from a function a debugger can break on. */
#include <stdio.h>
#include <sys/random.h>

volatile unsigned long value;

__attribute__((noinline)) void report(int round) {
    printf("round %d value %lu\n", round, value);
    fflush(stdout);
}

int main(void) {
    for (int round = 1; round <= 2; round++) {
        unsigned long v;
        if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v)
            return 1;
        value = v;
        report(round);
    }
    return 0;
}
