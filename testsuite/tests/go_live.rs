//! Going live without a cluster: `ftexec replay LOG --continue-into OUT` replays a recording cut
//! short (as a follower's committed log is when its leader dies), goes live where it ends, and
//! records into OUT. The continued run must finish as the program does, and OUT must replay to
//! exactly what the continued run printed: the handover logged nothing twice and lost nothing.

use ft_libos::{Event, EventKind};
use ft_testsuite::{assert_same_output, c_program, ftexec, record, replay, rewrite_log, run, temp_dir, Run};
use std::path::Path;
use std::process::{Command, Stdio};

/// Copies the events of `log` into `out` up to and including the `n`-th one (counting from 1)
/// that `pick` accepts; returns how many events were kept, None if there are fewer than `n`.
fn cut_after(log: &Path, out: &Path, n: usize, pick: impl Fn(&Event) -> bool) -> Option<usize> {
    let (mut seen, mut kept, mut done) = (0, 0, false);
    rewrite_log(log, out, |ev| {
        if done {
            return Vec::new();
        }
        kept += 1;
        if pick(&ev) {
            seen += 1;
            done = seen == n;
        }
        vec![ev]
    });
    done.then_some(kept)
}

/// The [`ft_testsuite::shape`] of a run's output, its lines sorted: what a continued run must
/// print, in whatever order its deliveries came after the cut.
fn sorted_lines(r: &Run) -> Vec<String> {
    let mut l: Vec<String> = ft_testsuite::shape(&r.stdout).lines().map(str::to_owned).collect();
    l.sort();
    l
}

/// The lines of a run's output that hold no pid, time or count of iterations, exactly (a
/// handler's index, which depends on the order of deliveries, left out), sorted: the values a
/// signal carried and how many handlers ran must survive a failover.
fn exact_lines(r: &Run) -> Vec<String> {
    let varies = ["clock", "iteration", "elapsed"];
    let mut l: Vec<String> = String::from_utf8_lossy(&r.stdout)
        .lines()
        .filter(|line| !line.starts_with("pid ") && !varies.iter().any(|v| line.contains(v)))
        .map(|line| match line.strip_prefix("handler ").and_then(|rest| rest.split_once(": ")) {
            Some((_, what)) => format!("handler: {what}"),
            None => line.to_owned(),
        })
        .collect();
    l.sort();
    l
}

/// `ftexec replay CUT --continue-into OUT`, then `ftexec replay OUT`.
fn continue_then_replay(cut: &Path, out: &Path) -> (Run, Run) {
    let mut cmd = Command::new(ftexec());
    cmd.arg("replay").arg(cut).arg("--continue-into").arg(out).stdin(Stdio::null());
    let continued = run(cmd);
    if continued.status != 0 && std::env::var_os("FT_CUT_KEEP").is_some() {
        let _ = std::fs::copy(cut, "/tmp/failed-cut.ftlog");
    }
    assert_eq!(continued.status, 0, "the continued run failed: {}", String::from_utf8_lossy(&continued.stderr));
    let replayed = replay(out, None);
    if replayed.status != continued.status && std::env::var_os("FT_CUT_KEEP").is_some() {
        let _ = std::fs::copy(cut, "/tmp/failed-cut.ftlog");
        let _ = std::fs::copy(out, "/tmp/failed-out.ftlog");
    }
    (continued, replayed)
}

/// Records `name`, then for every event `pick` accepts (at least `min` of them) cuts the log
/// after it and continues the cut live: the continued run prints the recording's lines (in any
/// order; exactly where no pid, time or count is printed) and OUT replays to its bytes.
fn continue_after_every(tmp: &Path, name: &str, args: &[&str], min: usize, pick: impl Fn(&Event) -> bool) {
    let log = tmp.join(format!("{name}.ftlog"));
    let recorded = record(&log, None, &c_program(name), args);
    assert_eq!(recorded.status, 0, "recording {name} failed: {}", String::from_utf8_lossy(&recorded.stderr));
    let mut n = 1;
    while let Some(kept) = cut_after(&log, &tmp.join("cut.ftlog"), n, &pick) {
        let (continued, replayed) = continue_then_replay(&tmp.join("cut.ftlog"), &tmp.join("out.ftlog"));
        println!("{name} cut after pick {n} (event {kept}):\n{}", String::from_utf8_lossy(&continued.stdout));
        assert_eq!(sorted_lines(&continued), sorted_lines(&recorded), "{name} continued after pick {n}");
        assert_eq!(exact_lines(&continued), exact_lines(&recorded), "{name} after pick {n}: values");
        assert_same_output(&continued, &replayed, &format!("OUT of {name} continued after {n}"));
        n += 1;
    }
    assert!(n > min, "{name}: {} events to cut after, fewer than {min}", n - 1);
}

/// A caught signal whose event is the last of the log: replay has sent it and the kernel has
/// not delivered it yet when the replay goes live. The recorder must deliver it as the one the
/// log has, not take it for a new one (which it would log a second time, and OUT's replay
/// would then deliver twice). And a signal the program sent that it had not taken when the log
/// ends (sig_realtime queues four, blocked, then unblocks them) is still pending in the
/// recording's kernel but not in the replay's (replay does not run kill or sigqueue): going live
/// sends it again, with its siginfo. Cut after every signal event of programs that send
/// themselves or a child signals; the continued run prints the recording's lines (the order of
/// deliveries after the cut may differ, as on another machine), and OUT replays to its bytes.
#[test]
fn a_signal_the_log_ends_with_is_delivered_once_after_going_live() {
    let tmp = temp_dir("live-signal");
    // Signal deliveries, and (with `sends`) the syscalls that send signals: kill, rt_sigqueueinfo,
    // tkill, tgkill, pidfd_send_signal. Not the kill of itself by `sig_kill self`: natively its signal is delivered at
    // that kill's exit; cut in between, it comes at the next syscall after going live.
    let cut_point = |sends: bool| {
        move |ev: &Event| match &ev.kind {
            Some(EventKind::Signal(_)) => true,
            Some(EventKind::Syscall(sc)) => {
                sends && ft_libos::lookup(u64::from(sc.nr)).is_some_and(|s| s.follow.sends.is_some())
            }
            _ => false,
        }
    };
    let programs = [
        ("sig_kill", "child", true),
        ("sig_kill", "pidfd", true),
        ("sig_kill", "self", false),
        ("sig_realtime", "", true),
        ("sig_realtime", "masked", true),
    ];
    for (name, args, sends) in programs {
        let log = tmp.path().join(format!("{name}{args}.ftlog"));
        let args: Vec<&str> = args.split_whitespace().collect();
        let recorded = record(&log, None, &c_program(name), &args);
        assert_eq!(recorded.status, 0, "recording {name} failed: {}", String::from_utf8_lossy(&recorded.stderr));
        let mut n = 1;
        while let Some(kept) = cut_after(&log, &tmp.path().join("cut.ftlog"), n, cut_point(sends)) {
            let out = tmp.path().join("out.ftlog");
            let (continued, replayed) = continue_then_replay(&tmp.path().join("cut.ftlog"), &out);
            println!("{name} {args:?} cut after signal event or send {n} (event {kept}): continued and replayed alike");
            assert_eq!(
                sorted_lines(&continued),
                sorted_lines(&recorded),
                "{name} {args:?} continued after signal {n} (event {kept}):\n{}",
                String::from_utf8_lossy(&continued.stdout)
            );
            assert_eq!(exact_lines(&continued), exact_lines(&recorded), "{name} {args:?} after signal {n}: values");
            assert_same_output(&continued, &replayed, &format!("OUT of {name} {args:?} continued after signal {n}"));
            n += 1;
        }
        assert!(n > 1, "{name} {args:?}: no signal in the recording");
    }
}

/// A child forked at replay ends, and the log ends before its parent's SIGCHLD (the leader died
/// between the two): going live, the parent is owed that SIGCHLD, with the siginfo the kernel
/// gives (replay forks children with exit signal 0, so the kernel sends none), and its
/// waitpid(child) reaps the child.
#[test]
fn a_sigchld_the_log_ends_before_is_sent_after_going_live() {
    let tmp = temp_dir("live-sigchld");
    let log = tmp.path().join("chld.ftlog");
    let recorded = record(&log, None, &c_program("sigchld_wait"), &[]);
    assert_eq!(recorded.status, 0, "recording failed: {}", String::from_utf8_lossy(&recorded.stderr));
    let expected = "sigchld 1: si_code 1 si_status 3 from the child 1\nwaitpid reaped the child 1, exit status 3\n";
    assert_eq!(String::from_utf8_lossy(&recorded.stdout), expected);
    let cut = tmp.path().join("cut.ftlog");
    let child_exit = |ev: &Event| matches!(&ev.kind, Some(EventKind::Exit(e)) if e.task == 1);
    let kept = cut_after(&log, &cut, 1, child_exit).expect("the recording has the child's exit");
    let mut reader = ft_libos::log::LogReader::open(&log).expect("open the recording");
    let mut later_sigchld = 0;
    for i in 1.. {
        let Some(ev) = reader.next_event().expect("read the recording") else { break };
        if i > kept && matches!(&ev.kind, Some(EventKind::Signal(s)) if s.signo == libc::SIGCHLD) {
            later_sigchld += 1;
        }
    }
    assert_eq!(later_sigchld, 1, "the recording's SIGCHLD comes after the child's exit (and is cut off)");
    let (continued, replayed) = continue_then_replay(&cut, &tmp.path().join("out.ftlog"));
    println!("cut after the child's exit (event {kept}):\n{}", String::from_utf8_lossy(&continued.stdout));
    assert_eq!(String::from_utf8_lossy(&continued.stdout), expected, "the continued run");
    assert_same_output(&continued, &replayed, "OUT of the run continued after the child's exit");
}

/// A log that ends between a task's Spawn (or Exec) event and its clone's (or execve's) result:
/// the replay has run that clone or execve for real and the task is inside it when the replay
/// goes live. The recorder takes the task over there and logs the result when the syscall
/// returns (as the followers, at the same point, expect); a vfork child that has not made its
/// first stop gets the registers replay rewrote back there. Cut after every Spawn and Exec of
/// programs that fork (50 children, each of which may end past the cut: its exit_group makes
/// no stop, and the recorder logs the death), vfork, posix_spawn and exec.
#[test]
fn a_log_that_ends_inside_a_clone_or_execve_goes_live() {
    let tmp = temp_dir("live-clone");
    let creates = |ev: &Event| matches!(&ev.kind, Some(EventKind::Spawn(_)) | Some(EventKind::Exec(_)));
    for (name, args) in [("spawn_vfork", ""), ("fork_children", "")] {
        let log = tmp.path().join(format!("{name}.ftlog"));
        let args: Vec<&str> = args.split_whitespace().collect();
        let recorded = record(&log, None, &c_program(name), &args);
        assert_eq!(recorded.status, 0, "recording {name} failed: {}", String::from_utf8_lossy(&recorded.stderr));
        let want = sorted_lines(&recorded);
        let mut n = 1;
        while let Some(kept) = cut_after(&log, &tmp.path().join("cut.ftlog"), n, creates) {
            let (continued, replayed) =
                continue_then_replay(&tmp.path().join("cut.ftlog"), &tmp.path().join("out.ftlog"));
            println!("{name} cut after Spawn/Exec {n} (event {kept}): continued and replayed alike");
            assert_eq!(sorted_lines(&continued), want, "{name} continued after Spawn/Exec {n} (event {kept})");
            assert_same_output(&continued, &replayed, &format!("OUT of {name} continued after Spawn/Exec {n}"));
            n += 1;
        }
        assert!(n > 1, "{name}: no Spawn in the recording");
    }
}

/// Failover at any point: programs with threads, children, pipes, signals and time, their logs
/// cut after every `STRIDE`-th event (from a seeded offset, printed), each continued live and its
/// OUT replayed. The continued run must end as the program does (status 0, the recording's
/// lines) and OUT must replay to its bytes. `FT_CUT_PROGRAMS` and `FT_CUT_OFFSET` choose others.
#[test]
fn a_log_cut_anywhere_goes_live() {
    const STRIDE: usize = 9;
    let tmp = temp_dir("live-anywhere");
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as usize);
    let offset = std::env::var("FT_CUT_OFFSET").ok().and_then(|v| v.parse().ok()).unwrap_or(seed % STRIDE);
    println!("cutting every {STRIDE}th event from offset {offset} (FT_CUT_OFFSET={offset} repeats it)");
    // FT_CUT_PROGRAMS="name[:arg],..." tries other programs of testsuite/c.
    let chosen = std::env::var("FT_CUT_PROGRAMS")
        .unwrap_or_else(|_| "threads_join,pipe,sig_kill:child,mutex_condvar,mqueue".into());
    let programs: Vec<(&str, &str)> = chosen.split(',').map(|p| p.split_once(':').unwrap_or((p, ""))).collect();
    for (name, args) in programs {
        let log = tmp.path().join(format!("{name}.ftlog"));
        let args: Vec<&str> = args.split_whitespace().collect();
        let recorded = record(&log, None, &c_program(name), &args);
        assert_eq!(recorded.status, 0, "recording {name} failed: {}", String::from_utf8_lossy(&recorded.stderr));
        let want = sorted_lines(&recorded);
        let mut cuts = 0;
        let mut k = offset.max(1);
        while let Some(kept) = cut_after(&log, &tmp.path().join("cut.ftlog"), k, |_| true) {
            if std::env::var_os("FT_CUT_KEEP").is_some() {
                eprintln!("{name}: cut after event {kept}");
                let _ = std::fs::copy(tmp.path().join("cut.ftlog"), format!("/tmp/cut-{name}.ftlog"));
            }
            let (continued, replayed) =
                continue_then_replay(&tmp.path().join("cut.ftlog"), &tmp.path().join("out.ftlog"));
            assert_eq!(sorted_lines(&continued), want, "{name} continued after event {kept}");
            assert_same_output(&continued, &replayed, &format!("OUT of {name} continued after event {kept}"));
            cuts += 1;
            k += STRIDE;
        }
        println!("{name}: {cuts} cuts continued and replayed alike");
        assert!(cuts > 3, "{name}: too short a recording");
    }
}

/// Interval timers: replay arms none (the log has their signals), so a replay that goes live
/// arms those the program had armed: a periodic one for its interval, a one-shot one that has
/// not fired yet for its whole value (late by the time already gone by at record). Logs of
/// `sig_setitimer` (every 20 ms, 5 firings) and `sig_alarm` (alarm(1)) cut after the arming
/// syscall and after each SIGALRM: the continued run ends as the recording did (before, it
/// waited forever for a SIGALRM) and OUT replays to its bytes.
#[test]
fn interval_timers_fire_after_going_live() {
    let tmp = temp_dir("live-timers");
    let cut_point = |ev: &Event| match &ev.kind {
        Some(EventKind::Signal(s)) => s.signo == libc::SIGALRM,
        Some(EventKind::Syscall(sc)) => matches!(i64::from(sc.nr), libc::SYS_alarm | libc::SYS_setitimer),
        _ => false,
    };
    continue_after_every(tmp.path(), "sig_setitimer", &[], 1, cut_point);
    continue_after_every(tmp.path(), "sig_alarm", &[], 1, cut_point);
}

/// POSIX timers and timerfds (issue 16): replay runs none of their syscalls, so a replay that
/// goes live makes them again: timerfds at their numbers (registered again in epoll), POSIX
/// timers with their ids (and the kernel's next id the recording's), each armed as it would
/// be now. Before, none was armed: `timers_live` printed "silent" after 5 s and `sig_posix_timer`
/// waited forever. Cut after every syscall that makes, arms or waits on one and after every
/// timer signal: the continued run prints the recording's lines (the ids exactly) and OUT
/// replays to its bytes.
#[test]
fn posix_timers_and_timerfds_fire_after_going_live() {
    let tmp = temp_dir("live-posix-timers");
    let timer_calls = [
        libc::SYS_timerfd_settime,
        libc::SYS_timer_create,
        libc::SYS_timer_settime,
        libc::SYS_timer_delete,
        libc::SYS_epoll_wait,
        libc::SYS_read,
        libc::SYS_poll,
        libc::SYS_rt_sigtimedwait,
    ];
    let cut_point = |ev: &Event| match &ev.kind {
        Some(EventKind::Signal(s)) => s.signo == libc::SIGUSR2,
        Some(EventKind::Syscall(sc)) => timer_calls.contains(&i64::from(sc.nr)),
        _ => false,
    };
    continue_after_every(tmp.path(), "timers_live", &[], 20, cut_point);
    continue_after_every(tmp.path(), "sig_posix_timer", &["usr2"], 5, cut_point);
    // Its absolute time long past when a cut goes live: it fires while going live still
    // injects syscalls (which run with every signal blocked).
    continue_after_every(tmp.path(), "timer_due", &[], 2, cut_point);
}

/// A signalfd (issue 16) is a stand-in at replay (its reads are logged), so a replica that
/// went live kept an eventfd that never became readable: `signalfd_live` printed "signalfd
/// silent" after 5 s. Going live makes a signalfd with the same mask and flags at its number,
/// watched by the same epoll instance; a signal a signalfd read took counts as taken, so going
/// live does not send it again (none is pending at the end). Cut after every kill, epoll_wait
/// and read.
#[test]
fn a_signalfd_works_after_going_live() {
    let tmp = temp_dir("live-signalfd");
    let cut_point = |ev: &Event| match &ev.kind {
        Some(EventKind::Syscall(sc)) => {
            matches!(i64::from(sc.nr), libc::SYS_kill | libc::SYS_epoll_wait | libc::SYS_read | libc::SYS_signalfd4)
        }
        _ => false,
    };
    continue_after_every(tmp.path(), "signalfd_live", &[], 15, cut_point);
}

/// Process state outside memory (issue 16): `proc_state` sets a umask, a lower RLIMIT_NOFILE and
/// a working directory, drops to nobody, then prints what the kernel says of each. Replay runs
/// the syscalls that change that state (before, chdir and setuid ran at record only, and a
/// replica went live as root in the launch directory); cut after every third event, the
/// continued run prints the recording's lines exactly (a relative open finds the marker file of
/// the working directory, /proc/self/status shows uid 65534) and OUT replays to its bytes.
#[test]
fn process_state_survives_going_live() {
    let tmp = temp_dir("live-state");
    let dir = tmp.path().join("www");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("marker"), "served from www\n").unwrap();
    // nobody must reach the directory.
    for d in [tmp.path(), dir.as_path()] {
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let log = tmp.path().join("state.ftlog");
    let dir_arg = dir.to_string_lossy().into_owned();
    let recorded = record(&log, None, &c_program("proc_state"), &[&dir_arg, "4"]);
    assert_eq!(recorded.status, 0, "recording failed: {}", String::from_utf8_lossy(&recorded.stderr));
    let want = String::from_utf8_lossy(&recorded.stdout).into_owned();
    let expected_line = format!(
        "uid 65534/65534/65534 gid 65534/65534/65534 groups 0; Uid: 65534 65534 65534 65534; cwd {dir_arg}; marker served from www; umask 027; nofile 512/1024"
    );
    assert_eq!(want.lines().collect::<Vec<_>>(), vec![expected_line.as_str(); 4], "the recording's own view");
    let mut cuts = 0;
    let mut k = 1;
    while let Some(kept) = cut_after(&log, &tmp.path().join("cut.ftlog"), k, |_| true) {
        let (continued, replayed) = continue_then_replay(&tmp.path().join("cut.ftlog"), &tmp.path().join("out.ftlog"));
        assert_eq!(String::from_utf8_lossy(&continued.stdout), want, "continued after event {kept}");
        assert_same_output(&continued, &replayed, &format!("OUT continued after event {kept}"));
        cuts += 1;
        k += 3;
    }
    println!("{cuts} cuts continued and replayed alike");
    assert!(cuts > 5, "too short a recording");
}

/// The state check can fail: a log whose chdir event says the working directory it left is
/// another one stops the replay at that event, naming the working directory.
#[test]
fn a_process_state_that_differs_from_the_log_stops_the_replay() {
    let tmp = temp_dir("state-differs");
    let log = tmp.path().join("state.ftlog");
    let recorded = record(&log, None, &c_program("proc_state"), &["/tmp", "1"]);
    assert_eq!(recorded.status, 0, "recording failed: {}", String::from_utf8_lossy(&recorded.stderr));
    let bad = tmp.path().join("bad.ftlog");
    let mut changed = 0;
    rewrite_log(&log, &bad, |mut ev| {
        if let Some(EventKind::Syscall(s)) = &mut ev.kind {
            if let Some(st) = s.state.as_mut().filter(|st| st.cwd == b"/tmp") {
                st.cwd = b"/var/tmp".to_vec();
                changed += 1;
            }
        }
        vec![ev]
    });
    assert!(changed > 0, "no state event names /tmp");
    let r = replay(&bad, None);
    assert_ne!(r.status, 0);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("working directory: the log's /var/tmp, this process's /tmp"),
        "the error must name the working directory: {err}"
    );
}

/// An inotify instance (issue 16) is a stand-in at replay (its reads are logged), so a replica
/// that went live kept an eventfd that never became readable: `inotify_live` printed "inotify
/// silent" after 5 s. Going live makes an instance with the same flags at its number and adds
/// and removes its watches in the program's order, so the kernel gives them the descriptors it
/// gave at record (the next watch's too). Cut after every syscall that makes or changes the
/// instance and every read. (Events queued and not read when the log ends are lost: the
/// remade instance did not see them. A cut between an append and its poll would wait 5 s.)
#[test]
fn an_inotify_instance_works_after_going_live() {
    let tmp = temp_dir("live-inotify");
    let watched = tmp.path().join("watched");
    std::fs::create_dir(&watched).expect("a directory to watch");
    let cut_point = |ev: &Event| match &ev.kind {
        Some(EventKind::Syscall(sc)) => matches!(
            i64::from(sc.nr),
            libc::SYS_inotify_init1 | libc::SYS_inotify_add_watch | libc::SYS_inotify_rm_watch | libc::SYS_read
        ),
        _ => false,
    };
    let dir = watched.to_string_lossy().into_owned();
    continue_after_every(tmp.path(), "inotify_live", &[&dir], 8, cut_point);
}
