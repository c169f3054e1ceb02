/* A racy linked list: 4 threads each push 20,000 nodes onto one list head without a lock
 * (read head, link, write head). Natively, pushes that race are lost and the length and order
 * differ from run to run; every replay must print the recorded length and order digest. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define THREADS 4
#define PUSHES 20000

struct node {
    struct node *next;
    long value;
};

static struct node *volatile head;
static struct node pool[THREADS][PUSHES];

static void *work(void *arg) {
    long id = (long)arg;
    for (int i = 0; i < PUSHES; i++) {
        struct node *n = &pool[id][i];
        n->value = id * PUSHES + i;
        n->next = head;
        head = n;
    }
    return NULL;
}

int main(void) {
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, work, (void *)i);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    long length = 0;
    unsigned long order = 0;
    for (struct node *n = head; n; n = n->next) {
        length++;
        order = order * 1000003 + (unsigned long)n->value;
    }
    printf("length %ld order %lx\n", length, order);
    return 0;
}
