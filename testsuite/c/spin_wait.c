/* Two threads hand a turn back and forth through an atomic flag, each spinning without syscalls
 * until it is its turn (a spin-wait ftexec can only leave by preempting the spinner). Each
 * turn reads the clock, so a native run prints different values every time; a replay prints
 * the recorded ones. argv[1]: number of rounds (default 20). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static atomic_int turn;
static int rounds = 20;
static long stamps[2][1000];

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void *other(void *arg) {
    (void)arg;
    for (int i = 0; i < rounds; i++) {
        while (atomic_load_explicit(&turn, memory_order_acquire) != 1)
            ;
        stamps[1][i] = now_ns();
        atomic_store_explicit(&turn, 0, memory_order_release);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1)
        rounds = atoi(argv[1]);
    if (rounds < 1 || rounds > 1000)
        return 2;
    pthread_t t;
    pthread_create(&t, NULL, other, NULL);
    for (int i = 0; i < rounds; i++) {
        stamps[0][i] = now_ns();
        atomic_store_explicit(&turn, 1, memory_order_release);
        while (atomic_load_explicit(&turn, memory_order_acquire) != 0)
            ;
    }
    pthread_join(t, NULL);
    int ordered = 1;
    unsigned long sum = 0;
    for (int i = 0; i < rounds; i++) {
        ordered &= stamps[0][i] <= stamps[1][i] && (i == 0 || stamps[1][i - 1] <= stamps[0][i]);
        sum = sum * 31 + (unsigned long)stamps[0][i] + (unsigned long)stamps[1][i];
    }
    printf("rounds %d ordered %d stamps %lx\n", rounds, ordered, sum);
    return 0;
}
