//! Bad input gets a clear error, never a panic, a hang or a silently wrong replay: divergence,
//! corrupt and truncated logs, missing or changed binaries, a data directory that does not match.

use ft_libos::proto::event::Kind;
use ft_testsuite::*;
use std::fs;
use std::path::Path;

fn stderr(run: &Run) -> String {
    String::from_utf8_lossy(&run.stderr).into_owned()
}

/// Records `prog` into DIR/run.ftlog and checks the recording worked.
fn recorded(dir: &Path, prog: &Path, args: &[&str]) -> (std::path::PathBuf, Run) {
    let log = dir.join("run.ftlog");
    let run = record(&log, None, prog, args);
    assert_eq!(run.status, 0, "recording failed:\n{run}");
    (log, run)
}

/// Rewrites a log, applying `edit` to every event.
fn rewrite(log: &Path, out: &Path, mut edit: impl FnMut(&mut ft_libos::Event)) {
    rewrite_log(log, out, |mut ev| {
        edit(&mut ev);
        vec![ev]
    });
}

#[test]
fn divergence_is_reported_with_event_and_exit_code_2() {
    let dir = temp_dir("divergence");
    let (log, rec) = recorded(dir.path(), &c_program("branchy"), &[]);
    let tampered = dir.path().join("tampered.ftlog");
    let mut flipped = false;
    rewrite(&log, &tampered, |ev| {
        if let Some(Kind::Syscall(s)) = &mut ev.kind {
            if s.nr == libc::SYS_getrandom as u32 {
                s.mem[0].data[0] ^= 1;
                flipped = true;
            }
        }
    });
    assert!(flipped, "the recording has no getrandom event");
    // The untouched log replays; the tampered one takes the other branch and is caught.
    assert_same_output(&rec, &replay(&log, None), "branchy");
    let out = replay(&tampered, None);
    assert_eq!(out.status, 2, "divergence must exit with 2:\n{out}");
    let msg = stderr(&out);
    assert!(msg.contains("divergence at event"), "{msg}");
    assert!(msg.contains("write(1"), "the message names the syscalls involved: {msg}");
    assert!(!msg.contains("panicked"), "{msg}");
}

#[test]
fn corrupt_and_truncated_logs_are_refused() {
    let dir = temp_dir("corrupt");
    let (log, _) = recorded(dir.path(), &c_program("clock_raw"), &[]);
    let bytes = fs::read(&log).expect("read log");

    let truncated = dir.path().join("truncated.ftlog");
    // Inside its last record (a cut at a fixed fraction can land on a record boundary).
    fs::write(&truncated, &bytes[..bytes.len() - 3]).expect("write");
    let out = replay(&truncated, None);
    assert_eq!(out.status, 125, "{out}");
    assert!(stderr(&out).contains("truncated"), "{out}");

    let corrupt = dir.path().join("corrupt.ftlog");
    let mut b = bytes.clone();
    let mid = b.len() / 2;
    b[mid] ^= 0x5a;
    fs::write(&corrupt, &b).expect("write");
    let out = replay(&corrupt, None);
    assert_eq!(out.status, 125, "{out}");
    let msg = stderr(&out);
    assert!(msg.contains("corrupt") || msg.contains("truncated"), "{msg}");

    let junk = dir.path().join("junk.ftlog");
    fs::write(&junk, b"#!/bin/sh\necho not a log\n").expect("write");
    let out = replay(&junk, None);
    assert_eq!(out.status, 125, "{out}");
    assert!(stderr(&out).contains("not an ftexec log"), "{out}");

    let out = replay(&dir.path().join("missing.ftlog"), None);
    assert_eq!(out.status, 125, "{out}");
    assert!(stderr(&out).contains("cannot open log"), "{out}");
    assert!(!stderr(&out).contains("panicked"));
}

#[test]
fn missing_and_changed_binaries_are_refused() {
    let dir = temp_dir("binary");
    let prog = dir.path().join("prog");
    fs::copy(c_program("clock_raw"), &prog).expect("copy program");
    let (log, _) = recorded(dir.path(), &prog, &[]);

    let mut bytes = fs::read(&prog).expect("read");
    bytes.push(0);
    fs::write(&prog, &bytes).expect("write");
    let out = replay(&log, None);
    assert_eq!(out.status, 125, "{out}");
    assert!(stderr(&out).contains("differs from the recording"), "{out}");

    fs::remove_file(&prog).expect("rm");
    let out = replay(&log, None);
    assert_eq!(out.status, 127, "{out}");
    assert!(stderr(&out).contains("not found"), "{out}");

    let out = record(&dir.path().join("x.ftlog"), None, &dir.path().join("no-such-program"), &[]);
    assert_eq!(out.status, 127, "{out}");
    assert!(stderr(&out).contains("program not found"), "{out}");
}

/// A program that execs a binary it opened itself: through openat2 (read-only, so verified by
/// hash like any executable or library it opens) or written through creat (the execve checks
/// the new image). Changed after the recording, each replay refuses, naming the file.
#[test]
fn an_executable_opened_by_openat2_or_creat_is_verified() {
    let dir = temp_dir("exec-opened");
    let text = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    let append_a_byte = |p: &Path| {
        let mut bytes = fs::read(p).expect("read");
        bytes.push(0);
        fs::write(p, &bytes).expect("write");
    };

    let prog = dir.path().join("prog");
    fs::copy(c_program("exec_opened"), &prog).expect("copy program");
    let log = dir.path().join("openat2.ftlog");
    let run = record(&log, None, &c_program("exec_opened"), &["openat2", &text(&prog)]);
    assert_eq!(run.status, 0, "{run}");
    assert_eq!(run.stdout_text(), "openat2: read an ELF file\nchild: running\n");
    let same = replay(&log, None);
    assert_eq!((same.status, same.stdout_text()), (0, run.stdout_text()), "{same}");
    append_a_byte(&prog);
    let out = replay(&log, None);
    assert_eq!(out.status, 125, "{out}");
    assert!(stderr(&out).contains(&format!("the file {}", prog.display())), "{out}");
    assert!(stderr(&out).contains("opened by the recorded run"), "{out}");

    let made = dir.path().join("made");
    let log = dir.path().join("creat.ftlog");
    let run = record(&log, None, &c_program("exec_opened"), &["creat", &text(&made), &text(&c_program("exec_opened"))]);
    assert_eq!(run.status, 0, "{run}");
    assert_eq!(run.stdout_text(), "creat: copied the program\nchild: running\n");
    let same = replay(&log, None);
    assert_eq!((same.status, same.stdout_text()), (0, run.stdout_text()), "{same}");
    append_a_byte(&made);
    let out = replay(&log, None);
    assert_eq!(out.status, 125, "{out}");
    assert!(stderr(&out).contains(&made.display().to_string()), "{out}");
    assert!(stderr(&out).contains("missing or different"), "{out}");
}

/// A file the program itself writes outside the data directory and reads back, which starts
/// with the ELF magic (a compiler's object file in /tmp): the program's own work, recorded, not
/// verified by hash as an executable would be. It was, and the replay of a program that had
/// removed it refused ("the file ... is missing or changed here"): varnish, which compiles its
/// configuration at start, could not run replicated.
#[test]
fn an_elf_file_the_program_wrote_itself_is_recorded() {
    let dir = temp_dir("own-elf");
    let log = dir.path().join("own.ftlog");
    let tmp = dir.path().to_str().expect("utf-8 path").to_owned();
    let run = record(&log, None, &c_program("own_elf"), &[&tmp]);
    assert_eq!(run.status, 0, "{run}");
    assert!(run.stdout_text().starts_with("read back ") && run.stdout_text().ends_with("(same)\n"), "{run}");
    for _ in 0..2 {
        let again = replay(&log, None);
        assert_eq!((again.status, again.stdout_text()), (0, run.stdout_text()), "{again}");
    }
}

#[test]
fn data_dir_must_match_the_recorded_start() {
    let Some(sqlite3) = find_program("sqlite3") else {
        eprintln!("SKIP: sqlite3 not installed");
        return;
    };
    let dir = temp_dir("datadir");
    let a = dir.path().join("a");
    fs::create_dir(&a).expect("mkdir");
    let db = a.join("t.db");
    let log = dir.path().join("run.ftlog");
    let rec = record(
        &log,
        Some(&a),
        &sqlite3,
        &[path_str(&db), "create table t(x); insert into t values (random()); select count(*) from t;"],
    );
    assert_eq!(rec.status, 0, "{rec}");
    // `a` now holds the database: it no longer matches the recorded start.
    let out = replay(&log, None);
    assert_eq!(out.status, 125, "{out}");
    assert!(stderr(&out).contains("data directory"), "{out}");
    assert!(stderr(&out).contains("as it was before recording"), "{out}");
    // A recording without a data directory refuses one at replay.
    let (plain, _) = recorded(dir.path(), &c_program("clock_raw"), &[]);
    let out = replay(&plain, Some(&a));
    assert_eq!(out.status, 125, "{out}");
    assert!(stderr(&out).contains("without --data-dir"), "{out}");
}

/// A clock-page read the program makes differently from the recording (here: the log says it
/// read another clock) stops the replay with a divergence, not a wrong time.
#[test]
fn clock_page_read_of_another_clock_is_a_divergence() {
    let dir = temp_dir("clock-page-diverge");
    let (log, _) = recorded(dir.path(), &c_program("clock_page"), &[]);
    let edited = dir.path().join("edited.ftlog");
    let mut done = false;
    rewrite(&log, &edited, |ev| {
        if let Some(Kind::Clocks(c)) = &mut ev.kind {
            if let Some(mut reads) = ft_libos::clock::decode(&c.reads).filter(|r| !done && !r.is_empty()) {
                // The first read's clock id becomes 99.
                reads[0].arg = 99;
                c.reads = ft_libos::clock::pack(&ft_libos::clock::to_raw(&reads)).expect("whole entries");
                done = true;
            }
        }
    });
    assert!(done, "the recording has no clock-page reads");
    let run = replay(&edited, None);
    assert_eq!(run.status, 2, "{run}");
    let err = stderr(&run);
    assert!(err.contains("divergence at event") && err.contains("clock read"), "{err}");
}

/// Ctrl-C (SIGINT) ends a replay at once with status 130 and says so; no tracee is left.
/// A Preempt event whose state digest is not the one the program reaches: replay must not
/// preempt the spinner somewhere else; it stops with a divergence naming the spin.
#[test]
fn preemption_in_another_state_is_a_divergence() {
    let dir = temp_dir("preempt_divergence");
    let (log, rec) = recorded(dir.path(), &c_program("spin_wait"), &["3"]);
    let tampered = dir.path().join("tampered.ftlog");
    let mut changed = false;
    rewrite(&log, &tampered, |ev| {
        if let Some(Kind::Preempt(p)) = &mut ev.kind {
            if !changed {
                p.digest[0] ^= 1;
                changed = true;
            }
        }
    });
    assert!(changed, "the recording has no preemption: {rec}");
    assert_same_output(&rec, &replay(&log, None), "spin_wait");
    let out = replay(&tampered, None);
    assert_eq!(out.status, 2, "divergence must exit with 2:\n{out}");
    let msg = stderr(&out);
    assert!(msg.contains("divergence at event") && msg.contains("spinning at"), "{msg}");
    assert!(msg.contains("in another state"), "{msg}");
}

#[test]
fn sigint_ends_a_replay() {
    let Some(python) = find_program("python3") else {
        eprintln!("SKIP: python3 is not installed");
        return;
    };
    let dir = temp_dir("replay-sigint");
    let (log, _) = recorded(dir.path(), &python, &["-c", "print(sum(range(3 * 10**7)))"]);
    let running = spawn(replay_command(&log, None));
    let pid = running.pid().expect("replay runs") as i32;
    // Once the replayed program exists (a child of ftexec), give it 100 ms into its 1 s loop.
    let children = format!("/proc/{pid}/task/{pid}/children");
    let t0 = std::time::Instant::now();
    while fs::read_to_string(&children).map(|c| c.trim().is_empty()).unwrap_or(true) {
        assert!(t0.elapsed().as_secs() < 10, "the replay never started its program");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    // SAFETY: plain kill(2) of the child we started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let run = running.wait();
    assert_eq!(run.status, 130, "{run}");
    assert!(stderr(&run).contains("replay interrupted by signal 2 at event"), "{run}");
    assert!(run.stdout.is_empty(), "the replay printed the result although interrupted: {run}");
}
