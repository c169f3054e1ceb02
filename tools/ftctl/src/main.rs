//! ftctl: inspect and change an ftexec Raft cluster.
//!
//! - `ftctl status --config FILE [--json]`
//! - `ftctl add-node --config FILE --id N [--addr IP:PORT]`
//! - `ftctl remove-node --config FILE --id N`
//! - `ftctl serve --config FILE --id N [--join]`  (run one node in the foreground)
//! - `ftctl check-config --config FILE`
//! - `ftctl fault --config FILE --node N isolate|heal`  (hidden; tests: partition a node that
//!   runs in test mode or under `ftexec run` with `FTEXEC_FAULT_INJECTION=1`)

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ft_consensus::control::{cluster_status, find_leader, request, NodeReport};
use ft_consensus::ClusterConfig;

#[derive(Parser)]
#[command(name = "ftctl", about = "Inspect and change an ftexec Raft cluster")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print every node's role, term, commit and applied index, and lag.
    Status {
        #[arg(long)]
        config: PathBuf,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Per-node timeout in milliseconds.
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
    },
    /// Add a node as a voter (a conf change proposed to the leader). Start the new node with
    /// `ftctl serve --join` first; its entry must be in the config file or given with --addr.
    AddNode {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        id: u64,
        /// Raft address of the new node (default: from the config file).
        #[arg(long)]
        addr: Option<String>,
    },
    /// Remove a node (a conf change proposed to the leader).
    RemoveNode {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        id: u64,
    },
    /// Hand leadership to voter ID (like `etcdctl move-leader`): the leader brings it up to
    /// date and it campaigns at once. Waits until ID leads or the timeout passes.
    MoveLeader {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        to: u64,
        /// How long to wait for ID to lead, in milliseconds.
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
    },
    /// Run one node in the foreground.
    Serve {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        id: u64,
        /// Start empty and wait to be added with `ftctl add-node`.
        #[arg(long)]
        join: bool,
        #[arg(long, hide = true)]
        test_mode: bool,
    },
    /// Validate a config file.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
    /// Fault injection, for tests: `isolate` drops every Raft message to and from node N (a
    /// network partition), `heal` ends that. The node must run in test mode, or under
    /// `ftexec run` with FTEXEC_FAULT_INJECTION=1.
    #[command(hide = true)]
    Fault {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        node: u64,
        #[arg(value_parser = ["isolate", "heal"])]
        action: String,
    },
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |x| x.to_string())
}

fn print_table(rs: &[NodeReport]) {
    println!(
        "{:>4}  {:<12} {:>8} {:>6} {:>7} {:>10} {:>10} {:>8}  {:<10} {:>10} {:>9} {:>8}  {:<5} {:>9}  {:<28}  note",
        "id",
        "role",
        "pid",
        "term",
        "leader",
        "commit",
        "applied",
        "lag",
        "program",
        "events",
        "behind",
        "lag_ms",
        "live",
        "log_KiB",
        "snapshot (event, KiB, age)"
    );
    for r in rs {
        println!(
            "{:>4}  {:<12} {:>8} {:>6} {:>7} {:>10} {:>10} {:>8}  {:<10} {:>10} {:>9} {:>8}  {:<5} {:>9}  {:<28}  {}",
            r.id,
            r.role,
            opt(r.pid),
            opt(r.term),
            opt(r.leader),
            opt(r.commit),
            opt(r.applied),
            opt(r.lag),
            r.mode.clone().unwrap_or_else(|| "-".into()),
            opt(r.events),
            opt(r.event_lag),
            opt(r.lag_ms),
            if r.live { "yes" } else { "no" },
            opt(r.log_bytes.map(|b| b.div_ceil(1024))),
            r.checkpoint.as_ref().map_or_else(
                || "-".to_string(),
                |c| format!(
                    "{}, {}, {}s",
                    c["event"].as_u64().unwrap_or(0),
                    c["bytes"].as_u64().unwrap_or(0).div_ceil(1024),
                    c["age_s"].as_u64().unwrap_or(0)
                )
            ),
            r.error.clone().unwrap_or_default()
        );
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Status { config, json, timeout_ms } => {
            let cfg = ClusterConfig::load(&config).map_err(|e| e.to_string())?;
            let rs = cluster_status(&cfg, Duration::from_millis(timeout_ms));
            if json {
                let doc = serde_json::json!({"cluster": cfg.cluster_name, "nodes": rs});
                println!("{}", serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?);
            } else {
                println!("cluster {}", cfg.cluster_name);
                print_table(&rs);
            }
            Ok(())
        }
        Cmd::AddNode { config, id, addr } => {
            let cfg = ClusterConfig::load(&config).map_err(|e| e.to_string())?;
            let addr = match addr {
                Some(a) => a,
                None => cfg.node(id).map_err(|e| format!("{e}; or pass --addr"))?.raft_addr.clone(),
            };
            conf_change(&cfg, &format!("add-node {id} {addr}"))
        }
        Cmd::RemoveNode { config, id } => {
            let cfg = ClusterConfig::load(&config).map_err(|e| e.to_string())?;
            conf_change(&cfg, &format!("remove-node {id}"))
        }
        Cmd::MoveLeader { config, to, timeout_ms } => {
            let cfg = ClusterConfig::load(&config).map_err(|e| e.to_string())?;
            cfg.node(to).map_err(|e| e.to_string())?;
            let t0 = std::time::Instant::now();
            let timeout = Duration::from_millis(timeout_ms);
            // raft-rs abandons a transfer the transferee does not win within an election
            // timeout: ask again after a while.
            let mut asked: Option<std::time::Instant> = None;
            loop {
                let rs = cluster_status(&cfg, Duration::from_secs(1));
                match find_leader(&rs) {
                    Some(l) if l.id == to => {
                        println!("node {to} leads");
                        return Ok(());
                    }
                    Some(l) if asked.is_none_or(|a| a.elapsed() > Duration::from_secs(2)) => {
                        let ca = l.control_addr.clone().ok_or("the leader has no control_addr")?;
                        let v = request(&ca, &format!("transfer-leader {to}"), Duration::from_secs(5))
                            .map_err(|e| e.to_string())?;
                        if v.get("ok").and_then(|b| b.as_bool()) != Some(true) {
                            return Err(format!(
                                "leader {} refused to hand leadership to {to}: {}",
                                l.id,
                                v.get("error").cloned().unwrap_or_default()
                            ));
                        }
                        asked = Some(std::time::Instant::now());
                    }
                    _ => {}
                }
                if t0.elapsed() > timeout {
                    return Err(format!(
                        "node {to} did not become leader within {timeout_ms} ms (it must be a live voter that is up to date; see `ftctl status`)"
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Cmd::Serve { config, id, join, test_mode } => ft_consensus::serve::serve(ft_consensus::serve::ServeOptions {
            config,
            id,
            join,
            test_mode,
            log_level: slog::Level::Info,
        })
        .map_err(|e| e.to_string()),
        Cmd::Fault { config, node, action } => {
            let cfg = ClusterConfig::load(&config).map_err(|e| e.to_string())?;
            let ca = cfg
                .node(node)
                .map_err(|e| e.to_string())?
                .control_addr
                .clone()
                .ok_or_else(|| format!("node {node} has no control_addr in {}", config.display()))?;
            let line = if action == "isolate" { "isolate on" } else { "isolate off" };
            let v = request(&ca, line, Duration::from_secs(5)).map_err(|e| e.to_string())?;
            if v.get("ok").and_then(|b| b.as_bool()) == Some(true) {
                println!("node {node}: {}", if action == "isolate" { "isolated" } else { "healed" });
                Ok(())
            } else {
                Err(format!(
                    "node {node} refused `{action}`: {}",
                    v.get("error").and_then(|e| e.as_str()).unwrap_or("no reason given")
                ))
            }
        }
        Cmd::CheckConfig { config } => {
            let cfg = ClusterConfig::load(&config).map_err(|e| e.to_string())?;
            println!("{}: ok, cluster `{}`, {} nodes", config.display(), cfg.cluster_name, cfg.nodes.len());
            Ok(())
        }
    }
}

fn conf_change(cfg: &ClusterConfig, line: &str) -> Result<(), String> {
    let rs = cluster_status(cfg, Duration::from_secs(1));
    let leader = find_leader(&rs).ok_or("no live leader found (see `ftctl status`)")?;
    let ca = leader.control_addr.clone().ok_or("leader has no control_addr")?;
    let v = request(&ca, line, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    if v.get("ok").and_then(|b| b.as_bool()) == Some(true) {
        println!("proposed `{line}` on leader {} at index {}", leader.id, v.get("index").cloned().unwrap_or_default());
        Ok(())
    } else {
        Err(format!("leader {} refused `{line}`: {}", leader.id, v.get("error").cloned().unwrap_or_default()))
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ftctl: error: {e}");
            ExitCode::FAILURE
        }
    }
}
