//! The go-live contract: what a replay that goes live hands over to the recorder that takes the
//! program on. The replay fills one [`Handover`] in one place (`Replayer::go_live`); the recorder
//! is built from it in one place (`record::continue_live`).

use crate::stop::Held;
use ft_interposer::clock::ClockPages;
use ft_interposer::{Stopped, Waited};
use ft_libos::proto::Exit;
use ft_libos::FdTable;
use nix::unistd::Pid;
use std::collections::HashMap;

/// A task handed over by a replay that goes live.
pub(crate) struct Adopted {
    pub tid: Pid,
    pub vtid: u32,
    pub proc: u32,
    pub state: AdoptedState,
    /// Signals the log delivered to it that replay sent and the kernel has not delivered yet:
    /// already logged, so the recorder delivers them at their stops as it does the signals it
    /// re-sent itself (`bouncing`), instead of taking them for new ones.
    pub pending: Vec<Held>,
    /// For a task whose first stop has not come (Starting): the argument registers its parent's
    /// clone had before replay rewrote them, given to it at that stop (glibc's vfork child
    /// returns through rdi).
    pub first_args: Option<[u64; 6]>,
}

pub(crate) enum AdoptedState {
    /// Its first stop has not been collected yet.
    Starting,
    /// Stopped with nothing to handle.
    Idle(Stopped),
    /// A stop not handled yet (a syscall the log has no result for): handled when it runs.
    Fresh(Stopped),
    /// At the seccomp stop of a syscall that released the token (it blocks in the kernel): the
    /// followers wait for its completion event, so it runs now, without the token.
    Parked(Stopped),
    /// Running user code with the token.
    Holding,
    /// Inside a clone or execve that replay ran for real (its Spawn or Exec is logged, its
    /// result is not): the syscall as the program made it (number, argument registers), whose
    /// result the recorder logs at its exit, where it gives the program its registers back.
    Completing { nr: u64, args: [u64; 6] },
}

/// What a replay that goes live hands over to the recorder.
pub(crate) struct Handover {
    pub tasks: Vec<Adopted>,
    pub fds: HashMap<u32, FdTable>,
    pub holder: Option<u32>,
    pub last_run: u32,
    pub next_vtid: u32,
    pub events: u64,
    /// Stops collected but not handled, and deaths not logged yet.
    pub waited: Vec<(Pid, Waited)>,
    pub status0: Option<i32>,
    /// The clock page of each process that has one (switched to recording already).
    pub clocks: ClockPages,
    /// Per task (by vtid), the replay's count of silent syscall stops (see `Signal.silent`).
    pub silent: HashMap<u32, u32>,
    /// A task sent a probe's SIGSTOP (the holder, found spinning at the end of the log).
    pub interrupting: Option<Pid>,
    /// Child processes that replay forked (exit signal 0) and that are still there, alive or
    /// zombies: see `Recorder::quiet`. With the exit of a zombie whose SIGCHLD the log did
    /// not deliver to its parent after that exit (the leader died first): owed now.
    pub quiet: Vec<(Pid, Quiet, Option<Exit>)>,
    /// Tasks whose syscall the log interrupted with -ERESTART_RESTARTBLOCK (tid, number,
    /// arguments): see `Recorder::adopted_restart`.
    pub restarts: Vec<(Pid, u32, [u64; 6])>,
    /// Processes whose fds are made real at their first syscall stop (by the leader's vtid).
    pub deferred: HashMap<u32, crate::live::Deferred>,
    /// The real sockets made at go-live (a deferred process may share one).
    pub made: crate::live::MadeReal,
    /// The program's eventfds, timerfds, signalfds and inotify instances (for deferred
    /// processes).
    pub shadows: crate::live::Shadows,
    /// The task that gave up the token and gets it back only by a switch (`Replayer::yielded`).
    pub yielded: Option<u32>,
    /// Sigqueues replay sent again (process, signal, siginfo): see [`Recorder::incoming_info`].
    pub resent: Vec<(u32, i32, libc::siginfo_t)>,
}

/// A child process that replay forked (see `Recorder::quiet`), which the recorder
/// watches as its own.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Quiet {
    /// Its parent's process (task number of the leader).
    pub parent: u32,
    /// Its pid and uid as its parent sees them (for the siginfo of its SIGCHLD).
    pub ns_pid: i32,
    pub uid: u32,
}
