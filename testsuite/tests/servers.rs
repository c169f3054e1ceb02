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
    text.lines().filter(|l| l.contains(needle) && !l.starts_with("ftexec:")).map(String::from).collect()
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
}
