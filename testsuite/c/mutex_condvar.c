/* pthread mutex, condition variable, rwlock and barrier: a producer hands 200 items to two
 * consumers; each consumer prints what it got and when (time is recorded too). */
#include <pthread.h>
#include <stdio.h>
#include <time.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static pthread_barrier_t barrier;
static int queue[16], head, tail, done;
static long sums[2];

static void *consumer(void *arg) {
    long id = (long)arg;
    pthread_barrier_wait(&barrier);
    for (;;) {
        pthread_mutex_lock(&mu);
        while (head == tail && !done)
            pthread_cond_wait(&cv, &mu);
        if (head == tail && done) {
            pthread_mutex_unlock(&mu);
            break;
        }
        int v = queue[head++ % 16];
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
        pthread_rwlock_wrlock(&rw);
        sums[id] += v;
        pthread_rwlock_unlock(&rw);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        printf("consumer %ld got %d at %ld.%09ld\n", id, v, (long)ts.tv_sec, ts.tv_nsec);
    }
    return NULL;
}

int main(void) {
    pthread_t c[2];
    pthread_barrier_init(&barrier, NULL, 3);
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (long i = 0; i < 2; i++)
        pthread_create(&c[i], NULL, consumer, (void *)i);
    pthread_barrier_wait(&barrier);
    for (int i = 1; i <= 200; i++) {
        pthread_mutex_lock(&mu);
        while (tail - head == 16)
            pthread_cond_wait(&cv, &mu);
        queue[tail++ % 16] = i;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
    }
    pthread_mutex_lock(&mu);
    done = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < 2; i++)
        pthread_join(c[i], NULL);
    pthread_rwlock_rdlock(&rw);
    printf("sums %ld %ld total %ld\n", sums[0], sums[1], sums[0] + sums[1]);
    pthread_rwlock_unlock(&rw);
    return 0;
}
