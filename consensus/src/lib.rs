//! ft-consensus: a durable, replicated, totally ordered log on tikv's `raft` crate.
//!
//! See `docs/ARCHITECTURE.md`, section "Consensus (Raft)".

pub mod config;
pub mod storage;

pub use config::{ClusterConfig, ConfigError, FsyncPolicy, NodeConfig};
pub use storage::{DiskStorage, StoreError};
