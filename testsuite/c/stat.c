/* Exercises stat, fstat and lstat of the file given as argv[1]: st_ino and
 * st_mtime change when the test re-creates the file between runs. */
#include <err.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static void print_stat(const char *label, const struct stat *st)
{
    printf("%s st_ino %llu st_size %lld st_mtime %lld.%09ld\n", label,
           (unsigned long long)st->st_ino, (long long)st->st_size,
           (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
}

int main(int argc, char **argv)
{
    if (argc != 2)
        errx(2, "usage: %s FILE", argv[0]);
    struct stat st;
    if (stat(argv[1], &st) != 0)
        err(1, "stat %s", argv[1]);
    print_stat("stat", &st);
    if (lstat(argv[1], &st) != 0)
        err(1, "lstat %s", argv[1]);
    print_stat("lstat", &st);
    int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        err(1, "open %s", argv[1]);
    if (fstat(fd, &st) != 0)
        err(1, "fstat %s", argv[1]);
    print_stat("fstat", &st);
    close(fd);
    return 0;
}
