//! `ftctl` against a live in-process cluster (real TCP, real disks): status, add-node,
//! remove-node, check-config.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ft_consensus::config::{ClusterConfig, FsyncPolicy, NodeConfig};
use ft_consensus::{control, Node, NodeOptions};
use serde_json::Value;

const FTCTL: &str = env!("CARGO_BIN_EXE_ftctl");

fn port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn ftctl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(FTCTL).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn start(cfg: &ClusterConfig, id: u64) -> Arc<Node> {
    let n = Arc::new(Node::start(cfg, id, NodeOptions::default()).unwrap());
    let ca = cfg.node(id).unwrap().control_addr.clone().unwrap();
    control::serve(n.clone(), &ca, false, slog::Logger::root(slog::Discard, slog::o!())).unwrap();
    n
}

fn status_json(cfg_path: &str) -> Vec<Value> {
    let (ok, out, err) = ftctl(&["status", "--config", cfg_path, "--json"]);
    assert!(ok, "{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    doc["nodes"].as_array().cloned().unwrap_or_else(|| panic!("no `nodes` array in {out}"))
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn status_add_remove_and_check_config() {
    let dir = std::env::temp_dir().join(format!("ftctl-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = ClusterConfig {
        service: None,
        snapshot: Default::default(),
        cluster_name: "cli".into(),
        tick_ms: 10,
        election_ticks: 20,
        heartbeat_ticks: 2,
        fsync: FsyncPolicy::Never,
        nodes: (1..=4)
            .map(|id| NodeConfig {
                id,
                raft_addr: format!("127.0.0.1:{}", port()),
                control_addr: Some(format!("127.0.0.1:{}", port())),
                data_dir: dir.join(format!("n{id}")),
                initial: id <= 3,
                service_dir: None,
            })
            .collect(),
    };
    let cfg_path = dir.join("cluster.toml");
    std::fs::write(&cfg_path, cfg.to_toml()).unwrap();
    let cp = cfg_path.to_str().unwrap();

    let mut nodes: Vec<Arc<Node>> = (1..=3).map(|id| start(&cfg, id)).collect();
    wait_until("a leader", || nodes.iter().any(|n| n.is_leader()));
    let leader = nodes.iter().find(|n| n.is_leader()).unwrap().clone();
    let i = leader.propose(b"x".to_vec()).unwrap();
    leader.await_commit(i, Some(Duration::from_secs(10))).unwrap();

    wait_until("status with 3 live nodes and node 4 down", || {
        let s = status_json(cp);
        s.len() == 4
            && s[..3].iter().all(|r| r["live"] == true && r["commit"].as_u64() >= Some(i))
            && s.iter().filter(|r| r["role"] == "leader").count() == 1
            && s[3]["role"] == "down"
            && s[3]["live"] == false
    });
    let (ok, table, _) = ftctl(&["status", "--config", cp]);
    assert!(ok);
    assert!(table.contains("leader") && table.contains("down"), "{table}");
    assert!(table.lines().next().unwrap_or("").contains("cli"), "{table}");

    // Add node 4 (joins empty), then it catches up.
    nodes.push(start(&cfg, 4));
    let (ok, out, err) = ftctl(&["add-node", "--config", cp, "--id", "4"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("proposed `add-node 4"), "{out}");
    wait_until("node 4 caught up as a voter", || {
        let s = status_json(cp);
        s.iter().all(|r| r["live"] == true)
            && s[3]["role"] == "follower"
            && s[3]["lag"].as_u64() == Some(0)
            && s[3]["voters"] == serde_json::json!([1, 2, 3, 4])
    });

    // Remove it again.
    let (ok, out, err) = ftctl(&["remove-node", "--config", cp, "--id", "4"]);
    assert!(ok, "{out}{err}");
    wait_until("node 4 removed", || {
        let s = status_json(cp);
        s.iter().find(|r| r["role"] == "leader").is_some_and(|l| l["voters"] == serde_json::json!([1, 2, 3]))
    });

    // A broken config is refused with the field named.
    let bad = dir.join("bad.toml");
    let text = std::fs::read_to_string(&cfg_path).unwrap().replacen("id = 2", "id = 1", 1);
    std::fs::write(&bad, text).unwrap();
    let (ok, _, err) = ftctl(&["check-config", "--config", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("node[1].id") && err.contains("duplicate"), "{err}");
    let (ok, out, _) = ftctl(&["check-config", "--config", cp]);
    assert!(ok && out.contains("4 nodes"), "{out}");

    for n in &nodes {
        n.shutdown();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
