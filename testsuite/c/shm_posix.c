/* POSIX shared memory among a parent and its child: shm_open in the program's own /dev/shm,
 * a MAP_SHARED mapping of it and a MAP_SHARED|MAP_ANONYMOUS one, both inherited over fork. The
 * child counts in both, the parent reads after each round; then the parent opens the file
 * again and reads it through read(2). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(void) {
    int fd = shm_open("/ftexec-test", O_CREAT | O_RDWR, 0600);
    if (fd < 0 || ftruncate(fd, 4096) != 0) {
        perror("shm_open");
        return 1;
    }
    long *file = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    long *anon = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (file == MAP_FAILED || anon == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    for (int round = 1; round <= 4; round++) {
        pid_t c = fork();
        if (c == 0) {
            for (int i = 0; i < 5; i++) {
                file[0] += round;
                anon[0] += 10 * round;
                struct timespec ts = {0, 1000000};
                nanosleep(&ts, NULL);
            }
            _exit(0);
        }
        int st;
        waitpid(c, &st, 0);
        printf("round %d: file %ld anon %ld child %d\n", round, file[0], anon[0], WEXITSTATUS(st));
        fflush(stdout);
    }
    int again = shm_open("/ftexec-test", O_RDONLY, 0);
    long v = 0;
    if (again < 0 || pread(again, &v, sizeof v, 0) != sizeof v) {
        perror("reopen");
        return 1;
    }
    printf("through read: %ld\n", v);
    shm_unlink("/ftexec-test");
    return 0;
}
