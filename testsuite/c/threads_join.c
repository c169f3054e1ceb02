/* Creates one pthread: ftexec does not support threads yet and must refuse
 * this program with a clear "not supported" error instead of a wrong replay.
 * Natively it prints the thread's result and exits 0. */
#include <err.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static void *worker(void *arg)
{
    int *value = arg;
    *value = 42;
    return NULL;
}

int main(void)
{
    pthread_t t;
    int value = 0;
    int rc = pthread_create(&t, NULL, worker, &value);
    if (rc != 0)
        errx(1, "pthread_create: %s", strerror(rc));
    rc = pthread_join(t, NULL);
    if (rc != 0)
        errx(1, "pthread_join: %s", strerror(rc));
    printf("thread result %d\n", value);
    return 0;
}
