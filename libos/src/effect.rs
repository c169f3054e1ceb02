//! What a syscall does to the process state ftexec models, declared per table entry.
//!
//! [`crate::table::Spec`] says how a syscall is treated (its class, the arguments checked, the
//! memory written); the groups here say what it changes that record, replay, go-live and ftdbg
//! must follow: the fd table ([`FdEffect`]), the streams, signals sent, timers and the sockets
//! rebuilt at go-live ([`Follow`]), signal masks and restarts ([`SigEffect`]), and the tasks it
//! creates or reaps ([`TaskEffect`]). Those sessions read these fields; none of them matches on
//! syscall numbers. A table test checks the declarations against an independent list of the
//! syscalls that create fds, send signals, arm timers or wait with a temporary mask.
//!
//! Argument positions are register indices (0..=5) of the syscall's arguments.

/// What a syscall does to the fd table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdEffect {
    /// The fds it creates.
    pub creates: NewFd,
    /// The fds it closes.
    pub closes: Closes,
    /// What a new fd refers to.
    pub object: Object,
    /// Where the new fd's flags are (O_* for files, SOCK_* for sockets, EFD_* for eventfds).
    pub flags: FlagsArg,
}

impl FdEffect {
    pub const NONE: FdEffect =
        FdEffect { creates: NewFd::None, closes: Closes::None, object: Object::None, flags: FlagsArg::None };

    /// Whether the new fd is non-blocking (SOCK_NONBLOCK, EFD_NONBLOCK and O_NONBLOCK are the
    /// same bit): a stand-in carries it to the real fd of go-live.
    pub fn nonblocking(&self, args: &[u64; 6]) -> bool {
        match (self.object, self.flags) {
            // TFD_NONBLOCK, SFD_NONBLOCK and IN_NONBLOCK are O_NONBLOCK.
            (
                Object::Socket
                | Object::Connection
                | Object::EventFd
                | Object::TimerFd
                | Object::SignalFd
                | Object::Inotify,
                FlagsArg::Arg(i),
            ) => args[usize::from(i)] & libc::O_NONBLOCK as u64 != 0,
            _ => false,
        }
    }

    /// The syscall replay makes in place of this one to create its stand-in (number and
    /// arguments), `args` being the program's: a pipe for a pair (at the program's array), an
    /// epoll instance for an epoll instance, an eventfd for anything else (with the non-blocking
    /// flag of what it stands for: a replica that goes live gives it to the real fd); for a
    /// directory, the program's own call read-only (see `FdKind::Directory`).
    pub fn stand_in(&self, nr: u32, args: &[u64; 6], cloexec: bool, directory: bool) -> (i64, [u64; 6]) {
        let mut a = [0u64; 6];
        let flag = |bit: i32| if cloexec { bit as u64 } else { 0 };
        match (self.creates, self.flags) {
            (_, FlagsArg::Arg(i)) if directory => {
                a = *args;
                a[usize::from(i)] = (libc::O_RDONLY | libc::O_DIRECTORY) as u64 | flag(libc::O_CLOEXEC);
                (i64::from(nr), a)
            }
            (NewFd::Pair(p), _) => {
                a[0] = args[usize::from(p)];
                a[1] = flag(libc::O_CLOEXEC);
                (libc::SYS_pipe2, a)
            }
            _ if self.object == Object::Epoll => {
                a[0] = flag(libc::EPOLL_CLOEXEC);
                (libc::SYS_epoll_create1, a)
            }
            _ => {
                let nonblock = if self.nonblocking(args) { libc::EFD_NONBLOCK as u64 } else { 0 };
                a[1] = flag(libc::EFD_CLOEXEC) | nonblock;
                (libc::SYS_eventfd2, a)
            }
        }
    }

    /// The flags the new fd was opened with; `read_u64` reads a word of the caller's memory
    /// (openat2 keeps them in its struct open_how). None where the table declares none.
    pub fn open_flags(&self, args: &[u64; 6], read_u64: impl FnOnce(u64) -> Option<u64>) -> Option<i32> {
        match self.flags {
            FlagsArg::None => None,
            FlagsArg::Arg(i) => Some(args[usize::from(i)] as i32),
            FlagsArg::Const(f) => Some(f),
            // struct open_how { u64 flags; u64 mode; u64 resolve; }
            FlagsArg::OpenHow(i) => read_u64(args[usize::from(i)]).map(|f| f as i32),
        }
    }

    /// The fd a call closes before it runs, if it names one (close, the target of dup2/dup3);
    /// None for close_range and for calls that close nothing.
    pub fn closed_fd(&self, args: &[u64; 6]) -> Option<u64> {
        match self.closes {
            Closes::Arg(i) => Some(args[usize::from(i)]),
            Closes::None | Closes::Range => None,
        }
    }
}

/// Which new fds a syscall creates (so the fd model can follow the fd table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewFd {
    None,
    /// The return value is a new fd.
    Ret,
    /// The return value is a new fd that duplicates the fd in argument i (dup2 and dup3
    /// return the target they were given).
    Dup(u8),
    /// fcntl: with F_DUPFD or F_DUPFD_CLOEXEC (argument 1) the return value duplicates the fd
    /// in argument 0; other commands create nothing.
    DupCmd,
    /// Two fds written as int[2] at argument i (pipe, socketpair).
    Pair(u8),
    /// Fds received in SCM_RIGHTS control data (recvmsg, recvmmsg).
    Rights,
}

/// Which fds a syscall closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closes {
    None,
    /// The fd in argument i (close; dup2 and dup3 close their target first).
    Arg(u8),
    /// close_range(first, last, flags): every fd in the range, unless CLOSE_RANGE_CLOEXEC.
    Range,
}

/// What a new fd refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    None,
    /// The same open file as the fd it duplicates.
    Same,
    /// A file opened by path.
    File,
    /// Anonymous memory with an fd (memfd_create): private to the program.
    Memfd,
    Pipe,
    EventFd,
    /// An epoll instance: replay stands in a real (empty) one, so that epoll_ctl runs at
    /// replay and the registrations are in place when the replica goes live.
    Epoll,
    /// socket(): rebuilt at go-live as a listening socket if it was bound and listening,
    /// otherwise as a socket whose peer has closed.
    Socket,
    /// A connection (accept): at go-live a socket whose peer has closed (the client's
    /// connection died with the old leader).
    Connection,
    /// A socket pair (socketpair).
    SocketPair,
    /// A pidfd of the process whose pid is in argument i.
    PidFd {
        pid: u8,
    },
    TimerFd,
    SignalFd,
    Inotify,
    /// A POSIX message queue (mq_open): a queue of the program's own IPC namespace, made and
    /// used for real at replay as at record, private to the program.
    MqDesc,
}

/// Where a new fd's flags are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagsArg {
    None,
    /// In argument i.
    Arg(u8),
    /// Always these (creat: O_CREAT | O_WRONLY | O_TRUNC).
    Const(i32),
    /// In the first word of the struct open_how at argument i (openat2).
    OpenHow(u8),
}

/// What replay and go-live follow of a syscall besides the fd table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Follow {
    /// Its effect on the stream of the fd in argument 0.
    pub stream: Stream,
    /// A signal it sends.
    pub sends: Option<Send>,
    /// A timer it arms.
    pub timer: Timer,
    /// What a replica that goes live (failover) needs to know of it.
    pub live: Live,
    /// A System V IPC id it returns.
    pub ipc: Ipc,
}

impl Follow {
    pub const NONE: Follow =
        Follow { stream: Stream::None, sends: None, timer: Timer::None, live: Live::None, ipc: Ipc::None };
}

/// A System V IPC id a syscall returns, which checkpoints follow: a restore gives the kernel's
/// id allocation back where the recording had it (interposer/src/checkpoint/sysv.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipc {
    None,
    /// The id of a shared memory segment, new or existing (shmget).
    ShmId,
    /// The id of a semaphore set (semget).
    SemId,
    /// The id of a message queue (msgget).
    MsgId,
    /// mq_open: the POSIX message queue named at argument `name` exists after it if the flags at
    /// argument `flags` have O_CREAT and it succeeded.
    MqOpen {
        name: u8,
        flags: u8,
    },
    /// mq_unlink: the queue named at argument `name` is gone.
    MqUnlink {
        name: u8,
    },
}

/// The effect of a syscall on the stream of the fd in argument 0 (buffer in argument 1, count
/// or iovec count in argument 2): followed for pipes, eventfds and files outside the data
/// directory, whose content or offset a replica that goes live must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    None,
    /// Consumes the return value's bytes, moving the offset (read, readv).
    Read {
        vectored: bool,
    },
    /// Adds the return value's bytes, moving the offset (write, writev).
    Write {
        vectored: bool,
    },
    /// Adds the return value's bytes from the iovecs of the struct msghdr at argument 1
    /// (sendmsg): followed in the program's socketpairs, whose bytes in flight go live.
    SendMsg,
    /// Consumes the return value's bytes (recvmsg), as `SendMsg`.
    RecvMsg,
    /// Sets the offset to the return value (lseek).
    Seek,
    /// Ends a socket's stream (shutdown): replies queued for it go first.
    Shutdown,
}

/// A signal a syscall sends: target, signal number and siginfo arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Send {
    pub target: Target,
    pub sig: u8,
    /// A siginfo_t the caller supplies (sigqueue).
    pub info: Option<u8>,
}

/// Whom a signal goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A process (pid > 0), the caller's process group (0) or a group (-pgid), in argument i.
    Process(u8),
    /// The thread whose tid is in argument i.
    Thread(u8),
    /// The process a pidfd in argument i refers to.
    PidFd(u8),
}

/// A timer a syscall arms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    None,
    /// alarm(seconds): ITIMER_REAL, one shot.
    Alarm {
        secs: u8,
    },
    /// setitimer(which, new, old).
    Itimer {
        which: u8,
        new: u8,
    },
    /// timer_create(clock, sigevent, id out): a POSIX timer, made again with the same id, the
    /// same clock and the same sigevent at go-live (replay does not run timer_create).
    PosixCreate {
        clock: u8,
        event: u8,
        id: u8,
    },
    /// timer_settime(id, flags, new, old): armed again at go-live.
    Posix {
        id: u8,
        flags: u8,
        new: u8,
    },
    /// timer_delete(id).
    PosixDelete {
        id: u8,
    },
    /// timerfd_settime(fd, flags, new, old): the timerfd (a stand-in at replay) is made real
    /// and armed at go-live.
    Fd {
        fd: u8,
        flags: u8,
        new: u8,
    },
}

/// Going live turns a follower's stand-ins for sockets into real ones: these syscalls tell how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Live {
    None,
    /// inotify_add_watch(fd, path, mask): added again, in order, on the remade inotify instance.
    Watch {
        path: u8,
        mask: u8,
    },
    /// inotify_rm_watch(fd, wd).
    Unwatch {
        wd: u8,
    },
    /// setsockopt(fd, level, name, value, len): replayed on the rebuilt socket.
    SockOpt,
    /// bind(fd, addr, len): the address the rebuilt socket binds.
    Bind,
    /// listen(fd, backlog).
    Listen,
    /// connect(fd, addr, len): the peer a rebuilt datagram socket is connected to again.
    Connect,
}

/// What a syscall does with signals besides sending them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigEffect {
    /// It waits with a temporary signal mask.
    pub mask: Option<TempMask>,
    /// An interrupted sleep that the kernel continues as restart_syscall.
    pub restart: Option<Sleep>,
    /// It takes a pending signal, whose number is its (positive) result (sigtimedwait).
    pub takes: bool,
}

impl SigEffect {
    pub const NONE: SigEffect = SigEffect { mask: None, restart: None, takes: false };
}

/// A temporary signal mask a syscall waits with, and the result that says a signal
/// interrupted the wait while the mask was still in effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TempMask {
    pub at: MaskAt,
    pub interrupted: Interrupted,
}

/// Where the temporary mask is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskAt {
    /// A sigset_t pointer in argument i.
    Arg(u8),
    /// pselect6: argument 5 points to struct { const sigset_t *ss; size_t len; }.
    Pselect,
}

/// Which result means a signal interrupted the wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupted {
    /// Every result (sigsuspend only returns when a signal interrupts it).
    Always,
    /// This (negative) result.
    Ret(i64),
}

impl TempMask {
    /// Whether `ret` says a signal interrupted the wait with the temporary mask in effect.
    pub fn interrupted_by(&self, ret: i64) -> bool {
        match self.interrupted {
            Interrupted::Always => true,
            Interrupted::Ret(r) => ret == r,
        }
    }
}

/// How an interrupted sleep runs again: with the time left that the kernel wrote in `rem`
/// as its request, unless the flags in `abs` say its time is absolute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sleep {
    pub req: u8,
    pub rem: u8,
    /// (flags argument, bit): an absolute sleep runs again as it was.
    pub abs: Option<(u8, u64)>,
}

impl Sleep {
    /// The arguments that sleep for the time left, given the call's own.
    pub fn continued(&self, args: &[u64; 6]) -> [u64; 6] {
        let mut a = *args;
        let absolute = self.abs.is_some_and(|(i, bit)| a[usize::from(i)] & bit != 0);
        if !absolute && a[usize::from(self.rem)] != 0 {
            a[usize::from(self.req)] = a[usize::from(self.rem)];
        }
        a
    }
}

/// What a syscall does to tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskEffect {
    pub clone: CloneKind,
    pub wait: Option<Wait>,
}

impl TaskEffect {
    pub const NONE: TaskEffect = TaskEffect { clone: CloneKind::None, wait: None };
}

/// How a syscall creates a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloneKind {
    None,
    /// clone(flags, ...): flags (with the exit signal in the low byte) in argument 0.
    Clone,
    /// fork(): a process with SIGCHLD as its exit signal.
    Fork,
    /// vfork(): CLONE_VM | CLONE_VFORK, SIGCHLD.
    Vfork,
    /// clone3(struct clone_args *, size): flags in its first word, the exit signal in its fifth.
    Clone3,
}

/// How a syscall reaps a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// wait4(pid, status, options, rusage): the child's pid is the result.
    Wait4,
    /// waitid(idtype, id, info, options, rusage): the child is in the siginfo.
    Waitid,
}

impl Wait {
    /// The argument that holds the options.
    pub fn options_arg(self) -> usize {
        match self {
            Wait::Wait4 => 2,
            Wait::Waitid => 3,
        }
    }
}

/// Process state outside memory and fds that a syscall changes (its working directory,
/// credentials, umask, resource limits, capabilities). Such a syscall runs for real at replay
/// (class Local), so a replica's process has the recording's state when it goes live; the state
/// after it is logged ([`crate::proto::ProcState`]) and checked at replay and at go-live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Changes {
    None,
    Cwd,
    Creds,
    Umask,
    Limits,
    /// Capabilities, securebits and the like (prctl, capset).
    Caps,
}

/// Whether a Local syscall may wait in the kernel for another task of the program (a semaphore
/// another process posts, a message another process sends). One that may wait runs without the
/// token at record and, at replay, when the log completes it (its wake-up came after the posts
/// before it, which run holding the token, so it does not wait at replay).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waits {
    Never,
    /// semop-like: an array of struct sembuf (u16 num, i16 op, i16 flags) at argument `ops`,
    /// `count` of them at argument `count`: waits if one takes (op < 0) or waits for zero
    /// (op == 0) without IPC_NOWAIT.
    SemOps {
        ops: u8,
        count: u8,
    },
    /// Waits unless argument `arg` has IPC_NOWAIT (msgrcv).
    UnlessNoWait {
        arg: u8,
    },
    /// Runs holding the token, made non-blocking at record with IPC_NOWAIT in argument `arg`
    /// (msgsnd: a receiver must find the message where the log has it). Where it would wait (a
    /// full queue) and the program did not ask for IPC_NOWAIT, the recording stops with a clear
    /// error: holding the token it would wait forever for a receiver that cannot run.
    Holding {
        arg: u8,
    },
    /// Runs holding the token, like `Holding`, on the POSIX message queue at fd argument `fd`
    /// (mq_timedsend). Where it would wait (a full queue without O_NONBLOCK), the recording
    /// stops with a clear error.
    HoldingQueue {
        fd: u8,
    },
    /// Waits unless the fd at argument `fd` has O_NONBLOCK (mq_timedreceive).
    UnlessNonblockFd {
        fd: u8,
    },
}
