/* Four threads each map a file outside the data directory 400 times (MAP_SHARED, read-only, as
 * apache maps the file it serves), read it and unmap it. The kernel chooses each address: at
 * record it must choose it in log order, where another thread's munmap (a syscall that makes no
 * stop) has run or not as at replay. The output is the sum of the bytes read. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#define THREADS 4
#define ROUNDS 400

static const char *path = "/etc/passwd";
static long sums[THREADS];

static void *work(void *arg) {
    long id = (long)arg;
    for (int i = 0; i < ROUNDS; i++) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            perror("open");
            return NULL;
        }
        size_t len = 1 + (size_t)(i % 3) * 4096;
        unsigned char *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
        close(fd);
        if (p == MAP_FAILED) {
            perror("mmap");
            return NULL;
        }
        sums[id] += p[0] + p[i % 16];
        munmap(p, len);
    }
    return NULL;
}

int main(void) {
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, work, (void *)i);
    long total = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        total += sums[i];
    }
    printf("sum %ld\n", total);
    return 0;
}
