//! The library API used by replay/, on an in-process 3-node cluster (real TCP on loopback,
//! real disks): propose without waiting, await_commit, the committed stream, leader/term,
//! leadership notifications, NotLeader, group commit.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ft_consensus::config::{ClusterConfig, FsyncPolicy, NodeConfig};
use ft_consensus::{CommittedEntry, Node, NodeError, NodeOptions};

const T: Duration = Duration::from_secs(20);

fn cluster(name: &str) -> (ClusterConfig, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("ftapi-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = || TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let nodes = (1..=3)
        .map(|id| NodeConfig {
            id,
            raft_addr: format!("127.0.0.1:{}", port()),
            control_addr: None,
            data_dir: dir.join(format!("n{id}")),
            initial: true,
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
        fsync: FsyncPolicy::Always,
        nodes,
    };
    (cfg, dir)
}

fn wait_leader(nodes: &[Arc<Node>]) -> Arc<Node> {
    let t0 = Instant::now();
    loop {
        if let Some(l) = nodes.iter().find(|n| n.is_leader()) {
            // Every node knows it.
            if nodes.iter().all(|n| n.leader() == Some(l.id())) {
                return l.clone();
            }
        }
        assert!(t0.elapsed() < T, "no leader");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn collect(rx: &crossbeam_channel::Receiver<CommittedEntry>, batches: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while out.len() < batches {
        let e = rx.recv_timeout(T).expect("committed entry");
        out.extend(e.batches);
    }
    out
}

#[test]
fn propose_await_stream_and_leadership() {
    let (cfg, dir) = cluster("api");
    let nodes: Vec<Arc<Node>> =
        (1..=3).map(|id| Arc::new(Node::start(&cfg, id, NodeOptions::default()).unwrap())).collect();
    let streams: Vec<_> = nodes.iter().map(|n| n.take_committed().unwrap()).collect();
    assert!(nodes[0].take_committed().is_none(), "stream can be taken once");
    let subs: Vec<_> = nodes.iter().map(|n| n.subscribe_leadership()).collect();
    let leader = wait_leader(&nodes);
    let term = leader.term();
    assert!(term >= 2);

    // A follower refuses and names the leader.
    let f = nodes.iter().find(|n| n.id() != leader.id()).unwrap();
    match f.propose(b"nope".to_vec()) {
        Err(NodeError::NotLeader { leader: Some(l) }) => assert_eq!(l, leader.id()),
        other => panic!("expected NotLeader, got {other:?}"),
    }

    // Many proposals submitted together: group commit into few entries, order kept.
    let pending: Vec<_> = (0..500).map(|i| leader.submit(format!("b{i}").into_bytes()).unwrap()).collect();
    let idx: Vec<u64> = pending.into_iter().map(|p| p.wait().unwrap()).collect();
    assert!(idx.windows(2).all(|w| w[0] <= w[1]), "indexes are monotonic");
    let last = *idx.last().unwrap();
    leader.await_commit(last, Some(T)).unwrap();
    let mut distinct = idx.clone();
    distinct.dedup();
    assert!(distinct.len() < 500, "500 proposals became {} entries", distinct.len());
    let expect: Vec<Vec<u8>> = (0..500).map(|i| format!("b{i}").into_bytes()).collect();
    for s in &streams {
        assert_eq!(collect(s, 500), expect);
    }

    // Leadership notifications: stop the leader, the others announce a new one.
    let old = leader.id();
    for s in &subs {
        while s.try_recv().is_ok() {}
    }
    leader.shutdown();
    let t0 = Instant::now();
    let mut seen = None;
    'outer: while t0.elapsed() < T {
        for (i, s) in subs.iter().enumerate() {
            if nodes[i].id() == old {
                continue;
            }
            if let Ok(ch) = s.recv_timeout(Duration::from_millis(10)) {
                if let Some(l) = ch.leader.filter(|&l| l != old) {
                    assert!(ch.term > term);
                    seen = Some(l);
                    break 'outer;
                }
            }
        }
    }
    let new = seen.expect("a leadership change to a new leader");
    let new_node = nodes.iter().find(|n| n.id() == new).unwrap();
    let t0 = Instant::now();
    while !new_node.is_leader() {
        assert!(t0.elapsed() < T);
        std::thread::sleep(Duration::from_millis(5));
    }
    let i = new_node.propose(b"after".to_vec()).unwrap();
    new_node.await_commit(i, Some(T)).unwrap();
    // The stopped node's API reports it.
    assert!(matches!(leader.propose(b"x".to_vec()), Err(NodeError::Stopped(_))));
    drop(nodes);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn restarted_node_redelivers_the_log_from_the_start() {
    let (cfg, dir) = cluster("redeliver");
    let mut nodes: Vec<Arc<Node>> =
        (1..=3).map(|id| Arc::new(Node::start(&cfg, id, NodeOptions::default()).unwrap())).collect();
    let leader = wait_leader(&nodes);
    let mut last = 0;
    for i in 0..20 {
        last = leader.propose(format!("e{i}").into_bytes()).unwrap();
    }
    leader.await_commit(last, Some(T)).unwrap();
    let victim = nodes.iter().position(|n| n.id() != leader.id()).unwrap();
    let vid = nodes[victim].id();
    nodes[victim].await_commit(last, Some(T)).unwrap();
    nodes[victim].shutdown();
    nodes[victim] = Arc::new(Node::start(&cfg, vid, NodeOptions::default()).unwrap());
    let rx = nodes[victim].take_committed().unwrap();
    let got = collect(&rx, 20);
    let expect: Vec<Vec<u8>> = (0..20).map(|i| format!("e{i}").into_bytes()).collect();
    assert_eq!(got, expect);
    drop(nodes);
    let _ = std::fs::remove_dir_all(dir);
}

/// A snapshot the leader sends is lost (as when the peer restarts or its connection drops):
/// the leader sends it again instead of keeping that peer paused, waiting for a reply that
/// never comes, forever. (It did: a replica added to a compacted cluster waited for entries.)
#[test]
fn a_lost_snapshot_is_sent_again() {
    let (cfg, dir) = cluster("lostsnap");
    let mut nodes: Vec<Arc<Node>> =
        (1..=3).map(|id| Arc::new(Node::start(&cfg, id, NodeOptions::default()).unwrap())).collect();
    let leader = wait_leader(&nodes);
    let victim = nodes.iter().position(|n| n.id() != leader.id()).unwrap();
    let vid = nodes[victim].id();
    nodes[victim].shutdown();
    let mut last = 0;
    for i in 0..30 {
        last = leader.propose(format!("e{i}").into_bytes()).unwrap();
    }
    // The live nodes drop what they applied: the victim can only catch up from a snapshot.
    for n in nodes.iter().filter(|n| n.id() != vid) {
        n.await_commit(last, Some(T)).unwrap();
        let t0 = Instant::now();
        while n.first_index() < last {
            n.compact(last).unwrap();
            assert!(t0.elapsed() < T, "node {} did not compact to {last}: first index {}", n.id(), n.first_index());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    leader.faults().lose_snapshots(true);
    nodes[victim] = Arc::new(Node::start(&cfg, vid, NodeOptions::default()).unwrap());
    let rx = nodes[victim].take_committed().unwrap();
    let t0 = Instant::now();
    while leader.faults().snapshots_lost() == 0 {
        assert!(t0.elapsed() < T, "the leader sent the restarted node no snapshot");
        std::thread::sleep(Duration::from_millis(10));
    }
    leader.faults().lose_snapshots(false);
    let more = leader.propose(b"after".to_vec()).unwrap();
    let mut got = Vec::new();
    let mut snapshot_at = None;
    while !got.iter().any(|b: &Vec<u8>| b == b"after") {
        let e = rx.recv_timeout(T).unwrap_or_else(|_| {
            panic!("the restarted node got nothing more (snapshot at {snapshot_at:?}, got {got:?})")
        });
        if e.snapshot {
            snapshot_at = Some(e.index);
        }
        got.extend(e.batches);
    }
    assert!(snapshot_at.is_some_and(|i| i + 1 >= last), "no snapshot through {last}: {snapshot_at:?}");
    nodes[victim].await_commit(more, Some(T)).unwrap();
    drop(nodes);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn oversized_proposal_is_refused() {
    let (cfg, dir) = cluster("big");
    let n = Node::start(&cfg, 1, NodeOptions::default()).unwrap();
    match n.propose(vec![0u8; ft_consensus::node::MAX_PROPOSAL + 1]) {
        Err(NodeError::TooLarge { size, max }) => assert!(size > max),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    drop(n);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn proposal_of_a_cut_off_leader_is_reported_dropped() {
    let (cfg, dir) = cluster("dropped");
    let nodes: Vec<Arc<Node>> =
        (1..=3).map(|id| Arc::new(Node::start(&cfg, id, NodeOptions::default()).unwrap())).collect();
    let old = wait_leader(&nodes);
    let i = old.propose(b"ok".to_vec()).unwrap();
    old.await_commit(i, Some(T)).unwrap();
    // Cut the leader off, then propose on it: appended locally, never committed.
    old.faults().set_isolated(true);
    let lost = old.propose_entry(b"lost".to_vec()).unwrap();
    assert!(matches!(old.await_entry(lost, Some(Duration::from_millis(50))), Err(NodeError::Timeout { .. })));
    // The others elect a leader and commit past that index.
    let others: Vec<Arc<Node>> = nodes.iter().filter(|n| n.id() != old.id()).cloned().collect();
    let new = wait_leader(&others);
    let mut last = 0;
    for k in 0..5 {
        last = new.propose(format!("new{k}").into_bytes()).unwrap();
    }
    new.await_commit(last, Some(T)).unwrap();
    assert!(last >= lost.index);
    old.faults().set_isolated(false);
    // The old leader learns the new entries; its own at `lost.index` was overwritten.
    match old.await_entry(lost, Some(T)) {
        Err(NodeError::Dropped { index }) => assert_eq!(index, lost.index),
        other => panic!("expected Dropped, got {other:?}"),
    }
    assert!(matches!(old.await_commit(lost.index, Some(T)), Err(NodeError::Dropped { .. })));
    // Entries that did commit are reported as such everywhere.
    for n in &nodes {
        n.await_commit(last, Some(T)).unwrap();
    }
    drop(nodes);
    let _ = std::fs::remove_dir_all(dir);
}
