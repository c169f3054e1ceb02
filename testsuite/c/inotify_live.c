// An inotify instance that a replica going live must make again: a watch on argv[1] (a
// directory) for IN_MODIFY, a watch on "/" added and removed (so the next watch's descriptor
// shows whether the kernel's numbering was kept), then five rounds of a one-byte append to
// argv[1]/f, a poll of the instance and a read of its events. A wait gives up after 5 s with a
// "silent" line and status 1.
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: inotify_live DIR\n");
        return 2;
    }
    int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (in < 0) {
        perror("inotify_init1");
        return 1;
    }
    int wd = inotify_add_watch(in, argv[1], IN_MODIFY);
    int root = inotify_add_watch(in, "/", IN_CREATE);
    if (wd < 0 || root < 0 || inotify_rm_watch(in, root) != 0) {
        perror("inotify_add_watch");
        return 1;
    }
    char buf[4096] __attribute__((aligned(8)));
    // The IN_IGNORED of the removed watch.
    while (read(in, buf, sizeof buf) > 0) {
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/f", argv[1]);
    for (int round = 0; round < 5; round++) {
        int f = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (f < 0 || write(f, "x", 1) != 1) {
            perror(path);
            return 1;
        }
        close(f);
        struct pollfd p = {.fd = in, .events = POLLIN};
        if (poll(&p, 1, 5000) != 1) {
            printf("inotify silent in round %d\n", round);
            return 1;
        }
        ssize_t n = read(in, buf, sizeof buf);
        if (n < (ssize_t)sizeof(struct inotify_event)) {
            perror("read inotify");
            return 1;
        }
        struct inotify_event *ev = (struct inotify_event *)buf;
        printf("round %d: watch %s, mask %#x, name %s\n", round, ev->wd == wd ? "first" : "other", ev->mask,
               ev->len ? ev->name : "-");
        // Let every event of this append be read before the next round.
        while (read(in, buf, sizeof buf) > 0) {
        }
    }
    int next = inotify_add_watch(in, "/", IN_CREATE);
    printf("watch descriptors %d %d %d\n", wd, root, next);
    return 0;
}
