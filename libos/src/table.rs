//! The syscall table: one declarative entry for every x86-64 syscall number.
//!
//! Each entry says how ftexec treats the syscall (its [`Class`]), which arguments replay checks for
//! divergence, which tracee memory the kernel writes (so the recorder can capture it and the replayer
//! can put it back), and the few facts that refine the class at run time: an fd argument that may
//! name replicated state (a data-dir file), a path argument that may point into the data directory,
//! an fd the syscall creates. Nothing else in ftexec matches on syscall numbers for policy; the
//! handful of irregular syscalls (fcntl, ioctl, mmap, prctl) name a [`Special`] here.
//!
//! The man-page signature of each syscall is the comment beside its entry, and the types of its
//! arguments, as far as showing them goes, are its `args` ([`Arg`], from [`crate::arg`]). What a
//! syscall changes in the process state (fds, streams, signals, timers, tasks) is declared in the
//! groups of [`crate::effect`].

pub use crate::arg::{Arg, Now, Returns};
pub use crate::effect::{
    Changes, CloneKind, Closes, FdEffect, FlagsArg, Follow, Interrupted, Ipc, Live, MaskAt, NewFd, Object, Send,
    SigEffect, Sleep, Stream, Target, TaskEffect, TempMask, Timer, Wait, Waits,
};

/// How a syscall is treated. See DESIGN.md, "The event model".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Runs natively; the seccomp filter allows it and no stop happens.
    Deterministic,
    /// Runs for real in record and replay (replicated state: data-dir files, the fd table);
    /// its result and the hash of the memory it wrote are logged and compared at replay.
    Local,
    /// Runs for real in record only; its result and the bytes it wrote are logged and injected at
    /// replay.
    Recorded,
    /// An effect on the outside world (stdout, a socket, a file outside the data directory): runs
    /// in record only, after every event before it is committed; the result is injected at replay.
    Output,
    /// Answered by ftexec itself, identically on every replica and in every mode; not logged.
    Emulated(Emulation),
    /// Not allowed under ftexec.
    Refused(Refusal),
}

/// What an emulated syscall answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emulation {
    /// Fails with this errno (e.g. rseq → ENOSYS so glibc falls back to plain code).
    Errno(i32),
    /// getcpu: always CPU 0, node 0.
    GetCpu,
}

/// Why and how a syscall is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The program gets this errno (ENOSYS lets most programs fall back); ftexec warns once.
    Errno(i32, &'static str),
    /// Recording stops with an error: the program needs something ftexec cannot replay yet.
    Unsupported(&'static str),
}

/// Where the recorder executes a Recorded syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exec {
    /// In the tracee: the tracer resumes it to the syscall-exit stop (two stops).
    Tracee,
    /// In the tracer, with its own buffers, and the syscall in the tracee is skipped (one stop).
    /// Only for pure syscalls whose answer does not depend on the calling process.
    Tracer,
    /// In the tracer, on a copy of the tracee's fd in argument 0 (pidfd_getfd), when that cannot
    /// block or change what the program sees; the tracee's syscall is skipped (one stop).
    /// Otherwise in the tracee, as `Tracee`. The log is the same either way.
    Copy(CopyOp),
}

/// What the tracer does on its copy of the fd (see [`Exec::Copy`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyOp {
    /// read/recvfrom of a socket, with MSG_DONTWAIT: data or EOF there, or EAGAIN on a
    /// non-blocking socket. A blocking socket with nothing to read waits in the tracee.
    /// `flags`: the argument with the MSG_* flags; `addr`: the source address argument (a
    /// call that asks for one is left to the tracee).
    Recv { flags: Option<u8>, addr: Option<u8> },
    /// write/writev/sendto of a socket: sent at once when nothing is replicated (a log file),
    /// or queued and released when the log before it is committed (output commit without
    /// stopping the program). `flags` and `addr` as for `Recv` (a destination address).
    Send { flags: Option<u8>, addr: Option<u8> },
    /// epoll_wait with events ready now; with none ready and a timeout, it waits in the tracee.
    /// `mask`: the argument of epoll_pwait's signal mask (a call with one is left to the tracee).
    EpollWait { mask: Option<u8> },
    /// sendmsg of a socket without a destination or control data (its struct msghdr at argument
    /// 1, its flags at `flags`): as `Send`, with the bytes of its iovecs.
    SendMsg { flags: u8 },
}

impl CopyOp {
    /// Whether it sends: its event is an output's, and its bytes wait for their commit.
    pub fn sends(&self) -> bool {
        matches!(self, CopyOp::Send { .. } | CopyOp::SendMsg { .. })
    }
}

/// How many bytes a memory write covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Len {
    /// A fixed size in bytes.
    Fixed(u32),
    /// The value of argument i.
    Arg(u8),
    /// The syscall's (non-negative) return value.
    Ret,
    /// Return value times a record size (epoll_wait: n × 12).
    RetTimes(u32),
    /// Argument i times a record size (poll: nfds × 8).
    ArgTimes(u8, u32),
    /// The u32 that argument i points to (socklen_t *addrlen), read after the syscall.
    DerefU32(u8),
    /// An fd_set sized by argument i (nfds), rounded up to 8 bytes.
    FdSet(u8),
    /// One byte per page of the length in argument i (mincore).
    Pages(u8),
    /// An iovec array (pointer in this write's arg) with its count in argument i; the return
    /// value says how many bytes were scattered into it.
    Iov(u8),
    /// A struct msghdr (recvmsg): name, iovecs (return value bytes) and control data.
    Msghdr,
    /// A struct mmsghdr array (recvmmsg): the return value says how many messages.
    Mmsghdr,
    /// ioctl: what request argument 1 writes ([`crate::ioctl::effect`]): the size of an
    /// _IOC_READ request, a listed one for the requests before _IOC, struct ifconf's array.
    Ioctl,
}

/// One region of tracee memory a syscall writes: pointer in argument `ptr`, size `len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Write {
    pub ptr: u8,
    pub len: Len,
}

/// Input bytes (not registers) that replay compares: the path a syscall opens, the data it writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    None,
    /// A NUL-terminated path in argument i.
    Path(u8),
    /// Two paths (rename, link).
    Paths(u8, u8),
    /// A buffer at argument i of length argument j (write, sendto).
    Buf(u8, u8),
    /// An iovec array at argument i with count argument j (writev).
    Iov(u8, u8),
    /// A struct msghdr at argument i (sendmsg).
    Msghdr(u8),
}

/// Syscalls whose treatment depends on an argument in a way the generic fields cannot express.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    None,
    /// fcntl: F_DUPFD* duplicate, F_GETFD/F_SETFD act on the fd table (Local); the rest depend on
    /// the fd.
    Fcntl,
    /// mmap of a file: Local for replicated or verified files; for other files the mapped bytes
    /// are recorded and replay maps anonymous memory holding them.
    Mmap,
    /// prctl: runs in both modes, except PR_SET_TSC which would defeat rdtsc trapping.
    Prctl,
    /// clone, fork, vfork, clone3: run for real in both modes (the new task must exist); the
    /// parent's result (the child's tid) is the recorded one.
    Clone,
    /// execve, execveat: run for real in both modes after checking the new image's hash.
    Exec,
    /// exit, exit_group: deterministic, but traced all the same: the task's last stop, where the
    /// tracer collects the clock reads it made since its previous stop (see [`crate::clock`]).
    Exit,
    /// close, close_range: deterministic, but traced all the same: a socket whose replies still
    /// wait for their commit in the recorder (which holds a copy of the fd) must not outlive the
    /// program's close, or the program's epoll sets would keep reporting it (epoll(7), Q6).
    Close,
    /// rt_sigprocmask: deterministic, but traced when it may unblock signals (`how` is not
    /// SIG_BLOCK and `set` is not NULL): a caught signal pending while blocked (raise() blocks
    /// every signal around its tgkill) is delivered at its exit, a point replay must find.
    SigMask,
    /// ioctl: FIOCLEX/FIONCLEX act on the fd table (Local, as F_SETFD), FIONBIO/FIOASYNC on the
    /// open file's flags (as F_SETFL); the rest are recorded (see [`crate::ioctl`]).
    Ioctl,
    /// sendfile, copy_file_range: bytes from the fd in argument `input` (at the offset `offset`
    /// points to, or its file position when NULL) to the fd in `.fd()`. To an fd that is not
    /// replicated (a socket: nginx's default `sendfile on`) it is an Output: it runs at record
    /// after the commit of the log before it, and replay gives its result and offset; to a file
    /// of the data directory it runs at replay too when its input is real there, and fails with
    /// EINVAL otherwise (its bytes would not be there at replay; programs fall back to
    /// read/write then).
    FdToFd {
        input: u8,
        offset: u8,
    },
    /// restart_syscall: continues the syscall a signal interrupted with
    /// -ERESTART_RESTARTBLOCK; what it writes and how it runs again are that syscall's.
    RestartSyscall,
}

/// Argument bit masks for [`Spec::check`].
pub const A0: u8 = 1;
pub const A1: u8 = 2;
pub const A2: u8 = 4;
pub const A3: u8 = 8;
pub const A4: u8 = 16;
pub const A5: u8 = 32;

/// The declaration of one syscall.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub nr: u32,
    pub name: &'static str,
    pub class: Class,
    /// Arguments compared at replay (bit i = argument i).
    pub check: u8,
    /// Input bytes compared at replay.
    pub input: Input,
    /// Tracee memory the kernel writes.
    pub writes: &'static [Write],
    /// An fd argument: if it names replicated state (data-dir file, verified file, memfd), the
    /// syscall is Local instead of its class. For Output, an fd naming stdout/stderr makes replay
    /// write the recorded bytes.
    pub fd: Option<u8>,
    /// (dirfd argument, path argument): a path inside the data directory makes it Local.
    pub path: Option<(Option<u8>, u8)>,
    pub exec: Exec,
    pub special: Special,
    /// Replay executes it for its effect on the process (set_tid_address) but injects the
    /// recorded result.
    pub replay_runs: bool,
    /// What it does to the fd table.
    pub fds: FdEffect,
    /// Streams, signals sent, timers armed, sockets rebuilt at go-live.
    pub follow: Follow,
    /// Temporary signal masks, restarts, signals taken.
    pub signals: SigEffect,
    /// Tasks created or reaped.
    pub task: TaskEffect,
    /// The types of its arguments, in order (empty: not declared; ftdbg then shows the arguments
    /// replay checks).
    pub args: &'static [Arg],
    /// How its result reads.
    pub returns: Returns,
    /// Whether it reads a clock, and where the time it read is.
    pub now: Option<Now>,
    /// The process state it changes (cwd, credentials, umask, limits, capabilities).
    pub process: Changes,
    /// Whether it may wait in the kernel for another task of the program (semop, msgrcv).
    pub waits: Waits,
    /// Whether the syscall buffer's handler may make it in the program, without a stop (see
    /// `ft_interposer::sysbuf`; its call sites are rewritten): the `Copy` syscalls, on the fds
    /// the recorder approved, and poll, whose result is all in what it writes.
    pub buffered: bool,
}

impl Spec {
    /// Whether it is a `Copy` syscall that sends (its event is an output's; the syscall buffer
    /// keeps a copy of its bytes, not a result to write back).
    pub fn copy_sends(&self) -> bool {
        matches!(self.exec, Exec::Copy(op) if op.sends())
    }

    /// The argument holding the address its first memory write goes to (a read's buffer,
    /// epoll's events, poll's array): where a buffered call's bytes land. 1 when it writes none.
    pub fn out_arg(&self) -> usize {
        self.writes.first().map_or(1, |w| usize::from(w.ptr))
    }
}

const fn base(nr: u32, name: &'static str, class: Class) -> Spec {
    Spec {
        nr,
        name,
        class,
        check: 0,
        input: Input::None,
        writes: &[],
        fd: None,
        path: None,
        exec: Exec::Tracee,
        special: Special::None,
        replay_runs: false,
        fds: FdEffect::NONE,
        follow: Follow::NONE,
        signals: SigEffect::NONE,
        task: TaskEffect::NONE,
        args: &[],
        returns: Returns::Number,
        now: None,
        process: Changes::None,
        waits: Waits::Never,
        buffered: false,
    }
}

const fn det(nr: u32, name: &'static str) -> Spec {
    base(nr, name, Class::Deterministic)
}
const fn rec(nr: u32, name: &'static str) -> Spec {
    base(nr, name, Class::Recorded)
}
const fn out(nr: u32, name: &'static str) -> Spec {
    base(nr, name, Class::Output)
}
const fn loc(nr: u32, name: &'static str) -> Spec {
    base(nr, name, Class::Local)
}
const fn emu(nr: u32, name: &'static str, e: Emulation) -> Spec {
    base(nr, name, Class::Emulated(e))
}
const fn no(nr: u32, name: &'static str, errno: i32, why: &'static str) -> Spec {
    base(nr, name, Class::Refused(Refusal::Errno(errno, why)))
}

const fn w(ptr: u8, len: Len) -> Write {
    Write { ptr, len }
}

impl Spec {
    const fn check(mut self, mask: u8) -> Self {
        self.check = mask;
        self
    }
    const fn input(mut self, i: Input) -> Self {
        self.input = i;
        self
    }
    const fn w(mut self, writes: &'static [Write]) -> Self {
        self.writes = writes;
        self
    }
    /// The fd argument may name replicated state.
    const fn fd(mut self, i: u8) -> Self {
        self.fd = Some(i);
        self
    }
    /// A path argument (absolute or relative to the cwd).
    const fn path(mut self, i: u8) -> Self {
        self.path = Some((None, i));
        self.input = Input::Path(i);
        self
    }
    /// A path argument relative to a dirfd argument.
    const fn path_at(mut self, dirfd: u8, i: u8) -> Self {
        self.path = Some((Some(dirfd), i));
        self.input = Input::Path(i);
        self
    }
    const fn tracer(mut self) -> Self {
        self.exec = Exec::Tracer;
        self
    }
    const fn copy(mut self, op: CopyOp) -> Self {
        self.exec = Exec::Copy(op);
        self.buffered = true;
        self
    }
    const fn buffered(mut self) -> Self {
        self.buffered = true;
        self
    }
    const fn special(mut self, s: Special) -> Self {
        self.special = s;
        self
    }
    /// Changes process state: runs for real at replay, the state after it logged and checked.
    const fn changes(mut self, c: Changes) -> Self {
        self.process = c;
        self.class = Class::Local;
        self
    }
    const fn waits(mut self, w: Waits) -> Self {
        self.waits = w;
        self
    }
    const fn replay_runs(mut self) -> Self {
        self.replay_runs = true;
        self
    }
    const fn live(mut self, l: Live) -> Self {
        self.follow.live = l;
        self
    }
    const fn creates(mut self, n: NewFd) -> Self {
        self.fds.creates = n;
        self
    }
    const fn closes(mut self, c: Closes) -> Self {
        self.fds.closes = c;
        self
    }
    const fn object(mut self, o: Object) -> Self {
        self.fds.object = o;
        self
    }
    const fn flags(mut self, f: FlagsArg) -> Self {
        self.fds.flags = f;
        self
    }
    const fn stream(mut self, s: Stream) -> Self {
        self.follow.stream = s;
        self
    }
    const fn sends(mut self, target: Target, sig: u8, info: Option<u8>) -> Self {
        self.follow.sends = Some(Send { target, sig, info });
        self
    }
    const fn ipc(mut self, i: Ipc) -> Self {
        self.follow.ipc = i;
        self
    }
    const fn timer(mut self, t: Timer) -> Self {
        self.follow.timer = t;
        self
    }
    const fn mask(mut self, at: MaskAt, interrupted: Interrupted) -> Self {
        self.signals.mask = Some(TempMask { at, interrupted });
        self
    }
    const fn restart(mut self, s: Sleep) -> Self {
        self.signals.restart = Some(s);
        self
    }
    const fn takes_signal(mut self) -> Self {
        self.signals.takes = true;
        self
    }
    const fn clone_kind(mut self, c: CloneKind) -> Self {
        self.task.clone = c;
        self
    }
    const fn wait(mut self, w: Wait) -> Self {
        self.task.wait = Some(w);
        self
    }
    /// The argument types, from the man-page signature.
    const fn args(mut self, a: &'static [Arg]) -> Self {
        self.args = a;
        self
    }
    const fn returns(mut self, r: Returns) -> Self {
        self.returns = r;
        self
    }
    const fn now(mut self, n: Now) -> Self {
        self.now = Some(n);
        self
    }

    /// Whether argument `i` is compared at replay.
    pub fn checks_arg(&self, i: usize) -> bool {
        i < 6 && self.check & (1 << i) != 0
    }
}

use libc::{ENOSYS, EPERM};
use Arg::*;
use Len::*;

/// The result of a wait with a temporary mask that a handled signal interrupted (ppoll,
/// pselect6), before the kernel turns it into EINTR.
const ERESTARTNOHAND: i64 = -514;
const EINTR_RET: i64 = -(libc::EINTR as i64);

const SIZEOF_STAT: u32 = 144;
const SIZEOF_TIMESPEC: u32 = 16;
const SIZEOF_SIGINFO: u32 = 128;
const SIZEOF_RUSAGE: u32 = 144;
const SIZEOF_STATFS: u32 = 120;
const SIZEOF_ITIMERVAL: u32 = 32;
const SIZEOF_ITIMERSPEC: u32 = 32;
const SIZEOF_RLIMIT: u32 = 16;
const SIZEOF_TIMEX: u32 = 208;
const SIZEOF_STATX: u32 = 256;
const SIZEOF_UTSNAME: u32 = 390;
const SIZEOF_SYSINFO: u32 = 112;
const SIZEOF_TMS: u32 = 32;

const MQ_NOTIFY: &str = "a message queue's notification (a signal or a thread at an arrival the program does not wait for) is not replayed yet";
const ADMIN: &str = "administrative syscall that a replicated service must not make";
const AIO: &str = "asynchronous I/O completes outside any syscall stop, so it cannot be ordered";
const URING: &str = "io_uring bypasses syscall interposition (rr #2613); programs fall back to plain syscalls";
const OBSOLETE: &str = "obsolete or unimplemented on x86-64";
const NEWFS: &str = "mount API; a replicated service must not change mounts";
const FOREIGN: &str = "access to the memory or fds of another process cannot be replayed";
const NEWER: &str = "not supported yet by ftexec; ENOSYS lets programs fall back";

/// The table, sorted by number; a test proves every x86-64 syscall number has an entry.
#[rustfmt::skip]
pub static TABLE: &[Spec] = &[
    // ssize_t read(int fd, void *buf, size_t count)
    rec(0, "read").fd(0).check(A0 | A2).w(&[w(1, Ret)]).copy(CopyOp::Recv { flags: None, addr: None }).stream(Stream::Read { vectored: false }).args(&[Fd, OutBuf, Uint]),
    // ssize_t write(int fd, const void *buf, size_t count)
    out(1, "write").fd(0).check(A0 | A2).input(Input::Buf(1, 2)).copy(CopyOp::Send { flags: None, addr: None }).stream(Stream::Write { vectored: false }).args(&[Fd, InBuf, Uint]),
    // int open(const char *path, int flags, mode_t mode)
    rec(2, "open").path(0).check(A1).creates(NewFd::Ret).object(Object::File).flags(FlagsArg::Arg(1)).args(&[Path, OpenFlags, Mode]),
    // int close(int fd)
    Spec { special: Special::Close, ..det(3, "close") }.closes(Closes::Arg(0)).args(&[Fd]),
    // int stat(const char *path, struct stat *st)
    rec(4, "stat").input(Input::Path(0)).w(&[w(1, Fixed(SIZEOF_STAT))]).args(&[Path, Stat]),
    // int fstat(int fd, struct stat *st)
    rec(5, "fstat").check(A0).w(&[w(1, Fixed(SIZEOF_STAT))]).args(&[Fd, Stat]),
    // int lstat(const char *path, struct stat *st)
    rec(6, "lstat").input(Input::Path(0)).w(&[w(1, Fixed(SIZEOF_STAT))]).args(&[Path, Stat]),
    // int poll(struct pollfd *fds, nfds_t nfds, int timeout)
    rec(7, "poll").check(A1).w(&[w(0, ArgTimes(1, 8))]).buffered().args(&[Ptr, Uint, Int]),
    // off_t lseek(int fd, off_t offset, int whence)
    rec(8, "lseek").fd(0).check(A0 | A1 | A2).stream(Stream::Seek).args(&[Fd, Int, Whence]),
    // void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
    // Anonymous mappings are allowed by the filter; file mappings stop here.
    det(9, "mmap").fd(4).check(A1 | A2 | A3 | A4 | A5).special(Special::Mmap).args(&[Hex, Uint, Prot, MapFlags, Fd, Hex]).returns(Returns::Addr),
    // int mprotect(void *addr, size_t len, int prot)
    det(10, "mprotect").args(&[Hex, Uint, Prot]),
    // int munmap(void *addr, size_t len)
    det(11, "munmap").args(&[Hex, Uint]),
    // void *brk(void *addr)
    det(12, "brk").args(&[Hex]).returns(Returns::Addr),
    // int rt_sigaction(int sig, const struct sigaction *act, struct sigaction *old, size_t sz)
    det(13, "rt_sigaction").args(&[Signal, Ptr, Ptr, Uint]),
    // int rt_sigprocmask(int how, const sigset_t *set, sigset_t *old, size_t sz)
    det(14, "rt_sigprocmask").special(Special::SigMask).args(&[Int, Ptr, Ptr, Uint]),
    // int rt_sigreturn(void)
    det(15, "rt_sigreturn"),
    // int ioctl(int fd, unsigned long req, ...)
    rec(16, "ioctl").check(A0 | A1).special(Special::Ioctl).w(&[w(2, Ioctl)]).args(&[Fd, Hex, Hex]),
    // ssize_t pread64(int fd, void *buf, size_t count, off_t off)
    rec(17, "pread64").fd(0).check(A0 | A2 | A3).w(&[w(1, Ret)]).args(&[Fd, OutBuf, Uint, Int]),
    // ssize_t pwrite64(int fd, const void *buf, size_t count, off_t off)
    out(18, "pwrite64").fd(0).check(A0 | A2 | A3).input(Input::Buf(1, 2)).args(&[Fd, InBuf, Uint, Int]),
    // ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
    rec(19, "readv").fd(0).check(A0 | A2).w(&[w(1, Iov(2))]).stream(Stream::Read { vectored: true }).args(&[Fd, Ptr, Int]),
    // ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
    out(20, "writev").fd(0).check(A0 | A2).input(Input::Iov(1, 2)).copy(CopyOp::Send { flags: None, addr: None }).stream(Stream::Write { vectored: true }).args(&[Fd, InBuf, Int]),
    // int access(const char *path, int mode)
    rec(21, "access").input(Input::Path(0)).check(A1).args(&[Path, AccessMode]),
    // int pipe(int fds[2])
    rec(22, "pipe").creates(NewFd::Pair(0)).object(Object::Pipe).w(&[w(0, Fixed(8))]).args(&[FdPair]),
    // int select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *timeout)
    rec(23, "select").check(A0).w(&[w(1, FdSet(0)), w(2, FdSet(0)), w(3, FdSet(0)), w(4, Fixed(16))]),
    // int sched_yield(void)
    det(24, "sched_yield"),
    // void *mremap(void *old, size_t old_len, size_t new_len, int flags, void *new)
    det(25, "mremap").returns(Returns::Addr),
    // int msync(void *addr, size_t len, int flags)
    det(26, "msync"),
    // int mincore(void *addr, size_t len, unsigned char *vec)
    rec(27, "mincore").w(&[w(2, Pages(1))]),
    // int madvise(void *addr, size_t len, int advice)
    det(28, "madvise").args(&[Hex, Uint, Int]),
    // System V IPC runs for real in every mode, in the program's own IPC namespace (ftexec makes
    // one with the PID namespace): with one task at a time its ids, values and shared memory are
    // as deterministic as threads' memory. IPC_STAT times are the replay's own.
    // int shmget(key_t key, size_t size, int flags)
    loc(29, "shmget").check(A0 | A1 | A2).ipc(Ipc::ShmId).args(&[Hex, Uint, Hex]),
    // void *shmat(int id, const void *addr, int flags)
    loc(30, "shmat").check(A0 | A1 | A2).args(&[Int, Hex, Hex]),
    // int shmctl(int id, int cmd, struct shmid_ds *buf)
    loc(31, "shmctl").check(A0 | A1).args(&[Int, Int, Ptr]),
    // int dup(int fd)
    loc(32, "dup").check(A0).creates(NewFd::Dup(0)).object(Object::Same).args(&[Fd]),
    // int dup2(int old, int new)
    loc(33, "dup2").check(A0 | A1).creates(NewFd::Dup(0)).object(Object::Same).closes(Closes::Arg(1)).args(&[Fd, Fd]),
    // int pause(void)
    rec(34, "pause"),
    // int nanosleep(const struct timespec *req, struct timespec *rem)
    rec(35, "nanosleep").w(&[w(1, Fixed(SIZEOF_TIMESPEC))]).restart(Sleep { req: 0, rem: 1, abs: None }).args(&[Ptr, Ptr]),
    // int getitimer(int which, struct itimerval *cur)
    rec(36, "getitimer").check(A0).w(&[w(1, Fixed(SIZEOF_ITIMERVAL))]),
    // unsigned alarm(unsigned seconds)
    rec(37, "alarm").check(A0).timer(Timer::Alarm { secs: 0 }),
    // int setitimer(int which, const struct itimerval *new, struct itimerval *old)
    rec(38, "setitimer").check(A0).w(&[w(2, Fixed(SIZEOF_ITIMERVAL))]).timer(Timer::Itimer { which: 0, new: 1 }),
    // pid_t getpid(void)
    rec(39, "getpid"),
    // ssize_t sendfile(int out, int in, off_t *off, size_t count)
    out(40, "sendfile").fd(0).special(Special::FdToFd { input: 1, offset: 2 }).check(A0 | A1 | A3).w(&[w(2, Fixed(8))]).args(&[Fd, Fd, Ptr, Uint]),
    // int socket(int domain, int type, int protocol)
    rec(41, "socket").check(A0 | A1 | A2).creates(NewFd::Ret).object(Object::Socket).flags(FlagsArg::Arg(1)).args(&[SockDomain, SockType, Int]),
    // int connect(int fd, const struct sockaddr *addr, socklen_t len)
    rec(42, "connect").check(A0 | A2).input(Input::Buf(1, 2)).live(Live::Connect).args(&[Fd, Ptr, Uint]),
    // int accept(int fd, struct sockaddr *addr, socklen_t *len)
    rec(43, "accept").check(A0).creates(NewFd::Ret).object(Object::Connection).w(&[w(1, DerefU32(2)), w(2, Fixed(4))]).args(&[Fd, Ptr, Ptr]),
    // ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to, socklen_t tolen)
    out(44, "sendto").fd(0).check(A0 | A2 | A3).input(Input::Buf(1, 2)).copy(CopyOp::Send { flags: Some(3), addr: Some(4) }).stream(Stream::Write { vectored: false }).args(&[Fd, InBuf, Uint, Hex, Ptr, Uint]),
    // ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from, socklen_t *fromlen)
    rec(45, "recvfrom").fd(0).check(A0 | A2 | A3).w(&[w(1, Ret), w(4, DerefU32(5)), w(5, Fixed(4))]).copy(CopyOp::Recv { flags: Some(3), addr: Some(4) }).stream(Stream::Read { vectored: false }).args(&[Fd, OutBuf, Uint, Hex, Ptr, Ptr]),
    // ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
    out(46, "sendmsg").fd(0).check(A0 | A2).input(Input::Msghdr(1)).copy(CopyOp::SendMsg { flags: 2 }).stream(Stream::SendMsg).args(&[Fd, Ptr, Hex]),
    // ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
    rec(47, "recvmsg").fd(0).check(A0 | A2).w(&[w(1, Msghdr)]).creates(NewFd::Rights).stream(Stream::RecvMsg).args(&[Fd, Ptr, Hex]),
    // int shutdown(int fd, int how)
    out(48, "shutdown").check(A0 | A1).stream(Stream::Shutdown).args(&[Fd, Int]),
    // int bind(int fd, const struct sockaddr *addr, socklen_t len)
    rec(49, "bind").check(A0 | A2).input(Input::Buf(1, 2)).live(Live::Bind).args(&[Fd, Ptr, Uint]),
    // int listen(int fd, int backlog)
    rec(50, "listen").check(A0 | A1).live(Live::Listen).args(&[Fd, Int]),
    // int getsockname(int fd, struct sockaddr *addr, socklen_t *len)
    rec(51, "getsockname").check(A0).w(&[w(1, DerefU32(2)), w(2, Fixed(4))]),
    // int getpeername(int fd, struct sockaddr *addr, socklen_t *len)
    rec(52, "getpeername").check(A0).w(&[w(1, DerefU32(2)), w(2, Fixed(4))]),
    // int socketpair(int domain, int type, int protocol, int sv[2])
    rec(53, "socketpair").check(A0 | A1 | A2).creates(NewFd::Pair(3)).object(Object::SocketPair).flags(FlagsArg::Arg(1)).w(&[w(3, Fixed(8))]).args(&[SockDomain, SockType, Int, FdPair]),
    // int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
    rec(54, "setsockopt").check(A0 | A1 | A2 | A4).input(Input::Buf(3, 4)).live(Live::SockOpt),
    // int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
    rec(55, "getsockopt").check(A0 | A1 | A2).w(&[w(3, DerefU32(4)), w(4, Fixed(4))]),
    // long clone(unsigned long flags, void *stack, int *ptid, int *ctid, unsigned long tls)
    loc(56, "clone").check(A0).special(Special::Clone).clone_kind(CloneKind::Clone).args(&[Hex, Ptr, Ptr, Ptr, Hex]),
    // pid_t fork(void)
    loc(57, "fork").special(Special::Clone).clone_kind(CloneKind::Fork),
    // pid_t vfork(void)
    loc(58, "vfork").special(Special::Clone).clone_kind(CloneKind::Vfork),
    // int execve(const char *path, char *const argv[], char *const envp[])
    loc(59, "execve").input(Input::Path(0)).special(Special::Exec).args(&[Path, Ptr, Ptr]),
    // void exit(int status)
    Spec { special: Special::Exit, ..det(60, "exit") }.args(&[Int]),
    // pid_t wait4(pid_t pid, int *status, int options, struct rusage *ru)
    rec(61, "wait4").check(A0 | A2).w(&[w(1, Fixed(4)), w(3, Fixed(SIZEOF_RUSAGE))]).wait(Wait::Wait4).args(&[Int, Ptr, Hex, Ptr]),
    // int kill(pid_t pid, int sig)
    rec(62, "kill").check(A0 | A1).sends(Target::Process(0), 1, None).args(&[Int, Signal]),
    // int uname(struct utsname *buf)
    rec(63, "uname").tracer().w(&[w(0, Fixed(SIZEOF_UTSNAME))]).args(&[Utsname]),
    // int semget(key_t key, int nsems, int flags)
    loc(64, "semget").check(A0 | A1 | A2).ipc(Ipc::SemId).args(&[Hex, Int, Hex]),
    // int semop(int id, struct sembuf *sops, size_t nsops): may wait for another process
    loc(65, "semop").check(A0 | A2).waits(Waits::SemOps { ops: 1, count: 2 }).args(&[Int, Ptr, Uint]),
    // int semctl(int id, int num, int cmd, ...)
    loc(66, "semctl").check(A0 | A1 | A2).args(&[Int, Int, Int, Hex]),
    // int shmdt(const void *addr)
    loc(67, "shmdt").check(A0).args(&[Hex]),
    // int msgget(key_t key, int flags)
    loc(68, "msgget").check(A0 | A1).ipc(Ipc::MsgId).args(&[Hex, Hex]),
    // int msgsnd(int id, const void *msg, size_t size, int flags): runs holding the token, so
    // that a receiver finds the message where the log has it (a full queue would wait with it)
    loc(69, "msgsnd").check(A0 | A2 | A3).waits(Waits::Holding { arg: 3 }).args(&[Int, Ptr, Uint, Hex]),
    // ssize_t msgrcv(int id, void *msg, size_t size, long type, int flags): may wait for one
    loc(70, "msgrcv").check(A0 | A2 | A3 | A4).waits(Waits::UnlessNoWait { arg: 4 }).args(&[Int, Ptr, Uint, Int, Hex]),
    // int msgctl(int id, int cmd, struct msqid_ds *buf)
    loc(71, "msgctl").check(A0 | A1).args(&[Int, Int, Ptr]),
    // int fcntl(int fd, int cmd, ...)
    rec(72, "fcntl").fd(0).check(A0 | A1).special(Special::Fcntl).creates(NewFd::DupCmd).object(Object::Same).args(&[Fd, FcntlCmd, Hex]),
    // int flock(int fd, int op)
    rec(73, "flock").check(A0 | A1).args(&[Fd, Int]),
    // int fsync(int fd)
    rec(74, "fsync").fd(0).check(A0).args(&[Fd]),
    // int fdatasync(int fd)
    rec(75, "fdatasync").fd(0).check(A0).args(&[Fd]),
    // int truncate(const char *path, off_t len)
    out(76, "truncate").path(0).check(A1).args(&[Path, Int]),
    // int ftruncate(int fd, off_t len)
    out(77, "ftruncate").fd(0).check(A0 | A1).args(&[Fd, Int]),
    // long getdents(unsigned fd, struct linux_dirent *d, unsigned count)
    rec(78, "getdents").check(A0 | A2).w(&[w(1, Ret)]).args(&[Fd, Ptr, Uint]),
    // char *getcwd(char *buf, size_t size)
    rec(79, "getcwd").check(A1).w(&[w(0, Ret)]).args(&[OutStr, Uint]),
    // int chdir(const char *path)
    rec(80, "chdir").path(0).changes(Changes::Cwd).args(&[Path]),
    // int fchdir(int fd)
    rec(81, "fchdir").fd(0).check(A0).changes(Changes::Cwd).args(&[Fd]),
    // int rename(const char *old, const char *new)
    out(82, "rename").path(0).input(Input::Paths(0, 1)).args(&[Path, Path]),
    // int mkdir(const char *path, mode_t mode)
    out(83, "mkdir").path(0).check(A1).args(&[Path, Mode]),
    // int rmdir(const char *path)
    out(84, "rmdir").path(0).args(&[Path]),
    // int creat(const char *path, mode_t mode)
    rec(85, "creat").path(0).check(A1).creates(NewFd::Ret).object(Object::File).flags(FlagsArg::Const(libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC)).args(&[Path, Mode]),
    // int link(const char *old, const char *new)
    out(86, "link").path(1).input(Input::Paths(0, 1)).args(&[Path, Path]),
    // int unlink(const char *path)
    out(87, "unlink").path(0).args(&[Path]),
    // int symlink(const char *target, const char *linkpath)
    out(88, "symlink").path(1).input(Input::Paths(0, 1)).args(&[Path, Path]),
    // ssize_t readlink(const char *path, char *buf, size_t size)
    rec(89, "readlink").input(Input::Path(0)).check(A2).w(&[w(1, Ret)]).args(&[Path, OutBuf, Uint]),
    // int chmod(const char *path, mode_t mode)
    out(90, "chmod").path(0).check(A1).args(&[Path, Mode]),
    // int fchmod(int fd, mode_t mode)
    out(91, "fchmod").fd(0).check(A0 | A1).args(&[Fd, Mode]),
    // int chown(const char *path, uid_t uid, gid_t gid)
    out(92, "chown").path(0).check(A1 | A2),
    // int fchown(int fd, uid_t uid, gid_t gid)
    out(93, "fchown").fd(0).check(A0 | A1 | A2),
    // int lchown(const char *path, uid_t uid, gid_t gid)
    out(94, "lchown").path(0).check(A1 | A2),
    // mode_t umask(mode_t mask)
    det(95, "umask").check(A0).changes(Changes::Umask).args(&[Mode]),
    // int gettimeofday(struct timeval *tv, struct timezone *tz)
    rec(96, "gettimeofday").tracer().w(&[w(0, Fixed(16)), w(1, Fixed(8))]).args(&[Timeval, Ptr]).now(Now::At { at: 0, clock: None }),
    // int getrlimit(int res, struct rlimit *rlim)
    rec(97, "getrlimit").check(A0).w(&[w(1, Fixed(SIZEOF_RLIMIT))]).args(&[Resource, Rlimit]),
    // int getrusage(int who, struct rusage *usage)
    rec(98, "getrusage").check(A0).w(&[w(1, Fixed(SIZEOF_RUSAGE))]).args(&[Int, Ptr]),
    // int sysinfo(struct sysinfo *info)
    rec(99, "sysinfo").tracer().w(&[w(0, Fixed(SIZEOF_SYSINFO))]).args(&[Ptr]),
    // clock_t times(struct tms *buf)
    rec(100, "times").w(&[w(0, Fixed(SIZEOF_TMS))]).args(&[Ptr]),
    no(101, "ptrace", EPERM, "the program is already traced by ftexec"),
    // uid_t getuid(void)
    det(102, "getuid"),
    // int syslog(int type, char *buf, int len)
    rec(103, "syslog").check(A0).w(&[w(1, Ret)]),
    // gid_t getgid(void)
    det(104, "getgid"),
    // int setuid(uid_t uid)
    rec(105, "setuid").check(A0).changes(Changes::Creds),
    // int setgid(gid_t gid)
    rec(106, "setgid").check(A0).changes(Changes::Creds),
    // uid_t geteuid(void)
    det(107, "geteuid"),
    // gid_t getegid(void)
    det(108, "getegid"),
    // int setpgid(pid_t pid, pid_t pgid): runs at replay too (pids are the recording's), so the
    // process groups are real when a replica goes live; its result is the log's (a parent's
    // setpgid of a child that is exec'ing at that moment may fail with EACCES or not)
    rec(109, "setpgid").replay_runs(),
    // pid_t getppid(void)
    rec(110, "getppid"),
    // pid_t getpgrp(void)
    rec(111, "getpgrp"),
    // pid_t setsid(void): runs at replay too, as setpgid
    rec(112, "setsid").replay_runs(),
    // int setreuid(uid_t r, uid_t e)
    rec(113, "setreuid").check(A0 | A1).changes(Changes::Creds),
    // int setregid(gid_t r, gid_t e)
    rec(114, "setregid").check(A0 | A1).changes(Changes::Creds),
    // int getgroups(int size, gid_t list[])
    det(115, "getgroups"),
    // int setgroups(size_t size, const gid_t *list)
    rec(116, "setgroups").check(A0).changes(Changes::Creds),
    // int setresuid(uid_t r, uid_t e, uid_t s)
    rec(117, "setresuid").check(A0 | A1 | A2).changes(Changes::Creds),
    // int getresuid(uid_t *r, uid_t *e, uid_t *s)
    det(118, "getresuid"),
    // int setresgid(gid_t r, gid_t e, gid_t s)
    rec(119, "setresgid").check(A0 | A1 | A2).changes(Changes::Creds),
    // int getresgid(gid_t *r, gid_t *e, gid_t *s)
    det(120, "getresgid"),
    // pid_t getpgid(pid_t pid)
    rec(121, "getpgid"),
    // int setfsuid(uid_t uid)
    rec(122, "setfsuid").check(A0).changes(Changes::Creds),
    // int setfsgid(gid_t gid)
    rec(123, "setfsgid").check(A0).changes(Changes::Creds),
    // pid_t getsid(pid_t pid)
    rec(124, "getsid"),
    // int capget(cap_user_header_t hdr, cap_user_data_t data)
    det(125, "capget"),
    // int capset(cap_user_header_t hdr, const cap_user_data_t data)
    rec(126, "capset").changes(Changes::Caps),
    // int rt_sigpending(sigset_t *set, size_t sz)
    rec(127, "rt_sigpending").w(&[w(0, Arg(1))]),
    // int rt_sigtimedwait(const sigset_t *set, siginfo_t *info, const struct timespec *t, size_t sz)
    rec(128, "rt_sigtimedwait").w(&[w(1, Fixed(SIZEOF_SIGINFO))]).takes_signal(),
    // int rt_sigqueueinfo(pid_t pid, int sig, siginfo_t *info)
    rec(129, "rt_sigqueueinfo").check(A1).sends(Target::Process(0), 1, Some(2)),
    // int rt_sigsuspend(const sigset_t *mask, size_t sz)
    rec(130, "rt_sigsuspend").mask(MaskAt::Arg(0), Interrupted::Always),
    // int sigaltstack(const stack_t *ss, stack_t *old)
    det(131, "sigaltstack").args(&[Ptr, Ptr]),
    // int utime(const char *path, const struct utimbuf *times)
    out(132, "utime").path(0),
    // int mknod(const char *path, mode_t mode, dev_t dev)
    out(133, "mknod").path(0).check(A1 | A2),
    no(134, "uselib", ENOSYS, OBSOLETE),
    // int personality(unsigned long persona)
    rec(135, "personality").check(A0),
    // int ustat(dev_t dev, struct ustat *ubuf)
    rec(136, "ustat").w(&[w(1, Fixed(32))]),
    // int statfs(const char *path, struct statfs *buf)
    rec(137, "statfs").input(Input::Path(0)).w(&[w(1, Fixed(SIZEOF_STATFS))]),
    // int fstatfs(int fd, struct statfs *buf)
    rec(138, "fstatfs").check(A0).w(&[w(1, Fixed(SIZEOF_STATFS))]),
    no(139, "sysfs", ENOSYS, OBSOLETE),
    // int getpriority(int which, id_t who)
    rec(140, "getpriority"),
    // int setpriority(int which, id_t who, int prio)
    rec(141, "setpriority"),
    // int sched_setparam(pid_t pid, const struct sched_param *p)
    rec(142, "sched_setparam"),
    // int sched_getparam(pid_t pid, struct sched_param *p)
    rec(143, "sched_getparam").w(&[w(1, Fixed(4))]),
    // int sched_setscheduler(pid_t pid, int policy, const struct sched_param *p)
    rec(144, "sched_setscheduler"),
    // int sched_getscheduler(pid_t pid)
    rec(145, "sched_getscheduler"),
    // int sched_get_priority_max(int policy)
    rec(146, "sched_get_priority_max").tracer().check(A0),
    // int sched_get_priority_min(int policy)
    rec(147, "sched_get_priority_min").tracer().check(A0),
    // int sched_rr_get_interval(pid_t pid, struct timespec *tp)
    rec(148, "sched_rr_get_interval").w(&[w(1, Fixed(SIZEOF_TIMESPEC))]),
    // int mlock(const void *addr, size_t len)
    rec(149, "mlock"),
    // int munlock(const void *addr, size_t len)
    rec(150, "munlock"),
    // int mlockall(int flags)
    rec(151, "mlockall"),
    // int munlockall(void)
    rec(152, "munlockall"),
    no(153, "vhangup", EPERM, ADMIN),
    no(154, "modify_ldt", ENOSYS, "custom segment descriptors are not supported"),
    no(155, "pivot_root", EPERM, ADMIN),
    no(156, "_sysctl", ENOSYS, OBSOLETE),
    // int prctl(int option, unsigned long arg2, ...)
    loc(157, "prctl").check(A0).special(Special::Prctl).changes(Changes::Caps).args(&[Int, Hex, Hex, Hex, Hex]),
    // int arch_prctl(int code, unsigned long addr)
    det(158, "arch_prctl").args(&[Hex, Hex]),
    // int adjtimex(struct timex *buf)
    rec(159, "adjtimex").w(&[w(0, Fixed(SIZEOF_TIMEX))]),
    // int setrlimit(int res, const struct rlimit *rlim)
    rec(160, "setrlimit").check(A0).changes(Changes::Limits).args(&[Resource, Ptr]),
    no(161, "chroot", EPERM, ADMIN),
    // void sync(void)
    rec(162, "sync"),
    no(163, "acct", EPERM, ADMIN),
    no(164, "settimeofday", EPERM, ADMIN),
    no(165, "mount", EPERM, ADMIN),
    no(166, "umount2", EPERM, ADMIN),
    no(167, "swapon", EPERM, ADMIN),
    no(168, "swapoff", EPERM, ADMIN),
    no(169, "reboot", EPERM, ADMIN),
    no(170, "sethostname", EPERM, ADMIN),
    no(171, "setdomainname", EPERM, ADMIN),
    no(172, "iopl", EPERM, ADMIN),
    no(173, "ioperm", EPERM, ADMIN),
    no(174, "create_module", ENOSYS, OBSOLETE),
    no(175, "init_module", EPERM, ADMIN),
    no(176, "delete_module", EPERM, ADMIN),
    no(177, "get_kernel_syms", ENOSYS, OBSOLETE),
    no(178, "query_module", ENOSYS, OBSOLETE),
    no(179, "quotactl", EPERM, ADMIN),
    no(180, "nfsservctl", ENOSYS, OBSOLETE),
    no(181, "getpmsg", ENOSYS, OBSOLETE),
    no(182, "putpmsg", ENOSYS, OBSOLETE),
    no(183, "afs_syscall", ENOSYS, OBSOLETE),
    no(184, "tuxcall", ENOSYS, OBSOLETE),
    no(185, "security", ENOSYS, OBSOLETE),
    // pid_t gettid(void)
    rec(186, "gettid"),
    // ssize_t readahead(int fd, off64_t off, size_t count)
    rec(187, "readahead").check(A0),
    // int setxattr(const char *path, const char *name, const void *val, size_t sz, int flags)
    out(188, "setxattr").path(0).check(A3 | A4),
    out(189, "lsetxattr").path(0).check(A3 | A4),
    out(190, "fsetxattr").fd(0).check(A0 | A3 | A4),
    // ssize_t getxattr(const char *path, const char *name, void *val, size_t sz)
    rec(191, "getxattr").input(Input::Path(0)).check(A3).w(&[w(2, Ret)]),
    rec(192, "lgetxattr").input(Input::Path(0)).check(A3).w(&[w(2, Ret)]),
    rec(193, "fgetxattr").check(A0 | A3).w(&[w(2, Ret)]),
    // ssize_t listxattr(const char *path, char *list, size_t sz)
    rec(194, "listxattr").input(Input::Path(0)).check(A2).w(&[w(1, Ret)]),
    rec(195, "llistxattr").input(Input::Path(0)).check(A2).w(&[w(1, Ret)]),
    rec(196, "flistxattr").check(A0 | A2).w(&[w(1, Ret)]),
    // int removexattr(const char *path, const char *name)
    out(197, "removexattr").path(0),
    out(198, "lremovexattr").path(0),
    out(199, "fremovexattr").fd(0).check(A0),
    // int tkill(pid_t tid, int sig)
    rec(200, "tkill").check(A1).sends(Target::Thread(0), 1, None),
    // time_t time(time_t *t)
    rec(201, "time").tracer().w(&[w(0, Fixed(8))]).args(&[TimePtr]).now(Now::Ret),
    // long futex(u32 *uaddr, int op, u32 val, const struct timespec *t, u32 *uaddr2, u32 val3)
    // Waits and wakes are ordered by the log: which waiter wakes is up to the kernel (dettrace #52).
    rec(202, "futex").check(A1).args(&[Ptr, Int, Int, Ptr, Ptr, Int]),
    // int sched_setaffinity(pid_t pid, size_t sz, const cpu_set_t *mask)
    rec(203, "sched_setaffinity"),
    // int sched_getaffinity(pid_t pid, size_t sz, cpu_set_t *mask)
    rec(204, "sched_getaffinity").check(A1).w(&[w(2, Ret)]).args(&[Int, Uint, Ptr]),
    // int set_thread_area(struct user_desc *u)
    det(205, "set_thread_area"),
    no(206, "io_setup", ENOSYS, AIO),
    no(207, "io_destroy", ENOSYS, AIO),
    no(208, "io_getevents", ENOSYS, AIO),
    no(209, "io_submit", ENOSYS, AIO),
    no(210, "io_cancel", ENOSYS, AIO),
    // int get_thread_area(struct user_desc *u)
    det(211, "get_thread_area"),
    no(212, "lookup_dcookie", ENOSYS, OBSOLETE),
    // int epoll_create(int size)
    rec(213, "epoll_create").creates(NewFd::Ret).object(Object::Epoll),
    no(214, "epoll_ctl_old", ENOSYS, OBSOLETE),
    no(215, "epoll_wait_old", ENOSYS, OBSOLETE),
    no(216, "remap_file_pages", ENOSYS, OBSOLETE),
    // long getdents64(unsigned fd, struct linux_dirent64 *d, unsigned count)
    rec(217, "getdents64").check(A0 | A2).w(&[w(1, Ret)]).args(&[Fd, Ptr, Uint]),
    // pid_t set_tid_address(int *tidptr)
    rec(218, "set_tid_address").replay_runs().args(&[Ptr]),
    // long restart_syscall(void): continues an interrupted sleep, so it blocks like one
    rec(219, "restart_syscall").special(Special::RestartSyscall),
    // int semtimedop(int id, struct sembuf *sops, size_t nsops, const struct timespec *t)
    loc(220, "semtimedop").check(A0 | A2).waits(Waits::SemOps { ops: 1, count: 2 }).args(&[Int, Ptr, Uint, Ptr]),
    // int fadvise64(int fd, off_t off, off_t len, int advice)
    rec(221, "fadvise64").check(A0 | A3),
    // int timer_create(clockid_t clk, struct sigevent *sev, timer_t *id)
    rec(222, "timer_create").check(A0).w(&[w(2, Fixed(4))]).timer(Timer::PosixCreate { clock: 0, event: 1, id: 2 }),
    // int timer_settime(timer_t id, int flags, const struct itimerspec *new, struct itimerspec *old)
    rec(223, "timer_settime").check(A0 | A1).w(&[w(3, Fixed(SIZEOF_ITIMERSPEC))]).timer(Timer::Posix { id: 0, flags: 1, new: 2 }),
    // int timer_gettime(timer_t id, struct itimerspec *cur)
    rec(224, "timer_gettime").check(A0).w(&[w(1, Fixed(SIZEOF_ITIMERSPEC))]),
    // int timer_getoverrun(timer_t id)
    rec(225, "timer_getoverrun").check(A0),
    // int timer_delete(timer_t id)
    rec(226, "timer_delete").check(A0).timer(Timer::PosixDelete { id: 0 }),
    no(227, "clock_settime", EPERM, ADMIN),
    // int clock_gettime(clockid_t clk, struct timespec *tp)
    rec(228, "clock_gettime").tracer().check(A0).w(&[w(1, Fixed(SIZEOF_TIMESPEC))]).args(&[ClockId, Timespec]).now(Now::At { at: 1, clock: Some(0) }),
    // int clock_getres(clockid_t clk, struct timespec *res)
    rec(229, "clock_getres").tracer().check(A0).w(&[w(1, Fixed(SIZEOF_TIMESPEC))]).args(&[ClockId, Timespec]),
    // int clock_nanosleep(clockid_t clk, int flags, const struct timespec *req, struct timespec *rem)
    rec(230, "clock_nanosleep").check(A0 | A1).w(&[w(3, Fixed(SIZEOF_TIMESPEC))]).restart(Sleep { req: 2, rem: 3, abs: Some((1, libc::TIMER_ABSTIME as u64)) }).args(&[ClockId, Hex, Ptr, Ptr]),
    // void exit_group(int status)
    Spec { special: Special::Exit, ..det(231, "exit_group") }.args(&[Int]),
    // int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
    rec(232, "epoll_wait").check(A0 | A2).w(&[w(1, RetTimes(12))]).copy(CopyOp::EpollWait { mask: None }).args(&[Fd, Ptr, Int, Int]),
    // int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
    rec(233, "epoll_ctl").check(A0 | A1 | A2).replay_runs().args(&[Fd, Int, Fd, Ptr]),
    // int tgkill(pid_t tgid, pid_t tid, int sig)
    rec(234, "tgkill").check(A2).sends(Target::Thread(1), 2, None).args(&[Int, Int, Signal]),
    // int utimes(const char *path, const struct timeval times[2])
    out(235, "utimes").path(0),
    no(236, "vserver", ENOSYS, OBSOLETE),
    // long mbind(void *addr, unsigned long len, int mode, ...)
    rec(237, "mbind"),
    // long set_mempolicy(int mode, const unsigned long *mask, unsigned long maxnode)
    rec(238, "set_mempolicy"),
    // long get_mempolicy(int *mode, unsigned long *mask, unsigned long maxnode, void *addr, unsigned long flags)
    rec(239, "get_mempolicy").w(&[w(0, Fixed(4)), w(1, Fixed(8))]),
    // POSIX message queues live in the program's own IPC namespace and are as deterministic
    // among its processes, one task running at a time, as System V queues: made and used for
    // real at replay as at record.
    // mqd_t mq_open(const char *name, int oflag, mode_t mode, struct mq_attr *attr)
    loc(240, "mq_open").check(A1 | A2).ipc(Ipc::MqOpen { name: 0, flags: 1 }).creates(NewFd::Ret).object(Object::MqDesc).flags(FlagsArg::Arg(1)).args(&[Ptr, OpenFlags, Mode, Ptr]),
    // int mq_unlink(const char *name)
    loc(241, "mq_unlink").ipc(Ipc::MqUnlink { name: 0 }).args(&[Ptr]),
    // int mq_timedsend(mqd_t q, const char *msg, size_t len, unsigned prio, const struct timespec *abs):
    // runs holding the token, so that a receiver finds the message where the log has it
    loc(242, "mq_timedsend").check(A0 | A2 | A3).waits(Waits::HoldingQueue { fd: 0 }).args(&[Fd, Ptr, Uint, Uint, Ptr]),
    // ssize_t mq_timedreceive(mqd_t q, char *msg, size_t len, unsigned *prio, const struct timespec *abs):
    // may wait for a message
    loc(243, "mq_timedreceive").check(A0 | A2).w(&[w(1, Ret), w(3, Fixed(4))]).waits(Waits::UnlessNonblockFd { fd: 0 }).args(&[Fd, OutBuf, Uint, Ptr, Ptr]),
    no(244, "mq_notify", ENOSYS, MQ_NOTIFY),
    // int mq_getsetattr(mqd_t q, const struct mq_attr *new, struct mq_attr *old)
    loc(245, "mq_getsetattr").check(A0).w(&[w(2, Fixed(64))]).args(&[Fd, Ptr, Ptr]),
    no(246, "kexec_load", EPERM, ADMIN),
    // int waitid(idtype_t type, id_t id, siginfo_t *info, int options, struct rusage *ru)
    rec(247, "waitid").check(A0 | A3).w(&[w(2, Fixed(SIZEOF_SIGINFO)), w(4, Fixed(SIZEOF_RUSAGE))]).wait(Wait::Waitid),
    no(248, "add_key", ENOSYS, "kernel keyrings are host state"),
    no(249, "request_key", ENOSYS, "kernel keyrings are host state"),
    no(250, "keyctl", ENOSYS, "kernel keyrings are host state"),
    // int ioprio_set(int which, int who, int prio)
    rec(251, "ioprio_set"),
    // int ioprio_get(int which, int who)
    rec(252, "ioprio_get"),
    // int inotify_init(void)
    rec(253, "inotify_init").creates(NewFd::Ret).object(Object::Inotify),
    // int inotify_add_watch(int fd, const char *path, u32 mask)
    rec(254, "inotify_add_watch").input(Input::Path(1)).check(A0 | A2).live(Live::Watch { path: 1, mask: 2 }),
    // int inotify_rm_watch(int fd, int wd)
    rec(255, "inotify_rm_watch").check(A0 | A1).live(Live::Unwatch { wd: 1 }),
    // long migrate_pages(int pid, unsigned long maxnode, ...)
    rec(256, "migrate_pages"),
    // int openat(int dirfd, const char *path, int flags, mode_t mode)
    rec(257, "openat").path_at(0, 1).check(A2).creates(NewFd::Ret).object(Object::File).flags(FlagsArg::Arg(2)).args(&[DirFd, Path, OpenFlags, Mode]),
    // int mkdirat(int dirfd, const char *path, mode_t mode)
    out(258, "mkdirat").path_at(0, 1).check(A2).args(&[DirFd, Path, Mode]),
    // int mknodat(int dirfd, const char *path, mode_t mode, dev_t dev)
    out(259, "mknodat").path_at(0, 1).check(A2 | A3),
    // int fchownat(int dirfd, const char *path, uid_t uid, gid_t gid, int flags)
    out(260, "fchownat").path_at(0, 1).check(A2 | A3 | A4),
    // int futimesat(int dirfd, const char *path, const struct timeval times[2])
    out(261, "futimesat").path_at(0, 1),
    // int newfstatat(int dirfd, const char *path, struct stat *st, int flags)
    rec(262, "newfstatat").input(Input::Path(1)).check(A3).w(&[w(2, Fixed(SIZEOF_STAT))]).args(&[DirFd, Path, Stat, AtFlags]),
    // int unlinkat(int dirfd, const char *path, int flags)
    out(263, "unlinkat").path_at(0, 1).check(A2).args(&[DirFd, Path, AtFlags]),
    // int renameat(int olddirfd, const char *old, int newdirfd, const char *new)
    out(264, "renameat").path_at(0, 1).input(Input::Paths(1, 3)).args(&[DirFd, Path, DirFd, Path]),
    // int linkat(int olddirfd, const char *old, int newdirfd, const char *new, int flags)
    out(265, "linkat").path_at(2, 3).input(Input::Paths(1, 3)),
    // int symlinkat(const char *target, int newdirfd, const char *linkpath)
    out(266, "symlinkat").path_at(1, 2).input(Input::Paths(0, 2)),
    // ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t size)
    rec(267, "readlinkat").input(Input::Path(1)).check(A3).w(&[w(2, Ret)]).args(&[DirFd, Path, OutBuf, Uint]),
    // int fchmodat(int dirfd, const char *path, mode_t mode, int flags)
    out(268, "fchmodat").path_at(0, 1).check(A2).args(&[DirFd, Path, Mode, AtFlags]),
    // int faccessat(int dirfd, const char *path, int mode, int flags)
    rec(269, "faccessat").input(Input::Path(1)).check(A2).args(&[DirFd, Path, AccessMode, AtFlags]),
    // int pselect6(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timespec *t, void *sigmask)
    rec(270, "pselect6").check(A0).w(&[w(1, FdSet(0)), w(2, FdSet(0)), w(3, FdSet(0)), w(4, Fixed(SIZEOF_TIMESPEC))]).mask(MaskAt::Pselect, Interrupted::Ret(ERESTARTNOHAND)).args(&[Int, Ptr, Ptr, Ptr, Ptr, Ptr]),
    // int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *t, const sigset_t *mask, size_t sz)
    rec(271, "ppoll").check(A1).w(&[w(0, ArgTimes(1, 8)), w(2, Fixed(SIZEOF_TIMESPEC))]).mask(MaskAt::Arg(3), Interrupted::Ret(ERESTARTNOHAND)).args(&[Ptr, Uint, Ptr, Ptr, Uint]),
    no(272, "unshare", EPERM, "namespaces are set up by ftexec, not by the replicated program"),
    // long set_robust_list(struct robust_list_head *head, size_t len)
    det(273, "set_robust_list").args(&[Ptr, Uint]),
    // long get_robust_list(int pid, struct robust_list_head **head, size_t *len)
    det(274, "get_robust_list"),
    no(275, "splice", ENOSYS, "moves data between fds inside the kernel; programs fall back to read/write"),
    no(276, "tee", ENOSYS, "moves data between fds inside the kernel; programs fall back to read/write"),
    // int sync_file_range(int fd, off64_t off, off64_t n, unsigned flags)
    rec(277, "sync_file_range").fd(0).check(A0),
    no(278, "vmsplice", ENOSYS, "moves data between fds inside the kernel; programs fall back to read/write"),
    // long move_pages(int pid, unsigned long count, void **pages, const int *nodes, int *status, int flags)
    rec(279, "move_pages"),
    // int utimensat(int dirfd, const char *path, const struct timespec times[2], int flags)
    out(280, "utimensat").path_at(0, 1).check(A3),
    // int epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout, const sigset_t *mask, size_t sz)
    rec(281, "epoll_pwait").check(A0 | A2).w(&[w(1, RetTimes(12))]).copy(CopyOp::EpollWait { mask: Some(4) }).mask(MaskAt::Arg(4), Interrupted::Ret(EINTR_RET)),
    // int signalfd(int fd, const sigset_t *mask, size_t sz)
    rec(282, "signalfd").creates(NewFd::Ret).object(Object::SignalFd),
    // int timerfd_create(int clk, int flags)
    rec(283, "timerfd_create").check(A0 | A1).creates(NewFd::Ret).object(Object::TimerFd).flags(FlagsArg::Arg(1)),
    // int eventfd(unsigned initval)
    rec(284, "eventfd").check(A0).creates(NewFd::Ret).object(Object::EventFd),
    // int fallocate(int fd, int mode, off_t off, off_t len)
    out(285, "fallocate").fd(0).check(A0 | A1 | A2 | A3),
    // int timerfd_settime(int fd, int flags, const struct itimerspec *new, struct itimerspec *old)
    rec(286, "timerfd_settime").check(A0 | A1).w(&[w(3, Fixed(SIZEOF_ITIMERSPEC))]).timer(Timer::Fd { fd: 0, flags: 1, new: 2 }),
    // int timerfd_gettime(int fd, struct itimerspec *cur)
    rec(287, "timerfd_gettime").check(A0).w(&[w(1, Fixed(SIZEOF_ITIMERSPEC))]),
    // int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
    rec(288, "accept4").check(A0 | A3).creates(NewFd::Ret).object(Object::Connection).flags(FlagsArg::Arg(3)).w(&[w(1, DerefU32(2)), w(2, Fixed(4))]).args(&[Fd, Ptr, Ptr, Hex]),
    // int signalfd4(int fd, const sigset_t *mask, size_t sz, int flags)
    rec(289, "signalfd4").creates(NewFd::Ret).object(Object::SignalFd).flags(FlagsArg::Arg(3)),
    // int eventfd2(unsigned initval, int flags)
    rec(290, "eventfd2").check(A0 | A1).creates(NewFd::Ret).object(Object::EventFd).flags(FlagsArg::Arg(1)).args(&[Uint, Hex]),
    // int epoll_create1(int flags)
    rec(291, "epoll_create1").check(A0).creates(NewFd::Ret).object(Object::Epoll).flags(FlagsArg::Arg(0)).args(&[Hex]),
    // int dup3(int old, int new, int flags)
    loc(292, "dup3").check(A0 | A1 | A2).creates(NewFd::Dup(0)).object(Object::Same).closes(Closes::Arg(1)).flags(FlagsArg::Arg(2)).args(&[Fd, Fd, OpenFlags]),
    // int pipe2(int fds[2], int flags)
    rec(293, "pipe2").check(A1).creates(NewFd::Pair(0)).object(Object::Pipe).flags(FlagsArg::Arg(1)).w(&[w(0, Fixed(8))]).args(&[FdPair, OpenFlags]),
    // int inotify_init1(int flags)
    rec(294, "inotify_init1").creates(NewFd::Ret).object(Object::Inotify).flags(FlagsArg::Arg(0)).args(&[Hex]),
    // ssize_t preadv(int fd, const struct iovec *iov, int cnt, off_t off)
    rec(295, "preadv").fd(0).check(A0 | A2 | A3).w(&[w(1, Iov(2))]),
    // ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
    out(296, "pwritev").fd(0).check(A0 | A2 | A3).input(Input::Iov(1, 2)),
    // int rt_tgsigqueueinfo(pid_t tgid, pid_t tid, int sig, siginfo_t *info)
    rec(297, "rt_tgsigqueueinfo").check(A2).sends(Target::Thread(1), 2, Some(3)),
    no(298, "perf_event_open", ENOSYS, "performance counters read differently on every run"),
    // int recvmmsg(int fd, struct mmsghdr *v, unsigned n, int flags, struct timespec *t)
    rec(299, "recvmmsg").fd(0).check(A0 | A2 | A3).w(&[w(1, Mmsghdr)]).creates(NewFd::Rights),
    no(300, "fanotify_init", EPERM, ADMIN),
    no(301, "fanotify_mark", EPERM, ADMIN),
    // int prlimit64(pid_t pid, int res, const struct rlimit *new, struct rlimit *old)
    rec(302, "prlimit64").check(A1).w(&[w(3, Fixed(SIZEOF_RLIMIT))]).changes(Changes::Limits).args(&[Int, Resource, Ptr, Rlimit]),
    no(303, "name_to_handle_at", ENOSYS, "file handles are host state"),
    no(304, "open_by_handle_at", ENOSYS, "file handles are host state"),
    // int clock_adjtime(clockid_t clk, struct timex *buf)
    rec(305, "clock_adjtime").check(A0).w(&[w(1, Fixed(SIZEOF_TIMEX))]),
    // int syncfs(int fd)
    rec(306, "syncfs"),
    // int sendmmsg(int fd, struct mmsghdr *v, unsigned n, int flags)
    out(307, "sendmmsg").fd(0).check(A0 | A2 | A3),
    no(308, "setns", EPERM, "namespaces are set up by ftexec, not by the replicated program"),
    // int getcpu(unsigned *cpu, unsigned *node, void *cache)
    emu(309, "getcpu", Emulation::GetCpu),
    no(310, "process_vm_readv", EPERM, FOREIGN),
    no(311, "process_vm_writev", EPERM, FOREIGN),
    // int kcmp(pid_t p1, pid_t p2, int type, unsigned long i1, unsigned long i2)
    rec(312, "kcmp"),
    no(313, "finit_module", EPERM, ADMIN),
    // int sched_setattr(pid_t pid, struct sched_attr *a, unsigned flags)
    rec(314, "sched_setattr"),
    // int sched_getattr(pid_t pid, struct sched_attr *a, unsigned size, unsigned flags)
    rec(315, "sched_getattr").w(&[w(1, Arg(2))]),
    // int renameat2(int olddirfd, const char *old, int newdirfd, const char *new, unsigned flags)
    out(316, "renameat2").path_at(0, 1).input(Input::Paths(1, 3)).check(A4).args(&[DirFd, Path, DirFd, Path, Hex]),
    // int seccomp(unsigned op, unsigned flags, void *args)
    loc(317, "seccomp").check(A0 | A1),
    // ssize_t getrandom(void *buf, size_t len, unsigned flags)
    rec(318, "getrandom").tracer().check(A1 | A2).w(&[w(0, Ret)]).args(&[Random, Uint, Hex]),
    // int memfd_create(const char *name, unsigned flags): anonymous memory with an fd
    loc(319, "memfd_create").check(A1).creates(NewFd::Ret).object(Object::Memfd).flags(FlagsArg::Arg(1)).args(&[Ptr, Hex]),
    no(320, "kexec_file_load", EPERM, ADMIN),
    no(321, "bpf", EPERM, ADMIN),
    // int execveat(int dirfd, const char *path, char *const argv[], char *const envp[], int flags)
    loc(322, "execveat").input(Input::Path(1)).special(Special::Exec),
    no(323, "userfaultfd", ENOSYS, "page faults served by another thread cannot be ordered yet"),
    // int membarrier(int cmd, unsigned flags, int cpu)
    det(324, "membarrier"),
    // int mlock2(const void *addr, size_t len, unsigned flags)
    rec(325, "mlock2"),
    // ssize_t copy_file_range(int in, loff_t *off_in, int out, loff_t *off_out, size_t len, unsigned flags)
    out(326, "copy_file_range").fd(2).special(Special::FdToFd { input: 0, offset: 1 }).check(A0 | A2 | A4 | A5).w(&[w(1, Fixed(8)), w(3, Fixed(8))]).args(&[Fd, Ptr, Fd, Ptr, Uint, Hex]),
    // ssize_t preadv2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
    rec(327, "preadv2").fd(0).check(A0 | A2 | A3 | A4).w(&[w(1, Iov(2))]),
    // ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
    out(328, "pwritev2").fd(0).check(A0 | A2 | A3 | A4).input(Input::Iov(1, 2)),
    // int pkey_mprotect(void *addr, size_t len, int prot, int pkey)
    det(329, "pkey_mprotect"),
    // int pkey_alloc(unsigned flags, unsigned rights)
    det(330, "pkey_alloc"),
    // int pkey_free(int pkey)
    det(331, "pkey_free"),
    // int statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *buf)
    rec(332, "statx").input(Input::Path(1)).check(A2 | A3).w(&[w(4, Fixed(SIZEOF_STATX))]).args(&[DirFd, Path, AtFlags, Hex, Ptr]),
    no(333, "io_pgetevents", ENOSYS, AIO),
    // int rseq(struct rseq *rseq, u32 len, int flags, u32 sig): refused so glibc never reads a CPU
    // number from it (rr #2277).
    emu(334, "rseq", Emulation::Errno(ENOSYS)).args(&[Ptr, Uint, Hex, Hex]),
    no(335, "uretprobe", ENOSYS, NEWER),
    no(336, "uprobe", ENOSYS, NEWER),
    // int pidfd_send_signal(int pidfd, int sig, siginfo_t *info, unsigned flags)
    rec(424, "pidfd_send_signal").check(A1).sends(Target::PidFd(0), 1, Some(2)),
    no(425, "io_uring_setup", ENOSYS, URING),
    no(426, "io_uring_enter", ENOSYS, URING),
    no(427, "io_uring_register", ENOSYS, URING),
    no(428, "open_tree", EPERM, NEWFS),
    no(429, "move_mount", EPERM, NEWFS),
    no(430, "fsopen", EPERM, NEWFS),
    no(431, "fsconfig", EPERM, NEWFS),
    no(432, "fsmount", EPERM, NEWFS),
    no(433, "fspick", EPERM, NEWFS),
    // int pidfd_open(pid_t pid, unsigned flags)
    rec(434, "pidfd_open").creates(NewFd::Ret).object(Object::PidFd { pid: 0 }),
    // long clone3(struct clone_args *args, size_t size)
    loc(435, "clone3").special(Special::Clone).clone_kind(CloneKind::Clone3),
    // int close_range(unsigned first, unsigned last, unsigned flags)
    Spec { special: Special::Close, ..det(436, "close_range") }.closes(Closes::Range).args(&[Uint, Uint, Hex]),
    // int openat2(int dirfd, const char *path, struct open_how *how, size_t sz)
    rec(437, "openat2").path_at(0, 1).check(A3).creates(NewFd::Ret).object(Object::File).flags(FlagsArg::OpenHow(2)).args(&[DirFd, Path, Ptr, Uint]),
    no(438, "pidfd_getfd", EPERM, FOREIGN),
    // int faccessat2(int dirfd, const char *path, int mode, int flags)
    rec(439, "faccessat2").input(Input::Path(1)).check(A2 | A3).args(&[DirFd, Path, AccessMode, AtFlags]),
    // ssize_t process_madvise(int pidfd, const struct iovec *iov, size_t n, int advice, unsigned flags)
    rec(440, "process_madvise"),
    // int epoll_pwait2(int epfd, struct epoll_event *ev, int max, const struct timespec *t, const sigset_t *mask, size_t sz)
    rec(441, "epoll_pwait2").check(A0 | A2).w(&[w(1, RetTimes(12))]).mask(MaskAt::Arg(4), Interrupted::Ret(EINTR_RET)),
    no(442, "mount_setattr", EPERM, NEWFS),
    no(443, "quotactl_fd", EPERM, ADMIN),
    no(444, "landlock_create_ruleset", ENOSYS, NEWER),
    no(445, "landlock_add_rule", ENOSYS, NEWER),
    no(446, "landlock_restrict_self", ENOSYS, NEWER),
    no(447, "memfd_secret", ENOSYS, NEWER),
    no(448, "process_mrelease", EPERM, FOREIGN),
    // long futex_waitv(struct futex_waitv *w, unsigned n, unsigned flags, struct timespec *t, clockid_t clk)
    rec(449, "futex_waitv"),
    // long set_mempolicy_home_node(unsigned long start, unsigned long len, unsigned long node, unsigned long flags)
    rec(450, "set_mempolicy_home_node"),
    no(451, "cachestat", ENOSYS, NEWER),
    // int fchmodat2(int dirfd, const char *path, mode_t mode, unsigned flags)
    out(452, "fchmodat2").path_at(0, 1).check(A2 | A3),
    no(453, "map_shadow_stack", ENOSYS, NEWER),
    // long futex_wake(void *uaddr, unsigned long mask, int nr, unsigned flags)
    rec(454, "futex_wake"),
    // long futex_wait(void *uaddr, unsigned long val, unsigned long mask, unsigned flags, struct timespec *t, clockid_t clk)
    rec(455, "futex_wait"),
    // long futex_requeue(struct futex_waitv *w, unsigned flags, int nr_wake, int nr_requeue)
    rec(456, "futex_requeue"),
    no(457, "statmount", ENOSYS, NEWER),
    no(458, "listmount", ENOSYS, NEWER),
    no(459, "lsm_get_self_attr", ENOSYS, NEWER),
    no(460, "lsm_set_self_attr", ENOSYS, NEWER),
    no(461, "lsm_list_modules", ENOSYS, NEWER),
    // int mseal(void *addr, size_t len, unsigned long flags)
    det(462, "mseal"),
    no(463, "setxattrat", ENOSYS, NEWER),
    no(464, "getxattrat", ENOSYS, NEWER),
    no(465, "listxattrat", ENOSYS, NEWER),
    no(466, "removexattrat", ENOSYS, NEWER),
    no(467, "open_tree_attr", ENOSYS, NEWER),
    no(468, "file_getattr", ENOSYS, NEWER),
    no(469, "file_setattr", ENOSYS, NEWER),
];

/// The highest syscall number the table knows.
pub const MAX_NR: u32 = 469;

/// The entry for a syscall number, or None for a number no x86-64 kernel assigns.
pub fn lookup(nr: u64) -> Option<&'static Spec> {
    let nr = u32::try_from(nr).ok()?;
    TABLE.binary_search_by_key(&nr, |s| s.nr).ok().map(|i| &TABLE[i])
}

/// The name of a syscall number, for messages.
pub fn name(nr: u64) -> String {
    match lookup(nr) {
        Some(s) => s.name.to_string(),
        None => format!("syscall #{nr}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every x86-64 syscall number the installed kernel headers define has an entry with the
    /// same name, and the table has no gaps in the two assigned ranges (0..=336, 424..=MAX_NR).
    #[test]
    fn table_is_complete() {
        for w in TABLE.windows(2) {
            assert!(w[0].nr < w[1].nr, "table not sorted at {}", w[1].name);
        }
        let expected: Vec<u32> = (0..=336).chain(424..=MAX_NR).collect();
        let have: Vec<u32> = TABLE.iter().map(|s| s.nr).collect();
        assert_eq!(have, expected, "the table must have one entry per assigned number");

        let header = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h";
        let text = std::fs::read_to_string(header)
            .expect("linux-libc-dev headers are needed for this test (apt-get install linux-libc-dev)");
        let mut seen = 0;
        for line in text.lines() {
            let mut it = line.split_whitespace();
            if it.next() != Some("#define") {
                continue;
            }
            let (Some(macro_name), Some(num)) = (it.next(), it.next()) else {
                continue;
            };
            let Some(name) = macro_name.strip_prefix("__NR_") else {
                continue;
            };
            let nr: u64 = num.parse().expect("number");
            let spec = lookup(nr).unwrap_or_else(|| panic!("no entry for {name} ({nr})"));
            assert_eq!(spec.name, name, "entry {nr} has the wrong name");
            seen += 1;
        }
        assert!(seen > 300, "parsed only {seen} syscalls from {header}");
    }

    #[test]
    fn declarations_are_consistent() {
        for s in TABLE {
            for wr in s.writes {
                assert!(wr.ptr < 6, "{}: write pointer arg out of range", s.name);
            }
            if let Some(fd) = s.fd {
                assert!(fd < 6, "{}", s.name);
            }
            if s.exec == Exec::Tracer {
                assert_eq!(s.class, Class::Recorded, "{}: only Recorded syscalls run in the tracer", s.name);
                assert_eq!(s.fds.creates, NewFd::None, "{}: fd-creating syscalls must run in the tracee", s.name);
            }
            if matches!(s.fds.creates, NewFd::Ret | NewFd::Pair(_)) {
                assert!(matches!(s.class, Class::Recorded | Class::Local), "{}", s.name);
                assert_ne!(s.fds.object, Object::None, "{}: a new fd must say what it refers to", s.name);
            }
            if matches!(s.fds.creates, NewFd::Dup(_) | NewFd::DupCmd) {
                assert_eq!(s.fds.object, Object::Same, "{}", s.name);
            }
            if s.fds.creates == NewFd::None {
                assert_eq!(s.fds.object, Object::None, "{}: an object without a new fd", s.name);
            }
            if let Some(send) = s.follow.sends {
                assert!(send.sig < 6 && send.info.is_none_or(|i| i < 6), "{}", s.name);
            }
        }
        // The classes the design names, each with real members.
        for (nr, class) in [(228, Class::Recorded), (12, Class::Deterministic), (1, Class::Output), (32, Class::Local)]
        {
            assert_eq!(lookup(nr).map(|s| s.class), Some(class));
        }
        assert!(matches!(lookup(425).map(|s| s.class), Some(Class::Refused(_))));
        assert!(matches!(lookup(334).map(|s| s.class), Some(Class::Emulated(_))));
        assert!(lookup(400).is_none());
        assert!(lookup(u64::MAX).is_none());
    }

    /// The argument types agree with what the rest of the entry says about the same arguments:
    /// an fd the policy looks at is an `Fd`, a path it reads is a `Path` (after its `DirFd`), the
    /// paths ftdbg shows from `path_arg` are exactly the `input` paths, memory the type says the
    /// kernel fills is a declared write, a sent signal is a `Signal`. Pairs that legitimately
    /// differ are not compared: a flags argument (`FlagsArg::Arg`) is whatever flags type the
    /// call takes (OpenFlags, SockType or a plain Hex word); a sockaddr `Input::Buf` (connect,
    /// bind) is a `Ptr`, since its bytes are not text; a write at a `Ptr` (readv's iovecs, a
    /// sleep's remaining time) is simply not decoded; the target pid of a signal is an `Int`.
    #[test]
    fn args_agree_with_the_declarations() {
        let mut wrong = Vec::new();
        for s in TABLE {
            let a = s.args;
            assert!(a.len() <= 6, "{}: {} argument types", s.name, a.len());
            if a.is_empty() {
                continue;
            }
            let mut expect = |i: u8, want: &[Arg], what: &str| {
                let got = a.get(usize::from(i));
                if !got.is_some_and(|g| want.contains(g)) {
                    wrong.push(format!("{}: argument {i} is {what}, so {want:?}, not {got:?}", s.name));
                }
            };
            if let Some(fd) = s.fd {
                expect(fd, &[Fd], ".fd()");
            }
            if let Some((dirfd, path)) = s.path {
                if let Some(d) = dirfd {
                    expect(d, &[DirFd], "the dirfd of .path_at()");
                }
                expect(path, &[Path], "a .path()");
            }
            match s.fds.closes {
                Closes::Arg(i) => expect(i, &[Fd], "closed"),
                Closes::None | Closes::Range => {}
            }
            match s.fds.creates {
                NewFd::Dup(i) => expect(i, &[Fd], "duplicated"),
                NewFd::Pair(i) => expect(i, &[FdPair], "a new fd pair"),
                _ => {}
            }
            if let FlagsArg::Arg(i) = s.fds.flags {
                expect(i, &[OpenFlags, SockType, Hex], "the new fd's flags");
            }
            if let Some(send) = s.follow.sends {
                expect(send.sig, &[Signal], "the signal sent");
            }
            match s.now {
                Some(Now::At { at, clock }) => {
                    expect(at, &[Timespec, Timeval], "where the time read is");
                    if let Some(c) = clock {
                        expect(c, &[ClockId], "the clock read");
                    }
                }
                Some(Now::Ret) | None => {}
            }
            match s.input {
                Input::Buf(i, _) | Input::Iov(i, _) if a.get(usize::from(i)) != Some(&Ptr) => {
                    expect(i, &[InBuf], "bytes written out")
                }
                _ => {}
            }
            // The paths in path_arg, in order, are the Path arguments, in order.
            let inputs: Vec<usize> = match s.input {
                Input::Path(i) => vec![usize::from(i)],
                Input::Paths(i, j) => vec![usize::from(i), usize::from(j)],
                _ => Vec::new(),
            };
            let paths: Vec<usize> = (0..a.len()).filter(|&i| a[i] == Path).collect();
            if paths != inputs {
                wrong.push(format!("{}: Path arguments {paths:?}, logged paths {inputs:?}", s.name));
            }
            for (i, t) in a.iter().enumerate() {
                if t.kernel_writes() && !s.writes.iter().any(|wr| usize::from(wr.ptr) == i) {
                    wrong.push(format!("{}: argument {i} is {t:?}, but no write at it is declared", s.name));
                }
                if *t == InBuf && !matches!(s.input, Input::Buf(j, _) | Input::Iov(j, _) if usize::from(j) == i) {
                    wrong.push(format!("{}: argument {i} is InBuf, but the input is {:?}", s.name, s.input));
                }
            }
        }
        for s in TABLE {
            if let Some(Now::At { at, .. }) = s.now {
                assert!(s.writes.iter().any(|wr| wr.ptr == at), "{}: the time read is not a declared write", s.name);
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        // Spot checks against the man pages.
        let args = |nr: u64| lookup(nr).map(|s| s.args);
        assert_eq!(args(257), Some(&[DirFd, Path, OpenFlags, Mode][..]));
        assert_eq!(args(9), Some(&[Hex, Uint, Prot, MapFlags, Fd, Hex][..]));
        assert_eq!(lookup(9).map(|s| s.returns), Some(Returns::Addr));
        assert_eq!(lookup(229).and_then(|s| s.now), None, "clock_getres reads a resolution, not the time");
    }

    /// Independent of the table (from the man pages): the syscalls that change state a replica
    /// must follow. An entry that does it without declaring it, or declares what it does not
    /// do, fails here; a refused syscall need not declare anything.
    #[test]
    fn every_effect_is_declared() {
        const CREATE_FDS: &[&str] = &[
            "open",
            "openat",
            "openat2",
            "creat",
            "dup",
            "dup2",
            "dup3",
            "fcntl",
            "pipe",
            "pipe2",
            "socket",
            "socketpair",
            "accept",
            "accept4",
            "recvmsg",
            "recvmmsg",
            "epoll_create",
            "epoll_create1",
            "eventfd",
            "eventfd2",
            "signalfd",
            "signalfd4",
            "timerfd_create",
            "inotify_init",
            "inotify_init1",
            "memfd_create",
            "pidfd_open",
            "pidfd_getfd",
            "perf_event_open",
            "fanotify_init",
            "userfaultfd",
            "open_by_handle_at",
            "mq_open",
            "io_uring_setup",
            "fsopen",
            "fspick",
            "fsmount",
            "open_tree",
            "bpf",
            "memfd_secret",
            "landlock_create_ruleset",
            "open_tree_attr",
        ];
        const CLOSE_FDS: &[&str] = &["close", "close_range", "dup2", "dup3"];
        const SEND_SIGNALS: &[&str] =
            &["kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_send_signal"];
        const ARM_TIMERS: &[&str] =
            &["alarm", "setitimer", "timer_create", "timer_settime", "timer_delete", "timerfd_settime"];
        const TEMPORARY_MASK: &[&str] = &["rt_sigsuspend", "ppoll", "pselect6", "epoll_pwait", "epoll_pwait2"];
        const SLEEPS: &[&str] = &["nanosleep", "clock_nanosleep"];
        const CLONES: &[&str] = &["clone", "fork", "vfork", "clone3"];
        const WAITS: &[&str] = &["wait4", "waitid"];
        const STREAMS: &[&str] =
            &["read", "write", "readv", "writev", "sendto", "recvfrom", "sendmsg", "recvmsg", "lseek", "shutdown"];
        // chroot and the namespace and mount calls are refused.
        const PROCESS_STATE: &[&str] = &[
            "chdir",
            "fchdir",
            "umask",
            "setuid",
            "setgid",
            "setreuid",
            "setregid",
            "setgroups",
            "setresuid",
            "setresgid",
            "setfsuid",
            "setfsgid",
            "capset",
            "setrlimit",
            "prlimit64",
            "prctl",
        ];
        let checks: [(&str, &[&str], fn(&Spec) -> bool); 10] = [
            ("creates fds", CREATE_FDS, |s| s.fds.creates != NewFd::None),
            ("closes fds", CLOSE_FDS, |s| s.fds.closes != Closes::None),
            ("sends a signal", SEND_SIGNALS, |s| s.follow.sends.is_some()),
            ("makes, arms or ends a timer", ARM_TIMERS, |s| s.follow.timer != Timer::None),
            ("waits with a temporary mask", TEMPORARY_MASK, |s| s.signals.mask.is_some()),
            ("restarts as a sleep", SLEEPS, |s| s.signals.restart.is_some()),
            ("creates a task", CLONES, |s| s.task.clone != CloneKind::None && s.special == Special::Clone),
            ("reaps children", WAITS, |s| s.task.wait.is_some()),
            ("moves a stream", STREAMS, |s| s.follow.stream != Stream::None),
            ("changes process state", PROCESS_STATE, |s| s.process != Changes::None && s.class == Class::Local),
        ];
        let mut missing = Vec::new();
        for s in TABLE {
            let refused = matches!(s.class, Class::Refused(_));
            for (what, names, declared) in &checks {
                let does = names.contains(&s.name);
                if does && !refused && !declared(s) {
                    missing.push(format!("{} {what} but its entry does not declare it", s.name));
                }
                if declared(s) && !does {
                    missing.push(format!("{} declares that it {what}, which the list here does not know", s.name));
                }
            }
        }
        for names in checks.iter().map(|c| c.1) {
            for n in names {
                assert!(TABLE.iter().any(|s| s.name == *n), "{n} is not a syscall name");
            }
        }
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }
}
