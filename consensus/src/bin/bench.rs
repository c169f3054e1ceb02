//! `ft-raft-bench`: commit latency and throughput of a 3-node cluster on loopback.
//!
//! Three nodes run in this process, each with its own real TCP transport on 127.0.0.1 and its
//! own data directory on disk. For every case (fsync always/never × 64 B/4 KiB × 1/64 in
//! flight), one client keeps `inflight` proposals outstanding on the leader (`submit`, then
//! `await_commit` in order) for `--seconds`; latency is measured from `submit` to the return
//! of `await_commit`.
//! The last line is `raft: commit_p50_us=N commit_p99_us=N entries_per_s=N` for
//! fsync never, 64 B, 64 in flight.
//!
//! Options: `--seconds S` (default 3), `--dir DIR` (default: a directory under the system
//! temporary directory), `--quick` (only the headline case).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ft_consensus::config::{ClusterConfig, FsyncPolicy, NodeConfig};
use ft_consensus::{Node, NodeOptions};

struct CaseResult {
    proposals: u64,
    secs: f64,
    p50_us: u64,
    p99_us: u64,
    raft_entries: u64,
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn run_case(
    dir: &std::path::Path,
    fsync: FsyncPolicy,
    size: usize,
    inflight: usize,
    dur: Duration,
) -> Result<CaseResult, String> {
    let _ = std::fs::remove_dir_all(dir);
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        nodes.push(NodeConfig {
            id,
            raft_addr: format!("127.0.0.1:{}", free_port()?),
            control_addr: None,
            data_dir: dir.join(format!("node{id}")),
            initial: true,
            service_dir: None,
        });
    }
    let cfg = ClusterConfig {
        service: None,
        snapshot: Default::default(),
        cluster_name: "bench".into(),
        tick_ms: 10,
        election_ticks: 20,
        heartbeat_ticks: 2,
        fsync,
        nodes,
    };
    let mut running = Vec::new();
    for id in 1..=3u64 {
        let n = Node::start(&cfg, id, NodeOptions::default()).map_err(|e| e.to_string())?;
        // Nobody consumes the committed stream here; dropping it makes delivery a no-op.
        drop(n.take_committed());
        running.push(Arc::new(n));
    }
    let t0 = Instant::now();
    let leader = loop {
        if let Some(l) = running.iter().find(|n| n.is_leader()) {
            break l.clone();
        }
        if t0.elapsed() > Duration::from_secs(10) {
            return Err("no leader elected within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let first_index = leader.status().last_index;
    let payload = vec![0x5au8; size];
    let warmup = Duration::from_millis(300);
    let start = Instant::now() + warmup;
    let end = start + dur;
    // One pipelined client keeps `inflight` proposals outstanding (the way a recorder uses
    // the log: propose without waiting, await commits in order).
    let mut lat: Vec<u64> = Vec::with_capacity(1 << 20);
    let mut queue = std::collections::VecDeque::with_capacity(inflight);
    loop {
        let now = Instant::now();
        if now >= end && queue.is_empty() {
            break;
        }
        if now < end && queue.len() < inflight {
            match leader.submit(payload.clone()) {
                Ok(p) => queue.push_back((now, p)),
                Err(e) => return Err(format!("submit: {e}")),
            }
            continue;
        }
        let Some((t, p)) = queue.pop_front() else { continue };
        let ok = p.wait().and_then(|i| leader.await_commit(i, Some(Duration::from_secs(5)))).is_ok();
        if ok && t >= start && t < end {
            lat.push(t.elapsed().as_micros() as u64);
        }
    }
    let raft_entries = leader.status().last_index.saturating_sub(first_index);
    for n in &running {
        n.shutdown();
    }
    drop(running);
    let _ = std::fs::remove_dir_all(dir);
    if lat.is_empty() {
        return Err("nothing committed".into());
    }
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    Ok(CaseResult {
        proposals: lat.len() as u64,
        secs: dur.as_secs_f64(),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        raft_entries,
    })
}

fn main() -> ExitCode {
    let mut secs = 3.0f64;
    let mut dir: Option<PathBuf> = None;
    let mut quick = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => secs = args.next().and_then(|s| s.parse().ok()).unwrap_or(secs),
            "--dir" => dir = args.next().map(PathBuf::from),
            "--quick" => quick = true,
            other => {
                eprintln!("ft-raft-bench: unknown argument `{other}`");
                return ExitCode::from(2);
            }
        }
    }
    let base = dir.unwrap_or_else(|| std::env::temp_dir().join(format!("ft-raft-bench-{}", std::process::id())));
    let dur = Duration::from_secs_f64(secs);
    let mut cases = Vec::new();
    if !quick {
        for fsync in [FsyncPolicy::Always, FsyncPolicy::Never] {
            for size in [64usize, 4096] {
                for inflight in [1usize, 64] {
                    cases.push((fsync, size, inflight));
                }
            }
        }
    }
    cases.retain(|c| *c != (FsyncPolicy::Never, 64, 64));
    cases.push((FsyncPolicy::Never, 64, 64));
    println!("3 nodes on 127.0.0.1, {secs} s per case, data under {}", base.display());
    println!(
        "{:<7} {:>6} {:>9} {:>11} {:>13} {:>9} {:>9} {:>13}",
        "fsync", "bytes", "inflight", "committed", "entries/s", "p50_us", "p99_us", "raft_entries"
    );
    let mut headline = None;
    for (i, (fsync, size, inflight)) in cases.iter().enumerate() {
        let d = base.join(format!("case{i}"));
        match run_case(&d, *fsync, *size, *inflight, dur) {
            Ok(r) => {
                let eps = (r.proposals as f64 / r.secs) as u64;
                println!(
                    "{:<7} {:>6} {:>9} {:>11} {:>13} {:>9} {:>9} {:>13}",
                    format!("{fsync:?}").to_lowercase(),
                    size,
                    inflight,
                    r.proposals,
                    eps,
                    r.p50_us,
                    r.p99_us,
                    r.raft_entries
                );
                headline = Some((r.p50_us, r.p99_us, eps));
            }
            Err(e) => {
                eprintln!("ft-raft-bench: case {fsync:?}/{size}/{inflight} failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&base);
    match headline {
        Some((p50, p99, eps)) => {
            println!("raft: commit_p50_us={p50} commit_p99_us={p99} entries_per_s={eps}");
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}
