//! ftdbg reads the Raft logs of a stopped `ftexec up` cluster: the same decoded events as a
//! recording, identical logs on every replica, and a clear error while a replica runs.

use ft_testsuite::{c_program, free_port, ftexec, temp_dir};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn ftdbg(args: &[&str]) -> Output {
    Command::new(ftexec().with_file_name("ftdbg")).args(args).output().expect("running ftdbg")
}

/// `ftexec up --replicas 3 --fsync never --dir DIR --`, in its own process group; the program
/// and stdio are the caller's.
fn up_command(dir: &Path) -> Command {
    let mut c = Command::new(ftexec());
    c.args(["up", "--replicas", "3", "--fsync", "never", "--dir"]).arg(dir).arg("--").process_group(0);
    c
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

fn applied(config: &Path) -> Vec<u64> {
    let out = Command::new(ftexec().with_file_name("ftctl"))
        .args(["status", "--json", "--timeout-ms", "500", "--config"])
        .arg(config)
        .output()
        .expect("ftctl");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    doc["nodes"].as_array().map(|n| n.iter().filter_map(|n| n["applied"].as_u64()).collect()).unwrap_or_default()
}

/// Connects to the kvserver on `port`, sends `SET k v`, returns its one-line reply.
fn set_once(port: u16, k: &str, v: &str) -> std::io::Result<String> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut r = BufReader::new(stream.try_clone()?);
    (&stream).write_all(format!("SET {k} {v}\n").as_bytes())?;
    let mut reply = String::new();
    if r.read_line(&mut reply)? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the connection ended without a reply"));
    }
    Ok(reply)
}

/// `up`'s stderr and every replica's ftexec.log, for a failure message.
fn cluster_logs(dir: &Path, up_err: &Path) -> String {
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (1..=3).fold(format!("--- ftexec up\n{}", read(up_err)), |acc, n| {
        acc + &format!("--- n{n}/ftexec.log\n{}", read(&dir.join(format!("n{n}/ftexec.log"))))
    })
}

#[test]
fn ftdbg_reads_the_raft_logs_of_a_stopped_cluster() {
    let tmp = temp_dir("replica-logs");
    let dir = tmp.path().join("cluster");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let port = free_port();
    let mut up = up_command(&dir)
        .arg(c_program("kvserver"))
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(tmp.path().join("up.err")).expect("up.err"))
        .spawn()
        .expect("ftexec up");
    // One connection per command, retried: under a loaded machine the first leader may lose its
    // leadership before the client's command commits (it then kills its program and the client
    // sees a reset); a client reconnects and sends the command again, as it would after failover.
    let t0 = Instant::now();
    for (k, v) in [("alpha", "one"), ("beta", "two")] {
        let mut last_error = String::new();
        let reply = loop {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the replicated kvserver never answered SET {k}: {last_error}\n{}",
                cluster_logs(&dir, &tmp.path().join("up.err"))
            );
            match set_once(port, k, v) {
                Ok(reply) => break reply,
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::ConnectionRefused {
                        eprintln!("SET {k}: {e}; retrying");
                    }
                    last_error = e.to_string();
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        assert_eq!(reply.trim(), "OK");
    }
    // While the replicas run, their logs are locked.
    let n1 = dir.join("n1").join("raft");
    let busy = ftdbg(&["events", n1.to_str().expect("utf-8")]);
    assert_eq!(busy.status.code(), Some(2), "{}", text(&busy));
    assert!(text(&busy).contains("locked by another process"), "{}", text(&busy));
    // Lockstep, then stop everything.
    let t0 = Instant::now();
    loop {
        let a = applied(&dir.join("cluster.toml"));
        if a.len() == 3 && a.iter().all(|&x| x == a[0]) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "replicas never agreed: {a:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: signals our own child's process group.
    unsafe { libc::kill(-(up.id() as i32), libc::SIGINT) };
    // `up` ends with the program's status: kvserver dies of the SIGINT.
    let stopped = up.wait().expect("waiting for ftexec up");
    assert_eq!(stopped.code(), Some(128 + libc::SIGINT), "ftexec up after Ctrl-C");

    let logs: Vec<String> =
        (1..=3).map(|n| dir.join(format!("n{n}/raft")).to_str().expect("utf-8").to_string()).collect();
    for log in &logs {
        let ev = ftdbg(&["events", log, "--syscall", "read,recvfrom,write,sendto"]);
        let out = text(&ev);
        assert!(ev.status.success(), "{out}");
        assert!(out.contains("SET alpha one\\n"), "the client's first command in {log}:\n{out}");
        assert!(out.contains("SET beta two\\n"), "{out}");
        let st = ftdbg(&["stats", log, "--json"]);
        let j: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap_or_else(|_| panic!("{}", text(&st)));
        assert!(j["events"].as_u64().unwrap_or(0) > 20, "{j}");
        assert!(j["header"]["argv"][0].as_str().unwrap_or("").ends_with("kvserver"), "{j}");
    }
    // Every replica holds the same history (a replica's persisted commit index may lag: prefix).
    for other in &logs[1..] {
        let d = ftdbg(&["diff", &logs[0], other]);
        let out = text(&d);
        assert!(out.contains("identical") || out.contains("is a prefix of"), "ftdbg diff {} {other}:\n{out}", logs[0]);
    }
    // `ftexec replay` takes a stopped replica's directory as it takes a recording: it replays
    // every committed event. Ctrl-C of `up` went to the program through the leader and every
    // replica replayed it to its end: the log ends with kvserver's death by that SIGINT.
    let events = {
        let st = ftdbg(&["stats", &logs[0], "--json"]);
        let j: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap_or_else(|_| panic!("{}", text(&st)));
        j["events"].as_u64().unwrap_or(0)
    };
    let r =
        Command::new(ftexec()).args(["-q", "replay", &logs[0]]).stdin(Stdio::null()).output().expect("ftexec replay");
    assert_eq!(r.status.code(), Some(128 + libc::SIGINT), "replaying {} ({events} events): {}", logs[0], text(&r));
    // The debugger replays a replica's log too.
    if Command::new("gdb").arg("--version").output().is_ok_and(|o| o.status.success()) {
        let gport = free_port();
        let mut srv = Command::new(ftexec().with_file_name("ftdbg"))
            .args(["gdb", &logs[1], "--at", "30", "--port", &gport.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ftdbg gdb");
        let mut line = String::new();
        BufReader::new(srv.stderr.take().expect("piped")).read_line(&mut line).expect("announcement");
        assert!(line.contains("target remote"), "{line}");
        let g = Command::new("timeout")
            .args(["60", "gdb", "-batch", "-nx", "-ex", &format!("target remote :{gport}"), "-ex", "monitor event"])
            .args(["-ex", "kill"])
            .arg(c_program("kvserver"))
            .output()
            .expect("gdb");
        assert!(text(&g).contains("at event 30 of "), "{}", text(&g));
        assert!(srv.wait().expect("ftdbg gdb").success());
    } else {
        eprintln!("SKIP (part): gdb is not installed; scripts/deps.sh installs it");
    }
    // Not a log at all.
    let junk = ftdbg(&["events", tmp.path().to_str().expect("utf-8")]);
    assert_eq!(junk.status.code(), Some(2));
    assert!(text(&junk).contains("without a raft.log"), "{}", text(&junk));
}

/// A program that ends ends the cluster: every replica replays to its exit, `up` exits with the
/// program's status, the output appears once, and the replicas' logs are the same recording.
#[test]
fn up_ends_with_the_program_and_every_replica_holds_its_whole_log() {
    let tmp = temp_dir("replica-end");
    let dir = tmp.path().join("cluster");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let t0 = Instant::now();
    let up = up_command(&dir)
        .args(["/bin/sh", "-c", "echo replicated-hello; exit 3"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ftexec up");
    let (status, stderr) = wait_up(up, t0, Duration::from_secs(60));
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert_eq!(stderr.matches("the program ended with status 3").count(), 3, "{stderr}");
    // The program's stdout is the leader's replica log (nN/ftexec.log); followers print nothing.
    let printed: usize = (1..=3)
        .map(|n| std::fs::read_to_string(dir.join(format!("n{n}/ftexec.log"))).unwrap_or_default())
        .map(|l| l.matches("replicated-hello").count())
        .sum();
    assert_eq!(printed, 1, "{stderr}");
    eprintln!("ftexec up with a program that exits at once: {:?}", t0.elapsed());
    let logs = assert_same_raft_logs(&dir);
    let last = ftdbg(&["events", &logs[2], "--json"]);
    let last = String::from_utf8_lossy(&last.stdout).lines().last().unwrap_or_default().to_string();
    assert!(last.contains("\"kind\":\"exit\""), "the log ends with the exit: {last}");
}

/// Waits for `ftexec up` to end (killing its process group after `limit`); its status and stderr.
fn wait_up(mut up: std::process::Child, t0: Instant, limit: Duration) -> (std::process::ExitStatus, String) {
    loop {
        if up.try_wait().expect("wait").is_some() {
            let out = up.wait_with_output().expect("output");
            return (out.status, String::from_utf8_lossy(&out.stderr).into_owned());
        }
        if t0.elapsed() > limit {
            // SAFETY: signals our own child's process group.
            unsafe { libc::kill(-(up.id() as i32), libc::SIGKILL) };
            let out = up.wait_with_output().expect("output");
            panic!("ftexec up did not end with its program:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts that the three replicas of the cluster in `dir` hold the same log; their paths.
fn assert_same_raft_logs(dir: &Path) -> Vec<String> {
    let logs: Vec<String> =
        (1..=3).map(|n| dir.join(format!("n{n}/raft")).to_str().expect("utf-8").to_string()).collect();
    for other in &logs[1..] {
        let d = ftdbg(&["diff", &logs[0], other]);
        assert_eq!(d.status.code(), Some(0), "ftdbg diff {} {other}: {}", logs[0], text(&d));
    }
    logs
}

/// The ftexec pid and replay position of the leader, from `ftctl status --json`.
fn leader(config: &Path) -> Option<(i32, u64)> {
    let out = Command::new(ftexec().with_file_name("ftctl"))
        .args(["status", "--json", "--timeout-ms", "500", "--config"])
        .arg(config)
        .output()
        .ok()?;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let node = doc["nodes"].as_array()?.iter().find(|n| n["role"] == "leader")?.clone();
    Some((i32::try_from(node["pid"].as_i64()?).ok()?, node["events"].as_u64()?))
}

/// Two threads that hand a turn back and forth by spinning need a preemption per handoff
/// (a fixpoint of the spin, see ARCHITECTURE "Preemption without a PMU"). Under `up`, the
/// followers replay those preemptions in lockstep; the leader is killed mid-run, a follower goes
/// live (its spinning task probed at the end of the committed log) and finishes the program,
/// whose output appears once; every replica ends with the same log.
#[test]
fn spinning_threads_survive_a_leader_kill_under_up() {
    let tmp = temp_dir("replica-spin");
    let dir = tmp.path().join("cluster");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let prog = c_program("spin_wait");
    let up = up_command(&dir)
        .arg(&prog)
        .arg("300")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ftexec up");
    let config = dir.join("cluster.toml");
    let t0 = Instant::now();
    let killed = loop {
        if t0.elapsed() > Duration::from_secs(60) {
            // SAFETY: signals our own child's process group.
            unsafe { libc::kill(-(up.id() as i32), libc::SIGKILL) };
            panic!("the leader never got past 300 events");
        }
        if let Some((pid, events)) = leader(&config) {
            if events > 300 {
                // SAFETY: kill takes two integers; the pid is the leader replica's ftexec.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                break events;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (status, stderr) = wait_up(up, t0, Duration::from_secs(120));
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("died (signal: 9"), "the leader was killed at event {killed}: {stderr}");
    let printed: Vec<String> = (1..=3)
        .map(|n| std::fs::read_to_string(dir.join(format!("n{n}/ftexec.log"))).unwrap_or_default())
        .flat_map(|l| l.lines().filter(|l| l.starts_with("rounds ")).map(str::to_string).collect::<Vec<_>>())
        .collect();
    assert_eq!(printed.len(), 1, "{printed:?}\n{stderr}");
    assert!(printed[0].starts_with("rounds 300 ordered 1 stamps "), "{printed:?}");
    let logs = assert_same_raft_logs(&dir);
    let stats = ftdbg(&["stats", "--json", &logs[0]]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap_or_default();
    assert!(stats["preemptions"].as_u64().unwrap_or(0) >= 300, "{stats}");
}
