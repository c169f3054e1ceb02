//! Checkpoints (issue 18): `ftexec replay LOG --checkpoint-every N` writes the program's whole
//! state (every process and thread) at event boundaries; `--from-checkpoint FILE` restores one in a fresh process and
//! replays the rest of the log. From every checkpoint, the program must print exactly what the
//! full replay printed after that point, and end with the same status (the replay checks every
//! event on the way: a wrong register, page, fd or handler diverges or changes the output).
//!
//! The checkpoint interval is seeded (printed; FT_CHECKPOINT_SEED replays a failure).

use ft_testsuite::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn seed() -> u64 {
    let s = std::env::var("FT_CHECKPOINT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.subsec_nanos() as u64)
    });
    println!("checkpoint seed {s} (FT_CHECKPOINT_SEED={s} to repeat)");
    s
}

/// The checkpoint files of `log`, by event.
fn checkpoints(log: &Path) -> Vec<(u64, PathBuf, serde_json::Value)> {
    let mut dir = log.as_os_str().to_owned();
    dir.push(".ckpt");
    let mut out = Vec::new();
    for e in std::fs::read_dir(PathBuf::from(dir)).map(|d| d.flatten().collect::<Vec<_>>()).unwrap_or_default() {
        let head = ft_libos::snapshot::read_head(&e.path()).expect("a readable checkpoint head");
        let head: serde_json::Value = serde_json::from_slice(&head).expect("a JSON head");
        out.push((head["event"].as_u64().expect("event"), e.path(), head));
    }
    out.sort_by_key(|c| c.0);
    out
}

fn from_checkpoint(log: &Path, file: &Path) -> Run {
    let mut cmd = replay_command(log, None);
    cmd.arg("--from-checkpoint").arg(file);
    run(cmd)
}

/// Restores `file` (a checkpoint of `log` at `event`) and asserts that the program prints
/// exactly what the full replay printed after that point and exits alike.
fn assert_restores_tail(log: &Path, full: &Run, event: u64, file: &Path, head: &serde_json::Value, what: &str) {
    let tail = from_checkpoint(log, file);
    let before = head["stdout_bytes"].as_u64().expect("stdout_bytes") as usize;
    let expected = &full.stdout[before.min(full.stdout.len())..];
    assert!(
        tail.stdout == expected && tail.status == full.status,
        "{what}: from the checkpoint at event {event} ({}): status {} (want {}), stdout:\n{}\n----- want -----\n{}\n----- stderr -----\n{}",
        file.display(),
        tail.status,
        full.status,
        String::from_utf8_lossy(&tail.stdout),
        String::from_utf8_lossy(expected),
        tail.stderr_text()
    );
}

/// Records `name`, replays it taking a checkpoint about every `every` events, and restores up
/// to `samples` of them, each to the same output and status as the full replay's tail.
fn restores_from_checkpoints(name: &str, every: u64, samples: usize, min: usize) {
    let dir = temp_dir(&format!("ckpt-{name}"));
    let log = dir.path().join("run.ftlog");
    let recorded = record(&log, None, &c_program(name), &[]);
    assert_eq!(recorded.status, 0, "{name}: recording failed\n{recorded}");
    let mut cmd = replay_command(&log, None);
    cmd.arg("--checkpoint-every").arg(every.to_string());
    let full = run(cmd);
    assert_same_output(&recorded, &full, &format!("{name}: the replay that takes checkpoints"));
    let all = checkpoints(&log);
    assert!(
        all.len() >= min,
        "{name}: {} checkpoints every {every} events, expected at least {min}\n{full}",
        all.len()
    );
    let picked: Vec<_> = if all.len() <= samples {
        all.iter().collect()
    } else {
        (0..samples).map(|i| &all[i * (all.len() - 1) / (samples - 1).max(1)]).collect()
    };
    for (event, file, head) in picked {
        assert_restores_tail(&log, &full, *event, file, head, name);
        println!("{name}: restored from event {event} ({} bytes of memory): same tail", head["memory_bytes"]);
    }
}

#[test]
fn single_threaded_programs_restore_at_any_checkpoint() {
    let s = seed();
    // (program, base interval, at least this many checkpoints)
    let progs = [
        ("pipe", 3, 3),
        ("eventfd", 3, 3),
        ("mmap_brk", 3, 2),
        ("sig_altstack", 3, 3),
        ("clock_page", 3, 3),
        ("sig_setitimer", 10, 3),
        ("proc_state", 3, 4),
        ("sig_signalfd", 3, 2),
        ("sysbuf", 40, 1),
    ];
    for (name, base, min) in progs {
        restores_from_checkpoints(name, base + s % base.max(2), 6, min);
    }
}

#[test]
fn threads_restore_parked_and_idle() {
    let s = seed();
    for (name, base, min) in
        [("mutex_condvar", 7, 3), ("threads_join", 5, 2), ("racy_counter", 5, 2), ("spin_wait", 7, 1)]
    {
        restores_from_checkpoints(name, base + s % base, 5, min);
    }
}

/// A child and a dead child's pids: after a restore, the next fork gets the pid it had (the
/// namespace's last pid is set again).
#[test]
fn pids_after_a_restore_are_the_recordings() {
    restores_from_checkpoints("pids", 5, 4, 2);
    restores_from_checkpoints("spawn_vfork", 5, 4, 2);
}

/// Process trees: children forked again from their restored parents with their pids, fds
/// shared with the parent taken from the fork, process groups and sessions, a child stopped and
/// continued by its parent, waitid on children that are alive at the checkpoint.
#[test]
fn process_trees_restore_with_pids_fds_and_sessions() {
    let s = seed();
    for (name, base, min) in [
        ("fork_wait", 3, 3),
        ("fork_children", 3, 2),
        ("pgrp_session", 5, 4),
        ("waitid", 3, 3),
        ("sig_stop_cont", 3, 4),
        ("sigchld_wait", 3, 2),
        // shm_open in the program's own /dev/shm and MAP_SHARED anonymous memory a child writes.
        ("shm_posix", 3, 6),
        // System V segments: kept, removed while attached, inherited, and new ones' ids.
        ("sysv_shm", 5, 6),
        // A child with its own umask and resource limits.
        ("child_state", 3, 5),
    ] {
        restores_from_checkpoints(name, base + s % base, 6, min);
    }
}

/// redis-server with its background threads and a client: restored from checkpoints taken
/// after the client's writes, it serves the rest of the log the same way.
#[test]
fn redis_restores_from_its_checkpoints() {
    let Some((_dir, log, server, mut conn)) = record_redis("ckpt-redis", &[]) else { return };
    let reply = redis_reply;
    for i in 0..300 {
        assert_eq!(reply(&mut conn, &format!("SET k{i} v{i}\r\n")), "+OK\r\n");
    }
    let _ = std::io::Write::write_all(&mut conn, b"SHUTDOWN NOSAVE\r\n");
    let recorded = server.wait();
    assert_eq!(recorded.status, 0, "redis recording\n{recorded}");
    let mut cmd = replay_command(&log, None);
    cmd.arg("--checkpoint-every").arg("150");
    let full = run(cmd);
    assert_same_output(&recorded, &full, "redis replay with checkpoints");
    let all = checkpoints(&log);
    assert!(all.len() >= 4, "redis: only {} checkpoints", all.len());
    let late = &all[all.len() * 2 / 3];
    let mid = &all[all.len() / 2];
    for (event, file, head) in [mid, late] {
        assert_restores_tail(&log, &full, *event, file, head, "redis");
    }
}

/// A damaged, a truncated and a foreign checkpoint are refused by name, and nothing runs.
#[test]
fn bad_checkpoints_are_refused_by_name() {
    let dir = temp_dir("ckpt-bad");
    let log = dir.path().join("pipe.ftlog");
    let other = dir.path().join("eventfd.ftlog");
    assert_eq!(record(&log, None, &c_program("pipe"), &[]).status, 0);
    assert_eq!(record(&other, None, &c_program("eventfd"), &[]).status, 0);
    let mut cmd = replay_command(&log, None);
    cmd.arg("--checkpoint-every").arg("5");
    assert_eq!(run(cmd).status, 0);
    let (_, file, _) = checkpoints(&log).into_iter().nth(1).expect("a second checkpoint");
    let good = std::fs::read(&file).expect("read");
    let flipped = dir.path().join("flipped.ftckpt");
    let mut bytes = good.clone();
    let n = bytes.len();
    bytes[n / 2] ^= 0x20;
    std::fs::write(&flipped, &bytes).expect("write");
    let cut = dir.path().join("cut.ftckpt");
    std::fs::write(&cut, &good[..good.len() * 2 / 3]).expect("write");
    let not_one = dir.path().join("text.ftckpt");
    std::fs::write(&not_one, b"just some text\n").expect("write");
    let cases: [(&Path, &Path, &str); 4] = [
        (&log, &flipped, "damaged: the checksum"),
        (&log, &cut, "cut short"),
        (&log, &not_one, "not an ftexec checkpoint"),
        (&other, &file, "belongs to another recording"),
    ];
    for (l, f, want) in cases {
        let r = from_checkpoint(l, f);
        assert_ne!(r.status, 0, "{} was accepted\n{r}", f.display());
        assert!(r.stdout.is_empty(), "the program ran from a bad checkpoint\n{r}");
        assert!(r.stderr_text().contains(want), "{}: want {want:?}\n{r}", f.display());
        assert!(!r.stderr_text().contains("panicked"), "{r}");
    }
    // ftdbg lists the good ones and says what is wrong with the others.
    std::fs::copy(&flipped, file.with_file_name("event-999999.ftckpt")).expect("copy");
    let out = Command::new(ftdbg()).arg("checkpoints").arg(&log).output().expect("ftdbg");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&format!("{}", file.display())), "{text}");
    assert!(text.contains("unusable"), "{text}");
}

fn ftdbg() -> PathBuf {
    ftexec().with_file_name("ftdbg")
}

/// A disk that fills during checkpoints (a 24 KiB tmpfs): the replay goes on to the same output,
/// says why checkpoints were not written, and leaves no partial file behind.
#[test]
fn a_full_disk_loses_no_replay_and_leaves_no_partial_checkpoint() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED: mounting a small tmpfs needs root");
        return;
    }
    let dir = temp_dir("ckpt-full");
    let log = dir.path().join("run.ftlog");
    let recorded = record(&log, None, &c_program("clock_page"), &[]);
    assert_eq!(recorded.status, 0, "{recorded}");
    let small = dir.path().join("small");
    std::fs::create_dir_all(&small).expect("mkdir");
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=24k", "tmpfs"]).arg(&small).status();
    assert!(mounted.is_ok_and(|s| s.success()), "mount tmpfs failed");
    let mut cmd = replay_command(&log, None);
    cmd.arg("--checkpoint-every").arg("3").arg("--checkpoint-dir").arg(&small);
    let full = run(cmd);
    let left: Vec<_> = std::fs::read_dir(&small).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    let whole: Vec<bool> = left.iter().map(|p| ft_libos::snapshot::read(p).is_ok()).collect();
    let _ = Command::new("umount").arg(&small).status();
    assert_same_output(&recorded, &full, "clock_page replayed with checkpoints onto a full disk");
    assert!(full.stderr_text().contains("No space left"), "no word of the full disk:\n{full}");
    assert!(
        left.iter().zip(&whole).all(|(p, ok)| *ok && p.extension().is_some_and(|x| x == "ftckpt")),
        "a partial checkpoint was left: {left:?} {whole:?}"
    );
}

/// nginx with a master (root) and 2 workers (dropped to nobody), their socketpair channels and
/// shared memory: restored from checkpoints taken while it serves, it replays the rest of the log.
#[test]
fn nginx_with_workers_restores_from_its_checkpoints() {
    let nginx = find_program("nginx").or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.exists()));
    let Some(nginx) = nginx else {
        eprintln!("SKIP: nginx is not installed (scripts/deps.sh installs nginx-light)");
        return;
    };
    let dir = temp_dir("ckpt-nginx");
    let prefix = dir.path().join("nginx");
    for d in ["conf", "html", "logs"] {
        std::fs::create_dir_all(prefix.join(d)).expect("mkdir");
    }
    for d in [dir.path(), prefix.as_path(), prefix.join("html").as_path()] {
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    }
    std::fs::write(prefix.join("html/index.html"), "<h1>restored</h1>\n").expect("write");
    let port = free_port();
    std::fs::write(
        prefix.join("conf/nginx.conf"),
        format!(
            "daemon off;\nmaster_process on;\nworker_processes 2;\nerror_log logs/error.log notice;\npid {}/logs/nginx.pid;\n\
             events {{ worker_connections 64; }}\nhttp {{ access_log off; server {{ listen 127.0.0.1:{port}; root {}/html; }} }}\n",
            prefix.display(),
            prefix.display()
        ),
    )
    .expect("write conf");
    let log = dir.path().join("nginx.ftlog");
    let p = prefix.to_string_lossy().into_owned();
    let server = spawn(record_command(&log, None, &nginx, &["-p", &p, "-c", "conf/nginx.conf"]));
    use std::io::{Read, Write};
    for i in 0..30 {
        if i == 0 && std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            std::thread::sleep(std::time::Duration::from_secs(3));
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                panic!("nginx does not listen: {}", String::from_utf8_lossy(&server.stdout_so_far()));
            }
        }
        let mut c = connect_retry(port, std::time::Duration::from_secs(20));
        c.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("send");
        let mut reply = String::new();
        c.read_to_string(&mut reply).expect("reply");
        assert!(reply.ends_with("<h1>restored</h1>\n"), "request {i}: {reply}");
    }
    let master = server.pid().expect("ftexec pid");
    // SIGQUIT to ftexec's program: nginx's master is ftexec's only child's... the program; ask
    // it to stop through its pid file.
    let pid: i32 =
        std::fs::read_to_string(prefix.join("logs/nginx.pid")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    let host = ft_interposer_host_pid(master, pid);
    // SAFETY: a signal to the recorded nginx master.
    unsafe { libc::kill(host, libc::SIGQUIT) };
    let recorded = server.wait();
    assert_eq!(recorded.status, 0, "nginx recording\n{recorded}");
    let mut cmd = replay_command(&log, None);
    cmd.arg("--checkpoint-every").arg("60");
    let full = run(cmd);
    assert_eq!(full.status, 0, "nginx replay with checkpoints\n{full}");
    let all = checkpoints(&log);
    assert!(all.len() >= 5, "nginx: only {} checkpoints\n{full}", all.len());
    for (event, file, head) in all.iter().skip(2).step_by(3) {
        assert_restores_tail(&log, &full, *event, file, head, "nginx");
    }
}

/// The host pid of the program's process whose pid in its namespace is `ns_pid`, among the
/// descendants of `root`.
fn ft_interposer_host_pid(root: u32, ns_pid: i32) -> i32 {
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
        let inner = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|v| v.split_whitespace().last()?.parse::<i32>().ok());
        if inner == Some(ns_pid) && p != root {
            return p as i32;
        }
        for t in std::fs::read_dir(format!("/proc/{p}/task")).into_iter().flatten().flatten() {
            let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            frontier.extend(kids.split_whitespace().filter_map(|k| k.parse::<u32>().ok()));
        }
    }
    panic!("no process {ns_pid} under {root}");
}

/// System V semaphore sets and message queues are kept in checkpoints with their ids, values,
/// messages in order, and the kernel's next ids: `sysv`'s checkpoints, taken while three
/// children contend for its semaphore and send their messages, restore to the full replay's
/// tail (before, no checkpoint was taken while they existed); so do all of `sysv_ckpt`'s (three
/// messages queued, a set of three semaphores, the next ids after a removed queue). A semop with SEM_UNDO leaves the
/// kernel adjustments that a checkpoint cannot read: after the first, none is taken, with the
/// reason logged, and those taken before restore.
#[test]
fn system_v_semaphores_and_queues_are_kept_in_checkpoints() {
    restores_from_checkpoints("sysv", 40 + seed() % 20, 6, 10);
    // sysv_ckpt's checkpoints from its first msgsnd to its last msgrcv: messages queued,
    // values changed, ids moved.
    let dir = temp_dir("ckpt-sysv-queue");
    let log = dir.path().join("run.ftlog");
    let recorded = record(&log, None, &c_program("sysv_ckpt"), &[]);
    assert_eq!(recorded.status, 0, "{recorded}");
    let mut cmd = replay_command(&log, None);
    cmd.args(["--checkpoint-every", &(1 + seed() % 2).to_string()]);
    let full = run(cmd);
    assert_same_output(&recorded, &full, "sysv_ckpt replayed with checkpoints");
    let (mut index, mut window) = (0u64, (u64::MAX, 0u64));
    rewrite_log(&log, &dir.path().join("copy.ftlog"), |ev| {
        index += 1;
        if let Some(ft_libos::EventKind::Syscall(sc)) = &ev.kind {
            match i64::from(sc.nr) {
                libc::SYS_msgsnd => window.0 = window.0.min(index),
                libc::SYS_msgrcv => window.1 = index,
                _ => {}
            }
        }
        vec![ev]
    });
    let inside: Vec<_> = checkpoints(&log).into_iter().filter(|c| c.0 >= window.0 && c.0 < window.1).collect();
    assert!(inside.len() >= 5, "{} checkpoints while messages were queued (events {window:?})", inside.len());
    for (event, file, head) in inside {
        assert_restores_tail(&log, &full, event, &file, &head, "sysv_ckpt");
    }
    let dir = temp_dir("ckpt-sysv-undo");
    let log = dir.path().join("run.ftlog");
    let recorded = record(&log, None, &c_program("sysv"), &["0", "undo"]);
    assert_eq!(recorded.status, 0, "{recorded}");
    let mut cmd = replay_command(&log, None);
    cmd.args(["-v", "--checkpoint-every", "5"]);
    let full = run(cmd);
    assert_same_output(&recorded, &full, "sysv with SEM_UNDO replayed with checkpoints");
    let stderr = full.stderr_text();
    let refused_at = stderr
        .lines()
        .find(|l| l.contains("semop with SEM_UNDO"))
        .and_then(|l| l.rsplit("event: ").next()?.trim().parse::<u64>().ok());
    let Some(refused_at) = refused_at else { panic!("no word of SEM_UNDO:\n{full}") };
    let taken = checkpoints(&log);
    let events: Vec<u64> = taken.iter().map(|c| c.0).collect();
    assert!(events.iter().all(|e| *e < refused_at), "checkpoints at events {events:?}, SEM_UNDO at {refused_at}");
    // The last ones, nearest the semaphore's use.
    for (event, file, head) in taken.into_iter().rev().take(3) {
        assert_restores_tail(&log, &full, event, &file, &head, "sysv with SEM_UNDO");
    }
}
