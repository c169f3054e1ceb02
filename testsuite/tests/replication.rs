//! Active replication end to end: `ftexec up --replicas 3` runs a real server; clients write
//! through it while the leader is killed with kill -9; every acknowledged write must survive.
//! Seeds are printed; FT_FAILOVER_SEED reproduces a run.

use ft_testsuite::{c_program, find_program, free_port, ftexec, temp_dir};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn ftctl() -> PathBuf {
    ftexec().with_file_name("ftctl")
}

/// A cluster started by `ftexec up`; stopped (with its replicas) when dropped.
struct Cluster {
    up: Child,
    dir: PathBuf,
    port: u16,
    redis: bool,
}

impl Cluster {
    fn start(dir: &Path, port: u16, redis: bool, command: &[String]) -> Cluster {
        let mut c = Command::new(ftexec());
        c.args(["up", "--replicas", "3", "--fsync", "never", "--dir"]).arg(dir).arg("--");
        c.args(command);
        let log = std::fs::File::create(dir.with_extension("up.log")).expect("up log");
        c.stdin(Stdio::null()).stdout(log.try_clone().expect("log")).stderr(log).process_group(0);
        let up = c.spawn().expect("starting ftexec up");
        let cl = Cluster { up, dir: dir.to_path_buf(), port, redis };
        cl.client(Duration::from_secs(30));
        cl
    }

    fn config(&self) -> PathBuf {
        self.dir.join("cluster.toml")
    }

    fn status(&self) -> Vec<serde_json::Value> {
        let out = Command::new(ftctl())
            .args(["status", "--json", "--timeout-ms", "500", "--config"])
            .arg(self.config())
            .output()
            .expect("running ftctl");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        doc["nodes"].as_array().cloned().unwrap_or_default()
    }

    /// The pid of the `ftexec run` that leads and records.
    fn leader_pid(&self) -> u32 {
        let t0 = Instant::now();
        loop {
            let st = self.status();
            if let Some(n) = st.iter().find(|n| n["role"] == "leader" && n["mode"] == "recording") {
                return n["pid"].as_u64().expect("pid") as u32;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "no recording leader after 30 s: {st:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A connection that answers PING, retried until `within`.
    fn client(&self, within: Duration) -> Client {
        let t0 = Instant::now();
        loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
                let mut c = Client { r: BufReader::new(s.try_clone().expect("clone")), w: s, redis: self.redis };
                if c.cmd("PING").as_deref() == Some("PONG") {
                    return c;
                }
            }
            if t0.elapsed() > within {
                let log = std::fs::read_to_string(self.dir.with_extension("up.log")).unwrap_or_default();
                panic!("the service on port {} did not answer within {within:?}; ftexec up said:\n{log}", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SAFETY: signals our own child's process group.
        unsafe { libc::kill(-(self.up.id() as i32), libc::SIGINT) };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(8) {
            if let Ok(Some(_)) = self.up.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above.
        unsafe { libc::kill(-(self.up.id() as i32), libc::SIGKILL) };
        let _ = self.up.wait();
    }
}

struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
    redis: bool,
}

impl Client {
    /// One command, one reply (RESP inline commands for Redis); None if the connection broke.
    fn cmd(&mut self, line: &str) -> Option<String> {
        let end = if self.redis { "\r\n" } else { "\n" };
        self.w.write_all(format!("{line}{end}").as_bytes()).ok()?;
        let mut s = String::new();
        if self.r.read_line(&mut s).ok()? == 0 {
            return None;
        }
        let mut s = s.trim_end().to_string();
        if self.redis {
            if s == "$-1" {
                return Some("NIL".into());
            }
            if s.starts_with('$') {
                s.clear();
                self.r.read_line(&mut s).ok()?;
                s = s.trim_end().to_string();
            } else if s.starts_with('+') || s.starts_with(':') {
                s.remove(0);
            }
        }
        Some(s)
    }
}

fn seed() -> u64 {
    std::env::var("FT_FAILOVER_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    })
}

/// xorshift: enough randomness for kill points, reproducible from the seed.
fn next(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// Writes keys while killing the leader at a random write, `rounds` times; after each failover
/// every acknowledged key must be there with its value.
fn failover_rounds(cl: &Cluster, rounds: usize) {
    let seed = seed();
    println!("failover seed {seed} (FT_FAILOVER_SEED={seed} reproduces the kill points)");
    let mut rng = seed | 1;
    let mut acked: Vec<u64> = Vec::new();
    let mut key = 0u64;
    let mut times = Vec::new();
    for round in 0..rounds {
        let mut c = cl.client(Duration::from_secs(30));
        let pid = cl.leader_pid();
        let kill_at = 5 + next(&mut rng) % 150;
        let mut killed_at = None;
        for i in 0..300u64 {
            if i == kill_at {
                // SAFETY: kill -9 of the leader's ftexec process, as a machine death would.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                killed_at = Some(Instant::now());
            }
            key += 1;
            match c.cmd(&format!("SET key{key} val{key}")).as_deref() {
                Some("OK") => acked.push(key),
                _ => break,
            }
        }
        let killed_at = killed_at.unwrap_or_else(|| {
            // SAFETY: as above.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            Instant::now()
        });
        let mut c = cl.client(Duration::from_secs(30));
        times.push(killed_at.elapsed());
        let missing: Vec<u64> =
            acked.iter().copied().filter(|k| c.cmd(&format!("GET key{k}")) != Some(format!("val{k}"))).collect();
        println!(
            "round {round}: killed leader {pid} at write {kill_at}; {} acknowledged keys, {} missing; answered again after {:?}",
            acked.len(),
            missing.len(),
            times[round]
        );
        assert!(missing.is_empty(), "seed {seed} round {round}: acknowledged keys lost after failover: {missing:?}");
        // Let the killed replica restart and catch up before the next kill.
        std::thread::sleep(Duration::from_millis(1500));
    }
    times.sort();
    println!(
        "failover times (kill -9 to first reply): median {:?}, max {:?}",
        times[times.len() / 2],
        times[times.len() - 1]
    );
}

/// Waits until every replica's event count equals the leader's, with nobody failed.
fn assert_lockstep(cl: &Cluster) {
    let t0 = Instant::now();
    loop {
        let st = cl.status();
        let events: Vec<u64> = st.iter().filter_map(|n| n["events"].as_u64()).collect();
        let leader = st.iter().find(|n| n["role"] == "leader").and_then(|n| n["events"].as_u64());
        if st.len() == 3 && events.len() == 3 && st.iter().all(|n| n["live"] == true) {
            if let Some(l) = leader {
                if events.iter().all(|e| *e == l) {
                    let commits: Vec<u64> = st.iter().filter_map(|n| n["commit"].as_u64()).collect();
                    assert!(commits.windows(2).all(|w| w[0] == w[1]), "commit indexes differ: {st:?}");
                    println!("lockstep: every replica at event {l}");
                    return;
                }
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "replicas did not reach the leader's position: {st:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn kvserver_cluster(name: &str) -> (ft_testsuite::TempDir, Cluster) {
    let tmp = temp_dir(name);
    let port = free_port();
    let dir = tmp.path().join("cluster");
    let cmd = vec![c_program("kvserver").to_string_lossy().into_owned(), port.to_string()];
    let cl = Cluster::start(&dir, port, false, &cmd);
    (tmp, cl)
}

fn redis_cluster(name: &str) -> Option<(ft_testsuite::TempDir, Cluster)> {
    let Some(redis) = find_program("redis-server") else {
        println!("SKIPPED: redis-server is not installed (scripts/deps.sh installs it)");
        return None;
    };
    let tmp = temp_dir(name);
    let port = free_port();
    let dir = tmp.path().join("cluster");
    let cmd = vec![redis.to_string_lossy().into_owned(), "--port".into(), port.to_string(), "--save".into(), "".into()];
    let cl = Cluster::start(&dir, port, true, &cmd);
    Some((tmp, cl))
}

#[test]
fn redis_lockstep_1000_commands() {
    let Some((_tmp, cl)) = redis_cluster("repl-lockstep") else { return };
    let mut c = cl.client(Duration::from_secs(10));
    for i in 0..500 {
        assert_eq!(c.cmd(&format!("SET k{i} v{i}")).as_deref(), Some("OK"));
        assert_eq!(c.cmd("INCR counter"), Some((i + 1).to_string()));
    }
    assert_eq!(c.cmd("GET k499").as_deref(), Some("v499"));
    assert_lockstep(&cl);
}

#[test]
fn kvserver_survives_10_leader_kills() {
    let (_tmp, cl) = kvserver_cluster("repl-kv");
    failover_rounds(&cl, 10);
    assert_lockstep(&cl);
}

#[test]
fn redis_survives_leader_kills() {
    let Some((_tmp, cl)) = redis_cluster("repl-redis") else { return };
    failover_rounds(&cl, 4);
}

#[test]
fn follower_kill_does_not_stop_the_service_and_it_catches_up() {
    let (_tmp, cl) = kvserver_cluster("repl-follower");
    let mut c = cl.client(Duration::from_secs(10));
    let st = cl.status();
    let follower = st
        .iter()
        .find(|n| n["role"] == "follower")
        .and_then(|n| n["pid"].as_u64())
        .unwrap_or_else(|| panic!("no follower: {st:?}"));
    // SAFETY: kill -9 of a follower's ftexec process.
    unsafe { libc::kill(follower as i32, libc::SIGKILL) };
    for i in 0..200 {
        assert_eq!(c.cmd("INCR n"), Some((i + 1).to_string()), "the service stopped answering");
    }
    // `up` restarts it; it replays from the start and reaches the leader.
    assert_lockstep(&cl);
    let st = cl.status();
    assert!(st.iter().all(|n| n["pid"].as_u64() != Some(follower)), "the killed follower is still listed: {st:?}");
}

#[test]
fn a_node_with_another_command_refuses_to_join() {
    let (_tmp, cl) = kvserver_cluster("repl-refuse");
    let mut c = cl.client(Duration::from_secs(10));
    assert_eq!(c.cmd("SET a 1").as_deref(), Some("OK"));
    let config = cl.config();
    drop(c);
    drop(cl);
    // Replica 1 restarted alone with another command: its own log holds the cluster's header.
    let mut cmd = Command::new(ftexec());
    cmd.args(["run", "--node", "1", "--config"]).arg(&config).args(["--", "/bin/sleep", "100"]);
    let r = ft_testsuite::run(cmd);
    let err = r.stderr_text();
    assert_eq!(r.status, 125, "{err}");
    assert!(err.contains("refuses to join") && err.contains("/bin/sleep 100"), "unexpected error: {err}");
}
