//! Threads and child processes are out of scope for issue 2: `ftexec record`
//! must refuse such a program with a clear "not supported" error (nonzero
//! status) rather than produce a log that replays wrongly.

use ft_testsuite::*;

fn check_refused(name: &str, native_stdout: &str) {
    let prog = c_program(name);
    let native_run = native(&prog, &[]);
    assert_eq!(native_run.status, 0, "{name} must work natively\n{native_run}");
    assert_eq!(native_run.stdout_text(), native_stdout, "{native_run}");

    let dir = temp_dir(name);
    let log = dir.path().join("run.ftlog");
    let recorded = record(&log, None, &prog, &[]);
    assert_ne!(recorded.status, 0, "ftexec record accepted {name}\n{recorded}");
    assert!(
        recorded.stderr_text().contains("not supported"),
        "ftexec record refused {name} without saying \"not supported\"\n{recorded}"
    );
}

#[test]
fn threads_are_refused() {
    check_refused("threads_refused", "thread result 42\n");
}

#[test]
fn fork_is_refused() {
    check_refused("fork_refused", "child exited 7\n");
}
