//! Disk faults on real node processes: a corrupt last record, a truncated log file, an
//! unusable data directory, a data directory already in use.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{assert_acked_in_order, corrupt_last_byte, Cluster};
use ft_consensus::FsyncPolicy;

const T: Duration = Duration::from_secs(20);

#[test]
fn corrupt_and_truncated_tails_are_cut_and_the_node_catches_up() {
    let mut c = Cluster::new("tails", 3, 0, FsyncPolicy::Always);
    c.start_all();
    c.wait_leader(T);
    let client = c.client();
    let mut acked = Vec::new();
    for k in 0..10 {
        if let Some(t) = client.commit_batch(&format!("d{k}"), 50, 3000) {
            acked.extend(t);
        }
    }
    assert!(acked.len() >= 400, "only {} committed", acked.len());
    let all = c.initial_ids();
    c.wait_converged(&all, T);
    for id in &all {
        c.kill(*id);
    }
    // Node 1: flip a byte of the last record. Node 2: cut the file in the middle of a record.
    corrupt_last_byte(&c.data_dir(1).join("raft.log"));
    let p2 = c.data_dir(2).join("raft.log");
    let len = std::fs::metadata(&p2).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&p2).unwrap().set_len(len - 5).unwrap();
    c.start_all();
    c.wait_leader(T);
    let e1 = c.stderr(1);
    assert!(e1.contains("torn or corrupt tail") && e1.contains("checksum mismatch"), "{e1}");
    let e2 = c.stderr(2);
    assert!(e2.contains("torn or corrupt tail") && e2.contains("torn record"), "{e2}");
    c.propose_committed("after-repair", T);
    c.wait_converged(&all, T);
    let log = c.assert_identical(&all);
    assert_acked_in_order(&log, &acked);
}

#[test]
fn unusable_data_dir_is_a_clear_error_naming_the_field() {
    let mut c = Cluster::new("baddir", 3, 0, FsyncPolicy::Always);
    // A data_dir whose parent is a regular file cannot be created (even by root).
    let file = c.dir.join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    c.cfg.nodes[0].data_dir = file.join("node1");
    c.rewrite_config();
    let (ok, err) = c.run_to_exit(1);
    assert!(!ok, "node started on an unusable data dir");
    assert!(err.contains("node[0].data_dir"), "{err}");
    assert!(err.contains("create data directory"), "{err}");
}

#[test]
fn data_dir_in_use_is_refused() {
    let mut c = Cluster::new("inuse", 3, 0, FsyncPolicy::Always);
    c.start(1);
    let (ok, err) = c.run_to_exit(1);
    assert!(!ok);
    assert!(err.contains("locked by another process"), "{err}");
}

#[test]
fn bad_config_is_a_clear_error() {
    let c = Cluster::new("badcfg", 3, 0, FsyncPolicy::Always);
    let text = std::fs::read_to_string(&c.cfg_path).unwrap();
    // Make node 2's id collide with node 1's.
    let broken = text.replacen("id = 2", "id = 1", 1);
    std::fs::write(&c.cfg_path, broken).unwrap();
    let (ok, err) = c.run_to_exit(1);
    assert!(!ok);
    assert!(err.contains("node[1].id") && err.contains("duplicate"), "{err}");
    // Unknown node.
    std::fs::write(&c.cfg_path, &text).unwrap();
    let (ok, err) = c.run_to_exit(9);
    assert!(!ok);
    assert!(err.contains("no node with id 9"), "{err}");
    let _ = PathBuf::new();
}

#[test]
fn leader_whose_disk_fails_stops_with_a_clear_error_and_the_rest_continues() {
    let mut c = Cluster::new("diskfail", 3, 0, FsyncPolicy::Always);
    c.start_all();
    let l = c.wait_leader(T);
    c.propose_committed("before", T);
    let v = c.cmd(l, "fail-disk on").unwrap();
    assert_eq!(v["ok"], true, "{v}");
    // The next write on the leader fails; the process exits with the error.
    let _ = c.propose(l, "doomed");
    let status = c.wait_exit(l, T);
    assert!(!status.success(), "exited with {status}");
    let err = c.stderr(l);
    eprintln!("{}", common::tail(&err, 400));
    assert!(err.contains("injected disk failure"), "{err}");
    assert!(err.contains(&format!("node[{}].data_dir", l - 1)), "{err}");
    // The other two elect a leader and commit.
    let new = c.wait_leader(T);
    assert_ne!(new, l);
    c.propose_committed("after", T);
    let rest: Vec<u64> = c.running();
    c.wait_converged(&rest, T);
    let log = c.assert_identical(&rest);
    let texts = common::texts(&log);
    assert!(texts.contains(&"before".to_string()) && texts.contains(&"after".to_string()));
}
