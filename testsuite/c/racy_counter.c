/* The killer test: 4 threads each increment a shared counter 1,000,000 times without a lock.
 * Native runs print different totals; every replay must print the recorded total. */
#include <pthread.h>
#include <stdio.h>

#define THREADS 4
#define ITERS 1000000

static volatile long counter;

static void *work(void *arg) {
    (void)arg;
    for (int i = 0; i < ITERS; i++)
        counter = counter + 1;
    return NULL;
}

int main(void) {
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, work, NULL);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    printf("total %ld\n", counter);
    return 0;
}
