//! The replay session: re-execute the program and, at every stop, take the result from the log
//! instead of the world, checking that the program does what the recording says it did.

mod apply;
mod buffer;
mod checkpoint;
mod fds;
mod follow;
mod golive;
mod schedule;
mod signals;

use apply::quiet_clone;
use signals::is_async;

use crate::capture;
use crate::debug::{self, Debugger, Resume, StopReason};
use crate::describe;
use crate::error::{Result, SessionError};
pub use crate::launch::check_inputs;
use crate::launch::launch_spec;
pub use crate::launch::{Checkpoints, ReplayOptions};
use crate::live::{FileShadow, SockShadow};
use crate::program;
use crate::source::Noted;
pub use crate::source::{EventSource, FileSource};
use crate::stop::{
    self, emulate, fcntl_writes, has_no_effect, is_synchronous, let_interrupt_in, tracer_can_run, Decided, Entry, Held,
};
use crate::Outcome;
pub use checkpoint::{
    forget_preloaded as forget_preloaded_checkpoint, log_id, newest_usable as newest_usable_checkpoint,
    read_head as read_checkpoint_head, set_aside as set_checkpoint_aside, Head as CheckpointHead,
    Usable as UsableCheckpoint,
};
use ft_interposer::clock::ClockPages;
use ft_interposer::spin::{self, Probe};
use ft_interposer::tracee::{send_signal, send_signal_to_thread, siginfo_from_bytes, wait_for};
use ft_interposer::{filter, launch, tsc, Stop, Stopped, Vdso, Waited};
use ft_libos::digest;
use ft_libos::policy::{self, Action};
use ft_libos::proto::{
    event::Kind, Disposition, Event, Exec as ExecEvent, Exit, Header, Preempt, ProcState, Spawn, Syscall,
};
use ft_libos::table::{
    CloneKind, CopyOp, Exec, Live, MaskAt, NewFd, Object, Refusal, Spec, Special, Stream, Target, Timer,
};
use ft_libos::{lookup, FdKind, FdTable, Sig};
use nix::unistd::Pid;
use slog::{info, Logger};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where a replica that goes live records from then on.
pub struct GoLive<'a> {
    pub sink: &'a mut dyn crate::sink::EventSink,
    /// The data directory as the program sees it.
    pub data_dir: Option<PathBuf>,
    /// Called once the replica is live, before it records its first event.
    pub on_live: Box<dyn FnOnce() + 'a>,
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
    if let Some(file) = &opts.from_checkpoint {
        return checkpoint::restore_session(h, source, opts, live, debug, file, log);
    }
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
    let launched = launch(&launch_spec(h, Some(at_random), bind, vdso, start.state.as_ref())?, &filter)?;
    let pid = launched.tracee.pid();
    crate::set_current_tracee(pid.as_raw());
    info!(log, "replaying"; "pid" => pid.as_raw());
    let mut r = Replayer::new(source, opts, debug, log);
    r.program_data_dir = (!h.data_dir.is_empty()).then(|| PathBuf::from(OsStr::from_bytes(&h.data_dir)));
    if let Some(p) = r.plan.as_mut() {
        p.data_dir = checkpoint::data_dir_view(h, opts);
        p.log_id = checkpoint::log_id(h);
        p.header = prost::Message::encode_to_vec(h);
        p.start = prost::Message::encode_to_vec(&Event { kind: Some(Kind::Start(start.clone())) });
    }
    let ns_pid = ft_interposer::tracee::ns_pid_uid(pid).map_or(0, |(p, _)| p);
    r.ids.insert(0, (ns_pid, 0));
    if start.clock_page {
        r.clocks.exec(0, true);
    }
    let checked = if launched.sp != start.sp {
        Err(SessionError::Mismatch {
            what: "the program's initial stack".into(),
            detail: format!(
                "it starts at {:#x}, the recording's at {:#x}: the kernel lays out arguments differently here (different kernel or stack limit?)",
                launched.sp, start.sp
            ),
        })
    } else if let Some(d) = start.state.as_ref().and_then(|e| state_differs(pid, e)) {
        Err(SessionError::Mismatch {
            what: "the program's process state at its start".into(),
            detail: format!(
                "{d} (replay sets the recording's working directory, umask and resource limits; run it as the user that recorded, with the same capabilities)"
            ),
        })
    } else {
        Ok(())
    };
    if let Err(e) = checked {
        ft_interposer::tracee::kill_and_reap_all([pid]);
        return Err(e);
    }
    if let Some(st) = start.state {
        r.states.insert(0, st);
    }
    r.tasks.insert(0, RTask { tid: pid, proc: 0, state: RState::Idle(launched.tracee), pending: Vec::new() });
    drive(r, live, pid, log)
}

/// Runs a replayer to the end of its log, and on into live recording if `live` says so.
fn drive(mut r: Replayer<'_>, live: Option<GoLive<'_>>, pid: Pid, log: &Logger) -> Result<Outcome> {
    let result = match r.run() {
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
    };
    if result.is_err() {
        ft_interposer::tracee::kill_and_reap_all(r.tasks.values().map(|t| t.tid).chain([pid]));
    }
    result
}

impl<'a> Replayer<'a> {
    /// A replayer at the start of a log (nothing known yet).
    fn new(
        source: &'a mut dyn EventSource,
        opts: &ReplayOptions,
        debug: Option<&'a mut dyn Debugger>,
        log: &Logger,
    ) -> Replayer<'a> {
        Replayer {
            source: Noted { inner: source, taken: Vec::new(), ahead: std::collections::VecDeque::new() },
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
            fills: HashMap::new(),
            clone_args: HashMap::new(),
            exec_running: HashSet::new(),
            calls: HashMap::new(),
            silent: HashMap::new(),
            interrupter: spin::Interrupter::default(),
            yielded: None,
            born: HashMap::new(),
            ipc: checkpoint::IpcIds::default(),
            restarts: HashMap::new(),
            pidfds: HashMap::new(),
            shadows: crate::live::Shadows::default(),
            posix_timers: BTreeMap::new(),
            posix_last: HashMap::new(),
            ids: HashMap::new(),
            sent: Vec::new(),
            pipes: HashMap::new(),
            socketpairs: HashMap::new(),
            program_data_dir: None,
            itimers: HashMap::new(),
            states: HashMap::new(),
            plan: opts.checkpoints.clone().map(checkpoint::Plan::new),
            stdio_out: [0; 2],
        }
    }
}

impl Drop for Replayer<'_> {
    /// A checkpoint still being written is finished before the session ends.
    fn drop(&mut self) {
        let log = self.log.clone();
        if let Some(p) = self.plan.as_mut() {
            p.finish_write(&log);
        }
    }
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
    /// Processes whose syscall buffer ring was filled since their last checked stop.
    fills: HashMap<u32, buffer::Fill>,
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
    interrupter: spin::Interrupter,
    /// The task that gave up the token at a Preempt: the token goes back to it only by a switch
    /// or by its own next event, not by default as to a task that stopped at a syscall.
    yielded: Option<u32>,
    /// Child processes forked at replay and not reaped yet, by task number (see [`Born`]).
    born: HashMap<u32, Born>,
    /// System V ids the program was given (see `checkpoint::IpcIds`).
    ipc: checkpoint::IpcIds,
    /// Per task, the syscall (number, arguments) that the log's -ERESTART_RESTARTBLOCK
    /// interrupted, until a result other than that: the kernel continues it as
    /// restart_syscall, which a replay that goes live must run as that syscall again.
    restarts: HashMap<u32, (u32, [u64; 6])>,
    /// The pid (as the program sees it) of each pidfd that pidfd_open made, by (process, fd):
    /// at replay they are stand-ins, so a pidfd_send_signal's target is known from here.
    pidfds: HashMap<(u32, i32), i32>,
    /// The program's eventfds (their counters as the log's writes and reads leave them),
    /// timerfds, signalfds and inotify instances (their watches in order), by the eventfd id of
    /// their stand-ins: replay runs none of their syscalls, a replay that goes live makes them
    /// again (see `crate::live::Shadows`).
    shadows: crate::live::Shadows,
    /// The program's POSIX timers by (process, id), with the last id the kernel gave per
    /// process: made and armed going live (see `crate::timers`).
    posix_timers: BTreeMap<(u32, i32), crate::timers::PosixTimer>,
    posix_last: HashMap<u32, i32>,
    /// Every task's (tid as the program sees it, process), dead ones too.
    ids: HashMap<u32, (i32, u32)>,
    /// Signals the program sent (kill, tgkill, sigqueue...), in log order (see [`SentSignal`]).
    sent: Vec<SentSignal>,
    /// Per pipe (inode), the bytes the program wrote into it and has not read: replay runs
    /// neither (their results are logged), so a replay that goes live writes them in.
    pipes: HashMap<u64, Flow>,
    /// The program's socketpairs (their stand-ins are pipes), by the stand-in pipe's inode: how
    /// they were made and the bytes in flight each way, made real going live (`live::Pair`).
    socketpairs: HashMap<u64, PairFlows>,
    /// The data directory as the program sees it (the header's): a unix socket bound there
    /// leaves its file there (see `follow::make_socket_file`).
    program_data_dir: Option<PathBuf>,
    /// Interval timers armed by the program (alarm, setitimer), by (process, which): replay
    /// arms none (the log has their signals), a replay that goes live arms them.
    itimers: HashMap<(u32, i32), Itimer>,
    /// Per task, the process state the log implies (cwd, credentials, umask, limits,
    /// capabilities: `ProcState` of the Start, Exec and state-changing Syscall events), checked
    /// against the kernel's after each change and at go-live.
    states: HashMap<u32, ProcState>,
    /// Where and how often this replay takes checkpoints (`ReplayOptions::checkpoints`).
    plan: Option<checkpoint::Plan>,
    /// Bytes of the program's stdout and stderr replayed so far.
    stdio_out: [u64; 2],
}

/// One of the program's socketpairs (see `Replayer::socketpairs`): socketpair's domain and type,
/// and the bytes in flight toward each end (0: the end the stand-in pipe reads from, sv[0]).
#[derive(Default, Clone, serde::Serialize, serde::Deserialize)]
struct PairFlows {
    domain: i32,
    ty: i32,
    toward: [Flow; 2],
}

/// The bytes in flight in one of the program's pipes (see `Replayer::pipes`).
#[derive(Default, Clone, serde::Serialize, serde::Deserialize)]
struct Flow {
    queue: VecDeque<u8>,
    /// A datagram socketpair's (SOCK_DGRAM, SOCK_SEQPACKET) messages in `queue`, by length: a
    /// read takes one whole message, and going live writes each with a send of its own.
    #[serde(default)]
    messages: VecDeque<usize>,
    /// Bytes read before the write that brought them was logged (a blocking write bigger
    /// than the pipe's room completes after its reader took part of it): taken off that write.
    debt: usize,
}

/// An interval timer as the program last set it, and the log position then.
#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Itimer {
    /// struct itimerval: interval s, µs, value s, µs.
    itv: [i64; 4],
    at: u64,
}

/// A signal the program sent to one of its own tasks (at replay the syscall only returns its
/// logged result). If no task of its target took it in the log since, it was still pending
/// when the log ended: a replay that goes live sends it again ([`Replayer::resend_pending`]).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct SentSignal {
    at: u64,
    /// The target's pid or tid as the program sees it.
    target: i32,
    thread: bool,
    sig: i32,
    /// The siginfo of a sigqueue.
    #[serde(with = "checkpoint::siginfo_bytes")]
    info: Option<libc::siginfo_t>,
    /// The sending process (its task number).
    #[serde(default)]
    from: u32,
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
#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
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
}

/// How the process state of task `tid` differs from `expected` (each difference, joined), or
/// None when they agree.
fn state_differs(tid: Pid, expected: &ProcState) -> Option<String> {
    match ft_interposer::procfs::proc_state(tid.as_raw()) {
        Err(why) => Some(format!("the state of task {tid} cannot be read: {why}")),
        Ok(got) => {
            let d = ft_libos::process::differences(expected, &got);
            (!d.is_empty()).then(|| d.join("; "))
        }
    }
}

/// How long a running holder may take to reach its next stop, before a completion logged
/// during its run, before the replay stops it with a probe's SIGSTOP (see
/// `Replayer::holder_catches_up`), and how long it waits for that stop at most.
const HOLDER_CATCH_UP: std::time::Duration = std::time::Duration::from_millis(5);
const HOLDER_CATCH_UP_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Replayer<'_> {
    /// A state event of task `vtid`: its state now; the other threads of its process share its
    /// working directory, umask and limits (threads are created with CLONE_FS).
    fn note_state(&mut self, vtid: u32, st: ProcState) {
        let proc = self.tasks.get(&vtid).map_or(vtid, |t| t.proc);
        let others: Vec<u32> =
            self.tasks.iter().filter(|(&v, t)| v != vtid && t.proc == proc).map(|(&v, _)| v).collect();
        for v in others {
            if let Some(o) = self.states.get_mut(&v) {
                o.cwd.clone_from(&st.cwd);
                o.umask = st.umask;
                o.limits.clone_from(&st.limits);
            }
        }
        self.states.insert(vtid, st);
    }
}
