//! Checkpoints of a replay: the program's whole state at an event boundary, written to a file
//! (`ft_libos::snapshot`), and a replay that starts from one instead of the log's start
//! ([`restore`]).
//!
//! A checkpoint is taken at the seccomp stop of a syscall whose event replay has just applied
//! (the result is in the registers, the task not resumed yet): the kernel state of every
//! process and thread of the program (`ft_interposer::checkpoint`: mappings and written pages,
//! System V segments, registers, handlers, fds, process state), the data directory's content,
//! and this replayer's own bookkeeping (the fd model, what going live needs, the clock page's
//! state, the counters that place signals). What cannot be kept yet refuses the checkpoint by
//! name ([`Replayer::why_not`]); the log stays whole then.

use super::*;
use ft_interposer::checkpoint::{self as kernel, CheckpointError, Process, TRAP_NR};
use ft_interposer::clock::Install;
use ft_interposer::inject::Remote;
use ft_libos::snapshot;
use ft_libos::table::Ipc;
use serde::{Deserialize, Serialize};

mod restore;
pub(super) use restore::restore_session;
pub use restore::{forget_preloaded, newest_usable, set_aside, Usable};

const FORMAT: &str = "ftexec checkpoint";

/// What `ftdbg checkpoints` lists without reading the rest (the file's head).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Head {
    pub format: String,
    pub ftexec_version: String,
    /// The log position it resumes at (events before it are in the checkpoint).
    pub event: u64,
    /// blake3 of the log's header: the recording it belongs to.
    pub log_id: String,
    pub program: String,
    pub created_unix: u64,
    /// Bytes of written memory kept.
    pub memory_bytes: u64,
    /// Bytes of the data directory kept.
    pub data_bytes: u64,
    /// Bytes of the program's stdout and stderr before it.
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    /// In a replicated log: the Raft index of the first entry a restore reads, and the position
    /// of that entry's first event (0 and 0 for a log file).
    #[serde(default)]
    pub raft_index: u64,
    #[serde(default)]
    pub raft_first_event: u64,
}

/// A checkpoint captured (to be written), or why not.
type Taken = std::result::Result<Pending, String>;

/// A captured checkpoint, to be compressed and written.
pub(super) struct Pending {
    path: PathBuf,
    head: Vec<u8>,
    parts: [Vec<u8>; 4],
}

/// The write of the last checkpoint, in the background (one at a time).
pub(super) struct Writing {
    handle: std::thread::JoinHandle<std::result::Result<u64, String>>,
    path: PathBuf,
    event: u64,
    capture_ms: f64,
    t0: std::time::Instant,
}

impl Plan {
    /// Waits for the checkpoint being written, says how it went, and prunes old ones.
    pub(super) fn finish_write(&mut self, log: &Logger) {
        let Some(w) = self.writing.take() else { return };
        match w.handle.join() {
            Ok(Ok(size)) => {
                info!(log, "checkpoint"; "event" => w.event, "file" => %w.path.display(), "bytes" => size,
                    "capture_ms" => format!("{:.1}", w.capture_ms),
                    "written_ms" => format!("{:.1}", w.t0.elapsed().as_secs_f64() * 1e3));
                self.taken += 1;
                if self.opts.keep > 0 {
                    prune(&self.opts.dir, self.opts.keep, log);
                }
            }
            Ok(Err(why)) => slog::warn!(log, "checkpoint not written"; "event" => w.event, "why" => %why),
            Err(_) => slog::warn!(log, "checkpoint not written: its writer failed"; "event" => w.event),
        }
    }
}

/// The identity of a recording: blake3 of its encoded header.
pub fn log_id(h: &Header) -> String {
    digest::hex(blake3::hash(&prost::Message::encode_to_vec(h)).as_bytes())
}

/// When the next checkpoint is due, and where they go.
pub(super) struct Plan {
    pub(super) opts: crate::launch::Checkpoints,
    pub(super) next_due: u64,
    /// The data directory as the tracer sees it.
    pub(super) data_dir: Option<PathBuf>,
    /// The recording's identity ([`log_id`]).
    pub(super) log_id: String,
    /// The log's Start event, encoded.
    pub(super) start: Vec<u8>,
    pub(super) header: Vec<u8>,
    /// Reasons already logged for not taking one.
    said: HashSet<String>,
    pub(super) taken: u64,
    pub(super) writing: Option<Writing>,
}

impl Plan {
    pub(super) fn new(opts: crate::launch::Checkpoints) -> Plan {
        let next_due = opts.every.max(1);
        Plan {
            opts,
            next_due,
            data_dir: None,
            log_id: String::new(),
            start: Vec::new(),
            header: Vec::new(),
            said: HashSet::new(),
            taken: 0,
            writing: None,
        }
    }
}

/// A siginfo_t in a checkpoint: its bytes.
pub(super) mod siginfo_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<libc::siginfo_t>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref().map(ft_interposer::tracee::siginfo_to_bytes).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<libc::siginfo_t>, D::Error> {
        Ok(Option::<Vec<u8>>::deserialize(d)?.as_deref().and_then(ft_interposer::tracee::siginfo_from_bytes))
    }
}

/// The System V ids the program was given, per kind (shared memory, semaphore sets, message
/// queues), and the last one the kernel created of each: a checkpoint's restore continues the
/// kernel's allocation after it (-1: too many to follow); and whether a semop with SEM_UNDO ran
/// (its adjustments are the kernel's, not kept: no checkpoint after).
#[derive(Serialize, Deserialize, Clone, Default)]
pub(super) struct IpcIds {
    seen: [BTreeSet<i32>; 3],
    lasts: kernel::sysv::Lasts,
    sem_undo: bool,
    /// The POSIX message queues the program made and has not unlinked, by name: a checkpoint
    /// cannot keep them yet (one no fd holds would be lost silently), so none is taken while
    /// one exists.
    #[serde(default)]
    mq_names: BTreeSet<Vec<u8>>,
}

impl IpcIds {
    /// Follows a syscall of the table's `Ipc` kinds that returned `ret`: an id not given
    /// before is an object the kernel created. And a semop's SEM_UNDO.
    pub(super) fn note(&mut self, t: &Stopped, spec: &Spec, args: &[u64; 6], ret: i64) {
        // Beyond this many, a restore could not give the next object its id anyway.
        const FOLLOWED: usize = 4096;
        if let ft_libos::table::Waits::SemOps { ops, count } = spec.waits {
            if ret == 0 && !self.sem_undo {
                let n = args[usize::from(count)].min(1024) as usize;
                let flags = t.read(args[usize::from(ops)], 6 * n).unwrap_or_default();
                self.sem_undo =
                    flags.chunks_exact(6).any(|op| i16::from_le_bytes([op[4], op[5]]) as i32 & libc::SEM_UNDO != 0);
            }
            return;
        }
        let (seen, last) = match spec.follow.ipc {
            Ipc::ShmId => (&mut self.seen[0], &mut self.lasts.shm),
            Ipc::SemId => (&mut self.seen[1], &mut self.lasts.sem),
            Ipc::MsgId => (&mut self.seen[2], &mut self.lasts.msg),
            Ipc::MqOpen { name, flags } => {
                if ret >= 0 && args[usize::from(flags)] & libc::O_CREAT as u64 != 0 {
                    self.mq_names.insert(t.read_cstr(args[usize::from(name)], 255).unwrap_or_default());
                }
                return;
            }
            Ipc::MqUnlink { name } => {
                if ret == 0 {
                    self.mq_names.remove(&t.read_cstr(args[usize::from(name)], 255).unwrap_or_default());
                }
                return;
            }
            Ipc::None => return,
        };
        let Ok(id) = i32::try_from(ret) else { return };
        if id < 0 || *last == Some(-1) {
            return;
        }
        if seen.insert(id) {
            *last = Some(id);
            if seen.len() > FOLLOWED {
                seen.clear();
                *last = Some(-1);
            }
        }
    }
}

/// The replayer's bookkeeping (see the fields of [`Replayer`]), maps as lists.
#[derive(Serialize, Deserialize)]
struct Book {
    fds: Vec<(u32, Vec<(i32, i32)>)>,
    last_run: u32,
    status0: Option<i32>,
    max_vtid: u32,
    yielded: Option<u32>,
    sockets: Vec<(u32, Vec<(i32, crate::live::SockShadow)>)>,
    files: Vec<(u32, Vec<(i32, crate::live::FileShadow)>)>,
    refilled: Vec<u32>,
    calls: Vec<(u32, Call)>,
    silent: Vec<(u32, u32)>,
    restarts: Vec<(u32, (u32, [u64; 6]))>,
    pidfds: Vec<((u32, i32), i32)>,
    /// `Replayer::shadows`, `posix_timers`, `posix_last`.
    #[serde(default)]
    shadows: crate::live::Shadows,
    #[serde(default)]
    posix_timers: Vec<((u32, i32), crate::timers::PosixTimer)>,
    #[serde(default)]
    posix_last: Vec<(u32, i32)>,
    ids: Vec<(u32, (i32, u32))>,
    sent: Vec<SentSignal>,
    pipes: Vec<(u64, Flow)>,
    itimers: Vec<((u32, i32), Itimer)>,
    states: Vec<(u32, Vec<u8>)>,
    clocks: Vec<(u32, Install)>,
    taken: Vec<(u64, u32, i32)>,
    stdio_out: [u64; 2],
    /// Children forked at replay (all alive): task number, (pid, uid, parent process).
    #[serde(default)]
    born: Vec<(u32, (i32, u32, u32))>,
    /// The program's socketpairs by stand-in pipe inode (`Replayer::socketpairs`).
    #[serde(default)]
    socketpairs: Vec<(u64, PairFlows)>,
    /// `Replayer::ipc`.
    #[serde(default)]
    ipc: IpcIds,
}

/// Where a task was when the checkpoint was taken. Every task is at a seccomp stop.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
enum How {
    /// Its syscall's event was just applied and it holds the token: resumed at once.
    Running,
    /// Its syscall's result is in place; it waits for the token.
    Idle,
    /// At its own syscall's seccomp stop, until the log completes that syscall.
    Parked,
}

#[derive(Serialize, Deserialize)]
struct SavedTask {
    vtid: u32,
    /// Its tid as the program sees it.
    ns_tid: i32,
    how: How,
    /// The registers at its syscall's seccomp stop before a result was applied.
    orig_regs: Vec<u64>,
    state: kernel::TaskState,
}

/// One process of the program.
#[derive(Serialize, Deserialize)]
struct SavedProc {
    /// Its leader's task number.
    proc: u32,
    ns_pid: i32,
    /// The process it was forked from (None: the first one).
    parent: Option<u32>,
    /// Process group and session (pids as the program sees them).
    pgid: i32,
    sid: i32,
    /// Every task of the process, its leader first.
    tasks: Vec<SavedTask>,
    process: Process,
    /// Its page bytes: this range of the checkpoint's page part.
    pages_at: u64,
    pages_len: u64,
    /// Shared memory it has from its parent (the same object at the same place): the fork
    /// of the restore gives it.
    kept: Vec<(u64, u64)>,
    /// The process's ProcState (cwd, credentials, umask, limits), encoded.
    proc_state: Vec<u8>,
}

/// Everything a restore needs besides the page bytes and the data directory.
#[derive(Serialize, Deserialize)]
struct State {
    /// Every process, parents before their children (by pid); the first is the program's.
    procs: Vec<SavedProc>,
    /// The highest pid the program's namespace handed out.
    last_pid: i32,
    book: Book,
    /// The recording's header and Start event, encoded: a replicated log may no longer
    /// begin with them.
    header: Vec<u8>,
    start: Vec<u8>,
    /// System V shared memory; its bytes follow the processes' pages.
    #[serde(default)]
    sysv: kernel::sysv::Sysv,
}

fn map_list<K: Copy + Ord, V: Clone>(m: &HashMap<K, V>) -> Vec<(K, V)> {
    let mut v: Vec<(K, V)> = m.iter().map(|(k, v)| (*k, v.clone())).collect();
    v.sort_by_key(|e| e.0);
    v
}

impl Replayer<'_> {
    /// Called where a syscall's event was applied and its task is at the seccomp stop with the
    /// result in place (`orig`: the registers before): takes a checkpoint if one is due and the
    /// program can be checkpointed here. Gives the task back as it was.
    pub(super) fn at_boundary(
        &mut self,
        vtid: u32,
        t: Stopped,
        orig: &ft_interposer::Regs,
        running: bool,
    ) -> Result<Stopped> {
        let index = self.source.position();
        let due = self.plan.as_ref().is_some_and(|p| index >= p.next_due);
        if !due {
            return Ok(t);
        }
        // A follower never waits for a write: while the last checkpoint is still being written
        // (a large program on a busy machine), the next one waits for a later boundary.
        let busy = self
            .plan
            .as_ref()
            .is_some_and(|p| p.opts.never_wait && p.writing.as_ref().is_some_and(|w| !w.handle.is_finished()));
        if busy {
            return Ok(t);
        }
        if let Some(why) = self.why_not(vtid, &t, orig)? {
            if let Some(p) = self.plan.as_mut() {
                if p.said.insert(why.clone()) {
                    info!(self.log, "no checkpoint here"; "event" => index, "why" => why);
                }
            }
            return Ok(t);
        }
        let log = self.log.clone();
        if let Some(p) = self.plan.as_mut() {
            p.finish_write(&log);
        }
        let t0 = std::time::Instant::now();
        let (t, got) = self.capture(vtid, t, orig, running)?;
        match got {
            Ok(pending) => {
                let pause_ms = t0.elapsed().as_secs_f64() * 1e3;
                // Compressed and written by a thread of its own while replay goes on (not fsynced:
                // log compaction syncs a checkpoint before it relies on it).
                let path = pending.path.clone();
                let handle = std::thread::spawn(move || {
                    let Pending { path, head, parts: [a, b, c, d] } = pending;
                    snapshot::write(&path, &head, &[&a, &b, &c, &d], false).map_err(|e| e.to_string())
                });
                if let Some(p) = self.plan.as_mut() {
                    let t0 = std::time::Instant::now();
                    p.writing = Some(Writing { handle, path, event: index, capture_ms: pause_ms, t0 });
                    p.next_due = (index / p.opts.every.max(1) + 1) * p.opts.every.max(1);
                }
            }
            Err(why) => {
                slog::warn!(self.log, "checkpoint not taken"; "event" => index, "why" => %why);
                if let Some(p) = self.plan.as_mut() {
                    p.next_due = (index / p.opts.every.max(1) + 1) * p.opts.every.max(1);
                }
            }
        }
        Ok(t)
    }

    /// Why the program cannot be checkpointed at this stop, if it cannot.
    fn why_not(&mut self, vtid: u32, t: &Stopped, orig: &ft_interposer::Regs) -> Result<Option<String>> {
        if !self.tasks.contains_key(&0) {
            return Ok(Some("the program's first thread has ended".into()));
        }
        for task in self.tasks.values() {
            if !self.tasks.contains_key(&task.proc) {
                return Ok(Some("a process's leader thread has ended".into()));
            }
            if task.proc != 0 && !self.born.get(&task.proc).is_some_and(|b| self.tasks.contains_key(&b.parent)) {
                return Ok(Some("a process whose parent has ended".into()));
            }
        }
        if self.born.values().any(|b| b.ended.is_some()) {
            return Ok(Some("a child process has ended and is not reaped yet".into()));
        }
        let leaders: Vec<i32> = self.tasks.iter().filter(|(v, t)| **v == t.proc).map(|(_, t)| t.tid.as_raw()).collect();
        for (i, a) in leaders.iter().enumerate() {
            for b in &leaders[i + 1..] {
                if kernel::same_memory(*a, *b) {
                    return Ok(Some("a vfork child shares its parent's memory".into()));
                }
            }
        }
        let pending = self.tasks.values().any(|t| !t.pending.is_empty());
        let busy = !self.arrived.is_empty()
            || !self.early_deaths.is_empty()
            || !self.clone_args.is_empty()
            || !self.exec_running.is_empty()
            || !self.fills.is_empty()
            || self.interrupter.target().is_some()
            || self.debug.is_some()
            || pending;
        if busy {
            return Ok(Some("a signal, a death or a syscall buffer fill is in flight".into()));
        }
        if t.stop != Stop::Seccomp {
            return Ok(Some("not at a seccomp stop".into()));
        }
        let at_syscall =
            |t: &Stopped, ip: u64| t.read_forced(ip.wrapping_sub(2), 2).ok().as_deref() == Some(&[0x0f, 0x05]);
        let fin = t.regs()?;
        if fin.ip() != orig.ip() || !at_syscall(t, orig.ip()) {
            return Ok(Some("the syscall moved its task elsewhere".into()));
        }
        for (v, task) in &self.tasks {
            if *v == vtid {
                continue;
            }
            let ok = match &task.state {
                RState::Idle(s) => s.stop == Stop::Seccomp && at_syscall(s, s.regs()?.ip()),
                RState::Parked(p) => p.t.stop == Stop::Seccomp && at_syscall(&p.t, p.regs.ip()),
                _ => false,
            };
            if !ok {
                return Ok(Some("another task is not stopped at a syscall".into()));
            }
        }
        // An injected query would run into a signal the kernel holds for a task (a SIGSTOP the
        // program sent, delivered when the task next runs).
        for task in self.tasks.values() {
            if Stopped::assume_stopped(task.tid).has_pending_signal()? {
                return Ok(Some("a signal is pending in the kernel".into()));
            }
        }
        if let Some(Event { kind: Some(Kind::Signal(s)) }) = self.source.peek_event()? {
            if s.at_exit || s.at_syscall {
                return Ok(Some("a signal is delivered at a syscall next".into()));
            }
        }
        if self.ids.get(&0).map(|i| i.0) != Some(2) {
            return Ok(Some("the program's process is not pid 2 of its namespace".into()));
        }
        if let Some(name) = self.ipc.mq_names.iter().next() {
            return Ok(Some(format!(
                "the POSIX message queue {:?} exists, which checkpoints cannot keep yet",
                String::from_utf8_lossy(name)
            )));
        }
        // System V objects a restore could not give back as they are.
        Ok(kernel::sysv::refusal(self.ipc.lasts, self.ipc.sem_undo))
    }

    /// Takes the checkpoint. The outer error loses a task (nothing can go on); the inner one
    /// is a checkpoint not taken.
    fn capture(
        &mut self,
        vtid: u32,
        t: Stopped,
        orig: &ft_interposer::Regs,
        running: bool,
    ) -> Result<(Stopped, Taken)> {
        let mut tasks: HashMap<u32, Vec<SavedTask>> = HashMap::new();
        let mut brks: HashMap<u32, u64> = HashMap::new();
        let mut failed = None;
        let mut order: Vec<(u32, u32)> = self.tasks.iter().map(|(v, t)| (t.proc, *v)).collect();
        // Per process, its leader first.
        order.sort_unstable_by_key(|&(p, v)| (p, v != p, v));
        for (proc, v) in order {
            let (st, how, orig_regs) = if v == vtid {
                (Stopped::assume_stopped(t.pid()), if running { How::Running } else { How::Idle }, *orig)
            } else {
                match self.tasks.get(&v).map(|t| &t.state) {
                    Some(RState::Idle(s)) => (Stopped::assume_stopped(s.pid()), How::Idle, s.regs()?),
                    Some(RState::Parked(p)) => (Stopped::assume_stopped(p.t.pid()), How::Parked, p.regs),
                    _ => continue,
                }
            };
            let fin = st.regs()?;
            let mut inj = fin;
            inj.0.orig_rax = TRAP_NR;
            st.set_regs(&inj)?;
            let mut r = Remote::new(st)?;
            let queried = kernel::task_state(&mut r, &fin, v == proc);
            let st = r.into_stopped().ok_or_else(|| SessionError::Unsupported {
                what: "a checkpoint".into(),
                why: "a task was lost during an injected query".into(),
            })?;
            st.set_regs(&fin)?;
            match queried {
                Ok((state, b)) => {
                    if v == proc {
                        brks.insert(proc, b);
                    }
                    let ns_tid = self.ids.get(&v).map_or(0, |i| i.0);
                    let saved = SavedTask { vtid: v, ns_tid, how, orig_regs: kernel::regs_words(&orig_regs.0), state };
                    tasks.entry(proc).or_default().push(saved);
                }
                Err(e) => failed = Some(e.to_string()),
            }
        }
        let result = match failed {
            Some(why) => Err(why),
            None => self.write_checkpoint(tasks, &brks),
        };
        Ok((t, result))
    }

    fn write_checkpoint(&self, mut tasks: HashMap<u32, Vec<SavedTask>>, brks: &HashMap<u32, u64>) -> Taken {
        let host = |proc: u32| self.tasks.get(&proc).map(|t| t.tid.as_raw());
        let mut procs: Vec<u32> = tasks.keys().copied().collect();
        procs.sort_unstable_by_key(|p| self.ids.get(p).map_or(i32::MAX, |i| i.0));
        let mut saved = Vec::new();
        let mut pages = Vec::new();
        let mut proc_states = HashMap::new();
        for proc in procs {
            let pid = host(proc).ok_or("a process without its leader")?;
            let parent = (proc != 0).then(|| self.born.get(&proc).map(|b| b.parent)).flatten();
            let parent_pid = parent.and_then(host);
            let leader = Stopped::assume_stopped(nix::unistd::Pid::from_raw(pid));
            let (memory, mine) =
                kernel::memory(&leader, brks.get(&proc).copied().unwrap_or(0)).map_err(|e| e.to_string())?;
            // Shared memory the parent has too (same object, same place) comes with the fork.
            let kept: Vec<(u64, u64)> = match parent_pid {
                Some(pp) => {
                    let theirs = kernel::maps(pp).map_err(|e| e.to_string())?;
                    memory
                        .vmas
                        .iter()
                        .filter(|v| {
                            (v.is_shared_anon() || v.is_sysv())
                                && theirs.iter().any(|o| o.start == v.start && o.end == v.end && o.inode == v.inode)
                        })
                        .map(|v| (v.start, v.end))
                        .collect()
                }
                None => Vec::new(),
            };
            let fdt = self.fds.get(&proc).cloned().unwrap_or_default();
            let fds = kernel::fds(pid, &|fd| proc == 0 && fdt.kind(i64::from(fd)) == FdKind::Stdio, parent_pid)
                .map_err(|e| e.to_string())?;
            let proc_state = ft_interposer::procfs::proc_state(pid)?;
            let (pgid, sid) = kernel::process_group(pid).ok_or("the process group cannot be read")?;
            let at = pages.len() as u64;
            let mine_len = mine.len() as u64;
            if pages.is_empty() {
                pages = mine;
            } else {
                pages.extend_from_slice(&mine);
            }
            proc_states.insert(proc, proc_state.clone());
            saved.push(SavedProc {
                proc,
                ns_pid: self.ids.get(&proc).map_or(0, |i| i.0),
                parent,
                pgid,
                sid,
                tasks: tasks.remove(&proc).unwrap_or_default(),
                process: Process { memory, fds },
                pages_at: at,
                pages_len: mine_len,
                kept,
                proc_state: prost::Message::encode_to_vec(&proc_state),
            });
        }
        let pid = host(0).ok_or("no first process")?;
        let plan = self.plan.as_ref().ok_or("no checkpoint plan")?;
        let data = match &plan.data_dir {
            Some(d) => snapshot::pack_dir(d).map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        // The program's own /dev/shm (shm_open, PostgreSQL's dynamic shared memory).
        let shm = if ft_interposer::procfs::private_shm(pid) {
            let dir = format!("/proc/{pid}/root{}", ft_interposer::launch::PRIVATE_SHM.to_string_lossy());
            snapshot::pack_dir(Path::new(&dir)).map_err(|e| e.to_string())?
        } else {
            Vec::new()
        };
        let (mut sysv, segments) = kernel::sysv::capture(pid, self.ipc.lasts).map_err(|e| e.to_string())?;
        sysv.shift(pages.len() as u64);
        pages.extend_from_slice(&segments);
        let state = State {
            sysv,
            procs: saved,
            last_pid: self.ids.values().map(|i| i.0).max().unwrap_or(2),
            book: self.book(),
            header: plan.header.clone(),
            start: plan.start.clone(),
        };
        let index = self.source.position();
        let (raft_index, raft_first_event) =
            self.source.entry_of(index).ok_or("its place in the replicated log is no longer known")?;
        let state = serde_json::to_vec(&state).map_err(|e| e.to_string())?;
        let head = Head {
            format: FORMAT.into(),
            ftexec_version: env!("CARGO_PKG_VERSION").into(),
            event: index,
            log_id: plan.log_id.clone(),
            program: String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/comm")).unwrap_or_default())
                .trim()
                .to_string(),
            created_unix: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            memory_bytes: pages.len() as u64,
            data_bytes: data.len() as u64,
            stdout_bytes: self.stdio_out[0],
            stderr_bytes: self.stdio_out[1],
            raft_index,
            raft_first_event,
        };
        let head = serde_json::to_vec(&head).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&plan.opts.dir).map_err(|e| format!("{}: {e}", plan.opts.dir.display()))?;
        let path = plan.opts.dir.join(format!("event-{index}.ftckpt"));
        Ok(Pending { path, head, parts: [state, pages, data, shm] })
    }

    fn book(&self) -> Book {
        Book {
            fds: {
                let mut v: Vec<(u32, Vec<(i32, i32)>)> = self
                    .fds
                    .iter()
                    .map(|(p, t)| (*p, t.entries().into_iter().map(|(f, k)| (f, k as i32)).collect()))
                    .collect();
                v.sort_by_key(|e| e.0);
                v
            },
            last_run: self.last_run,
            status0: self.status0,
            max_vtid: self.max_vtid,
            yielded: self.yielded,
            sockets: self.sockets.iter().map(|(p, m)| (*p, map_list(m))).collect(),
            files: self.files.iter().map(|(p, m)| (*p, map_list(m))).collect(),
            refilled: self.refilled.iter().copied().collect(),
            calls: map_list(&self.calls),
            silent: map_list(&self.silent),
            restarts: map_list(&self.restarts),
            pidfds: map_list(&self.pidfds),
            shadows: self.shadows.clone(),
            posix_timers: self.posix_timers.iter().map(|(k, t)| (*k, t.clone())).collect(),
            posix_last: map_list(&self.posix_last),
            ids: map_list(&self.ids),
            sent: self.sent.clone(),
            pipes: map_list(&self.pipes),
            socketpairs: map_list(&self.socketpairs),
            itimers: map_list(&self.itimers),
            states: self.states.iter().map(|(v, s)| (*v, prost::Message::encode_to_vec(s))).collect(),
            clocks: self.clocks.entries(),
            taken: self.source.taken.clone(),
            stdio_out: self.stdio_out,
            born: {
                let mut v: Vec<(u32, (i32, u32, u32))> =
                    self.born.iter().map(|(v, b)| (*v, (b.ns_pid, b.uid, b.parent))).collect();
                v.sort_unstable_by_key(|e| e.0);
                v
            },
            ipc: self.ipc.clone(),
        }
    }

    /// Takes `book` over; `pipes` and `shadows` are keyed by kernel ids of the checkpointed
    /// process, renamed here by `pipe_ino` and `event_id` (old id to new).
    fn load_book(&mut self, b: Book, pipe_ino: &HashMap<u64, u64>, event_id: &HashMap<u64, u64>) -> Result<()> {
        let bad = |what: &str| SessionError::Mismatch { what: "the checkpoint".into(), detail: format!("bad {what}") };
        self.fds = b
            .fds
            .into_iter()
            .map(|(p, l)| {
                let t = l.into_iter().filter_map(|(f, k)| FdKind::try_from(k).ok().map(|k| (f, k)));
                (p, FdTable::from_entries(t))
            })
            .collect();
        self.last_run = b.last_run;
        self.status0 = b.status0;
        self.max_vtid = b.max_vtid;
        self.yielded = b.yielded;
        self.sockets = b.sockets.into_iter().map(|(p, l)| (p, l.into_iter().collect())).collect();
        self.files = b.files.into_iter().map(|(p, l)| (p, l.into_iter().collect())).collect();
        self.refilled = b.refilled.into_iter().collect();
        self.calls = b.calls.into_iter().collect();
        self.silent = b.silent.into_iter().collect();
        self.restarts = b.restarts.into_iter().collect();
        self.pidfds = b.pidfds.into_iter().collect();
        self.posix_timers = b.posix_timers.into_iter().collect();
        self.posix_last = b.posix_last.into_iter().collect();
        self.ids = b.ids.into_iter().collect();
        self.sent = b.sent;
        self.pipes = b.pipes.into_iter().map(|(ino, f)| (pipe_ino.get(&ino).copied().unwrap_or(ino), f)).collect();
        self.socketpairs =
            b.socketpairs.into_iter().map(|(ino, f)| (pipe_ino.get(&ino).copied().unwrap_or(ino), f)).collect();
        self.shadows = b.shadows.renamed(event_id);
        self.itimers = b.itimers.into_iter().collect();
        self.states = b
            .states
            .into_iter()
            .map(|(v, bytes)| {
                <ProcState as prost::Message>::decode(bytes.as_slice())
                    .map(|s| (v, s))
                    .map_err(|_| bad("process state"))
            })
            .collect::<Result<_>>()?;
        self.clocks = ClockPages::from_entries(&b.clocks);
        self.source.taken = b.taken;
        self.stdio_out = b.stdio_out;
        self.ipc = b.ipc;
        // Their host tids are set once the processes are made again.
        self.born = b
            .born
            .into_iter()
            .map(|(v, (ns_pid, uid, parent))| {
                (v, Born { tid: nix::unistd::Pid::from_raw(0), ns_pid, uid, parent, ended: None })
            })
            .collect();
        Ok(())
    }
}

/// The head of a checkpoint file, checked to be one ftexec reads (`ftdbg checkpoints`).
pub fn read_head(path: &Path) -> Result<Head> {
    let raw = snapshot::read_head(path)?;
    let head: Head = serde_json::from_slice(&raw).map_err(|e| SessionError::Checkpoint {
        path: path.to_path_buf(),
        why: format!("its head does not decode ({e})"),
    })?;
    if head.format != FORMAT {
        return Err(SessionError::Checkpoint { path: path.to_path_buf(), why: format!("format {:?}", head.format) });
    }
    Ok(head)
}

/// The data directory as the tracer sees it (None without one).
pub(super) fn data_dir_view(h: &Header, opts: &ReplayOptions) -> Option<PathBuf> {
    if h.data_dir.is_empty() {
        return None;
    }
    let d = opts.data_dir.clone().unwrap_or_else(|| PathBuf::from(OsStr::from_bytes(&h.data_dir)));
    Some(std::fs::canonicalize(&d).unwrap_or(d))
}

/// What a restore made: every task at its stop, each process's leader, and every task created
/// (to end them if the restore fails).
/// The checkpoint files in `dir`, newest (highest event) first.
fn files_newest_first(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter_map(|p| {
                    let n = p.file_name()?.to_str()?.strip_prefix("event-")?.strip_suffix(".ftckpt")?.parse().ok()?;
                    Some((n, p))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|e| std::cmp::Reverse(e.0));
    v
}

/// Removes all but the newest `keep` checkpoints of `dir`.
fn prune(dir: &Path, keep: usize, log: &Logger) {
    for (_, p) in files_newest_first(dir).into_iter().skip(keep) {
        if let Err(e) = std::fs::remove_file(&p) {
            slog::warn!(log, "cannot remove an old checkpoint"; "file" => %p.display(), "err" => %e);
        }
    }
}
