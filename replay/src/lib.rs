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

pub(crate) fn set_current_tracee(pid: i32) {
    TRACEE.store(pid, std::sync::atomic::Ordering::Relaxed);
}
