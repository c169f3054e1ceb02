/* Exercises getdents64(2): prints the names of the directory given as argv[1]
 * in the order the kernel returns them (unsorted; the order depends on the
 * file system's hashing). Uses the raw syscall with a small buffer so that
 * several calls are needed. */
#define _GNU_SOURCE
#include <err.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

struct linux_dirent64 {
    unsigned long long d_ino;
    long long d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

int main(int argc, char **argv)
{
    if (argc != 2)
        errx(2, "usage: %s DIR", argv[0]);
    int fd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        err(1, "open %s", argv[1]);
    char buf[256] __attribute__((aligned(8)));
    int calls = 0;
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (n < 0)
            err(1, "getdents64 %s", argv[1]);
        calls++;
        if (n == 0)
            break;
        for (long off = 0; off < n;) {
            struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + off);
            printf("entry %s type %u\n", d->d_name, d->d_type);
            off += d->d_reclen;
        }
    }
    printf("getdents64 calls %d\n", calls);
    close(fd);
    return 0;
}
