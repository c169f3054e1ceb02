//! ftdbg against logs of real recordings (made with the ftexec binary of the same target
//! directory) and hand-built logs: decoded output, filters, JSON, statistics, diffs, errors.

mod common;
use common::{ftexec, s, tmpdir};
use ft_libos::log::{LogWriter, VERSION};
use ft_libos::proto::{event::Kind, Disposition, Event, Exit, Header, MemWrite, Start, Syscall};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Records `argv` into DIR/NAME.ftlog; returns the log and what the program printed.
fn record(dir: &Path, name: &str, argv: &[&str]) -> (PathBuf, String) {
    let log = dir.join(format!("{name}.ftlog"));
    let out = Command::new(ftexec()).arg("record").arg("-o").arg(&log).arg("--").args(argv).output().expect("ftexec");
    assert!(out.status.success(), "recording {argv:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    (log, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ftdbg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ftdbg")).args(args).output().expect("run ftdbg")
}

/// Runs ftdbg, expects `code`, returns stdout.
fn run_ok(args: &[&str], code: i32) -> String {
    let out = ftdbg(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "ftdbg {args:?}: stderr {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs ftdbg on a bad input: exit 2, one line on stderr that contains `what`, no panic.
fn run_err(args: &[&str], what: &str) -> String {
    let out = ftdbg(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "ftdbg {args:?}: stderr {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains(what), "ftdbg {args:?}: expected {what:?} in {stderr:?}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("ftdbg: "), "{stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The log index at the start of an `events` line.
fn index_of(line: &str) -> u64 {
    line.split_whitespace().next().and_then(|i| i.parse().ok()).unwrap_or_else(|| panic!("no index in {line:?}"))
}

#[test]
fn events_decode_a_shell_echo() {
    let dir = tmpdir("echo");
    let (log, printed) = record(&dir, "echo", &["sh", "-c", "echo hello"]);
    assert_eq!(printed, "hello\n");
    let text = run_ok(&["events", s(&log)], 0);
    let lines: Vec<&str> = text.lines().collect();
    // Every event, in order, numbered from 0.
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(index_of(l), i as u64, "{l}");
    }
    assert!(lines[0].contains("[0] start: sp=0x"), "{text}");
    assert!(
        lines.iter().any(|l| l.ends_with("[0] write(1, \"hello\\n\", 6) = 6 <inject>")),
        "no decoded write in:\n{text}"
    );
    assert!(lines.last().is_some_and(|l| l.ends_with("+++ exited with 0 +++")), "{text}");
    // Paths come from path_arg, flags are symbolic, errors are errno names.
    assert!(lines.iter().any(|l| l.contains("openat(AT_FDCWD, \"/") && l.contains("O_RDONLY|O_CLOEXEC")), "{text}");
    for l in lines.iter().filter(|l| l.contains(" = -")) {
        assert!(l.contains(" = -1 E"), "an error without an errno name: {l}");
    }

    // --syscall filters; a list works; an unknown name is an error.
    let writes = run_ok(&["events", s(&log), "--syscall", "write"], 0);
    assert_eq!(writes.lines().count(), 1, "{writes}");
    assert!(writes.contains("write(1, \"hello\\n\", 6) = 6"));
    let some = run_ok(&["events", s(&log), "--syscall", "openat,write"], 0);
    assert!(some.lines().count() >= 2);
    assert!(some.lines().all(|l| l.contains("] openat(") || l.contains("] write(")), "{some}");
    run_err(&["events", s(&log), "--syscall", "frobnicate"], "no syscall is named \"frobnicate\"");

    // --from/--to are inclusive log indexes; --thread selects the task.
    let range = run_ok(&["events", s(&log), "--from", "3", "--to", "5"], 0);
    assert_eq!(range.lines().map(index_of).collect::<Vec<_>>(), vec![3, 4, 5]);
    assert_eq!(run_ok(&["events", s(&log), "--thread", "0"], 0).lines().count(), lines.len());
    assert_eq!(run_ok(&["events", s(&log), "--thread", "1"], 0), "");
    run_err(&["events", s(&log), "--from", "5", "--to", "3"], "--from 5 is after --to 3");
}

#[test]
fn events_as_json() {
    let dir = tmpdir("json");
    let (log, _) = record(&dir, "echo", &["sh", "-c", "echo hello"]);
    let text = run_ok(&["events", s(&log)], 0);
    let json = run_ok(&["events", s(&log), "--json"], 0);
    let objs: Vec<serde_json::Value> =
        json.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert_eq!(objs.len(), text.lines().count());
    for (i, o) in objs.iter().enumerate() {
        assert_eq!(o["index"], i as u64);
        assert!(o["kind"].is_string() && o["text"].is_string(), "{o}");
        if o["kind"] == "syscall" {
            for f in ["syscall", "nr", "class", "args", "decoded_args", "ret", "errno", "disposition", "path"] {
                assert!(o.get(f).is_some(), "no {f} in {o}");
            }
            assert_eq!(o["task"], 0);
            let ret = o["ret"].as_i64().expect("ret");
            assert_eq!(o["errno"].is_string(), (-4095..0).contains(&ret), "{o}");
        }
    }
    let write: Vec<&serde_json::Value> = objs.iter().filter(|o| o["syscall"] == "write").collect();
    assert_eq!(write.len(), 1);
    assert_eq!(write[0]["ret"], 6);
    assert_eq!(write[0]["stdio"], "hello\n");
    assert_eq!(write[0]["stdio_fd"], 1);
    assert_eq!(write[0]["disposition"], "inject");
    assert_eq!(write[0]["class"], "Output");
    assert_eq!(write[0]["args"][0], 1);
    assert!(objs.iter().any(|o| o["syscall"] == "openat" && o["path"].as_str().is_some_and(|p| p.starts_with('/'))));
    assert_eq!(objs.last().map(|o| o["kind"].clone()), Some("exit".into()));
    assert_eq!(objs.last().map(|o| o["status"].clone()), Some(0.into()));
}

#[test]
fn stats_count_what_events_show() {
    let dir = tmpdir("stats");
    let (log, _) = record(&dir, "echo", &["sh", "-c", "echo hello"]);
    let lines = run_ok(&["events", s(&log)], 0);
    let n = lines.lines().count();
    let syscalls = lines.lines().filter(|l| l.contains(") = ")).count();
    let text = run_ok(&["stats", s(&log)], 0);
    assert!(text.contains(&format!("\nevents: {n}\n")), "{text}");
    assert!(text.contains("  argv:      [\"sh\", \"-c\", \"echo hello\"]"), "{text}");
    assert!(text.contains("tasks: 0 ("), "{text}");
    assert!(text.contains("duration: unknown"), "sh reads no clock: {text}");
    assert!(text.contains("end: +++ exited with 0 +++"), "{text}");
    let row = text.lines().find(|l| l.trim_start().starts_with("write ")).expect("write row");
    // calls, executed, errors, one-stop (stdout is a pipe, not a socket), buffered, class
    assert_eq!(row.split_whitespace().collect::<Vec<_>>(), vec!["write", "1", "0", "0", "0", "0", "Output"]);

    let j: serde_json::Value = serde_json::from_str(&run_ok(&["stats", s(&log), "--json"], 0)).expect("json");
    assert_eq!(j["events"], n as u64);
    let by_syscall = j["by_syscall"].as_object().expect("by_syscall");
    let sum: u64 = by_syscall.values().map(|c| c["calls"].as_u64().unwrap_or(0)).sum();
    assert_eq!(sum, syscalls as u64);
    let by_class: u64 = j["by_class"].as_object().expect("by_class").values().filter_map(|c| c["calls"].as_u64()).sum();
    assert_eq!(by_class, syscalls as u64);
    let by_kind = j["by_kind"].as_object().expect("by_kind");
    let events: u64 = by_kind.values().filter_map(|k| k["events"].as_u64()).sum();
    assert_eq!(events, n as u64);
    let bytes: u64 = by_kind.values().filter_map(|k| k["bytes"].as_u64()).sum();
    let file = std::fs::metadata(&log).expect("stat").len();
    assert!(bytes < file && bytes > file / 2, "{bytes} of {file}");
    assert_eq!(by_syscall["write"]["calls"], 1);
    assert_eq!(j["header"]["argv"][2], "echo hello");
}

#[test]
fn clock_and_random_values_match_what_the_program_printed() {
    let dir = tmpdir("clocks");
    let exe = dir.join("clocks");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/clocks.c");
    let cc = Command::new("gcc").arg("-O1").arg("-o").arg(&exe).arg(&src).output().expect("gcc");
    assert!(cc.status.success(), "gcc: {}", String::from_utf8_lossy(&cc.stderr));
    let (log, printed) = record(&dir, "clocks", &[s(&exe)]);
    let field = |key: &str| -> Vec<String> {
        let l = printed.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("{key} in {printed}"));
        l.split_whitespace().skip(1).map(String::from).collect()
    };
    let (t1, t2, random) = (field("t1 "), field("t2 "), field("random ")[0].clone());

    // The reads went through the clock page (one `clock reads` event, no syscall) or, on a
    // kernel whose vDSO cannot be redirected, were syscalls; --syscall shows either.
    let clocks = run_ok(&["events", s(&log), "--syscall", "clock_gettime"], 0);
    let (mut at, mut found) = (0, 0);
    for t in [&t1, &t2] {
        let page = format!("clock_gettime(CLOCK_MONOTONIC) = {{tv_sec={}, tv_nsec={}}}", t[0], t[1]);
        let call = format!("clock_gettime(CLOCK_MONOTONIC, {{tv_sec={}, tv_nsec={}}}) = 0 <inject>", t[0], t[1]);
        let hit = [page, call].iter().filter_map(|w| clocks[at..].find(w.as_str()).map(|i| at + i + w.len())).min();
        if let Some(end) = hit {
            at = end;
            found += 1;
        }
    }
    assert_eq!(found, 2, "both readings, in order, in:\n{clocks}");
    assert!(!clocks.contains("getrandom"), "{clocks}");
    let randoms = run_ok(&["events", s(&log), "--syscall", "getrandom"], 0);
    let want = format!("getrandom({random}, 16, 0x0) = 16 <inject>");
    assert!(randoms.lines().any(|l| l.ends_with(&want)), "{want} not in {randoms}");

    // The duration is the difference of the two readings, to the nanosecond.
    let ns = |t: &[String]| t[0].parse::<i128>().expect("sec") * 1_000_000_000 + t[1].parse::<i128>().expect("nsec");
    let d = (ns(&t2) - ns(&t1)) as f64 / 1e9;
    let stats = run_ok(&["stats", s(&log)], 0);
    let want = format!("duration: {d:.6} s (CLOCK_MONOTONIC, first to last of 2 readings)");
    assert!(stats.contains(&want), "{want} not in {stats}");
}

#[test]
fn diff_of_recordings() {
    let dir = tmpdir("diff");
    let (a, _) = record(&dir, "date1", &["/bin/date"]);
    let (b, _) = record(&dir, "date2", &["/bin/date"]);
    let n = run_ok(&["events", s(&a)], 0).lines().count();
    let same = run_ok(&["diff", s(&a), s(&a)], 0);
    assert_eq!(same, format!("identical: {n} events each (the recording times aside)\n"));
    // Two recordings differ from the first event on: the kernel's AT_RANDOM bytes.
    let out = run_ok(&["diff", s(&a), s(&b)], 1);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "first difference at event 0 (in at_random):", "{out}");
    assert!(lines[1].contains(&format!("{}:", a.display())) && lines[1].contains("start: sp=0x"), "{out}");
    assert!(lines[2].contains(&format!("{}:", b.display())) && lines[2].contains("start: sp=0x"), "{out}");
    // A junk second log is an error (2), not a difference (1).
    let junk = dir.join("junk");
    std::fs::write(&junk, b"this is not a log").expect("write");
    run_err(&["diff", s(&a), s(&junk)], "is not an ftexec log");
}

fn clock_event(sec: u64, nsec: u64) -> Event {
    let mut data = sec.to_le_bytes().to_vec();
    data.extend_from_slice(&nsec.to_le_bytes());
    Event {
        kind: Some(Kind::Syscall(Syscall {
            nr: 228,
            args: vec![0, 0x7fff_0000, 0, 0, 0, 0],
            ret: 0,
            disposition: Disposition::Inject as i32,
            mem: vec![MemWrite { addr: 0x7fff_0000, data }],
            ..Default::default()
        })),
    }
}

fn write_log(path: &Path, start_ns: u64, events: &[Event]) {
    let header = Header {
        version: VERSION,
        exe_path: b"/bin/hand-built".to_vec(),
        argv: vec![b"hand-built".to_vec()],
        start_unix_ns: start_ns,
        ..Default::default()
    };
    let mut w = LogWriter::create(path, &header).expect("create log");
    for ev in events {
        w.append(ev).expect("append");
    }
    w.finish().expect("finish");
}

#[test]
#[allow(clippy::needless_update)] // Start may gain fields (the multi-task schema adds to events).
fn diff_of_hand_built_logs() {
    let dir = tmpdir("diff-hand");
    let start =
        Event { kind: Some(Kind::Start(Start { at_random: vec![7; 16], sp: 0x7fff_e000, ..Default::default() })) };
    let exit = Event { kind: Some(Kind::Exit(Exit { code: 0, ..Default::default() })) };
    let a = dir.join("a.ftlog");
    let b = dir.join("b.ftlog");
    let c = dir.join("c.ftlog");
    write_log(&a, 1, &[start.clone(), clock_event(100, 5), clock_event(100, 6), exit.clone()]);
    // Recorded at another time, same events: identical.
    write_log(&b, 2, &[start.clone(), clock_event(100, 5), clock_event(100, 6), exit.clone()]);
    assert_eq!(run_ok(&["diff", s(&a), s(&b)], 0), "identical: 4 events each (the recording times aside)\n");
    // The second clock reading differs.
    write_log(&c, 1, &[start.clone(), clock_event(100, 5), clock_event(101, 0), exit.clone()]);
    let out = run_ok(&["diff", s(&a), s(&c)], 1);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "first difference at event 2 (in mem):");
    assert!(
        lines[1].ends_with("     2 [0] clock_gettime(CLOCK_REALTIME, {tv_sec=100, tv_nsec=6}) = 0 <inject>"),
        "{out}"
    );
    assert!(
        lines[2].ends_with("     2 [0] clock_gettime(CLOCK_REALTIME, {tv_sec=101, tv_nsec=0}) = 0 <inject>"),
        "{out}"
    );
    assert_eq!(lines[3], "events 0..1 are equal");
    // One log is a prefix of the other, in either order.
    write_log(&c, 1, &[start.clone(), clock_event(100, 5)]);
    let out = run_ok(&["diff", s(&c), s(&a)], 1);
    assert!(out.starts_with(&format!("{} is a prefix of {}: the first 2 events are equal", c.display(), a.display())));
    assert!(out.contains("     2 [0] clock_gettime(CLOCK_REALTIME, {tv_sec=100, tv_nsec=6})"), "{out}");
    let out = run_ok(&["diff", s(&a), s(&c)], 1);
    assert!(out.starts_with(&format!("{} is a prefix of {}", c.display(), a.display())), "{out}");
    // Different programs: the header says so.
    let header = Header { version: VERSION, exe_path: b"/bin/other".to_vec(), ..Default::default() };
    let mut w = LogWriter::create(&c, &header).expect("create");
    for ev in [&start, &clock_event(100, 5), &clock_event(100, 6), &exit] {
        w.append(ev).expect("append");
    }
    w.finish().expect("finish");
    let out = run_ok(&["diff", s(&a), s(&c)], 1);
    assert!(out.contains("header field exe_path differs") && out.contains("header field argv differs"), "{out}");
    assert!(out.contains("same 4 events, but the headers differ (exe_path, argv)"), "{out}");

    // Stats of a hand-built log: the duration between the two CLOCK_REALTIME readings.
    let stats = run_ok(&["stats", s(&a)], 0);
    assert!(stats.contains("duration: 0.000000 s (CLOCK_REALTIME, first to last of 2 readings)"), "{stats}");
}

#[test]
fn damaged_logs_are_clear_errors() {
    let dir = tmpdir("damaged");
    let (log, _) = record(&dir, "echo", &["sh", "-c", "echo hello"]);
    let good = std::fs::read(&log).expect("read log");
    let all = run_ok(&["events", s(&log)], 0);
    let n = all.lines().count();

    // Cut short in the middle of the last record: the events before it, then the error.
    let cut = dir.join("cut.ftlog");
    std::fs::write(&cut, &good[..good.len() - 3]).expect("write");
    let shown = run_err(&["events", s(&cut)], "is truncated in record");
    assert_eq!(shown.lines().count(), n - 1, "the events before the damage are shown");
    assert!(run_err(&["stats", s(&cut)], "is truncated").is_empty());
    run_err(&["diff", s(&log), s(&cut)], &format!("{} is truncated", cut.display()));

    // A flipped byte in the last record's payload.
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    let flipped = dir.join("flipped.ftlog");
    std::fs::write(&flipped, &bad).expect("write");
    run_err(&["events", s(&flipped)], "checksum mismatch");
    run_err(&["stats", s(&flipped)], &format!("{} is corrupt", flipped.display()));

    // Not a log at all, an empty file, a missing file, a directory.
    let junk = dir.join("junk.txt");
    std::fs::write(&junk, b"#!/bin/sh\necho I am a script\n").expect("write");
    run_err(&["events", s(&junk)], &format!("{} is not an ftexec log", junk.display()));
    let empty = dir.join("empty");
    std::fs::write(&empty, b"").expect("write");
    run_err(&["stats", s(&empty)], "is not an ftexec log");
    run_err(&["events", s(&dir.join("missing.ftlog"))], "cannot open log");
    run_err(&["stats", s(&dir)], "is a directory without a raft.log");
    // Another format version.
    let mut other = good;
    other[8] = 42;
    let v42 = dir.join("v42.ftlog");
    std::fs::write(&v42, &other).expect("write");
    run_err(&["events", s(&v42)], "is log format version 42");
}

#[test]
fn a_closed_pipe_is_not_a_crash() {
    let dir = tmpdir("pipe");
    let log = dir.join("big.ftlog");
    let events: Vec<Event> = (0..20_000).map(|i| clock_event(i, 0)).collect();
    write_log(&log, 0, &events);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ftdbg"))
        .args(["events", s(&log)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = String::new();
    {
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout).read_line(&mut first).expect("read");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(first.contains("clock_gettime(CLOCK_REALTIME, {tv_sec=0, tv_nsec=0})"), "{first}");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn help_documents_the_exit_status() {
    let help = run_ok(&["--help"], 0);
    assert!(help.contains("0 success (diff: the logs are identical); 1 diff: the logs differ; 2 error"), "{help}");
    let diff = run_ok(&["diff", "--help"], 0);
    assert!(diff.contains("Exit status 0: identical"), "{diff}");
}
