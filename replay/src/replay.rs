//! The replay session: re-execute the program and, at every stop, take the result from the log
//! instead of the world, checking that the program does what the recording says it did.

use crate::capture;
use crate::debug::{self, Debugger, Resume, StopReason};
use crate::describe;
use crate::error::{Result, SessionError};
use crate::live::{FileShadow, SockShadow};
use crate::program;
use crate::record::{emulate, fcntl_writes, is_synchronous, launch_spec, tracer_can_run, Held};
use crate::Outcome;
use ft_interposer::clock::ClockPages;
use ft_interposer::spin::{self, Probe};
use ft_interposer::tracee::{send_signal, send_signal_to_thread, siginfo_from_bytes, wait_for};
use ft_interposer::{filter, launch, tsc, Stop, Stopped, Vdso, Waited};
use ft_libos::digest;
use ft_libos::log::LogReader;
use ft_libos::policy::{self, Action};
use ft_libos::proto::{event::Kind, Disposition, Event, Exec as ExecEvent, Exit, Header, Preempt, Spawn, Syscall};
use ft_libos::table::{CloneKind, Exec, Live, MaskAt, NewFd, Object, Refusal, Spec, Special, Stream, Target, Timer};
use ft_libos::{lookup, FdKind, FdTable, Sig};
use nix::unistd::Pid;
use slog::{info, Logger};
use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{CString, OsStr};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where replayed events come from.
pub trait EventSource {
    /// The next event, or None at the end of what is available.
    fn next_event(&mut self) -> Result<Option<Event>>;
    /// The next event without consuming it.
    fn peek_event(&mut self) -> Result<Option<&Event>>;
    /// Index of the next event.
    fn position(&self) -> u64;
    /// After `peek_event` returned None: whether this replica must now go live (it leads, and
    /// every committed event has been replayed) rather than stop.
    fn live(&self) -> bool {
        false
    }
}

/// Events from a log file.
pub struct FileSource {
    reader: LogReader,
    peeked: Option<Event>,
    pos: u64,
    /// The end of the file is the end of what a leader committed: a replay goes live there.
    live_at_end: bool,
}

impl FileSource {
    /// Opens a log after checking every record's checksum, so a damaged log is refused before
    /// the program prints anything.
    pub fn open(path: &Path) -> Result<Self> {
        LogReader::open(path)?.verify_rest()?;
        Ok(FileSource { reader: LogReader::open(path)?, peeked: None, pos: 0, live_at_end: false })
    }

    /// Makes the end of the file the end of a committed log: [`replay_then_live`] goes live
    /// there, as a follower does when its leader dies (`ftexec replay --continue-into`).
    pub fn live_at_end(mut self) -> Self {
        self.live_at_end = true;
        self
    }
    pub fn header(&self) -> &Header {
        self.reader.header()
    }
}

impl EventSource for FileSource {
    fn next_event(&mut self) -> Result<Option<Event>> {
        let ev = match self.peeked.take() {
            Some(e) => Some(e),
            None => self.reader.next_event()?,
        };
        if ev.is_some() {
            self.pos += 1;
        }
        Ok(ev)
    }
    fn peek_event(&mut self) -> Result<Option<&Event>> {
        if self.peeked.is_none() {
            self.peeked = self.reader.next_event()?;
        }
        Ok(self.peeked.as_ref())
    }
    fn position(&self) -> u64 {
        self.pos
    }
    fn live(&self) -> bool {
        self.live_at_end
    }
}

/// The log as replay takes it, noting every signal a task took (going live: a child that ended
/// after its parent's last SIGCHLD is owed one; a signal the program sent that no task took
/// since is still pending, see [`SentSignal`]).
struct Noted<'a> {
    inner: &'a mut dyn EventSource,
    /// (log position, task, signal) of each signal event, in order; replay adds the signals
    /// that sigtimedwait took.
    taken: Vec<(u64, u32, i32)>,
}

impl EventSource for Noted<'_> {
    fn next_event(&mut self) -> Result<Option<Event>> {
        let ev = self.inner.next_event()?;
        if let Some(Event { kind: Some(Kind::Signal(s)) }) = &ev {
            self.taken.push((self.inner.position(), s.task, s.signo));
        }
        Ok(ev)
    }
    fn peek_event(&mut self) -> Result<Option<&Event>> {
        self.inner.peek_event()
    }
    fn position(&self) -> u64 {
        self.inner.position()
    }
    fn live(&self) -> bool {
        self.inner.live()
    }
}

/// How to replay.
pub struct ReplayOptions {
    /// The data directory to replay into (None: the recorded path).
    pub data_dir: Option<PathBuf>,
    /// Replay even if the CPU model differs from the recording's.
    pub allow_cpu_mismatch: bool,
    /// Write the recorded stdout/stderr bytes to ftexec's own.
    pub print_stdio: bool,
}

/// Where a replica that goes live records from then on.
pub struct GoLive<'a> {
    pub sink: &'a mut dyn crate::record::EventSink,
    /// The data directory as the program sees it.
    pub data_dir: Option<PathBuf>,
    /// Called once the replica is live, before it records its first event.
    pub on_live: Box<dyn FnOnce() + 'a>,
}

/// Checks that this machine can replay the log; returns the bind mount the data directory needs.
pub fn check_inputs(h: &Header, opts: &ReplayOptions) -> Result<Option<(CString, CString)>> {
    let exe = Path::new(OsStr::from_bytes(&h.exe_path));
    if !exe.exists() {
        return Err(SessionError::ProgramNotFound {
            path: exe.into(),
            hint: " (the recording ran it; replay needs the same binary at the same path)".into(),
        });
    }
    let hash = program::hash_file(exe)?;
    if hash != h.exe_hash {
        return Err(SessionError::Mismatch {
            what: format!("the executable {}", exe.display()),
            detail: format!(
                "its blake3 is {}, the recording's was {}; replay needs the exact binary that was recorded",
                digest::hex(&hash[..8]),
                digest::hex(&h.exe_hash[..8.min(h.exe_hash.len())])
            ),
        });
    }
    if !h.interp_path.is_empty() {
        let interp = Path::new(OsStr::from_bytes(&h.interp_path));
        let ok = program::hash_file(interp).map(|x| x == h.interp_hash).unwrap_or(false);
        if !ok {
            return Err(SessionError::Mismatch {
                what: format!("the dynamic loader {}", interp.display()),
                detail: "it is missing or changed since the recording (system update?)".into(),
            });
        }
    }
    let cpu = program::cpu_model();
    if cpu != h.cpu_model && !opts.allow_cpu_mismatch {
        return Err(SessionError::Mismatch {
            what: "the CPU".into(),
            detail: format!(
                "this machine has \"{cpu}\", the recording was made on \"{}\"; pass --allow-cpu-mismatch to try anyway",
                h.cpu_model
            ),
        });
    }
    if h.data_dir.is_empty() {
        if let Some(d) = &opts.data_dir {
            return Err(SessionError::Mismatch {
                what: "the data directory".into(),
                detail: format!("{} was given, but the recording was made without --data-dir", d.display()),
            });
        }
        return Ok(None);
    }
    let recorded = PathBuf::from(OsStr::from_bytes(&h.data_dir));
    let dir = opts.data_dir.clone().unwrap_or_else(|| recorded.clone());
    let dir = std::fs::canonicalize(&dir).map_err(SessionError::io(format!("data directory {}", dir.display())))?;
    let got = digest::dir(&dir)
        .map_err(|e| SessionError::Io { what: format!("data directory {}", dir.display()), source: e.source })?;
    if got != h.data_dir_digest {
        return Err(SessionError::Mismatch {
            what: format!("the data directory {}", dir.display()),
            detail: format!(
                "its content (digest {}) is not what the recorded run started with (digest {}); replay needs a copy of the data directory as it was before recording",
                digest::hex(&got[..8]),
                digest::hex(&h.data_dir_digest[..8.min(h.data_dir_digest.len())])
            ),
        });
    }
    if dir == recorded {
        return Ok(None);
    }
    if !recorded.is_dir() {
        return Err(SessionError::Mismatch {
            what: "the data directory".into(),
            detail: format!(
                "the program expects it at {}, which does not exist here; create that directory (it is used as a mount point) or replay with --data-dir {}",
                recorded.display(),
                recorded.display()
            ),
        });
    }
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).ok();
    Ok(c(&dir).zip(c(&recorded)))
}

/// Replays the log in `source` (whose header is `h`).
pub fn replay(h: &Header, source: &mut dyn EventSource, opts: &ReplayOptions, log: &Logger) -> Result<Outcome> {
    replay_then_live(h, source, opts, None, log)
}

/// Replays; if the source says so at its end, goes live and records into `live`'s sink.
pub fn replay_then_live(
    h: &Header,
    source: &mut dyn EventSource,
    opts: &ReplayOptions,
    live: Option<GoLive<'_>>,
    log: &Logger,
) -> Result<Outcome> {
    session(h, source, opts, live, None, log)
}

/// Replays under a debugger (see [`crate::debug`]); ends with [`SessionError::Restart`] when the
/// debugger asks for it.
pub fn replay_debug<'a>(
    h: &Header,
    source: &'a mut dyn EventSource,
    opts: &ReplayOptions,
    debugger: &'a mut dyn Debugger,
    log: &Logger,
) -> Result<Outcome> {
    session(h, source, opts, None, Some(debugger), log)
}

fn session<'a>(
    h: &Header,
    source: &'a mut dyn EventSource,
    opts: &ReplayOptions,
    live: Option<GoLive<'_>>,
    debug: Option<&'a mut dyn Debugger>,
    log: &Logger,
) -> Result<Outcome> {
    let bind = check_inputs(h, opts)?;
    let start = match source.next_event()? {
        Some(Event { kind: Some(Kind::Start(s)) }) => s,
        Some(other) => {
            return Err(SessionError::Divergence {
                index: 0,
                expected: describe::event(&other),
                got: "the program's start".into(),
            })
        }
        None => return Err(SessionError::LogEnded { index: 0 }),
    };
    let at_random: [u8; 16] = start.at_random.as_slice().try_into().map_err(|_| SessionError::Mismatch {
        what: "the log".into(),
        detail: "its start event has no AT_RANDOM bytes".into(),
    })?;
    let filter = filter::build()?;
    let vdso = if start.clock_page { Vdso::ClockPage } else { Vdso::Hide };
    let launched = launch(&launch_spec(h, Some(at_random), bind, vdso)?, &filter)?;
    let pid = launched.tracee.pid();
    crate::set_current_tracee(pid.as_raw());
    info!(log, "replaying"; "pid" => pid.as_raw());
    let mut r = Replayer {
        source: Noted { inner: source, taken: Vec::new() },
        fds: HashMap::from([(0, FdTable::new())]),
        print: opts.print_stdio,
        tasks: HashMap::new(),
        holder: None,
        last_run: 0,
        status0: None,
        arrived: HashMap::new(),
        early_deaths: HashMap::new(),
        sockets: HashMap::new(),
        files: HashMap::new(),
        max_vtid: 0,
        log: log.clone(),
        fresh_holder: None,
        debug,
        stepping: None,
        clocks: ClockPages::default(),
        refilled: HashSet::new(),
        clone_args: HashMap::new(),
        exec_running: HashSet::new(),
        calls: HashMap::new(),
        silent: HashMap::new(),
        interrupting: None,
        interrupted_at: std::time::Instant::now(),
        yielded: None,
        born: HashMap::new(),
        restarts: HashMap::new(),
        pidfds: HashMap::new(),
        unarmed_timers: HashSet::new(),
        ids: HashMap::new(),
        sent: Vec::new(),
        pipes: HashMap::new(),
        eventfds: HashMap::new(),
        itimers: HashMap::new(),
    };
    let ns_pid = ft_interposer::tracee::ns_pid_uid(pid).map_or(0, |(p, _)| p);
    r.ids.insert(0, (ns_pid, 0));
    if start.clock_page {
        r.clocks.exec(0, true);
    }
    let result = if launched.sp != start.sp {
        Err(SessionError::Mismatch {
            what: "the program's initial stack".into(),
            detail: format!(
                "it starts at {:#x}, the recording's at {:#x}: the kernel lays out arguments differently here (different kernel or stack limit?)",
                launched.sp, start.sp
            ),
        })
    } else {
        r.tasks.insert(0, RTask { tid: pid, proc: 0, state: RState::Idle(launched.tracee), pending: Vec::new() });
        match r.run() {
            Ok(Ended::Done(o)) => Ok(o),
            Ok(Ended::Live) => match live {
                Some(l) => {
                    let handover = r.go_live()?;
                    info!(log, "live: recording from event {}", handover.events);
                    r.tasks.clear();
                    (l.on_live)();
                    crate::record::continue_live(handover, l.data_dir.as_deref(), l.sink, log)
                }
                None => Err(SessionError::LogEnded { index: r.source.position() }),
            },
            Err(e) => Err(e),
        }
    };
    if result.is_err() {
        ft_interposer::tracee::kill_and_reap_all(r.tasks.values().map(|t| t.tid).chain([pid]));
    }
    result
}

/// What a task is doing at replay. Exactly one task runs at a time: the one the log names.
enum RState {
    /// Created; its first stop (SIGSTOP) has not been collected.
    Starting,
    /// In a ptrace stop with nothing pending; resumes when it gets the token.
    Idle(Stopped),
    /// At the seccomp stop of a syscall that released the token at record: its completion (or
    /// Spawn/Exec) event is still ahead in the log.
    Parked(Parked),
    /// Holds the token and runs.
    Running,
    /// Executing a clone or an exec for real (resumed to its exit); its completion is ahead.
    Executing,
    /// At the seccomp stop of an execve in a process with other threads. The kernel ends those
    /// threads when the execve runs, and at record they ran on meanwhile (their events are
    /// logged between the call and its effect), so it waits until the log shows the effect:
    /// its Exec event or result, or the death of one of those threads.
    ExecParked(Parked),
    /// At the seccomp stop of a clone, until the log shows what it did at record: its Spawn
    /// event (then it runs for real) or its result without a child. A clone fails when a signal
    /// is pending (-ERESTARTNOINTR, then the kernel runs it again; a traced parent gets even
    /// an ignored SIGCHLD queued) or on a limit (EAGAIN); run for real here it could succeed
    /// and create a task the recording does not have.
    CloneParked(Parked),
    /// A stop collected after the last committed event (going live): the recorder handles it.
    Fresh(Stopped),
}

enum Ended {
    Done(Outcome),
    /// The committed log is replayed and this replica leads: go live.
    Live,
}

struct Parked {
    t: Stopped,
    regs: ft_interposer::Regs,
    spec: &'static Spec,
    args: [u64; 6],
}

struct RTask {
    tid: Pid,
    proc: u32,
    state: RState,
    /// Asynchronous signals sent to reproduce the recording, not yet delivered, with the
    /// siginfo to give them at their delivery stop.
    pending: Vec<Held>,
}

struct Replayer<'a> {
    source: Noted<'a>,
    fds: HashMap<u32, FdTable>,
    print: bool,
    tasks: HashMap<u32, RTask>,
    holder: Option<u32>,
    last_run: u32,
    status0: Option<i32>,
    /// Stops collected while waiting for another task, not yet handled.
    arrived: HashMap<Pid, Waited>,
    /// Deaths seen before the log reached them: the threads of an exit_group die in an order the
    /// kernel chooses, so a death may come while the log names a sibling's first.
    early_deaths: HashMap<u32, Exit>,
    /// Sockets of each process (by the vtid of its leader), for going live.
    sockets: HashMap<u32, HashMap<i32, SockShadow>>,
    /// Files outside the data directory (stand-ins at replay) of each process, for going live.
    files: HashMap<u32, HashMap<i32, FileShadow>>,
    max_vtid: u32,
    log: Logger,
    /// The task that held the token when the committed log ended.
    fresh_holder: Option<u32>,
    debug: Option<&'a mut dyn Debugger>,
    /// The task a debugger single-steps.
    stepping: Option<Pid>,
    /// The clock page of each process whose vDSO goes to it (as at record).
    clocks: ClockPages,
    /// Processes whose clock buffer was refilled since their last checked stop.
    refilled: HashSet<u32>,
    /// The argument registers of a clone/fork/vfork that [`quiet_clone`] rewrote, by task (the
    /// parent until the call completes, then the child until its first stop): given back so that
    /// both see the registers the kernel preserves (glibc's vfork keeps its return address in
    /// rdi across the syscall).
    clone_args: HashMap<u32, [u64; 6]>,
    /// Processes (by leader vtid) in which an execve released from [`RState::ExecParked`] runs:
    /// their other threads are being ended by the kernel.
    exec_running: HashSet<u32>,
    /// The last syscall each task stopped at (for a delivery at its exit).
    calls: HashMap<u32, Call>,
    /// Per task, its syscall stops that logged nothing since its last one that logged an event
    /// (as the recorder counts them; see `Signal.silent`).
    silent: HashMap<u32, u32>,
    /// The task sent a SIGSTOP to probe it for a fixpoint (see [`Replayer::preempt`]); its
    /// delivery stop is not the program's.
    interrupting: Option<Pid>,
    /// When that SIGSTOP was sent.
    interrupted_at: std::time::Instant,
    /// The task that gave up the token at a Preempt: the token goes back to it only by a switch
    /// or by its own next event, not by default as to a task that stopped at a syscall.
    yielded: Option<u32>,
    /// Child processes forked at replay and not reaped yet, by task number (see [`Born`]).
    born: HashMap<u32, Born>,
    /// Per task, the syscall (number, arguments) that the log's -ERESTART_RESTARTBLOCK
    /// interrupted, until a result other than that: the kernel continues it as
    /// restart_syscall, which a replay that goes live must run as that syscall again.
    restarts: HashMap<u32, (u32, [u64; 6])>,
    /// The pid (as the program sees it) of each pidfd that pidfd_open made, by (process, fd):
    /// at replay they are stand-ins, so a pidfd_send_signal's target is known from here.
    pidfds: HashMap<(u32, i32), i32>,
    /// The syscalls that armed timers going live cannot arm again (POSIX timers, timerfds),
    /// named in a warning when it does.
    unarmed_timers: HashSet<&'static str>,
    /// Every task's (tid as the program sees it, process), dead ones too.
    ids: HashMap<u32, (i32, u32)>,
    /// Signals the program sent (kill, tgkill, sigqueue...), in log order (see [`SentSignal`]).
    sent: Vec<SentSignal>,
    /// Per pipe (inode), the bytes the program wrote into it and has not read: replay runs
    /// neither (their results are logged), so a replay that goes live writes them in.
    pipes: HashMap<u64, Flow>,
    /// The program's eventfds, by the eventfd id of their stand-ins: their counters as the log's
    /// writes and reads leave them (replay runs neither), made again when going live.
    eventfds: HashMap<u64, crate::live::EventShadow>,
    /// Interval timers armed by the program (alarm, setitimer), by (process, which): replay
    /// arms none (the log has their signals), a replay that goes live arms them.
    itimers: HashMap<(u32, i32), Itimer>,
}

/// The bytes in flight in one of the program's pipes (see `Replayer::pipes`).
#[derive(Default)]
struct Flow {
    queue: VecDeque<u8>,
    /// Bytes read before the write that brought them was logged (a blocking write bigger
    /// than the pipe's room completes after its reader took part of it): taken off that write.
    debt: usize,
}

/// An interval timer as the program last set it, and the log position then.
#[derive(Clone, Copy)]
struct Itimer {
    /// struct itimerval: interval s, µs, value s, µs.
    itv: [i64; 4],
    at: u64,
}

/// A signal the program sent to one of its own tasks (at replay the syscall only returns its
/// logged result). If no task of its target took it in the log since, it was still pending
/// when the log ended: a replay that goes live sends it again ([`Replayer::resend_pending`]).
struct SentSignal {
    at: u64,
    /// The target's pid or tid as the program sees it.
    target: i32,
    thread: bool,
    sig: i32,
    /// The siginfo of a sigqueue.
    info: Option<libc::siginfo_t>,
}

/// A child process forked at replay. Its exit signal is 0 ([`quiet_clone`]), so the kernel
/// sends its parent no SIGCHLD and keeps it a zombie until a wait with `__WALL` takes it:
/// replay reaps it for real where the log's wait reaped it, and a replay that goes live hands
/// the ones still there to the recorder (which then gives their parents what the kernel would).
#[derive(Clone, Copy)]
struct Born {
    tid: Pid,
    /// Its pid and uid as the program sees them.
    ns_pid: i32,
    uid: u32,
    /// Its parent's process (task number of the leader).
    parent: u32,
    /// Its exit, and the log position then, once it ended at replay.
    ended: Option<(u64, (i32, i32))>,
}

/// How long replay lets a task run toward the fixpoint where the recording preempted it.
const PREEMPT_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether the signal of a delivery at a syscall's exit is in the kernel already.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sent {
    No,
    /// By an earlier group at a syscall (still pending, blocked until now).
    Before,
    /// Just now, before the wait that takes it ran.
    ForTheWait,
}

/// A syscall as the task made it: its number, the address after it, its arguments.
#[derive(Clone, Copy)]
struct Call {
    nr: u64,
    ip: u64,
    args: [u64; 6],
}

impl Replayer<'_> {
    fn diverge(&self, index: u64, expected: String, got: String) -> SessionError {
        SessionError::Divergence { index, expected, got }
    }

    fn task(&mut self, vtid: u32, index: u64) -> Result<&mut RTask> {
        if self.tasks.contains_key(&vtid) {
            return self.tasks.get_mut(&vtid).ok_or(SessionError::LogEnded { index });
        }
        Err(SessionError::Divergence {
            index,
            expected: format!("an event of task {vtid}"),
            got: format!("no task {vtid} exists"),
        })
    }

    fn take_state(&mut self, vtid: u32) -> RState {
        self.tasks.get_mut(&vtid).map(|t| std::mem::replace(&mut t.state, RState::Running)).unwrap_or(RState::Running)
    }

    fn set_state(&mut self, vtid: u32, state: RState) {
        if let Some(t) = self.tasks.get_mut(&vtid) {
            t.state = state;
        }
    }

    fn fds_of(&mut self, vtid: u32) -> &mut FdTable {
        let proc = self.tasks.get(&vtid).map(|t| t.proc).unwrap_or(0);
        self.fds.entry(proc).or_default()
    }

    fn run(&mut self) -> Result<Ended> {
        loop {
            let index = self.source.position();
            // Every task is gone: the recording ended here too (its last event was the last exit).
            // A replicated source would wait for more entries that never come.
            if self.tasks.is_empty() {
                return Ok(Ended::Done(Outcome { status: self.status0.unwrap_or(0), events: index }));
            }
            // At record a free token goes at once to the only ready task, without a Run event when
            // it is the task that had it last: do the same here, before reading on.
            if self.holder.is_none()
                && self.yielded != Some(self.last_run)
                && matches!(self.tasks.get(&self.last_run).map(|t| &t.state), Some(RState::Idle(_)))
            {
                self.give_token(self.last_run, index)?;
                continue;
            }
            // Look without copying: on the hot path the running task consumes the event itself.
            let ended = self.source.peek_event()?.is_none();
            if ended && !self.tasks.is_empty() && self.source.live() {
                // Let the running task reach its next stop first (kept as Fresh).
                if let Some(h) = self.holder {
                    self.advance(h)?;
                    continue;
                }
                return Ok(Ended::Live);
            }
            let (owner, async_signal) = match self.source.peek_event()? {
                Some(ev) => (ev.task(), matches!(&ev.kind, Some(Kind::Signal(s)) if is_async(s))),
                None => return Err(SessionError::LogEnded { index }),
            };
            let exec_released = self.release_exec(index)?;
            self.release_clone()?;
            // The running task first reaches the point where the recording logged this event.
            if let Some(h) = self.holder {
                // A thread that is not running and ends without a signal was ended by a sibling's
                // exit_group or execve: the running sibling first gets there.
                let proc_of = |v: u32| self.tasks.get(&v).map(|t| t.proc);
                let ended_by_running_sibling = match self.source.peek_event()? {
                    Some(Event { kind: Some(Kind::Exit(e)) }) => {
                        e.signal == 0 && e.task != h && proc_of(e.task).is_some() && proc_of(e.task) == proc_of(h)
                    }
                    _ => false,
                };
                let is_completion = exec_released
                    || !ended_by_running_sibling
                        && owner.is_some_and(|o| {
                            matches!(self.tasks.get(&o).map(|t| &t.state), Some(RState::Parked(_) | RState::Executing))
                        });
                if !is_completion && !async_signal {
                    self.advance(h)?;
                    continue;
                }
            }
            let Some(ev) = self.source.peek_event()?.cloned() else { return Err(SessionError::LogEnded { index }) };
            slog::debug!(self.log, "event"; "index" => index, "holder" => ?self.holder, "event" => slog::FnValue(|_| describe::event(&ev)));
            match ev.kind.clone() {
                Some(Kind::Run(r)) => {
                    self.source.next_event()?;
                    self.give_token(r.task, index)?;
                }
                Some(Kind::Signal(s)) if is_async(&s) => {
                    self.source.next_event()?;
                    let task = self.task(s.task, index)?;
                    if let Some(sig) = Sig::new(s.signo) {
                        // To the thread that took it at record: a process-directed send could be
                        // taken by another thread (whose stop would not expect it), and would be
                        // pending for every thread (a clone the log releases meanwhile would fail
                        // with -ERESTARTNOINTR). Its default action (end, stop) is the process's.
                        let _ = send_signal_to_thread(task.tid, sig);
                        task.pending.push(Held { sig, info: None });
                    }
                }
                Some(Kind::Spawn(sp)) => self.spawn(sp, index)?,
                Some(Kind::Exec(ex)) => self.exec(ex, index)?,
                Some(Kind::Exit(e)) => self.death_of_idle(e, index)?,
                Some(Kind::Start(_)) | None => {
                    return Err(self.diverge(index, describe::event(&ev), "a running program".into()))
                }
                Some(Kind::Syscall(s)) => {
                    let task = s.task;
                    match self.take_state(task) {
                        RState::Parked(p) => {
                            self.source.next_event()?;
                            let t = self.complete(p, index, s)?;
                            self.set_state(task, RState::Idle(t));
                        }
                        RState::Executing => {
                            self.source.next_event()?;
                            let t = self.finish_executing(s, index)?;
                            self.set_state(task, RState::Idle(t));
                        }
                        other => {
                            self.set_state(s.task, other);
                            self.implicit_token(s.task, index, &ev)?;
                        }
                    }
                }
                Some(Kind::Rdtsc(_)) | Some(Kind::Signal(_)) | Some(Kind::Clocks(_)) | Some(Kind::Preempt(_)) => {
                    let task = owner.unwrap_or(u32::MAX);
                    self.implicit_token(task, index, &ev)?;
                }
            }
        }
    }

    /// If the next event shows what a clone held in [`RState::CloneParked`] did at record, lets
    /// it go on: its Spawn runs it for real (a vfork parent then waits on the child's exec in the
    /// kernel, as at record); its result without a Spawn completes it as any parked syscall
    /// (the failure injected, or the syscall rewound for the kernel's restart).
    fn release_clone(&mut self) -> Result<()> {
        let (vtid, spawned) = match self.source.peek_event()? {
            Some(Event { kind: Some(Kind::Spawn(sp)) }) => (sp.parent, true),
            Some(Event { kind: Some(Kind::Syscall(sc)) }) => (sc.task, false),
            _ => return Ok(()),
        };
        if !matches!(self.tasks.get(&vtid).map(|t| &t.state), Some(RState::CloneParked(_))) {
            return Ok(());
        }
        let RState::CloneParked(p) = self.take_state(vtid) else { return Ok(()) };
        if !spawned {
            self.set_state(vtid, RState::Parked(p));
            return Ok(());
        }
        quiet_clone(&p)?;
        self.clone_args.insert(vtid, p.args);
        p.t.cont_to_exit()?;
        self.set_state(vtid, RState::Executing);
        Ok(())
    }

    /// If the next event shows the effect of an execve held in [`RState::ExecParked`] (its Exec
    /// event or result, or the death of a thread of its process), lets the execve run. Returns
    /// whether it did.
    fn release_exec(&mut self, index: u64) -> Result<bool> {
        let waiting = match self.source.peek_event()? {
            Some(Event { kind: Some(Kind::Exec(ex)) }) => Some(ex.task),
            Some(Event { kind: Some(Kind::Syscall(sc)) }) => Some(sc.task),
            Some(Event { kind: Some(Kind::Exit(e)) }) => {
                let proc = self.tasks.get(&e.task).map(|t| t.proc);
                self.tasks
                    .iter()
                    .find(|(_, t)| Some(t.proc) == proc && matches!(t.state, RState::ExecParked(_)))
                    .map(|(v, _)| *v)
            }
            _ => None,
        };
        let Some(vtid) = waiting else { return Ok(false) };
        if !matches!(self.tasks.get(&vtid).map(|t| &t.state), Some(RState::ExecParked(_))) {
            return Ok(false);
        }
        let RState::ExecParked(p) = self.take_state(vtid) else { return Err(SessionError::LogEnded { index }) };
        p.t.cont_to_exit()?;
        self.set_state(vtid, RState::Executing);
        if let Some(proc) = self.tasks.get(&vtid).map(|t| t.proc) {
            self.exec_running.insert(proc);
        }
        Ok(true)
    }

    /// An event of a task that does not run: it runs on after its last switch (no Run logged
    /// when the token goes back to the task that had it last).
    fn implicit_token(&mut self, task: u32, index: u64, ev: &Event) -> Result<()> {
        if self.holder.is_none() && task == self.last_run && self.tasks.contains_key(&task) {
            return self.give_token(task, index);
        }
        Err(self.diverge(index, describe::event(ev), format!("task {task} not scheduled to run here")))
    }

    fn give_token(&mut self, vtid: u32, index: u64) -> Result<()> {
        let tid = self.task(vtid, index)?.tid;
        let t = match self.take_state(vtid) {
            RState::Idle(t) => t,
            RState::Starting => match self.wait_tid(tid)? {
                Waited::Stopped(s) => {
                    if let Some(args) = self.clone_args.remove(&vtid) {
                        let mut regs = s.regs()?;
                        regs.set_args(&args);
                        s.set_regs(&regs)?;
                    }
                    s
                }
                w => return self.on_death(vtid, w, index),
            },
            other => {
                self.set_state(vtid, other);
                return Err(self.diverge(
                    index,
                    format!("a switch to task {vtid}"),
                    format!("task {vtid} is not waiting"),
                ));
            }
        };
        self.holder = Some(vtid);
        self.last_run = vtid;
        self.yielded = None;
        self.set_state(vtid, RState::Running);
        let r = if matches!(t.stop, Stop::Seccomp | Stop::SyscallExit) {
            self.resume(vtid, t)
        } else {
            Ok(t.cont(None).map(drop)?)
        };
        match r {
            Err(SessionError::Trace(e)) if e.is_gone() => Ok(()),
            other => other,
        }
    }

    /// Waits for `tid`'s next stop. Meanwhile the running task may stop too (a vfork child
    /// reaching execve, which the vfork parent waits for): its stops that need no event are
    /// handled at once, as at record; others wait in `arrived` for their turn in the log.
    fn wait_tid(&mut self, tid: Pid) -> Result<Waited> {
        loop {
            if let Some(w) = self.arrived.remove(&tid) {
                return Ok(w);
            }
            let (pid, w) = wait_for(None)?;
            if pid == tid {
                return Ok(w);
            }
            let holder = self.holder.and_then(|h| self.tasks.get(&h).map(|t| (h, t.tid)));
            match (holder, w) {
                (Some((h, htid)), Waited::Stopped(st)) if htid == pid && self.needs_no_event(h, &st)? => {
                    match self.on_stop(h, st) {
                        Err(SessionError::Trace(e)) if e.is_gone() => {}
                        other => other?,
                    }
                }
                (_, w) => {
                    self.arrived.insert(pid, w);
                }
            }
        }
    }

    /// Whether handling this stop of the running task consumes no log event.
    fn needs_no_event(&mut self, vtid: u32, st: &Stopped) -> Result<bool> {
        match st.stop {
            Stop::Seccomp => {
                if let Some(Event { kind: Some(Kind::Signal(s)) }) = self.source.peek_event()? {
                    if (s.at_syscall || s.at_exit) && s.task == vtid {
                        return Ok(false);
                    }
                }
                let regs = st.regs()?;
                let Some(spec) = lookup(regs.nr()) else { return Ok(true) };
                let args = regs.args();
                let action = policy::decide(spec, &args, self.fds_of(vtid), false);
                if self.answered_in_tracer(vtid, spec, action)? {
                    return Ok(false);
                }
                Ok(match action {
                    Action::Record { exec: Exec::Tracer } => !tracer_can_run(spec, &args),
                    Action::Execute | Action::Output { stdio: Some(_) } => false,
                    Action::Refuse(Refusal::Unsupported(_)) => false,
                    _ => true,
                })
            }
            Stop::Signal(sig) => {
                let pending = self.tasks.get(&vtid).is_some_and(|t| t.pending.iter().any(|h| h.sig == sig));
                Ok(pending || (sig != Sig::SIGSEGV && !is_synchronous(st, sig)))
            }
            // Another thread's execve, reported on this leader's tid: the log's Exec event.
            Stop::Exec => Ok(false),
            _ => Ok(true),
        }
    }

    /// Lets the running task reach its next stop and handles it.
    fn advance(&mut self, vtid: u32) -> Result<()> {
        let index = self.source.position();
        let tid = self.task(vtid, index)?.tid;
        let next = self.source.peek_event()?;
        let ended = next.is_none();
        if let Some(Event { kind: Some(Kind::Preempt(p)) }) = next {
            if p.task == vtid {
                let p = p.clone();
                return self.preempt(vtid, tid, p, index);
            }
        }
        let others_idle =
            || self.tasks.iter().any(|(v, t)| *v != vtid && matches!(t.state, RState::Idle(_) | RState::Fresh(_)));
        let waited = if ended && self.source.live() && others_idle() {
            // At the end of a log that goes on live, the task may spin until another runs: probe
            // it as the recorder would (the handover tells the recorder the SIGSTOP is its). A
            // syscall it reaches first lets the SIGSTOP in before it and stops again.
            loop {
                let Some(w) = self.wait_or_interrupt(tid, crate::record::PROBE_GAP, None)? else {
                    return Err(SessionError::LogEnded { index });
                };
                match w {
                    Waited::Stopped(s) if s.stop == Stop::Seccomp && self.interrupting == Some(tid) => {
                        crate::record::let_interrupt_in(s)?;
                    }
                    w => break w,
                }
            }
        } else {
            self.wait_tid(tid)?
        };
        match waited {
            Waited::Stopped(s) if s.stop == Stop::Exec => {
                // The running task never reaches an exec stop itself (its own execve makes it
                // Executing): another thread's execve took over this leader's tid and ended
                // it. The log's Exec event (after the other threads' deaths) collects the stop.
                self.arrived.insert(tid, Waited::Stopped(s));
                self.holder = None;
                Ok(())
            }
            Waited::Stopped(s) if self.source.peek_event()?.is_none() && self.source.live() => {
                self.set_state(vtid, RState::Fresh(s));
                self.holder = None;
                self.fresh_holder = Some(vtid);
                Ok(())
            }
            Waited::Stopped(s) => {
                let Some(s) = self.debug_stop(vtid, s)? else { return Ok(()) };
                match self.on_stop(vtid, s) {
                    Err(SessionError::Trace(e)) if e.is_gone() => Ok(()),
                    other => other,
                }
            }
            w => self.on_death(vtid, w, index),
        }
    }

    /// Waits for a stop of `tid`; if none comes within `gap`, sends it a probe's SIGSTOP. Gives
    /// up after `limit` (None: waits for good).
    fn wait_or_interrupt(
        &mut self,
        tid: Pid,
        gap: std::time::Duration,
        limit: Option<std::time::Duration>,
    ) -> Result<Option<Waited>> {
        let start = std::time::Instant::now();
        let mut nap = std::time::Duration::from_micros(20);
        loop {
            if let Some(w) = self.arrived.remove(&tid) {
                return Ok(Some(w));
            }
            if let Some((_, w)) = ft_interposer::tracee::try_wait_for(Some(tid))? {
                return Ok(Some(w));
            }
            if limit.is_some_and(|l| start.elapsed() > l) {
                return Ok(None);
            }
            if let Some(p) = self.interrupting {
                if self.interrupted_at.elapsed() > spin::INTERRUPT_PATIENCE && !spin::stop_pending(p) {
                    // Discarded by a SIGCONT to the process: send another.
                    self.interrupting = None;
                }
            }
            if self.interrupting.is_none() && start.elapsed() >= gap {
                match spin::interrupt(tid) {
                    Ok(()) => {
                        self.interrupting = Some(tid);
                        self.interrupted_at = std::time::Instant::now();
                    }
                    Err(e) if e.is_gone() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(std::time::Duration::from_millis(1));
        }
    }

    /// The recording preempted the running task at a fixpoint of a spin loop (see
    /// [`ft_interposer::spin`]): probe it until it is in that state, then do what the recording
    /// did there. A task that reaches another fixpoint, or makes an event of its own first, has
    /// diverged.
    fn preempt(&mut self, vtid: u32, tid: Pid, p: Preempt, index: u64) -> Result<()> {
        let expected = || describe::event(&Event { kind: Some(Kind::Preempt(p.clone())) });
        let start = std::time::Instant::now();
        let mut gap = std::time::Duration::from_millis(1);
        loop {
            let left = PREEMPT_LIMIT.saturating_sub(start.elapsed());
            let Some(w) = self.wait_or_interrupt(tid, gap, Some(left))? else {
                return Err(self.diverge(
                    index,
                    expected(),
                    format!(
                        "task {vtid} still running {} s later without reaching that state",
                        PREEMPT_LIMIT.as_secs()
                    ),
                ));
            };
            let s = match w {
                Waited::Stopped(s) if self.interrupting == Some(tid) && s.stop == Stop::Signal(Sig::SIGSTOP) => s,
                // A stop of its own on the way (one that logged nothing at record), or a
                // divergence, which handling it reports.
                Waited::Stopped(s) => {
                    return match self.on_stop(vtid, s) {
                        Err(SessionError::Trace(e)) if e.is_gone() => Ok(()),
                        other => other,
                    }
                }
                w => return self.on_death(vtid, w, index),
            };
            self.interrupting = None;
            match spin::probe(s, Some(p.ip))? {
                Probe::Fixpoint(point, t) if point.digest[..] == p.digest[..] => return self.preempted(vtid, t, p),
                Probe::Fixpoint(point, _) => {
                    return Err(self.diverge(
                        index,
                        expected(),
                        format!(
                            "task {vtid} spinning at {:#x} in another state (digest {})",
                            point.ip,
                            digest::hex(&point.digest)
                        ),
                    ))
                }
                Probe::Moving(_, t) => {
                    t.cont(None)?;
                    gap = (gap * 2).min(std::time::Duration::from_millis(50));
                }
                Probe::Other(pid, w) => {
                    self.arrived.insert(pid, w);
                    return Ok(());
                }
            }
        }
    }

    /// The task is where the recording preempted it: it gives up the token, or takes the
    /// signals the recording delivered there.
    fn preempted(&mut self, vtid: u32, t: Stopped, p: Preempt) -> Result<()> {
        self.source.next_event()?;
        let proc = self.tasks.get(&vtid).map(|t| t.proc).unwrap_or(0);
        self.check_clock_reads(proc, &t)?;
        if p.yielded {
            self.holder = None;
            self.yielded = Some(vtid);
            self.set_state(vtid, RState::Idle(t));
            return Ok(());
        }
        let tid = t.pid();
        for s in &p.signals {
            let Some(sig) = Sig::new(s.signo) else { continue };
            let _ = send_signal_to_thread(tid, sig);
            if let Some(task) = self.tasks.get_mut(&vtid) {
                task.pending.push(Held { sig, info: siginfo_from_bytes(&s.siginfo) });
            }
        }
        t.cont(None)?;
        Ok(())
    }

    /// With a debugger: serves it if this stop of the running task is one of its stops. Returns
    /// the stop if the replay still has to handle it (None: a breakpoint trap or a finished step,
    /// which the recording never saw, handled and resumed here).
    fn debug_stop(&mut self, vtid: u32, s: Stopped) -> Result<Option<Stopped>> {
        let Some(dbg) = self.debug.take() else { return Ok(Some(s)) };
        let r = self.serve_debugger(&mut *dbg, vtid, s);
        self.debug = Some(dbg);
        r
    }

    fn serve_debugger(&mut self, dbg: &mut dyn Debugger, vtid: u32, s: Stopped) -> Result<Option<Stopped>> {
        let position = self.source.position();
        let tid = s.pid();
        let trap = match s.stop {
            Stop::Signal(Sig::SIGTRAP) if self.stepping == Some(tid) => Some(StopReason::Step),
            Stop::Signal(Sig::SIGTRAP) => {
                let mut regs = s.regs()?;
                let at = regs.ip().wrapping_sub(1);
                if dbg.is_breakpoint(at) {
                    regs.0.rip = at;
                    s.set_regs(&regs)?;
                    Some(StopReason::Breakpoint)
                } else {
                    None
                }
            }
            _ => None,
        };
        if trap.is_some() {
            self.stepping = None;
        }
        let Some(why) = trap.or_else(|| dbg.target().filter(|&t| position >= t).map(|_| StopReason::Event)) else {
            return Ok(Some(s));
        };
        fn stopped(t: &RTask) -> Option<&Stopped> {
            match &t.state {
                RState::Idle(st) | RState::Fresh(st) => Some(st),
                RState::Parked(p) | RState::ExecParked(p) | RState::CloneParked(p) => Some(&p.t),
                _ => None,
            }
        }
        let mut others: Vec<_> = self
            .tasks
            .iter()
            .filter(|(&v, _)| v != vtid)
            .map(|(&v, t)| debug::Task { vtid: v, tid: t.tid.as_raw(), stopped: stopped(t) })
            .collect();
        others.sort_by_key(|t| t.vtid);
        let view =
            debug::View { position, current: debug::Task { vtid, tid: tid.as_raw(), stopped: Some(&s) }, others };
        match dbg.stopped(why, &view) {
            Resume::Restart => return Err(SessionError::Restart),
            Resume::Step => {
                ft_interposer::tracee::step_next(tid);
                self.stepping = Some(tid);
            }
            Resume::Continue => {}
        }
        if trap.is_some() {
            s.cont(None)?;
            return Ok(None);
        }
        Ok(Some(s))
    }

    /// A task died; the log's next event must say so.
    fn on_death(&mut self, vtid: u32, w: Waited, index: u64) -> Result<()> {
        if self.interrupting.is_some() && self.interrupting == self.tasks.get(&vtid).map(|t| t.tid) {
            self.interrupting = None;
        }
        let exit = match w {
            Waited::Exited(code) => Exit { code, signal: 0, task: vtid },
            Waited::Killed(sig) => Exit { code: 0, signal: sig.raw(), task: vtid },
            Waited::Stopped(_) => return Ok(()),
        };
        let got = describe::event(&Event { kind: Some(Kind::Exit(exit.clone())) });
        if self.source.peek_event()?.is_none() && self.source.live() {
            // Past the end of a log that goes on live (an exit_group runs without a stop): the
            // recorder logs this death.
            if let Some(t) = self.tasks.get(&vtid) {
                self.arrived.insert(t.tid, w);
            }
            if self.holder == Some(vtid) {
                self.holder = None;
            }
            return Ok(());
        }
        if let Some(Event { kind: Some(Kind::Exit(e)) }) = self.source.peek_event()? {
            if e.task != vtid && self.tasks.contains_key(&e.task) {
                // A sibling's death is logged first; this one must follow among the exits.
                if self.holder == Some(vtid) {
                    self.holder = None;
                }
                self.early_deaths.insert(vtid, exit);
                return Ok(());
            }
        }
        match self.source.next_event()? {
            Some(Event { kind: Some(Kind::Exit(e)) }) if e.task == vtid && e.status() == exit.status() => {
                self.buried(vtid, &exit);
                Ok(())
            }
            Some(other) => Err(self.diverge(index, describe::event(&other), got)),
            None => Err(self.diverge(index, "the end of the recording".into(), got)),
        }
    }

    fn buried(&mut self, vtid: u32, exit: &Exit) {
        let status = exit.status();
        if let Some(b) = self.born.get_mut(&vtid) {
            b.ended = Some((self.source.position(), (exit.code, exit.signal)));
        }
        self.tasks.remove(&vtid);
        if self.holder == Some(vtid) {
            self.holder = None;
        }
        if vtid == 0 {
            self.status0 = Some(status);
        }
    }

    /// The log says a task that is not running died: killed from outside (kill -9 at record), or
    /// by another thread's exit_group (then it is dying already).
    fn death_of_idle(&mut self, e: Exit, index: u64) -> Result<()> {
        if let Some(seen) = self.early_deaths.remove(&e.task) {
            self.source.next_event()?;
            if seen.status() != e.status() {
                let got = describe::event(&Event { kind: Some(Kind::Exit(seen)) });
                return Err(self.diverge(index, describe::event(&Event { kind: Some(Kind::Exit(e)) }), got));
            }
            self.buried(e.task, &seen);
            return Ok(());
        }
        let (tid, proc) = {
            let t = self.task(e.task, index)?;
            (t.tid, t.proc)
        };
        if self.exec_running.contains(&proc) {
            // Ended by another thread's execve: it dies from whatever stop it is in (SIGKILL),
            // and must not run on meanwhile.
            self.take_state(e.task);
            loop {
                match self.wait_tid(tid)? {
                    Waited::Stopped(_) => {}
                    w => return self.on_death(e.task, w, index),
                }
            }
        }
        if e.signal != 0 {
            if let Some(sig) = Sig::new(e.signal) {
                let _ = send_signal(tid, sig);
            }
        }
        if let RState::Parked(p) | RState::CloneParked(p) = self.take_state(e.task) {
            // Keep a killed task from running its syscall.
            let mut regs = p.regs;
            regs.skip_with(-i64::from(libc::EINTR));
            let _ = p.t.set_regs(&regs);
            let _ = p.t.cont(None);
        }
        loop {
            match self.wait_tid(tid)? {
                Waited::Stopped(s) => {
                    let sig = match s.stop {
                        Stop::Signal(sig) => Some(sig),
                        _ => None,
                    };
                    let _ = s.cont(sig);
                }
                w => return self.on_death(e.task, w, index),
            }
        }
    }

    fn on_stop(&mut self, vtid: u32, t: Stopped) -> Result<()> {
        if self.interrupting == Some(t.pid()) {
            match t.stop {
                // A probe's SIGSTOP that came after the probe was over: not the program's.
                Stop::Signal(Sig::SIGSTOP) => {
                    self.interrupting = None;
                    t.cont(None)?;
                    return Ok(());
                }
                Stop::Seccomp => return Ok(crate::record::let_interrupt_in(t)?),
                _ => {}
            }
        }
        match t.stop {
            Stop::Seccomp => self.on_syscall(vtid, t),
            Stop::Signal(sig) => self.on_signal(vtid, t, sig),
            Stop::SyscallExit | Stop::Exec | Stop::NewTask(_) | Stop::Event(_) => {
                t.cont(None)?;
                Ok(())
            }
        }
    }

    /// Whether the next event is this task's socket syscall that the recorder answered on a
    /// copy of the fd (table `Exec::Copy`), at the seccomp stop, without releasing the token.
    fn answered_in_tracer(&mut self, vtid: u32, spec: &Spec, action: Action) -> Result<bool> {
        if !matches!(spec.exec, Exec::Copy(_))
            || !matches!(action, Action::Record { .. } | Action::Output { stdio: None })
        {
            return Ok(false);
        }
        Ok(matches!(
            self.source.peek_event()?,
            Some(Event { kind: Some(Kind::Syscall(s)) }) if s.task == vtid && s.in_tracer && s.nr == spec.nr
        ))
    }

    fn next_for(&mut self, vtid: u32) -> Result<(u64, Event)> {
        let index = self.source.position();
        match self.source.next_event()? {
            Some(ev) if ev.task() == Some(vtid) => Ok((index, ev)),
            Some(ev) => Err(self.diverge(index, describe::event(&ev), format!("an event of task {vtid}"))),
            None => Err(SessionError::LogEnded { index }),
        }
    }

    fn on_syscall(&mut self, vtid: u32, t: Stopped) -> Result<()> {
        let proc = self.tasks.get(&vtid).map(|t| t.proc).unwrap_or(0);
        slog::debug!(self.log, "stop"; "task" => vtid, "at" => self.source.position(), "regs" => slog::FnValue(|_| format!("{:?}", t.regs())));
        // As at record: the first syscalls after an exec map the clock page.
        let t = match self.clocks.install_step(t, proc, ft_libos::clock::MODE_REPLAY)? {
            Ok(_) => return Ok(()),
            Err(t) => t,
        };
        let mut regs = t.regs()?;
        let nr = regs.nr();
        if self.clocks.used(proc) && ft_interposer::clock::is_stub_syscall(regs.ip(), nr) {
            if let Some(Event { kind: Some(Kind::Clocks(c)) }) = self.source.peek_event()? {
                if c.task == vtid {
                    // The stub found its buffer empty: load the reads the recording made next and
                    // let it start over (REFILLED) instead of making this syscall.
                    let Some(reads) = ft_libos::clock::decode(&c.reads) else {
                        return Err(self.diverge(
                            self.source.position(),
                            "clock reads (the event is damaged)".into(),
                            "a clock read".into(),
                        ));
                    };
                    self.source.next_event()?;
                    ft_interposer::clock::refill(&t, &ft_libos::clock::to_raw(&reads))?;
                    self.refilled.insert(proc);
                    regs.skip_with(0);
                    t.set_regs(&regs)?;
                    t.cont(None)?;
                    return Ok(());
                }
            }
        }
        self.check_clock_reads(proc, &t)?;
        // Caught signals the recording delivered just before this syscall (a group sent at once).
        let mut group = Vec::new();
        while let Some(Event { kind: Some(Kind::Signal(s)) }) = self.source.peek_event()? {
            if !(s.at_syscall && s.task == vtid && (group.is_empty() || s.grouped)) {
                break;
            }
            let (signo, info) = (s.signo, siginfo_from_bytes(&s.siginfo));
            self.source.next_event()?;
            if let Some(sig) = Sig::new(signo) {
                group.push(Held { sig, info });
            }
        }
        if !group.is_empty() {
            let sigs: Vec<Sig> = group.iter().map(|h| h.sig).collect();
            crate::record::bounce(&t, &mut regs, &sigs)?;
            if let Some(task) = self.tasks.get_mut(&vtid) {
                task.pending.extend(group);
            }
            self.silent.insert(vtid, 0);
            t.cont(None)?;
            return Ok(());
        }
        self.calls.insert(vtid, Call { nr, ip: regs.ip(), args: regs.args() });
        let Some(spec) = lookup(nr) else {
            *self.silent.entry(vtid).or_default() += 1;
            regs.skip_with(-i64::from(libc::ENOSYS));
            t.set_regs(&regs)?;
            return self.resume(vtid, t);
        };
        let args = regs.args();
        let action = policy::decide(spec, &args, self.fds_of(vtid), false);
        let n = self.silent.entry(vtid).or_default();
        *n = if policy::logs_nothing(action) { *n + 1 } else { 0 };
        if self.answered_in_tracer(vtid, spec, action)? {
            // The recorder answered it at this stop, holding the token: so does replay.
            let (index, ev) = self.next_for(vtid)?;
            let s = self.check_syscall(&t, spec, &args, index, ev)?;
            let t = self.apply(Parked { t, regs, spec, args }, index, s)?;
            t.cont(None)?;
            return Ok(());
        }
        match action {
            Action::Pass => {}
            Action::Emulate(e) => emulate(&t, &mut regs, e)?,
            Action::Refuse(Refusal::Errno(errno, _)) => {
                regs.skip_with(-i64::from(errno));
                t.set_regs(&regs)?;
            }
            Action::Refuse(Refusal::Unsupported(why)) => {
                let index = self.source.position();
                return Err(self.diverge(
                    index,
                    "a supported syscall".into(),
                    format!("{} ({why})", describe::call(spec, &args)),
                ));
            }
            Action::Record { exec: Exec::Tracer } if tracer_can_run(spec, &args) => {
                let (index, ev) = self.next_for(vtid)?;
                let s = self.check_syscall(&t, spec, &args, index, ev)?;
                let t = self.apply(Parked { t, regs, spec, args }, index, s)?;
                return self.resume(vtid, t);
            }
            Action::Execute | Action::Output { stdio: Some(_) } => {
                let (index, ev) = self.next_for(vtid)?;
                let s = self.check_syscall(&t, spec, &args, index, ev)?;
                let t = self.apply(Parked { t, regs, spec, args }, index, s)?;
                return self.resume(vtid, t);
            }
            Action::Clone => {
                // Released the token at record; the log says whether it created a task.
                self.set_state(vtid, RState::CloneParked(Parked { t, regs, spec, args }));
                self.holder = None;
                return Ok(());
            }
            Action::Exec => {
                // Runs for real, from now on as at record; Exec and the completion events meet
                // its stops.
                let p = Parked { t, regs, spec, args };
                let proc = self.tasks.get(&vtid).map(|t| t.proc);
                if self.tasks.iter().any(|(&v, t)| v != vtid && Some(t.proc) == proc) {
                    self.set_state(vtid, RState::ExecParked(p));
                    self.holder = None;
                    return Ok(());
                }
                p.t.cont_to_exit()?;
                self.set_state(vtid, RState::Executing);
                self.holder = None;
                return Ok(());
            }
            _ => {
                // Released the token at record: wait here for the log to complete it.
                self.set_state(vtid, RState::Parked(Parked { t, regs, spec, args }));
                self.holder = None;
                return Ok(());
            }
        }
        self.resume(vtid, t)
    }

    /// Resumes a task from the stop of a syscall it has done (its seccomp stop with the result
    /// in place, or its exit stop), delivering there the signals the recording delivered at that
    /// syscall's exit.
    fn resume(&mut self, vtid: u32, t: Stopped) -> Result<()> {
        let silent = self.silent.get(&vtid).copied().unwrap_or(0);
        let at_exit = matches!(
            self.source.peek_event()?,
            Some(Event { kind: Some(Kind::Signal(s)) })
                if s.at_exit && !s.grouped && s.task == vtid && s.silent == silent
        );
        if at_exit {
            return self.deliver_at_exit(vtid, t);
        }
        t.cont(None)?;
        Ok(())
    }

    /// The next event is a signal the recording delivered at the exit of this task's last
    /// syscall, before the task ran user code again. Takes the task from that syscall's seccomp
    /// stop (result injected, or the syscall still to run) to its exit stop, sets orig_rax and
    /// rax as the recording had them there, sends the signal and resumes: the kernel delivers
    /// it before the task returns and applies SA_RESTART or EINTR itself. A syscall that waited
    /// with a temporary mask (sigsuspend, ppoll, ...) that the signal interrupted is run as
    /// rt_sigsuspend with that mask, so the mask in effect, and restored after the handler, is
    /// the recording's.
    fn deliver_at_exit(&mut self, vtid: u32, t: Stopped) -> Result<()> {
        let index = self.source.position();
        let s = match self.source.next_event()? {
            Some(Event { kind: Some(Kind::Signal(s)) }) => s,
            _ => return Err(SessionError::LogEnded { index }),
        };
        let expected = || describe::event(&Event { kind: Some(Kind::Signal(s.clone())) });
        let Some(sig) = Sig::new(s.signo) else {
            return Err(self.diverge(index, expected(), "a signal number out of range".into()));
        };
        let queued = self.tasks.get(&vtid).is_some_and(|task| task.pending.iter().any(|h| h.sig == sig));
        if self.calls.get(&vtid).is_some_and(|c| c.nr as i64 != s.orig_rax) {
            let got = format!("the exit of syscall {}", self.calls.get(&vtid).map_or(-1, |c| c.nr as i64));
            return Err(self.diverge(index, expected(), got));
        }
        let t = match t.stop {
            Stop::SyscallExit => t,
            Stop::Seccomp => {
                let Some(call) = self.calls.get(&vtid).copied() else {
                    return Err(self.diverge(index, expected(), format!("task {vtid} before any syscall")));
                };
                let mut regs = t.regs()?;
                if regs.nr() == u64::MAX {
                    // Injected (skipped, perhaps rewound for a restart): the exit of the same
                    // skipped call, at the address after it.
                    regs.skip_with(s.rax);
                    regs.0.rip = call.ip;
                    if let Some(mask) = temporary_mask(&t, call.nr, &call.args, s.rax)? {
                        let temp = t.read(mask, 8)?;
                        let temp = temp.try_into().map(u64::from_le_bytes).unwrap_or(u64::MAX);
                        if temp & sig.mask_bit() != 0 {
                            return Err(self.diverge(index, expected(), format!("{sig} blocked by the wait's mask")));
                        }
                        regs.rewrite(libc::SYS_rt_sigsuspend as u64, &[mask, 8, 0, 0, 0, 0]);
                        t.set_regs(&regs)?;
                        // Pending before the wait starts, so that it returns at once.
                        if !queued {
                            let _ = send_signal_to_thread(t.pid(), sig);
                        }
                        let t = self.run_to_exit(t, index)?;
                        let sent = if queued { Sent::Before } else { Sent::ForTheWait };
                        return self.signal_at_exit(vtid, t, &s, sig, sent, true);
                    }
                    t.set_regs(&regs)?;
                }
                self.run_to_exit(t, index)?
            }
            other => return Err(self.diverge(index, expected(), format!("task {vtid} at {other:?}"))),
        };
        self.signal_at_exit(vtid, t, &s, sig, if queued { Sent::Before } else { Sent::No }, false)
    }

    /// At the exit stop: the recorded orig_rax and rax, the signal sent (unless `sent` says it
    /// is in the kernel already) and the task resumed into its delivery. `waited`: after a wait
    /// with a temporary mask, which PTRACE_GETSIGMASK does not show.
    fn signal_at_exit(
        &mut self,
        vtid: u32,
        t: Stopped,
        s: &ft_libos::proto::Signal,
        sig: Sig,
        sent: Sent,
        waited: bool,
    ) -> Result<()> {
        // The signal event, consumed already.
        let index = self.source.position().saturating_sub(1);
        let mut regs = t.regs()?;
        regs.0.orig_rax = s.orig_rax as u64;
        regs.set_ret(s.rax);
        t.set_regs(&regs)?;
        // (After a wait with a temporary mask, PTRACE_GETSIGMASK shows the mask restored after
        // the handler, not the one in effect.)
        if !waited && t.sigmask()? & sig.mask_bit() != 0 {
            let expected = describe::event(&Event { kind: Some(Kind::Signal(s.clone())) });
            return Err(self.diverge(index, expected, format!("{sig} blocked by task {vtid}")));
        }
        let info = siginfo_from_bytes(&s.siginfo);
        if let Some(task) = self.tasks.get_mut(&vtid) {
            match task.pending.iter_mut().find(|h| h.sig == sig) {
                Some(h) if sent == Sent::Before => {
                    if info.is_some() {
                        h.info = info;
                    }
                }
                _ => task.pending.push(Held { sig, info }),
            }
        }
        if sent == Sent::No {
            let _ = send_signal_to_thread(t.pid(), sig);
        }
        t.cont(None)?;
        Ok(())
    }

    /// At a stop that consumes an event: the program must have read every clock value the
    /// recording read before this point.
    fn check_clock_reads(&mut self, proc: u32, t: &Stopped) -> Result<()> {
        if !self.refilled.remove(&proc) {
            return Ok(());
        }
        match ft_interposer::clock::unread(t)? {
            0 => Ok(()),
            n => Err(self.diverge(
                self.source.position(),
                format!("{n} more clock read(s) through the clock page"),
                "the program went on without them".into(),
            )),
        }
    }

    /// Checks a syscall event against what the task does; returns the event's syscall.
    fn check_syscall(&self, t: &Stopped, spec: &Spec, args: &[u64; 6], index: u64, ev: Event) -> Result<Syscall> {
        let s = match ev.kind {
            Some(Kind::Syscall(s)) if s.nr == spec.nr => s,
            _ => return Err(self.diverge(index, describe::event(&ev), describe::call(spec, args))),
        };
        let got = || describe::call(spec, args);
        if let Some(i) = (0..6).find(|&i| spec.checks_arg(i) && s.args.get(i) != Some(&args[i])) {
            let expected = describe::event(&Event { kind: Some(Kind::Syscall(s.clone())) });
            return Err(self.diverge(index, expected, format!("{} (argument {i} differs)", got())));
        }
        if spec.input != ft_libos::table::Input::None {
            let input = capture::input(t, spec.input, args)?;
            let d = if input.is_empty() { Vec::new() } else { digest::short(&input) };
            if d != s.input_digest {
                let expected = describe::event(&Event { kind: Some(Kind::Syscall(s.clone())) });
                let what = match spec.input {
                    ft_libos::table::Input::Path(_) | ft_libos::table::Input::Paths(..) => {
                        format!("{} on path \"{}\" (a different path)", got(), String::from_utf8_lossy(&input))
                    }
                    _ => format!("{} with different data", got()),
                };
                return Err(self.diverge(index, expected, what));
            }
        }
        Ok(s)
    }

    /// The completion event of a parked task's syscall.
    fn complete(&mut self, p: Parked, index: u64, s: Syscall) -> Result<Stopped> {
        let s = self.check_syscall(&p.t, p.spec, &p.args, index, Event { kind: Some(Kind::Syscall(s)) })?;
        self.apply(p, index, s)
    }

    /// A clone or exec that ran for real completes: the parent gets the recorded result.
    fn finish_executing(&mut self, s: Syscall, index: u64) -> Result<Stopped> {
        let (tid, proc) = {
            let t = self.task(s.task, index)?;
            (t.tid, t.proc)
        };
        // An execve that failed ended no thread.
        self.exec_running.remove(&proc);
        let t = match self.wait_tid(tid)? {
            Waited::Stopped(t) if t.stop == Stop::SyscallExit => t,
            Waited::Stopped(t) => {
                return Err(self.diverge(
                    index,
                    describe::event(&Event { kind: Some(Kind::Syscall(s)) }),
                    format!("{:?}", t.stop),
                ))
            }
            w => {
                let expected = describe::event(&Event { kind: Some(Kind::Syscall(s)) });
                let got = match w {
                    Waited::Killed(sig) => format!("death by {sig}"),
                    _ => "an exit".into(),
                };
                return Err(self.diverge(index, expected, got));
            }
        };
        let mut regs = t.regs()?;
        if let Some(args) = self.clone_args.remove(&s.task) {
            regs.set_args(&args);
        }
        if s.disposition() == Disposition::Execute && regs.ret() != s.ret {
            let expected = describe::event(&Event { kind: Some(Kind::Syscall(s)) });
            return Err(self.diverge(index, expected, format!("a result of {}", regs.ret())));
        }
        regs.set_ret(s.ret);
        t.set_regs(&regs)?;
        Ok(t)
    }

    /// Spawn: the parent's running clone created the child, which gets its number.
    fn spawn(&mut self, sp: Spawn, index: u64) -> Result<()> {
        let parent_tid = self.task(sp.parent, index)?.tid;
        if !matches!(self.tasks.get(&sp.parent).map(|t| &t.state), Some(RState::Executing)) {
            return Err(self.diverge(
                index,
                format!("task {} creating task {}", sp.parent, sp.child),
                "no clone".into(),
            ));
        }
        self.source.next_event()?;
        let child = match self.wait_tid(parent_tid)? {
            Waited::Stopped(s) => match s.stop {
                Stop::NewTask(child) => {
                    s.cont_to_exit()?;
                    child
                }
                other => {
                    return Err(self.diverge(
                        index,
                        format!("task {} creating a task", sp.parent),
                        format!("{other:?}"),
                    ))
                }
            },
            w => return self.on_death(sp.parent, w, index),
        };
        let parent_proc = self.tasks.get(&sp.parent).map(|t| t.proc).unwrap_or(0);
        let proc = if sp.thread { parent_proc } else { sp.child };
        if !sp.thread {
            let table = self.fds.get(&parent_proc).cloned().unwrap_or_default();
            self.fds.insert(sp.child, table);
            let socks = self.sockets.get(&parent_proc).cloned().unwrap_or_default();
            self.sockets.insert(sp.child, socks);
            let files = self.files.get(&parent_proc).cloned().unwrap_or_default();
            self.files.insert(sp.child, files);
            self.clocks.fork(parent_proc, sp.child);
            match ft_interposer::tracee::ns_pid_uid(child) {
                Some((ns_pid, uid)) => {
                    self.born.insert(sp.child, Born { tid: child, ns_pid, uid, parent: parent_proc, ended: None });
                }
                None => slog::warn!(self.log, "no pid namespace entry for a forked child"; "task" => sp.child),
            }
        }
        self.max_vtid = self.max_vtid.max(sp.child);
        if let Some(args) = self.clone_args.get(&sp.parent).copied() {
            self.clone_args.insert(sp.child, args);
        }
        let ns_tid = ft_interposer::tracee::ns_pid_uid(child).map_or(0, |(p, _)| p);
        self.ids.insert(sp.child, (ns_tid, proc));
        self.tasks.insert(sp.child, RTask { tid: child, proc, state: RState::Starting, pending: Vec::new() });
        Ok(())
    }

    /// Exec: the task's running execve replaced its image; check the image, restore AT_RANDOM.
    fn exec(&mut self, ex: ExecEvent, index: u64) -> Result<()> {
        let (mut tid, proc) = {
            let t = self.task(ex.task, index)?;
            (t.tid, t.proc)
        };
        if !matches!(self.tasks.get(&ex.task).map(|t| &t.state), Some(RState::Executing)) {
            return Err(self.diverge(
                index,
                describe::event(&Event { kind: Some(Kind::Exec(ex)) }),
                "no execve".into(),
            ));
        }
        self.source.next_event()?;
        let mut vtid = ex.task;
        if proc != ex.task {
            // A thread other than the leader: as at record, it becomes the leader (its tid and
            // its task number); the kernel ends the other threads, whose deaths the log has,
            // except the leader's, which is never reported.
            let leader_tid = self.task(proc, index)?.tid;
            tid = self.leader_exec_stop(leader_tid)?;
            if let Some(mut t) = self.tasks.remove(&ex.task) {
                if let Some(old) = self.tasks.remove(&proc) {
                    t.pending.extend(old.pending);
                }
                if self.holder == Some(proc) {
                    self.holder = None;
                }
                t.tid = tid;
                self.tasks.insert(proc, t);
            }
            self.early_deaths.remove(&proc);
            if let Some(n) = self.silent.remove(&ex.task) {
                self.silent.insert(proc, n);
            }
            vtid = proc;
        }
        self.exec_running.remove(&proc);
        let at_random: Option<[u8; 16]> = ex.at_random.as_slice().try_into().ok();
        match self.wait_tid(tid)? {
            Waited::Stopped(s) if s.stop == Stop::Exec => {
                let exe = std::fs::read_link(format!("/proc/{tid}/exe")).unwrap_or_default();
                if program::hash_file(&exe).ok().as_deref() != Some(&ex.exe_hash[..]) {
                    return Err(SessionError::Mismatch {
                        what: format!(
                            "the program {} that the recording executed",
                            String::from_utf8_lossy(&ex.exe_path)
                        ),
                        detail: format!("{} here is missing or different; replay needs the same binary", exe.display()),
                    });
                }
                let vdso = if ex.clock_page { Vdso::ClockPage } else { Vdso::Hide };
                let sp = ft_interposer::launch::after_exec(&s, at_random, vdso)?.sp;
                if sp != ex.sp {
                    return Err(self.diverge(index, format!("a stack at {:#x} after exec", ex.sp), format!("{sp:#x}")));
                }
                self.clocks.exec(proc, ex.clock_page);
                self.refilled.remove(&proc);
                s.cont_to_exit()?;
            }
            Waited::Stopped(s) => {
                return Err(self.diverge(
                    index,
                    describe::event(&Event { kind: Some(Kind::Exec(ex)) }),
                    format!("{:?}", s.stop),
                ))
            }
            w => return self.on_death(vtid, w, index),
        }
        Ok(())
    }

    /// Waits for the exec stop that a non-leader thread's execve reports on the leader's tid,
    /// and leaves it to be collected again. Stops of the old leader thread collected earlier
    /// are dropped: that thread is gone.
    fn leader_exec_stop(&mut self, leader_tid: Pid) -> Result<Pid> {
        loop {
            match self.wait_tid(leader_tid)? {
                Waited::Stopped(s) if s.stop == Stop::Exec => {
                    self.arrived.insert(leader_tid, Waited::Stopped(s));
                    return Ok(leader_tid);
                }
                Waited::Stopped(_) => {}
                w => {
                    self.arrived.insert(leader_tid, w);
                    return Ok(leader_tid);
                }
            }
        }
    }

    /// Applies a syscall event to a task at its seccomp stop; returns it stopped (not resumed).
    fn apply(&mut self, p: Parked, index: u64, s: Syscall) -> Result<Stopped> {
        let Parked { t, mut regs, spec, args } = p;
        let args = &args;
        let vtid = s.task;
        if s.ret != ft_libos::signal::ERESTART_RESTARTBLOCK {
            self.restarts.remove(&vtid);
        } else if spec.special != Special::RestartSyscall {
            self.restarts.insert(vtid, (spec.nr, *args));
        }
        self.note_signal_syscall(&t, vtid, spec, args, s.ret);
        self.note_itimer(&t, vtid, spec, args, s.ret)?;
        // Pipes and eventfds the program made (not its inherited stdio, not its sockets): see
        // `pipes` and `eventfds`.
        let proc = self.tasks.get(&vtid).map_or(0, |t| t.proc);
        let socket = self.sockets.get(&proc).is_some_and(|m| m.contains_key(&(args[0] as i32)));
        if s.disposition() == Disposition::Inject
            && s.ret > 0
            && !socket
            && self.fds_of(vtid).kind(args[0] as i64) == FdKind::External
        {
            if !self.pipes.is_empty() {
                self.follow_pipes(&t, spec, args, s.ret as usize)?;
            }
            self.follow_eventfd(&t, spec, args, s.ret)?;
        }
        let t = match s.disposition() {
            Disposition::Inject if ft_libos::signal::is_restart(s.ret) => {
                // At record the kernel restarted this syscall after a signal (the program never
                // saw the code): rewind to the syscall instruction; the next event is the restart.
                // What the kernel wrote before it stopped (nanosleep's time left) is the program's.
                let nr = if s.ret == ft_libos::signal::ERESTART_RESTARTBLOCK {
                    libc::SYS_restart_syscall as u64
                } else {
                    u64::from(spec.nr)
                };
                regs.skip_with(nr as i64);
                regs.rewind();
                t.set_regs(&regs)?;
                self.put_mem(&t, &s, false)?;
                t
            }
            Disposition::Inject => {
                let proc = self.tasks.get(&vtid).map(|t| t.proc);
                let reaped = spec.task.wait.and_then(|w| ft_libos::wait::reaped(w, args, s.ret, &s.mem));
                let quiet = reaped.and_then(|pid| {
                    self.born.iter().find(|(_, b)| b.ns_pid == pid && Some(b.parent) == proc).map(|(v, b)| (*v, *b))
                });
                let t = match quiet {
                    Some((child, b)) => self.reap_born(t, regs, child, b, index)?,
                    None => t,
                };
                regs.skip_with(s.ret);
                t.set_regs(&regs)?;
                self.put_mem(&t, &s, false)?;
                if self.print && (s.stdio_fd == 1 || s.stdio_fd == 2) && !s.stdio.is_empty() {
                    write_stdio(s.stdio_fd, &s.stdio)?;
                }
                t
            }
            Disposition::Placeholder => {
                let mut a = [0u64; 6];
                let cloexec = s.new_fds.first().is_some_and(|f| f.cloexec);
                let nr = match spec.fds.creates {
                    NewFd::Pair(p) => {
                        a[0] = args[p as usize];
                        a[1] = if cloexec { libc::O_CLOEXEC as u64 } else { 0 };
                        libc::SYS_pipe2
                    }
                    _ if spec.fds.object == Object::Epoll => {
                        a[0] = if cloexec { libc::EPOLL_CLOEXEC as u64 } else { 0 };
                        libc::SYS_epoll_create1
                    }
                    _ => {
                        // A stand-in carries the status flags of what it stands for: a replica
                        // that goes live gives them to the real socket.
                        let nonblock = spec.fds.nonblocking(args);
                        a[1] = if cloexec { libc::EFD_CLOEXEC as u64 } else { 0 }
                            | if nonblock { libc::EFD_NONBLOCK as u64 } else { 0 };
                        libc::SYS_eventfd2
                    }
                };
                regs.rewrite(nr as u64, &a);
                t.set_regs(&regs)?;
                let t = self.run_to_exit(t, index)?;
                let made = t.regs()?.ret();
                let ok = match spec.fds.creates {
                    NewFd::Pair(p) => {
                        made == 0
                            && s.mem.iter().any(|m| {
                                m.addr == args[p as usize]
                                    && t.read(m.addr, 8).ok().as_deref() == Some(&m.data[..8.min(m.data.len())])
                            })
                    }
                    _ => made == s.ret,
                };
                if !ok {
                    return Err(self.diverge(
                        index,
                        format!("new fd(s) {:?}", s.new_fds.iter().map(|f| f.fd).collect::<Vec<_>>()),
                        match spec.fds.creates {
                            NewFd::Pair(_) => format!("a placeholder pair that the kernel did not give those numbers (pipe2 returned {made}): the fd table differs"),
                            _ => format!("a placeholder at fd {made}: the fd table differs"),
                        },
                    ));
                }
                // The program sees its own arguments again (the kernel preserves them).
                let mut regs = t.regs()?;
                regs.set_args(args);
                regs.set_ret(s.ret);
                t.set_regs(&regs)?;
                self.put_mem(&t, &s, false)?;
                t
            }
            Disposition::Execute => {
                let t = self.run_to_exit(t, index)?;
                let ret = t.regs()?.ret();
                if !s.file_hash.is_empty() {
                    self.verify_file(&t, ret, &s)?;
                }
                if ret != s.ret {
                    let expected = describe::event(&Event { kind: Some(Kind::Syscall(s.clone())) });
                    return Err(self.diverge(index, expected, format!("{} = {ret}", describe::call(spec, args))));
                }
                if !s.out_digest.is_empty() {
                    let mut regions = capture::regions(&t, spec.writes, args, ret)?;
                    regions.extend(capture::regions(&t, fcntl_writes(spec, args), args, ret)?);
                    let got = capture::digest_writes(&capture::read_regions(&t, &regions)?);
                    if got != s.out_digest {
                        let expected = describe::event(&Event { kind: Some(Kind::Syscall(s.clone())) });
                        return Err(self.diverge(
                            index,
                            expected,
                            format!(
                                "{} returning different data (replicated state differs)",
                                describe::call(spec, args)
                            ),
                        ));
                    }
                }
                t
            }
            Disposition::ExecuteInject => {
                let t = self.run_to_exit(t, index)?;
                let mut regs = t.regs()?;
                regs.set_ret(s.ret);
                t.set_regs(&regs)?;
                t
            }
            Disposition::AnonMap => {
                let mut a = *args;
                a[3] = ((a[3] as i32 & !0x3) | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
                a[4] = u64::MAX;
                a[5] = 0;
                regs.rewrite(u64::from(spec.nr), &a);
                t.set_regs(&regs)?;
                let t = self.run_to_exit(t, index)?;
                let ret = t.regs()?.ret();
                if ret != s.ret {
                    let expected = describe::event(&Event { kind: Some(Kind::Syscall(s.clone())) });
                    return Err(self.diverge(index, expected, format!("an anonymous mapping at {ret:#x}")));
                }
                let mut regs = t.regs()?;
                regs.set_args(args);
                t.set_regs(&regs)?;
                self.put_mem(&t, &s, true)?;
                t
            }
        };
        let proc = self.tasks.get(&vtid).map_or(0, |t| t.proc);
        for nf in &s.new_fds {
            self.fds_of(vtid).set(nf.fd, nf.kind());
            self.pidfds.remove(&(proc, nf.fd));
        }
        if let (Object::PidFd { pid }, true) = (spec.fds.object, s.ret >= 0) {
            self.pidfds.insert((proc, s.ret as i32), args[usize::from(pid)] as i32);
        }
        self.follow_sockets(&t, vtid, spec, args, &s)?;
        self.follow_files(&t, vtid, spec, args, &s)?;
        self.follow_new_pipes_and_eventfds(&t, spec, args, &s);
        Ok(t)
    }

    /// Registers the pipes and eventfds the program makes (see `pipes`, `eventfds`), and forgets
    /// an eventfd whose stand-in id another stand-in takes.
    fn follow_new_pipes_and_eventfds(&mut self, t: &Stopped, spec: &Spec, args: &[u64; 6], s: &Syscall) {
        if spec.fds.object == Object::Pipe && s.ret == 0 {
            if let Some((ino, _)) =
                s.new_fds.first().and_then(|nf| ft_interposer::procfs::pipe_of(t.pid().as_raw(), nf.fd))
            {
                self.pipes.insert(ino, Flow::default());
            }
        }
        if spec.fds.object == Object::EventFd && s.ret >= 0 {
            let flags = spec.fds.open_flags(args, |_| None).unwrap_or(0);
            if let Some(id) = ft_interposer::procfs::eventfd_id(t.pid().as_raw(), s.ret as i32) {
                self.eventfds.insert(id, crate::live::EventShadow { count: args[0] & 0xffff_ffff, flags });
            }
        } else if s.disposition() == Disposition::Placeholder && !self.eventfds.is_empty() {
            // Another stand-in (all are eventfds) may take the id of a closed eventfd of the
            // program's: that one is gone.
            for nf in &s.new_fds {
                if let Some(id) = ft_interposer::procfs::eventfd_id(t.pid().as_raw(), nf.fd) {
                    self.eventfds.remove(&id);
                }
            }
        }
    }

    /// Learns which files outside the data directory the program has open (they are stand-ins
    /// at replay), with their flags and offsets, to open them again if it goes live.
    fn follow_files(&mut self, t: &Stopped, vtid: u32, spec: &Spec, args: &[u64; 6], s: &Syscall) -> Result<()> {
        let proc = self.tasks.get(&vtid).map(|t| t.proc).unwrap_or(0);
        let files = self.files.entry(proc).or_default();
        for nf in &s.new_fds {
            files.remove(&nf.fd);
        }
        if s.ret < 0 {
            return Ok(());
        }
        let fd = args[0] as i32;
        if spec.fds.object == Object::File {
            let Some(nf) = s.new_fds.first().filter(|nf| nf.kind() == ft_libos::FdKind::External) else {
                return Ok(());
            };
            let Some((dirfd, path_arg)) = spec.path else { return Ok(()) };
            let read_word = |addr: u64| t.read(addr, 8).ok().and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
            let flags = spec.fds.open_flags(args, read_word).unwrap_or(0);
            let raw = t.read_cstr(args[path_arg as usize], 4095)?;
            let path = PathBuf::from(OsStr::from_bytes(&raw));
            let dirfd = dirfd.map(|i| args[i as usize] as i32);
            if let Some(base) = crate::record::path_base(t.pid(), dirfd, &path).filter(|b| b.is_absolute()) {
                files.insert(nf.fd, FileShadow { path: base.join(path), flags, offset: 0 });
            }
            return Ok(());
        }
        if policy::duplicates_fd(spec, args) {
            let new = s.ret as i32;
            match files.get(&fd).cloned() {
                Some(f) if new != fd => {
                    files.insert(new, f);
                }
                Some(_) => {}
                None => {
                    files.remove(&new);
                }
            }
            return Ok(());
        }
        if let Some(closed) = spec.fds.closed_fd(args) {
            files.remove(&(closed as i32));
        }
        match spec.follow.stream {
            Stream::Read { .. } | Stream::Write { .. } => {
                if let Some(f) = files.get_mut(&fd) {
                    f.offset += s.ret as u64;
                }
            }
            Stream::Seek => {
                if let Some(f) = files.get_mut(&fd) {
                    f.offset = s.ret as u64;
                }
            }
            Stream::None | Stream::Shutdown => {}
        }
        Ok(())
    }

    /// Going live: writes the bytes in flight into each pipe that a process can still read.
    /// The tracer opens a write end of its own through `/proc/PID/fd/N` of any fd on the pipe
    /// (the writer may have closed its end or ended: natively the bytes stay in the pipe).
    fn refill_pipes(&mut self, procs: &[u32]) {
        use std::io::Write as _;
        for (ino, flow) in self.pipes.drain().filter(|(_, f)| !f.queue.is_empty()) {
            let bytes = flow.queue;
            let mut reader = None;
            for proc in procs {
                let Some(tgid) = self.tasks.get(proc).map(|t| t.tid.as_raw()) else { continue };
                let Ok(fds) = std::fs::read_dir(format!("/proc/{tgid}/fd")) else { continue };
                let fd = fds.flatten().find_map(|e| {
                    let fd: i32 = e.file_name().to_str()?.parse().ok()?;
                    (ft_interposer::procfs::pipe_of(tgid, fd)? == (ino, false)).then_some(fd)
                });
                if let Some(fd) = fd {
                    reader = Some((tgid, fd));
                    break;
                }
            }
            // None: nobody can read them any more.
            let Some((tgid, fd)) = reader else { continue };
            let (data, _) = bytes.as_slices();
            // Non-blocking: the pipe is empty here, but a program may have enlarged it at record
            // (F_SETPIPE_SZ is not run at replay); what does not fit is lost, with a warning.
            let written = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(format!("/proc/{tgid}/fd/{fd}"))
                .and_then(|mut w| w.write_all(data).and_then(|()| w.write_all(bytes.as_slices().1)));
            match written {
                Ok(()) => {
                    slog::info!(self.log, "going live: bytes in flight written into a pipe"; "bytes" => bytes.len())
                }
                Err(e) => {
                    slog::warn!(self.log, "going live: bytes in flight in a pipe are lost"; "bytes" => bytes.len(), "error" => e.to_string())
                }
            }
        }
    }

    /// Follows the counter of one of the program's eventfds (see `eventfds`).
    fn follow_eventfd(&mut self, t: &Stopped, spec: &Spec, args: &[u64; 6], ret: i64) -> Result<()> {
        let plain = matches!(spec.follow.stream, Stream::Read { vectored: false } | Stream::Write { vectored: false });
        if ret != 8 || !plain || self.eventfds.is_empty() {
            return Ok(());
        }
        let Some(id) = ft_interposer::procfs::eventfd_id(t.pid().as_raw(), args[0] as i32) else { return Ok(()) };
        let Some(ev) = self.eventfds.get_mut(&id) else { return Ok(()) };
        if matches!(spec.follow.stream, Stream::Write { .. }) {
            let v = t.read(args[1], 8)?.try_into().map(u64::from_le_bytes).unwrap_or(0);
            ev.count = ev.count.saturating_add(v);
        } else if ev.flags & libc::EFD_SEMAPHORE != 0 {
            ev.count = ev.count.saturating_sub(1);
        } else {
            ev.count = 0;
        }
        Ok(())
    }

    /// Follows the bytes in flight in the program's pipes (see `pipes`): a logged write adds
    /// what the program wrote (read from its memory), a logged read takes as many away.
    fn follow_pipes(&mut self, t: &Stopped, spec: &Spec, args: &[u64; 6], n: usize) -> Result<()> {
        let (writes, vectored) = match spec.follow.stream {
            Stream::Write { vectored } => (true, vectored),
            Stream::Read { vectored } => (false, vectored),
            Stream::None | Stream::Seek | Stream::Shutdown => return Ok(()),
        };
        let Some((ino, _)) = ft_interposer::procfs::pipe_of(t.pid().as_raw(), args[0] as i32) else { return Ok(()) };
        // Only pipes the program made with pipe/pipe2 (a socketpair's stand-in is a pipe too).
        let Some(flow) = self.pipes.get_mut(&ino) else { return Ok(()) };
        if !writes {
            let had = flow.queue.len();
            flow.queue.drain(..n.min(had));
            flow.debt += n.saturating_sub(had);
            return Ok(());
        }
        let pieces: Vec<(u64, usize)> = if vectored {
            let iov = t.read(args[1], 16 * (args[2] as usize).min(1024))?;
            iov.chunks_exact(16)
                .map(|c| {
                    let word = |b: &[u8]| b.try_into().map(u64::from_le_bytes).unwrap_or(0);
                    (word(&c[..8]), word(&c[8..]) as usize)
                })
                .collect()
        } else {
            vec![(args[1], n)]
        };
        let mut left = n;
        for (base, len) in pieces {
            let take = len.min(left);
            if take == 0 {
                break;
            }
            let bytes = t.read(base, take)?;
            let paid = flow.debt.min(bytes.len());
            flow.debt -= paid;
            flow.queue.extend(&bytes[paid..]);
            left -= take;
        }
        Ok(())
    }

    /// Notes an interval timer the program set (see `itimers`).
    fn note_itimer(&mut self, t: &Stopped, vtid: u32, spec: &Spec, args: &[u64; 6], ret: i64) -> Result<()> {
        let (which, itv) = match spec.follow.timer {
            Timer::Alarm { secs } if ret >= 0 => (libc::ITIMER_REAL, [0, 0, args[usize::from(secs)] as u32 as i64, 0]),
            Timer::Itimer { which, new } if ret == 0 && args[usize::from(new)] != 0 => {
                let b = t.read(args[usize::from(new)], 32)?;
                let word =
                    |i: usize| b.get(i * 8..i * 8 + 8).and_then(|w| w.try_into().ok()).map_or(0, i64::from_le_bytes);
                (args[usize::from(which)] as i32, [word(0), word(1), word(2), word(3)])
            }
            Timer::Alarm { .. } | Timer::Itimer { .. } | Timer::None => return Ok(()),
            Timer::Posix | Timer::Fd => {
                if ret >= 0 {
                    self.unarmed_timers.insert(spec.name);
                }
                return Ok(());
            }
        };
        let proc = self.tasks.get(&vtid).map_or(0, |t| t.proc);
        if itv[2] == 0 && itv[3] == 0 {
            self.itimers.remove(&(proc, which));
        } else {
            let at = self.source.position();
            self.itimers.insert((proc, which), Itimer { itv, at });
        }
        Ok(())
    }

    /// Going live: the interval timers to arm per process. A periodic one is armed for its
    /// interval; a one-shot one whose signal a task of its process took since it was set has
    /// fired, the others are armed again for their whole value (the time already gone by at
    /// record is not known here: they fire late by as much).
    fn itimers_to_arm(&self) -> HashMap<u32, Vec<(i32, [i64; 4])>> {
        let mut out: HashMap<u32, Vec<(i32, [i64; 4])>> = HashMap::new();
        for (&(proc, which), t) in &self.itimers {
            let sig = match which {
                libc::ITIMER_REAL => libc::SIGALRM,
                libc::ITIMER_VIRTUAL => libc::SIGVTALRM,
                _ => libc::SIGPROF,
            };
            let periodic = t.itv[0] != 0 || t.itv[1] != 0;
            let fired = self.source.taken.iter().any(|(pos, task, signo)| {
                *signo == sig && *pos > t.at && self.ids.get(task).map(|i| i.1) == Some(proc)
            });
            let itv = match (periodic, fired) {
                (true, _) => [t.itv[0], t.itv[1], t.itv[0], t.itv[1]],
                (false, false) => t.itv,
                (false, true) => continue,
            };
            out.entry(proc).or_default().push((which, itv));
        }
        out
    }

    /// The process (pid as the program sees it) a pidfd of task `vtid` refers to: one that
    /// pidfd_open made (a stand-in at replay), or a real pidfd (clone's CLONE_PIDFD), whose
    /// fdinfo names its pid in every namespace, the program's last.
    fn pidfd_target(&self, t: &Stopped, vtid: u32, fd: i32) -> Option<i32> {
        let proc = self.tasks.get(&vtid).map_or(0, |t| t.proc);
        if let Some(&pid) = self.pidfds.get(&(proc, fd)) {
            return Some(pid);
        }
        let info = std::fs::read_to_string(format!("/proc/{}/fdinfo/{fd}", t.pid())).ok()?;
        let line = info.lines().find(|l| l.starts_with("NSpid:"))?;
        line.split_whitespace().last()?.parse().ok().filter(|pid: &i32| *pid > 0)
    }

    /// Notes a signal the program sent (see [`SentSignal`]) or took with sigtimedwait.
    fn note_signal_syscall(&mut self, t: &Stopped, vtid: u32, spec: &Spec, args: &[u64; 6], ret: i64) {
        let at = self.source.position();
        if spec.signals.takes && ret > 0 {
            self.source.taken.push((at, vtid, ret as i32));
            return;
        }
        let Some(send) = spec.follow.sends.filter(|_| ret == 0) else { return };
        let arg = |i: u8| args[usize::from(i)];
        let (target, thread) = match send.target {
            Target::Process(i) => (arg(i) as i32, false),
            Target::Thread(i) => (arg(i) as i32, true),
            Target::PidFd(i) => match self.pidfd_target(t, vtid, arg(i) as i32) {
                Some(pid) => (pid, false),
                None => return,
            },
        };
        let (sig, info_at) = (arg(send.sig) as i32, send.info.map(arg).filter(|p| *p != 0));
        if !(1..=ft_libos::signal::SIG_MAX).contains(&sig) || target == -1 {
            return;
        }
        let info = info_at.and_then(|p| t.read(p, ft_interposer::tracee::SIGINFO_SIZE).ok());
        let info = info.as_deref().and_then(ft_interposer::tracee::siginfo_from_bytes);
        // A signal that does nothing to its target is not logged when it arrives: not a send
        // to follow (its disposition is real at replay: sigaction runs).
        let effect = |this: &Self, ns: i32| {
            let task = this.tasks.iter().find(|(v, _)| this.ids.get(v).map(|i| i.0) == Some(ns));
            match (task, Sig::new(sig)) {
                (Some((_, task)), Some(s)) => !crate::record::has_no_effect(task.tid, s),
                _ => true,
            }
        };
        if target > 0 {
            if effect(self, target) {
                self.sent.push(SentSignal { at, target, thread, sig, info });
            }
            return;
        }
        // kill(0 or -pgid): one send to each process of the group (real at replay: setpgid runs).
        let outer_pgid = |pid: Pid| -> Option<i32> {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            stat[stat.rfind(')')? + 1..].split_whitespace().nth(2)?.parse().ok()
        };
        let group = if target == 0 {
            outer_pgid(t.pid())
        } else {
            let leader = self
                .ids
                .iter()
                .find(|(_, (tid, proc))| *tid == -target && self.ids.get(proc).map(|i| i.0) == Some(*tid));
            leader.and_then(|(v, _)| self.tasks.get(v)).map(|l| l.tid.as_raw())
        };
        let Some(group) = group else { return };
        let members: Vec<i32> = self
            .tasks
            .iter()
            .filter(|(v, task)| **v == task.proc && outer_pgid(task.tid) == Some(group))
            .filter_map(|(v, _)| self.ids.get(v).map(|i| i.0))
            .collect();
        for target in members {
            if effect(self, target) {
                self.sent.push(SentSignal { at, target, thread: false, sig, info });
            }
        }
    }

    /// Going live: sends again each signal the program sent that no task of its target took in
    /// the log since (a standard signal is taken by any later delivery of its number, as the
    /// kernel merges them; a real-time one by one delivery each), if its target still runs. A
    /// sigqueue goes with its siginfo; a kill is a kill from outside the program's namespace
    /// (si_pid 0). SIGKILL and SIGSTOP are left out (the log shows their effect).
    /// Returns (process, signal, siginfo) of each sigqueue sent again: the kernel zeroes si_pid
    /// for a sender outside the program's PID namespace, so the recorder gives the signal its
    /// siginfo at its delivery stop.
    fn resend_pending(&mut self) -> Result<Vec<(u32, i32, libc::siginfo_t)>> {
        let mut queued = Vec::new();
        let mut used = vec![false; self.source.taken.len()];
        let in_target = |task: u32, s: &SentSignal, ids: &HashMap<u32, (i32, u32)>| {
            let (tid, proc) = ids.get(&task).copied().unwrap_or((0, u32::MAX));
            if s.thread {
                tid == s.target
            } else {
                ids.get(&proc).map(|i| i.0) == Some(s.target)
            }
        };
        let mut resend = Vec::new();
        for s in &self.sent {
            if matches!(s.sig, libc::SIGKILL | libc::SIGSTOP) {
                continue;
            }
            let later = |(i, (pos, task, signo)): (usize, &(u64, u32, i32))| {
                (*pos > s.at && *signo == s.sig && in_target(*task, s, &self.ids)).then_some(i)
            };
            let taken = if s.sig < 32 {
                self.source.taken.iter().enumerate().any(|e| later(e).is_some())
            } else {
                match self.source.taken.iter().enumerate().filter(|(i, _)| !used[*i]).find_map(later) {
                    Some(i) => {
                        used[i] = true;
                        true
                    }
                    None => false,
                }
            };
            if !taken {
                resend.push(s);
            }
        }
        for s in resend {
            let target = self.tasks.iter().find(|(v, _)| {
                let (tid, proc) = self.ids.get(v).copied().unwrap_or((0, u32::MAX));
                if s.thread {
                    tid == s.target
                } else {
                    **v == proc && tid == s.target
                }
            });
            let Some((v, t)) = target else { continue };
            let tgid = self.tasks.get(&t.proc).map_or(t.tid, |l| l.tid);
            slog::info!(self.log, "going live: a signal the program sent is still pending"; "signal" => s.sig, "task" => v);
            let sig = Sig::new(s.sig).ok_or_else(|| SessionError::Mismatch {
                what: "the log".into(),
                detail: format!("signal number {}", s.sig),
            })?;
            // SAFETY: rt_(tg)sigqueueinfo read a siginfo_t of ours; kill and tgkill take integers.
            let r = unsafe {
                match (&s.info, s.thread) {
                    (Some(info), false) if info.si_code < 0 => {
                        libc::syscall(libc::SYS_rt_sigqueueinfo, tgid.as_raw(), s.sig, info as *const libc::siginfo_t)
                    }
                    (Some(info), true) if info.si_code < 0 => libc::syscall(
                        libc::SYS_rt_tgsigqueueinfo,
                        tgid.as_raw(),
                        t.tid.as_raw(),
                        s.sig,
                        info as *const libc::siginfo_t,
                    ),
                    (_, true) => libc::syscall(libc::SYS_tgkill, tgid.as_raw(), t.tid.as_raw(), s.sig),
                    (_, false) => i64::from(send_signal(tgid, sig).map_or(-1, |()| 0)),
                }
            };
            if r != 0 {
                slog::warn!(self.log, "going live: could not send a pending signal again"; "signal" => s.sig, "task" => v);
            } else if let Some(info) = s.info.filter(|i| i.si_code < 0) {
                queued.push((t.proc, s.sig, info));
            }
        }
        Ok(queued)
    }

    /// The log says this wait reaped `b`, a child forked at replay: reaps it for real (wait4 with
    /// `__WALL | WNOHANG` in its place; the log's result and writes are put in afterwards), so
    /// that it is not left for a wait of the program after going live.
    fn reap_born(&mut self, t: Stopped, regs: ft_interposer::Regs, child: u32, b: Born, index: u64) -> Result<Stopped> {
        let mut r = regs;
        let opts = ft_libos::wait::WALL | libc::WNOHANG as u64;
        r.rewrite(libc::SYS_wait4 as u64, &[i64::from(b.ns_pid) as u64, 0, opts, 0, 0, 0]);
        t.set_regs(&r)?;
        let t = self.run_to_exit(t, index)?;
        let got = t.regs()?.ret();
        if got != i64::from(b.ns_pid) {
            // Its exit came before this wait in the log, so it is a zombie here: left, it would
            // be reaped a second time after going live.
            return Err(self.diverge(
                index,
                format!("a wait that reaps child {} (task {child})", b.ns_pid),
                format!("wait4({}, __WALL|WNOHANG) = {got} here", b.ns_pid),
            ));
        }
        self.born.remove(&child);
        Ok(t)
    }

    /// Learns how the program made and configured its sockets, to rebuild them if it goes live.
    fn follow_sockets(&mut self, t: &Stopped, vtid: u32, spec: &Spec, args: &[u64; 6], s: &Syscall) -> Result<()> {
        let proc = self.tasks.get(&vtid).map(|t| t.proc).unwrap_or(0);
        let socks = self.sockets.entry(proc).or_default();
        for nf in &s.new_fds {
            socks.remove(&nf.fd);
        }
        if s.ret < 0 {
            return Ok(());
        }
        let fd = args[0] as i32;
        let read = |ptr: u64, len: u64, max: u64| t.read(ptr, len.min(max) as usize);
        match spec.fds.object {
            Object::Socket => {
                let made = Some((args[0] as i32, args[1] as i32, args[2] as i32));
                socks.insert(s.ret as i32, SockShadow { made, ..Default::default() });
            }
            Object::Connection => {
                socks.insert(s.ret as i32, SockShadow::default());
            }
            _ => {}
        }
        match spec.follow.live {
            Live::None => {}
            Live::Bind => {
                if let Some(sh) = socks.get_mut(&fd) {
                    sh.addr = read(args[1], args[2], 128)?;
                }
            }
            Live::Listen => {
                if let Some(sh) = socks.get_mut(&fd) {
                    sh.backlog = Some(args[1] as i32);
                }
            }
            Live::SockOpt => {
                if let Some(sh) = socks.get_mut(&fd) {
                    sh.opts.push((args[1] as i32, args[2] as i32, read(args[3], args[4], 256)?));
                }
            }
        }
        Ok(())
    }

    /// The committed log is replayed: make the stand-ins real and hand the tasks to a recorder.
    fn go_live(&mut self) -> Result<crate::record::Handover> {
        use crate::record::{Adopted, AdoptedState};
        // One task per process at a seccomp stop injects the syscalls that make its fds real.
        let mut procs: Vec<u32> = self.tasks.values().map(|t| t.proc).collect();
        procs.sort_unstable();
        procs.dedup();
        let mut made = crate::live::MadeReal::new();
        self.refill_pipes(&procs);
        let mut timers = self.itimers_to_arm();
        if !self.unarmed_timers.is_empty() {
            let mut calls: Vec<&str> = self.unarmed_timers.iter().copied().collect();
            calls.sort_unstable();
            slog::warn!(self.log, "going live: timers the program armed are not armed again (not supported yet): a program that waits for them will wait longer or forever"; "armed by" => calls.join(", "));
        }
        let mut deferred = HashMap::new();
        for proc in procs {
            let socks = self.sockets.get(&proc).cloned().unwrap_or_default();
            let files = self.files.get(&proc).cloned().unwrap_or_default();
            let pidfds =
                self.pidfds.iter().filter(|((p, _), _)| *p == proc).map(|((_, fd), pid)| (*fd, *pid)).collect();
            let work = crate::live::ProcWork { timers: timers.remove(&proc).unwrap_or_default(), pidfds };
            if socks.is_empty()
                && files.is_empty()
                && work.timers.is_empty()
                && work.pidfds.is_empty()
                && self.eventfds.is_empty()
            {
                continue;
            }
            let candidate = self.tasks.iter().find_map(|(v, t)| {
                let at_seccomp = match &t.state {
                    RState::Parked(_) | RState::CloneParked(_) | RState::ExecParked(_) => true,
                    RState::Fresh(s) | RState::Idle(s) => s.stop == Stop::Seccomp,
                    _ => false,
                };
                (t.proc == proc && at_seccomp).then_some(*v)
            });
            // A process whose execve runs (released by the log) is losing its other threads.
            let candidate = candidate.filter(|_| !self.exec_running.contains(&proc));
            let Some(v) = candidate else {
                // Its tasks run user code or are inside a clone: the recorder makes its fds real
                // at its first syscall stop, before that syscall runs.
                slog::debug!(
                    self.log,
                    "going live: process {proc} is not at a syscall; its fds are made real at its first"
                );
                deferred.insert(proc, crate::live::Deferred { sockets: socks, files, work });
                continue;
            };
            let taken = self.take_state(v);
            let log = self.log.clone();
            let evs = &self.eventfds;
            let mut real = |t: Stopped| crate::live::make_real(t, &socks, &files, &work, evs, &mut made, &log);
            let state = match taken {
                RState::Parked(p) => RState::Parked(Parked { t: real(p.t)?, ..p }),
                RState::CloneParked(p) => RState::CloneParked(Parked { t: real(p.t)?, ..p }),
                RState::ExecParked(p) => RState::ExecParked(Parked { t: real(p.t)?, ..p }),
                RState::Fresh(s) => RState::Fresh(real(s)?),
                RState::Idle(s) => RState::Idle(real(s)?),
                other => other,
            };
            self.set_state(v, state);
        }
        // The clock pages record from now on.
        for proc in self.clocks.ready_procs() {
            // A process inside an execve gets a fresh page, in record mode, in its new image.
            let execs =
                |v: &u32| self.calls.get(v).is_some_and(|c| lookup(c.nr).is_some_and(|s| s.special == Special::Exec));
            let executing = self.exec_running.contains(&proc)
                || self.tasks.iter().any(|(v, t)| t.proc == proc && matches!(t.state, RState::Executing) && execs(v));
            if executing {
                continue;
            }
            if let Some(t) = self.tasks.values().find(|t| t.proc == proc) {
                match ft_interposer::clock::to_record(t.tid) {
                    Err(e) if e.is_gone() => {}
                    other => other?,
                }
            }
        }
        let resent = self.resend_pending()?;
        let mut tasks = Vec::new();
        let vtids: Vec<u32> = self.tasks.keys().copied().collect();
        for v in vtids {
            let Some(t) = self.tasks.remove(&v) else { continue };
            let state = match t.state {
                RState::Starting => AdoptedState::Starting,
                RState::Idle(s) => AdoptedState::Idle(s),
                RState::Parked(p) | RState::ExecParked(p) | RState::CloneParked(p) => AdoptedState::Parked(p.t),
                RState::Fresh(s) => AdoptedState::Fresh(s),
                RState::Running => AdoptedState::Holding,
                RState::Executing => {
                    // A clone or execve whose Spawn or Exec is logged and its result is not: the
                    // recorder logs the result when it returns (a vfork returns only once its
                    // child has exec'd or ended, so it is not waited for here).
                    let Some(call) = self.calls.get(&v) else {
                        return Err(SessionError::Unsupported {
                            what: format!("going live while task {v} is inside a clone or execve"),
                            why: "replay did not keep the syscall it made".into(),
                        });
                    };
                    let args = self.clone_args.remove(&v).unwrap_or(call.args);
                    AdoptedState::Completing { nr: call.nr, args }
                }
            };
            let first_args = if matches!(state, AdoptedState::Starting) { self.clone_args.remove(&v) } else { None };
            tasks.push(Adopted { tid: t.tid, vtid: v, proc: t.proc, state, pending: t.pending, first_args });
        }
        let mut waited: Vec<(Pid, Waited)> = self.arrived.drain().collect();
        for (v, e) in self.early_deaths.drain() {
            if let Some(a) = tasks.iter().find(|a| a.vtid == v) {
                let w = if e.signal != 0 {
                    Waited::Killed(Sig::new(e.signal).unwrap_or(Sig::SIGKILL))
                } else {
                    Waited::Exited(e.code)
                };
                waited.push((a.tid, w));
            }
        }
        let max_task = tasks.iter().map(|t| t.vtid).max().unwrap_or(0);
        // The children forked at replay that are still there without an exit signal (no execve
        // since); for one that ended, whether the log gave its parent a SIGCHLD after that.
        let quiet = self
            .born
            .values()
            .filter(|b| ft_interposer::tracee::exit_signal(b.tid) == Some(0))
            .map(|b| {
                let q = crate::record::Quiet { parent: b.parent, ns_pid: b.ns_pid, uid: b.uid };
                let told = |at: u64| {
                    self.source.taken.iter().any(|(pos, task, signo)| {
                        *signo == libc::SIGCHLD && *pos > at && self.ids.get(task).map(|i| i.1) == Some(b.parent)
                    })
                };
                let owed = b.ended.filter(|(at, _)| !told(*at));
                (b.tid, q, owed.map(|(_, (code, signal))| Exit { code, signal, task: 0 }))
            })
            .collect();
        let restarts = self
            .restarts
            .iter()
            .filter_map(|(v, r)| Some((tasks.iter().find(|a| a.vtid == *v)?.tid, r.0, r.1)))
            .collect();
        Ok(crate::record::Handover {
            tasks,
            fds: std::mem::take(&mut self.fds),
            holder: self.fresh_holder,
            last_run: self.last_run,
            next_vtid: self.max_vtid.max(max_task) + 1,
            events: self.source.position(),
            waited,
            status0: self.status0,
            clocks: std::mem::take(&mut self.clocks),
            silent: std::mem::take(&mut self.silent),
            interrupting: self.interrupting,
            restarts,
            quiet,
            deferred,
            made,
            eventfds: std::mem::take(&mut self.eventfds),
            resent,
        })
    }

    /// Runs the syscall to its exit stop.
    fn run_to_exit(&mut self, t: Stopped, index: u64) -> Result<Stopped> {
        let pid = t.pid();
        t.cont_to_exit()?;
        match self.wait_tid(pid)? {
            Waited::Stopped(s) if s.stop == Stop::SyscallExit => Ok(s),
            Waited::Stopped(s) => Err(SessionError::Trace(ft_interposer::TraceError::Unexpected {
                pid,
                what: format!("{:?} instead of a syscall exit", s.stop),
            })),
            Waited::Exited(code) => {
                Err(self.diverge(index, "a syscall result".into(), format!("an exit with status {code}")))
            }
            Waited::Killed(sig) => Err(self.diverge(index, "a syscall result".into(), format!("death by {sig}"))),
        }
    }

    fn put_mem(&self, t: &Stopped, s: &Syscall, forced: bool) -> Result<()> {
        for m in &s.mem {
            let r = if forced { t.write_forced(m.addr, &m.data) } else { t.write(m.addr, &m.data) };
            match r {
                Ok(()) => {}
                Err(e) if e.is_gone() => return Err(e.into()),
                // The page is gone or read-only in the replayed process: a divergence the next
                // checked event will show; the kernel could not have written there either.
                Err(_) => {}
            }
        }
        Ok(())
    }

    fn verify_file(&self, t: &Stopped, fd: i64, s: &Syscall) -> Result<()> {
        let path = String::from_utf8_lossy(&s.path).into_owned();
        let hash =
            if fd >= 0 { program::hash_file(Path::new(&format!("/proc/{}/fd/{fd}", t.pid()))).ok() } else { None };
        if hash.as_deref() != Some(&s.file_hash[..]) {
            return Err(SessionError::Mismatch {
                what: format!("the file {path}"),
                detail: "it was opened by the recorded run and is missing or changed here (a library updated since?); replay needs the same file".into(),
            });
        }
        Ok(())
    }

    fn on_signal(&mut self, vtid: u32, t: Stopped, sig: Sig) -> Result<()> {
        let proc = self.tasks.get(&vtid).map(|t| t.proc).unwrap_or(0);
        if sig == Sig::SIGILL && self.clocks.used(proc) {
            let ip = t.regs()?.ip();
            if ft_interposer::clock::in_stub(ip) {
                return Err(self.diverge(
                    self.source.position(),
                    "the clock read the recording made next (another function or clock id)".into(),
                    format!("a different clock read by task {vtid}"),
                ));
            }
        }
        self.check_clock_reads(proc, &t)?;
        if sig == Sig::SIGSEGV {
            let mut regs = t.regs()?;
            if let Some(insn) = tsc::decode(&t, regs.ip())? {
                let (index, ev) = self.next_for(vtid)?;
                let rdtscp = insn == tsc::TscInsn::Rdtscp;
                let got = format!("{} at {:#x}", if rdtscp { "rdtscp" } else { "rdtsc" }, regs.ip());
                return match ev.kind {
                    Some(Kind::Rdtsc(r)) if r.ip == regs.ip() && r.rdtscp == rdtscp => {
                        tsc::complete(&mut regs, insn, r.tsc, r.aux);
                        t.set_regs(&regs)?;
                        t.cont(None)?;
                        Ok(())
                    }
                    _ => Err(self.diverge(index, describe::event(&ev), got)),
                };
            }
        }
        let pending = self.tasks.get_mut(&vtid).and_then(|task| {
            let i = task.pending.iter().position(|p| p.sig == sig)?;
            Some(task.pending.remove(i))
        });
        if let Some(held) = pending {
            // The recording's kernel delivered another signal right after this one, before the
            // handler ran: it must be pending when the kernel looks again.
            if let Some(Event { kind: Some(Kind::Signal(s)) }) = self.source.peek_event()? {
                if s.at_exit && s.grouped && s.task == vtid {
                    let (signo, info) = (s.signo, siginfo_from_bytes(&s.siginfo));
                    self.source.next_event()?;
                    if let Some(next) = Sig::new(signo) {
                        let _ = send_signal_to_thread(t.pid(), next);
                        if let Some(task) = self.tasks.get_mut(&vtid) {
                            task.pending.push(Held { sig: next, info });
                        }
                    }
                }
            }
            if let Some(info) = held.info {
                t.set_siginfo(&info)?;
            }
            t.cont(Some(sig))?;
            return Ok(());
        }
        if is_synchronous(&t, sig) {
            let (index, ev) = self.next_for(vtid)?;
            return match ev.kind {
                Some(Kind::Signal(s)) if s.signo == sig.raw() => {
                    t.cont(Some(sig))?;
                    Ok(())
                }
                _ => Err(self.diverge(index, describe::event(&ev), format!("a fault ({sig})"))),
            };
        }
        // Not in the recording (SIGCHLD of a child that exits for real at replay, SIGSTOP of a
        // new task): the log decides which signals the program sees.
        t.cont(None)?;
        Ok(())
    }
}

/// A signal the recording delivered where it arrived (a default action): replay sends it when
/// the log reaches it.
fn is_async(s: &ft_libos::proto::Signal) -> bool {
    !s.synchronous && !s.at_syscall && !s.at_exit
}

/// The temporary signal mask a syscall waited with, if it was still in effect at its exit (the
/// recorded result is the code of a wait a signal interrupted): the address of the sigset.
fn temporary_mask(t: &Stopped, nr: u64, args: &[u64; 6], ret: i64) -> Result<Option<u64>> {
    let Some(m) = lookup(nr).and_then(|s| s.signals.mask).filter(|m| m.interrupted_by(ret)) else { return Ok(None) };
    let mask = match m.at {
        MaskAt::Arg(i) => args[usize::from(i)],
        MaskAt::Pselect if args[5] != 0 => {
            // struct { const sigset_t *ss; size_t ss_len; }
            let b = t.read(args[5], 8)?;
            b.try_into().map(u64::from_le_bytes).unwrap_or(0)
        }
        MaskAt::Pselect => 0,
    };
    Ok((mask != 0).then_some(mask))
}

/// Rewrites a parked clone so that the child's exit signal is 0.
fn quiet_clone(p: &Parked) -> Result<()> {
    let mut regs = p.regs;
    let mut a = p.args;
    match p.spec.task.clone {
        CloneKind::Clone => a[0] &= !0xff,
        CloneKind::Fork => {
            regs.rewrite(libc::SYS_clone as u64, &[0, 0, 0, 0, 0, 0]);
            return Ok(p.t.set_regs(&regs)?);
        }
        CloneKind::Vfork => {
            let flags = (libc::CLONE_VFORK | libc::CLONE_VM) as u64;
            regs.rewrite(libc::SYS_clone as u64, &[flags, 0, 0, 0, 0, 0]);
            return Ok(p.t.set_regs(&regs)?);
        }
        CloneKind::Clone3 => {
            // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, ...
            p.t.write(a[0] + 32, &0u64.to_le_bytes())?;
            return Ok(());
        }
        CloneKind::None => {}
    }
    regs.rewrite(u64::from(p.spec.nr), &a);
    Ok(p.t.set_regs(&regs)?)
}

fn write_stdio(fd: i32, bytes: &[u8]) -> Result<()> {
    let r = if fd == 1 {
        let mut o = std::io::stdout().lock();
        o.write_all(bytes).and_then(|()| o.flush())
    } else {
        std::io::stderr().lock().write_all(bytes)
    };
    match r {
        Ok(()) => Ok(()),
        // The reader went away (replay | head): the program's output is simply not wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(SessionError::Io { what: "write the replayed output".into(), source: e }),
    }
}
