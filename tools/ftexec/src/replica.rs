//! `ftexec run`: one replica of a replicated program. The leader records into the Raft log
//! (group commit, output commit); followers replay the committed log in lockstep; a follower that
//! wins an election replays what is committed, then goes live.
//!
//! Raft entries carry batches (`ft_libos::batch`); the first byte of a batch says what it holds:
//! header (the recording's identity), events (length-prefixed protobuf `Event`s), or a barrier
//! (node id, term) that a new leader proposes to learn where the committed log ends.

use anyhow::{bail, Context};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use ft_consensus::{ClusterConfig, CommittedEntry, EntryId, Node, NodeError, NodeOptions, PendingProposal};
use ft_libos::batch::{self, Batch};
use ft_libos::proto::{Event, Header};
use ft_replay::release::{Commit, Ticket};
use ft_replay::{EventSink, EventSource, GoLive, RecordOptions, ReplayOptions, SessionError};
use slog::{info, warn, Logger};
use std::collections::VecDeque;
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Group commit: a batch is proposed when it is this big, or this old, or an output waits.
const BATCH_BYTES: usize = 64 << 10;
const BATCH_AGE: Duration = Duration::from_millis(2);
/// How long an output may wait for its commit before the leader gives up (lost quorum).
const COMMIT_PATIENCE: Duration = Duration::from_secs(10);
/// How often a commit wait checks that this replica still leads: a deposed leader (partitioned
/// away from its quorum) ends its session at once instead of after `COMMIT_PATIENCE`.
const COMMIT_POLL: Duration = Duration::from_millis(50);

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
#[derive(Default)]
pub struct Progress {
    mode: AtomicU8,
    events: AtomicU64,
    caught_up_ms: AtomicU64,
}

const MODE_REPLAYING: u8 = 1;
const MODE_RECORDING: u8 = 2;
const MODE_ENDED: u8 = 3;

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Progress {
    fn json(&self) -> serde_json::Value {
        let mode = match self.mode.load(Ordering::Relaxed) {
            MODE_REPLAYING => "replaying",
            MODE_RECORDING => "recording",
            MODE_ENDED => "ended",
            _ => "starting",
        };
        let lag_ms = match self.mode.load(Ordering::Relaxed) {
            MODE_REPLAYING => now_ms().saturating_sub(self.caught_up_ms.load(Ordering::Relaxed)),
            _ => 0,
        };
        serde_json::json!({
            "pid": std::process::id(),
            "mode": mode,
            "events": self.events.load(Ordering::Relaxed),
            "lag_ms": lag_ms,
        })
    }
}

fn repl_err(e: impl std::fmt::Display) -> SessionError {
    SessionError::Replication(e.to_string())
}

/// Events from the committed Raft log, in order; blocks for more while this replica follows.
pub struct RaftSource {
    node: Arc<Node>,
    rx: Receiver<CommittedEntry>,
    queue: VecDeque<Event>,
    pos: u64,
    header: Option<Header>,
    header_seen: bool,
    /// Set when our own barrier came back: the committed log ends at this position.
    live_at: Option<u64>,
    barrier_term: Option<u64>,
    progress: Arc<Progress>,
}

impl RaftSource {
    fn new(node: Arc<Node>, rx: Receiver<CommittedEntry>, progress: Arc<Progress>) -> Self {
        RaftSource {
            node,
            rx,
            queue: VecDeque::new(),
            pos: 0,
            header: None,
            header_seen: false,
            live_at: None,
            barrier_term: None,
            progress,
        }
    }

    fn at_end(&self) -> bool {
        self.queue.is_empty() && self.live_at == Some(self.pos)
    }

    /// Waits for one committed entry (or a timeout) and takes it in.
    fn step(&mut self) -> ft_replay::Result<()> {
        if self.node.is_leader() && self.live_at.is_none() {
            let term = self.node.term();
            if self.barrier_term != Some(term) {
                let b = batch::barrier(self.node.id(), term);
                match self.node.submit(b) {
                    Ok(_) => self.barrier_term = Some(term),
                    Err(e) => return Err(repl_err(e)),
                }
            }
        }
        if self.queue.is_empty() {
            self.progress.caught_up_ms.store(now_ms(), Ordering::Relaxed);
        }
        let entry = match self.rx.recv_timeout(Duration::from_millis(50)) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => {
                if let Some(why) = self.node.stopped() {
                    return Err(repl_err(format!("the Raft node stopped: {why}")));
                }
                return Ok(());
            }
            Err(RecvTimeoutError::Disconnected) => return Err(repl_err("the Raft node stopped")),
        };
        for b in entry.batches {
            let bad = |why| repl_err(format!("entry {} of the log has {why}", entry.index));
            match batch::decode(&b).map_err(bad)? {
                Batch::Header(h) => {
                    if self.header_seen {
                        return Err(repl_err(format!("a second header in the log at entry {}", entry.index)));
                    }
                    self.header = Some(*h);
                    self.header_seen = true;
                }
                Batch::Events(evs) => self.queue.extend(evs),
                Batch::Barrier { node, term } => {
                    if node == self.node.id() && term == self.node.term() && self.node.is_leader() {
                        self.live_at = Some(self.pos + self.queue.len() as u64);
                    }
                }
            }
        }
        Ok(())
    }

    /// The recording's header, or None if this replica leads and the log has none: it starts
    /// the program.
    fn wait_header(&mut self) -> ft_replay::Result<Option<Header>> {
        loop {
            if let Some(h) = self.header.take() {
                return Ok(Some(h));
            }
            if self.live_at.is_some() && !self.header_seen {
                return Ok(None);
            }
            self.step()?;
        }
    }
}

impl EventSource for RaftSource {
    fn next_event(&mut self) -> ft_replay::Result<Option<Event>> {
        self.peek_event()?;
        let ev = self.queue.pop_front();
        if ev.is_some() {
            self.pos += 1;
            self.progress.events.store(self.pos, Ordering::Relaxed);
        }
        Ok(ev)
    }
    fn peek_event(&mut self) -> ft_replay::Result<Option<&Event>> {
        while self.queue.is_empty() && !self.at_end() {
            self.step()?;
        }
        Ok(self.queue.front())
    }
    fn position(&self) -> u64 {
        self.pos
    }
    fn live(&self) -> bool {
        self.at_end()
    }
}

/// One submitted batch, for the outputs that wait for its commit (proposals are appended in
/// order, so a batch's commit covers every earlier one).
struct RaftTicket {
    node: Arc<Node>,
    state: Mutex<TicketState>,
}

enum TicketState {
    Proposed(PendingProposal),
    Entry { id: EntryId, committed: bool },
    Failed(String),
}

impl RaftTicket {
    /// Waits for the batch's entry id, then for its commit. Fails at once if this replica is
    /// no longer the leader, and after `COMMIT_PATIENCE` without a quorum.
    fn wait_commit(&self) -> Result<(), String> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let id = match std::mem::replace(&mut *st, TicketState::Failed("the proposal was lost".into())) {
            TicketState::Proposed(p) => match p.wait_entry() {
                Ok(id) => id,
                Err(e) => {
                    *st = TicketState::Failed(e.to_string());
                    return Err(e.to_string());
                }
            },
            TicketState::Entry { id, committed: true } => {
                *st = TicketState::Entry { id, committed: true };
                return Ok(());
            }
            TicketState::Entry { id, committed: false } => id,
            TicketState::Failed(why) => {
                *st = TicketState::Failed(why.clone());
                return Err(why);
            }
        };
        *st = TicketState::Entry { id, committed: false };
        drop(st);
        let t0 = Instant::now();
        loop {
            let e = match self.node.await_entry(id, Some(COMMIT_POLL)) {
                Ok(()) => break,
                Err(NodeError::Timeout { .. }) if !self.node.is_leader() => {
                    format!("this replica lost its leadership (term {})", self.node.term())
                }
                Err(NodeError::Timeout { .. }) if t0.elapsed() < COMMIT_PATIENCE => continue,
                Err(e) => e.to_string(),
            };
            let why = format!("entry {} was not committed ({e}); outputs that depend on it are withheld", id.index);
            *self.state.lock().unwrap_or_else(PoisonError::into_inner) = TicketState::Failed(why.clone());
            return Err(why);
        }
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = TicketState::Entry { id, committed: true };
        Ok(())
    }
}

impl Commit for RaftTicket {
    fn wait(&self) -> Result<(), String> {
        self.wait_commit()
    }
}

/// The leader's side: events go into Raft batches; an output waits for their commit.
pub struct RaftSink {
    node: Arc<Node>,
    buf: Vec<u8>,
    /// The latest submitted batch.
    last: Option<Arc<RaftTicket>>,
    /// Events other than outputs appended since the last ticket was handed out or waited for.
    inputs: bool,
    /// The ticket last handed to an output: an output that runs in the program must wait for
    /// it too (the inputs it covers are no longer counted in `inputs`).
    handed: Option<Arc<RaftTicket>>,
    since: Instant,
    appended: u64,
    progress: Arc<Progress>,
}

impl RaftSink {
    fn new(node: Arc<Node>, progress: Arc<Progress>) -> Self {
        RaftSink {
            node,
            buf: Vec::new(),
            last: None,
            inputs: false,
            handed: None,
            since: Instant::now(),
            appended: 0,
            progress,
        }
    }

    fn push(&mut self, ev: &Event) -> ft_replay::Result<()> {
        if self.buf.is_empty() {
            self.since = Instant::now();
        }
        batch::push_event(ev, &mut self.buf);
        self.appended += 1;
        self.progress.events.fetch_add(1, Ordering::Relaxed);
        if self.appended.is_multiple_of(256) && !self.node.is_leader() {
            return Err(repl_err("this replica is no longer the leader; its program must not go on"));
        }
        if self.buf.len() >= BATCH_BYTES || self.since.elapsed() >= BATCH_AGE {
            self.submit()?;
        }
        Ok(())
    }

    /// Hands the held events to Raft without waiting for their entry.
    fn submit(&mut self) -> ft_replay::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.buf);
        let p = self.node.submit(batch).map_err(repl_err)?;
        // The previous proposal is earlier in the log: the new one's commit covers it.
        self.last = Some(Arc::new(RaftTicket { node: self.node.clone(), state: Mutex::new(TicketState::Proposed(p)) }));
        Ok(())
    }

    fn commit(&mut self) -> ft_replay::Result<()> {
        self.submit()?;
        if let Some(t) = &self.last {
            t.wait_commit().map_err(repl_err)?;
        }
        self.inputs = false;
        Ok(())
    }

    fn propose_header(&mut self, h: &Header) -> ft_replay::Result<()> {
        self.buf = batch::header(h);
        self.commit()
    }
}

impl EventSink for RaftSink {
    fn append(&mut self, ev: &Event) -> ft_replay::Result<()> {
        self.inputs = true;
        self.push(ev)
    }
    fn append_output(&mut self, ev: &Event) -> ft_replay::Result<()> {
        self.push(ev)
    }
    fn before_output(&mut self) -> ft_replay::Result<()> {
        if self.inputs {
            self.commit()?;
        } else if let Some(t) = &self.handed {
            // Returns at once when it is known committed.
            t.wait_commit().map_err(repl_err)?;
        }
        Ok(())
    }
    fn idle(&mut self) -> ft_replay::Result<()> {
        self.submit()
    }
    fn output_ticket(&mut self) -> ft_replay::Result<Option<Ticket>> {
        // Only outputs since the last ticket: the next output does not depend on them.
        if !self.inputs {
            if let Some(t) = &self.last {
                return Ok(Some(t.clone() as Ticket));
            }
        }
        self.submit()?;
        self.inputs = false;
        self.handed = self.last.clone();
        match &self.last {
            Some(t) => Ok(Some(t.clone() as Ticket)),
            None => Ok(None),
        }
    }
}

static RECORDING: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    let pid = ft_replay::current_tracee();
    if RECORDING.load(Ordering::Relaxed) && pid > 0 {
        // The leader stops the program; its exit is logged and every replica ends with it.
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    } else {
        // A follower just leaves (its tracee dies with it: PTRACE_O_EXITKILL).
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(128 + sig) };
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

/// Runs replica `id` of the cluster in `config`; returns the program's status.
pub fn run(config: &Path, id: u64, command: &[OsString], log: &Logger) -> anyhow::Result<i32> {
    let cfg = ClusterConfig::load(config)?;
    let me = cfg.node(id)?.clone();
    let argv = service_command(&cfg, command)?;
    let svc = cfg.service.clone();
    let data_dir = svc.as_ref().and_then(|s| s.data_dir.clone());
    let service_dir = me.service_dir.clone().unwrap_or_else(|| me.data_dir.join("service"));
    // Every run replays from the start, so the replica's copy starts from the initial state.
    if data_dir.is_some() {
        if service_dir.exists() {
            std::fs::remove_dir_all(&service_dir)
                .with_context(|| format!("clearing the replica's data copy {}", service_dir.display()))?;
        }
        std::fs::create_dir_all(&service_dir)
            .with_context(|| format!("creating the replica's data copy {}", service_dir.display()))?;
        if let Some(init) = svc.as_ref().and_then(|s| s.initial_data.as_ref()) {
            copy_dir(init, &service_dir)?;
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
        NodeOptions { logger: log.clone(), persist_isolation: faults, ..Default::default() },
    )?);
    if let Some(addr) = &me.control_addr {
        let p = progress.clone();
        let hook: ft_consensus::control::StatusHook = Arc::new(move || p.json());
        if faults {
            warn!(log, "fault injection is enabled ({FAULT_INJECTION_VAR}=1): `ftctl fault` can partition this node");
        }
        let access = ft_consensus::control::Access {
            test_mode: false,
            fault_injection: faults,
            enable_hint: format!("start its `ftexec run` with {FAULT_INJECTION_VAR}=1 in the environment"),
        };
        ft_consensus::control::serve_with(node.clone(), addr, access, Some(hook), log.clone())?;
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
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only calls async-signal-safe functions.
        unsafe { libc::signal(sig, on_stop_signal as *const () as libc::sighandler_t) };
    }
    let mut source = RaftSource::new(node.clone(), rx, progress.clone());
    let bind = match &data_dir {
        Some(d) => {
            let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).ok();
            c(&std::fs::canonicalize(&service_dir)?).zip(c(d))
        }
        None => None,
    };
    let result = match source.wait_header()? {
        None => {
            info!(log, "leading a new cluster: starting the program"; "node" => id);
            let mut sink = RaftSink::new(node.clone(), progress.clone());
            sink.propose_header(&header)?;
            progress.mode.store(MODE_RECORDING, Ordering::Relaxed);
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
            progress.mode.store(MODE_REPLAYING, Ordering::Relaxed);
            let ropts = ReplayOptions {
                data_dir: data_dir.as_ref().map(|_| service_dir.clone()),
                allow_cpu_mismatch: false,
                print_stdio: false,
            };
            let mut sink = RaftSink::new(node.clone(), progress.clone());
            let p2 = progress.clone();
            let live = GoLive {
                sink: &mut sink,
                data_dir: data_dir.clone(),
                on_live: Box::new(move || {
                    p2.mode.store(MODE_RECORDING, Ordering::Relaxed);
                    RECORDING.store(true, Ordering::Relaxed);
                }),
            };
            let r = ft_replay::replay_then_live(&h, &mut source, &ropts, Some(live), log);
            let r = r.and_then(|o| if RECORDING.load(Ordering::Relaxed) { sink.commit().map(|_| o) } else { Ok(o) });
            RECORDING.store(false, Ordering::Relaxed);
            r
        }
    };
    progress.mode.store(MODE_ENDED, Ordering::Relaxed);
    let outcome = result?;
    info!(log, "the program ended"; "status" => outcome.status, "events" => outcome.events);
    linger(&node, log);
    node.shutdown();
    Ok(outcome.status)
}
