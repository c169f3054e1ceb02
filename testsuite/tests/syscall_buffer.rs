//! The syscall buffer (issue 17): socket syscalls recorded in the program without a ptrace stop,
//! through rewritten call sites. Each program is recorded with the buffer on and off, and every
//! recording replays byte for byte. The buffer-on recordings must really have used it (rewritten
//! sites, buffered syscalls in `ftdbg stats`), and the buffer-off ones must not.

use ft_testsuite::*;
use std::path::Path;

/// Records `prog args` with the syscall buffer on or off, replays it three times with the same
/// output, and returns the recording and its `ftdbg stats`.
fn record_both_ways(prog: &Path, args: &[&str], what: &str, buffer: bool) -> (Run, serde_json::Value) {
    let what = format!("{what}-{}", if buffer { "buffered" } else { "traced" });
    let dir = temp_dir(&what);
    let log = dir.path().join("run.ftlog");
    let mut cmd = record_command(&log, None, prog, args);
    cmd.env("FTEXEC_SYSCALL_BUFFER", if buffer { "1" } else { "0" });
    let recorded = run(cmd);
    assert_recorded_ok(&log, &recorded, &what);
    for round in 1..=3 {
        let replayed = replay(&log, None);
        assert_same_output(&recorded, &replayed, &format!("{what} (replay {round})"));
    }
    let stats = ftdbg_stats(&log);
    (recorded, stats)
}

fn count(stats: &serde_json::Value, key: &str) -> u64 {
    stats[key].as_u64().unwrap_or_else(|| panic!("no {key} in ftdbg stats: {stats}"))
}

#[test]
fn socket_families_replay_with_and_without_the_buffer() {
    let prog = c_program("sysbuf");
    let native_run = native(&prog, &[]);
    assert_eq!(native_run.status, 0, "native run failed\n{native_run}");
    let (on, on_stats) = record_both_ways(&prog, &[], "sysbuf", true);
    let (off, off_stats) = record_both_ways(&prog, &[], "sysbuf", false);
    for r in [&on, &off] {
        assert_like_native(r, &native_run, "sysbuf");
        let out = r.stdout_text();
        assert!(out.contains(" exit 0\n") && out.contains("eof read 0\n"), "{out}");
    }
    assert!(count(&on_stats, "patched_sites") >= 3, "the buffer rewrote no sites: {on_stats}");
    assert!(count(&on_stats, "buffered") >= 50, "the buffer recorded too little: {on_stats}");
    assert_eq!(count(&off_stats, "patched_sites"), 0, "{off_stats}");
    // poll, of 2 fds, once per round: most of its calls recorded in the program (the ones
    // that would wait are traced).
    let poll = &on_stats["by_syscall"]["poll"];
    assert_eq!(poll["calls"].as_u64(), Some(40), "{on_stats}");
    assert!(poll["buffered"].as_u64() >= Some(10), "too few polls buffered: {on_stats}");
    assert_eq!(count(&off_stats, "buffered"), 0, "{off_stats}");
    // The plain sendmsgs (5 of 10) are answered on a copy of the fd (one stop); the ones with
    // an fd in their control data run in the tracee.
    for stats in [&on_stats, &off_stats] {
        let sendmsg = &stats["by_syscall"]["sendmsg"];
        assert_eq!((sendmsg["calls"].as_u64(), sendmsg["one_stop"].as_u64()), (Some(10), Some(5)), "{stats}");
    }
}

/// redis-server under record with the buffer, a client's commands, then replay: the log's
/// buffered reads, writes and epoll_waits replay to the same output and exit.
#[test]
fn redis_with_the_buffer_replays() {
    let Some((_dir, log, server, mut conn)) = record_redis("sysbuf-redis", &[("FTEXEC_SYSCALL_BUFFER", "1")]) else {
        return;
    };
    let reply = redis_reply;
    for i in 0..200 {
        assert_eq!(reply(&mut conn, &format!("SET k{i} v{i}\r\n")), "+OK\r\n");
    }
    assert_eq!(reply(&mut conn, "GET k123\r\n"), "$4\r\nv123\r\n");
    let _ = std::io::Write::write_all(&mut conn, b"SHUTDOWN NOSAVE\r\n");
    let recorded = server.wait();
    assert_recorded_ok(&log, &recorded, "redis");
    let stats = ftdbg_stats(&log);
    assert!(count(&stats, "buffered") >= 200, "redis recorded too little through the buffer: {stats}");
    let replayed = replay(&log, None);
    assert_same_output(&recorded, &replayed, "redis with the buffer");
}
