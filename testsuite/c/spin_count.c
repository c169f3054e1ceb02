/* A thread waits for another by counting its spins (`while (!flag) spins++;`): its registers
 * change every iteration, so it never reaches a state ftexec can preempt at without a PMU, while
 * the thread that would set the flag waits for the token. ftexec must stop with a clear error
 * (natively the program ends at once). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

static atomic_int flag;

static void *setter(void *arg) {
    (void)arg;
    usleep(1000); /* gives the token away: the main thread spins meanwhile */
    atomic_store(&flag, 1);
    return NULL;
}

int main(void) {
    pthread_t t;
    pthread_create(&t, NULL, setter, NULL);
    unsigned long spins = 0;
    while (!atomic_load_explicit(&flag, memory_order_acquire))
        spins++;
    pthread_join(t, NULL);
    printf("flag set after %s\n", spins ? "some spins" : "no spin");
    return 0;
}
