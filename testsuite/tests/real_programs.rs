//! Real programs that must record and replay identically (issue 2): python3,
//! sqlite3 with a data dir, date, ls -l and sh -c. A test is skipped (with a
//! "SKIP:" line on stderr) only when its program is not installed.

use std::fs;
use std::path::PathBuf;

use ft_testsuite::*;

/// The ELF binary `name` from PATH, or None after printing a SKIP line.
fn program_or_skip(name: &str) -> Option<PathBuf> {
    let found = find_program(name);
    if found.is_none() {
        eprintln!("SKIP: {name} not installed");
    }
    found
}

const PYTHON_SCRIPT: &str = "import os, random, time, uuid
print('time', time.time())
print('random', random.random())
print('uuid', uuid.uuid4())
print('urandom', os.urandom(8).hex())
print('pid', os.getpid())
";

#[test]
fn python3_time_random_uuid_urandom_pid() {
    let Some(python) = program_or_skip("python3") else {
        return;
    };
    let args = ["-c", PYTHON_SCRIPT];
    let native_run = assert_native_differs(&python, &args);
    let recorded = assert_program_replays(&python, &args, "python3");
    assert_like_native(&recorded, &native_run, "python3");
}

const SQLITE_SCRIPT: &str = "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, r INTEGER, at TEXT, blob TEXT);
INSERT INTO t(r, at, blob) VALUES (random(), datetime('now'), hex(randomblob(8)));
INSERT INTO t(r, at, blob) VALUES (random(), datetime('now'), hex(randomblob(8)));
SELECT id, r, at, blob FROM t;
SELECT count(*) FROM t;
";

#[test]
fn sqlite3_with_data_dir() {
    let Some(sqlite3) = program_or_skip("sqlite3") else {
        return;
    };
    let tmp = temp_dir("sqlite3");
    // Two data dirs with the same initial content: A for record, B for replay.
    let a = tmp.path().join("data-a");
    let b = tmp.path().join("data-b");
    for dir in [&a, &b] {
        fs::create_dir(dir).expect("mkdir data dir");
        fs::write(dir.join("seed.txt"), "initial content\n").expect("write seed");
    }
    let db = a.join("test.db");
    let args = [path_str(&db), SQLITE_SCRIPT];
    let log = tmp.path().join("run.ftlog");

    let recorded = record(&log, Some(&a), &sqlite3, &args);
    assert_recorded_ok(&log, &recorded, "sqlite3");
    let text = recorded.stdout_text();
    assert!(text.ends_with("\n2\n"), "unexpected sqlite3 output\n{recorded}");
    let recorded_files = dir_contents(&a);
    assert!(
        recorded_files.contains_key(&PathBuf::from("test.db")),
        "no test.db in the data dir after recording: {:?}",
        recorded_files.keys().collect::<Vec<_>>()
    );

    for round in 1..=2 {
        if round == 2 {
            // Start B again from the initial content.
            fs::remove_dir_all(&b).expect("rm data dir B");
            fs::create_dir(&b).expect("mkdir data dir B");
            fs::write(b.join("seed.txt"), "initial content\n").expect("write seed");
        }
        let replayed = replay(&log, Some(&b));
        assert_same_output(&recorded, &replayed, &format!("sqlite3 (replay {round})"));
        let replayed_files = dir_contents(&b);
        assert!(
            replayed_files == recorded_files,
            "replay {round}: data dir B differs from data dir A after recording: files {:?} vs {:?} \
             (same names but different bytes if the lists are equal)",
            replayed_files.keys().collect::<Vec<_>>(),
            recorded_files.keys().collect::<Vec<_>>()
        );
    }
    assert!(dir_contents(&a) == recorded_files, "replay touched the recording's data dir A");
}

#[test]
fn date_with_nanoseconds() {
    let Some(date) = program_or_skip("date") else {
        return;
    };
    let args = ["+%Y-%m-%d %H:%M:%S.%N %z %s"];
    let native_run = assert_native_differs(&date, &args);
    let recorded = assert_program_replays(&date, &args, "date");
    assert_like_native(&recorded, &native_run, "date");
}

#[test]
fn date_default_format() {
    let Some(date) = program_or_skip("date") else {
        return;
    };
    let recorded = assert_program_replays(&date, &[], "date-default");
    assert_eq!(recorded.stdout_text().lines().count(), 1, "{recorded}");
}

#[test]
fn ls_long_listing() {
    let Some(ls) = program_or_skip("ls") else {
        return;
    };
    let tmp = temp_dir("ls");
    let listed = tmp.path().join("listed");
    fs::create_dir(&listed).expect("mkdir");
    for name in ["alpha", "beta", "gamma"] {
        fs::write(listed.join(name), name.repeat(10)).expect("write");
    }
    fs::create_dir(listed.join("subdir")).expect("mkdir subdir");
    let args = ["-l", "--full-time", path_str(&listed)];
    let native_run = native(&ls, &args);

    let log = tmp.path().join("run.ftlog");
    let recorded = record(&log, None, &ls, &args);
    assert_recorded_ok(&log, &recorded, "ls -l");
    assert_eq!(
        recorded.stdout, native_run.stdout,
        "recorded ls -l differs from native on an unchanged directory\n{recorded}\n{native_run}"
    );

    // Change the directory before replay: the replay must show it as it was.
    fs::write(listed.join("delta"), "new").expect("write");
    fs::remove_file(listed.join("beta")).expect("rm");
    fs::write(listed.join("alpha"), "changed").expect("rewrite");
    assert_replays_log(&log, None, &recorded, "ls -l");
}

#[test]
fn sh_builtins_only() {
    let Some(sh) = program_or_skip("sh") else {
        return;
    };
    let args = ["-c", "echo a; x=$((1+2)); echo $x; printf \"%s\\n\" hi"];
    let recorded = assert_program_replays(&sh, &args, "sh");
    assert_eq!(recorded.stdout_text(), "a\n3\nhi\n", "{recorded}");
}

/// A program that opens /dev/stderr while ftexec's stderr is a pipe (nginx's `error_log
/// /dev/stderr` under a test harness or a service manager): the recorder used to open that pipe
/// itself to look for an ELF header and block for good.
#[test]
fn opening_dev_stderr_on_a_pipe_does_not_hang_the_recorder() {
    let dir = temp_dir("stderr-pipe");
    let log = dir.path().join("sh.ftlog");
    let sh = std::path::Path::new("/bin/sh");
    let recorded = run(record_command(&log, None, sh, &["-c", "echo to-stderr > /dev/stderr; echo done"]));
    assert_eq!(recorded.status, 0, "{recorded}");
    assert_eq!(recorded.stdout_text(), "done\n", "{recorded}");
    assert!(recorded.stderr_text().contains("to-stderr"), "{recorded}");
    let replayed = replay(&log, None);
    assert_same_output(&recorded, &replayed, "sh writing to /dev/stderr");
}

/// A unix socket bound in the data directory leaves its file there. Replay binds nothing: it
/// makes the file (a socket inode with the program's umask), so a later stat or unlink of it
/// has the recorded result (MariaDB's unlink of its socket at shutdown diverged before) and
/// the replica's data directory has the file the leader's has.
#[test]
fn a_unix_socket_bound_in_the_data_dir_leaves_its_file_at_replay() {
    let tmp = temp_dir("unix-socket-file");
    let (a, b) = (tmp.path().join("data-a"), tmp.path().join("data-b"));
    for dir in [&a, &b] {
        fs::create_dir(dir).expect("mkdir data dir");
    }
    let log = tmp.path().join("run.ftlog");
    let prog = c_program("unix_socket_file");
    let recorded = record(&log, Some(&a), &prog, &[path_str(&a)]);
    assert_recorded_ok(&log, &recorded, "unix_socket_file");
    assert_eq!(
        recorded.stdout_text(),
        "stat srv.sock: 0 socket 1 mode 750\nunlink srv.sock: 0\nunlink srv.sock again: -1\n",
        "{recorded}"
    );
    let replayed = replay(&log, Some(&b));
    assert_same_output(&recorded, &replayed, "unix_socket_file (replay)");
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    for dir in [&a, &b] {
        let m = fs::symlink_metadata(dir.join("kept.sock")).expect("kept.sock");
        assert!(m.file_type().is_socket(), "{}: kept.sock is a {:?}", dir.display(), m.file_type());
        assert_eq!(m.permissions().mode() & 0o7777, 0o750, "{}", dir.display());
        assert!(!dir.join("srv.sock").exists(), "{}", dir.display());
    }
}

/// sendfile and copy_file_range (nginx's default `sendfile on`; they were refused with ENOSYS):
/// to a socket they are outputs whose result and offset replay gives, and the file position a
/// sendfile without offset moved moves at replay too (the next read of the data file runs for
/// real there); between data files they run at replay; from a host file into the data
/// directory they fail with EINVAL (replay would not have the bytes).
#[test]
fn sendfile_and_copy_file_range_replay_in_and_out_of_the_data_dir() {
    let tmp = temp_dir("sendfile");
    let (a, b) = (tmp.path().join("data-a"), tmp.path().join("data-b"));
    for dir in [&a, &b] {
        fs::create_dir(dir).expect("mkdir data dir");
        fs::write(dir.join("src.txt"), "0123456789abcdefghij").expect("write");
    }
    let log = tmp.path().join("run.ftlog");
    let prog = c_program("sendfile");
    let native_dir = tmp.path().join("native");
    fs::create_dir(&native_dir).expect("mkdir");
    fs::write(native_dir.join("src.txt"), "0123456789abcdefghij").expect("write");
    let native_run = native(&prog, &[path_str(&native_dir)]);
    let recorded = record(&log, Some(&a), &prog, &[path_str(&a)]);
    assert_recorded_ok(&log, &recorded, "sendfile");
    let text = recorded.stdout_text();
    let expected = "sendfile without offset: 10\nthe socket got 10: 0123456789\nread after it: abcde\n\
                    sendfile at offset 2: 4, offset now 6\nthe socket got 4: 2345\nsendfile data to data: 5\n\
                    copy_file_range data to data: 6, offset now 6\nsendfile host file to data: -1 EINVAL\n\
                    dst.txt: fghij012345\n";
    assert_eq!(text, expected, "{recorded}");
    // Natively the host file's bytes are copied: the only difference is that refusal.
    let native_text = String::from_utf8_lossy(&native_run.stdout);
    assert!(native_text.contains("sendfile host file to data: 4 ?"), "{native_text}");
    let replayed = replay(&log, Some(&b));
    assert_same_output(&recorded, &replayed, "sendfile (replay)");
    assert_eq!(fs::read(b.join("dst.txt")).ok(), fs::read(a.join("dst.txt")).ok());
}
