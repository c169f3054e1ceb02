/* A racy linked list: 4 threads each push 20,000 nodes (unless argv[1] says otherwise) onto one
 * list head without a lock (read head, link, write head). Natively, pushes that race are lost
 * and the length and order differ from run to run; every replay must print the recorded length
 * and order digest. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define THREADS 4

struct node {
    struct node *next;
    long value;
};

static long pushes = 20000;
static struct node *volatile head;
static struct node *pool[THREADS];

static void *work(void *arg) {
    long id = (long)arg;
    for (long i = 0; i < pushes; i++) {
        struct node *n = &pool[id][i];
        n->value = id * pushes + i;
        n->next = head;
        head = n;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1)
        pushes = atol(argv[1]);
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) {
        pool[i] = calloc((size_t)pushes, sizeof(struct node));
        if (!pool[i]) {
            perror("calloc");
            return 1;
        }
    }
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
