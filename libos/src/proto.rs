//! Event and log-record types, encoded as protobuf (prost). These structs are the schema; field
//! tags never change meaning, new fields get new tags, so old logs stay readable.

/// The first record of every log: what was run and on what, so replay can refuse a mismatch.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Header {
    /// Log format version (also in the file preamble).
    #[prost(uint32, tag = "1")]
    pub version: u32,
    #[prost(string, tag = "2")]
    pub ftexec_version: String,
    /// Absolute path of the executable as exec'd.
    #[prost(bytes = "vec", tag = "3")]
    pub exe_path: Vec<u8>,
    /// blake3 of the executable's bytes.
    #[prost(bytes = "vec", tag = "4")]
    pub exe_hash: Vec<u8>,
    #[prost(bytes = "vec", repeated, tag = "5")]
    pub argv: Vec<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub env: Vec<Vec<u8>>,
    #[prost(bytes = "vec", tag = "7")]
    pub cwd: Vec<u8>,
    /// "vendor family model stepping name" of the recording CPU.
    #[prost(string, tag = "8")]
    pub cpu_model: String,
    /// The data directory as the program sees it (empty: none).
    #[prost(bytes = "vec", tag = "9")]
    pub data_dir: Vec<u8>,
    /// Digest of the data directory's content when the program started.
    #[prost(bytes = "vec", tag = "10")]
    pub data_dir_digest: Vec<u8>,
    /// The ELF interpreter (dynamic loader) and its blake3; empty for static executables.
    #[prost(bytes = "vec", tag = "11")]
    pub interp_path: Vec<u8>,
    #[prost(bytes = "vec", tag = "12")]
    pub interp_hash: Vec<u8>,
    /// Wall-clock time when recording started (informational).
    #[prost(uint64, tag = "13")]
    pub start_unix_ns: u64,
}

/// One thing that happened to the tracee, in log order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(oneof = "event::Kind", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11")]
    pub kind: Option<event::Kind>,
}

pub mod event {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        #[prost(message, tag = "1")]
        Syscall(super::Syscall),
        #[prost(message, tag = "2")]
        Rdtsc(super::Rdtsc),
        #[prost(message, tag = "3")]
        Signal(super::Signal),
        #[prost(message, tag = "4")]
        Start(super::Start),
        #[prost(message, tag = "5")]
        Exit(super::Exit),
        #[prost(message, tag = "6")]
        Run(super::Run),
        #[prost(message, tag = "7")]
        Spawn(super::Spawn),
        #[prost(message, tag = "8")]
        Exec(super::Exec),
        #[prost(message, tag = "9")]
        Clocks(super::Clocks),
        #[prost(message, tag = "10")]
        Preempt(super::Preempt),
        #[prost(message, tag = "11")]
        Patch(super::Patch),
    }
}

/// How replay must treat a syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Disposition {
    /// Skip the syscall; inject `ret` and the memory writes.
    Inject = 0,
    /// Run it for real; its result and out_digest must match.
    Execute = 1,
    /// The syscall created fds that do not exist at replay: create placeholders at the same
    /// numbers, then inject.
    Placeholder = 2,
    /// A private file mapping whose bytes were recorded: map anonymous memory, fill it.
    AnonMap = 3,
    /// Run it for its effect on the process, then inject the recorded result.
    ExecuteInject = 4,
}

/// What an fd refers to, as far as replay is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum FdKind {
    /// Outside world: every syscall on it is recorded; a placeholder at replay.
    External = 0,
    /// A file inside the data directory: replicated state, syscalls run for real.
    Data = 1,
    /// A read-only file outside the data directory whose content hash was checked (executables and
    /// shared libraries): opened and mapped for real at replay after the same check.
    Verified = 2,
    /// Process-private kernel state that replays for itself (memfd).
    Private = 3,
    /// The inherited stdin/stdout/stderr.
    Stdio = 4,
    /// A directory outside the data directory: its listing is recorded like any outside input,
    /// but replay opens it for real (O_RDONLY|O_DIRECTORY) in place of a stand-in, so that
    /// fchdir and paths relative to it work as at record.
    Directory = 5,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Syscall {
    #[prost(uint32, tag = "1")]
    pub nr: u32,
    /// The six argument registers.
    #[prost(uint64, repeated, tag = "2")]
    pub args: Vec<u64>,
    /// Digest of the input bytes the table names (paths, written data).
    #[prost(bytes = "vec", tag = "3")]
    pub input_digest: Vec<u8>,
    #[prost(int64, tag = "4")]
    pub ret: i64,
    #[prost(enumeration = "Disposition", tag = "5")]
    pub disposition: i32,
    /// Bytes the kernel wrote into tracee memory (Inject, Placeholder, AnonMap).
    #[prost(message, repeated, tag = "6")]
    pub mem: Vec<MemWrite>,
    /// Digest of the bytes the kernel wrote (Execute).
    #[prost(bytes = "vec", tag = "7")]
    pub out_digest: Vec<u8>,
    /// Bytes written to the inherited stdout (1) or stderr (2), replayed to ftexec's own.
    #[prost(bytes = "vec", tag = "8")]
    pub stdio: Vec<u8>,
    #[prost(int32, tag = "9")]
    pub stdio_fd: i32,
    /// The fds the syscall created and what they refer to.
    #[prost(message, repeated, tag = "10")]
    pub new_fds: Vec<NewFd>,
    /// For opens of Verified files: the path and its blake3.
    #[prost(bytes = "vec", tag = "11")]
    pub path: Vec<u8>,
    #[prost(bytes = "vec", tag = "12")]
    pub file_hash: Vec<u8>,
    /// The path argument(s) of path syscalls (two joined by a NUL), for humans and debuggers.
    #[prost(bytes = "vec", tag = "13")]
    pub path_arg: Vec<u8>,
    /// The task (thread) that made the syscall: 0 for the first one, then in creation order.
    #[prost(uint32, tag = "14")]
    pub task: u32,
    /// The recorder answered it at its seccomp stop, on a copy of the fd (table `Exec::Copy`),
    /// holding the token: replay answers it there too instead of waiting for its completion.
    #[prost(bool, tag = "15")]
    pub in_tracer: bool,
    /// For a syscall that changes process state (table `Changes`): the state after it.
    #[prost(message, optional, tag = "16")]
    pub state: Option<ProcState>,
    /// For the completion of a syscall that ran in the kernel while another task held the token:
    /// how many silent stops (see `stop::prelude`) that task had passed since its last event when
    /// this completion was logged. Replay applies the completion at the holder's next stop after
    /// as many, so that the holder's syscalls the kernel had run by then (a close that freed the
    /// fd an accept then got) have run at replay too.
    #[prost(uint32, optional, tag = "17")]
    pub holder_silent: Option<u32>,
    /// For such a completion logged while no task held the token: the task that last held it
    /// released it after the previous event (replay first lets its holder run until it parks),
    /// or (`token_free`) no task ran since the previous event (replay applies it before giving
    /// the token to anyone).
    #[prost(bool, tag = "18")]
    pub token_released: bool,
    #[prost(bool, tag = "19")]
    pub token_free: bool,
    /// Made by the syscall buffer's handler without a stop (see `sysbuf`); `in_tracer` is set
    /// too: replay answers it at the stop where it meets it.
    #[prost(bool, tag = "20")]
    pub buffered: bool,
    /// The last buffered syscall of its drain (the recorder drains at the holder's stops): replay
    /// fills the handler's ring with one drain at a time.
    #[prost(bool, tag = "21")]
    pub drain_end: bool,
    /// A buffered write's length in bytes (a writev's is the sum of its buffers): replay gives
    /// the handler room for them.
    #[prost(uint64, tag = "22")]
    pub input_len: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MemWrite {
    #[prost(uint64, tag = "1")]
    pub addr: u64,
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NewFd {
    #[prost(int32, tag = "1")]
    pub fd: i32,
    #[prost(enumeration = "FdKind", tag = "2")]
    pub kind: i32,
    /// FD_CLOEXEC was set (placeholders must carry it: fcntl(F_GETFD) runs for real).
    #[prost(bool, tag = "3")]
    pub cloexec: bool,
}

/// An rdtsc or rdtscp the tracee executed (trapped with PR_SET_TSC).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Rdtsc {
    #[prost(uint64, tag = "1")]
    pub tsc: u64,
    #[prost(uint32, tag = "2")]
    pub aux: u32,
    #[prost(bool, tag = "3")]
    pub rdtscp: bool,
    /// Instruction pointer of the instruction (checked at replay).
    #[prost(uint64, tag = "4")]
    pub ip: u64,
    #[prost(uint32, tag = "5")]
    pub task: u32,
}

/// A signal delivered to the tracee.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Signal {
    #[prost(int32, tag = "1")]
    pub signo: i32,
    /// Raised by the tracee's own instruction (a fault), so it recurs at replay by itself.
    #[prost(bool, tag = "2")]
    pub synchronous: bool,
    #[prost(uint32, tag = "3")]
    pub task: u32,
    /// A caught asynchronous signal, delivered just before the task's next syscall (which is
    /// then re-executed): a point replay finds again exactly.
    #[prost(bool, tag = "4")]
    pub at_syscall: bool,
    /// For a caught signal delivered at a syscall: the siginfo_t (128 bytes) the kernel had for
    /// it, which the handler receives at record and at replay although the tracer re-sends the
    /// signal. Empty in logs of earlier versions (the handler then sees the re-sent signal's).
    #[prost(bytes = "vec", tag = "5")]
    pub siginfo: Vec<u8>,
    /// A signal delivered at the exit of the task's last syscall, before the task ran user code
    /// again (raised by that syscall, e.g. kill of itself or a write to a broken pipe, or
    /// interrupting it while it blocked). Replay takes the task to the same syscall's exit stop,
    /// sets `orig_rax` and `rax` as they were at record and delivers the signal there, so the
    /// kernel applies SA_RESTART or EINTR itself.
    #[prost(bool, tag = "6")]
    pub at_exit: bool,
    /// With `at_exit`: orig_rax at the delivery stop (the syscall number, -1 for none).
    #[prost(int64, tag = "7")]
    pub orig_rax: i64,
    /// With `at_exit`: rax at the delivery stop (the syscall's result, -ERESTART* included).
    #[prost(int64, tag = "8")]
    pub rax: i64,
    /// With `at_syscall`: sent at the same syscall stop as the task's previous `at_syscall`
    /// signal, so that the kernel delivers the group as natively (one signal nests into the
    /// handler of another that does not block it).
    #[prost(bool, tag = "9")]
    pub grouped: bool,
    /// With `at_exit`: which exit. Counts the task's syscall stops that logged nothing (allowed
    /// after a stop, emulated, refused) since its last syscall stop that logged an event: 0 is
    /// the exit of the syscall of that event, N the exit of the Nth silent one after it.
    #[prost(uint32, tag = "10")]
    pub silent: u32,
}

/// A task that ran without syscalls while others waited for the token (or a caught signal
/// waited for it) was stopped at a fixpoint of its loop: one iteration from `ip` changed no
/// register and no byte (see `ft_interposer::spin`). Replay runs the task until it is in that
/// state again and checks `digest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Preempt {
    #[prost(uint32, tag = "1")]
    pub task: u32,
    #[prost(uint64, tag = "2")]
    pub ip: u64,
    /// blake3 (16 bytes) of the registers and of the bytes one iteration writes.
    #[prost(bytes = "vec", tag = "3")]
    pub digest: Vec<u8>,
    /// Instructions in one iteration (for ftdbg).
    #[prost(uint32, tag = "4")]
    pub steps: u32,
    /// The task gives up the token here (the next event is a switch).
    #[prost(bool, tag = "5")]
    pub yielded: bool,
    /// Caught signals held for the task, delivered here (signo and siginfo, in this order).
    #[prost(message, repeated, tag = "6")]
    pub signals: Vec<Signal>,
}

/// A syscall site rewritten into a jump to a trampoline of the syscall buffer, at the seccomp
/// stop of `task`'s syscall there (see `sysbuf`). Replay makes the same rewrite at the same stop.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Patch {
    #[prost(uint32, tag = "1")]
    pub task: u32,
    /// The address of the `syscall` instruction.
    #[prost(uint64, tag = "2")]
    pub site: u64,
    /// The site's bytes before (checked at replay) and after.
    #[prost(bytes = "vec", tag = "3")]
    pub before: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub after: Vec<u8>,
    #[prost(uint64, tag = "5")]
    pub tramp: u64,
    #[prost(bytes = "vec", tag = "6")]
    pub tramp_bytes: Vec<u8>,
    /// Where the stopped task continues (its syscall returns into the trampoline).
    #[prost(uint64, tag = "7")]
    pub resume: u64,
    /// The task's silent count at that stop (see `Signal.silent`): the stop is found by its
    /// address and this count.
    #[prost(uint32, tag = "8")]
    pub silent: u32,
    /// Nonzero: no rewrite yet; a trampoline page is mapped here first, and the task makes its
    /// syscall again (the rewrite is the next Patch, at that stop).
    #[prost(uint64, tag = "9")]
    pub page: u64,
}

/// The program's exec completed: the kernel's random bytes for it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Start {
    #[prost(bytes = "vec", tag = "1")]
    pub at_random: Vec<u8>,
    /// Address of the initial stack pointer (checked at replay).
    #[prost(uint64, tag = "2")]
    pub sp: u64,
    /// The vDSO's clock functions go to the clock page (see [`crate::clock`]); false: the vDSO
    /// is hidden and every clock read is a syscall.
    #[prost(bool, tag = "3")]
    pub clock_page: bool,
    /// The program's process state when it started (cwd, credentials, umask, limits,
    /// capabilities): replay starts with the same umask and limits and refuses other credentials.
    #[prost(message, optional, tag = "4")]
    pub state: Option<ProcState>,
}

/// Clock reads `task` made through the clock page since its last stop, in order (packed, see
/// [`crate::clock::pack`] and [`crate::clock::decode`]).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Clocks {
    #[prost(uint32, tag = "1")]
    pub task: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub reads: Vec<u8>,
}

/// The program ended.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exit {
    /// Exit status when it exited.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// Signal number when a signal killed it (0 otherwise).
    #[prost(int32, tag = "2")]
    pub signal: i32,
    /// The task that ended (task 0's end is the program's end).
    #[prost(uint32, tag = "3")]
    pub task: u32,
}

/// The schedule: from here on, `task` runs (the only task executing user code).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Run {
    #[prost(uint32, tag = "1")]
    pub task: u32,
}

/// `parent` created `child` (clone, fork, vfork, clone3): tasks are numbered in creation order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Spawn {
    #[prost(uint32, tag = "1")]
    pub parent: u32,
    #[prost(uint32, tag = "2")]
    pub child: u32,
    /// Same thread group (a thread) rather than a new process.
    #[prost(bool, tag = "3")]
    pub thread: bool,
}

/// `task` replaced its program image (execve).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exec {
    #[prost(uint32, tag = "1")]
    pub task: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub exe_path: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub exe_hash: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub at_random: Vec<u8>,
    #[prost(uint64, tag = "5")]
    pub sp: u64,
    /// As [`Start::clock_page`], for the new image.
    #[prost(bool, tag = "6")]
    pub clock_page: bool,
    /// The process state after the exec (capabilities are recomputed there).
    #[prost(message, optional, tag = "7")]
    pub state: Option<ProcState>,
}

impl Exit {
    /// The shell's view: the exit code, or 128 + the signal.
    pub fn status(&self) -> i32 {
        if self.signal != 0 {
            128 + self.signal
        } else {
            self.code
        }
    }
}

/// The state of a process that the kernel keeps outside its memory and fd table and that a
/// replica must share: replayed by running the syscalls that change it, checked after each of
/// them and when a replica goes live (see [`crate::process`]).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProcState {
    /// The working directory (readlink of /proc/PID/cwd).
    #[prost(bytes = "vec", tag = "1")]
    pub cwd: Vec<u8>,
    /// Real, effective, saved and filesystem uid.
    #[prost(uint32, repeated, tag = "2")]
    pub uids: Vec<u32>,
    /// Real, effective, saved and filesystem gid.
    #[prost(uint32, repeated, tag = "3")]
    pub gids: Vec<u32>,
    /// Supplementary groups.
    #[prost(uint32, repeated, tag = "4")]
    pub groups: Vec<u32>,
    #[prost(uint32, tag = "5")]
    pub umask: u32,
    /// Inheritable, permitted, effective, bounding and ambient capability sets.
    #[prost(uint64, repeated, tag = "6")]
    pub caps: Vec<u64>,
    /// Soft and hard limit of each resource, RLIMIT_CPU (0) to RLIMIT_RTTIME (15).
    #[prost(uint64, repeated, tag = "7")]
    pub limits: Vec<u64>,
}
