//! Threads, child processes and signals (issue #3, the part built so far): one task runs at a
//! time, the schedule is part of the log, and every replay reproduces the recorded output.

use ft_testsuite::*;
use std::collections::HashSet;
use std::path::Path;

fn stdout(run: &Run) -> String {
    String::from_utf8_lossy(&run.stdout).into_owned()
}

/// Records `prog args` once and replays it six times, asserting identical stdout and status.
fn replays_6_times(prog: &Path, args: &[&str], what: &str) -> Run {
    let dir = temp_dir(what);
    let log = dir.path().join("run.ftlog");
    let recorded = record(&log, None, prog, args);
    assert_recorded_ok(&log, &recorded, what);
    for _ in 0..3 {
        assert_replays_log(&log, None, &recorded, what);
    }
    recorded
}

#[test]
fn thread_create_and_join() {
    let rec = replays_6_times(&c_program("threads_join"), &[], "threads_join");
    assert_eq!(stdout(&rec), "thread result 42\n");
}

#[test]
fn fork_and_wait() {
    let rec = replays_6_times(&c_program("fork_wait"), &[], "fork_wait");
    assert_eq!(stdout(&rec), "child exited 7\n");
}

/// A thread writes memory without syscalls while the main thread forks 30 times: each child
/// prints the counter in its copy of the memory, and every replay prints the same values. A fork
/// holds the token at record and replay, so no thread runs while the kernel copies the memory
/// (before, the writer ran during the copy and replay diverged at a child's write).
#[test]
fn a_fork_copies_memory_no_other_thread_is_writing() {
    let rec = replays_6_times(&c_program("fork_while_writing"), &[], "fork_while_writing");
    let out = stdout(&rec);
    assert_eq!(out.lines().filter(|l| l.starts_with("child ")).count(), 30, "{out}");
    assert!(out.ends_with("parent saw the writer run\n"), "{out}");
}

/// The killer test: a racy counter (4 threads × 1,000,000 unlocked increments). Native totals
/// differ from run to run; every replay prints exactly the recorded total.
#[test]
fn racy_counter_replays_its_total() {
    let prog = c_program("racy_counter");
    let rec = replays_6_times(&prog, &[], "racy_counter");
    assert!(stdout(&rec).starts_with("total "), "{rec}");
    // The race is shown natively with 20,000,000 increments per thread: 1,000,000 take about
    // 1.5 ms, so on a loaded machine (CI runs tests side by side on 2 cores) each thread can
    // finish inside one time slice and every run prints 4000000. 20,000,000 span several
    // slices, and a preemption between the load and the store loses updates even on one CPU.
    let totals: HashSet<Vec<u8>> = (0..6).map(|_| native(&prog, &["20000000"]).stdout).collect();
    assert!(totals.len() > 1, "six native runs of 4 x 20,000,000 printed the same total: the race is not real here");
}

/// pthread mutex, condvar, rwlock and barrier between three threads, with recorded time.
#[test]
fn mutex_condvar_rwlock_barrier() {
    let rec = replays_6_times(&c_program("mutex_condvar"), &[], "mutex_condvar");
    let out = stdout(&rec);
    assert_eq!(out.lines().filter(|l| l.starts_with("consumer ")).count(), 200, "{out}");
    assert!(out.ends_with("total 20100\n"), "{out}");
}

/// Threads that map and unmap a file outside the data directory: the kernel chooses each
/// address (replay maps an anonymous copy and compares), so at record it must choose in log
/// order, never while another thread runs on to its unlogged munmap (apache's event MPM diverged
/// this way under load).
#[test]
fn threads_mapping_and_unmapping_files_replay_every_address() {
    let rec = replays_6_times(&c_program("mmap_threads"), &[], "mmap_threads");
    assert!(stdout(&rec).starts_with("sum "), "{rec}");
}

/// 50 children, each printing its pid and the time; the parent reaps them all.
#[test]
fn fifty_children_print_the_time() {
    let rec = replays_6_times(&c_program("fork_children"), &[], "fork_children");
    let out = stdout(&rec);
    assert_eq!(out.lines().filter(|l| l.starts_with("child ")).count(), 50, "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("reaped ")).count(), 50, "{out}");
}

/// A fork the kernel restarted at record: a signal pending in the parent (a traced parent gets
/// even an ignored SIGCHLD queued, when the tracer reaps a child) makes clone return
/// -ERESTARTNOINTR and run again; the log then has that attempt before the Spawn. CI met it
/// once in 50 forks under load. Here the attempt is written into a recording before its first
/// Spawn (the parent is then the only task, so it takes the token back without a Run event,
/// as at record): replay must hold the clone until the log says what it did, not run it for
/// real and create a task the recording does not have.
#[test]
fn a_fork_the_kernel_restarted_at_record_replays() {
    use ft_libos::proto::{event::Kind, Disposition};
    let dir = temp_dir("fork_restart");
    let log = dir.path().join("run.ftlog");
    let recorded = record(&log, None, &c_program("fork_children"), &[]);
    assert_recorded_ok(&log, &recorded, "fork_children");
    let mut clone = None;
    rewrite_log(&log, &dir.path().join("scan.ftlog"), |ev| {
        if let Some(Kind::Syscall(s)) = &ev.kind {
            if s.nr == libc::SYS_clone as u32 && s.ret > 0 && clone.is_none() {
                clone = Some(s.clone());
            }
        }
        vec![ev]
    });
    let mut attempt = clone.expect("the recording has a clone");
    attempt.ret = -513; // ERESTARTNOINTR
    attempt.disposition = Disposition::Inject as i32;
    attempt.mem.clear();
    let restarted = dir.path().join("restarted.ftlog");
    let mut spawns = 0;
    rewrite_log(&log, &restarted, |ev| {
        if matches!(&ev.kind, Some(Kind::Spawn(sp)) if sp.parent == attempt.task) {
            spawns += 1;
            if spawns == 1 {
                return vec![ft_libos::Event { kind: Some(Kind::Syscall(attempt.clone())) }, ev];
            }
        }
        vec![ev]
    });
    assert_eq!(spawns, 50, "Spawn events of the parent");
    for _ in 0..2 {
        assert_same_output(&recorded, &replay(&restarted, None), "fork_children with a restarted fork");
    }
}

#[test]
fn shell_pipeline() {
    let dir = temp_dir("pipeline-files");
    for f in ["a", "b", "c"] {
        std::fs::write(dir.path().join(f), f).expect("write");
    }
    let script = format!("date +%s.%N | sha256sum; ls {} | wc -l; echo $$", path_str(dir.path()));
    let rec = replays_6_times(Path::new("/bin/sh"), &["-c", &script], "pipeline");
    let out = stdout(&rec);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].ends_with("  -") && lines[0].len() == 67, "{out}");
    assert_eq!(lines[1], "3");
}

#[test]
fn make_j2() {
    let Some(make) = find_program("make") else {
        eprintln!("SKIP: make not installed");
        return;
    };
    let dir = temp_dir("make");
    std::fs::write(
        dir.path().join("Makefile"),
        "all: c\na:\n\techo A $$(date +%N) > a\nb:\n\techo B $$(date +%N) > b\nc: a b\n\tcat a b\n",
    )
    .expect("write Makefile");
    let log = dir.path().join("make.ftlog");
    let dir_arg = path_str(dir.path()).to_string();
    let recorded = record(&log, None, &make, &["-j2", "-C", &dir_arg]);
    assert_recorded_ok(&log, &recorded, "make");
    assert!(stdout(&recorded).contains("A ") && stdout(&recorded).contains("B "), "{recorded}");
    // Replay touches no file: the targets made at record stay, and replay still prints the same.
    for _ in 0..3 {
        assert_replays_log(&log, None, &recorded, "make");
    }
}

/// The number of Preempt events in a log (ftdbg stats).
fn preemptions(log: &Path) -> u64 {
    ftdbg_stats(log)["preemptions"].as_u64().unwrap_or(0)
}

/// A spin lock built from atomic_exchange whose holder sleeps inside the critical section: the
/// other thread spins without syscalls, and only a preemption lets the holder go on (hermit
/// #33). The spinner is preempted at a fixpoint (the exchange writes 1 over 1), and every replay
/// reproduces the order in which the threads took the lock.
#[test]
fn spin_lock_spinner_is_preempted_and_replays() {
    let prog = c_program("spinlock");
    let dir = temp_dir("spinlock");
    let log = dir.path().join("run.ftlog");
    let rec = record(&log, None, &prog, &[]);
    assert_recorded_ok(&log, &rec, "spinlock");
    assert!(stdout(&rec).starts_with("shared 2000 order "), "{rec}");
    assert!(preemptions(&log) >= 1, "the spinner was never preempted: {}", ftdbg_stats(&log));
    for _ in 0..3 {
        assert_replays_log(&log, None, &rec, "spinlock");
    }
}

/// Two threads hand a turn back and forth, each spinning on an atomic until the other stores:
/// every handoff needs a preemption. Native runs print different clock stamps; every replay
/// prints the recorded ones.
#[test]
fn spin_wait_handoffs_are_preempted_and_replay() {
    let prog = c_program("spin_wait");
    let dir = temp_dir("spin_wait");
    let log = dir.path().join("run.ftlog");
    let rec = record(&log, None, &prog, &["20"]);
    assert_recorded_ok(&log, &rec, "spin_wait");
    assert!(stdout(&rec).starts_with("rounds 20 ordered 1 stamps "), "{rec}");
    let n = preemptions(&log);
    assert!(n >= 20, "20 handoffs with {n} preemptions: {}", ftdbg_stats(&log));
    for _ in 0..3 {
        assert_replays_log(&log, None, &rec, "spin_wait");
    }
    assert_native_pair_differs(&native(&prog, &["20"]), &native(&prog, &["20"]), "spin_wait");
}

/// A thread that waits for another by counting (registers change every iteration) is never at
/// a fixpoint: without a PMU it cannot be preempted. The recording must end with a clear error
/// after 10 s instead of hanging (hermit #33).
#[test]
fn counting_spinner_is_reported_not_hung() {
    let prog = c_program("spin_count");
    let dir = temp_dir("spin_count");
    let log = dir.path().join("run.ftlog");
    let rec = record(&log, None, &prog, &[]);
    assert_eq!(rec.status, 125, "{rec}");
    let err = String::from_utf8_lossy(&rec.stderr);
    assert!(err.contains("without a syscall") && err.contains("PMU") && err.contains("spin-wait"), "{err}");
    assert_eq!(native(&prog, &[]).status, 0);
}

/// A racy linked list (4 threads × 20,000 unlocked pushes): natively pushes are lost and the
/// order differs; every replay prints the recorded length and order.
#[test]
fn racy_linked_list_replays_its_length_and_order() {
    let prog = c_program("racy_list");
    let rec = replays_6_times(&prog, &[], "racy_list");
    assert!(stdout(&rec).starts_with("length "), "{rec}");
    // Shown natively with 2,000,000 pushes per thread (about 50 ms), for the reason given in
    // racy_counter_replays_its_total: 20,000 can finish inside one time slice on a loaded machine.
    let lists: HashSet<Vec<u8>> = (0..6).map(|_| native(&prog, &["2000000"]).stdout).collect();
    assert!(
        lists.len() > 1,
        "six native runs of 4 x 2,000,000 pushes printed the same list: the race is not real here"
    );
}

#[test]
fn pids_are_the_same_in_every_run_inside_a_pid_namespace() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: a PID namespace needs root; without it ftexec records the real pids");
        return;
    }
    let run = replays_6_times(&c_program("pid_ns"), &[], "pid-ns");
    let out = stdout(&run);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"pid 2 ppid 1"), "{out}");
    assert!(lines.contains(&"thread tid 3"), "{out}");
    assert!(lines.contains(&"child pid 4 ppid 2"), "{out}");
    assert_eq!(lines.last(), Some(&"forked 4; /proc/<own pid>/comm pid_ns"), "{out}");
}

/// A native run of the C program `name args` (must succeed), then one recording replayed 5
/// times with identical stdout and status; the recording must look like the native run (same
/// lines, numbers aside). Returns the recording's stdout.
fn like_native_replays_5_times(name: &str, args: &[&str]) -> String {
    let native_run = native(&c_program(name), args);
    assert_eq!(native_run.status, 0, "{name} {args:?}: native run failed\n{native_run}");
    let recorded = assert_replays_times(name, args, 5);
    assert_like_native(&recorded, &native_run, name);
    stdout(&recorded)
}

/// Two children in a new process group (setpgid), both reached by one kill(-pgid, SIGUSR1) and
/// reaped by waitpid(-pgid); a child that calls setsid leads a new session and group.
#[test]
fn process_groups_and_sessions() {
    let out = like_native_replays_5_times("pgrp_session", &[]);
    let expected_tail = "getpgid(first) is first 1, getpgid(second) is first 1, parent in it 0\n\
         kill(-group, SIGUSR1) returned 0\n\
         waitpid(-group) reaped the first with 10 and the second with 11\n\
         waitpid(-group) again: -1 ECHILD\n\
         setsid returned own pid 1, getsid(0) is own pid 1, getpgrp() is own pid 1, old session differs 1, \
         setpgid as session leader EPERM\n\
         parent: getsid(child) is child 1, own session differs 1\n\
         session child exited 0\n";
    assert!(out.ends_with(expected_tail), "{out}");
    let first = out.lines().next().unwrap_or_default();
    let words: Vec<&str> = first.split(' ').collect();
    // "children A B group A": the group is the first child's pid.
    assert_eq!(words.len(), 5, "{first}");
    assert_eq!(words[1], words[4], "the group is not the first child's pid: {first}");
    assert_ne!(words[1], words[2], "{first}");
}

/// execve from a thread that is not the main thread: the other threads vanish, the new image
/// runs alone with the old pid (the exec'ing thread took over the leader's tid). The main
/// thread waits in pthread_join ("join") or makes syscalls meanwhile ("busy").
#[test]
fn execve_from_a_thread() {
    for mode in ["join", "busy"] {
        let out = like_native_replays_5_times("exec_thread", &[mode]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{mode}: {out}");
        assert!(lines[0].starts_with("main: pid ") && lines[0].ends_with(" threads before 1"), "{out}");
        assert!(lines[1].starts_with("thread: pid ") && lines[1].ends_with(" is the main thread 0; calling execve"));
        assert_eq!(
            lines[2],
            "after execve: pid is the old pid 1, tid is the old pid 1, old exec'ing tid differed 1, threads 1",
            "{mode}: {out}"
        );
        let pid = lines[0]["main: pid ".len()..].split(' ').next().unwrap_or_default();
        assert!(lines[3].starts_with(&format!("after execve: pid {pid} clock ")), "{mode}: {out}");
    }
}

/// vfork + execve and posix_spawn (plain, and with its stdout dup2'ed into a pipe): each child
/// runs this program again, prints, and exits with its own code, which waitpid reports.
#[test]
fn vfork_execve_and_posix_spawn() {
    let out = like_native_replays_5_times("spawn_vfork", &[]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    assert!(lines[0].starts_with("child of vfork: parent is the starter 1; pid "), "{out}");
    assert_eq!(lines[1], "vfork: waitpid returned the child 1, exited 1 with 3");
    assert!(lines[2].starts_with("child of posix_spawn: parent is the starter 1; pid "), "{out}");
    assert_eq!(lines[3], "posix_spawn: waitpid returned the child 1, exited 1 with 4");
    assert!(
        lines[4].starts_with("read from the pipe: child of posix_spawn-to-pipe: parent is the starter 1; pid "),
        "{out}"
    );
    assert_eq!(lines[5], "posix_spawn-to-pipe: waitpid returned the child 1, exited 1 with 4");
}

/// waitid(P_PID, WEXITED): WNOHANG before the child ends, WNOWAIT, the reaping call, ECHILD after
/// it, and CLD_KILLED for a child killed by SIGTERM.
#[test]
fn waitid_p_pid_wexited() {
    let out = like_native_replays_5_times("waitid", &[]);
    let expected = "WNOHANG while it waits: returned 0, si_pid 0\n\
         WNOWAIT: returned 0, si_pid is the child 1, si_signo SIGCHLD, si_code CLD_EXITED, si_status 42\n\
         WEXITED: returned 0, si_pid is the child 1, si_signo SIGCHLD, si_code CLD_EXITED, si_status 42\n\
         again: returned -1 ECHILD\n\
         killed: returned 0, si_pid is the child 1, si_signo SIGCHLD, si_code CLD_KILLED, si_status 15\n";
    assert!(out.starts_with("child ") && out.ends_with(expected), "{out}");
}

/// A program whose first process forks into the background and exits (a daemon) ends there:
/// its PID namespace ends with that process, the recorder kills the child at a point the log
/// fixes, replay kills it at the same point, and ftexec says how to run such a server.
#[test]
fn a_daemon_that_forks_into_the_background_ends_with_its_first_process_and_ftexec_says_why() {
    let rec = replays_6_times(&c_program("daemonize"), &[], "daemonize");
    assert_eq!(rec.status, 0);
    assert_eq!(stdout(&rec), "parent: forked the background child, exiting\n");
    let err = String::from_utf8_lossy(&rec.stderr);
    assert!(err.contains("must run in the foreground under ftexec"), "{err}");
}
