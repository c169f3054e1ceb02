//! System V IPC among the program's processes (issue 16, the PostgreSQL case): shared memory, a
//! semaphore and a message queue run for real in record and replay, in the program's own IPC
//! namespace, with the waits ordered by the log.

use ft_testsuite::*;
use std::time::Duration;

/// `sysv`: 3 children add 1000 each to a counter in a shared segment under a semaphore lock
/// (contended: they wait in semop) and report by message queue. Every replay prints the
/// recording's lines (the messages in the recording's order, counter 3000) and ends as it did.
#[test]
fn sysv_shm_semaphores_and_messages_replay() {
    let rec = assert_replays_times("sysv", &[], 3);
    let out = String::from_utf8_lossy(&rec.stdout);
    assert!(out.contains("counter 3000, semaphore 1, attached 1, segment size 4096"), "{out}");
    assert_eq!(out.matches("message type").count(), 3, "{out}");
}

/// Each run has its own IPC namespace: two recordings at once both create the objects of the
/// same key with IPC_EXCL (natively, in one namespace, the second fails with EEXIST), and so do
/// two replays of one log.
#[test]
fn two_runs_at_once_do_not_share_ipc_keys() {
    let tmp = temp_dir("ipc-ns");
    let prog = c_program("sysv");
    let logs = [tmp.path().join("a.ftlog"), tmp.path().join("b.ftlog")];
    let runs: Vec<Running> = logs.iter().map(|l| spawn(record_command(l, None, &prog, &["2"]))).collect();
    for (r, l) in runs.into_iter().zip(&logs) {
        let done = r.wait();
        assert_eq!(done.status, 0, "recording {} failed: {done}", l.display());
    }
    let replays: Vec<Running> = (0..2).map(|_| spawn(replay_command(&logs[0], None))).collect();
    for r in replays {
        let done = r.wait();
        assert_eq!(done.status, 0, "a replay failed: {done}");
    }
    // Natively, the second of two at once is refused: the test can fail.
    let first = spawn(command(&prog, &["2"]));
    std::thread::sleep(Duration::from_millis(300));
    let second = native(&prog, &["0"]);
    assert_ne!(second.status, 0, "natively both runs got the key: {second}");
    assert_eq!(first.wait().status, 0);
}
