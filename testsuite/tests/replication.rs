//! Active replication end to end: `ftexec up --replicas 3` runs a real server; clients write
//! through it while the leader is killed with kill -9; every acknowledged write must survive.
//! Seeds are printed; FT_FAILOVER_SEED reproduces a run.

use ft_testsuite::cluster::Up;
use ft_testsuite::{c_program, find_program, free_port, ftexec, temp_dir};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A cluster started by `ftexec up` (see [`Up`]) whose program answers PING on `port` (redis, or
/// kvserver); stopped (with its replicas) when dropped.
struct Cluster {
    up: Up,
    port: u16,
    redis: bool,
}

impl std::ops::Deref for Cluster {
    type Target = Up;
    fn deref(&self) -> &Up {
        &self.up
    }
}

impl Cluster {
    fn start(dir: &Path, port: u16, redis: bool, command: &[String]) -> Cluster {
        Cluster::start_with_env(dir, port, redis, command, &[])
    }

    /// `ftexec up` with `env` added to the environment of `up` and of its replicas.
    fn start_with_env(dir: &Path, port: u16, redis: bool, command: &[String], env: &[(&str, &str)]) -> Cluster {
        let cl = Cluster { up: Up::start(dir, command, &[], env), port, redis };
        cl.client(Duration::from_secs(30));
        cl
    }

    /// kill -9 of the recording leader's ftexec process, as a machine death would; returns a
    /// connection to the service once it answers again, and when the kill was.
    fn fail_over(&self) -> (Client, Instant) {
        let killed = self.kill_leader();
        (self.client(Duration::from_secs(30)), killed)
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
                panic!(
                    "the service on port {} did not answer within {within:?}; ftexec up said:\n{}",
                    self.port,
                    self.up_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
    redis: bool,
}

impl Client {
    /// A field of a section of redis' `INFO` (a multi-line bulk reply).
    fn info_field(&mut self, section: &str, field: &str) -> Option<String> {
        use std::io::Read;
        self.w.write_all(format!("INFO {section}\r\n").as_bytes()).ok()?;
        let mut head = String::new();
        self.r.read_line(&mut head).ok()?;
        let n: usize = head.trim_end().strip_prefix('$')?.parse().ok()?;
        let mut body = vec![0u8; n + 2];
        self.r.read_exact(&mut body).ok()?;
        let body = String::from_utf8_lossy(&body).into_owned();
        body.lines().find_map(|l| l.strip_prefix(&format!("{field}:")).map(|v| v.trim().to_string()))
    }

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
fn failover_rounds(cl: &Cluster, rounds: usize) -> Vec<u64> {
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
    acked
}

/// Waits until every replica's event count equals the leader's, with nobody failed.
fn assert_lockstep(cl: &Cluster) {
    cl.wait_lockstep();
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
    redis_cluster_with(name, &[])
}

/// redis-server with `extra` arguments after `--port P --save ''`.
fn redis_cluster_with(name: &str, extra: &[&str]) -> Option<(ft_testsuite::TempDir, Cluster)> {
    let Some(redis) = find_program("redis-server") else {
        println!("SKIPPED: redis-server is not installed (scripts/deps.sh installs it)");
        return None;
    };
    let tmp = temp_dir(name);
    let port = free_port();
    let dir = tmp.path().join("cluster");
    let mut cmd =
        vec![redis.to_string_lossy().into_owned(), "--port".into(), port.to_string(), "--save".into(), "".into()];
    cmd.extend(extra.iter().map(|a| a.to_string()));
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

/// Replies are queued by the leader's output thread until their commit; a reply bigger than a
/// socket's queue limit (4 MiB) takes the slow path (the queue is sent, then the program writes
/// itself). A 6 MiB value read back three times, the first time by a slow reader, arrives whole
/// and in order, and the replicas stay in lockstep.
#[test]
fn redis_large_replies_arrive_whole_through_output_commit() {
    use std::io::Read;
    let Some((_tmp, cl)) = redis_cluster("repl-large") else { return };
    let mut c = cl.client(Duration::from_secs(10));
    let _ = c.w.set_read_timeout(Some(Duration::from_secs(20)));
    let big: Vec<u8> = (0..6usize << 20).map(|i| b'a' + (i % 26) as u8).collect();
    let mut set = format!("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${}\r\n", big.len()).into_bytes();
    set.extend_from_slice(&big);
    set.extend_from_slice(b"\r\n");
    c.w.write_all(&set).expect("sending SET");
    let mut line = String::new();
    c.r.read_line(&mut line).expect("SET reply");
    assert_eq!(line.trim_end(), "+OK");
    for round in 0..3 {
        c.w.write_all(b"GET big\r\nPING\r\n").expect("sending GET");
        line.clear();
        c.r.read_line(&mut line).expect("GET reply header");
        assert_eq!(line.trim_end(), format!("${}", big.len()), "round {round}");
        let mut got = vec![0u8; big.len() + 2];
        let mut at = 0;
        while at < got.len() {
            let end = (at + (64 << 10)).min(got.len());
            let n = c.r.read(&mut got[at..end]).expect("reading the value");
            assert!(n > 0, "the connection closed after {at} bytes (round {round})");
            at += n;
            if round == 0 {
                // A slow client: the leader's queue for it fills up.
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        assert!(got[..big.len()] == big[..] && &got[big.len()..] == b"\r\n", "round {round}: the value differs");
        line.clear();
        c.r.read_line(&mut line).expect("PING reply");
        assert_eq!(line.trim_end(), "+PONG", "round {round}");
    }
    assert_eq!(c.cmd("STRLEN big"), Some(big.len().to_string()));
    assert_lockstep(&cl);
}

/// A reply that waits for its commit while the program closes the connection (redis QUIT
/// replies, then closes): the client gets every reply and then the end of the stream, 20 times.
#[test]
fn redis_replies_then_close_arrive_before_the_end_of_stream() {
    use std::io::Read;
    let Some((_tmp, cl)) = redis_cluster("repl-quit") else { return };
    for i in 0..20 {
        let mut s = TcpStream::connect(("127.0.0.1", cl.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        s.write_all(format!("SET q{i} v{i}\r\nINCR quits\r\nQUIT\r\n").as_bytes()).expect("send");
        let mut got = String::new();
        s.read_to_string(&mut got).expect("replies, then the end of the stream");
        assert_eq!(got, format!("+OK\r\n:{}\r\n+OK\r\n", i + 1), "connection {i}");
    }
    let mut c = cl.client(Duration::from_secs(10));
    assert_eq!(c.cmd("GET q19").as_deref(), Some("v19"));
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
    let before = cl.client(Duration::from_secs(10)).info_field("server", "process_id");
    failover_rounds(&cl, 4);
    // The program runs in its own PID namespace on every replica: the new leader's redis has the
    // pid the first leader's had (and the one its log recorded).
    let after = cl.client(Duration::from_secs(10)).info_field("server", "process_id");
    println!("redis process_id before the kills {before:?}, after {after:?}");
    assert!(before.is_some(), "INFO server has no process_id");
    assert_eq!(before, after, "the program's pid changed with the leader");
}

/// Waits until redis reports no BGSAVE in progress (30 s at most), reconnecting if the
/// connection breaks; returns its last status.
fn bgsave_done(cl: &Cluster, c: &mut Client) -> Option<String> {
    let t0 = Instant::now();
    loop {
        match c.info_field("persistence", "rdb_bgsave_in_progress").as_deref() {
            Some("0") => return c.info_field("persistence", "rdb_last_bgsave_status"),
            Some(_) => {}
            None => {
                println!("the connection broke after {:?}: reconnecting", t0.elapsed());
                *c = cl.client(Duration::from_secs(30));
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "the BGSAVE did not end within 30 s\n{}", cl.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A BGSAVE in flight when the leader dies: the new leader's redis still has its child (forked
/// at replay), sees it end and reaps it (rdb_bgsave_in_progress back to 0, status ok), and
/// takes a new BGSAVE; every replica's data directory then holds the same dump.rdb.
#[test]
fn redis_bgsave_in_flight_survives_failover() {
    let Some((_tmp, cl)) = redis_cluster_with("repl-bgsave", &["--enable-debug-command", "yes"]) else { return };
    let mut c = cl.client(Duration::from_secs(10));
    assert_eq!(c.cmd("DEBUG POPULATE 3000").as_deref(), Some("OK"));
    // 1 ms per key: the child saves for about 3 s.
    assert_eq!(c.cmd("CONFIG SET rdb-key-save-delay 1000").as_deref(), Some("OK"));
    assert_eq!(c.cmd("BGSAVE").as_deref(), Some("Background saving started"));
    // The leader dies while its redis saves in a child.
    let (mut c, killed) = cl.fail_over();
    let during = c.info_field("persistence", "rdb_bgsave_in_progress");
    let status = bgsave_done(&cl, &mut c);
    println!("after the failover: bgsave in progress {during:?}, then done after {:?}: {status:?}", killed.elapsed());
    assert_eq!(during.as_deref(), Some("1"), "the new leader's redis lost its BGSAVE child");
    assert_eq!(status.as_deref(), Some("ok"), "the BGSAVE across the failover failed");
    assert_eq!(c.cmd("CONFIG SET rdb-key-save-delay 0").as_deref(), Some("OK"));
    assert_eq!(c.cmd("BGSAVE").as_deref(), Some("Background saving started"), "redis still counts a child");
    assert_eq!(bgsave_done(&cl, &mut c).as_deref(), Some("ok"));
    assert_eq!(c.cmd("DBSIZE").as_deref(), Some("3000"));
    assert_lockstep(&cl);
    let dumps: Vec<Vec<u8>> =
        (1..=3).map(|n| std::fs::read(cl.dir.join(format!("n{n}/data/dump.rdb"))).unwrap_or_default()).collect();
    assert!(dumps[0].len() > 10_000, "no dump.rdb of 3000 keys in replica 1: {} bytes", dumps[0].len());
    assert!(dumps.iter().all(|d| *d == dumps[0]), "the replicas' dump.rdb differ");
}

/// redis with `--appendonly yes`: 20 BGREWRITEAOF rounds while a second client writes. The
/// rewrite's background thread closes the old AOF while the main thread makes pipes and files:
/// fds are freed and taken across threads (before, a follower diverged in 3 of 8 runs: "the
/// recording has new fd(s) [11, 12], but the program now does a placeholder at 0"). No replica
/// fails, they end in lockstep, and every write is there.
#[test]
fn redis_aof_rewrites_under_load_keep_the_followers_in_lockstep() {
    let Some((_tmp, mut cl)) = redis_cluster_with("repl-aof", &["--appendonly", "yes"]) else { return };
    let mut c = cl.client(Duration::from_secs(10));
    let writer_cl_port = cl.port;
    let writer = std::thread::spawn(move || {
        let s = TcpStream::connect(("127.0.0.1", writer_cl_port)).expect("writer connects");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut w = Client { r: BufReader::new(s.try_clone().expect("clone")), w: s, redis: true };
        (0..2000).filter(|i| w.cmd(&format!("SET w{i} {i}")).as_deref() == Some("OK")).count()
    });
    for round in 0..20 {
        let r = c.cmd("BGREWRITEAOF").unwrap_or_default();
        assert!(r.contains("rewriting"), "round {round}: {r}");
        // The next one is refused while one runs: wait for it to end.
        let t0 = Instant::now();
        while c.info_field("persistence", "aof_rewrite_in_progress").as_deref() != Some("0")
            || c.info_field("persistence", "aof_rewrite_scheduled").as_deref() != Some("0")
        {
            assert!(t0.elapsed() < Duration::from_secs(20), "round {round}: the rewrite does not end");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(c.cmd(&format!("SET r{round} {round}")).as_deref(), Some("OK"));
    }
    let written = writer.join().expect("writer");
    assert_eq!(written, 2000, "the writer's SETs");
    let st = cl.status();
    assert!(!cl.up_log().contains("died"), "a replica failed during the rewrites: {st:?}\n{}", cl.logs());
    assert_eq!(c.cmd("DBSIZE").as_deref(), Some("2020"));
    assert_lockstep(&cl);
    // Ctrl-C: redis shuts down (its AOF flushed), and every replica's AOF files are the same.
    assert_eq!(cl.up.stop_cleanly().code(), Some(0), "{}", cl.logs());
    assert_eq!(cl.data_differences(), Vec::<String>::new(), "the replicas' data directories after Ctrl-C");
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

/// Polls kvserver's CHILDREN until `pred` holds (or 20 s pass); returns the last answer.
fn children_until(c: &mut Client, pred: impl Fn(&str) -> bool) -> String {
    let t0 = Instant::now();
    loop {
        let got = c.cmd("CHILDREN").unwrap_or_else(|| "no answer".into());
        if pred(&got) || t0.elapsed() > Duration::from_secs(20) {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child forked before the leader dies and ending after the failover is the new leader's
/// program's child as natively: its SIGCHLD arrives (with the kernel's siginfo) and
/// waitpid(-1, WNOHANG) reaps it. (Replay forks children with exit signal 0, which a wait
/// without __WALL does not see and which sends no SIGCHLD.) A child the log reaped before the
/// failover is reaped at replay too, and not seen a second time.
#[test]
fn a_child_forked_before_failover_ends_and_is_reaped_after_it() {
    let (_tmp, cl) = kvserver_cluster("repl-child");
    let mut c = cl.client(Duration::from_secs(10));
    assert_eq!(c.cmd("BG 0 5").as_deref(), Some("STARTED"));
    let first = children_until(&mut c, |s| s.contains("reaped=1"));
    assert_eq!(first, "started=1 reaped=1 last=5 sigchld=1 info=1:5:1", "the first child, before any failover");
    assert_lockstep(&cl);
    assert_eq!(c.cmd("BG 3000 7").as_deref(), Some("STARTED"));
    // The leader dies while the child sleeps.
    let (mut c, killed) = cl.fail_over();
    let answer = c.cmd("CHILDREN").unwrap_or_default();
    println!("after the failover ({:?}): {answer}", killed.elapsed());
    assert!(answer.starts_with("started=2 reaped=1 "), "the second child is running: {answer}");
    let end = children_until(&mut c, |s| !s.contains("reaped=1 ") && !s.contains("sigchld=1 "));
    println!("{:?} after the kill: {end}", killed.elapsed());
    assert_eq!(
        end,
        "started=2 reaped=2 last=7 sigchld=2 info=1:7:1",
        "the child forked before the failover must end, send SIGCHLD and be reaped once; ftexec up said:\n{}",
        cl.up_log()
    );
    // Nothing more to reap, whatever the cron loop finds meanwhile.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.cmd("CHILDREN").as_deref(), Some("started=2 reaped=2 last=7 sigchld=2 info=1:7:1"));
    assert_lockstep(&cl);
}

/// A sleep that a signal interrupted at record continues as restart_syscall; when the leader
/// dies during it, the new leader's replaying kernel has no restart block for it (it would fail
/// with EINTR), so it runs as the sleep again, for the time left. kvserver's child counts the
/// EINTRs of its sleep into its exit code: natively the SIGCONT it ignores interrupts nothing.
#[test]
fn a_sleep_restarted_before_failover_goes_on_after_it() {
    let (_tmp, cl) = kvserver_cluster("repl-restart");
    let mut c = cl.client(Duration::from_secs(10));
    assert_eq!(c.cmd("BG 2500 7").as_deref(), Some("STARTED"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.cmd("POKE").as_deref(), Some("OK"));
    // The child's restart_syscall is in the log once this is answered (one task runs at a time).
    assert!(c.cmd("CHILDREN").is_some_and(|s| s.starts_with("started=1 reaped=0")));
    // The leader dies while the child sleeps on.
    let (mut c, _) = cl.fail_over();
    let end = children_until(&mut c, |s| !s.contains("reaped=0 "));
    assert_eq!(end, "started=1 reaped=1 last=7 sigchld=1 info=1:7:1", "the sleep after the failover\n{}", cl.logs());
    assert_lockstep(&cl);
}

/// A file outside the data directory that the program has open when the leader dies (a
/// stand-in at replay, since its reads are inputs) is open on the new leader too, at the
/// offset the program had read to.
#[test]
fn a_file_open_across_failover_reads_on_from_its_offset() {
    let (tmp, cl) = kvserver_cluster("repl-file");
    let file = tmp.path().join("outside.txt");
    std::fs::write(&file, "0123456789abcdefghij").expect("writing the file");
    let mut c = cl.client(Duration::from_secs(10));
    assert_eq!(c.cmd(&format!("FOPEN {}", file.display())).as_deref(), Some("OK"));
    assert_eq!(c.cmd("FREAD 4").as_deref(), Some("0123"));
    assert_eq!(c.cmd("FREAD 3").as_deref(), Some("456"));
    let (mut c, _) = cl.fail_over();
    assert_eq!(c.cmd("FREAD 5").as_deref(), Some("789ab"), "after the failover\n{}", cl.logs());
    assert_eq!(c.cmd("FREAD 100").as_deref(), Some("cdefghij"));
    assert_eq!(c.cmd("FREAD 1").as_deref(), Some("EOF"));
    assert_lockstep(&cl);
}

/// Connections open when the leader dies end on the new leader as TCP sockets whose peer has
/// closed: the program reads their end and closes them, and getsockname still names an IPv4
/// address. They were unix socketpairs, and varnish, which asserts on its sessions' addresses,
/// lost its child process at every failover.
#[test]
fn connections_a_failover_ends_are_still_tcp_sockets() {
    let (_tmp, cl) = kvserver_cluster("repl-dead-conns");
    let mut a = cl.client(Duration::from_secs(10));
    let mut b = cl.client(Duration::from_secs(10));
    assert_eq!(a.cmd("PING").as_deref(), Some("PONG"));
    assert_eq!(b.cmd("PING").as_deref(), Some("PONG"));
    let (mut c, _) = cl.fail_over();
    let count = |reply: &str, what: &str| {
        let words: Vec<&str> = reply.split_whitespace().collect();
        words.iter().position(|w| *w == what).and_then(|i| words.get(i + 1)?.parse::<u64>().ok()).unwrap_or(0)
    };
    let t0 = Instant::now();
    let families = loop {
        let f = c.cmd("FAMILIES").unwrap_or_default();
        if count(&f, "inet") + count(&f, "unix") + count(&f, "other") >= 2 {
            break f;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the new leader's program closed too few connections: {f}\n{}",
            cl.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(count(&families, "inet") >= 2, "{families}");
    assert_eq!((count(&families, "unix"), count(&families, "other")), (0, 0), "{families}");
    drop((a, b));
    assert_lockstep(&cl);
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

/// Polls `ftctl status` until `pred` holds; panics with the last status after `within`.
fn wait_status(cl: &Cluster, what: &str, within: Duration, pred: impl Fn(&[serde_json::Value]) -> bool) {
    let t0 = Instant::now();
    loop {
        let st = cl.status();
        if pred(&st) {
            return;
        }
        assert!(
            t0.elapsed() < within,
            "{what}: not within {within:?}; last status: {st:?}\nftexec up said:\n{}",
            cl.up_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn node(st: &[serde_json::Value], id: u64) -> Option<&serde_json::Value> {
    st.iter().find(|n| n["id"].as_u64() == Some(id))
}

/// A network partition of the leader (`ftctl fault`, enabled by FTEXEC_FAULT_INJECTION=1): the
/// isolated leader loses its quorum, steps down (check_quorum) and kills its program, so a write
/// sent to it is never acknowledged; the majority elects a leader that goes live on the same
/// address with every acknowledged write and nothing else; after the heal the old leader follows
/// again, in lockstep.
#[test]
fn partitioned_leader_steps_down_and_rejoins_after_heal() {
    let tmp = temp_dir("repl-partition");
    let port = free_port();
    let dir = tmp.path().join("cluster");
    let cmd = vec![c_program("kvserver").to_string_lossy().into_owned(), port.to_string()];
    let cl = Cluster::start_with_env(&dir, port, false, &cmd, &[("FTEXEC_FAULT_INJECTION", "1")]);
    let mut c = cl.client(Duration::from_secs(10));
    let mut acked: Vec<String> = Vec::new();
    for i in 0..100 {
        let k = format!("pre{i}");
        assert_eq!(c.cmd(&format!("SET {k} v{k}")).as_deref(), Some("OK"), "write {k} before the partition");
        acked.push(k);
    }
    let st = cl.status();
    let old = st
        .iter()
        .find(|n| n["role"] == "leader" && n["mode"] == "recording")
        .unwrap_or_else(|| panic!("no recording leader: {st:?}"))
        .clone();
    let (old_id, old_pid, old_term) =
        (old["id"].as_u64().expect("id"), old["pid"].as_u64().expect("pid"), old["term"].as_u64().expect("term"));

    let (ok, out) = cl.fault(old_id, "isolate");
    assert!(ok, "ftctl fault isolate failed: {out}");
    let isolated_at = Instant::now();
    println!("isolated leader {old_id} (ftexec pid {old_pid}, term {old_term})");

    // (a) The isolated leader cannot commit, so it never acknowledges this write: its program is
    // killed when it steps down (the connection closes) or the reply never comes.
    c.w.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    let reply = c.cmd("SET unacked lost");
    let silent_for = isolated_at.elapsed();
    assert_eq!(reply, None, "the isolated old leader answered a write");
    println!("the isolated leader's connection ended without a reply after {silent_for:?}");

    // (b) The majority elects a new leader, which goes live on the same address.
    let mut c = cl.client(Duration::from_secs(30));
    let answered_after = isolated_at.elapsed();
    wait_status(&cl, "a new recording leader", Duration::from_secs(10), |st| {
        st.iter().any(|n| n["role"] == "leader" && n["mode"] == "recording" && n["id"].as_u64() != Some(old_id))
    });
    let st = cl.status();
    let new = st.iter().find(|n| n["role"] == "leader").expect("leader").clone();
    let new_id = new["id"].as_u64().expect("id");
    assert!(new["term"].as_u64() > Some(old_term), "the new leader's term is not higher: {st:?}");
    println!("leader {new_id} answers on port {port} {answered_after:?} after the isolation");

    // (c) Every acknowledged write is there, the unacknowledged one is not.
    for k in &acked {
        assert_eq!(c.cmd(&format!("GET {k}")), Some(format!("v{k}")), "acknowledged key {k} lost");
    }
    assert_eq!(c.cmd("GET unacked").as_deref(), Some("NIL"), "an unacknowledged write appeared");

    // The majority goes on; the isolated node (its `ftexec run` ended and `up` restarted it,
    // still isolated: the partition is the network's) learns nothing of it.
    wait_status(&cl, "the isolated node back up, not leading", Duration::from_secs(20), |st| {
        node(st, old_id).is_some_and(|n| n["live"] == true && n["role"] != "leader")
    });
    let st = cl.status();
    let o = node(&st, old_id).expect("old node");
    assert_ne!(o["pid"].as_u64(), Some(old_pid), "the deposed leader's ftexec run did not end: {st:?}");
    let isolated_commit = o["commit"].as_u64().expect("commit");
    for round in 0..6 {
        for i in 0..20 {
            let k = format!("during{round}-{i}");
            assert_eq!(c.cmd(&format!("SET {k} v{k}")).as_deref(), Some("OK"), "write {k} during the partition");
            acked.push(k);
        }
        if round == 5 {
            // Long enough for many heartbeats (50 ms) and election timeouts (400-800 ms).
            std::thread::sleep(Duration::from_secs(1));
        }
        let st = cl.status();
        let (o, l) = (node(&st, old_id).expect("old"), node(&st, new_id).expect("new"));
        assert!(
            o["commit"].as_u64() == Some(isolated_commit) && l["commit"].as_u64() > Some(isolated_commit),
            "the isolated node saw the majority's commits: {st:?}"
        );
        assert!(
            o["leader"].as_u64() != Some(new_id) && o["role"] != "leader",
            "the isolated node is not isolated: {st:?}"
        );
        if round == 5 {
            println!("during the partition: {o}");
        }
    }

    // Heal: the old leader follows the new one and reaches its position.
    let (ok, out) = cl.fault(old_id, "heal");
    assert!(ok, "ftctl fault heal failed: {out}");
    let healed_at = Instant::now();
    wait_status(&cl, "the old leader following the new one", Duration::from_secs(20), |st| {
        node(st, old_id).is_some_and(|n| n["role"] == "follower" && n["leader"].as_u64() == Some(new_id))
    });
    assert_lockstep(&cl);
    println!("the old leader follows, in lockstep, {:?} after the heal", healed_at.elapsed());
    let st = cl.status();
    assert_eq!(node(&st, new_id).map(|n| n["role"].clone()), Some("leader".into()), "leadership moved: {st:?}");
    for k in &acked {
        assert_eq!(c.cmd(&format!("GET {k}")), Some(format!("v{k}")), "acknowledged key {k} lost after the heal");
    }
    assert_eq!(c.cmd("GET unacked").as_deref(), Some("NIL"), "an unacknowledged write appeared after the heal");
    assert_eq!(c.cmd("COUNT"), Some(acked.len().to_string()), "keys other than the acknowledged ones exist");
}

/// Without FTEXEC_FAULT_INJECTION=1 a replica refuses fault injection, naming the variable.
#[test]
fn fault_injection_is_refused_without_the_variable() {
    let (_tmp, cl) = kvserver_cluster("repl-nofault");
    let (ok, out) = cl.fault(1, "isolate");
    assert!(!ok && out.contains("FTEXEC_FAULT_INJECTION=1"), "unexpected answer: {out}");
    let mut c = cl.client(Duration::from_secs(10));
    assert_eq!(c.cmd("SET a 1").as_deref(), Some("OK"));
    let st = cl.status();
    assert!(st.iter().all(|n| n["live"] == true) && st.iter().filter(|n| n["role"] == "leader").count() == 1, "{st:?}");
}

/// kvserver keeps DIR/aof.log in the replicated data directory (`[service] data_dir`, each
/// replica's own copy bind-mounted there). Followers execute the file syscalls for real, so
/// after leader kills every replica's aof.log holds the same bytes, and every acknowledged write.
#[test]
fn kvserver_with_data_dir_survives_leader_kills_with_identical_aof() {
    let tmp = temp_dir("repl-aof");
    let port = free_port();
    let dir = tmp.path().join("cluster");
    // `ftexec up` makes DIR/data the program's data directory (and cwd).
    let data = dir.join("data");
    let cmd = vec![
        c_program("kvserver").to_string_lossy().into_owned(),
        port.to_string(),
        data.to_string_lossy().into_owned(),
    ];
    let cl = Cluster::start(&dir, port, false, &cmd);
    let acked = failover_rounds(&cl, 2);
    assert_lockstep(&cl);
    let mut c = cl.client(Duration::from_secs(10));
    for k in &acked {
        assert_eq!(c.cmd(&format!("GET key{k}")), Some(format!("val{k}")), "acknowledged key{k} lost");
    }
    let aofs: Vec<(u64, Vec<u8>)> = (1..=3)
        .map(|id| {
            let p = dir.join(format!("n{id}")).join("data").join("aof.log");
            (id, std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        })
        .collect();
    let shortest = aofs.iter().map(|(_, a)| a.len()).min().expect("three replicas");
    let sizes: Vec<(u64, usize)> = aofs.iter().map(|(id, a)| (*id, a.len())).collect();
    for (id, a) in &aofs {
        assert_eq!(&a[..shortest], &aofs[0].1[..shortest], "aof.log of replica {id} differs from replica 1's");
    }
    // The replicas are in lockstep and no write came after: the files are whole and equal.
    assert!(sizes.iter().all(|(_, n)| *n == shortest), "aof.log sizes differ in lockstep: {sizes:?}");
    // kvserver's aof.log: one `SET key value` line per applied SET, in order. Writes were sent one
    // at a time with increasing numbers; one in flight at a kill may be there without its reply.
    let text = String::from_utf8(aofs[0].1.clone()).expect("aof.log is text");
    let logged: Vec<u64> = text
        .lines()
        .map(|l| {
            let n = l
                .strip_prefix("SET key")
                .and_then(|r| r.split_once(' '))
                .and_then(|(n, v)| (v == format!("val{n}")).then_some(n).and_then(|n| n.parse::<u64>().ok()));
            n.unwrap_or_else(|| panic!("unexpected aof.log line {l:?}"))
        })
        .collect();
    assert!(logged.windows(2).all(|w| w[0] < w[1]), "aof.log is out of order: {logged:?}");
    let missing: Vec<&u64> = acked.iter().filter(|k| logged.binary_search(k).is_err()).collect();
    assert!(missing.is_empty(), "acknowledged writes missing from aof.log: {missing:?}");
    assert_eq!(c.cmd("COUNT"), Some(logged.len().to_string()), "the service's keys are not the aof.log's");
    assert!(!data.join("aof.log").exists(), "the program wrote to the mount point itself, not to a replica's copy");
    println!(
        "aof.log: {} acknowledged writes, {} logged; identical on every replica, sizes {sizes:?}",
        acked.len(),
        logged.len()
    );
}

/// One request line to pairserver and its answer line, or None while it does not answer.
fn pair_ask(port: u16, line: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("{line}\n").as_bytes()).ok()?;
    let mut out = String::new();
    BufReader::new(s).read_line(&mut out).ok()?;
    (!out.is_empty()).then(|| out.trim_end().to_string())
}

/// A server whose forked child does the work over socketpairs (nginx's channels, python's
/// multiprocessing). A socketpair's stand-in at replay is a pipe; before, going live left it a
/// pipe and both processes died at their next recv ("Socket operation on non-socket"). Now it
/// becomes a real socketpair shared by the two processes, with the bytes in flight each way:
/// the child's notices written before a kill -9 of the leader and not read yet are read after
/// it, the child's request count goes on, and again after a second failover (to the replica
/// that replayed the first new leader's log).
#[test]
fn a_socketpair_between_the_programs_processes_works_across_failovers() {
    let tmp = temp_dir("repl-pair");
    let port = free_port();
    let cmd = vec![c_program("pairserver").to_string_lossy().into_owned(), port.to_string()];
    let mut up = Up::start(&tmp.path().join("cluster"), &cmd, &[], &[]);
    let ask = |up: &Up, line: &str| {
        up.retry(Duration::from_secs(30), &format!("pairserver answering {line}"), || pair_ask(port, line))
    };
    for (i, w) in ["a", "b", "c"].iter().enumerate() {
        assert_eq!(ask(&up, w), format!("child#{}:{w}", i + 1));
    }
    up.kill_leader();
    assert_eq!(ask(&up, "d"), "child#4:d", "the child's count after the first failover\n{}", up.logs());
    assert_eq!(ask(&up, "TICKS"), "t1,t2,t3,t4,", "the notices in flight at the failover, then the new one");
    // The same on a SOCK_SEQPACKET pair: each message whole (the stand-in pipe had merged them).
    assert_eq!(ask(&up, "DTICKS"), "t1,|t2,|t3,|t4,|", "the messages in flight at the failover, then the new one");
    up.wait_lockstep();
    up.kill_leader();
    assert_eq!(ask(&up, "e"), "child#5:e", "after the second failover\n{}", up.logs());
    assert_eq!(ask(&up, "TICKS"), "t5,");
    assert_eq!(ask(&up, "DTICKS"), "t5,|");
    assert_eq!(up.stop_cleanly().code(), Some(128 + libc::SIGINT), "{}", up.logs());
}
