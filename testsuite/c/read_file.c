/* Exercises reading a file outside any data dir (argv[1]): open, fstat, read,
 * close. The test changes or deletes the file before replay, which must still
 * print the recorded content. */
#include <err.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 2)
        errx(2, "usage: %s FILE", argv[0]);
    int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        err(1, "open %s", argv[1]);
    struct stat st;
    if (fstat(fd, &st) != 0)
        err(1, "fstat %s", argv[1]);
    printf("size %lld\n", (long long)st.st_size);
    char buf[1024];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        fwrite(buf, 1, (size_t)n, stdout);
    if (n < 0)
        err(1, "read %s", argv[1]);
    close(fd);
    printf("end of file\n");
    return 0;
}
