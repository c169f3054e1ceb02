/* A thread that computes for ~1.7 s without a syscall while another wakes every millisecond:
 * under ftexec the sleeper waits for the token, so the recorder probes the computing thread for
 * a spin fixpoint at doubling gaps (it never finds one). What those probes cost. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

static volatile int done;

static void *sleeper(void *a) {
    (void)a;
    struct timespec t = {0, 1000000};
    while (!done)
        nanosleep(&t, NULL);
    return NULL;
}

int main(void) {
    pthread_t th;
    pthread_create(&th, NULL, sleeper, NULL);
    uint64_t x = 1;
    for (uint64_t i = 0; i < 1500000000ULL; i++)
        x = x * 6364136223846793005ULL + i;
    done = 1;
    pthread_join(th, NULL);
    printf("%llu\n", (unsigned long long)(x & 0xff));
    return 0;
}
