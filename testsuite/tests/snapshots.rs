//! Snapshots under replication (issue 18): followers checkpoint the program, every replica
//! compacts its Raft log before its checkpoints, a replica that the cluster compacted past is
//! sent a snapshot and restores a checkpoint fetched from a peer, and a whole cluster killed
//! with -9 comes back from its checkpoints with every acknowledged write.

use ft_testsuite::cluster::Up;
use ft_testsuite::postgres::{uid_of, Postgres};
use ft_testsuite::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

fn reply(c: &mut BufReader<TcpStream>, cmd: &str) -> String {
    c.get_mut().write_all(cmd.as_bytes()).expect("send");
    let mut line = String::new();
    c.read_line(&mut line).expect("reply");
    if let Some(n) = line.strip_prefix('$').and_then(|n| n.trim().parse::<usize>().ok()) {
        let mut v = String::new();
        c.read_line(&mut v).expect("value");
        assert_eq!(v.len(), n + 2);
        return v.trim_end().to_string();
    }
    line.trim_end().to_string()
}

/// GET through a connection that is made again when the serving replica changes (a client
/// reconnects after a failover).
fn get(port: u16, conn: &mut Option<BufReader<TcpStream>>, key: &str) -> String {
    let t0 = std::time::Instant::now();
    loop {
        let c = conn.get_or_insert_with(|| BufReader::new(connect_retry(port, Duration::from_secs(60))));
        let sent = c.get_mut().write_all(format!("GET {key}\r\n").as_bytes());
        let mut line = String::new();
        if sent.is_ok() && c.read_line(&mut line).is_ok_and(|n| n > 0) {
            if let Some(n) = line.strip_prefix('$').and_then(|n| n.trim().parse::<i64>().ok()) {
                if n < 0 {
                    return "(nil)".into();
                }
                let mut v = String::new();
                if c.read_line(&mut v).is_ok() {
                    return v.trim_end().to_string();
                }
            } else {
                return line.trim_end().to_string();
            }
        }
        *conn = None;
        assert!(t0.elapsed() < Duration::from_secs(60), "GET {key}: no replica answers");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn set_keys(port: u16, prefix: &str, n: usize) {
    let mut c = BufReader::new(connect_retry(port, Duration::from_secs(30)));
    for i in 0..n {
        assert_eq!(reply(&mut c, &format!("SET {prefix}{i} v{i}\r\n")), "+OK", "SET {prefix}{i}");
    }
}

fn node(up: &Up, id: u64) -> serde_json::Value {
    up.status().into_iter().find(|n| n["id"] == id).unwrap_or_default()
}

fn pid_of(up: &Up, role: &str) -> (u64, u32) {
    up.retry(Duration::from_secs(30), &format!("a {role}"), || {
        up.status()
            .iter()
            .find(|n| n["role"] == role && n["pid"].is_u64())
            .map(|n| (n["id"].as_u64().unwrap_or(0), n["pid"].as_u64().unwrap_or(0) as u32))
    })
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: a signal to a replica of this test's cluster.
    unsafe { libc::kill(pid as i32, sig) };
}

fn replica_log_len(dir: &std::path::Path, id: u64) -> usize {
    std::fs::metadata(dir.join(format!("n{id}/ftexec.log"))).map_or(0, |m| m.len() as usize)
}

/// A free port and the redis-server command line the clusters of these tests run (None, said,
/// when redis-server is not installed).
fn redis_command() -> Option<(u16, Vec<String>)> {
    let Some(redis) = find_program("redis-server") else {
        println!("SKIPPED: redis-server is not installed (scripts/deps.sh installs it)");
        return None;
    };
    let port = free_port();
    let port_s = port.to_string();
    let exe = redis.to_string_lossy().into_owned();
    let args = [exe.as_str(), "--port", &port_s, "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"];
    Some((port, args.iter().map(|s| s.to_string()).collect()))
}

fn replica_log(up: &Up, id: u64) -> String {
    std::fs::read_to_string(up.dir.join(format!("n{id}/ftexec.log"))).unwrap_or_default()
}

/// Waits until at least two replicas restored a checkpoint since their logs were `before`
/// bytes long (the leader may answer before a follower has read its checkpoint).
/// The real uid of process `pid` (/proc/PID/status).
fn proc_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()
}

fn await_restores(up: &Up, before: &[usize]) {
    up.retry(Duration::from_secs(60), "two replicas restored from a checkpoint after the restart", || {
        let restored = (1..=3u64)
            .filter(|id| {
                replica_log(up, *id)
                    .get(before[*id as usize - 1]..)
                    .is_some_and(|l| l.contains("restoring from a checkpoint"))
            })
            .count();
        (restored >= 2).then_some(())
    });
}

#[test]
fn redis_cluster_compacts_rejoins_from_a_snapshot_and_restarts_from_checkpoints() {
    let Some((port, cmd)) = redis_command() else { return };
    let tmp = temp_dir("snapshots");
    let dir = tmp.path().join("cluster");
    let up = Up::start(&dir, &cmd, &["--snapshot-every", "400", "-v"], &[]);
    set_keys(port, "a", 1500);

    // Followers checkpoint, and every log is compacted: the leader's too, on the strength of
    // the checkpoints its two followers hold (it fetches none while they answer).
    up.retry(Duration::from_secs(60), "every follower with a checkpoint and every log compacted", || {
        let st = up.status();
        (st.len() == 3
            && st.iter().all(|n| {
                n["first_index"].as_u64() > Some(2)
                    && (n["role"] == "leader" || n["checkpoint"]["event"].as_u64().is_some())
            }))
        .then_some(())
    });

    // A follower stopped while the others go on and compact past it: a snapshot, then a
    // checkpoint from a peer, and it is back in lockstep.
    let (fid, fpid) = pid_of(&up, "follower");
    // The entries it holds (persisted, maybe not applied) it needs no snapshot for: the leader
    // must compact past its last index, with a margin for the entries that reach it between
    // this status and the stop.
    let held_then = node(&up, fid)["last_index"].as_u64().unwrap_or(0) + 200;
    signal(fpid, libc::SIGSTOP);
    set_keys(port, "b", 2500);
    up.retry(Duration::from_secs(60), "the leader's log compacted past the stopped follower", || {
        let st = up.status();
        st.iter().find(|n| n["role"] == "leader").and_then(|l| l["first_index"].as_u64()).filter(|f| *f > held_then)
    });
    signal(fpid, libc::SIGCONT);
    up.retry(Duration::from_secs(90), "the stopped follower back in lockstep", || {
        let st = up.status();
        let top = st.iter().filter_map(|n| n["events"].as_u64()).max()?;
        let f = st.iter().find(|n| n["id"] == fid)?;
        (f["live"] == true && f["mode"] == "replaying" && f["events"].as_u64() == Some(top)).then_some(())
    });
    let flog = replica_log(&up, fid);
    assert!(flog.contains("applied snapshot"), "the follower got no snapshot:\n{}", up.logs());
    assert!(flog.contains("restoring from a checkpoint"), "the follower did not restore:\n{}", up.logs());

    // Logs stay bounded: each holds less than what was written since the start.
    for n in up.status() {
        let bytes = n["log_bytes"].as_u64().unwrap_or(u64::MAX);
        assert!(bytes < 3 << 20, "node {} keeps {bytes} bytes of log:\n{:?}", n["id"], up.status());
    }

    // kill -9 of everything, then a restart from the same directory: the replicas restore
    // their checkpoints and every acknowledged write is served.
    up.kill_all();
    let before: Vec<usize> = (1..=3).map(|id| replica_log_len(&dir, id)).collect();
    let up = Up::start(&dir, &cmd, &["-v"], &[]);
    let mut c = None;
    for (prefix, n) in [("a", 1500), ("b", 2500)] {
        for i in (0..n).step_by(97).chain([n - 1]) {
            assert_eq!(get(port, &mut c, &format!("{prefix}{i}")), format!("v{i}"), "{prefix}{i} after the restart");
        }
    }
    await_restores(&up, &before);
    // And it still fails over.
    up.kill_leader();
    let mut c = None;
    assert_eq!(get(port, &mut c, "b2499"), "v2499");
}

/// A fourth replica added with `ftctl add-node` to a cluster whose logs are compacted: the
/// leader sends it a snapshot, it fetches a checkpoint from a peer and restores it, reaches the
/// others' event count, and the cluster (now of four voters) serves every write after the old
/// leader is killed; then leadership is handed to the new node, which serves old and new writes.
#[test]
fn a_replica_added_later_starts_from_a_checkpoint() {
    let Some((port, cmd)) = redis_command() else { return };
    let tmp = temp_dir("snapshots-join");
    let dir = tmp.path().join("cluster");
    let up = Up::start(&dir, &cmd, &["--snapshot-every", "400", "-v"], &[]);
    set_keys(port, "a", 2000);
    up.retry(Duration::from_secs(60), "the leader's log compacted", || {
        up.status().iter().find(|n| n["role"] == "leader").and_then(|l| l["first_index"].as_u64()).filter(|f| *f > 2)
    });
    // Node 4 in the cluster file, added through the leader, then started.
    let (raft, control) = (free_port(), free_port());
    let node4 = dir.join("n4");
    let mut file = std::fs::read_to_string(up.config()).expect("config");
    file += &format!(
        "\n[[node]]\nid = 4\nraft_addr = \"127.0.0.1:{raft}\"\ncontrol_addr = \"127.0.0.1:{control}\"\ndata_dir = \"{}\"\nservice_dir = \"{}\"\ninitial = false\n",
        node4.join("raft").display(),
        node4.join("data").display()
    );
    std::fs::write(up.config(), file).expect("config");
    let ftctl = ftexec().with_file_name("ftctl");
    let added = std::process::Command::new(&ftctl)
        .args(["add-node", "--id", "4", "--config"])
        .arg(up.config())
        .output()
        .expect("ftctl");
    assert!(
        added.status.success(),
        "add-node: {}{}",
        String::from_utf8_lossy(&added.stdout),
        String::from_utf8_lossy(&added.stderr)
    );
    std::fs::create_dir_all(&node4).expect("mkdir");
    let log4 = std::fs::File::create(node4.join("ftexec.log")).expect("log");
    let mut n4 = std::process::Command::new(ftexec())
        .args(["-v", "run", "--node", "4", "--config"])
        .arg(up.config())
        .stdin(std::process::Stdio::null())
        .stdout(log4.try_clone().expect("log"))
        .stderr(log4)
        .spawn()
        .expect("ftexec run --node 4");
    let caught_up = (|| {
        let t0 = std::time::Instant::now();
        while t0.elapsed() < Duration::from_secs(90) {
            let st = up.status();
            let top = st.iter().filter(|n| n["id"] != 4).filter_map(|n| n["events"].as_u64()).max();
            let mine = st.iter().find(|n| n["id"] == 4).and_then(|n| n["events"].as_u64());
            if top.is_some() && mine == top {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    })();
    let log = std::fs::read_to_string(node4.join("ftexec.log")).unwrap_or_default();
    if !caught_up {
        let ended = n4.try_wait();
        let _ = n4.kill();
        panic!("node 4 did not catch up (its process: {ended:?}):\n{log}\n{:?}\n{}", up.status(), up.logs());
    }
    assert!(log.contains("restoring from a checkpoint"), "node 4 did not restore a checkpoint:\n{log}");
    assert!(log.contains("fetched a checkpoint"), "node 4 fetched no checkpoint:\n{log}");
    let voters = up.status().iter().find(|n| n["role"] == "leader").map(|l| l["voters"].clone()).unwrap_or_default();
    assert!(voters.as_array().is_some_and(|v| v.iter().any(|x| x == 4)), "node 4 is not a voter: {voters}");
    // The old leader goes; four voters keep a quorum and every write is served.
    up.kill_leader();
    let mut c = None;
    for i in (0..2000).step_by(199) {
        assert_eq!(get(port, &mut c, &format!("a{i}")), format!("v{i}"), "a{i} after the leader's kill");
    }
    // The new node can lead: leadership handed to it, it goes live and serves old and new writes.
    // On 2 CPUs shared by four replicas and the other tests, a new leader can lose its quorum
    // (no answer from both other voters within the 400 ms election timeout) before it goes live,
    // and another node leads: Raft's check-quorum, as designed. The handover is then asked again.
    let log = || std::fs::read_to_string(node4.join("ftexec.log")).unwrap_or_default();
    let mut moves = Vec::new();
    let t0 = std::time::Instant::now();
    while !log().contains("live: recording from event") {
        assert!(t0.elapsed() < Duration::from_secs(90), "node 4 did not go live after {moves:?}:\n{}", log());
        let leader = up.status().iter().find(|n| n["role"] == "leader").map(|n| n["id"].clone());
        if leader != Some(serde_json::json!(4)) {
            let moved = std::process::Command::new(&ftctl)
                .args(["move-leader", "--to", "4", "--timeout-ms", "30000", "--config"])
                .arg(up.config())
                .output()
                .expect("ftctl");
            moves.push((leader, moved.status.code()));
            assert!(
                moved.status.success() || moves.len() < 3,
                "move-leader: {}{}\n{}",
                String::from_utf8_lossy(&moved.stdout),
                String::from_utf8_lossy(&moved.stderr),
                log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let leader = up.status().iter().find(|n| n["role"] == "leader").map(|n| n["id"].clone());
    assert_eq!(leader, Some(serde_json::json!(4)), "node 4 does not lead: {:?}", up.status());
    let mut c = None;
    for i in (0..2000).step_by(199) {
        assert_eq!(get(port, &mut c, &format!("a{i}")), format!("v{i}"), "a{i} with node 4 leading:\n{}", log());
    }
    set_keys(port, "n", 50);
    let mut c = None;
    assert_eq!(get(port, &mut c, "n49"), "v49", "a write with node 4 leading");
    let _ = n4.kill();
    let _ = n4.wait();
}

/// PostgreSQL checkpointed by the followers under `up`: a tree of processes under a root
/// `runuser` that dropped to postgres (each process with its own umask), System V and POSIX
/// shared memory. After kill -9 of the whole cluster the replicas restore their checkpoints and
/// serve every transaction pgbench saw committed; a failover follows.
#[test]
fn postgresql_restarts_from_checkpoints() {
    let tmp = temp_dir("snapshots-postgres");
    let dir = tmp.path().join("cluster");
    let Some(pg) = Postgres::prepare(tmp.path(), &dir) else { return };
    let init = pg.init.to_string_lossy().into_owned();
    let args = ["--initial-data", init.as_str(), "--snapshot-every", "10000", "-v"];
    // Started by the postgres user itself, as a DBA would, not by root: ftexec and postgres
    // run as that user (the replicas in a user namespace of its own), and checkpoints, their
    // System V segment among them, are taken and restored without privilege.
    let up = Up::start_as("postgres", &dir, &pg.direct_cmd(), &args);
    up.retry(Duration::from_secs(60), "postgres answering", || pg.sql("select 1"));
    let i = pg.pgbench(&["-i", "-s", "1"]);
    assert!(i.status.success(), "pgbench -i: {}\n{}", String::from_utf8_lossy(&i.stderr), up.logs());
    let done = Postgres::processed(&pg.pgbench(&["-c", "2", "-T", "4"]));
    assert!(done > 0, "pgbench processed nothing");
    up.retry(Duration::from_secs(120), "both followers with a checkpoint", || {
        let st = up.status();
        let with: Vec<_> =
            st.iter().filter(|n| n["role"] == "follower" && n["checkpoint"]["event"].as_u64().is_some()).collect();
        (with.len() == 2).then_some(())
    });
    let postgres = uid_of("postgres");
    for n in up.status() {
        let pid = n["pid"].as_u64().unwrap_or(0);
        assert_eq!(proc_uid(pid as u32), postgres, "replica {}'s ftexec (pid {pid}) does not run as postgres", n["id"]);
    }
    let servers = up.program_pids("postgres");
    assert!(servers.len() >= 3, "postgres processes under the replicas: {servers:?}");
    assert!(servers.iter().all(|p| proc_uid(*p) == postgres), "a postgres process not run as postgres: {servers:?}");
    up.kill_all();
    let before: Vec<usize> = (1..=3).map(|id| replica_log_len(&dir, id)).collect();
    let up = Up::start_as("postgres", &dir, &pg.direct_cmd(), &args);
    let history: u64 = up.retry(Duration::from_secs(120), "postgres answering after the restart", || {
        pg.sql("select count(*) from pgbench_history")?.parse().ok()
    });
    assert!(history >= done, "pgbench saw {done} committed, pgbench_history has {history} after the restart");
    await_restores(&up, &before);
    up.retry(Duration::from_secs(60), "the replicas in lockstep", || {
        let st = up.status();
        let top = st.iter().filter_map(|n| n["events"].as_u64()).max()?;
        (st.iter().filter(|n| n["events"].as_u64() == Some(top)).count() == 3).then_some(())
    });
    up.kill_leader();
    let insert = "insert into pgbench_history (tid, bid, aid, delta) values (1, 1, 1, 1)";
    up.retry(Duration::from_secs(60), "an insert after the failover", || pg.sql(insert).filter(|r| r == "INSERT 0 1"));
    let after: u64 = pg.sql("select count(*) from pgbench_history").and_then(|v| v.parse().ok()).unwrap_or(0);
    assert_eq!(after, history + 1, "pgbench_history after the failover");
}
