/* Exercises reads of /dev/urandom (open, read, close), a device file outside
 * any data dir whose content must be recorded. */
#include <err.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        err(1, "open /dev/urandom");
    for (int i = 0; i < 3; i++) {
        unsigned char buf[16];
        if (read(fd, buf, sizeof buf) != (ssize_t)sizeof buf)
            err(1, "read /dev/urandom");
        printf("urandom %d ", i);
        for (size_t j = 0; j < sizeof buf; j++)
            printf("%02x", buf[j]);
        printf("\n");
    }
    close(fd);
    return 0;
}
