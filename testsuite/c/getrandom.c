/* Exercises getrandom(2): 32 random bytes via glibc and via the raw syscall,
 * with GRND_NONBLOCK. */
#include <err.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

static void print_hex(const char *label, const unsigned char *buf, size_t n)
{
    printf("%s ", label);
    for (size_t i = 0; i < n; i++)
        printf("%02x", buf[i]);
    printf("\n");
}

int main(void)
{
    unsigned char buf[32];
    if (getrandom(buf, sizeof buf, 0) != (ssize_t)sizeof buf)
        err(1, "getrandom");
    print_hex("getrandom", buf, sizeof buf);
    if (syscall(SYS_getrandom, buf, 16, GRND_NONBLOCK) != 16)
        err(1, "SYS_getrandom");
    print_hex("raw getrandom nonblock", buf, 16);
    return 0;
}
