// Writes a file that starts with the ELF magic outside the data directory (as a compiler writes
// an object file in /tmp for the linker: varnish compiles its VCL at start), reads it back
// read-only, removes it, and prints what it read. Its content depends on the clock, so a replay
// that read another file would print another line.
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char path[512];
    snprintf(path, sizeof path, "%s/own-elf-%d.o", argc > 1 ? argv[1] : "/tmp", (int)getpid());
    unsigned char buf[64];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    memcpy(buf, "\x7f" "ELF", 4);
    for (int i = 4; i < 64; i++) buf[i] = (unsigned char)((ts.tv_nsec >> (i % 24)) + i);
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0 || write(fd, buf, sizeof buf) != (ssize_t)sizeof buf) return 1;
    close(fd);
    unsigned char back[64];
    fd = open(path, O_RDONLY);
    if (fd < 0 || read(fd, back, sizeof back) != (ssize_t)sizeof back) return 2;
    close(fd);
    unlink(path);
    unsigned long long h = 1469598103934665603ULL;
    for (int i = 0; i < 64; i++) h = (h ^ back[i]) * 1099511628211ULL;
    printf("read back %016llx (%s)\n", h, memcmp(buf, back, sizeof buf) == 0 ? "same" : "different");
    return 0;
}
