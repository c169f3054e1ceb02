/* A spin lock built from C11 atomics; the holder makes a syscall inside the critical section
 * while another thread spins without syscalls. Without PMU preemption ftexec cannot schedule the
 * spinner away: it must say so clearly instead of hanging. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

static atomic_int lock;
static long shared;

static void *worker(void *arg) {
    (void)arg;
    for (int i = 0; i < 1000; i++) {
        while (atomic_exchange_explicit(&lock, 1, memory_order_acquire))
            ;
        shared++;
        if (i % 100 == 0)
            getppid(); /* a syscall while holding the lock */
        atomic_store_explicit(&lock, 0, memory_order_release);
    }
    return NULL;
}

int main(void) {
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    printf("shared %ld\n", shared);
    return 0;
}
