//! Random kills, restarts and partitions of a 5-node cluster of processes, with a sequential
//! client committing batches throughout. Afterwards: every pair of committed logs agrees on
//! their common prefix, every acknowledged batch is committed exactly once and in
//! acknowledgement order (a register/counter built on the log is linearizable).
//!
//! The seed is printed; rerun one with `FT_RAFT_SEED=<seed>`. `FT_RAFT_OPS` changes the
//! number of operations (default 300).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{assert_acked_in_order, assert_prefixes_agree, Cluster};
use ft_consensus::FsyncPolicy;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick(&mut self, v: &[u64]) -> Option<u64> {
        (!v.is_empty()).then(|| v[self.below(v.len() as u64) as usize])
    }
}

#[test]
fn random_kills_restarts_partitions() {
    let seed: u64 = std::env::var("FT_RAFT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1) | 1
    });
    let ops: u64 = std::env::var("FT_RAFT_OPS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    eprintln!("randomized raft test: seed {seed} ({ops} ops); rerun with FT_RAFT_SEED={seed}");
    let mut rng = Rng(seed);
    let mut c = Cluster::new("random", 5, 0, FsyncPolicy::Always);
    c.start_all();
    c.wait_leader(Duration::from_secs(20));
    let client = c.client();
    let all = c.initial_ids();
    let mut down: BTreeSet<u64> = BTreeSet::new();
    let mut isolated: BTreeSet<u64> = BTreeSet::new();
    let mut acked: Vec<String> = Vec::new();
    let (mut kills, mut restarts, mut cuts, mut heals, mut commits) = (0, 0, 0, 0, 0);
    for op in 0..ops {
        let up: Vec<u64> = all.iter().copied().filter(|i| !down.contains(i) && !isolated.contains(i)).collect();
        let budget_left = down.len() + isolated.len() < 2;
        let r = rng.below(100);
        if r < 60 {
            let n = 1 + rng.below(20);
            if let Some(t) = client.commit_batch(&format!("r{op}"), n, 1500) {
                acked.extend(t);
                commits += 1;
            } else {
                std::thread::sleep(Duration::from_millis(20));
            }
        } else if r < 70 {
            if budget_left {
                if let Some(v) = rng.pick(&up) {
                    c.kill(v);
                    down.insert(v);
                    kills += 1;
                }
            }
        } else if r < 82 {
            let d: Vec<u64> = down.iter().copied().collect();
            if let Some(v) = rng.pick(&d) {
                c.start(v);
                down.remove(&v);
                restarts += 1;
            }
        } else if r < 91 {
            if budget_left {
                if let Some(v) = rng.pick(&up) {
                    c.isolate(v, true);
                    isolated.insert(v);
                    cuts += 1;
                }
            }
        } else {
            let iso: Vec<u64> = isolated.iter().copied().collect();
            if let Some(v) = rng.pick(&iso) {
                c.isolate(v, false);
                isolated.remove(&v);
                heals += 1;
            }
        }
        if op % 50 == 49 {
            let logs: Vec<_> = c.running().into_iter().map(|i| (i, c.applied(i))).collect();
            assert_prefixes_agree(&logs);
        }
    }
    eprintln!(
        "seed {seed}: {commits} committed batches ({} proposals), {kills} kills, \
         {restarts} restarts, {cuts} partitions, {heals} heals",
        acked.len()
    );
    for v in isolated.clone() {
        c.isolate(v, false);
    }
    for v in down.clone() {
        c.start(v);
    }
    c.wait_leader(Duration::from_secs(30));
    // One more commit so every node's commit index reaches the end of the log.
    c.propose_committed("final", Duration::from_secs(30));
    c.wait_converged(&all, Duration::from_secs(30));
    let log = c.assert_identical(&all);
    assert_acked_in_order(&log, &acked);
    assert!(commits > 0, "seed {seed}: nothing committed at all");
}
