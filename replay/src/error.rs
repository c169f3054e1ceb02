//! Errors of record and replay sessions.

use ft_interposer::TraceError;
use ft_libos::log::LogError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error(transparent)]
    Log(#[from] LogError),
    /// Replay departed from the recording: where, what the log has, what the program did.
    #[error("divergence at event {index}: the recording has {expected}, but the program now does {got}")]
    Divergence { index: u64, expected: String, got: String },
    /// The program needs something ftexec cannot replay yet.
    #[error("{what}, which is not supported yet: {why}")]
    Unsupported { what: String, why: String },
    #[error("{path}: program not found{hint}")]
    ProgramNotFound { path: PathBuf, hint: String },
    #[error("{path} is not an executable file: {why}")]
    NotExecutable { path: PathBuf, why: String },
    /// An input of replay differs from the recording's (binary, library, CPU, data dir).
    #[error("{what} differs from the recording: {detail}")]
    Mismatch { what: String, detail: String },
    #[error(
        "the log ends at event {index} without the program's exit: the recording was interrupted; replay stopped there"
    )]
    LogEnded { index: u64 },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// The replicated log failed: this replica lost leadership, or its Raft node stopped.
    #[error("replication: {0}")]
    Replication(String),
    /// A debugger ended the replay (to replay again from the start, or to quit).
    #[error("the debugger ended this replay")]
    Restart,
}

impl SessionError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SessionError {
        let what = what.into();
        move |source| SessionError::Io { what, source }
    }
}

pub type Result<T> = std::result::Result<T, SessionError>;
