//! `ftdbg gdb` driven by a real gdb (gdb -batch): breakpoints, variables whose values came from
//! getrandom at record, single-step, `monitor goto` backwards; and its errors.

mod common;
use common::{ftexec, s, tmpdir};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// gcc -O1 -g of tests/c/NAME.c into DIR.
fn compile(dir: &Path, name: &str) -> PathBuf {
    let exe = dir.join(name);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/c/{name}.c"));
    let cc = Command::new("gcc").args(["-O1", "-g", "-o"]).arg(&exe).arg(&src).output().expect("gcc");
    assert!(cc.status.success(), "gcc: {}", String::from_utf8_lossy(&cc.stderr));
    exe
}

fn record(dir: &Path, exe: &Path) -> (PathBuf, String) {
    let log = dir.join("rec.ftlog");
    let out = Command::new(ftexec()).arg("record").arg("-o").arg(&log).arg("--").arg(exe).output().expect("ftexec");
    assert!(out.status.success(), "recording failed: {}", String::from_utf8_lossy(&out.stderr));
    (log, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn have_gdb() -> bool {
    let ok = Command::new("gdb").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP: gdb is not installed (scripts/deps.sh installs it)");
    }
    ok
}

/// Starts `ftdbg gdb LOG --port 0 ARGS`; returns it and the port it announced.
fn start(log: &Path, args: &[&str]) -> (Child, u16) {
    let (child, port, _) = start_keeping_stderr(log, args);
    (child, port)
}

/// [`start`], and what ftdbg writes to stderr after its announcement.
fn start_keeping_stderr(log: &Path, args: &[&str]) -> (Child, u16, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ftdbg"))
        .args(["gdb", s(log), "--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ftdbg gdb");
    let mut err = BufReader::new(child.stderr.take().expect("piped"));
    let mut line = String::new();
    err.read_line(&mut line).expect("read ftdbg's announcement");
    let port = line
        .rsplit_once("target remote :")
        .and_then(|(_, p)| p.trim().trim_end_matches('\'').parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    // Keep draining stderr so ftdbg never blocks on it.
    let kept = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let k = kept.clone();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut buf);
        if let Ok(mut k) = k.lock() {
            *k = buf;
        }
    });
    (child, port, kept)
}

fn gdb(exe: Option<&Path>, port: u16, commands: &[&str]) -> String {
    let mut cmd = Command::new("timeout");
    cmd.args(["120", "gdb", "-batch", "-nx", "-ex", "set confirm off", "-ex"]).arg(format!("target remote :{port}"));
    for c in commands {
        cmd.args(["-ex", c]);
    }
    cmd.args(exe);
    let out = cmd.output().expect("run gdb");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// gdb's `$N = VALUE` lines, in order.
fn printed_values(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with('$'))
        .filter_map(|l| l.split_once(" = ").map(|(_, v)| v.trim().to_string()))
        .collect()
}

/// gdb_target compiled into a new directory NAME and recorded: the program, its log, what it
/// printed, and the log index of its write of round 1's value.
fn recorded_target(name: &str) -> (PathBuf, PathBuf, String, u64) {
    let dir = tmpdir(name);
    let exe = compile(&dir, "gdb_target");
    let (log, printed) = record(&dir, &exe);
    let events = Command::new(env!("CARGO_BIN_EXE_ftdbg")).args(["events", s(&log), "--syscall", "write"]).output();
    let events = String::from_utf8_lossy(&events.expect("ftdbg events").stdout).into_owned();
    let write1: u64 = events
        .lines()
        .find(|l| l.contains("round 1 value"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("round 1's write in {events}"));
    (exe, log, printed, write1)
}

fn wait(mut child: Child) -> Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait ftdbg").is_none() {
        assert!(Instant::now() < deadline, "ftdbg gdb did not exit after gdb left");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("ftdbg output")
}

#[test]
fn gdb_breaks_prints_recorded_random_values_steps_and_goes_back() {
    if !have_gdb() {
        return;
    }
    let (exe, log, printed, write1) = recorded_target("session");
    let values: Vec<&str> = printed.lines().map(|l| l.rsplit(' ').next().expect("value")).collect();
    assert_eq!(values.len(), 2, "{printed}");
    assert_ne!(values[0], values[1]);
    // The event just after round 1's output: the value is still round 1's there.
    let back = (write1 + 1).to_string();
    let goto = format!("monitor goto {back}");

    let (ftdbg, port) = start(&log, &[]);
    let started = Instant::now();
    let out = gdb(
        Some(&exe),
        port,
        &[
            "break report",
            "continue",
            "print value",
            "print $pc",
            "stepi",
            "print $pc",
            "continue",
            "print value",
            "monitor event",
            &goto,
            "maint flush register-cache",
            "maint flush dcache",
            "print value",
            "monitor event",
            "kill",
        ],
    );
    let took = started.elapsed();
    let got = printed_values(&out);
    assert!(got.len() >= 5, "gdb printed {got:?}:\n{out}");
    assert_eq!(got[0], values[0], "value at the first stop in report:\n{out}");
    assert_ne!(got[1], got[2], "stepi did not move the pc:\n{out}");
    assert_eq!(got[3], values[1], "value at the second stop:\n{out}");
    assert_eq!(got[4], values[0], "value after monitor goto {back} (earlier event):\n{out}");
    assert!(out.contains("Breakpoint 1, report (round=round@entry=1)"), "{out}");
    assert!(out.contains("Breakpoint 1, report (round=round@entry=2)"), "{out}");
    assert!(out.contains(&format!("at event {back} of ")), "monitor event after goto:\n{out}");
    assert!(out.contains("getrandom("), "the next event after goto is round 2's getrandom:\n{out}");
    let done = wait(ftdbg);
    assert!(done.status.success(), "ftdbg gdb exit {:?}", done.status);
    // The replay printed what the recording printed, up to where gdb stopped it.
    let replayed = String::from_utf8_lossy(&done.stdout);
    assert!(replayed.starts_with(printed.lines().next().expect("line")), "{replayed}");
    eprintln!("gdb session with one goto backwards: {took:?}");
}

#[test]
fn gdb_at_starts_at_the_given_event_and_runs_to_the_exit() {
    if !have_gdb() {
        return;
    }
    let dir = tmpdir("at");
    let exe = compile(&dir, "gdb_target");
    let (log, printed) = record(&dir, &exe);
    let (ftdbg, port) = start(&log, &["--at", "20"]);
    // Without the program file: gdb learns the architecture and the program's path from ftdbg.
    let out = gdb(None, port, &["monitor event", "info registers rip", "continue"]);
    assert!(out.contains("at event 20 of "), "{out}");
    assert!(!out.contains("too long"), "{out}");
    assert!(out.contains("rip            0x"), "{out}");
    assert!(out.contains("exited normally"), "{out}");
    let done = wait(ftdbg);
    assert!(done.status.success());
    assert_eq!(String::from_utf8_lossy(&done.stdout), printed, "the whole replay's output");
}

fn expect_error(args: &[&str], what: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_ftdbg")).args(args).output().expect("ftdbg");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "ftdbg {args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains(what), "expected {what:?} in {stderr:?}");
}

#[test]
fn gdb_errors_name_the_cause() {
    let dir = tmpdir("errors");
    let exe = compile(&dir, "gdb_target");
    let (log, _) = record(&dir, &exe);
    // A port in use.
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port().to_string();
    expect_error(&["gdb", s(&log), "--port", &port], "choose another port with --port");
    // No such event.
    expect_error(&["gdb", s(&log), "--at", "100000", "--port", "0"], "there is no event 100000");
    // A truncated log: its last record (the Exit) cut 3 bytes short. (Cut at half its size, it
    // ended on a record boundary about once in 370 runs: a shorter log, served, and the test
    // waited for a gdb that never came.)
    let bytes = std::fs::read(&log).expect("read log");
    let cut = dir.join("cut.ftlog");
    std::fs::write(&cut, &bytes[..bytes.len() - 3]).expect("write");
    expect_error(&["gdb", s(&cut), "--port", "0"], "cut.ftlog");
    // A log of another binary: the program at the recorded path changed since.
    std::fs::write(&exe, b"#!/bin/sh\necho not the recorded program\n").expect("replace the program");
    expect_error(&["gdb", s(&log), "--port", "0"], "differs from the recording");
}

/// With checkpoints of the log in LOG.ckpt, `monitor goto` backwards restores the nearest one
/// before the target instead of replaying from the start, and gdb sees the same state.
#[test]
fn gdb_goto_backwards_restores_the_nearest_checkpoint() {
    if !have_gdb() {
        return;
    }
    let (exe, log, printed, write1) = recorded_target("goto-ckpt");
    let values: Vec<&str> = printed.lines().map(|l| l.rsplit(' ').next().expect("value")).collect();
    let ck =
        Command::new(ftexec()).args(["-q", "replay", s(&log), "--checkpoint-every", "2"]).output().expect("ftexec");
    assert!(ck.status.success(), "{}", String::from_utf8_lossy(&ck.stderr));
    let back = write1 + 1;
    let (ftdbg, port, stderr) = start_keeping_stderr(&log, &["--verbose"]);
    let out = gdb(
        Some(&exe),
        port,
        &[
            "break report",
            "continue",
            "continue",
            "print value",
            &format!("monitor goto {back}"),
            "maint flush register-cache",
            "maint flush dcache",
            "print value",
            "monitor event",
            "kill",
        ],
    );
    let got = printed_values(&out);
    assert!(got.len() >= 2, "gdb printed {got:?}:\n{out}");
    assert_eq!(got[0], values[1], "value at the second stop:\n{out}");
    assert_eq!(got[1], values[0], "value after monitor goto {back} from a checkpoint:\n{out}");
    assert!(out.contains(&format!("at event {back} of ")), "monitor event after goto:\n{out}");
    let done = wait(ftdbg);
    assert!(done.status.success(), "ftdbg gdb exit {:?}", done.status);
    std::thread::sleep(Duration::from_millis(200));
    let err = String::from_utf8_lossy(&stderr.lock().map(|v| v.clone()).unwrap_or_default()).into_owned();
    assert!(err.contains("restoring"), "goto did not restore a checkpoint:\n{err}");
}
