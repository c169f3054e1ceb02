//! `ftexec run`: one replica of a replicated program. The leader records into the Raft log
//! (group commit, output commit); followers replay the committed log in lockstep; a follower that
//! wins an election replays what is committed, then goes live.
//!
//! The Raft adapters (source, sink, batches) are `ft_replay::raft`; this file runs the process:
//! config, the replica's data copy, signals, fault injection, the main loop.

use anyhow::{bail, Context};
use ft_consensus::{ClusterConfig, Node, NodeOptions};
use ft_replay::raft::{Mode, Progress, RaftSink, RaftSource};
use ft_replay::{GoLive, RecordOptions, ReplayOptions};
use slog::{info, warn, Logger};
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a replica whose program ended keeps serving Raft for the others (see [`linger`]).
const LINGER: Duration = Duration::from_secs(5);

/// The program ended here; the other replicas may not have replayed to its end yet, and they
/// need a quorum and a leader to learn that the last entries are committed. A leader stays until
/// every voter holds its whole log, then a few heartbeats longer (they carry the commit index);
/// a follower stays a moment, to vote for whichever replica must still finish. Bounded by
/// [`LINGER`]: a replica that is down does not keep the others forever.
fn linger(node: &Node, log: &Logger) {
    let t0 = Instant::now();
    let mut held_since: Option<Instant> = None;
    while t0.elapsed() < LINGER {
        let st = node.status();
        if st.role != ft_consensus::Role::Leader {
            if t0.elapsed() >= Duration::from_secs(2) {
                return;
            }
        } else if st.held_by_all >= st.last_index {
            let since = *held_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_millis(300) {
                return;
            }
        } else {
            held_since = None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    info!(log, "stopping although a replica may not have reached the program's end"; "waited_ms" => LINGER.as_millis() as u64);
}

/// The program's environment when the config names none: the same on every replica.
pub const DEFAULT_ENV: &[&str] = &["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"];

/// What the replica is doing, for `ftctl status`.
fn status_json(p: &Progress, checkpoints: &Path) -> serde_json::Value {
    let newest = crate::share::list(checkpoints).into_iter().next().map(|(name, event, raft_index, bytes)| {
        let age = std::fs::metadata(checkpoints.join(name))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .map_or(0, |d| d.as_secs());
        serde_json::json!({"event": event, "raft_index": raft_index, "bytes": bytes, "age_s": age})
    });
    serde_json::json!({
        "pid": std::process::id(),
        "mode": p.mode().name(),
        "events": p.events(),
        "lag_ms": p.lag_ms(),
        "checkpoint": newest,
    })
}

static RECORDING: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let pid = ft_replay::current_tracee();
    if RECORDING.load(Ordering::Relaxed) && pid > 0 {
        // The leader stops the program; its exit is logged and every replica ends with it.
        // SAFETY: `info` is the siginfo the kernel passed to this SA_SIGINFO handler.
        ft_replay::pass_stop_signal(sig, unsafe { ft_replay::from_kernel(info) });
    } else {
        // A follower just leaves (its tracee dies with it: PTRACE_O_EXITKILL), and says so.
        let mut msg = *b"ftexec: stopped by signal NN\n";
        let n = sig.clamp(0, 99) as u8;
        let len = if n >= 10 {
            msg[26] = b'0' + n / 10;
            msg[27] = b'0' + n % 10;
            msg.len()
        } else {
            msg[26] = b'0' + n;
            msg[27] = b'\n';
            msg.len() - 1
        };
        // SAFETY: write and _exit are async-signal-safe; msg is a local buffer of len bytes or more.
        unsafe {
            libc::write(2, msg.as_ptr().cast(), len);
            libc::_exit(128 + sig)
        };
    }
}

/// The environment variable that lets `ftctl fault` partition a replica (tests only).
pub const FAULT_INJECTION_VAR: &str = "FTEXEC_FAULT_INJECTION";

fn fault_injection() -> bool {
    std::env::var_os(FAULT_INJECTION_VAR).is_some_and(|v| v == "1")
}

/// The program a replica runs: from the config, or from the command line (after `--`).
fn service_command(cfg: &ClusterConfig, command: &[OsString]) -> anyhow::Result<Vec<OsString>> {
    if !command.is_empty() {
        return Ok(command.to_vec());
    }
    match &cfg.service {
        Some(s) => Ok(s.command.iter().map(OsString::from).collect()),
        None => bail!("no program to run: add a [service] section with `command = [...]` to the config, or give PROG ARGS after `--`"),
    }
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .context("running cp")?;
    if !st.success() {
        bail!("copying {} to {} failed", from.display(), to.display());
    }
    Ok(())
}

/// The checkpoint this replica starts from: its newest usable one that its log reaches back
/// to (the log holds the entries from the checkpoint's on). A log compacted past every local
/// checkpoint (the others compacted while this replica was down) needs one from a peer;
/// without one, the replica cannot start and says why.
fn choose_checkpoint(
    cfg: &ClusterConfig,
    id: u64,
    raft_dir: &Path,
    dir: &Path,
    log: &Logger,
) -> anyhow::Result<Option<ft_replay::replay::UsableCheckpoint>> {
    let first = ft_consensus::storage::read_committed(raft_dir).map_or(1, |l| l.first_index);
    let t0 = Instant::now();
    loop {
        let c = ft_replay::replay::newest_usable_checkpoint(dir, log).filter(|c| c.head.raft_index >= first);
        if c.is_none() {
            // Its parts were preloaded for a restore that will not come.
            ft_replay::replay::forget_preloaded_checkpoint();
        }
        if c.is_some() || first <= 2 {
            return Ok(c);
        }
        if crate::share::fetch_newest(cfg, id, dir, 0, first, log).is_some() {
            continue;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!(
                "this replica's Raft log begins at entry {first} (the entries before went into a checkpoint) and no peer could give a checkpoint at or after it within 60 s; start the other replicas, or remove {} to rejoin as a new replica",
                raft_dir.display()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The cluster compacted its log past this replica: starts `ftexec` over in this process (same
/// arguments), whose start fetches a checkpoint the log reaches. Returns only on failure.
fn restart_in_place(node: &Node, e: &ft_replay::SessionError, log: &Logger) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    warn!(log, "restarting"; "why" => %e);
    node.shutdown();
    let err = std::process::Command::new("/proc/self/exe").args(std::env::args_os().skip(1)).exec();
    anyhow::anyhow!("{e}; restarting ftexec failed: {err}")
}

/// Runs replica `id` of the cluster in `config`; returns the program's status.
pub fn run(config: &Path, id: u64, command: &[OsString], log: &Logger) -> anyhow::Result<i32> {
    let cfg = ClusterConfig::load(config)?;
    let me = cfg.node(id)?.clone();
    let argv = service_command(&cfg, command)?;
    let svc = cfg.service.clone();
    let data_dir = svc.as_ref().and_then(|s| s.data_dir.clone());
    let service_dir = me.service_dir.clone().unwrap_or_else(|| me.data_dir.join("service"));
    // A replica restores its newest checkpoint (which holds the data directory's content at
    // that point) and replays the log after it; without one, it replays from the start, so
    // its data copy starts from the initial state.
    let checkpoint_dir = me.data_dir.join("checkpoints");
    let chosen = if cfg.snapshot.every_events > 0 {
        choose_checkpoint(&cfg, id, &me.data_dir, &checkpoint_dir, log)?
    } else {
        None
    };
    if let Some(c) = &chosen {
        info!(log, "restoring from a checkpoint instead of replaying the log from its start";
            "file" => %c.path.display(), "event" => c.head.event, "raft_index" => c.head.raft_index);
    }
    if data_dir.is_some() && chosen.is_none() {
        if service_dir.exists() {
            std::fs::remove_dir_all(&service_dir)
                .with_context(|| format!("clearing the replica's data copy {}", service_dir.display()))?;
        }
        std::fs::create_dir_all(&service_dir)
            .with_context(|| format!("creating the replica's data copy {}", service_dir.display()))?;
        if let Some(init) = svc.as_ref().and_then(|s| s.initial_data.as_ref()) {
            copy_dir(init, &service_dir)?;
            // The directory itself too (PostgreSQL wants its data directory its own, 0700).
            // Ownership as `cp -a` keeps it: as root; a user's copy is that user's own.
            let md = std::fs::metadata(init).with_context(|| format!("reading {}", init.display()))?;
            // SAFETY: geteuid has no preconditions and cannot fail.
            if unsafe { libc::geteuid() } == 0 {
                std::os::unix::fs::chown(&service_dir, Some(md.uid()), Some(md.gid()))
                    .with_context(|| format!("giving {} the owner of {}", service_dir.display(), init.display()))?;
            }
            std::fs::set_permissions(&service_dir, md.permissions())
                .with_context(|| format!("giving {} the mode of {}", service_dir.display(), init.display()))?;
        }
    }
    if let Some(d) = &data_dir {
        std::fs::create_dir_all(d).with_context(|| format!("creating the mount point {}", d.display()))?;
    }
    let cwd =
        svc.as_ref().and_then(|s| s.cwd.clone()).or_else(|| data_dir.clone()).unwrap_or_else(|| PathBuf::from("/"));
    let env: Vec<OsString> = match svc.as_ref().map(|s| s.env.clone()).filter(|e| !e.is_empty()) {
        Some(e) => e.into_iter().map(OsString::from).collect(),
        None => DEFAULT_ENV.iter().map(OsString::from).collect(),
    };
    let opts = RecordOptions { prog: argv[0].clone(), argv: argv.clone(), env, cwd, data_dir: data_dir.clone() };
    let (_exe, mut header) = ft_replay::record::header(&opts)?;
    if data_dir.is_some() {
        header.data_dir_digest = ft_libos::digest::dir(&service_dir)
            .map_err(|e| anyhow::anyhow!("reading {}: {}", service_dir.display(), e))?;
    }

    let progress = Arc::new(Progress::default());
    let faults = fault_injection();
    let node = Arc::new(Node::start(
        &cfg,
        id,
        NodeOptions {
            logger: log.clone(),
            persist_isolation: faults,
            applied: chosen.as_ref().map_or(0, |c| c.head.raft_index.saturating_sub(1)),
            ..Default::default()
        },
    )?);
    if let Some(addr) = &me.control_addr {
        let p = progress.clone();
        let dir = checkpoint_dir.clone();
        let hook: ft_consensus::control::StatusHook = Arc::new(move || status_json(&p, &dir));
        if faults {
            warn!(log, "fault injection is enabled ({FAULT_INJECTION_VAR}=1): `ftctl fault` can partition this node");
        }
        let access = ft_consensus::control::Access {
            test_mode: false,
            fault_injection: faults,
            enable_hint: format!("start its `ftexec run` with {FAULT_INJECTION_VAR}=1 in the environment"),
        };
        let commands = crate::share::commands(checkpoint_dir.clone());
        ft_consensus::control::serve_hooks(node.clone(), addr, access, Some(hook), Some(commands), log.clone())?;
    }
    if cfg.snapshot.every_events > 0 {
        crate::share::spawn_keeper(
            node.clone(),
            cfg.clone(),
            id,
            checkpoint_dir.clone(),
            cfg.snapshot.keep,
            log.clone(),
        );
    }
    let rx = node.take_committed().context("the committed stream was taken twice")?;
    // A deposed leader stops its program at once: it is ahead of the committed log.
    let watch = node.subscribe_leadership();
    let wlog = log.clone();
    std::thread::spawn(move || {
        for change in watch.iter() {
            if !change.is_self && RECORDING.load(Ordering::Relaxed) {
                let pid = ft_replay::current_tracee();
                warn!(wlog, "lost leadership: killing the program"; "term" => change.term, "pid" => pid);
                if pid > 0 {
                    // SAFETY: plain kill of our tracee.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    });
    // The handler only calls async-signal-safe functions.
    ft_replay::on_signals(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP], on_stop_signal);
    let mut source = RaftSource::new(node.clone(), rx, progress.clone());
    if let Some(c) = &chosen {
        source = source.resume_at(c.head.raft_index, c.head.raft_first_event, c.header.clone());
    }
    let bind = match &data_dir {
        Some(d) => {
            let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).ok();
            c(&std::fs::canonicalize(&service_dir)?).zip(c(d))
        }
        None => None,
    };
    let first = match source.wait_header() {
        Err(e @ ft_replay::SessionError::Compacted { .. }) => return Err(restart_in_place(&node, &e, log)),
        other => other?,
    };
    let result = match first {
        None => {
            info!(log, "leading a new cluster: starting the program"; "node" => id);
            let mut sink = RaftSink::new(node.clone(), progress.clone());
            sink.propose_header(&header)?;
            progress.set_mode(Mode::Recording);
            RECORDING.store(true, Ordering::Relaxed);
            let r = ft_replay::record(&header, data_dir.as_deref(), bind, &mut sink, log);
            let r = r.and_then(|o| sink.commit().map(|_| o));
            RECORDING.store(false, Ordering::Relaxed);
            r
        }
        Some(h) => {
            if h.argv != header.argv || h.exe_hash != header.exe_hash {
                let show = |a: &[Vec<u8>]| {
                    a.iter().map(|x| String::from_utf8_lossy(x).into_owned()).collect::<Vec<_>>().join(" ")
                };
                bail!(
                    "this node refuses to join: the cluster runs `{}` ({}), but this node was started with `{}` ({}); start it with the same command and binary",
                    show(&h.argv),
                    String::from_utf8_lossy(&h.exe_path),
                    show(&header.argv),
                    String::from_utf8_lossy(&header.exe_path)
                );
            }
            info!(log, "following: replaying the committed log"; "node" => id);
            progress.set_mode(Mode::Replaying);
            let mut ropts = ReplayOptions::new(data_dir.as_ref().map(|_| service_dir.clone()), false, false);
            if cfg.snapshot.every_events > 0 {
                ropts.checkpoints = Some(ft_replay::Checkpoints {
                    dir: checkpoint_dir.clone(),
                    every: cfg.snapshot.every_events,
                    keep: cfg.snapshot.keep,
                    never_wait: true,
                });
            }
            ropts.from_checkpoint = chosen.as_ref().map(|c| c.path.clone());
            let mut sink = RaftSink::new(node.clone(), progress.clone());
            let p2 = progress.clone();
            let live = GoLive {
                sink: &mut sink,
                data_dir: data_dir.clone(),
                on_live: Box::new(move || {
                    p2.set_mode(Mode::Recording);
                    RECORDING.store(true, Ordering::Relaxed);
                }),
            };
            let r = ft_replay::replay_then_live(&h, &mut source, &ropts, Some(live), log);
            if let (Err(e @ ft_replay::SessionError::Checkpoint { .. }), Some(c)) = (&r, &chosen) {
                // The next start takes an older checkpoint, or the log from its start.
                warn!(log, "restoring the checkpoint failed: set aside"; "file" => %c.path.display(), "err" => %e);
                ft_replay::replay::set_checkpoint_aside(&c.path, log);
            }
            let r = r.and_then(|o| if RECORDING.load(Ordering::Relaxed) { sink.commit().map(|_| o) } else { Ok(o) });
            RECORDING.store(false, Ordering::Relaxed);
            r
        }
    };
    progress.set_mode(Mode::Ended);
    if let Err(e @ ft_replay::SessionError::Compacted { .. }) = &result {
        return Err(restart_in_place(&node, e, log));
    }
    let outcome = result?;
    info!(log, "the program ended"; "status" => outcome.status, "events" => outcome.events);
    linger(&node, log);
    node.shutdown();
    Ok(outcome.status)
}
