/* Process state outside memory: what a server changes once at start (memcached -u, busybox
 * httpd -h, postgres under runuser) and keeps using. It sets a umask, a lower RLIMIT_NOFILE,
 * a working directory (argv[1]), drops to nobody (setgroups, setgid, setuid), then in a loop
 * prints what the kernel says of its state: the credentials from getresuid/getresgid and
 * /proc/self/status, the working directory from getcwd and from a relative open, the umask and
 * the limit. Each line is the same in every iteration, natively, at replay and after a replica
 * went live. argv[2] is the number of iterations (default 5). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* The Uid: line of /proc/self/status, its tabs as spaces. */
static void status_uid(char *out, size_t n)
{
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY);
    if (fd < 0)
        die("open /proc/self/status");
    ssize_t got = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (got <= 0)
        die("read /proc/self/status");
    buf[got] = 0;
    char *l = strstr(buf, "\nUid:");
    if (!l)
        die("no Uid line");
    l += 1;
    size_t i = 0;
    for (; l[i] && l[i] != '\n' && i + 1 < n; i++)
        out[i] = l[i] == '\t' ? ' ' : l[i];
    out[i] = 0;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    umask(027);
    struct rlimit rl = { 512, 1024 };
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        die("setrlimit");
    if (chdir(dir) != 0)
        die("chdir");
    if (geteuid() == 0) {
        if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
            die("drop privileges");
    }
    for (int i = 0; i < rounds; i++) {
        uid_t r, e, s;
        gid_t gr, ge, gs;
        getresuid(&r, &e, &s);
        getresgid(&gr, &ge, &gs);
        char uid_line[256], cwd[4096];
        status_uid(uid_line, sizeof uid_line);
        if (!getcwd(cwd, sizeof cwd))
            die("getcwd");
        /* A relative path resolves against the working directory the kernel has. */
        int fd = open("marker", O_RDONLY);
        char marker[64] = "none";
        if (fd >= 0) {
            ssize_t n = read(fd, marker, sizeof marker - 1);
            marker[n > 0 ? n : 0] = 0;
            marker[strcspn(marker, "\n")] = 0;
            close(fd);
        }
        mode_t m = umask(0);
        umask(m);
        getrlimit(RLIMIT_NOFILE, &rl);
        printf("uid %d/%d/%d gid %d/%d/%d groups %d; %s; cwd %s; marker %s; umask %03o; nofile %lu/%lu\n",
               (int)r, (int)e, (int)s, (int)gr, (int)ge, (int)gs, getgroups(0, NULL), uid_line, cwd, marker,
               (unsigned)m, (unsigned long)rl.rlim_cur, (unsigned long)rl.rlim_max);
        fflush(stdout);
        usleep(2000);
    }
    return 0;
}
