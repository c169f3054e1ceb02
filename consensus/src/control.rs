//! The per-node control endpoint: a line-based TCP protocol with one JSON object per reply.
//!
//! Always available:
//! - `status` → the node's [`Status`](crate::Status) plus `"live": true`
//! - `add-node <id> <raft_addr>` / `remove-node <id>` → proposes a conf change (leader only)
//!
//! Only when the server runs in test mode (fault injection and direct proposals):
//! - `propose <text>` → `{"ok":true,"index":N}` once appended by the leader
//! - `propose-many <prefix> <count>` → submits `<prefix>-0 .. <prefix>-(count-1)` at once
//!   (group commit), waits for their indexes, replies with how many were accepted
//! - `await <index> <timeout_ms>` → waits until applied here
//! - `fail-disk on|off` → make every later log write fail (the node then stops)
//! - `campaign` → start an election here
//!
//! In test mode, or when the embedder enables fault injection alone ([`Access::fault_injection`],
//! `ftexec run` with `FTEXEC_FAULT_INJECTION=1`):
//! - `isolate on|off` → drop all Raft traffic to and from this node (a network partition)
//!
//! Refused otherwise, with an error that says how to enable it ([`Access::enable_hint`]).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use slog::{warn, Logger};

use crate::node::{Node, NodeError};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot listen on control address {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("control request to {addr} failed: {source}")]
    Request {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("control reply from {addr} is not JSON: {reply}")]
    BadReply { addr: String, reply: String },
}

/// Which commands beyond `status`, `add-node` and `remove-node` an endpoint accepts.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Every test command: proposals from outside, `await`, `fail-disk`, `campaign`, `isolate`.
    pub test_mode: bool,
    /// Only the network fault `isolate`. For a node whose log belongs to an embedder (a
    /// replicated program), which must never see proposals from outside.
    pub fault_injection: bool,
    /// Told to the client when `isolate` is refused: how to enable fault injection on this node.
    pub enable_hint: String,
}

impl Access {
    /// Test mode on or off (`ft-consensus-node --test-mode`, `ftctl serve --test-mode`).
    pub fn test_mode(on: bool) -> Access {
        Access { test_mode: on, fault_injection: false, enable_hint: "start the node in test mode".into() }
    }
}

/// Extra fields merged into every `status` reply (the replica's replay position, its pid...).
pub type StatusHook = Arc<dyn Fn() -> Value + Send + Sync>;

/// Starts the control server on `addr` in a background thread.
pub fn serve(
    node: Arc<Node>,
    addr: &str,
    test_mode: bool,
    logger: Logger,
) -> Result<std::net::SocketAddr, ControlError> {
    serve_with(node, addr, Access::test_mode(test_mode), None, logger)
}

/// Commands of the embedding program (its checkpoints): given the command and its arguments,
/// a reply, or None for a command it does not know.
pub type CommandHook = Arc<dyn Fn(&str, &[&str]) -> Option<Value> + Send + Sync>;

/// [`serve`], with fields of the embedding program added to `status`.
pub fn serve_with(
    node: Arc<Node>,
    addr: &str,
    access: Access,
    hook: Option<StatusHook>,
    logger: Logger,
) -> Result<std::net::SocketAddr, ControlError> {
    serve_hooks(node, addr, access, hook, None, logger)
}

/// [`serve_with`], and the embedding program's own commands.
pub fn serve_hooks(
    node: Arc<Node>,
    addr: &str,
    access: Access,
    hook: Option<StatusHook>,
    commands: Option<CommandHook>,
    logger: Logger,
) -> Result<std::net::SocketAddr, ControlError> {
    let l = TcpListener::bind(addr).map_err(|source| ControlError::Bind { addr: addr.to_string(), source })?;
    let local = l.local_addr().map_err(|source| ControlError::Bind { addr: addr.to_string(), source })?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for c in l.incoming() {
                // Out of fds or memory: waits instead of spinning on the error.
                let Ok(c) = c else {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                };
                let (node, logger, hook, access) = (node.clone(), logger.clone(), hook.clone(), access.clone());
                let commands = commands.clone();
                let _ = std::thread::Builder::new().name("control-conn".into()).spawn(move || {
                    if let Err(e) = handle_conn(c, &node, &access, &logger, hook.as_ref(), commands.as_ref()) {
                        warn!(logger, "control connection error"; "err" => %e);
                    }
                });
            }
        })
        .map_err(|source| ControlError::Bind { addr: addr.to_string(), source })?;
    Ok(local)
}

fn handle_conn(
    c: TcpStream,
    node: &Node,
    access: &Access,
    logger: &Logger,
    hook: Option<&StatusHook>,
    commands: Option<&CommandHook>,
) -> std::io::Result<()> {
    let mut w = c.try_clone()?;
    let r = BufReader::new(c);
    for line in r.lines() {
        let line = line?;
        let mut words = line.split_whitespace();
        let cmd = words.next().unwrap_or("");
        let args: Vec<&str> = words.collect();
        let own = commands.and_then(|h| h(cmd, &args));
        let mut reply = match own {
            Some(v) => v,
            None => handle_line(line.trim(), node, access, logger),
        };
        if let (Some(h), Some("status"), Value::Object(m)) = (hook, line.split_whitespace().next(), &mut reply) {
            if let Value::Object(extra) = h() {
                m.extend(extra);
            }
        }
        let mut s = reply.to_string();
        s.push('\n');
        w.write_all(s.as_bytes())?;
    }
    Ok(())
}

fn err_json(e: &NodeError) -> Value {
    let mut v = json!({"ok": false, "error": e.to_string()});
    if let NodeError::NotLeader { leader } = e {
        v["leader"] = json!(leader);
    }
    v
}

fn idx_json(r: Result<u64, NodeError>) -> Value {
    match r {
        Ok(i) => json!({"ok": true, "index": i}),
        Err(e) => err_json(&e),
    }
}

fn handle_line(line: &str, node: &Node, access: &Access, logger: &Logger) -> Value {
    let test_mode = access.test_mode;
    let mut words = line.split_whitespace();
    let cmd = words.next().unwrap_or("");
    let args: Vec<&str> = words.collect();
    let num = |i: usize| args.get(i).and_then(|s| s.parse::<u64>().ok());
    match (cmd, test_mode) {
        ("status", _) => {
            let mut v = serde_json::to_value(node.status()).unwrap_or(Value::Null);
            v["live"] = json!(node.stopped().is_none());
            v["ok"] = json!(true);
            v
        }
        ("add-node", _) => match (num(0), args.get(1)) {
            (Some(id), Some(addr)) => idx_json(node.add_node(id, addr)),
            _ => json!({"ok": false, "error": "usage: add-node <id> <raft_addr>"}),
        },
        ("remove-node", _) => match num(0) {
            Some(id) => idx_json(node.remove_node(id)),
            None => json!({"ok": false, "error": "usage: remove-node <id>"}),
        },
        ("transfer-leader", _) => match num(0) {
            Some(to) => match node.transfer_leader(to) {
                Ok(()) => json!({"ok": true, "to": to}),
                Err(e) => err_json(&e),
            },
            None => json!({"ok": false, "error": "usage: transfer-leader <id>"}),
        },
        ("propose", true) => idx_json(node.propose(args.join(" ").into_bytes())),
        ("propose-many", true) => {
            let (Some(prefix), Some(n)) = (args.first(), num(1)) else {
                return json!({"ok": false, "error": "usage: propose-many <prefix> <count>"});
            };
            let mut pending = Vec::new();
            for i in 0..n {
                match node.submit(format!("{prefix}-{i}").into_bytes()) {
                    Ok(p) => pending.push(p),
                    Err(e) => return err_json(&e),
                }
            }
            let (mut accepted, mut last, mut first_err) = (0u64, 0u64, Value::Null);
            for p in pending {
                match p.wait() {
                    Ok(i) => {
                        accepted += 1;
                        last = last.max(i);
                    }
                    Err(e) => {
                        if first_err.is_null() {
                            first_err = json!(e.to_string());
                        }
                    }
                }
            }
            json!({"ok": accepted > 0, "accepted": accepted, "last_index": last, "error": first_err})
        }
        ("await", true) => match num(0) {
            Some(i) => {
                let t = Duration::from_millis(num(1).unwrap_or(10_000));
                match node.await_commit(i, Some(t)) {
                    Ok(()) => json!({"ok": true, "index": i}),
                    Err(e) => err_json(&e),
                }
            }
            None => json!({"ok": false, "error": "usage: await <index> [timeout_ms]"}),
        },
        ("isolate", _) if !(access.test_mode || access.fault_injection) => json!({
            "ok": false,
            "error": format!("fault injection is disabled on node {}: {}", node.id(), access.enable_hint),
        }),
        ("isolate", _) => {
            let on = match args.first().copied() {
                Some("on") => true,
                Some("off") => false,
                _ => return json!({"ok": false, "error": "usage: isolate on|off"}),
            };
            if let Err(e) = node.isolate(on) {
                return err_json(&e);
            }
            warn!(
                logger,
                "fault injection: raft traffic to and from this node {}",
                if on { "dropped" } else { "restored" }
            );
            json!({"ok": true, "isolated": on})
        }
        ("fail-disk", true) => {
            let on = args.first() == Some(&"on");
            node.inject_disk_failure(on);
            json!({"ok": true, "fail_disk": on})
        }
        ("campaign", true) => match node.campaign() {
            Ok(()) => json!({"ok": true}),
            Err(e) => err_json(&e),
        },
        _ => json!({"ok": false, "error": format!("unknown command `{cmd}`")}),
    }
}

/// Sends one request line and reads one JSON reply.
pub fn request(addr: &str, line: &str, timeout: Duration) -> Result<Value, ControlError> {
    let rq = |source| ControlError::Request { addr: addr.to_string(), source };
    let sa =
        addr.to_socket_addrs().map_err(rq)?.next().ok_or_else(|| rq(std::io::ErrorKind::AddrNotAvailable.into()))?;
    let mut c = TcpStream::connect_timeout(&sa, timeout.min(Duration::from_secs(2))).map_err(rq)?;
    c.set_read_timeout(Some(timeout)).map_err(rq)?;
    c.write_all(format!("{line}\n").as_bytes()).map_err(rq)?;
    let mut reply = String::new();
    BufReader::new(c).read_line(&mut reply).map_err(rq)?;
    serde_json::from_str(&reply).map_err(|_| ControlError::BadReply { addr: addr.to_string(), reply })
}

/// One node's line in `ftctl status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeReport {
    pub id: u64,
    pub control_addr: Option<String>,
    /// leader / follower / candidate / precandidate / down / unknown (no control_addr)
    pub role: String,
    pub live: bool,
    pub term: Option<u64>,
    pub leader: Option<u64>,
    pub commit: Option<u64>,
    pub applied: Option<u64>,
    pub last_index: Option<u64>,
    /// Highest commit index seen among live nodes minus this node's applied index.
    pub lag: Option<u64>,
    pub voters: Vec<u64>,
    pub error: Option<String>,
    /// Set by `ftexec run`: its pid, what its program is doing (recording / replaying /
    /// starting), the events it has replayed or recorded, how many it is behind the leader, and
    /// for how long it has been behind.
    pub pid: Option<u64>,
    pub mode: Option<String>,
    pub events: Option<u64>,
    pub event_lag: Option<u64>,
    pub lag_ms: Option<u64>,
    /// The first entry of the node's log on disk and the log file's size.
    pub first_index: Option<u64>,
    pub log_bytes: Option<u64>,
    /// Set by `ftexec run`: the newest checkpoint the replica keeps (event, raft_index, bytes,
    /// age_s).
    pub checkpoint: Option<Value>,
}

/// Asks every node of the config for its status.
pub fn cluster_status(cfg: &crate::ClusterConfig, timeout: Duration) -> Vec<NodeReport> {
    let mut out: Vec<NodeReport> = cfg
        .nodes
        .iter()
        .map(|n| {
            let mut r = NodeReport {
                id: n.id,
                control_addr: n.control_addr.clone(),
                role: "unknown".into(),
                live: false,
                term: None,
                leader: None,
                commit: None,
                applied: None,
                last_index: None,
                lag: None,
                voters: vec![],
                error: None,
                pid: None,
                mode: None,
                events: None,
                event_lag: None,
                lag_ms: None,
                first_index: None,
                log_bytes: None,
                checkpoint: None,
            };
            let Some(ca) = &n.control_addr else {
                r.error = Some("no control_addr in the config".into());
                return r;
            };
            match request(ca, "status", timeout) {
                Ok(v) => {
                    let u = |k: &str| v.get(k).and_then(Value::as_u64);
                    r.live = v.get("live").and_then(Value::as_bool).unwrap_or(false);
                    r.role = match v.get("role").and_then(Value::as_str).unwrap_or("unknown") {
                        "precandidate" => "candidate".to_string(),
                        other => other.to_string(),
                    };
                    r.term = u("term");
                    r.leader = u("leader");
                    r.commit = u("commit");
                    r.applied = u("applied");
                    r.last_index = u("last_index");
                    r.pid = u("pid");
                    r.mode = v.get("mode").and_then(Value::as_str).map(str::to_owned);
                    r.events = u("events");
                    r.lag_ms = u("lag_ms");
                    r.first_index = u("first_index");
                    r.log_bytes = u("log_bytes");
                    r.checkpoint = v.get("checkpoint").filter(|c| !c.is_null()).cloned();
                    r.voters = v
                        .get("voters")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(Value::as_u64).collect())
                        .unwrap_or_default();
                }
                Err(e) => {
                    r.role = "down".into();
                    r.error = Some(e.to_string());
                }
            }
            r
        })
        .collect();
    let members: Option<Vec<u64>> = find_leader(&out).map(|l| l.voters.clone());
    if let Some(m) = members {
        for r in &mut out {
            if r.live && !m.contains(&r.id) && r.error.is_none() {
                r.error = Some("not a voter of the current configuration".into());
            }
        }
    }
    let top = out.iter().filter_map(|r| r.commit).max();
    let top_events = out.iter().filter_map(|r| r.events).max();
    for r in &mut out {
        if let (Some(t), Some(a)) = (top, r.applied) {
            r.lag = Some(t.saturating_sub(a));
        }
        if let (Some(t), Some(e)) = (top_events, r.events) {
            r.event_lag = Some(t.saturating_sub(e));
        }
    }
    out
}

/// The control address of the node that live nodes agree is leader (highest term wins).
pub fn find_leader(reports: &[NodeReport]) -> Option<&NodeReport> {
    reports.iter().filter(|r| r.live && r.role == "leader").max_by_key(|r| r.term)
}
