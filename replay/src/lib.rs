//! ft-replay: record sessions (leader) and replay sessions (follower, offline), divergence
//! detection. Events flow through [`record::EventSink`] and [`replay::EventSource`], so a log
//! file and the Raft log ([`raft`]) are interchangeable.

pub mod capture;
pub mod debug;
pub mod describe;
pub mod error;
mod handover;
mod launch;
mod live;
pub mod program;
pub mod raft;
pub mod record;
pub mod release;
pub mod replay;
mod sink;
mod source;
mod stop;
mod timers;

pub use error::{Result, SessionError};
pub use record::{record, EventSink, RecordOptions};
pub use replay::{replay, replay_debug, replay_then_live, Checkpoints, EventSource, FileSource, GoLive, ReplayOptions};

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The program's status as a shell sees it: exit code, or 128 + signal.
    pub status: i32,
    /// Events in the log, Start and Exit included.
    pub events: u64,
}

static TRACEE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// The pid of the tracee of the running session (0 if none), for a tool's signal handler to
/// forward SIGTERM/SIGINT to. Reading it is async-signal-safe.
pub fn current_tracee() -> i32 {
    TRACEE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Set while ftexec signals a process group it is part of: the copy it gets itself is not
/// passed on again.
static OWN_COPY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Passes a stop signal (SIGINT, SIGTERM, ...) that ftexec got on to the program, as a terminal
/// passes Ctrl-C to a job: to the program's whole process group (nginx's workers, redis's
/// child), once. Returns false for ftexec's own copy of a signal it sent to its group, which
/// the caller ignores. For a signal handler: async-signal-safe.
/// - `from_terminal` (the signal's si_code is SI_KERNEL): the terminal sent it to its foreground
///   group, which holds the program too when it shares ftexec's group; then nothing is sent (a
///   second SIGINT makes redis exit unsaved).
/// - The group is signalled only if it is ftexec's own (ftexec leads it: `ftexec up` gives each
///   replica one) or the program's alone; a group that ftexec shares with whoever started it (a
///   script) gets nothing but the program's first process signalled.
pub fn pass_stop_signal(sig: i32, from_terminal: bool) -> bool {
    use std::sync::atomic::Ordering;
    if OWN_COPY.swap(false, Ordering::SeqCst) {
        return false;
    }
    let pid = current_tracee();
    if pid <= 0 {
        return true;
    }
    // SAFETY: getpgid, getpgrp, getpid and kill are async-signal-safe and take plain integers.
    unsafe {
        let group = libc::getpgid(pid);
        let mine = libc::getpgrp();
        if group == mine && from_terminal {
            return true;
        }
        if group > 0 && group != mine {
            libc::kill(-group, sig);
        } else if group == mine && mine == libc::getpid() {
            OWN_COPY.store(true, Ordering::SeqCst);
            if libc::kill(-group, sig) != 0 {
                OWN_COPY.store(false, Ordering::SeqCst);
            }
        } else {
            libc::kill(pid, sig);
        }
    }
    true
}

/// Installs `handler` for `signals` with its siginfo (SA_SIGINFO, SA_RESTART): a tool's stop
/// handler tells a terminal's signal (si_code SI_KERNEL) from a kill.
pub fn on_signals(signals: &[i32], handler: extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void)) {
    for &sig in signals {
        // SAFETY: a zeroed sigaction is valid; the handler is an extern "C" function that
        // lives as long as the process.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Whether a signal handler's siginfo says the kernel sent the signal (a terminal's Ctrl-C).
///
/// # Safety
/// `info` is null or the siginfo the kernel passed to an SA_SIGINFO handler.
pub unsafe fn from_kernel(info: *const libc::siginfo_t) -> bool {
    // SAFETY: the caller passes the handler's siginfo (valid) or null, which is checked.
    !info.is_null() && unsafe { (*info).si_code } == libc::SI_KERNEL
}

pub(crate) fn set_current_tracee(pid: i32) {
    TRACEE.store(pid, std::sync::atomic::Ordering::Relaxed);
}
