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

/// msgsnd runs holding the token (a receiver must find the message where the log has it). To
/// a full queue it would wait for a receiver that cannot run: the recording stopped there
/// forever. Now it is made non-blocking at record, and a send that would wait stops the
/// recording with an error naming the cause and the fix; one with room in the queue replays.
#[test]
fn msgsnd_to_a_full_queue_is_a_clear_error_not_a_hang() {
    let native_run = native(&c_program("msg_full"), &[]);
    assert_eq!(String::from_utf8_lossy(&native_run.stdout), "sent 3 messages of 6000 bytes, child exited 0\n");
    let tmp = temp_dir("msg-full");
    let log = tmp.path().join("full.ftlog");
    let r = run(record_command(&log, None, &c_program("msg_full"), &[]));
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status, 125, "{r}");
    assert!(err.contains("msgsnd to a full System V message queue") && err.contains("IPC_NOWAIT"), "{err}");
    let rec = assert_replays_times("msg_full", &["room"], 2);
    assert_eq!(String::from_utf8_lossy(&rec.stdout), "sent 3 messages of 100 bytes, child exited 0\n");
}

/// POSIX message queues (issue 16; mq_open was refused with ENOSYS) live in the program's IPC
/// namespace and run for real in record and replay like System V queues: `mqueue`'s child takes
/// six messages with blocking receives (it waits for most) while its parent sends them with
/// priorities; every replay prints the recording's lines, and one with checkpoints refuses them
/// by name while the queue is open (a checkpoint cannot make it again yet). A blocking send on a
/// full queue would wait holding the token: the recording stops with an error naming the cause
/// and the fix.
#[test]
fn posix_message_queues_replay_and_a_full_one_is_a_clear_error() {
    let rec = assert_replays_times("mqueue", &[], 3);
    let out = String::from_utf8_lossy(&rec.stdout);
    assert_eq!(out.matches("child took \"message").count(), 6, "{out}");
    assert!(
        out.contains(
            "child status 0; non-blocking receive on the empty queue: -1 (EAGAIN); maxmsg 4, msgsize 32, now 0"
        ),
        "{out}"
    );
    let tmp = temp_dir("mqueue");
    let log = tmp.path().join("mq.ftlog");
    let recorded = record(&log, None, &c_program("mqueue"), &[]);
    assert_eq!(recorded.status, 0, "{recorded}");
    let mut cmd = replay_command(&log, None);
    cmd.args(["-v", "--checkpoint-every", "1"]);
    let with_checkpoints = run(cmd);
    assert_same_output(&recorded, &with_checkpoints, "mqueue replayed with checkpoints");
    assert!(with_checkpoints.stderr_text().contains("POSIX message queue"), "{with_checkpoints}");
    // None from the queue's making to its unlinking, after its fds are closed too (a queue no
    // fd holds would not be in the checkpoint).
    let (mut index, mut made, mut gone) = (0u64, u64::MAX, 0u64);
    rewrite_log(&log, &tmp.path().join("copy.ftlog"), |ev| {
        index += 1;
        if let Some(ft_libos::EventKind::Syscall(sc)) = &ev.kind {
            match i64::from(sc.nr) {
                libc::SYS_mq_open => made = made.min(index),
                libc::SYS_mq_unlink => gone = index,
                _ => {}
            }
        }
        vec![ev]
    });
    let mut dir = log.as_os_str().to_owned();
    dir.push(".ckpt");
    let taken: Vec<u64> = std::fs::read_dir(std::path::PathBuf::from(dir))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_prefix("event-")?.strip_suffix(".ftckpt")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        gone > made && taken.iter().all(|e| *e < made || *e >= gone),
        "checkpoints at {taken:?}, the queue lived from event {made} to {gone}"
    );
    let r = run(record_command(&tmp.path().join("full.ftlog"), None, &c_program("mqueue"), &["full"]));
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status, 125, "{r}");
    assert!(err.contains("mq_timedsend to a full POSIX message queue") && err.contains("O_NONBLOCK"), "{err}");
    assert_eq!(String::from_utf8_lossy(&r.stdout), "sent 0\nsent 1\nsent 2\nsent 3\n");
}
