/* Mutex-heavy threads: THREADS threads each lock a shared pthread mutex, increment a shared
 * counter and unlock, ITERS times (default 4 x 200,000). Prints the total, which the lock makes
 * exact (THREADS x ITERS) in every run. Usage: mutex_counter [THREADS] [ITERS] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;
static long iters = 200000;

static void *work(void *arg)
{
    (void)arg;
    for (long i = 0; i < iters; i++) {
        pthread_mutex_lock(&lock);
        counter++;
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    if (argc > 2)
        iters = atol(argv[2]);
    if (threads < 1 || threads > 64 || iters < 1) {
        fprintf(stderr, "usage: mutex_counter [THREADS 1..64] [ITERS]\n");
        return 2;
    }
    pthread_t t[64];
    for (int i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, work, NULL) != 0) {
            perror("pthread_create");
            return 1;
        }
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    printf("total %ld\n", counter);
    return counter == threads * iters ? 0 : 1;
}
