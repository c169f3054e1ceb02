//! Errors of record and replay sessions, and of reading the replicated log.

use ft_consensus::StoreError;
use ft_interposer::TraceError;
use ft_libos::batch::BatchError;
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
    /// A committed Raft entry does not hold what a recording's log holds.
    #[error("replication: {0}")]
    Entry(#[from] EntryError),
    /// A stopped replica's log given to replay cannot be read.
    #[error(transparent)]
    RaftLog(#[from] RaftLogError),
    /// The cluster compacted its log past this replica's position: it must restore a checkpoint.
    #[error("the cluster compacted its log past this replica (the leader sent a snapshot at entry {index}): it restarts from a checkpoint")]
    Compacted { index: u64 },
    /// A checkpoint that cannot be used (damaged, foreign, or its restore failed).
    #[error("checkpoint {path}: {why}")]
    Checkpoint { path: PathBuf, why: String },
    #[error(transparent)]
    Snapshot(#[from] ft_libos::snapshot::SnapshotError),
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

/// A committed Raft entry that is not a batch of the recording ([`crate::raft::EntryDecoder`]).
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// Its data is not the node's framing of proposals (a length before each batch).
    #[error("entry {index} of the log is not framed as batches")]
    Unframed { index: u64 },
    #[error("entry {index} of the log has {source}")]
    Batch {
        index: u64,
        #[source]
        source: BatchError,
    },
    /// The recording's identity is proposed once, by the replica that started the program.
    #[error("entry {index} of the log has a second header")]
    SecondHeader { index: u64 },
}

/// Why the recording in a stopped replica's Raft log cannot be read ([`crate::raft::read_recording`]).
#[derive(Debug, thiserror::Error)]
pub enum RaftLogError {
    /// The file cannot be read: a running node holds it, it is not a Raft log, it is damaged.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: the replicated log cannot be read: {source}")]
    Entry {
        path: PathBuf,
        #[source]
        source: EntryError,
    },
    #[error("{path}: the replicated log cannot be read: its entries before {first_index} were compacted away: the recording's start is gone")]
    Compacted { path: PathBuf, first_index: u64 },
    #[error("{path}: the replicated log cannot be read: none of its {entries} committed entries (commit index {commit}) holds a recording yet")]
    NoRecording { path: PathBuf, entries: usize, commit: u64 },
}
