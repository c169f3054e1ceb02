//! What a syscall's arguments and result mean to a reader: the man-page types of the arguments
//! ([`Arg`]), how the result reads ([`Returns`]) and whether the call reads a clock ([`Now`]).
//!
//! These are declared per syscall in the table ([`crate::table::Spec::args`]) beside the facts
//! record and replay act on; ftdbg decodes logged syscalls from them. A syscall whose entry
//! declares no argument types is shown with the arguments replay checks.

/// The type of one syscall argument, as far as showing it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// A file descriptor (decimal).
    Fd,
    /// A dirfd: AT_FDCWD or an fd.
    DirFd,
    /// A signed integer.
    Int,
    /// An unsigned integer or a size.
    Uint,
    /// A flags word or an address, shown in hex.
    Hex,
    /// A pointer whose target is not decoded (NULL or hex).
    Ptr,
    /// A NUL-terminated path: one the entry's `input` names (logged in `Syscall.path_arg`, in
    /// argument order).
    Path,
    /// A buffer the program writes out (the logged stdout/stderr bytes, when it is one of those).
    InBuf,
    /// A buffer the kernel fills: one of the entry's `writes`.
    OutBuf,
    /// Like `OutBuf`, a NUL-terminated string (getcwd).
    OutStr,
    /// open(2) flags: O_RDONLY|O_CLOEXEC...
    OpenFlags,
    /// File permission bits (octal).
    Mode,
    /// mmap/mprotect protection: PROT_READ|PROT_WRITE...
    Prot,
    /// mmap flags: MAP_PRIVATE|MAP_ANONYMOUS...
    MapFlags,
    /// A clockid_t: CLOCK_MONOTONIC...
    ClockId,
    /// lseek's whence: SEEK_SET...
    Whence,
    /// AT_* flags: AT_SYMLINK_NOFOLLOW|AT_EMPTY_PATH...
    AtFlags,
    /// access(2) mode: F_OK or R_OK|W_OK|X_OK.
    AccessMode,
    /// An fcntl command: F_GETFL...
    FcntlCmd,
    /// A signal number: SIGINT...
    Signal,
    /// A struct timespec the kernel writes.
    Timespec,
    /// A struct timeval the kernel writes.
    Timeval,
    /// A time_t the kernel writes (time()).
    TimePtr,
    /// Bytes from the kernel's random pool, shown as hex.
    Random,
    /// A struct stat the kernel writes.
    Stat,
    /// An int[2] of new fds the kernel writes (pipe, pipe2, socketpair).
    FdPair,
    /// A struct rlimit the kernel writes.
    Rlimit,
    /// An RLIMIT_* resource.
    Resource,
    /// A struct utsname the kernel writes.
    Utsname,
    /// A socket's address family: AF_UNIX...
    SockDomain,
    /// A socket type and its flags: SOCK_STREAM|SOCK_CLOEXEC...
    SockType,
}

impl Arg {
    /// Whether the kernel writes the memory this argument points to (so the entry must declare
    /// a write at it).
    pub const fn kernel_writes(self) -> bool {
        matches!(
            self,
            Arg::OutBuf
                | Arg::OutStr
                | Arg::Timespec
                | Arg::Timeval
                | Arg::TimePtr
                | Arg::Random
                | Arg::Stat
                | Arg::FdPair
                | Arg::Rlimit
                | Arg::Utsname
        )
    }
}

/// How a syscall's result reads when it is not an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Returns {
    /// A number: a count, an fd, an id, 0 (decimal).
    Number,
    /// An address in the program's memory (mmap, brk, mremap), shown in hex.
    Addr,
}

/// Where a syscall that reads a clock puts the time it read (the current time, not a resolution
/// or a timer's setting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Now {
    /// The result, in seconds of CLOCK_REALTIME (time).
    Ret,
    /// The struct the kernel writes at argument `at` (an [`Arg::Timespec`] or [`Arg::Timeval`]
    /// of the entry's `args`), of the clock in argument `clock` (CLOCK_REALTIME when None).
    At { at: u8, clock: Option<u8> },
}
