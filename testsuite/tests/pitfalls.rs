//! The traps of ../shared/PITFALLS.md that apply to a single-threaded tracee, one test each.
//! (Threads, fork/exec, signal restarts: issue #3.)

use ft_testsuite::*;
use std::time::{Duration, Instant};

fn stderr(run: &Run) -> String {
    String::from_utf8_lossy(&run.stderr).into_owned()
}

fn stdout(run: &Run) -> String {
    String::from_utf8_lossy(&run.stdout).into_owned()
}

/// rseq refused, getcpu emulated: sched_getcpu() reads 0 under ftexec on every run (rr #2277).
#[test]
fn rseq_is_refused_and_getcpu_is_emulated() {
    let rec = assert_replays("pitfall_rseq_getcpu", &[]);
    let out = stdout(&rec);
    assert!(out.contains("rseq -1 ENOSYS"), "{out}");
    assert!(out.lines().filter(|l| l.starts_with("sched_getcpu")).all(|l| l == "sched_getcpu 0"), "{out}");
    assert!(out.contains("getcpu 0 cpu 0 node 0"), "{out}");
    // Natively, rseq registration either succeeds or is refused by glibc's own registration
    // (EBUSY/EINVAL), never ENOSYS.
    let native_run = native(&c_program("pitfall_rseq_getcpu"), &[]);
    assert!(!stdout(&native_run).contains("ENOSYS"), "{native_run}");
}

/// io_uring bypasses interposition (rr #2613), ptrace by the tracee cannot work, a message
/// queue's notification is not replayed yet: each fails with an errno the program can handle.
/// (System V IPC and POSIX message queues run, in the program's own IPC namespace:
/// testsuite/tests/ipc.rs.)
#[test]
fn io_uring_ptrace_and_mq_notify_are_refused_with_errnos() {
    let rec = assert_replays("pitfall_refused", &[]);
    let out = stdout(&rec);
    assert!(out.contains("io_uring_setup -1 ENOSYS"), "{out}");
    assert!(out.contains("ptrace_traceme -1 EPERM"), "{out}");
    assert!(out.contains("mq_notify -1 ENOSYS"), "{out}");
    assert!(stderr(&rec).contains("io_uring_setup refused"), "a warning names the syscall: {rec}");
}

/// RDRAND cannot be trapped here (hermit #49): its effect must surface as a divergence, never
/// as a silently wrong replay.
#[test]
fn rdrand_is_detected_as_divergence() {
    let dir = temp_dir("rdrand");
    let log = dir.path().join("run.ftlog");
    let rec = record(&log, None, &c_program("pitfall_rdrand"), &[]);
    assert_eq!(rec.status, 0, "{rec}");
    if stdout(&rec).contains("no-rdrand") {
        eprintln!("SKIP: this CPU has no RDRAND");
        return;
    }
    let rep = replay(&log, None);
    assert_eq!(rep.status, 2, "replaying RDRAND output must be reported as divergence:\n{rep}");
    let err = stderr(&rep);
    assert!(err.contains("divergence at event") && err.contains("write(1"), "{rep}");
    assert!(rep.stdout.is_empty(), "nothing of the diverged output reaches stdout: {rep}");
}

/// A 32-bit syscall is killed by the filter (SIGSYS), with a hint, the same way at replay.
#[test]
fn int80_syscalls_are_killed_with_a_hint() {
    let dir = temp_dir("int80");
    let log = dir.path().join("run.ftlog");
    let rec = record(&log, None, &c_program("pitfall_int80"), &[]);
    assert_eq!(rec.status, 128 + libc::SIGSYS, "{rec}");
    assert_eq!(stdout(&rec), "before\n");
    assert!(stderr(&rec).contains("another architecture"), "{rec}");
    let rep = replay(&log, None);
    assert_eq!((rep.status, rep.stdout), (rec.status, rec.stdout));
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// kill -9 of the tracee in the middle of a recorded syscall (rr #3581): ftexec ends the log
/// with the death, exits 137, and the log replays to the same death.
#[test]
fn sigkill_mid_syscall_is_recorded_and_replayed() {
    let dir = temp_dir("sigkill");
    let log = dir.path().join("run.ftlog");
    let running = spawn(record_command(&log, None, &c_program("sleep_long"), &[]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&running.stdout_so_far()).contains("started") {
        assert!(Instant::now() < deadline, "the program never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100)); // now inside nanosleep
    let ftexec_pid = running.pid().expect("running");
    let tracee = children(ftexec_pid);
    assert_eq!(tracee.len(), 1, "ftexec has one child, the tracee: {tracee:?}");
    // SAFETY: kill(2) with plain integers.
    unsafe { libc::kill(tracee[0] as i32, libc::SIGKILL) };
    let rec = running.wait();
    assert_eq!(rec.status, 137, "{rec}");
    assert!(!stderr(&rec).contains("panicked"), "{rec}");
    let rep = replay(&log, None);
    assert_eq!((rep.status, stdout(&rep)), (137, stdout(&rec)), "{rep}");
}
