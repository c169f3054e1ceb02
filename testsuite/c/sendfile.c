/* sendfile and copy_file_range in the data directory (DIR, argument 1): from a data file to a
 * socketpair without an offset (the file position moves: the read after it goes on from there,
 * at replay too), with an offset (written back), from a data file to a data file (runs at
 * replay too), and from a file outside the data directory into it (refused with EINVAL, so the
 * program copies with read/write). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2 || chdir(argv[1]) != 0)
        return 2;
    setvbuf(stdout, NULL, _IONBF, 0);
    int src = open("src.txt", O_RDONLY);
    int sv[2];
    if (src < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return 1;
    char buf[64] = {0};
    printf("sendfile without offset: %zd\n", sendfile(sv[0], src, NULL, 10));
    ssize_t n = read(sv[1], buf, sizeof(buf) - 1);
    printf("the socket got %zd: %.*s\n", n, (int)n, buf);
    n = read(src, buf, 5);
    printf("read after it: %.*s\n", (int)n, buf);
    off_t off = 2;
    ssize_t sent = sendfile(sv[0], src, &off, 4);
    printf("sendfile at offset 2: %zd, offset now %ld\n", sent, (long)off);
    n = read(sv[1], buf, sizeof(buf) - 1);
    printf("the socket got %zd: %.*s\n", n, (int)n, buf);
    int dst = open("dst.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    printf("sendfile data to data: %zd\n", sendfile(dst, src, NULL, 8));
    loff_t in_off = 0;
    ssize_t copied = copy_file_range(src, &in_off, dst, NULL, 6, 0);
    printf("copy_file_range data to data: %zd, offset now %ld\n", copied, (long)in_off);
    int host = open("/etc/passwd", O_RDONLY);
    ssize_t r = sendfile(dst, host, NULL, 4);
    printf("sendfile host file to data: %zd %s\n", r, r < 0 && errno == EINVAL ? "EINVAL" : "?");
    close(dst);
    int back = open("dst.txt", O_RDONLY);
    n = read(back, buf, sizeof(buf) - 1);
    printf("dst.txt: %.*s\n", (int)n, buf);
    return 0;
}
