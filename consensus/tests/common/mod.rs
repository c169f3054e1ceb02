//! Test harness: real node processes (`ft-consensus-node --test-mode`) on 127.0.0.<id> with
//! random free ports, real sockets and real data directories.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ft_consensus::config::{ClusterConfig, FsyncPolicy, NodeConfig};
use ft_consensus::control::request;
use serde_json::Value;

pub const NODE_BIN: &str = env!("CARGO_BIN_EXE_ft-consensus-node");

/// A free port on `ip` (the kernel picks it; released before the node binds it).
fn free_port_on(ip: &str) -> u16 {
    let l = TcpListener::bind(format!("{ip}:0")).expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

fn free_port() -> u16 {
    free_port_on("127.0.0.1")
}

/// Node `id` lives on 127.0.0.<id> (all of 127/8 is loopback on Linux).
fn node_ip(id: u64) -> String {
    format!("127.0.0.{}", id.clamp(1, 254))
}

/// One committed batch as the test node writes it: `index term text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub index: u64,
    pub term: u64,
    pub text: String,
}

pub struct Cluster {
    pub dir: PathBuf,
    pub cfg_path: PathBuf,
    pub cfg: ClusterConfig,
    procs: HashMap<u64, Child>,
    starts: HashMap<u64, u32>,
}

impl Cluster {
    /// Writes a config for `n` initial nodes plus `extra` non-initial ones (ids n+1..).
    pub fn new(name: &str, n: u64, extra: u64, fsync: FsyncPolicy) -> Cluster {
        let dir = std::env::temp_dir().join(format!(
            "ftraft-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
                % 1_000_000_007
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir test dir");
        // Each port's listener is held until every port is chosen: a port just closed may be
        // handed out again (a node's Raft and control addresses came out equal).
        let mut held = Vec::new();
        let mut port_on = |ip: &str| {
            let l = TcpListener::bind(format!("{ip}:0")).expect("bind a free port");
            let port = l.local_addr().expect("local addr").port();
            held.push(l);
            port
        };
        let nodes = (1..=n + extra)
            .map(|id| NodeConfig {
                id,
                raft_addr: format!("{}:{}", node_ip(id), port_on(&node_ip(id))),
                control_addr: Some(format!("{}:{}", node_ip(id), port_on(&node_ip(id)))),
                data_dir: PathBuf::from(format!("node{id}")),
                initial: id <= n,
                service_dir: None,
            })
            .collect();
        let cfg = ClusterConfig {
            service: None,
            snapshot: Default::default(),
            cluster_name: name.into(),
            tick_ms: 10,
            election_ticks: 20,
            heartbeat_ticks: 2,
            fsync,
            nodes,
        };
        let cfg_path = dir.join("cluster.toml");
        std::fs::write(&cfg_path, cfg.to_toml()).expect("write config");
        let cfg = ClusterConfig::load(&cfg_path).expect("load generated config");
        Cluster { dir, cfg_path, cfg, procs: HashMap::new(), starts: HashMap::new() }
    }

    pub fn ids(&self) -> Vec<u64> {
        self.cfg.nodes.iter().map(|n| n.id).collect()
    }
    pub fn initial_ids(&self) -> Vec<u64> {
        self.cfg.nodes.iter().filter(|n| n.initial).map(|n| n.id).collect()
    }
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.cfg.node(id).expect("node").data_dir.clone()
    }
    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node{id}.stderr"))
    }
    fn ctl(&self, id: u64) -> String {
        self.cfg.node(id).expect("node").control_addr.clone().expect("control addr")
    }

    pub fn start(&mut self, id: u64) {
        assert!(!self.procs.contains_key(&id), "node {id} already running");
        let n = self.starts.entry(id).or_insert(0);
        *n += 1;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path(id)).expect("stderr file");
        let child = Command::new(NODE_BIN)
            .arg("--config")
            .arg(&self.cfg_path)
            .arg("--id")
            .arg(id.to_string())
            .arg("--test-mode")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn node");
        self.procs.insert(id, child);
        // Wait until its control endpoint answers.
        let t0 = Instant::now();
        while self.status(id).is_none() {
            if let Some(c) = self.procs.get_mut(&id) {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("node {id} exited at start with {st}: {}", self.stderr(id));
                }
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "node {id} did not come up");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn start_all(&mut self) {
        for id in self.initial_ids() {
            self.start(id);
        }
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.procs.contains_key(&id)
    }
    pub fn running(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.procs.keys().copied().collect();
        v.sort();
        v
    }

    /// kill -9.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.procs.remove(&id) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for node `id` to exit by itself; returns its exit status.
    pub fn wait_exit(&mut self, id: u64, timeout: Duration) -> std::process::ExitStatus {
        let t0 = Instant::now();
        loop {
            let c = self.procs.get_mut(&id).expect("node not running");
            if let Ok(Some(st)) = c.try_wait() {
                self.procs.remove(&id);
                return st;
            }
            assert!(t0.elapsed() < timeout, "node {id} did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self, id: u64) -> String {
        std::fs::read_to_string(self.log_path(id)).unwrap_or_default()
    }

    pub fn cmd(&self, id: u64, line: &str) -> Option<Value> {
        request(&self.ctl(id), line, Duration::from_secs(20)).ok()
    }

    pub fn status(&self, id: u64) -> Option<Value> {
        request(&self.ctl(id), "status", Duration::from_secs(2)).ok()
    }

    pub fn role(&self, id: u64) -> Option<String> {
        self.status(id).and_then(|v| v.get("role").and_then(Value::as_str).map(String::from))
    }

    pub fn num(&self, id: u64, key: &str) -> Option<u64> {
        self.status(id).and_then(|v| v.get(key).and_then(Value::as_u64))
    }

    /// A leader that a majority of the running voters agree on (same term, same leader).
    pub fn leader(&self) -> Option<u64> {
        let mut votes: BTreeMap<(u64, u64), usize> = BTreeMap::new();
        let mut leaders = Vec::new();
        for id in self.running() {
            let Some(s) = self.status(id) else { continue };
            if s.get("isolated").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let (Some(l), Some(t)) = (s.get("leader").and_then(Value::as_u64), s.get("term").and_then(Value::as_u64))
            else {
                continue;
            };
            *votes.entry((l, t)).or_default() += 1;
            if s.get("role").and_then(Value::as_str) == Some("leader") {
                leaders.push((id, t));
            }
        }
        let majority = self.initial_ids().len() / 2 + 1;
        leaders.into_iter().find(|(id, t)| votes.get(&(*id, *t)).copied().unwrap_or(0) >= majority).map(|(id, _)| id)
    }

    pub fn wait_leader(&self, timeout: Duration) -> u64 {
        let t0 = Instant::now();
        loop {
            if let Some(l) = self.leader() {
                return l;
            }
            assert!(t0.elapsed() < timeout, "no leader within {timeout:?}; running {:?}", self.running());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Proposes on `id`; Ok(index) once appended there.
    pub fn propose(&self, id: u64, text: &str) -> Result<u64, String> {
        let v = self.cmd(id, &format!("propose {text}")).ok_or("no reply")?;
        match v.get("index").and_then(Value::as_u64) {
            Some(i) if v["ok"] == true => Ok(i),
            _ => Err(v.to_string()),
        }
    }

    /// Proposes `prefix-0..prefix-(n-1)` on `id` at once; returns (accepted, last index).
    pub fn propose_many(&self, id: u64, prefix: &str, n: u64) -> (u64, u64) {
        match self.cmd(id, &format!("propose-many {prefix} {n}")) {
            Some(v) => (
                v.get("accepted").and_then(Value::as_u64).unwrap_or(0),
                v.get("last_index").and_then(Value::as_u64).unwrap_or(0),
            ),
            None => (0, 0),
        }
    }

    /// Waits on node `id` until `index` is applied; Ok(()) only if it committed as proposed.
    pub fn await_commit(&self, id: u64, index: u64, timeout_ms: u64) -> Result<(), String> {
        let v = self.cmd(id, &format!("await {index} {timeout_ms}")).ok_or("no reply")?;
        if v["ok"] == true {
            Ok(())
        } else {
            Err(v.to_string())
        }
    }

    /// Proposes on whichever node leads, retrying until committed. Returns the index.
    pub fn propose_committed(&self, text: &str, timeout: Duration) -> u64 {
        let t0 = Instant::now();
        loop {
            assert!(t0.elapsed() < timeout, "could not commit `{text}`");
            let Some(l) = self.leader() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            if let Ok(i) = self.propose(l, text) {
                if self.await_commit(l, i, 5000).is_ok() {
                    return i;
                }
            }
        }
    }

    pub fn isolate(&self, id: u64, on: bool) {
        let v = self.cmd(id, &format!("isolate {}", if on { "on" } else { "off" })).expect("isolate reply");
        assert_eq!(v["ok"], true, "{v}");
    }

    /// The committed batches node `id` has written so far (complete lines only).
    pub fn applied(&self, id: u64) -> Vec<Applied> {
        let p = self.data_dir(id).join("applied.txt");
        let text = std::fs::read_to_string(p).unwrap_or_default();
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        complete
            .lines()
            .filter_map(|l| {
                let mut it = l.splitn(3, ' ');
                Some(Applied {
                    index: it.next()?.parse().ok()?,
                    term: it.next()?.parse().ok()?,
                    text: it.next().unwrap_or("").to_string(),
                })
            })
            .collect()
    }

    /// Waits until every listed node has applied at least `index`.
    pub fn wait_applied(&self, ids: &[u64], index: u64, timeout: Duration) {
        let t0 = Instant::now();
        for &id in ids {
            loop {
                let a = self.num(id, "applied").unwrap_or(0);
                if a >= index {
                    break;
                }
                assert!(
                    t0.elapsed() < timeout,
                    "node {id} applied only {a} < {index} within {timeout:?}\n{}",
                    tail(&self.stderr(id), 2000)
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Waits until all listed nodes report the same applied index, and that index is at
    /// least the leader's commit; then waits for their applied files to be flushed.
    pub fn wait_converged(&self, ids: &[u64], timeout: Duration) -> u64 {
        let t0 = Instant::now();
        loop {
            let applied: Vec<Option<u64>> = ids.iter().map(|&i| self.num(i, "applied")).collect();
            let commit = self.leader().and_then(|l| self.num(l, "commit")).unwrap_or(u64::MAX);
            if applied.iter().all(|a| a.is_some())
                && applied.windows(2).all(|w| w[0] == w[1])
                && applied[0].unwrap_or(0) >= commit
            {
                let target = applied[0].unwrap_or(0);
                // applied.txt lags `applied` by at most one flush.
                std::thread::sleep(Duration::from_millis(100));
                return target;
            }
            assert!(
                t0.elapsed() < timeout,
                "nodes {ids:?} did not converge: applied {applied:?}, leader commit {commit}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Asserts the listed nodes have byte-identical committed logs; returns it.
    /// applied.txt is written by its own thread after `applied` is reported, so files of
    /// different lengths are read again for up to 5 s before they count as different.
    pub fn assert_identical(&self, ids: &[u64]) -> Vec<Applied> {
        let t0 = Instant::now();
        let mut all: Vec<Vec<Applied>> = ids.iter().map(|&id| self.applied(id)).collect();
        while all.windows(2).any(|w| w[0].len() != w[1].len()) && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
            all = ids.iter().map(|&id| self.applied(id)).collect();
        }
        let first = all[0].clone();
        for (&id, other) in ids.iter().zip(&all).skip(1) {
            assert_eq!(
                first.len(),
                other.len(),
                "node {} has {} committed batches, node {id} has {}",
                ids[0],
                first.len(),
                other.len()
            );
            if let Some(k) = (0..first.len()).find(|&k| first[k] != other[k]) {
                panic!("logs differ at batch {k}: node {} {:?} vs node {id} {:?}", ids[0], first[k], other[k]);
            }
        }
        first
    }

    pub fn keep(&mut self) {
        // Nothing to do: directories are kept when a test panics.
    }
}

pub fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.procs.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
        if std::thread::panicking() {
            eprintln!("test cluster kept for inspection: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Asserts that no text appears twice and returns the texts in log order.
pub fn texts(log: &[Applied]) -> Vec<String> {
    let v: Vec<String> = log.iter().map(|a| a.text.clone()).collect();
    let mut seen = std::collections::HashSet::new();
    for t in &v {
        assert!(seen.insert(t.clone()), "`{t}` committed twice");
    }
    v
}

pub fn corrupt_last_byte(path: &Path) {
    let mut b = std::fs::read(path).expect("read log");
    let n = b.len();
    b[n - 1] ^= 0x5a;
    std::fs::write(path, b).expect("write log");
}

/// A thread-safe client of the control endpoints (for proposers running beside kills).
#[derive(Clone)]
pub struct Client {
    ctl: BTreeMap<u64, String>,
    initial: Vec<u64>,
}

impl Cluster {
    pub fn client(&self) -> Client {
        Client {
            ctl: self.cfg.nodes.iter().filter_map(|n| n.control_addr.clone().map(|a| (n.id, a))).collect(),
            initial: self.initial_ids(),
        }
    }

    /// Rewrites the config file from `self.cfg` (tests that break it on purpose).
    pub fn rewrite_config(&self) {
        std::fs::write(&self.cfg_path, self.cfg.to_toml()).expect("write config");
    }

    /// Runs the node binary to completion (for nodes expected to fail at start).
    pub fn run_to_exit(&self, id: u64) -> (bool, String) {
        let out = Command::new(NODE_BIN)
            .arg("--config")
            .arg(&self.cfg_path)
            .arg("--id")
            .arg(id.to_string())
            .arg("--test-mode")
            .stdin(Stdio::null())
            .output()
            .expect("run node");
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Client {
    fn cmd(&self, id: u64, line: &str, t: Duration) -> Option<Value> {
        request(self.ctl.get(&id)?, line, t).ok()
    }

    /// A node that says it leads and that a majority of the others follow at that term.
    pub fn leader(&self) -> Option<u64> {
        let mut votes: BTreeMap<(u64, u64), usize> = BTreeMap::new();
        let mut leaders = Vec::new();
        for &id in self.ctl.keys() {
            let Some(s) = self.cmd(id, "status", Duration::from_millis(500)) else {
                continue;
            };
            if s.get("isolated").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let (Some(l), Some(t)) = (s.get("leader").and_then(Value::as_u64), s.get("term").and_then(Value::as_u64))
            else {
                continue;
            };
            *votes.entry((l, t)).or_default() += 1;
            if s.get("role").and_then(Value::as_str) == Some("leader") {
                leaders.push((id, t));
            }
        }
        let majority = self.initial.len() / 2 + 1;
        leaders.into_iter().find(|(id, t)| votes.get(&(*id, *t)).copied().unwrap_or(0) >= majority).map(|(id, _)| id)
    }

    /// Proposes `prefix-0..` on the leader and waits for the commit; Some(texts) if all of
    /// them are known committed.
    pub fn commit_batch(&self, prefix: &str, n: u64, timeout_ms: u64) -> Option<Vec<String>> {
        let l = self.leader()?;
        let t = Duration::from_millis(timeout_ms);
        let v = self.cmd(l, &format!("propose-many {prefix} {n}"), t)?;
        if v.get("accepted").and_then(Value::as_u64) != Some(n) {
            return None;
        }
        let idx = v.get("last_index").and_then(Value::as_u64)?;
        let w = self.cmd(l, &format!("await {idx} {timeout_ms}"), t + t)?;
        if w["ok"] != true {
            return None;
        }
        Some((0..n).map(|i| format!("{prefix}-{i}")).collect())
    }
}

/// Checks that `acked` (committed, acknowledged in this order, one after the other) all appear
/// in `log` in that order.
pub fn assert_acked_in_order(log: &[Applied], acked: &[String]) {
    let order = texts(log);
    let pos: HashMap<&str, usize> = order.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    let mut prev = None;
    for a in acked {
        let p = *pos.get(a.as_str()).unwrap_or_else(|| panic!("acknowledged `{a}` is not in the committed log"));
        assert!(prev < Some(p), "acknowledged `{a}` is out of order");
        prev = Some(p);
    }
}

/// Asserts that of any two logs, one is a prefix of the other.
pub fn assert_prefixes_agree(logs: &[(u64, Vec<Applied>)]) {
    for (a, la) in logs {
        for (b, lb) in logs {
            let n = la.len().min(lb.len());
            if let Some(k) = (0..n).find(|&k| la[k] != lb[k]) {
                panic!("committed logs of nodes {a} and {b} diverge at batch {k}: {:?} vs {:?}", la[k], lb[k]);
            }
        }
    }
}
