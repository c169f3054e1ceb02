//! ft-consensus: a durable, replicated, totally ordered log on tikv's `raft` crate.
//!
//! See `docs/ARCHITECTURE.md`, section "Consensus (Raft)".

pub mod config;
pub mod control;
pub mod node;
pub mod serve;
pub mod storage;
pub mod transport;

pub use config::{ClusterConfig, ConfigError, FsyncPolicy, NodeConfig, ServiceConfig};
pub use node::{CommittedEntry, EntryId, LeaderChange, Node, NodeError, NodeOptions, PendingProposal, Role, Status};
pub use storage::{DiskStorage, StoreError};
