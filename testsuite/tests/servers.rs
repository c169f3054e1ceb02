//! Threaded servers from Debian recorded while clients talk to them, then replayed without any
//! client (issue 3, real programs): `python3 -m http.server` (a thread per request) and
//! `memcached -t 4`. Replay must print exactly the log lines the recording printed.

use ft_testsuite::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

/// Sends SIGINT to the recording ftexec (which forwards it to the program) and collects it.
fn interrupt(server: Running) -> Run {
    if let Some(pid) = server.pid() {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(pid as i32, libc::SIGINT) };
    }
    server.wait()
}

/// The program's lines of `text` (not ftexec's own) that contain `needle`.
fn lines_with(text: &str, needle: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains(needle) && !l.starts_with("ftexec:") && !is_ftexec_log_line(l))
        .map(String::from)
        .collect()
}

/// Asserts equal line lists, showing the first difference only (the lists are long).
fn assert_same_lines(got: &[String], want: &[String], what: &str) {
    if let Some(i) = (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i)) {
        panic!("{what}: line {i} differs: replayed {:?}, recorded {:?}", got.get(i), want.get(i));
    }
}

fn replay_stderr(log: &Path) -> String {
    let r = replay(log, None);
    assert_eq!(r.status, 0, "replay of {}: {r}", log.display());
    r.stderr_text()
}

#[test]
fn python3_http_server_serves_20_requests_and_replays_its_log_lines() {
    let Some(python) = find_program("python3") else {
        eprintln!("SKIP: python3 not installed");
        return;
    };
    let dir = temp_dir("http-server");
    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).expect("mkdir");
    std::fs::write(site.join("hello.txt"), "hello from the recorded server\n").expect("write");
    let log = dir.path().join("http.ftlog");
    let port = free_port();
    let args = ["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory", path_str(&site)];
    let server = spawn(record_command(&log, None, &python, &args));
    for i in 0..20 {
        let mut c = connect_retry(port, Duration::from_secs(30));
        write!(c, "GET /hello.txt?n={i} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("request");
        let mut reply = String::new();
        c.read_to_string(&mut reply).expect("reply");
        assert!(reply.starts_with("HTTP/1.0 200"), "request {i}: {reply}");
        assert!(reply.ends_with("hello from the recorded server\n"), "request {i}: {reply}");
    }
    let recorded = interrupt(server);
    assert_recorded_ok(&log, &recorded, "http.server");
    let served = lines_with(&recorded.stderr_text(), "\"GET /hello.txt");
    assert_eq!(served.len(), 20, "{recorded}");
    for _ in 0..3 {
        assert_same_lines(&lines_with(&replay_stderr(&log), "\"GET /hello.txt"), &served, "the replayed access log");
    }
}

#[test]
fn memcached_with_4_threads_replays_every_command_it_logged() {
    let Some(memcached) = find_program("memcached") else {
        eprintln!("SKIP: memcached not installed");
        return;
    };
    let dir = temp_dir("memcached");
    let log = dir.path().join("mc.ftlog");
    let port = free_port();
    let args = ["-t", "4", "-p", &port.to_string(), "-l", "127.0.0.1", "-U", "0", "-u", "root", "-vv"];
    let server = spawn(record_command(&log, None, &memcached, &args));
    let mut conns: Vec<(BufReader<TcpStream>, TcpStream)> = (0..4)
        .map(|_| {
            let s = connect_retry(port, Duration::from_secs(30));
            s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            (BufReader::new(s.try_clone().expect("clone")), s)
        })
        .collect();
    let mut line = String::new();
    for i in 0..100 {
        for (c, (r, w)) in conns.iter_mut().enumerate() {
            let (key, value) = (format!("k{c}-{i}"), format!("v{}", i * 7 + c));
            write!(w, "set {key} 0 0 {}\r\n{value}\r\n", value.len()).expect("set");
            line.clear();
            r.read_line(&mut line).expect("set reply");
            assert_eq!(line, "STORED\r\n", "set {key}");
            // Read back a key another connection (another worker thread) wrote.
            let other = format!("k{}-{i}", (c + 3) % 4);
            write!(w, "get {other}\r\n").expect("get");
            line.clear();
            r.read_line(&mut line).expect("get reply");
            while line != "END\r\n" {
                line.clear();
                r.read_line(&mut line).expect("get reply");
            }
        }
    }
    drop(conns);
    let recorded = interrupt(server);
    assert_eq!(recorded.status, 0, "memcached ends on SIGINT with status 0: {recorded}");
    // -vv logs every command with its connection: the threads' interleaving is in these lines.
    let commands = lines_with(&recorded.stderr_text(), "set k");
    assert_eq!(commands.len(), 400, "{recorded}");
    let all = lines_with(&recorded.stderr_text(), " ");
    for _ in 0..3 {
        assert_same_lines(&lines_with(&replay_stderr(&log), " "), &all, "the replayed -vv log");
    }
    // Its replies are sendmsg: with the syscall buffer on (the default), most of them are
    // recorded in the program, without a stop, and replayed from the ring above.
    if std::env::var("FTEXEC_SYSCALL_BUFFER").as_deref() != Ok("0") {
        let stats = ftdbg_stats(&log);
        let sendmsg = &stats["by_syscall"]["sendmsg"];
        let (calls, buffered) = (sendmsg["calls"].as_u64().unwrap_or(0), sendmsg["buffered"].as_u64().unwrap_or(0));
        assert!(calls >= 400 && buffered * 2 >= calls, "{buffered} of {calls} sendmsg buffered: {stats}");
    }
}

/// One RESP reply as text: a status, error or integer line, a bulk string's content (or
/// "(nil)"), or an array's elements joined by spaces.
fn resp_reply(r: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    r.read_line(&mut line).expect("redis reply");
    let line = line.trim_end().to_string();
    match line.as_bytes().first() {
        Some(b'$') => {
            let n: i64 = line[1..].parse().expect("bulk length");
            if n < 0 {
                return "(nil)".into();
            }
            let mut buf = vec![0u8; n as usize + 2];
            r.read_exact(&mut buf).expect("bulk");
            String::from_utf8_lossy(&buf[..n as usize]).into_owned()
        }
        Some(b'*') => {
            let n: usize = line[1..].parse().expect("array length");
            (0..n).map(|_| resp_reply(r)).collect::<Vec<_>>().join(" ")
        }
        _ => line,
    }
}

/// redis-server records a session (SET, GET, INCR, a key with a 300 ms TTL that expires, DEBUG
/// SLEEP, BGSAVE, which forks a child that writes dump.rdb into the data directory). Every replay,
/// from the same empty data directory and without any client, checks each reply's bytes against
/// the log (a write is an output), prints the same log lines and writes a byte-identical
/// dump.rdb.
#[test]
fn redis_session_with_expire_debug_sleep_and_bgsave_replays_its_dump_rdb() {
    let Some(redis) = find_program("redis-server") else {
        eprintln!("SKIP: redis-server not installed");
        return;
    };
    let dir = temp_dir("redis-session");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir data");
    let log = dir.path().join("redis.ftlog");
    let port = free_port().to_string();
    let args = [
        "--port",
        &port,
        "--bind",
        "127.0.0.1",
        "--dir",
        path_str(&data),
        "--save",
        "",
        "--appendonly",
        "no",
        "--enable-debug-command",
        "yes",
    ];
    let server = spawn(record_command(&log, Some(&data), &redis, &args));
    let s = connect_retry(port.parse().expect("port"), Duration::from_secs(30));
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    let mut w = s;
    let mut ask = |cmd: &str| -> String {
        write!(w, "{cmd}\r\n").expect("send");
        resp_reply(&mut r)
    };
    assert_eq!(ask("SET a 1"), "+OK");
    assert_eq!(ask("GET a"), "1");
    assert_eq!((0..3).map(|_| ask("INCR n")).collect::<Vec<_>>(), [":1", ":2", ":3"]);
    assert_eq!(ask("SET t x PX 300"), "+OK");
    assert_eq!(ask("GET t"), "x");
    assert_eq!(ask("DEBUG SLEEP 0.1"), "+OK");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ask("GET t"), "(nil)", "the key with a 300 ms TTL has expired");
    assert_eq!(ask("BGSAVE"), "+Background saving started");
    let t0 = std::time::Instant::now();
    loop {
        let info = ask("INFO persistence");
        if info.contains("rdb_bgsave_in_progress:0") && info.contains("rdb_last_bgsave_status:ok") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "BGSAVE did not finish: {info}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ask("DBSIZE"), ":2");
    let recorded = interrupt(server);
    assert_eq!(recorded.status, 0, "redis-server ends on SIGINT with status 0: {recorded}");
    let dump = std::fs::read(data.join("dump.rdb")).expect("BGSAVE wrote dump.rdb");
    assert!(dump.starts_with(b"REDIS"), "not an RDB file");
    let lines = lines_with(&recorded.stdout_text(), " ");
    assert!(lines.iter().any(|l| l.contains("Background saving terminated with success")), "{recorded}");
    for round in 0..3 {
        std::fs::remove_dir_all(&data).expect("rm data");
        std::fs::create_dir(&data).expect("mkdir data");
        let replayed = replay(&log, Some(&data));
        assert_eq!(replayed.status, 0, "replay {round}: {replayed}");
        assert_same_lines(&lines_with(&replayed.stdout_text(), " "), &lines, "the replayed redis log");
        let again = std::fs::read(data.join("dump.rdb")).expect("the replay wrote dump.rdb");
        assert!(again == dump, "replay {round}: dump.rdb differs from the recorded one");
    }
}
