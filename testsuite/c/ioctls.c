/* ioctl requests older than the _IOC encoding, whose number does not say that they write:
 * SIOCGIFCONF (a length and an array behind a pointer, as MariaDB reads its MAC address),
 * SIOCGIFHWADDR/SIOCGIFINDEX/SIOCGIFFLAGS (struct ifreq), FIONREAD and TIOCOUTQ (an int);
 * FIONBIO and FIOCLEX, which change an fd's flags as fcntl would. The output is the same
 * natively, at record and at every replay; it prints each value the kernel wrote. */
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <errno.h>

int main(int argc, char **argv) {
    if (argc > 1) {
        /* After exec: fd 7 was FIOCLEX'd (closed by the exec), fd 8 FIONCLEX'd (kept). */
        printf("after exec: fd 7 %s, fd 8 %s\n", fcntl(7, F_GETFD) < 0 ? "closed" : "open",
               fcntl(8, F_GETFD) < 0 ? "closed" : "open");
        return 0;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq reqs[16];
    memset(reqs, 0xAB, sizeof(reqs));
    struct ifconf conf = {.ifc_len = sizeof(reqs), .ifc_req = reqs};
    if (ioctl(s, SIOCGIFCONF, &conf) != 0) {
        perror("SIOCGIFCONF");
        return 1;
    }
    int n = conf.ifc_len / (int)sizeof(struct ifreq);
    printf("SIOCGIFCONF: %d interface(s)\n", n);
    for (int i = 0; i < n; i++) {
        struct ifreq r;
        memset(&r, 0, sizeof(r));
        memcpy(r.ifr_name, reqs[i].ifr_name, IFNAMSIZ);
        printf("  %.16s", r.ifr_name);
        if (ioctl(s, SIOCGIFHWADDR, &r) == 0) {
            unsigned char *m = (unsigned char *)r.ifr_hwaddr.sa_data;
            printf(" hwaddr %02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
        }
        if (ioctl(s, SIOCGIFINDEX, &r) == 0)
            printf(" index %d", r.ifr_ifindex);
        if (ioctl(s, SIOCGIFFLAGS, &r) == 0)
            printf(" up %d", !!(r.ifr_flags & IFF_UP));
        printf("\n");
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return 1;
    if (write(sv[0], "hello", 5) != 5)
        return 1;
    int avail = -1, outq = -1;
    ioctl(sv[1], FIONREAD, &avail);
    ioctl(sv[0], TIOCOUTQ, &outq);
    printf("FIONREAD %d TIOCOUTQ %d\n", avail, outq);
    int p[2];
    if (pipe(p) != 0)
        return 1;
    int on = 1;
    ioctl(p[0], FIONBIO, &on);
    char c;
    ssize_t r = read(p[0], &c, 1);
    printf("read of an empty pipe after FIONBIO: %zd %s\n", r, r < 0 && errno == EAGAIN ? "EAGAIN" : "?");
    if (dup2(p[0], 7) != 7 || dup2(p[1], 8) != 8)
        return 1;
    ioctl(7, FIOCLEX);
    fcntl(8, F_SETFD, FD_CLOEXEC);
    ioctl(8, FIONCLEX);
    execl("/proc/self/exe", argv[0], "child", (char *)NULL);
    perror("execl");
    return 1;
}
