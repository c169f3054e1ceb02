//! The cluster configuration file (TOML).
//!
//! ```toml
//! cluster_name = "demo"
//! tick_ms = 100          # one Raft tick
//! election_ticks = 10    # election timeout, in ticks
//! heartbeat_ticks = 1    # heartbeat interval, in ticks
//! fsync = "always"       # or "never"
//!
//! [[node]]
//! id = 1
//! raft_addr = "127.0.0.1:7101"
//! control_addr = "127.0.0.1:7201"
//! data_dir = "/tmp/ftexec-demo/node1"
//! ```
//!
//! Relative `data_dir`s are resolved against the directory holding the config file.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A configuration problem, always naming the offending field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config field `{field}`: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.into(), message: message.into() }
}

/// When the log is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// fdatasync after every batch of appended records, before any message that depends on
    /// them is sent (the Raft safety requirement).
    #[default]
    Always,
    /// Never fsync; only survives process crashes, not machine crashes. For benchmarks/tests.
    Never,
}

/// One member of the cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub id: u64,
    /// Address the Raft transport listens on (IP:port).
    pub raft_addr: String,
    /// Address of the line-based control/status endpoint (IP:port), used by `ftctl`.
    #[serde(default)]
    pub control_addr: Option<String>,
    /// Directory holding the node's Raft log.
    pub data_dir: PathBuf,
    /// This replica's copy of the service's data directory [default: `data_dir`/service].
    #[serde(default)]
    pub service_dir: Option<PathBuf>,
    /// Whether the node is a voter of the initial cluster (default). A node with
    /// `initial = false` starts empty and waits until `ftctl add-node` adds it.
    #[serde(default = "default_true")]
    pub initial: bool,
}

/// The program every replica runs, identically.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// PROG and its arguments.
    pub command: Vec<String>,
    /// Working directory of the program [default: data_dir, or /].
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Replicated state, as the program sees it (an absolute path). Each replica has its own copy
    /// (the node's `service_dir`), bind-mounted here in a private mount namespace.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// What every replica's copy starts from (copied at each start) [default: empty].
    #[serde(default)]
    pub initial_data: Option<PathBuf>,
    /// The program's environment, NAME=VALUE [default: PATH=/usr/local/bin:/usr/bin:/bin].
    #[serde(default)]
    pub env: Vec<String>,
}

fn default_true() -> bool {
    true
}

fn default_tick_ms() -> u64 {
    100
}
fn default_election_ticks() -> usize {
    10
}
fn default_heartbeat_ticks() -> usize {
    1
}

/// The whole cluster file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub cluster_name: String,
    #[serde(default = "default_tick_ms")]
    pub tick_ms: u64,
    #[serde(default = "default_election_ticks")]
    pub election_ticks: usize,
    #[serde(default = "default_heartbeat_ticks")]
    pub heartbeat_ticks: usize,
    #[serde(default)]
    pub fsync: FsyncPolicy,
    #[serde(rename = "node", default)]
    pub nodes: Vec<NodeConfig>,
    /// The replicated program (`ftexec run`); absent for a bare Raft cluster.
    #[serde(default)]
    pub service: Option<ServiceConfig>,
    /// When followers checkpoint the program (`ftexec run`).
    #[serde(default)]
    pub snapshot: SnapshotConfig,
}

/// The cluster file's `[snapshot]` section: a follower checkpoints the program at the first
/// event boundary where it can after every `every_events` events, keeps the newest `keep`
/// checkpoints, and a replica that starts restores the newest usable one instead of replaying
/// the log from its start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// 0 turns checkpoints off.
    #[serde(default = "default_every_events")]
    pub every_events: u64,
    #[serde(default = "default_keep")]
    pub keep: usize,
}

fn default_every_events() -> u64 {
    100_000
}

fn default_keep() -> usize {
    2
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig { every_events: default_every_events(), keep: default_keep() }
    }
}

impl ClusterConfig {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<ClusterConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let mut cfg = Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: path.to_path_buf(), message },
            other => other,
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        for n in &mut cfg.nodes {
            if n.data_dir.is_relative() {
                n.data_dir = base.join(&n.data_dir);
            }
            if let Some(d) = n.service_dir.as_mut().filter(|d| d.is_relative()) {
                *d = base.join(&*d);
            }
        }
        if let Some(d) = cfg.service.as_mut().and_then(|s| s.initial_data.as_mut()).filter(|d| d.is_relative()) {
            *d = base.join(&*d);
        }
        Ok(cfg)
    }

    /// Parses and validates config text (relative data dirs are left as they are).
    pub fn parse(text: &str) -> Result<ClusterConfig, ConfigError> {
        let cfg: ClusterConfig = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: PathBuf::from("<text>"), message: e.to_string() })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cluster_name.trim().is_empty() {
            return Err(invalid("cluster_name", "must not be empty"));
        }
        if self.tick_ms == 0 {
            return Err(invalid("tick_ms", "must be at least 1"));
        }
        if self.snapshot.keep == 0 {
            return Err(invalid("snapshot.keep", "must be at least 1 (the checkpoint a replica restores)"));
        }
        if self.heartbeat_ticks == 0 {
            return Err(invalid("heartbeat_ticks", "must be at least 1"));
        }
        if self.election_ticks <= self.heartbeat_ticks {
            return Err(invalid(
                "election_ticks",
                format!("must be greater than heartbeat_ticks ({}), got {}", self.heartbeat_ticks, self.election_ticks),
            ));
        }
        if self.nodes.is_empty() {
            return Err(invalid("node", "at least one [[node]] is required"));
        }
        if let Some(svc) = &self.service {
            if svc.command.is_empty() || svc.command[0].is_empty() {
                return Err(invalid(
                    "service.command",
                    "must name the program, e.g. [\"redis-server\", \"--port\", \"7777\"]",
                ));
            }
            for (name, p) in [("service.data_dir", &svc.data_dir), ("service.cwd", &svc.cwd)] {
                if p.as_ref().is_some_and(|p| !p.is_absolute()) {
                    return Err(invalid(name, "must be an absolute path (the program sees it on every replica)"));
                }
            }
            if let Some(e) = svc.env.iter().find(|e| !e.contains('=')) {
                return Err(invalid("service.env", format!("`{e}` is not NAME=VALUE")));
            }
        }
        if !self.nodes.iter().any(|n| n.initial) {
            return Err(invalid("node", "at least one node must have `initial = true`"));
        }
        let mut ids = HashSet::new();
        let mut addrs = HashSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let f = |name: &str| format!("node[{i}].{name}");
            if n.id == 0 {
                return Err(invalid(f("id"), "0 is reserved; ids start at 1"));
            }
            if !ids.insert(n.id) {
                return Err(invalid(f("id"), format!("duplicate node id {}", n.id)));
            }
            let ra: SocketAddr = n
                .raft_addr
                .parse()
                .map_err(|e| invalid(f("raft_addr"), format!("`{}` is not an IP:port address ({e})", n.raft_addr)))?;
            if !addrs.insert(ra) {
                return Err(invalid(f("raft_addr"), format!("address {ra} is used twice")));
            }
            if let Some(ca) = &n.control_addr {
                let ca: SocketAddr = ca
                    .parse()
                    .map_err(|e| invalid(f("control_addr"), format!("`{ca}` is not an IP:port address ({e})")))?;
                if !addrs.insert(ca) {
                    return Err(invalid(f("control_addr"), format!("address {ca} is used twice")));
                }
            }
            if n.data_dir.as_os_str().is_empty() {
                return Err(invalid(f("data_dir"), "must not be empty"));
            }
        }
        Ok(())
    }

    /// The entry of node `id`, or an error naming it.
    pub fn node(&self, id: u64) -> Result<&NodeConfig, ConfigError> {
        self.nodes.iter().find(|n| n.id == id).ok_or_else(|| {
            let known: Vec<String> = self.nodes.iter().map(|n| n.id.to_string()).collect();
            invalid("node.id", format!("no node with id {id} in the config (known: {})", known.join(", ")))
        })
    }

    /// The index of node `id` in `nodes`, for error messages.
    pub fn node_field(&self, id: u64, name: &str) -> String {
        match self.nodes.iter().position(|n| n.id == id) {
            Some(i) => format!("node[{i}].{name}"),
            None => format!("node(id={id}).{name}"),
        }
    }

    /// Serializes back to TOML (used by tests to write generated configs).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

impl NodeConfig {
    pub fn raft_socket_addr(&self) -> Option<SocketAddr> {
        self.raft_addr.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
cluster_name = "t"
[[node]]
id = 1
raft_addr = "127.0.0.1:7001"
data_dir = "/tmp/x1"
[[node]]
id = 2
raft_addr = "127.0.0.1:7002"
control_addr = "127.0.0.1:7102"
data_dir = "x2"
"#;

    fn field_of(text: &str) -> String {
        match ClusterConfig::parse(text) {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn good_config_parses_with_defaults() {
        let c = ClusterConfig::parse(GOOD).expect("valid");
        assert_eq!(c.nodes.len(), 2);
        assert_eq!(c.tick_ms, 100);
        assert_eq!(c.fsync, FsyncPolicy::Always);
        assert_eq!(c.node(2).expect("node 2").control_addr.as_deref(), Some("127.0.0.1:7102"));
        assert!(c.node(9).is_err());
    }

    #[test]
    fn duplicate_id_names_field() {
        let t = GOOD.replace("id = 2", "id = 1");
        assert_eq!(field_of(&t), "node[1].id");
    }

    #[test]
    fn bad_address_names_field() {
        let t = GOOD.replace("127.0.0.1:7002", "localhost:notaport");
        assert_eq!(field_of(&t), "node[1].raft_addr");
        let t = GOOD.replace("127.0.0.1:7102", "nope");
        assert_eq!(field_of(&t), "node[1].control_addr");
    }

    #[test]
    fn timing_checked() {
        let t = format!("election_ticks = 1\n{GOOD}");
        assert_eq!(field_of(&t), "election_ticks");
    }

    #[test]
    fn unknown_field_is_parse_error() {
        let t = format!("{GOOD}bogus = 3\n");
        assert!(matches!(ClusterConfig::parse(&t), Err(ConfigError::Parse { .. })));
    }

    #[test]
    fn relative_data_dir_resolved_against_file() {
        let dir = std::env::temp_dir().join(format!("ftcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let p = dir.join("c.toml");
        std::fs::write(&p, GOOD).expect("write");
        let c = ClusterConfig::load(&p).expect("load");
        assert_eq!(c.node(2).expect("n2").data_dir, dir.join("x2"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn shipped_example_is_valid() {
        let c = ClusterConfig::parse(include_str!("../../examples/cluster.toml")).expect("valid");
        assert_eq!(c.nodes.len(), 3);
        assert!(c.nodes.iter().all(|n| n.control_addr.is_some()));
    }
}
