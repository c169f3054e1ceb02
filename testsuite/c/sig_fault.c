// Synchronous faults caught by handlers that siglongjmp out: SIGSEGV on a PROT_NONE page (its
// address differs natively with ASLR) and SIGFPE from an integer division by a volatile zero.
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>

static sigjmp_buf env;
static volatile sig_atomic_t faults;
static void *volatile fault_addr;
static volatile int fault_code;

static void on_fault(int sig, siginfo_t *info, void *ctx) {
    (void)ctx;
    faults++;
    fault_addr = info->si_addr;
    fault_code = info->si_code;
    siglongjmp(env, sig);
}

static void clock_line(const char *what) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    printf("%s at %ld.%09ld\n", what, (long)now.tv_sec, now.tv_nsec);
}

int main(void) {
    struct sigaction sa = {0};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, NULL) != 0 || sigaction(SIGFPE, &sa, NULL) != 0) {
        perror("sigaction");
        return 1;
    }
    char *page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    volatile char *target = page + 123;
    int sig = sigsetjmp(env, 1);
    if (sig == 0) {
        *target = 1;
        printf("no SIGSEGV\n");
        return 1;
    }
    printf("caught signal %d code %d, fault at page+%ld, page %p\n", sig, fault_code,
           (long)((char *)fault_addr - page), (void *)page);
    clock_line("after SIGSEGV");

    volatile int zero = 0;
    volatile int result = 0;
    sig = sigsetjmp(env, 1);
    if (sig == 0) {
        result = 42 / zero;
        printf("no SIGFPE (%d)\n", result);
        return 1;
    }
    printf("caught signal %d code %d (FPE_INTDIV %d) at ip %p\n", sig, fault_code, FPE_INTDIV, fault_addr);
    clock_line("after SIGFPE");

    // A second SIGSEGV: the mask saved by sigsetjmp(env, 1) was restored, so it is caught again.
    sig = sigsetjmp(env, 1);
    if (sig == 0) {
        *(volatile int *)(page + 8) = 2;
        return 1;
    }
    printf("caught signal %d again, fault at page+%ld\n", sig, (long)((char *)fault_addr - page));
    printf("faults %d\n", (int)faults);
    return 0;
}
