/* The interception mechanisms issue 17 weighs, measured per syscall (getppid):
 *   intercept native N        the syscall itself
 *   intercept sud N           Syscall User Dispatch: every syscall raises SIGSYS; the handler
 *                             makes it with the selector open (lazypoline's scheme)
 *   intercept unotify N       seccomp user notification: a supervisor thread answers each call
 *   intercept ptrace MODE N   MODE under a minimal ptrace tracer that resumes every stop
 *                             (for sud: each SIGSYS is a signal-delivery stop)
 * Prints "<ns per call>".
 */
#define _GNU_SOURCE
#include <linux/seccomp.h>
#include <linux/filter.h>
#include <linux/audit.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef PR_SET_SYSCALL_USER_DISPATCH
#define PR_SET_SYSCALL_USER_DISPATCH 59
#define PR_SYS_DISPATCH_ON 1
#define SYSCALL_DISPATCH_FILTER_ALLOW 0
#define SYSCALL_DISPATCH_FILTER_BLOCK 1
#endif

static volatile char selector = SYSCALL_DISPATCH_FILTER_ALLOW;

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void on_sigsys(int sig, siginfo_t *info, void *ctx) {
    (void)sig;
    (void)info;
    ucontext_t *uc = ctx;
    greg_t *r = uc->uc_mcontext.gregs;
    /* libc (this syscall() and the signal return) is the allowed range. */
    r[REG_RAX] = syscall(r[REG_RAX], r[REG_RDI], r[REG_RSI], r[REG_RDX], r[REG_R10], r[REG_R8], r[REG_R9]);
}

/* getppid from this binary's own syscall instruction (outside libc's allowed range). */
static long raw_getppid(void) {
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"((long)SYS_getppid) : "rcx", "r11", "memory");
    return ret;
}

/* The executable mapping of libc, from /proc/self/maps. */
static void libc_text(unsigned long *start, unsigned long *len) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    unsigned long at = (unsigned long)&syscall;
    while (f && fgets(line, sizeof line, f)) {
        unsigned long a, b;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &a, &b, perms) == 3 && perms[2] == 'x' && at >= a && at < b) {
            *start = a;
            *len = b - a;
        }
    }
    if (f) fclose(f);
}

static void *supervise(void *arg) {
    int fd = *(int *)arg;
    struct seccomp_notif req;
    struct seccomp_notif_resp resp;
    for (;;) {
        memset(&req, 0, sizeof req);
        if (ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, &req) != 0) return NULL;
        memset(&resp, 0, sizeof resp);
        resp.id = req.id;
        resp.val = 1;
        ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, &resp);
    }
}

static int loop(const char *mode, long n) {
    if (strcmp(mode, "sud") == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_sigsys;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGSYS, &sa, NULL);
        /* The handler's own syscalls and the signal return come from libc, the allowed range. */
        unsigned long start = 0, len = 0;
        libc_text(&start, &len);
        if (prctl(PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, start, len, &selector) != 0) {
            perror("PR_SET_SYSCALL_USER_DISPATCH");
            return 1;
        }
    } else if (strcmp(mode, "unotify") == 0) {
        struct sock_filter f[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = {.len = 4, .filter = f};
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        int fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
        if (fd < 0) {
            perror("seccomp user notification");
            return 1;
        }
        pthread_t th;
        pthread_create(&th, NULL, supervise, &fd);
    } else if (strcmp(mode, "native") != 0) {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    long acc = 0, start = now_ns();
    if (strcmp(mode, "sud") == 0) selector = SYSCALL_DISPATCH_FILTER_BLOCK;
    for (long i = 0; i < n; i++) acc += raw_getppid();
    selector = SYSCALL_DISPATCH_FILTER_ALLOW;
    long ns = now_ns() - start;
    printf("%.0f\n", (double)ns / (double)n);
    return acc == 0 ? 3 : 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "ptrace") == 0) {
        pid_t pid = fork();
        if (pid == 0) {
            ptrace(PTRACE_TRACEME, 0, 0, 0);
            raise(SIGSTOP);
            return loop(argv[2], atol(argv[3]));
        }
        int st;
        waitpid(pid, &st, 0);
        ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_EXITKILL);
        ptrace(PTRACE_CONT, pid, 0, 0);
        for (;;) {
            if (waitpid(pid, &st, 0) < 0 || WIFEXITED(st) || WIFSIGNALED(st)) break;
            int sig = WIFSTOPPED(st) ? WSTOPSIG(st) : 0;
            ptrace(PTRACE_CONT, pid, 0, sig == SIGSTOP ? 0 : sig);
        }
        return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: intercept native|sud|unotify N | intercept ptrace MODE N\n");
        return 2;
    }
    return loop(argv[1], atol(argv[2]));
}
