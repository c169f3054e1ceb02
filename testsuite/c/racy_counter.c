/* The killer test: 4 threads each increment a shared counter without a lock, 1,000,000 times
 * unless argv[1] says otherwise. Native runs print different totals; every replay must print
 * the recorded total. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define THREADS 4

static long iters = 1000000;
static volatile long counter;

static void *work(void *arg) {
    (void)arg;
    for (long i = 0; i < iters; i++)
        counter = counter + 1;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1)
        iters = atol(argv[1]);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, work, NULL);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    printf("total %ld\n", counter);
    return 0;
}
