/* Does the AMD retired-conditional-branches counter (raw event 0xd1) count deterministically
 * around lock-prefixed instructions on this CPU (the "SpecLockMap" problem rr works around on
 * Zen)? Counts user-mode branches of four loops, RUNS times each, and prints min/max. */
#define _GNU_SOURCE
#include <linux/perf_event.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define N 1000000
static volatile long shared;
static volatile int stop;

static int counter(uint64_t config) {
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.type = PERF_TYPE_RAW;
    a.config = config;
    a.exclude_kernel = 1;
    a.exclude_hv = 1;
    a.disabled = 1;
    int fd = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
    if (fd < 0) {
        perror("perf_event_open(PERF_TYPE_RAW, 0xd1)");
        fprintf(stderr, "no hardware PMU here (a VM without a virtual PMU: dmesg says \"PMU not available due to "
                        "virtualization\"); this measurement needs one\n");
        exit(2);
    }
    return fd;
}

static void plain(void) { for (long i = 0; i < N; i++) __asm__ volatile("" ::: "memory"); }
static void lock_add(void) { for (long i = 0; i < N; i++) __atomic_fetch_add(&shared, 1, __ATOMIC_SEQ_CST); }
static void lock_cas(void) {
    for (long i = 0; i < N; i++) { long e = shared; __atomic_compare_exchange_n(&shared, &e, e + 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); }
}
static void *contend(void *arg) { (void)arg; while (!stop) __atomic_fetch_add(&shared, 1, __ATOMIC_SEQ_CST); return NULL; }

static void run(const char *name, void (*f)(void), uint64_t config, int runs, int contended) {
    pthread_t t;
    if (contended) { stop = 0; pthread_create(&t, NULL, contend, NULL); usleep(1000); }
    long long lo = -1, hi = 0;
    for (int r = 0; r < runs; r++) {
        int fd = counter(config);
        ioctl(fd, PERF_EVENT_IOC_RESET, 0);
        ioctl(fd, PERF_EVENT_IOC_ENABLE, 0);
        f();
        ioctl(fd, PERF_EVENT_IOC_DISABLE, 0);
        long long n = 0;
        if (read(fd, &n, sizeof n) != sizeof n) { perror("read"); exit(1); }
        close(fd);
        if (lo < 0 || n < lo) lo = n;
        if (n > hi) hi = n;
    }
    if (contended) { stop = 1; pthread_join(t, NULL); }
    printf("%-34s min %10lld max %10lld spread %lld\n", name, lo, hi, hi - lo);
}

int main(int argc, char **argv) {
    int runs = argc > 1 ? atoi(argv[1]) : 20;
    uint64_t ev = 0xd1;
    run("plain loop", plain, ev, runs, 0);
    run("lock xadd loop", lock_add, ev, runs, 0);
    run("lock cmpxchg loop", lock_cas, ev, runs, 0);
    run("lock xadd, other thread contends", lock_add, ev, runs, 1);
    run("lock cmpxchg, other thread contends", lock_cas, ev, runs, 1);
    return 0;
}
