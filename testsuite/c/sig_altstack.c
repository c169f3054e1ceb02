// sigaltstack: a SIGUSR1 handler installed with SA_ONSTACK runs on the alternate stack; it
// reports whether its local variable lies inside it (and the SS_ONSTACK flag) and the time.
// (Where the handler runs relative to raise() is checked by sig_kill self.)
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static char *alt_base;
static size_t alt_size;
static volatile sig_atomic_t ran, on_alt, flags_onstack;
static volatile long handler_ns;

static void on_usr1(int sig) {
    (void)sig;
    volatile char local = 0;
    uintptr_t p = (uintptr_t)&local;
    on_alt = p >= (uintptr_t)alt_base && p < (uintptr_t)alt_base + alt_size;
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0)
        flags_onstack = (cur.ss_flags & SS_ONSTACK) != 0;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    handler_ns = now.tv_nsec;
    ran = 1;
}

int main(void) {
    alt_size = 64 * 1024;
    alt_base = malloc(alt_size);
    if (alt_base == NULL)
        return 1;
    stack_t ss = {.ss_sp = alt_base, .ss_size = alt_size, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        perror("sigaltstack");
        return 1;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL) != 0) {
        perror("sigaction");
        return 1;
    }
    kill(getpid(), SIGUSR1);
    while (!ran)
        getppid();
    printf("local variable on the alternate stack: %d\n", (int)on_alt);
    printf("sigaltstack reports SS_ONSTACK in the handler: %d\n", (int)flags_onstack);
    printf("handler clock ns %ld\n", handler_ns);
    stack_t after;
    sigaltstack(NULL, &after);
    printf("after the handler SS_ONSTACK %d\n", (after.ss_flags & SS_ONSTACK) != 0);
    return 0;
}
