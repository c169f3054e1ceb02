/* Execs a binary it opened itself (issue 15: every open that can name an executable is followed
 * by the table). argv[1] "openat2": opens argv[2] read-only with openat2, checks its ELF magic,
 * then execs it. argv[1] "creat": copies argv[3] into a new file argv[2] through creat, makes it
 * executable, then execs it. The new image is run with the single argument "child" and prints
 * one line. A replay after the file changed must refuse with the file's name. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int run(const char *path) {
    char *const argv[] = {(char *)path, "child", NULL};
    char *const envp[] = {NULL};
    execve(path, argv, envp);
    perror("execve");
    return 1;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "child") == 0) {
        printf("child: running\n");
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "openat2") == 0) {
        struct open_how how = {.flags = O_RDONLY | O_CLOEXEC};
        int fd = (int)syscall(SYS_openat2, AT_FDCWD, argv[2], &how, sizeof how);
        char magic[4];
        if (fd < 0 || read(fd, magic, 4) != 4) {
            perror("openat2");
            return 1;
        }
        printf("openat2: %s an ELF file\n", memcmp(magic, "\x7f" "ELF", 4) == 0 ? "read" : "did not read");
        fflush(stdout);
        return run(argv[2]);
    }
    if (argc == 4 && strcmp(argv[1], "creat") == 0) {
        int in = open(argv[3], O_RDONLY | O_CLOEXEC);
        int out = creat(argv[2], 0755);
        if (in < 0 || out < 0) {
            perror("creat");
            return 1;
        }
        char buf[65536];
        ssize_t n;
        long total = 0;
        while ((n = read(in, buf, sizeof buf)) > 0) {
            if (write(out, buf, (size_t)n) != n) {
                perror("write");
                return 1;
            }
            total += n;
        }
        close(in);
        close(out);
        printf("creat: copied %s\n", total > 0 ? "the program" : "nothing");
        fflush(stdout);
        return run(argv[2]);
    }
    fprintf(stderr, "usage: exec_opened openat2 PATH | creat PATH SOURCE\n");
    return 2;
}
