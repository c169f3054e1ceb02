/* A spin lock built from C11 atomics (atomic_exchange, which writes the lock even while it
 * spins); the holder sometimes sleeps inside the critical section while the other thread spins
 * without syscalls. ftexec must preempt the spinner so that the holder can go on, and the
 * replay must reproduce the schedule: each thread logs the order in which it got the lock. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

static atomic_int lock;
static long shared;
static unsigned long order;

static void *worker(void *arg) {
    long id = (long)arg;
    for (int i = 0; i < 1000; i++) {
        while (atomic_exchange_explicit(&lock, 1, memory_order_acquire))
            ;
        shared++;
        order = order * 3 + (unsigned long)id;
        if (i % 100 == 0)
            usleep(200); /* a blocking syscall while holding the lock */
        atomic_store_explicit(&lock, 0, memory_order_release);
    }
    return NULL;
}

int main(void) {
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, worker, (void *)(long)i);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    printf("shared %ld order %lx\n", shared, order);
    return 0;
}
