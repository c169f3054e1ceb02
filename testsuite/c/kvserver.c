/* A small single-threaded key-value server for end-to-end failover tests.
 *
 * Usage: kvserver PORT [DIR]
 *
 * Listens on 127.0.0.1:PORT and serves many concurrent clients from one
 * epoll loop (epoll_wait with a 100 ms timeout, accept4 with
 * SOCK_NONBLOCK|SOCK_CLOEXEC).  Line protocol, one command per
 * '\n'-terminated line (a trailing '\r' is ignored), one reply line each:
 *
 *   SET key value  -> OK
 *   GET key        -> the value, or NIL
 *   INCR key       -> the new integer value (a missing key counts as 0)
 *   COUNT          -> number of keys
 *   PING           -> PONG
 *   FAMILIES       -> inet N unix M other K: the address families of the
 *                     connections closed so far
 *   TIME           -> CLOCK_REALTIME seconds (nondeterministic input)
 *   BG ms code     -> STARTED; forks a child that sleeps ms milliseconds and
 *                     exits with code plus the number of times its sleep
 *                     failed with EINTR (a stand-in for redis' BGSAVE)
 *   POKE           -> OK: sends SIGCONT to the last BG child (which ignores
 *                     it: natively its sleep goes on, never EINTR)
 *   CHILDREN       -> "started=N reaped=M last=S sigchld=K info=C:T:P":
 *                     children forked by BG, children reaped (waitpid(-1,
 *                     WNOHANG) in the main loop, as redis does), the exit code
 *                     of the last one (-1 before any), SIGCHLDs caught, and of
 *                     the last SIGCHLD's siginfo: si_code, si_status, and
 *                     whether si_pid is the last reaped child's pid (1/0)
 *   FOPEN path     -> OK, or ERR open: opens a file (read-only) for FREAD,
 *                     closing the one opened before
 *   FREAD n        -> the next n (at most 200) bytes of that file, EOF at its
 *                     end, ERR no file before FOPEN (its bytes must not hold
 *                     a newline)
 *   SHUTDOWN       -> BYE, then the server exits with status 0
 *   anything else  -> ERR unknown
 *
 * Other errors: "ERR args" (wrong number of arguments), "ERR too long" (key,
 * value or line too long), "ERR not integer" (INCR on a non-integer value or
 * overflow), "ERR full" (100000 keys already stored).
 *
 * Keys and values are non-space strings of at most 200 bytes.  Partial lines
 * are buffered per client; the replies to all complete lines received by one
 * read() go out in one write() where possible (the rest is flushed on
 * EPOLLOUT).  If DIR is given, every applied SET/INCR is appended as a line
 * to DIR/aof.log before its reply is queued.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TOKEN 200
#define MAX_KEYS 100000
#define TABLE_SIZE 262144 /* power of two, > 2 * MAX_KEYS */
#define INBUF_SIZE 4096   /* longest accepted line is well below this */
#define OUTBUF_HIGH (1 << 20) /* stop reading a client with this much unsent */
#define MAX_EVENTS 64

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* ---- hash table (open addressing, linear probing, no deletion) ---- */

struct entry {
    char *key; /* NULL = empty slot */
    char *value;
};

static struct entry *table;
static long nkeys;

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static struct entry *lookup(const char *key)
{
    size_t i = (size_t)hash(key) & (TABLE_SIZE - 1);
    while (table[i].key != NULL && strcmp(table[i].key, key) != 0)
        i = (i + 1) & (TABLE_SIZE - 1);
    return &table[i];
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        die("strdup");
    return p;
}

/* Returns 0 on success, -1 if the table is full. */
static int store(const char *key, const char *value)
{
    struct entry *e = lookup(key);
    if (e->key == NULL) {
        if (nkeys >= MAX_KEYS)
            return -1;
        e->key = xstrdup(key);
        nkeys++;
    } else {
        free(e->value);
    }
    e->value = xstrdup(value);
    return 0;
}

/* ---- append-only log ---- */

static int aof_fd = -1;

static void aof_append(const char *line)
{
    if (aof_fd < 0)
        return;
    size_t len = strlen(line), off = 0;
    while (off < len) {
        ssize_t n = write(aof_fd, line + off, len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("write aof.log");
        }
        off += (size_t)n;
    }
}

/* ---- clients ---- */

struct client {
    int fd;
    int discarding;   /* dropping the rest of an overlong line */
    int want_out;     /* EPOLLOUT registered */
    int reading;      /* EPOLLIN registered */
    size_t inlen;
    char inbuf[INBUF_SIZE];
    char *out;
    size_t outlen, outcap;
};

static int ep;
static int shutting_down;

/* Clients indexed by fd.  epoll's data field carries the fd, never a pointer,
 * so what the kernel hands back does not depend on the heap layout. */
static struct client **clients;
static size_t nclients_cap;

static void out_append(struct client *c, const char *s, size_t len)
{
    if (c->outlen + len > c->outcap) {
        size_t cap = c->outcap ? c->outcap : 256;
        while (cap < c->outlen + len)
            cap *= 2;
        char *p = realloc(c->out, cap);
        if (p == NULL)
            die("realloc");
        c->out = p;
        c->outcap = cap;
    }
    memcpy(c->out + c->outlen, s, len);
    c->outlen += len;
}

static void reply(struct client *c, const char *s)
{
    out_append(c, s, strlen(s));
    out_append(c, "\n", 1);
}

/* The address families of the connections closed so far (FAMILIES): a connection that a
 * failover ended must still be the program's kind of socket. */
static long closed_inet, closed_unix, closed_other;

static void close_client(struct client *c)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int family = getsockname(c->fd, (struct sockaddr *)&ss, &sl) == 0 ? ss.ss_family : -1;
    if (family == AF_INET || family == AF_INET6)
        closed_inet++;
    else if (family == AF_UNIX)
        closed_unix++;
    else
        closed_other++;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    clients[c->fd] = NULL;
    close(c->fd);
    free(c->out);
    free(c);
}

static void update_events(struct client *c)
{
    int want_out = c->outlen > 0;
    int reading = c->outlen < OUTBUF_HIGH;
    if (want_out == c->want_out && reading == c->reading)
        return;
    struct epoll_event ev = { .events = 0, .data.fd = c->fd };
    if (reading)
        ev.events |= EPOLLIN;
    if (want_out)
        ev.events |= EPOLLOUT;
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        die("epoll_ctl mod");
    c->want_out = want_out;
    c->reading = reading;
}

/* Writes as much pending output as the socket takes, with one write() when it
 * all fits.  Returns -1 if the connection is dead. */
static int flush_out(struct client *c)
{
    size_t off = 0;
    while (off < c->outlen) {
        ssize_t n = write(c->fd, c->out + off, c->outlen - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1; /* EPIPE, ECONNRESET, ... */
        }
        off += (size_t)n;
    }
    memmove(c->out, c->out + off, c->outlen - off);
    c->outlen -= off;
    return 0;
}

/* ---- background children ---- */

static volatile sig_atomic_t sigchld_count, sigchld_code, sigchld_status, sigchld_pid;
static long bg_started, bg_reaped;
static int bg_last = -1;
static pid_t bg_last_pid, bg_child;

static void on_sigchld(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)ctx;
    sigchld_count++;
    sigchld_code = si->si_code;
    sigchld_status = si->si_status;
    sigchld_pid = si->si_pid;
}

static void reap_children(void)
{
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        bg_reaped++;
        bg_last = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        bg_last_pid = pid;
    }
}

/* Returns 0 in the parent, -1 if fork failed; the child never returns. */
static int start_child(long long ms, int code)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
        int eintr = 0;
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            eintr++;
        _exit(code + eintr);
    }
    bg_child = pid;
    bg_started++;
    return 0;
}

/* ---- a file read a piece at a time (FOPEN / FREAD) ---- */

static int read_fd = -1;

/* ---- commands ---- */

static int parse_ll(const char *s, long long *v)
{
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return -1;
    *v = x;
    return 0;
}

static void execute(struct client *c, char *line)
{
    char *tok[4];
    int ntok = 0;
    char *save = NULL;
    for (char *t = strtok_r(line, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save)) {
        if (ntok == 4) {
            ntok++;
            break;
        }
        tok[ntok++] = t;
    }
    if (ntok == 0) {
        reply(c, "ERR unknown");
        return;
    }
    const char *cmd = tok[0];
    for (int i = 1; i < ntok && i < 4; i++) {
        if (strlen(tok[i]) > MAX_TOKEN) {
            reply(c, "ERR too long");
            return;
        }
    }
    char buf[2 * MAX_TOKEN + 32];

    if (strcmp(cmd, "SET") == 0) {
        if (ntok != 3) {
            reply(c, "ERR args");
            return;
        }
        if (store(tok[1], tok[2]) != 0) {
            reply(c, "ERR full");
            return;
        }
        snprintf(buf, sizeof buf, "SET %s %s\n", tok[1], tok[2]);
        aof_append(buf);
        reply(c, "OK");
    } else if (strcmp(cmd, "GET") == 0) {
        if (ntok != 2) {
            reply(c, "ERR args");
            return;
        }
        struct entry *e = lookup(tok[1]);
        reply(c, e->key ? e->value : "NIL");
    } else if (strcmp(cmd, "INCR") == 0) {
        if (ntok != 2) {
            reply(c, "ERR args");
            return;
        }
        struct entry *e = lookup(tok[1]);
        long long v = 0;
        if (e->key != NULL && (parse_ll(e->value, &v) != 0 || v == INT64_MAX)) {
            reply(c, "ERR not integer");
            return;
        }
        char num[32];
        snprintf(num, sizeof num, "%lld", v + 1);
        if (store(tok[1], num) != 0) {
            reply(c, "ERR full");
            return;
        }
        snprintf(buf, sizeof buf, "INCR %s\n", tok[1]);
        aof_append(buf);
        reply(c, num);
    } else if (strcmp(cmd, "COUNT") == 0 && ntok == 1) {
        snprintf(buf, sizeof buf, "%ld", nkeys);
        reply(c, buf);
    } else if (strcmp(cmd, "PING") == 0 && ntok == 1) {
        reply(c, "PONG");
    } else if (strcmp(cmd, "FAMILIES") == 0 && ntok == 1) {
        snprintf(buf, sizeof buf, "inet %ld unix %ld other %ld", closed_inet, closed_unix, closed_other);
        reply(c, buf);
    } else if (strcmp(cmd, "TIME") == 0 && ntok == 1) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(buf, sizeof buf, "%lld", (long long)ts.tv_sec);
        reply(c, buf);
    } else if (strcmp(cmd, "BG") == 0) {
        long long ms, code;
        if (ntok != 3 || parse_ll(tok[1], &ms) != 0 || parse_ll(tok[2], &code) != 0 || ms < 0 || code < 0
            || code > 255) {
            reply(c, "ERR args");
            return;
        }
        reply(c, start_child(ms, (int)code) == 0 ? "STARTED" : "ERR fork");
    } else if (strcmp(cmd, "POKE") == 0 && ntok == 1) {
        reply(c, bg_child > 0 && kill(bg_child, SIGCONT) == 0 ? "OK" : "ERR no child");
    } else if (strcmp(cmd, "CHILDREN") == 0 && ntok == 1) {
        reap_children();
        snprintf(buf, sizeof buf, "started=%ld reaped=%ld last=%d sigchld=%d info=%d:%d:%d", bg_started, bg_reaped,
                 bg_last, (int)sigchld_count, (int)sigchld_code, (int)sigchld_status,
                 sigchld_pid != 0 && sigchld_pid == bg_last_pid);
        reply(c, buf);
    } else if (strcmp(cmd, "FOPEN") == 0 && ntok == 2) {
        if (read_fd >= 0)
            close(read_fd);
        read_fd = open(tok[1], O_RDONLY | O_CLOEXEC);
        reply(c, read_fd >= 0 ? "OK" : "ERR open");
    } else if (strcmp(cmd, "FREAD") == 0 && ntok == 2) {
        long long n;
        if (parse_ll(tok[1], &n) != 0 || n < 1 || n > MAX_TOKEN) {
            reply(c, "ERR args");
            return;
        }
        if (read_fd < 0) {
            reply(c, "ERR no file");
            return;
        }
        ssize_t got;
        do
            got = read(read_fd, buf, (size_t)n);
        while (got < 0 && errno == EINTR);
        if (got < 0) {
            reply(c, "ERR read");
            return;
        }
        buf[got] = '\0';
        reply(c, got == 0 ? "EOF" : buf);
    } else if (strcmp(cmd, "SHUTDOWN") == 0 && ntok == 1) {
        reply(c, "BYE");
        shutting_down = 1;
    } else {
        reply(c, "ERR unknown");
    }
}

/* Runs every complete line in the input buffer. */
static void process_lines(struct client *c)
{
    size_t start = 0;
    for (;;) {
        char *nl = memchr(c->inbuf + start, '\n', c->inlen - start);
        if (nl == NULL)
            break;
        *nl = '\0';
        if (c->discarding) {
            c->discarding = 0;
        } else {
            char *line = c->inbuf + start;
            size_t len = (size_t)(nl - line);
            if (len > 0 && line[len - 1] == '\r')
                line[len - 1] = '\0';
            execute(c, line);
            if (shutting_down) {
                c->inlen = 0;
                return;
            }
        }
        start = (size_t)(nl - c->inbuf) + 1;
    }
    memmove(c->inbuf, c->inbuf + start, c->inlen - start);
    c->inlen -= start;
    if (c->inlen == INBUF_SIZE) { /* line longer than the buffer */
        if (!c->discarding)
            reply(c, "ERR too long");
        c->discarding = 1;
        c->inlen = 0;
    }
}

/* Returns -1 if the client should be closed. */
static int on_readable(struct client *c)
{
    ssize_t n;
    do
        n = read(c->fd, c->inbuf + c->inlen, INBUF_SIZE - c->inlen);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    if (n == 0) {
        flush_out(c); /* best effort */
        return -1;
    }
    c->inlen += (size_t)n;
    process_lines(c);
    return flush_out(c);
}

static void finish_shutdown(struct client *c)
{
    /* Deliver BYE (waiting briefly if the socket is full), then exit. */
    for (int tries = 0; c->outlen > 0 && tries < 100; tries++) {
        if (flush_out(c) != 0)
            break;
        if (c->outlen > 0) {
            struct timespec ts = { 0, 10 * 1000 * 1000 };
            nanosleep(&ts, NULL);
        }
    }
    if (aof_fd >= 0)
        close(aof_fd);
    exit(0);
}

/* ---- main ---- */

static void accept_all(int listener)
{
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                return; /* try again on the next wakeup */
            die("accept4");
        }
        struct client *c = calloc(1, sizeof *c);
        if (c == NULL)
            die("calloc");
        c->fd = fd;
        c->reading = 1;
        if ((size_t)fd >= nclients_cap) {
            size_t cap = nclients_cap ? nclients_cap : 64;
            while (cap <= (size_t)fd)
                cap *= 2;
            struct client **p = realloc(clients, cap * sizeof *p);
            if (p == NULL)
                die("realloc clients");
            memset(p + nclients_cap, 0, (cap - nclients_cap) * sizeof *p);
            clients = p;
            nclients_cap = cap;
        }
        clients[fd] = c;
        struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
            die("epoll_ctl add client");
    }
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s PORT [DIR]\n", argv[0]);
        return 2;
    }
    char *end;
    long port = strtol(argv[1], &end, 10);
    if (*argv[1] == '\0' || *end != '\0' || port < 1 || port > 65535) {
        fprintf(stderr, "bad port %s\n", argv[1]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigchld;
    sa.sa_flags = SA_RESTART | SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGCHLD, &sa, NULL) != 0)
        die("sigaction SIGCHLD");

    table = calloc(TABLE_SIZE, sizeof *table);
    if (table == NULL)
        die("calloc table");

    if (argc == 3) {
        char path[4096];
        if ((size_t)snprintf(path, sizeof path, "%s/aof.log", argv[2]) >= sizeof path) {
            fprintf(stderr, "DIR too long\n");
            return 2;
        }
        aof_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (aof_fd < 0)
            die(path);
    }

    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listener < 0)
        die("socket");
    int one = 1;
    if (setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        die("setsockopt SO_REUSEADDR");
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0)
        die("bind");
    if (listen(listener, 128) != 0)
        die("listen");

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = listener };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev) != 0)
        die("epoll_ctl add listener");

    printf("kvserver listening on %ld\n", port);
    fflush(stdout);

    for (;;) {
        struct epoll_event events[MAX_EVENTS];
        int n = epoll_wait(ep, events, MAX_EVENTS, 100);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        reap_children();
        for (int k = 0; k < n; k++) {
            int fd = events[k].data.fd;
            if (fd == listener) {
                accept_all(listener);
                continue;
            }
            struct client *c = (size_t)fd < nclients_cap ? clients[fd] : NULL;
            if (c == NULL)
                continue;
            uint32_t e = events[k].events;
            int dead = 0;
            if (e & EPOLLOUT)
                dead = flush_out(c) != 0;
            if (!dead && (e & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                dead = on_readable(c) != 0;
            if (shutting_down)
                finish_shutdown(c);
            if (dead)
                close_client(c);
            else
                update_events(c);
        }
    }
}
