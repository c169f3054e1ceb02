//! Checkpoints shared between the replicas, and the log compaction they allow.
//!
//! Followers take the checkpoints (the leader never pauses for one). Every replica serves its
//! checkpoints on its control endpoint (`checkpoints`, `checkpoint-chunk NAME OFFSET`). Each
//! follower drops the Raft log before the newest checkpoint it keeps. The leader, which takes
//! none, drops the log before the newest checkpoint that a majority of the cluster holds (it
//! asks its peers every second; see [`compact`]): any majority that survives then has a replica
//! with that state, which a lagging, restarted or new replica fetches. Only when its peers do not
//! make such a majority (one is down) does the leader fetch checkpoints itself. A replica whose
//! log no longer reaches back far enough (it was down while the others compacted; raft-rs sent
//! it a snapshot) fetches a checkpoint from a peer and restores that.

use ft_consensus::control::{request, CommandHook};
use ft_consensus::{ClusterConfig, Node};
use serde_json::{json, Value};
use slog::{info, warn, Logger};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes per `checkpoint-chunk` reply (hex: twice this on the wire).
const CHUNK: usize = 1 << 20;
/// How often a leader whose peers do not hold a majority of checkpoints fetches a newer one
/// (fetching costs the leader CPU).
const FETCH_EVERY: Duration = Duration::from_secs(10);

/// (file name, event, raft index, bytes) of each checkpoint in `dir`, newest first.
pub fn list(dir: &Path) -> Vec<(String, u64, u64, u64)> {
    let mut v: Vec<(String, u64, u64, u64)> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "ftckpt"))
        .filter_map(|p| {
            let head = ft_replay::replay::read_checkpoint_head(&p).ok()?;
            let bytes = std::fs::metadata(&p).ok()?.len();
            Some((p.file_name()?.to_str()?.to_string(), head.event, head.raft_index, bytes))
        })
        .filter(|c| c.2 > 0)
        .collect();
    v.sort_by_key(|c| std::cmp::Reverse(c.2));
    v
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(HEX[usize::from(x >> 4)] as char);
        s.push(HEX[usize::from(x & 15)] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks_exact(2).map(|p| Some(digit(p[0])? << 4 | digit(p[1])?)).collect()
}

/// The control commands a replica serves about its checkpoints.
pub fn commands(dir: PathBuf) -> CommandHook {
    Arc::new(move |cmd: &str, args: &[&str]| -> Option<Value> {
        match cmd {
            "checkpoints" => {
                // Listed only once durable: the leader drops its log on the strength of them.
                let l: Vec<Value> = list(&dir)
                    .into_iter()
                    .filter(|c| ft_libos::snapshot::sync(&dir.join(&c.0)).is_ok())
                    .map(|(name, event, raft_index, bytes)| {
                        json!({"name": name, "event": event, "raft_index": raft_index, "bytes": bytes})
                    })
                    .collect();
                Some(json!({"ok": true, "checkpoints": l}))
            }
            "checkpoint-chunk" => {
                let (Some(name), Some(off)) = (args.first(), args.get(1).and_then(|o| o.parse::<u64>().ok())) else {
                    return Some(json!({"ok": false, "error": "usage: checkpoint-chunk NAME OFFSET"}));
                };
                if name.contains('/') || !name.ends_with(".ftckpt") {
                    return Some(json!({"ok": false, "error": "not a checkpoint name"}));
                }
                let read = (|| -> std::io::Result<(Vec<u8>, bool)> {
                    let mut f = std::fs::File::open(dir.join(name))?;
                    let len = f.metadata()?.len();
                    f.seek(SeekFrom::Start(off))?;
                    let mut buf = vec![0u8; CHUNK.min(len.saturating_sub(off) as usize)];
                    f.read_exact(&mut buf)?;
                    Ok((buf, off + CHUNK as u64 >= len))
                })();
                Some(match read {
                    Ok((b, eof)) => json!({"ok": true, "data": hex(&b), "eof": eof}),
                    Err(e) => json!({"ok": false, "error": e.to_string()}),
                })
            }
            _ => None,
        }
    })
}

/// Raft index of the newest checkpoint kept here (0: none).
pub fn newest_index(dir: &Path) -> u64 {
    list(dir).first().map_or(0, |c| c.2)
}

/// Fetches from a peer the newest checkpoint with a Raft index above `have` and at least
/// `at_least`; returns its raft index. The file is checked whole before it is renamed into
/// `dir`.
pub fn fetch_newest(cfg: &ClusterConfig, me: u64, dir: &Path, have: u64, at_least: u64, log: &Logger) -> Option<u64> {
    let t = Duration::from_secs(5);
    let mut best: Option<(String, String, u64, u64)> = None;
    for n in cfg.nodes.iter().filter(|n| n.id != me) {
        let Some(addr) = &n.control_addr else { continue };
        let Ok(v) = request(addr, "checkpoints", t) else { continue };
        for c in v["checkpoints"].as_array().into_iter().flatten() {
            let (Some(name), Some(ri), Some(bytes)) =
                (c["name"].as_str(), c["raft_index"].as_u64(), c["bytes"].as_u64())
            else {
                continue;
            };
            if ri > have && ri >= at_least && best.as_ref().is_none_or(|b| ri > b.2) {
                best = Some((addr.clone(), name.to_string(), ri, bytes));
            }
        }
    }
    let (addr, name, ri, bytes) = best?;
    let _ = std::fs::create_dir_all(dir);
    let tmp = dir.join(format!("{name}.part"));
    let fetched = (|| -> Result<(), String> {
        let mut f = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
        let mut off = 0u64;
        loop {
            let v = request(&addr, &format!("checkpoint-chunk {name} {off}"), Duration::from_secs(30))
                .map_err(|e| e.to_string())?;
            if v["ok"] != json!(true) {
                return Err(v["error"].as_str().unwrap_or("refused").to_string());
            }
            let data = v["data"].as_str().and_then(unhex).ok_or("a chunk that does not decode")?;
            f.write_all(&data).map_err(|e| e.to_string())?;
            off += data.len() as u64;
            if v["eof"] == json!(true) || data.is_empty() {
                break;
            }
        }
        f.sync_all().map_err(|e| e.to_string())?;
        if off != bytes {
            return Err(format!("{off} bytes arrived, the peer listed {bytes}"));
        }
        ft_libos::snapshot::read(&tmp).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, dir.join(&name)).map_err(|e| e.to_string())
    })();
    match fetched {
        Ok(()) => {
            info!(log, "fetched a checkpoint from a peer"; "file" => &name, "raft_index" => ri, "bytes" => bytes, "from" => &addr);
            Some(ri)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            warn!(log, "fetching a checkpoint failed"; "file" => &name, "from" => &addr, "err" => e);
            None
        }
    }
}

/// Removes all but the newest `keep` checkpoints of `dir` (by Raft index).
fn prune(dir: &Path, keep: usize) {
    for (name, ..) in list(dir).into_iter().skip(keep) {
        let _ = std::fs::remove_file(dir.join(name));
    }
}

/// The Raft index at or after which at least a majority of the cluster's nodes hold a
/// checkpoint, given one index per node (0: none, or not reachable).
fn majority_index(mut per_node: Vec<u64>) -> u64 {
    per_node.sort_unstable_by(|a, b| b.cmp(a));
    per_node.get(per_node.len() / 2).copied().unwrap_or(0)
}

/// (newest, oldest) Raft index of the checkpoints each other node of the cluster keeps, as its
/// control endpoint lists them ((0, 0): none, or it does not answer).
fn peer_holdings(cfg: &ClusterConfig, me: u64) -> Vec<(u64, u64)> {
    cfg.nodes
        .iter()
        .filter(|n| n.id != me)
        .map(|n| {
            let Some(v) = n.control_addr.as_ref().and_then(|a| request(a, "checkpoints", Duration::from_secs(2)).ok())
            else {
                return (0, 0);
            };
            let idx: Vec<u64> =
                v["checkpoints"].as_array().into_iter().flatten().filter_map(|c| c["raft_index"].as_u64()).collect();
            (idx.iter().copied().max().unwrap_or(0), idx.iter().copied().min().unwrap_or(0))
        })
        .collect()
}

/// How far a replica drops its log, from the (newest, oldest) checkpoint of every node, its own
/// first: through the entry before the newest checkpoint that a majority of the cluster holds
/// (for a follower, its own: it takes them). The leader keeps entries back to the older kept
/// checkpoint while a voter still needs them (`held_by_all`: what every voter has), so that a
/// follower a little behind is sent entries, not a snapshot and a restart. 0: nothing to drop.
fn compaction_point(holdings: &[(u64, u64)], leader: Option<u64>) -> u64 {
    let Some(held_by_all) = leader else {
        return holdings.first().map_or(0, |h| h.0.saturating_sub(1));
    };
    let newest = majority_index(holdings.iter().map(|h| h.0).collect());
    let oldest = majority_index(holdings.iter().map(|h| h.1).collect());
    newest.saturating_sub(1).min(held_by_all.max(oldest.saturating_sub(1)))
}

/// Drops the log before the newest checkpoint a majority holds (see [`compaction_point`]): a
/// restart restores the newest checkpoint it has or can fetch and replays only the entries
/// after it. `peers`: the other nodes' holdings, asked for on the leader only.
fn compact(node: &Node, dir: &Path, keep: usize, peers: &[(u64, u64)], log: &Logger) {
    let kept: Vec<_> = list(dir).into_iter().take(keep).collect();
    let own = (kept.first().map_or(0, |c| c.2), kept.last().map_or(0, |c| c.2));
    let holdings: Vec<(u64, u64)> = std::iter::once(own).chain(peers.iter().copied()).collect();
    let leader = node.is_leader().then(|| node.status().held_by_all);
    let through = compaction_point(&holdings, leader);
    if through > 0 && through >= node.first_index() {
        // The checkpoint a restart of this replica needs must be on disk first (the peers
        // list only durable ones).
        for (name, ..) in &kept {
            if let Err(e) = ft_libos::snapshot::sync(&dir.join(name)) {
                warn!(log, "cannot make a checkpoint durable: the log is not compacted"; "file" => name, "err" => %e);
                return;
            }
        }
        if let Err(e) = node.compact(through) {
            warn!(log, "compacting the log failed"; "through" => through, "err" => %e);
        }
    }
}

/// The keeper thread: every second each replica prunes to `keep` and compacts its log; the
/// leader asks its peers what they hold, and every [`FETCH_EVERY`] fetches the newest checkpoint
/// it lacks while they do not make a majority without it.
pub fn spawn_keeper(node: Arc<Node>, cfg: ClusterConfig, me: u64, dir: PathBuf, keep: usize, log: Logger) {
    let _ = std::thread::Builder::new().name("checkpoints".into()).spawn(move || {
        let mut last_fetch = Instant::now() - Duration::from_secs(60);
        while node.stopped().is_none() {
            std::thread::sleep(Duration::from_secs(1));
            let peers = if node.is_leader() { peer_holdings(&cfg, me) } else { Vec::new() };
            let without_me = std::iter::once(0).chain(peers.iter().map(|h| h.0)).collect();
            if node.is_leader() && majority_index(without_me) == 0 && last_fetch.elapsed() >= FETCH_EVERY {
                last_fetch = Instant::now();
                let have = newest_index(&dir);
                fetch_newest(&cfg, me, &dir, have, 0, &log);
            }
            prune(&dir, keep);
            compact(&node, &dir, keep, &peers, &log);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::{compaction_point, hex, majority_index, unhex};

    #[test]
    fn the_leader_compacts_to_what_a_majority_holds() {
        // Three nodes: the leader holds none, the followers theirs.
        assert_eq!(majority_index(vec![0, 500, 700]), 500);
        assert_eq!(majority_index(vec![0, 0, 700]), 0, "one holder of three is no majority");
        assert_eq!(majority_index(vec![300, 0, 700]), 300, "the leader's fetched one counts");
        assert_eq!(majority_index(vec![0, 400, 500, 600, 0]), 400, "three of five");
        // Followers: their own newest.
        assert_eq!(compaction_point(&[(700, 300), (0, 0), (0, 0)], None), 699);
        assert_eq!(compaction_point(&[(0, 0), (0, 0)], None), 0);
        // The leader: the majority's newest, back to the majority's older one while a voter
        // still needs entries before it.
        assert_eq!(compaction_point(&[(0, 0), (500, 200), (700, 400)], Some(10_000)), 499);
        assert_eq!(compaction_point(&[(0, 0), (500, 200), (700, 400)], Some(250)), 250);
        assert_eq!(compaction_point(&[(0, 0), (500, 200), (700, 400)], Some(100)), 199);
        assert_eq!(compaction_point(&[(0, 0), (0, 0), (700, 400)], Some(10_000)), 0);
    }

    #[test]
    fn chunks_survive_hex() {
        let all: Vec<u8> = (0..=255u8).collect();
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
        assert_eq!(unhex(&hex(&all)).as_deref(), Some(all.as_slice()));
        assert_eq!(unhex("abc"), None, "odd length");
        assert_eq!(unhex("zz"), None, "not a digit");
    }
}
