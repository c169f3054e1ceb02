//! The record session: run the program under the interposer and send every nondeterministic
//! result to an [`EventSink`] (a log file now, the Raft log later).

use crate::capture;
use crate::error::{Result, SessionError};
use crate::program;
use crate::release::{Drained, Releaser, Ticket, SOCKET_QUEUE_LIMIT};
use crate::{describe, Outcome};
use ft_interposer::clock::ClockPages;
use ft_interposer::fdcopy::{self, FdCopier};
use ft_interposer::spin::{self, Probe};
use ft_interposer::tracee::{send_signal, send_signal_to_thread, siginfo_to_bytes, wait_for};
use ft_interposer::{filter, launch, tsc, LaunchSpec, Regs, Running, Stop, Stopped, Vdso, Waited};
use ft_libos::digest;
use ft_libos::policy::{self, Action};
use ft_libos::proto::{
    event::Kind, Clocks, Disposition, Event, Exec as ExecEvent, Exit, FdKind, Header, MemWrite, NewFd, Preempt, Rdtsc,
    Run, Signal, Spawn, Start, Syscall,
};
use ft_libos::table::{
    CloneKind, Closes, CopyOp, Emulation, Exec, Len, NewFd as NewFdEffect, Object, Refusal, Spec, Special, Stream,
};
use ft_libos::{lookup, FdTable, Sig};
use nix::unistd::Pid;
use slog::{debug, info, warn, Logger};
use std::collections::VecDeque;
use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where recorded events go.
pub trait EventSink {
    fn append(&mut self, ev: &Event) -> Result<()>;
    /// Called before an Output syscall runs: every event so far must be durable (committed)
    /// before the world may see its effect. A file needs nothing here.
    fn before_output(&mut self) -> Result<()> {
        Ok(())
    }
    /// Appends the event of an Output syscall. Later outputs need not wait for it: no input
    /// depends on it, and a replica that goes live without it runs the output itself (to a
    /// client connection that is dead by then).
    fn append_output(&mut self, ev: &Event) -> Result<()> {
        self.append(ev)
    }
    /// Called when every task is blocked in the kernel (nothing will be appended until one
    /// wakes up): events held back for group commit should go out now, so that followers are
    /// not left behind by a quiet program.
    fn idle(&mut self) -> Result<()> {
        Ok(())
    }
    /// What a socket write answered at its seccomp stop is released on: a ticket for every
    /// event appended so far (the write's own event need not be durable, see `append_output`).
    /// None: whatever is appended is durable at once (a log file), so the write goes out now.
    fn output_ticket(&mut self) -> Result<Option<Ticket>> {
        Ok(None)
    }
}

impl EventSink for ft_libos::log::LogWriter {
    fn append(&mut self, ev: &Event) -> Result<()> {
        Ok(ft_libos::log::LogWriter::append(self, ev)?)
    }
}

/// What to record.
pub struct RecordOptions {
    /// PROG as given (resolved through PATH).
    pub prog: OsString,
    /// argv[0..]; argv[0] is PROG as given.
    pub argv: Vec<OsString>,
    pub env: Vec<OsString>,
    pub cwd: PathBuf,
    /// Replicated state: syscalls on files in here run for real at replay.
    pub data_dir: Option<PathBuf>,
}

/// The header for a recording: identity of the program and of its inputs.
pub fn header(opts: &RecordOptions) -> Result<(PathBuf, Header)> {
    let exe = program::resolve(&opts.prog)?;
    let exe_hash = program::hash_file(&exe)?;
    let (interp_path, interp_hash) = match program::elf_interp(&exe) {
        Some(p) => {
            let h = program::hash_file(&p)?;
            (p.into_os_string().into_vec(), h)
        }
        None => (Vec::new(), Vec::new()),
    };
    let (data_dir, data_dir_digest) = match &opts.data_dir {
        Some(d) => {
            let digest = digest::dir(d)
                .map_err(|e| SessionError::Io { what: format!("data directory {}", d.display()), source: e.source })?;
            (d.as_os_str().as_bytes().to_vec(), digest)
        }
        None => (Vec::new(), Vec::new()),
    };
    let start_unix_ns =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let h = Header {
        version: ft_libos::log::VERSION,
        ftexec_version: env!("CARGO_PKG_VERSION").into(),
        exe_path: exe.as_os_str().as_bytes().to_vec(),
        exe_hash,
        argv: opts.argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
        env: opts.env.iter().map(|a| a.as_bytes().to_vec()).collect(),
        cwd: opts.cwd.as_os_str().as_bytes().to_vec(),
        cpu_model: program::cpu_model(),
        data_dir,
        data_dir_digest,
        interp_path,
        interp_hash,
        start_unix_ns,
    };
    Ok((exe, h))
}

pub(crate) fn cstrings(items: &[Vec<u8>], what: &str) -> Result<Vec<CString>> {
    items
        .iter()
        .map(|b| CString::new(b.clone()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| SessionError::Mismatch { what: what.into(), detail: "contains a NUL byte".into() })
}

pub(crate) fn launch_spec(
    h: &Header,
    at_random: Option<[u8; 16]>,
    bind: Option<(CString, CString)>,
    vdso: Vdso,
) -> Result<LaunchSpec> {
    let exe = CString::new(h.exe_path.clone())
        .map_err(|_| SessionError::Mismatch { what: "program path".into(), detail: "contains a NUL byte".into() })?;
    let cwd = CString::new(h.cwd.clone()).ok();
    Ok(LaunchSpec {
        exe,
        argv: cstrings(&h.argv, "argv")?,
        env: cstrings(&h.env, "environment")?,
        cwd,
        bind,
        at_random,
        pid_ns: true,
        vdso,
    })
}

/// Records the program described by `header` into `sink`.
///
/// `data_dir` is the replicated data directory as the program sees it; `bind` (source, target)
/// mounts a replica's own copy there in a private mount namespace.
pub fn record(
    header: &Header,
    data_dir: Option<&Path>,
    bind: Option<(CString, CString)>,
    sink: &mut dyn EventSink,
    log: &Logger,
) -> Result<Outcome> {
    let filter = filter::build()?;
    let launched = launch(&launch_spec(header, None, bind, Vdso::TryClockPage)?, &filter)?;
    info!(log, "recording"; "pid" => launched.tracee.pid().as_raw(), "exe" => String::from_utf8_lossy(&header.exe_path).into_owned());
    if let Some(why) = &launched.no_clock_page {
        warn!(log, "clock reads will be syscalls (slower): {}", why);
    }
    let (at_random, sp, clock_page) = (launched.at_random.to_vec(), launched.sp, launched.clock_page);
    sink.append(&Event { kind: Some(Kind::Start(Start { at_random, sp, clock_page })) })?;
    let pid = launched.tracee.pid();
    crate::set_current_tracee(pid.as_raw());
    let mut rec = Recorder::new(sink, log, data_dir, 1);
    if clock_page {
        rec.clocks.exec(0, true);
    }
    rec.tasks.insert(pid, Task { vtid: 0, proc: 0, state: TState::Ready(launched.tracee) });
    rec.ready.push_back(pid);
    rec.finish(pid)
}

/// A task handed over by a replay that goes live.
pub(crate) struct Adopted {
    pub tid: Pid,
    pub vtid: u32,
    pub proc: u32,
    pub state: AdoptedState,
    /// Signals the log delivered to it that replay sent and the kernel has not delivered yet:
    /// already logged, so the recorder delivers them at their stops as it does the signals it
    /// re-sent itself (`bouncing`), instead of taking them for new ones.
    pub pending: Vec<Held>,
    /// For a task whose first stop has not come (Starting): the argument registers its parent's
    /// clone had before replay rewrote them, given to it at that stop (glibc's vfork child
    /// returns through rdi).
    pub first_args: Option<[u64; 6]>,
}

pub(crate) enum AdoptedState {
    /// Its first stop has not been collected yet.
    Starting,
    /// Stopped with nothing to handle.
    Idle(Stopped),
    /// A stop not handled yet (a syscall the log has no result for): handled when it runs.
    Fresh(Stopped),
    /// At the seccomp stop of a syscall that released the token (it blocks in the kernel): the
    /// followers wait for its completion event, so it runs now, without the token.
    Parked(Stopped),
    /// Running user code with the token.
    Holding,
    /// Inside a clone or execve that replay ran for real (its Spawn or Exec is logged, its
    /// result is not): the syscall as the program made it (number, argument registers), whose
    /// result the recorder logs at its exit, where it gives the program its registers back.
    Completing { nr: u64, args: [u64; 6] },
}

/// What a replay that goes live hands over to the recorder.
pub(crate) struct Handover {
    pub tasks: Vec<Adopted>,
    pub fds: HashMap<u32, FdTable>,
    pub holder: Option<u32>,
    pub last_run: u32,
    pub next_vtid: u32,
    pub events: u64,
    /// Stops collected but not handled, and deaths not logged yet.
    pub waited: Vec<(Pid, Waited)>,
    pub status0: Option<i32>,
    /// The clock page of each process that has one (switched to recording already).
    pub clocks: ClockPages,
    /// Per task (by vtid), the replay's count of silent syscall stops (see `Signal.silent`).
    pub silent: HashMap<u32, u32>,
    /// A task sent a probe's SIGSTOP (the holder, found spinning at the end of the log).
    pub interrupting: Option<Pid>,
    /// Child processes that replay forked (exit signal 0) and that are still there, alive or
    /// zombies: see [`Recorder::quiet`]. With the exit of a zombie whose SIGCHLD the log did
    /// not deliver to its parent after that exit (the leader died first): owed now.
    pub quiet: Vec<(Pid, Quiet, Option<Exit>)>,
    /// Tasks whose syscall the log interrupted with -ERESTART_RESTARTBLOCK (tid, number,
    /// arguments): see [`Recorder::adopted_restart`].
    pub restarts: Vec<(Pid, u32, [u64; 6])>,
    /// Processes whose fds are made real at their first syscall stop (by the leader's vtid).
    pub deferred: HashMap<u32, crate::live::Deferred>,
    /// The real sockets made at go-live (a deferred process may share one).
    pub made: crate::live::MadeReal,
    /// The program's eventfds, by the eventfd id of their stand-ins (for deferred processes).
    pub eventfds: HashMap<u64, crate::live::EventShadow>,
    /// Sigqueues replay sent again (process, signal, siginfo): see [`Recorder::incoming_info`].
    pub resent: Vec<(u32, i32, libc::siginfo_t)>,
}

/// Goes on recording the tasks of a replay that reached the end of the committed log.
pub(crate) fn continue_live(
    h: Handover,
    data_dir: Option<&Path>,
    sink: &mut dyn EventSink,
    log: &Logger,
) -> Result<Outcome> {
    let mut rec = Recorder::new(sink, log, data_dir, h.events);
    rec.fds = h.fds;
    rec.last_run = h.last_run;
    rec.next_vtid = h.next_vtid;
    rec.status0 = h.status0;
    rec.clocks = h.clocks;
    rec.interrupting = h.interrupting;
    let owed: Vec<(Pid, Exit)> = h.quiet.iter().filter_map(|(c, _, e)| Some((*c, e.clone()?))).collect();
    rec.quiet = h.quiet.into_iter().map(|(c, q, _)| (c, q)).collect();
    rec.deferred_real = h.deferred;
    rec.made_real = h.made;
    rec.eventfds = h.eventfds;
    for (proc, sig, info) in h.resent {
        rec.resent_info.entry((proc, sig)).or_default().push_back(info);
    }
    for (tid, nr, args) in h.restarts {
        if let Some(spec) = lookup(u64::from(nr)) {
            rec.restart_of.insert(tid, (spec, args));
            rec.adopted_restart.insert(tid);
        }
    }
    let first = h.tasks.iter().find(|t| t.vtid == 0).map(|t| t.tid).unwrap_or(Pid::from_raw(0));
    let mut tasks = h.tasks;
    tasks.sort_by_key(|t| t.vtid);
    let mut parked = Vec::new();
    for t in tasks {
        let state = match t.state {
            AdoptedState::Starting => TState::Starting,
            AdoptedState::Idle(s) => {
                rec.ready.push_back(t.tid);
                TState::Ready(s)
            }
            AdoptedState::Fresh(s) => {
                // The task that held the token goes on first, without a switch, as at the
                // followers, where it is still running.
                if Some(t.vtid) == h.holder {
                    rec.ready.push_front(t.tid);
                } else {
                    rec.ready.push_back(t.tid);
                }
                rec.fresh.insert(t.tid);
                TState::Ready(s)
            }
            AdoptedState::Parked(s) => {
                parked.push(s);
                TState::Holding
            }
            AdoptedState::Holding => TState::Holding,
            AdoptedState::Completing { nr, args } => {
                let spec = lookup(nr).ok_or_else(|| SessionError::Unsupported {
                    what: format!("going live with task {} inside unknown syscall {}", t.vtid, nr as i64),
                    why: "only a clone or an execve runs for real at replay".into(),
                })?;
                let fds = rec.fds.get(&t.proc).cloned().unwrap_or_default();
                let action = policy::decide(spec, &args, &fds, false);
                // A clone gets the registers replay rewrote back; a new image starts with its own.
                if spec.special != Special::Exec {
                    rec.restore_args.insert(t.tid);
                }
                TState::InKernel(Pending { spec, args, input: Vec::new(), action })
            }
        };
        if let Some(&n) = h.silent.get(&t.vtid) {
            rec.silent.insert(t.tid, n);
        }
        if !t.pending.is_empty() {
            rec.bouncing.insert(t.tid, t.pending);
        }
        if let Some(args) = t.first_args {
            rec.first_args.insert(t.tid, args);
        }
        rec.tasks.insert(t.tid, Task { vtid: t.vtid, proc: t.proc, state });
    }
    if h.holder.is_none() {
        // As at the followers: a free token goes first to the task that ran last, if it waits.
        if let Some(pid) = rec.tasks.iter().find(|(_, t)| t.vtid == h.last_run).map(|(p, _)| *p) {
            if let Some(i) = rec.ready.iter().position(|p| *p == pid) {
                rec.ready.remove(i);
                rec.ready.push_front(pid);
            }
        }
    }
    for s in parked {
        match rec.resume_in_kernel(s) {
            // Ended meanwhile (another thread's execve): its death is reported by wait.
            Err(SessionError::Trace(e)) if e.is_gone() => {}
            other => other?,
        }
    }
    for (child, exit) in owed {
        rec.quiet_ended(child, &exit);
    }
    for (pid, w) in h.waited {
        rec.on_wait(pid, w)?;
    }
    rec.finish(first)
}

/// The directory a path argument of task `pid` is relative to: "/" for an absolute path, else
/// what `dirfd` names (its target) or the task's cwd. None if /proc cannot tell.
pub(crate) fn path_base(pid: Pid, dirfd: Option<i32>, path: &Path) -> Option<PathBuf> {
    match dirfd {
        _ if path.is_absolute() => Some(PathBuf::from("/")),
        Some(fd) if fd != libc::AT_FDCWD => std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok(),
        _ => std::fs::read_link(format!("/proc/{pid}/cwd")).ok(),
    }
}

/// A child process that replay forked (see [`Recorder::quiet`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Quiet {
    /// Its parent's process (task number of the leader).
    pub parent: u32,
    /// Its pid and uid as its parent sees them (for the siginfo of its SIGCHLD).
    pub ns_pid: i32,
    pub uid: u32,
}

/// What a task is doing, from the tracer's point of view.
enum TState {
    /// Created (its parent's clone event was seen); its first stop has not arrived.
    Starting,
    /// In a ptrace stop, waiting for the token.
    Ready(Stopped),
    /// Holds the token: the one task executing user code.
    Holding,
    /// Inside a syscall that runs in the kernel (and may block): the token is free meanwhile.
    InKernel(Pending),
}

/// A syscall a task is executing in the kernel, to be logged when it completes.
struct Pending {
    spec: &'static Spec,
    args: [u64; 6],
    input: Vec<u8>,
    action: Action,
}

struct Task {
    vtid: u32,
    /// The vtid of its thread group leader (its process).
    proc: u32,
    state: TState,
}

struct Recorder<'a> {
    sink: &'a mut dyn EventSink,
    log: Logger,
    /// The fd model of each process (by the vtid of its leader).
    fds: HashMap<u32, FdTable>,
    data_dir: Option<PathBuf>,
    warned: HashSet<u64>,
    events: u64,
    /// blake3 of verified files by (dev, ino, size, mtime).
    hashes: HashMap<(u64, u64, u64, i64), Vec<u8>>,
    tasks: HashMap<Pid, Task>,
    /// First stops of new tasks that arrived before their parent's clone event.
    early: HashMap<Pid, Stopped>,
    /// Tasks waiting for the token, in arrival order.
    ready: VecDeque<Pid>,
    holder: Option<Pid>,
    last_run: u32,
    next_vtid: u32,
    /// Exit status of task 0, the program's status.
    status0: Option<i32>,
    /// When a task last stopped (the watchdog measures spinning from here).
    progress: std::time::Instant,
    /// Set by the watchdog: (task, tasks waiting).
    spinning: Option<(u32, usize)>,
    /// The holder was sent a SIGSTOP to probe it for a fixpoint (see [`spin`]); its delivery
    /// stop is not the program's.
    interrupting: Option<Pid>,
    /// When that SIGSTOP was sent.
    interrupted_at: std::time::Instant,
    /// Since when the holder has run without a stop other than probes (None: not probing).
    probing_since: Option<std::time::Instant>,
    /// How long the holder runs without a stop before the next probe (doubles while probes
    /// find it computing, up to PROBE_GAP_MAX).
    probe_gap: std::time::Duration,
    /// The last stop handled was a probe's.
    probed: bool,
    /// Caught signals held back until the task's next syscall where they are not blocked.
    held: HashMap<Pid, Vec<Held>>,
    /// Signals re-sent at a syscall boundary (in the kernel now), to deliver at their stops.
    bouncing: HashMap<Pid, Vec<Held>>,
    /// The registers of a task resumed from a syscall that returns to it (its exit stop, or the
    /// seccomp stop of a syscall that runs without one), until its next stop: a signal stop with
    /// the same registers (rax aside) delivers at that syscall's exit.
    exits: HashMap<Pid, ExitPoint>,
    /// Per task, its syscall stops that logged nothing since its last one that logged an event
    /// (replay counts the same; see `Signal.silent`).
    silent: HashMap<Pid, u32>,
    /// The signal a task was just given at a delivery stop, until its next stop: a signal stop
    /// on that signal's fresh frame is the kernel delivering the next one in the same pass.
    chain: HashMap<Pid, (Sig, u64)>,
    /// The syscall a signal interrupted with -ERESTART_RESTARTBLOCK (a sleep, poll), per task:
    /// the kernel continues it as restart_syscall, which writes what that syscall writes (the
    /// time left of nanosleep, poll's revents).
    restart_of: HashMap<Pid, (&'static Spec, [u64; 6])>,
    /// Ready tasks whose stop has not been handled (handed over by a replay going live).
    fresh: HashSet<Pid>,
    /// The clock page of each process (by the vtid of its leader) whose vDSO goes to it.
    clocks: ClockPages,
    /// Copies of tracee fds for socket syscalls answered in the tracer (table `Exec::Copy`).
    copier: FdCopier,
    /// Socket writes waiting for their events' commit (a replicating sink only).
    releaser: Option<Releaser>,
    /// Syscalls answered on a copy of the fd (one stop instead of two), for the log line at the end.
    one_stop: u64,
    /// The tracer's buffer for socket reads answered on a copy of the fd.
    scratch: Vec<u8>,
    /// Children forked by a replay before it went live, by tid, with their parent's process.
    /// Their exit signal is 0: the kernel neither sends SIGCHLD for them nor shows them to a
    /// wait without `__WALL`. So the parent's waits get `__WALL` while it has one, and the
    /// recorder sends the parent the SIGCHLD of one that ends (see [`Recorder::quiet_ended`]).
    quiet: HashMap<Pid, Quiet>,
    /// Handed-over tasks whose next restart_syscall continues a syscall that the log
    /// interrupted: the replaying kernel has no restart block for it (restart_syscall would fail
    /// with EINTR), so it runs as that syscall again (see [`Recorder::adopted_restart`]).
    adopted_restart: HashSet<Pid>,
    /// Handed-over tasks inside a clone or execve whose registers replay rewrote: given back at
    /// the syscall's exit (see `AdoptedState::Completing`).
    restore_args: HashSet<Pid>,
    /// Handed-over tasks still to make their first stop, and the registers to give them there
    /// (see `Adopted::first_args`).
    first_args: HashMap<Pid, [u64; 6]>,
    /// Handed-over processes whose stand-ins become real at their first syscall stop.
    deferred_real: HashMap<u32, crate::live::Deferred>,
    made_real: crate::live::MadeReal,
    eventfds: HashMap<u64, crate::live::EventShadow>,
    /// Per (process, signal), the siginfo of the sigqueues a replay going live sent again.
    resent_info: HashMap<(u32, i32), VecDeque<libc::siginfo_t>>,
    /// Per process, the siginfo of the SIGCHLD sent by [`Recorder::quiet_ended`], given to its
    /// delivery stop in place of the kernel's (which names the tracer as the sender).
    chld_info: HashMap<u32, libc::siginfo_t>,
}

/// How long the token holder may run without a stop while others wait (see wait_watchdog).
const SPIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long the token holder runs without a stop, while others wait or a caught signal waits
/// for it, before it is probed for a fixpoint (see [`spin`]).
pub(crate) const PROBE_GAP: std::time::Duration = std::time::Duration::from_millis(10);
const PROBE_GAP_MAX: std::time::Duration = std::time::Duration::from_secs(1);

const MAX_TRACER_BUF: u64 = 1 << 20;

impl<'a> Recorder<'a> {
    fn new(sink: &'a mut dyn EventSink, log: &Logger, data_dir: Option<&Path>, events: u64) -> Self {
        Recorder {
            sink,
            log: log.clone(),
            fds: HashMap::from([(0, FdTable::new())]),
            data_dir: data_dir.map(Path::to_path_buf),
            warned: HashSet::new(),
            events,
            hashes: HashMap::new(),
            tasks: HashMap::new(),
            early: HashMap::new(),
            ready: VecDeque::new(),
            holder: None,
            last_run: 0,
            next_vtid: 1,
            status0: None,
            progress: std::time::Instant::now(),
            spinning: None,
            interrupting: None,
            interrupted_at: std::time::Instant::now(),
            probing_since: None,
            probe_gap: PROBE_GAP,
            probed: false,
            held: HashMap::new(),
            bouncing: HashMap::new(),
            exits: HashMap::new(),
            silent: HashMap::new(),
            chain: HashMap::new(),
            restart_of: HashMap::new(),
            fresh: HashSet::new(),
            clocks: ClockPages::default(),
            copier: FdCopier::default(),
            releaser: None,
            one_stop: 0,
            scratch: Vec::new(),
            quiet: HashMap::new(),
            adopted_restart: HashSet::new(),
            restore_args: HashSet::new(),
            first_args: HashMap::new(),
            deferred_real: HashMap::new(),
            made_real: crate::live::MadeReal::new(),
            eventfds: HashMap::new(),
            resent_info: HashMap::new(),
            chld_info: HashMap::new(),
        }
    }

    /// Runs to the end; never leaves a tracee behind on failure.
    fn finish(&mut self, first: Pid) -> Result<Outcome> {
        match self.run().and_then(|o| self.release_all().map(|()| o)) {
            Ok(o) => {
                if self.one_stop > 0 {
                    info!(self.log, "socket syscalls answered on a copy of the fd (one stop)"; "count" => self.one_stop);
                }
                Ok(o)
            }
            Err(e) => {
                ft_interposer::tracee::kill_and_reap_all(self.tasks.keys().copied().chain([first]));
                Err(e)
            }
        }
    }
}

/// How long the end of a recording waits for clients to take the replies still queued.
const END_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);
/// How long the program may be held while a client takes the replies queued before a write or
/// close on its socket; then the connection is reset (see `Releaser::drain`).
const ORDER_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

impl Recorder<'_> {
    /// Sends every queued output before the recording ends.
    fn release_all(&mut self) -> Result<()> {
        let Some(r) = &self.releaser else { return Ok(()) };
        match r.drain(None, END_DRAIN) {
            Ok(Drained::Sent) => Ok(()),
            Ok(Drained::Abandoned) => {
                warn!(
                    self.log,
                    "the program ended with replies that clients did not take in {} s; their connections were reset",
                    END_DRAIN.as_secs()
                );
                Ok(())
            }
            Err(why) => Err(SessionError::Replication(why)),
        }
    }

    /// Waits until the queued writes of socket `key` (None: of every socket) are sent: a write
    /// that runs in the program must not overtake them, and a close must not leave the socket
    /// open in our copy. The whole program waits meanwhile (one task at a time): a client that
    /// takes nothing for `ORDER_DRAIN` has its connection reset.
    fn drain_outputs(&mut self, key: Option<u64>) -> Result<Drained> {
        let Some(r) = &self.releaser else { return Ok(Drained::Sent) };
        if key.is_some_and(|k| r.queued(k) == 0) || r.total() == 0 {
            return Ok(Drained::Sent);
        }
        let d = r.drain(key, ORDER_DRAIN).map_err(SessionError::Replication)?;
        if d == Drained::Abandoned {
            warn!(
                self.log,
                "a client took no replies for {} s while the program had to wait for it; its connection was reset",
                ORDER_DRAIN.as_secs()
            );
        }
        Ok(d)
    }

    /// The queue key (socket inode) of fd `fd` of task `pid`, if it is a socket with replies
    /// queued.
    fn queued_socket(&mut self, pid: Pid, fd: u64) -> Option<u64> {
        let r = self.releaser.as_ref()?;
        if r.total() == 0 {
            return None;
        }
        let copy = self.copier.copy(pid, fd as i32)?;
        let key = fdcopy::facts(&copy).filter(|f| f.socket)?.ino;
        (r.queued(key) > 0).then_some(key)
    }

    /// Answers a socket syscall at its seccomp stop, on a copy of the tracee's fd (table
    /// `Exec::Copy`), when that cannot block or change what the program sees. Returns false
    /// to let the tracee make the syscall itself. The tracee's syscall is skipped.
    fn on_copy(&mut self, t: &Stopped, regs: &mut Regs, spec: &Spec, args: &[u64; 6], op: CopyOp) -> Result<bool> {
        let arg = |i: Option<u8>| i.map_or(0, |i| args[usize::from(i)]);
        let flags = match op {
            CopyOp::Recv { flags, .. } | CopyOp::Send { flags, .. } => arg(flags) as i32,
            CopyOp::EpollWait { .. } => 0,
        };
        match op {
            CopyOp::Recv { addr, .. } => {
                // (MSG_TRUNC discards stream data unread: left to the kernel.)
                let plain = libc::MSG_DONTWAIT | libc::MSG_PEEK | libc::MSG_CMSG_CLOEXEC;
                if args[2] > MAX_TRACER_BUF || flags & !plain != 0 || arg(addr) != 0 {
                    return Ok(false);
                }
            }
            CopyOp::Send { addr, .. } => {
                let plain = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL | libc::MSG_MORE;
                if flags & !plain != 0 || arg(addr) != 0 {
                    return Ok(false);
                }
            }
            CopyOp::EpollWait { mask } => {
                let max = args[2] as i32;
                if !(1..=4096).contains(&max) || arg(mask) != 0 {
                    return Ok(false);
                }
            }
        }
        let pid = t.pid();
        let Some(fd) = self.copier.copy(pid, args[0] as i32) else { return Ok(false) };
        let mut ev =
            Syscall { nr: spec.nr, args: args.to_vec(), task: self.vtid(pid), in_tracer: true, ..Default::default() };
        let ret = match op {
            CopyOp::Recv { .. } => {
                let Some(f) = fdcopy::facts(&fd).filter(|f| f.socket) else { return Ok(false) };
                if !f.nonblocking && fdcopy::sockopt(&fd, libc::SO_RCVLOWAT).unwrap_or(1) > 1 {
                    // A blocking read waits for SO_RCVLOWAT bytes; MSG_DONTWAIT would not.
                    return Ok(false);
                }
                // One buffer for every read (no allocation per stop); `args[2]` ≤ 1 MiB.
                let mut buf = std::mem::take(&mut self.scratch);
                buf.resize(buf.len().max(args[2] as usize), 0);
                let r = fdcopy::recv_nowait(&fd, &mut buf[..args[2] as usize], flags);
                let blocks = r == -i64::from(libc::EAGAIN) && !f.nonblocking && flags & libc::MSG_DONTWAIT == 0;
                let done = if blocks {
                    // A blocking read with nothing to read: it waits in the kernel.
                    None
                } else {
                    Some(self.copy_out(t, args[1], &buf[..r.clamp(0, args[2] as i64) as usize], r, &mut ev))
                };
                self.scratch = buf;
                match done {
                    Some(r) => r?,
                    None => return Ok(false),
                }
            }
            CopyOp::EpollWait { .. } => {
                // `max` was checked to be 1..=4096 (the kernel reads it as an int).
                let mut buf = vec![0u8; (args[2] as i32).clamp(1, 4096) as usize * 12];
                let r = fdcopy::epoll_poll(&fd, &mut buf);
                if r == 0 && args[3] as i32 != 0 {
                    return Ok(false);
                }
                self.copy_out(t, args[1], &buf[..(r.max(0) as usize * 12).min(buf.len())], r, &mut ev)?
            }
            CopyOp::Send { .. } => {
                // Datagram sockets keep their boundaries and errors in the program.
                let Some(f) = fdcopy::facts(&fd).filter(|f| f.socket) else { return Ok(false) };
                if fdcopy::sockopt(&fd, libc::SO_TYPE) != Some(libc::SOCK_STREAM) {
                    return Ok(false);
                }
                if fdcopy::broken(&fd) {
                    // Let the program meet EPIPE/ECONNRESET (and SIGPIPE) itself.
                    return Ok(false);
                }
                let Some(bytes) = capture::input_exact(t, spec.input, args)? else { return Ok(false) };
                ev.input_digest = if bytes.is_empty() { Vec::new() } else { digest::short(&bytes) };
                if let Some(r) = &self.releaser {
                    if let Some(why) = r.failed() {
                        return Err(SessionError::Replication(why));
                    }
                    if r.queued(f.ino) > 0 && r.queued(f.ino) + bytes.len() > SOCKET_QUEUE_LIMIT {
                        if f.nonblocking || flags & libc::MSG_DONTWAIT != 0 {
                            // As a full socket buffer would: the program tries again later.
                            // What it learns is an input; nothing is sent.
                            return self.answer(t, regs, ev, -i64::from(libc::EAGAIN), false).map(|()| true);
                        }
                        // A blocking write waits for room, as natively (but the whole program
                        // waits with it).
                        if self.drain_outputs(Some(f.ino))? == Drained::Abandoned {
                            return Ok(false);
                        }
                    }
                }
                match self.sink.output_ticket()? {
                    None => {
                        // Nothing waits for a commit: send now, as the program would have.
                        if !f.nonblocking && flags & libc::MSG_DONTWAIT == 0 {
                            return Ok(false);
                        }
                        let r = fdcopy::send_nowait(&fd, &bytes, flags);
                        if r == -i64::from(libc::EPIPE) {
                            return Ok(false);
                        }
                        r
                    }
                    Some(ticket) => {
                        if self.releaser.is_none() {
                            self.releaser =
                                Some(Releaser::new().map_err(SessionError::io("starting the output thread"))?);
                        }
                        let Some(r) = &self.releaser else { return Ok(false) };
                        let n = bytes.len() as i64;
                        r.push(f.ino, fd, bytes, ticket);
                        n
                    }
                }
            }
        };
        // A write's event is an output's (the next output need not wait for it).
        self.answer(t, regs, ev, ret, matches!(op, CopyOp::Send { .. }))?;
        Ok(true)
    }

    /// Skips the tracee's syscall with result `ret` and logs it (as an output's event, or as an
    /// input).
    fn answer(&mut self, t: &Stopped, regs: &mut Regs, mut ev: Syscall, ret: i64, output: bool) -> Result<()> {
        ev.ret = ret;
        ev.disposition = Disposition::Inject as i32;
        regs.skip_with(ret);
        t.set_regs(regs)?;
        self.one_stop += 1;
        self.events += 1;
        let ev = Event { kind: Some(Kind::Syscall(ev)) };
        if output {
            self.sink.append_output(&ev)
        } else {
            self.sink.append(&ev)
        }
    }

    /// Before the program closes fds (close, close_range, dup2/dup3 over an open fd): a socket
    /// with replies still queued is drained first, so that our copy does not keep it open (and
    /// in the program's epoll sets) after the program closed it.
    fn before_close(&mut self, t: &Stopped, spec: &Spec, args: &[u64; 6]) -> Result<()> {
        if self.releaser.as_ref().is_none_or(|r| r.total() == 0) {
            return Ok(());
        }
        const CLOSE_RANGE_CLOEXEC: u64 = 4;
        let fd = match spec.fds.closes {
            Closes::None => return Ok(()),
            Closes::Arg(i) => args[usize::from(i)],
            Closes::Range if args[2] & CLOSE_RANGE_CLOEXEC != 0 => return Ok(()),
            // Rare (closefrom in a child before exec): every queue.
            Closes::Range => return self.drain_outputs(None).map(drop),
        };
        match self.queued_socket(t.pid(), fd) {
            Some(k) => self.drain_outputs(Some(k)).map(drop),
            None => Ok(()),
        }
    }

    /// Writes what the tracer read into the tracee's buffer at `addr` and logs it; the result
    /// is `r`, or EFAULT if the buffer cannot take it.
    fn copy_out(&mut self, t: &Stopped, addr: u64, data: &[u8], r: i64, ev: &mut Syscall) -> Result<i64> {
        if data.is_empty() {
            return Ok(r);
        }
        let n = t.write_some(addr, data)?;
        if n > 0 {
            ev.mem.push(MemWrite { addr, data: data[..n].to_vec() });
        }
        // Short: the bytes are consumed, and a program that hands read() a bad buffer loses them
        // (the kernel would have left them queued). The log has what the program saw, including
        // the part of the buffer that was written.
        Ok(if n == data.len() { r } else { -i64::from(libc::EFAULT) })
    }

    /// Runs a handed-over task's syscall in the kernel, without the token (see Parked).
    fn resume_in_kernel(&mut self, t: Stopped) -> Result<()> {
        let pid = t.pid();
        let regs = t.regs()?;
        let Some(spec) = lookup(regs.nr()) else {
            return Err(SessionError::Unsupported {
                what: format!("going live with a task parked at unknown syscall {}", regs.nr() as i64),
                why: "it cannot have released the token".into(),
            });
        };
        let args = regs.args();
        let path_local = self.path_local(&t, spec, &args)?;
        let action = policy::decide(spec, &args, self.fds_of(pid), path_local);
        let input = capture::input(&t, spec.input, &args)?;
        if matches!(action, Action::Output { .. }) {
            self.sink.before_output()?;
        }
        self.before_blocking(&t, spec, &args)?;
        t.cont_to_exit()?;
        self.set_state(pid, TState::InKernel(Pending { spec, args, input, action }));
        Ok(())
    }

    /// Register changes for a syscall about to block in the kernel, given back at its exit
    /// ([`Recorder::after_blocking`]): a wait's `__WALL` ([`Recorder::widen_wait`]) and an
    /// adopted restart ([`Recorder::adopted_restart`]).
    fn before_blocking(&mut self, t: &Stopped, spec: &Spec, args: &[u64; 6]) -> Result<()> {
        self.widen_wait(t, spec, args)?;
        self.adopted_restart(t, spec)
    }

    /// A handed-over task at restart_syscall, continuing a syscall that the log interrupted with
    /// -ERESTART_RESTARTBLOCK: it runs that syscall again (the log still shows restart_syscall,
    /// which is what the followers wait at). A relative sleep sleeps for the time left that the
    /// kernel wrote at the interruption (in its `rem`); an absolute one is the same call; poll
    /// and futex waits get their first timeout again.
    fn adopted_restart(&mut self, t: &Stopped, spec: &Spec) -> Result<()> {
        if spec.special != Special::RestartSyscall || !self.adopted_restart.remove(&t.pid()) {
            return Ok(());
        }
        let Some(&(orig, orig_args)) = self.restart_of.get(&t.pid()) else { return Ok(()) };
        let a = orig.signals.restart.map_or(orig_args, |sleep| sleep.continued(&orig_args));
        debug!(self.log, "a handed-over restart_syscall runs as its syscall again"; "call" => orig.name);
        let mut regs = t.regs()?;
        regs.rewrite(u64::from(orig.nr), &a);
        Ok(t.set_regs(&regs)?)
    }

    /// A wait4/waitid of a process that has [`Recorder::quiet`] children: `__WALL` added to
    /// its options, so that it sees them (the options register is given back at its exit).
    fn widen_wait(&self, t: &Stopped, spec: &Spec, args: &[u64; 6]) -> Result<()> {
        let Some(i) = spec.task.wait.map(|w| w.options_arg()) else { return Ok(()) };
        let proc = self.tasks.get(&t.pid()).map(|t| t.proc);
        if args[i] & ft_libos::wait::WALL != 0 || !self.quiet.values().any(|q| Some(q.parent) == proc) {
            return Ok(());
        }
        let mut regs = t.regs()?;
        let mut a = *args;
        a[i] |= ft_libos::wait::WALL;
        regs.set_args(&a);
        Ok(t.set_regs(&regs)?)
    }

    /// At the exit of a syscall [`Recorder::before_blocking`] may have changed: the argument
    /// registers as the program set them; after a wait, the quiet children it reaped forgotten.
    fn after_blocking(&mut self, s: &Stopped, p: &Pending) -> Result<()> {
        let waits = p.spec.task.wait.is_some();
        let adopted = self.restore_args.remove(&s.pid());
        let restart = p.spec.special == Special::RestartSyscall;
        if !waits && !adopted && !restart {
            return Ok(());
        }
        let mut regs = s.regs()?;
        // An adopted restart_syscall ran as its syscall: it is restart_syscall again at its exit,
        // where a signal delivery is logged with the syscall number (replay has restart_syscall
        // there) and where the kernel restarts it (its restart block is real now).
        let renamed = restart && regs.nr() != u64::from(p.spec.nr);
        if regs.args() != p.args || renamed {
            regs.set_args(&p.args);
            regs.0.orig_rax = u64::from(p.spec.nr);
            s.set_regs(&regs)?;
        }
        if waits && !self.quiet.is_empty() {
            self.quiet.retain(|child, _| Path::new(&format!("/proc/{child}")).exists());
        }
        Ok(())
    }

    /// A child forked by replay (exit signal 0, no execve since: [`Recorder::on_exec`] forgets
    /// one that calls it) ended: the kernel sent its parent nothing, so the recorder sends the
    /// SIGCHLD natively due, if the parent catches it (its handler gets the kernel's siginfo
    /// for it) or blocks it (for sigwaitinfo or a signalfd, which then read a kill's siginfo),
    /// unless a SIGCHLD is pending already (the kernel would keep that one). The child stays a
    /// zombie until the parent's (widened) wait.
    fn quiet_ended(&mut self, child: Pid, exit: &Exit) {
        let Some(&q) = self.quiet.get(&child) else { return };
        let Some(leader) = self.tasks.iter().find(|(_, t)| t.vtid == q.parent).map(|(p, _)| *p) else { return };
        let caught = matches!(disposition(leader, Sig::SIGCHLD), Disposition_::Caught);
        let masks = status_masks(leader);
        let bit = Sig::SIGCHLD.mask_bit();
        if (!caught && masks("SigBlk:") & bit == 0) || (masks("ShdPnd:") | masks("SigPnd:")) & bit != 0 {
            return;
        }
        if caught {
            let (code, status) = if exit.signal != 0 {
                (ft_libos::wait::CLD_KILLED, exit.signal)
            } else {
                (ft_libos::wait::CLD_EXITED, exit.code)
            };
            let bytes = ft_libos::wait::sigchld_info(q.ns_pid, q.uid, code, status);
            if let Some(info) = ft_interposer::tracee::siginfo_from_bytes(&bytes) {
                self.chld_info.insert(q.parent, info);
            }
        }
        debug!(self.log, "SIGCHLD for a child forked at replay"; "child" => child.as_raw(), "parent" => q.parent);
        let _ = send_signal(leader, Sig::SIGCHLD);
    }

    /// The siginfo of a signal at its delivery stop: the kernel's, or for a SIGCHLD that
    /// [`Recorder::quiet_ended`] sent, the one the kernel would have given (set in the kernel
    /// too, for a signal delivered now).
    fn incoming_info(&mut self, t: &Stopped, sig: Sig) -> Option<libc::siginfo_t> {
        let proc = self.tasks.get(&t.pid()).map(|t| t.proc).unwrap_or(u32::MAX);
        if !self.resent_info.is_empty() {
            // A sigqueue replay sent again: the kernel zeroed its si_pid (the tracer is outside
            // the namespace); it gets the program's siginfo back.
            // SAFETY: SI_QUEUE says the siginfo has si_pid.
            let resent = t.siginfo().ok().is_some_and(|si| si.si_code == libc::SI_QUEUE && unsafe { si.si_pid() } == 0);
            if let Some(info) =
                self.resent_info.get_mut(&(proc, sig.raw())).filter(|_| resent).and_then(VecDeque::pop_front)
            {
                let _ = t.set_siginfo(&info);
                return Some(info);
            }
        }
        if sig == Sig::SIGCHLD {
            // SAFETY: si_pid is a field of the siginfo of every kill(), which SI_USER says it is.
            let from_tracer =
                t.siginfo().ok().is_some_and(|si| si.si_code == libc::SI_USER && unsafe { si.si_pid() } == 0);
            if from_tracer {
                if let Some(info) = self.chld_info.remove(&proc) {
                    let _ = t.set_siginfo(&info);
                    return Some(info);
                }
            }
        }
        t.siginfo().ok()
    }

    fn emit(&mut self, kind: Kind) -> Result<()> {
        self.events += 1;
        self.sink.append(&Event { kind: Some(kind) })
    }

    fn run(&mut self) -> Result<Outcome> {
        loop {
            // A handed-over task's fresh stop may release the token at once (a blocking
            // syscall): schedule until someone holds it or nobody is ready.
            while self.holder.is_none() && !self.ready.is_empty() {
                self.schedule()?;
            }
            if self.tasks.is_empty() {
                break;
            }
            if self.holder.is_none() {
                self.sink.idle()?;
            }
            let waited = if self.holder.is_some() && (!self.ready.is_empty() || self.holder_has_held()) {
                self.wait_watchdog()
            } else {
                wait_for(None)
            };
            let (pid, waited) = match waited {
                Ok(w) => w,
                Err(ft_interposer::TraceError::Ptrace { source: nix::Error::ECHILD, .. }) => break,
                Err(_) if self.spinning.is_some() => {
                    let (task, waiting) = self.spinning.unwrap_or_default();
                    return Err(SessionError::Unsupported {
                        what: format!(
                            "task {task} ran for {} s without a syscall while {waiting} other task(s) waited to run, and never reached a loop iteration that leaves its registers and memory unchanged",
                            SPIN_LIMIT.as_secs()
                        ),
                        why: "ftexec preempts a thread spinning without syscalls only where it waits (a spin-wait on a flag or a lock); preempting a thread that computes needs a hardware PMU, which this machine lacks (issue #3)"
                            .into(),
                    });
                }
                Err(e) => return Err(e.into()),
            };
            self.progress = std::time::Instant::now();
            self.probed = false;
            let r = self.on_wait(pid, waited);
            if !self.probed {
                self.probing_since = None;
                self.probe_gap = PROBE_GAP;
            }
            match r {
                Ok(()) => {}
                // Killed (kill -9) while we handled its stop: its death is reported next.
                Err(SessionError::Trace(e)) if e.is_gone() => {
                    if let Some(t) = self.tasks.get_mut(&pid) {
                        t.state = TState::Holding;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Outcome { status: self.status0.unwrap_or(0), events: self.events })
    }

    /// Waits while other tasks wait for the token (or a caught signal waits for the holder): a
    /// holder that runs for PROBE_GAP without a stop is probed for a fixpoint, where it is
    /// preempted (see [`Recorder::on_interrupt`]). One that runs for SPIN_LIMIT without reaching
    /// one while others wait would starve them (hermit #33): fail with a clear error instead.
    fn wait_watchdog(&mut self) -> ft_interposer::Result<(Pid, Waited)> {
        let mut nap = std::time::Duration::from_micros(50);
        loop {
            if let Some(w) = ft_interposer::tracee::try_wait_for(None)? {
                return Ok(w);
            }
            if let Some(p) = self.interrupting {
                if self.interrupted_at.elapsed() > spin::INTERRUPT_PATIENCE && !spin::stop_pending(p) {
                    // Discarded by a SIGCONT to the process: send another when due.
                    self.interrupting = None;
                }
            }
            if let (None, Some(h)) = (self.interrupting, self.holder) {
                if self.progress.elapsed() >= self.probe_gap {
                    self.probing_since.get_or_insert(self.progress);
                    match spin::interrupt(h) {
                        Ok(()) => {
                            self.interrupting = Some(h);
                            self.interrupted_at = std::time::Instant::now();
                        }
                        Err(e) if e.is_gone() => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            if !self.ready.is_empty() && self.probing_since.unwrap_or(self.progress).elapsed() > SPIN_LIMIT {
                let task = self.holder.map(|h| self.vtid(h)).unwrap_or(u32::MAX);
                self.spinning = Some((task, self.ready.len()));
                return Err(ft_interposer::TraceError::Unexpected {
                    pid: self.holder.unwrap_or(Pid::from_raw(0)),
                    what: "spinning".into(),
                });
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(std::time::Duration::from_millis(2));
        }
    }

    /// Logs the clock reads in the holder's clock-page buffer. Only the holder runs user code, so
    /// they are its own, made since its last stop: logged before whatever this stop logs. Not at
    /// a signal stop inside the stub: it may be between writing an entry and the count (a probe's
    /// steps or a signal can stop it anywhere), and emptying the buffer there would let the
    /// stub's count write bring the drained entries back. They are drained at the next stop.
    fn drain_clocks(&mut self, s: &Stopped) -> Result<()> {
        let pid = s.pid();
        let proc = self.tasks.get(&pid).map(|t| t.proc).unwrap_or(0);
        if !self.clocks.ready(proc) {
            return Ok(());
        }
        if matches!(s.stop, Stop::Signal(_)) && ft_interposer::clock::in_stub(s.regs()?.ip()) {
            return Ok(());
        }
        let raw = ft_interposer::clock::drain(s)?;
        if !raw.is_empty() {
            let reads = ft_libos::clock::pack(&raw).unwrap_or_default();
            let task = self.vtid(pid);
            self.emit(Kind::Clocks(Clocks { task, reads }))?;
        }
        Ok(())
    }

    fn holder_has_held(&self) -> bool {
        self.holder.and_then(|h| self.held.get(&h)).is_some_and(|v| !v.is_empty())
    }

    /// The delivery stop of a probe's SIGSTOP: if the holder is at a fixpoint of a spin loop,
    /// it gives up the token there, or takes the caught signals held for it, and the log says
    /// where (Preempt). Otherwise it runs on, and the next probe comes later.
    fn on_interrupt(&mut self, s: Stopped) -> Result<()> {
        let pid = s.pid();
        self.probed = true;
        let blocked = s.sigmask()?;
        let deliverable = self.held.get(&pid).is_some_and(|v| v.iter().any(|h| blocked & h.sig.mask_bit() == 0));
        if self.ready.is_empty() && !deliverable {
            // Its held signals are blocked: nothing to do here until it unblocks them.
            self.probe_gap = (self.probe_gap * 2).min(PROBE_GAP_MAX);
            s.cont(None)?;
            return Ok(());
        }
        let (point, t) = match spin::probe(s, None)? {
            Probe::Fixpoint(point, t) => (point, t),
            Probe::Moving(why, t) => {
                debug!(self.log, "probe: not at a fixpoint"; "task" => self.vtid(pid), "why" => why);
                self.probe_gap = (self.probe_gap * 2).min(PROBE_GAP_MAX);
                t.cont(None)?;
                return Ok(());
            }
            // A signal came while stepping, or the task died: as any stop of the holder.
            Probe::Other(p, w) => {
                self.probed = false;
                return self.on_wait(p, w);
            }
        };
        let task = self.vtid(pid);
        self.drain_clocks(&t)?;
        let sigs: Vec<Held> = match self.held.get_mut(&pid) {
            Some(v) => {
                let (free, still) = std::mem::take(v).into_iter().partition(|h| blocked & h.sig.mask_bit() == 0);
                *v = still;
                free
            }
            None => Vec::new(),
        };
        let signals = sigs
            .iter()
            .map(|h| Signal {
                signo: h.sig.raw(),
                task,
                siginfo: h.info.as_ref().map(siginfo_to_bytes).unwrap_or_default(),
                ..Default::default()
            })
            .collect();
        debug!(self.log, "preempted at a fixpoint"; "task" => task, "ip" => format!("{:#x}", point.ip), "steps" => point.steps, "signals" => sigs.len());
        self.emit(Kind::Preempt(Preempt {
            task,
            ip: point.ip,
            digest: point.digest.to_vec(),
            steps: point.steps,
            yielded: sigs.is_empty(),
            signals,
        }))?;
        self.exits.remove(&pid);
        self.chain.remove(&pid);
        self.probing_since = None;
        self.probe_gap = PROBE_GAP;
        if sigs.is_empty() {
            self.make_ready(t);
            return Ok(());
        }
        // As at a syscall (bounce): re-sent to this thread, delivered when it resumes.
        for h in sigs {
            let _ = send_signal_to_thread(pid, h.sig);
            self.bouncing.entry(pid).or_default().push(h);
        }
        t.cont(None)?;
        Ok(())
    }

    /// Gives the token to the first ready task; logs the switch.
    fn schedule(&mut self) -> Result<()> {
        while let Some(pid) = self.ready.pop_front() {
            let Some(task) = self.tasks.get_mut(&pid) else { continue };
            let TState::Ready(stopped) = std::mem::replace(&mut task.state, TState::Holding) else { continue };
            let vtid = task.vtid;
            self.holder = Some(pid);
            if vtid != self.last_run {
                self.last_run = vtid;
                self.emit(Kind::Run(Run { task: vtid }))?;
            }
            if self.fresh.remove(&pid) {
                return match self.on_holder_stop(stopped) {
                    Err(SessionError::Trace(e)) if e.is_gone() => Ok(()),
                    other => other,
                };
            }
            let waiting = match self.exits.get_mut(&pid) {
                Some(e) => {
                    e.events = self.events;
                    match signal_waiting(&stopped) {
                        Err(e) if e.is_gone() => false,
                        other => other?,
                    }
                }
                None => false,
            };
            match stopped.cont(None) {
                Ok(_) => {}
                Err(e) if e.is_gone() => {}
                Err(e) => return Err(e.into()),
            }
            if waiting {
                // Its delivery stop comes at once: handle it before any other task's stop logs an
                // event, so that replay finds it right after this task's syscall.
                self.wait_own_stop(pid)?;
            }
            return Ok(());
        }
        Ok(())
    }

    /// Waits for the holder's next stop and handles it (see [`signal_waiting`]). Gives up after
    /// SPIN_LIMIT (the holder then runs user code; the main loop collects its stop).
    fn wait_own_stop(&mut self, pid: Pid) -> Result<()> {
        let start = std::time::Instant::now();
        let mut nap = std::time::Duration::from_micros(10);
        loop {
            if let Some((p, w)) = ft_interposer::tracee::try_wait_for(Some(pid))? {
                self.progress = std::time::Instant::now();
                return match self.on_wait(p, w) {
                    Err(SessionError::Trace(e)) if e.is_gone() => {
                        self.set_state(p, TState::Holding);
                        Ok(())
                    }
                    other => other,
                };
            }
            if start.elapsed() > SPIN_LIMIT || self.holder != Some(pid) {
                return Ok(());
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(std::time::Duration::from_millis(2));
        }
    }

    fn vtid(&self, pid: Pid) -> u32 {
        self.tasks.get(&pid).map(|t| t.vtid).unwrap_or(u32::MAX)
    }

    fn fds_of(&mut self, pid: Pid) -> &mut FdTable {
        let proc = self.tasks.get(&pid).map(|t| t.proc).unwrap_or(0);
        self.fds.entry(proc).or_default()
    }

    fn set_state(&mut self, pid: Pid, state: TState) {
        if let Some(t) = self.tasks.get_mut(&pid) {
            t.state = state;
        }
    }

    /// Puts a stopped task in the ready queue.
    fn make_ready(&mut self, s: Stopped) {
        let pid = s.pid();
        if self.holder == Some(pid) {
            self.holder = None;
        }
        self.set_state(pid, TState::Ready(s));
        self.ready.push_back(pid);
    }

    fn on_wait(&mut self, pid: Pid, waited: Waited) -> Result<()> {
        let s = match waited {
            Waited::Exited(code) => return self.on_death(pid, Exit { code, signal: 0, task: 0 }),
            Waited::Killed(sig) => return self.on_death(pid, Exit { code: 0, signal: sig.raw(), task: 0 }),
            Waited::Stopped(s) => s,
        };
        if s.stop == Stop::Exec {
            let former = s.exec_former_tid()?;
            if former != pid && self.tasks.contains_key(&former) {
                return self.exec_from_thread(s, former);
            }
        }
        let Some(task) = self.tasks.get_mut(&pid) else {
            self.early.insert(pid, s);
            return Ok(());
        };
        match std::mem::replace(&mut task.state, TState::Holding) {
            TState::Starting | TState::Ready(_) => {
                if let Some(args) = self.first_args.remove(&pid) {
                    let mut regs = s.regs()?;
                    regs.set_args(&args);
                    s.set_regs(&regs)?;
                }
                self.make_ready(s);
                Ok(())
            }
            TState::Holding => self.on_holder_stop(s),
            TState::InKernel(p) => self.on_kernel_stop(s, p),
        }
    }

    /// A thread other than the leader completed an execve: the kernel ended the other threads
    /// (their deaths are reported, except the leader's) and gave the exec'ing thread the
    /// leader's tid. It takes the leader's task number too, as replay does at the Exec event,
    /// so the process keeps its task 0 (or its first task) and its exit is still the
    /// program's. The Exec event names the task that called execve.
    fn exec_from_thread(&mut self, s: Stopped, former: Pid) -> Result<()> {
        let leader = s.pid();
        let Some(mut task) = self.tasks.remove(&former) else { return Ok(()) };
        let from = task.vtid;
        if self.tasks.remove(&leader).is_some() {
            if self.holder == Some(leader) {
                self.holder = None;
            }
            self.ready.retain(|p| *p != leader);
        }
        let mut held = self.held.remove(&leader).unwrap_or_default();
        held.extend(self.held.remove(&former).unwrap_or_default());
        if !held.is_empty() {
            self.held.insert(leader, held);
        }
        if self.interrupting == Some(former) {
            // A probe's SIGSTOP still pending goes with the thread, which now has the leader's tid.
            self.interrupting = Some(leader);
        }
        for p in [leader, former] {
            self.bouncing.remove(&p);
            self.exits.remove(&p);
            self.chain.remove(&p);
            self.copier.forget(p);
        }
        if let Some(n) = self.silent.remove(&former) {
            self.silent.insert(leader, n);
        }
        task.vtid = task.proc;
        let TState::InKernel(p) = std::mem::replace(&mut task.state, TState::Holding) else {
            return Err(SessionError::Trace(ft_interposer::TraceError::Unexpected {
                pid: leader,
                what: format!("an exec stop of task {from}, which was not in a syscall"),
            }));
        };
        debug!(self.log, "execve from a thread"; "task" => from, "becomes" => task.vtid, "tid" => former.as_raw(), "leader" => leader.as_raw());
        self.tasks.insert(leader, task);
        self.on_exec(s, p, from)
    }

    fn on_death(&mut self, pid: Pid, mut exit: Exit) -> Result<()> {
        let Some(task) = self.tasks.remove(&pid) else { return Ok(()) };
        self.copier.forget(pid);
        if self.interrupting == Some(pid) {
            self.interrupting = None;
        }
        if self.holder == Some(pid) {
            self.holder = None;
        }
        self.ready.retain(|p| *p != pid);
        self.exits.remove(&pid);
        self.chain.remove(&pid);
        self.restart_of.remove(&pid);
        self.bouncing.remove(&pid);
        self.silent.remove(&pid);
        if let Some(sigs) = self.held.remove(&pid).filter(|v| !v.is_empty()) {
            // Caught signals held for this task until its next syscall, which never came: the
            // kernel chose it for a process-directed signal (SIGINT from a terminal, kill(pid))
            // just before it ended. Send them to the process again so that a thread that lives
            // on takes them, as the kernel would have. (A thread-directed signal to an ending
            // thread is lost natively; it is rerouted too, and the log records where it went.)
            let leader = self.tasks.iter().find(|(_, t)| t.vtid == task.proc).map(|(p, _)| *p);
            let tgid = leader.or((task.vtid == task.proc).then_some(pid));
            if let Some(tgid) = tgid {
                for h in sigs {
                    let _ = send_signal(tgid, h.sig);
                }
            }
        }
        if exit.signal == libc::SIGSYS {
            warn!(self.log, "the program was killed by SIGSYS: it made a syscall of another architecture (32-bit int 0x80 or x32), which the filter refuses");
        }
        exit.task = task.vtid;
        if task.vtid == task.proc {
            self.quiet_ended(pid, &exit);
        }
        if task.vtid == 0 {
            self.status0 = Some(exit.status());
        }
        self.emit(Kind::Exit(exit))
    }

    fn on_holder_stop(&mut self, s: Stopped) -> Result<()> {
        let pid = s.pid();
        if self.interrupting == Some(pid) {
            match s.stop {
                Stop::Signal(Sig::SIGSTOP) => {
                    self.interrupting = None;
                    return self.on_interrupt(s);
                }
                Stop::Seccomp => return Ok(let_interrupt_in(s)?),
                // The SIGSTOP comes at the next return to user code.
                _ => {}
            }
        }
        if matches!(s.stop, Stop::Seccomp | Stop::Signal(_)) {
            self.drain_clocks(&s)?;
        }
        let after = After { exit: self.exits.remove(&pid), chain: self.chain.remove(&pid) };
        match s.stop {
            Stop::Seccomp => self.on_syscall(s),
            Stop::Signal(sig) => self.on_signal(s, sig, after).map(drop),
            Stop::SyscallExit | Stop::Exec | Stop::NewTask(_) | Stop::Event(_) => {
                s.cont(None)?;
                Ok(())
            }
        }
    }

    /// A stop of a task inside a syscall: its exit, or an event the syscall raised.
    fn on_kernel_stop(&mut self, s: Stopped, p: Pending) -> Result<()> {
        let pid = s.pid();
        match s.stop {
            Stop::SyscallExit => {
                self.after_blocking(&s, &p)?;
                self.complete(&s, &p)?;
                self.exits.insert(pid, ExitPoint { regs: s.regs()?, silent: 0, events: self.events });
                self.make_ready(s);
            }
            Stop::NewTask(child) => {
                let (vtid, proc) = (self.vtid(pid), self.tasks.get(&pid).map(|t| t.proc).unwrap_or(0));
                let thread = is_thread_clone(&s, p.spec, &p.args);
                let child_vtid = self.next_vtid;
                self.next_vtid += 1;
                let child_proc = if thread { proc } else { child_vtid };
                // A new task with a number a quiet child had: that one was reaped.
                self.quiet.remove(&child);
                if !thread {
                    let table = self.fds.get(&proc).cloned().unwrap_or_default();
                    self.fds.insert(child_vtid, table);
                    self.clocks.fork(proc, child_vtid);
                }
                self.emit(Kind::Spawn(Spawn { parent: vtid, child: child_vtid, thread }))?;
                self.tasks.insert(child, Task { vtid: child_vtid, proc: child_proc, state: TState::Starting });
                if let Some(first) = self.early.remove(&child) {
                    self.make_ready(first);
                }
                s.cont_to_exit()?;
                self.set_state(pid, TState::InKernel(p));
            }
            Stop::Exec => {
                let task = self.vtid(pid);
                return self.on_exec(s, p, task);
            }
            Stop::Signal(sig) => {
                let task = self.vtid(pid);
                if let Some(held) = self.take_bouncing(pid, sig) {
                    // Handed over by a replay that sent it (see `Adopted::pending`).
                    if let Some(info) = held.info {
                        s.set_siginfo(&info)?;
                    }
                    s.cont(Some(sig))?;
                    self.set_state(pid, TState::InKernel(p));
                    return Ok(());
                }
                match disposition(pid, sig) {
                    Disposition_::NoEffect => s.cont(None)?,
                    Disposition_::Caught => {
                        let held = Held { sig, info: self.incoming_info(&s, sig) };
                        self.held.entry(pid).or_default().push(held);
                        s.cont(None)?
                    }
                    Disposition_::Default => {
                        self.emit(Kind::Signal(Signal {
                            signo: sig.raw(),
                            synchronous: false,
                            task,
                            at_syscall: false,
                            ..Default::default()
                        }))?;
                        s.cont(Some(sig))?
                    }
                };
                self.set_state(pid, TState::InKernel(p));
            }
            Stop::Seccomp | Stop::Event(_) => {
                s.cont_to_exit()?;
                self.set_state(pid, TState::InKernel(p));
            }
        }
        Ok(())
    }

    /// The exec stop of `task`'s execve (now running as the task at `s`): log the new image.
    fn on_exec(&mut self, s: Stopped, p: Pending, task: u32) -> Result<()> {
        let pid = s.pid();
        // execve gives a child SIGCHLD as its exit signal: the kernel tells its parent now.
        self.quiet.remove(&pid);
        let a = ft_interposer::launch::after_exec(&s, None, Vdso::TryClockPage)?;
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        let exe_hash = program::hash_file(&exe)?;
        // The process of the task now at `pid` (after an execve from a thread, the leader's tid
        // and task number; `task` is the thread that called execve).
        let proc = self.tasks.get(&pid).map(|t| t.proc).unwrap_or(task);
        self.clocks.exec(proc, a.clock_page);
        self.emit(Kind::Exec(ExecEvent {
            task,
            exe_path: exe.into_os_string().into_vec(),
            exe_hash,
            at_random: a.at_random.to_vec(),
            sp: a.sp,
            clock_page: a.clock_page,
        }))?;
        s.cont_to_exit()?;
        self.set_state(pid, TState::InKernel(p));
        Ok(())
    }

    fn warn_once(&mut self, nr: u64, msg: String) {
        if self.warned.insert(nr) {
            warn!(self.log, "{}", msg);
        }
    }

    /// Whether the path argument of `spec` resolves into the data directory.
    fn path_local(&self, t: &Stopped, spec: &Spec, args: &[u64; 6]) -> Result<bool> {
        let (Some(dir), Some((dirfd, arg))) = (&self.data_dir, spec.path) else {
            return Ok(false);
        };
        let raw = match t.read_cstr(args[arg as usize], 4096) {
            Ok(p) => p,
            Err(e) if e.is_gone() => return Err(e.into()),
            Err(_) => return Ok(false),
        };
        let path = Path::new(std::ffi::OsStr::from_bytes(&raw));
        let base = path_base(t.pid(), dirfd.map(|i| args[i as usize] as i32), path);
        Ok(base.map(|b| policy::inside(&b, path, dir)).unwrap_or(false))
    }

    fn on_syscall(&mut self, t: Stopped) -> Result<()> {
        let pid = t.pid();
        let proc = self.tasks.get(&pid).map(|t| t.proc).unwrap_or(0);
        // The first syscalls after an exec map the clock page (replay does the same here).
        let t = match self.clocks.install_step(t, proc, ft_libos::clock::MODE_RECORD)? {
            Ok(_) => return Ok(()),
            Err(t) => t,
        };
        let t = match self.deferred_real.remove(&proc) {
            Some(d) => crate::live::make_real(
                t,
                &d.sockets,
                &d.files,
                &d.work,
                &self.eventfds,
                &mut self.made_real,
                &self.log,
            )?,
            None => t,
        };
        let mut regs = t.regs()?;
        let nr = regs.nr();
        let group = self.take_deliverable(&t, nr)?;
        if !group.is_empty() {
            // Deliver the held signals here: skip the syscall, rewind to it, let them all in at
            // once (the kernel orders and nests them as natively); the syscall runs again after
            // the handlers.
            let task = self.vtid(pid);
            for (i, held) in group.iter().enumerate() {
                let siginfo = held.info.as_ref().map(siginfo_to_bytes).unwrap_or_default();
                self.emit(Kind::Signal(Signal {
                    signo: held.sig.raw(),
                    task,
                    at_syscall: true,
                    grouped: i > 0,
                    siginfo,
                    ..Default::default()
                }))?;
            }
            let sigs: Vec<Sig> = group.iter().map(|h| h.sig).collect();
            bounce(&t, &mut regs, &sigs)?;
            self.bouncing.entry(pid).or_default().extend(group);
            self.silent.insert(pid, 0);
            t.cont(None)?;
            return Ok(());
        }
        let Some(spec) = lookup(nr) else {
            *self.silent.entry(pid).or_default() += 1;
            self.warn_once(nr, format!("unknown syscall {} refused with ENOSYS", nr as i64));
            regs.skip_with(-i64::from(libc::ENOSYS));
            t.set_regs(&regs)?;
            t.cont(None)?;
            return Ok(());
        };
        let args = regs.args();
        let path_local = self.path_local(&t, spec, &args)?;
        let action = policy::decide(spec, &args, self.fds_of(pid), path_local);
        // Lazy: slog builds key-values before filtering, and this runs at every stop.
        debug!(self.log, "syscall"; "task" => self.vtid(pid), "call" => slog::FnValue(|_| describe::call(spec, &args)), "action" => slog::FnValue(|_| format!("{action:?}")));
        let silent = {
            let n = self.silent.entry(pid).or_default();
            *n = if policy::logs_nothing(action) { *n + 1 } else { 0 };
            *n
        };
        if spec.fds.closes != Closes::None {
            self.before_close(&t, spec, &args)?;
        }
        if let Exec::Copy(op) = spec.exec {
            if matches!(action, Action::Record { .. } | Action::Output { stdio: None })
                && self.on_copy(&t, &mut regs, spec, &args, op)?
            {
                t.cont(None)?;
                return Ok(());
            }
        }
        match action {
            // Runs in the kernel and returns without an exit stop.
            Action::Pass => {
                self.exits.insert(pid, ExitPoint { regs, silent, events: self.events });
                let waiting = signal_waiting(&t)?;
                t.cont(None)?;
                if waiting {
                    self.wait_own_stop(pid)?;
                }
                return Ok(());
            }
            Action::Emulate(e) => emulate(&t, &mut regs, e)?,
            Action::Refuse(Refusal::Errno(errno, why)) => {
                self.warn_once(nr, format!("{} refused with {}: {why}", spec.name, nix::Error::from_raw(errno)));
                regs.skip_with(-i64::from(errno));
                t.set_regs(&regs)?;
            }
            Action::Refuse(Refusal::Unsupported(why)) => {
                return Err(SessionError::Unsupported {
                    what: format!("the program called {}", describe::call(spec, &args)),
                    why: why.into(),
                })
            }
            Action::Record { exec: Exec::Tracer } if tracer_can_run(spec, &args) => {
                return self.in_tracer(t, regs, spec, args).map(drop)
            }
            Action::Execute | Action::Output { stdio: Some(_) } => {
                // Replicated state, or ftexec's own stdout/stderr (whose byte order must be the
                // log's): done while holding the token.
                if matches!(action, Action::Output { .. }) {
                    self.sink.before_output()?;
                }
                let p = Pending { spec, args, input: capture::input(&t, spec.input, &args)?, action };
                t.cont_to_exit()?;
                return match wait_for(Some(pid))? {
                    (_, Waited::Stopped(s)) if s.stop == Stop::SyscallExit => {
                        self.complete(&s, &p)?;
                        self.exits.insert(pid, ExitPoint { regs: s.regs()?, silent: 0, events: self.events });
                        let waiting = signal_waiting(&s)?;
                        s.cont(None)?;
                        if waiting {
                            self.wait_own_stop(pid)?;
                        }
                        Ok(())
                    }
                    (_, Waited::Stopped(s)) => Err(SessionError::Trace(ft_interposer::TraceError::Unexpected {
                        pid,
                        what: format!("{:?} instead of the exit of {}", s.stop, spec.name),
                    })),
                    (_, Waited::Exited(code)) => self.on_death(pid, Exit { code, signal: 0, task: 0 }),
                    (_, Waited::Killed(sig)) => self.on_death(pid, Exit { code: 0, signal: sig.raw(), task: 0 }),
                };
            }
            _ => {
                // Runs in the kernel, may block on another task: the token is free meanwhile.
                let input = capture::input(&t, spec.input, &args)?;
                self.before_blocking(&t, spec, &args)?;
                if matches!(action, Action::Output { .. }) {
                    // Replies queued for this socket go first (shutdown, sendmsg, a write the
                    // tracer could not take); other fds do not wait for them.
                    let stream_fd = (spec.follow.stream != Stream::None).then_some(args[0]);
                    let fd = spec.fd.map(|i| args[i as usize]).or(stream_fd);
                    if let Some(k) = fd.and_then(|fd| self.queued_socket(pid, fd)) {
                        self.drain_outputs(Some(k))?;
                    }
                    self.sink.before_output()?;
                }
                t.cont_to_exit()?;
                self.set_state(pid, TState::InKernel(Pending { spec, args, input, action }));
                self.holder = None;
                return Ok(());
            }
        }
        t.cont(None)?;
        Ok(())
    }

    /// Runs a pure syscall in the tracer with its own buffers, copies the results into the
    /// tracee and skips the tracee's syscall: one stop.
    fn in_tracer(&mut self, t: Stopped, mut regs: Regs, spec: &Spec, args: [u64; 6]) -> Result<Running> {
        let mut a = args;
        let mut bufs: Vec<(usize, Vec<u8>, bool)> = Vec::new();
        for w in spec.writes {
            let p = w.ptr as usize;
            if args[p] == 0 {
                continue;
            }
            let Some((cap, by_ret)) = tracer_buffer(w.len, &args) else { continue };
            bufs.push((p, vec![0u8; cap as usize], by_ret));
        }
        for (p, buf, _) in bufs.iter_mut() {
            a[*p] = buf.as_mut_ptr() as u64;
        }
        // SAFETY: the table marks only pure syscalls (time, random, uname, ids) as Tracer; every
        // pointer argument now points to a buffer of the size the table declares.
        let r = unsafe { libc::syscall(spec.nr as libc::c_long, a[0], a[1], a[2], a[3], a[4], a[5]) };
        let mut ret = if r == -1 { -i64::from(nix::errno::Errno::last_raw()) } else { r as i64 };
        let mut mem = Vec::with_capacity(bufs.len());
        for (p, mut buf, by_ret) in bufs {
            if by_ret {
                buf.truncate(ret.max(0) as usize);
            }
            match t.write(args[p], &buf) {
                Ok(()) => mem.push(MemWrite { addr: args[p], data: buf }),
                Err(e) if e.is_gone() => return Err(e.into()),
                Err(_) => ret = -i64::from(libc::EFAULT),
            }
        }
        regs.skip_with(ret);
        t.set_regs(&regs)?;
        let task = self.vtid(t.pid());
        self.emit(Kind::Syscall(Syscall {
            nr: spec.nr,
            args: args.to_vec(),
            ret,
            disposition: Disposition::Inject as i32,
            mem,
            task,
            ..Default::default()
        }))?;
        Ok(t.cont(None)?)
    }

    /// Runs the syscall in the tracee to its exit stop and logs what the action calls for.
    /// Logs a syscall that ran in the tracee, at its exit stop.
    fn complete(&mut self, t: &Stopped, p: &Pending) -> Result<()> {
        let (spec, args, action, input) = (p.spec, p.args, p.action, &p.input);
        let task = self.vtid(t.pid());
        let ret = t.regs()?.ret();
        let mut ev = Syscall {
            nr: spec.nr,
            args: args.to_vec(),
            input_digest: if input.is_empty() { Vec::new() } else { digest::short(input) },
            ret,
            path_arg: match spec.input {
                ft_libos::table::Input::Path(_) | ft_libos::table::Input::Paths(..) => input.clone(),
                _ => Vec::new(),
            },
            task,
            ..Default::default()
        };
        let restarted = match self.restart_of.get(&t.pid()) {
            Some(&(orig, orig_args)) if spec.special == Special::RestartSyscall => Some((orig, orig_args)),
            _ => None,
        };
        if ret != ft_libos::signal::ERESTART_RESTARTBLOCK {
            self.restart_of.remove(&t.pid());
        } else if restarted.is_none() {
            self.restart_of.insert(t.pid(), (spec, args));
        }
        let regions = match restarted {
            Some((orig, orig_args)) => capture::regions(t, orig.writes, &orig_args, ret)?,
            None => capture::regions(t, spec.writes, &args, ret)?,
        };
        let extra = fcntl_writes(spec, &args);
        let regions =
            if extra.is_empty() { regions } else { [regions, capture::regions(t, extra, &args, ret)?].concat() };
        let mut fresh = FdKind::External;
        let mut disposition = match action {
            Action::Execute => {
                ev.out_digest = capture::digest_writes(&capture::read_regions(t, &regions)?);
                if spec.path.is_some() || spec.fds.creates != NewFdEffect::None {
                    fresh = if spec.fds.object == Object::Memfd { FdKind::Private } else { FdKind::Data };
                }
                Disposition::Execute
            }
            Action::ExecuteInject => Disposition::ExecuteInject,
            Action::Clone if ret >= 0 => Disposition::ExecuteInject,
            Action::Exec if ret >= 0 => Disposition::Execute,
            Action::AnonMap if ret >= 0 => {
                ev.mem = self.capture_mapping(t, &args, ret)?;
                Disposition::AnonMap
            }
            Action::Output { stdio } => {
                if let Some(fd) = stdio {
                    ev.stdio_fd = fd;
                    ev.stdio = input[..(ret.max(0) as usize).min(input.len())].to_vec();
                }
                Disposition::Inject
            }
            _ => {
                ev.mem = capture::read_regions(t, &regions)?;
                Disposition::Inject
            }
        };
        let pid = t.pid();
        if policy::creates_fds(spec, &args) && ret >= 0 {
            let pair = match spec.fds.creates {
                NewFdEffect::Pair(p) => {
                    let b = t.read(args[p as usize], 8)?;
                    Some([i32::from_le_bytes([b[0], b[1], b[2], b[3]]), i32::from_le_bytes([b[4], b[5], b[6], b[7]])])
                }
                _ => None,
            };
            if disposition == Disposition::Inject && spec.path.is_some() {
                // An opened file outside the data directory: executables and libraries are
                // verified by hash and opened for real at replay; anything else is recorded.
                if let Some((path, hash)) = self.verified_file(t, ret as i32, &args, spec)? {
                    fresh = FdKind::Verified;
                    ev.path = path;
                    ev.file_hash = hash;
                    disposition = Disposition::Execute;
                }
            }
            let created = policy::new_fds(spec, &args, ret, pair, self.fds_of(pid), fresh);
            if disposition == Disposition::Inject && created.iter().any(|(_, k)| *k == FdKind::External) {
                disposition = Disposition::Placeholder;
            }
            for (fd, kind) in created {
                self.fds_of(pid).set(fd, kind);
                let cloexec = ft_interposer::procfs::fd_flags(pid.as_raw(), fd) & libc::O_CLOEXEC != 0;
                ev.new_fds.push(NewFd { fd, kind: kind as i32, cloexec });
            }
        }
        ev.disposition = disposition as i32;
        if matches!(action, Action::Output { .. }) {
            self.events += 1;
            return self.sink.append_output(&Event { kind: Some(Kind::Syscall(ev)) });
        }
        self.emit(Kind::Syscall(ev))
    }

    /// If fd `fd` (just opened) is a read-only regular ELF file, its path and blake3.
    fn verified_file(
        &mut self,
        t: &Stopped,
        fd: i32,
        args: &[u64; 6],
        spec: &Spec,
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if spec.fds.object != Object::File {
            return Ok(None);
        }
        let read_word = |addr: u64| t.read(addr, 8).ok().and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
        let Some(flags) = spec.fds.open_flags(args, read_word) else { return Ok(None) };
        let proc_path = format!("/proc/{}/fd/{fd}", t.pid());
        let Ok(md) = std::fs::metadata(&proc_path) else {
            return Ok(None);
        };
        let mut magic = [0u8; 4];
        let elf = std::fs::File::open(&proc_path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .map(|()| &magic == b"\x7fELF")
            .unwrap_or(false);
        let read_only = flags & libc::O_ACCMODE == libc::O_RDONLY;
        if policy::opened_file_kind(false, md.is_file(), read_only, elf) != FdKind::Verified {
            return Ok(None);
        }
        let key = (md.dev(), md.ino(), md.size(), md.mtime_nsec() + md.mtime() * 1_000_000_000);
        let hash = match self.hashes.get(&key) {
            Some(h) => h.clone(),
            None => {
                let h = program::hash_file(Path::new(&proc_path))?;
                self.hashes.insert(key, h.clone());
                h
            }
        };
        let path = std::fs::read_link(&proc_path).map(|p| p.into_os_string().into_vec()).unwrap_or_default();
        Ok(Some((path, hash)))
    }

    /// The bytes of a private file mapping just made at `addr` (up to the end of the file).
    fn capture_mapping(&self, t: &Stopped, args: &[u64; 6], addr: i64) -> Result<Vec<MemWrite>> {
        let fd = args[4] as i32;
        let size = std::fs::metadata(format!("/proc/{}/fd/{fd}", t.pid())).map(|m| m.len()).unwrap_or(0);
        let len = args[1].min(size.saturating_sub(args[5]));
        if len == 0 {
            return Ok(Vec::new());
        }
        let data = t.read_forced(addr as u64, len as usize)?;
        Ok(vec![MemWrite { addr: addr as u64, data }])
    }

    /// The signals held for this task that it does not block now (syscall `nr` is about to
    /// run), in the order the kernel dequeued them. A blocked one stays held: re-sent now, it
    /// would wait in the kernel, and a syscall that only runs at record (rt_sigtimedwait, a
    /// signalfd read) could take it there. Before a syscall that waits with a temporary mask,
    /// if every held signal is blocked, the first one goes to the kernel all the same: the
    /// syscall may unblock it, as it would natively.
    fn take_deliverable(&mut self, t: &Stopped, nr: u64) -> Result<Vec<Held>> {
        let Some(held) = self.held.get_mut(&t.pid()).filter(|v| !v.is_empty()) else { return Ok(Vec::new()) };
        let blocked = t.sigmask()?;
        let (free, still): (Vec<Held>, Vec<Held>) =
            std::mem::take(held).into_iter().partition(|h| blocked & h.sig.mask_bit() == 0);
        *held = still;
        if free.is_empty() && lookup(nr).is_some_and(|s| s.signals.mask.is_some()) {
            return Ok(vec![held.remove(0)]);
        }
        Ok(free)
    }

    /// Whether this signal stop is at the exit of the syscall the task was resumed from (`exit`:
    /// its registers then), before the task ran user code: the same registers, rax aside (the
    /// result), and a syscall number (an interrupt or fault in user code leaves orig_rax -1).
    /// Or the kernel delivering another signal right after `chain` in the same pass: the
    /// registers are that signal's fresh frame. Returns the registers at the stop.
    /// Only if nothing was logged since the task was resumed: replay delivers it right after the
    /// task's syscall (or previous signal), so no other event may come between.
    fn delivery_point(&self, t: &Stopped, after: &After) -> Result<Option<Point>> {
        let exit = after.exit.as_ref().filter(|e| e.events == self.events);
        let chain = after.chain.filter(|(_, events)| *events == self.events);
        if exit.is_none() && chain.is_none() {
            return Ok(None);
        }
        let now = t.regs()?;
        if let Some(e) = exit {
            let mut same = e.regs.0;
            same.rax = now.0.rax;
            if (now.0.orig_rax as i64) >= 0 && regs_equal(&same, &now.0) {
                return Ok(Some(Point { regs: now, chained: false, silent: e.silent }));
            }
        }
        if let Some((prev, _)) = chain {
            if is_fresh_frame(t, &now, prev) {
                return Ok(Some(Point { regs: now, chained: true, silent: 0 }));
            }
        }
        Ok(None)
    }

    /// Lets the signal of this delivery stop in. If more signals wait, the kernel may deliver
    /// the next one at once, on this one's frame: that stop is handled before any other.
    fn deliver(&mut self, t: Stopped, sig: Sig) -> Result<Running> {
        let pid = t.pid();
        self.chain.insert(pid, (sig, self.events));
        let more = signal_waiting(&t)?;
        let running = t.cont(Some(sig))?;
        if more {
            self.wait_own_stop(pid)?;
        }
        Ok(running)
    }

    /// The first signal `sig` re-sent to `pid` and not delivered yet, if any.
    fn take_bouncing(&mut self, pid: Pid, sig: Sig) -> Option<Held> {
        let v = self.bouncing.get_mut(&pid)?;
        let i = v.iter().position(|h| h.sig == sig)?;
        Some(v.remove(i))
    }

    fn on_signal(&mut self, t: Stopped, sig: Sig, after: After) -> Result<Running> {
        let task = self.vtid(t.pid());
        if sig == Sig::SIGSEGV {
            let mut regs = t.regs()?;
            let ip = regs.ip();
            if let Some(insn) = tsc::decode(&t, ip)? {
                let (tsc, aux) = tsc::now(insn);
                tsc::complete(&mut regs, insn, tsc, aux);
                t.set_regs(&regs)?;
                self.emit(Kind::Rdtsc(Rdtsc { tsc, aux, rdtscp: insn == tsc::TscInsn::Rdtscp, ip, task }))?;
                return Ok(t.cont(None)?);
            }
        }
        let pid = t.pid();
        let synchronous = is_synchronous(&t, sig);
        let point = if synchronous { None } else { self.delivery_point(&t, &after)? };
        let bounced = self.take_bouncing(pid, sig);
        if let Some(held) = bounced {
            // A held signal re-sent at a syscall: replay sent it at the same point and the
            // kernel delivers it at the same point, unless a syscall that only runs at record
            // (sigsuspend) unblocked it: a delivery at a syscall's exit is logged for replay to
            // find that point.
            if let Some(p) = point.filter(|p| !p.chained) {
                self.emit(Kind::Signal(at_exit(sig, task, &p, held.info.as_ref())))?;
            }
            if let Some(info) = held.info {
                t.set_siginfo(&info)?;
            }
            return self.deliver(t, sig);
        }
        // A fault recurs at replay by itself; a default action (death, stop) is logged where it
        // happened. Both are delivered now. A caught asynchronous signal is delivered here if
        // this is the exit of a syscall (raised by it, or interrupting it), which replay finds
        // again; otherwise it waits for a syscall.
        match if synchronous { Disposition_::Default } else { disposition(pid, sig) } {
            Disposition_::NoEffect => {
                // Suppressed: the kernel goes on from the same point.
                if let Some(e) = after.exit {
                    self.exits.insert(pid, e);
                }
                if let Some(c) = after.chain {
                    self.chain.insert(pid, c);
                }
                Ok(t.cont(None)?)
            }
            Disposition_::Caught => match point {
                Some(p) => {
                    let info = self.incoming_info(&t, sig);
                    self.emit(Kind::Signal(at_exit(sig, task, &p, info.as_ref())))?;
                    self.deliver(t, sig)
                }
                None => {
                    let held = Held { sig, info: self.incoming_info(&t, sig) };
                    self.held.entry(pid).or_default().push(held);
                    Ok(t.cont(None)?)
                }
            },
            Disposition_::Default => {
                let ev = match point {
                    Some(p) => at_exit(sig, task, &p, None),
                    None => Signal { signo: sig.raw(), synchronous, task, ..Default::default() },
                };
                self.emit(Kind::Signal(ev))?;
                Ok(t.cont(Some(sig))?)
            }
        }
    }
}

/// What a task's previous stop leaves for its next one (see [`Recorder::delivery_point`]).
struct After {
    exit: Option<ExitPoint>,
    chain: Option<(Sig, u64)>,
}

/// A task resumed from a syscall that returns to it: its registers then, which exit it is (see
/// `Signal.silent`), and the number of events logged when it resumed.
#[derive(Clone, Copy)]
struct ExitPoint {
    regs: Regs,
    silent: u32,
    events: u64,
}

/// Whether a signal is pending for the stopped thread (its own or its process's) that its mask
/// lets in: resumed, it stops for the delivery before running any code. (Its mask from
/// /proc: PTRACE_GETSIGMASK shows the mask a wait such as sigsuspend restores, not its own.)
fn signal_waiting(t: &Stopped) -> ft_interposer::Result<bool> {
    if !t.has_pending_signal()? {
        return Ok(false);
    }
    let mask = status_masks(t.pid());
    Ok((mask("SigPnd:") | mask("ShdPnd:")) & !mask("SigBlk:") != 0)
}

/// The signal masks of /proc/TID/status by field name ("SigBlk:", "SigCgt:", …); 0 if absent.
fn status_masks(pid: Pid) -> impl Fn(&str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    move |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    }
}

/// A delivery stop at a syscall's exit: the registers there, whether the kernel delivered
/// another signal just before in the same pass, and which exit (see `Signal.silent`).
struct Point {
    regs: Regs,
    chained: bool,
    silent: u32,
}

/// The event of a signal delivered at a syscall's exit (or right after another one there).
fn at_exit(sig: Sig, task: u32, p: &Point, info: Option<&libc::siginfo_t>) -> Signal {
    Signal {
        signo: sig.raw(),
        task,
        at_exit: true,
        grouped: p.chained,
        silent: p.silent,
        orig_rax: p.regs.0.orig_rax as i64,
        rax: p.regs.0.rax as i64,
        siginfo: info.map(siginfo_to_bytes).unwrap_or_default(),
        ..Default::default()
    }
}

fn regs_equal(a: &libc::user_regs_struct, b: &libc::user_regs_struct) -> bool {
    let key = |r: &libc::user_regs_struct| {
        [
            r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx, r.rdx, r.rsi, r.rdi,
            r.orig_rax, r.rip, r.cs, r.eflags, r.rsp, r.ss, r.fs_base, r.gs_base, r.ds, r.es, r.fs, r.gs,
        ]
    };
    key(a) == key(b)
}

/// Offsets in the x86-64 rt_sigframe the kernel builds for a handler: the return address at
/// rsp, the ucontext after it, the siginfo after the ucontext (304 bytes).
const FRAME_UC: u64 = 8;
const FRAME_INFO: u64 = 8 + 304;
/// Offset of the saved rsp in the ucontext (uc_flags, uc_link, uc_stack, then the sigcontext's
/// r8..r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp).
const UC_RSP: u64 = 8 + 8 + 24 + 15 * 8;

/// Whether the task stands at the first instruction of the handler the kernel just set up for
/// `prev`: the registers the kernel gives a handler (signal number, siginfo and ucontext
/// pointers into the frame at rsp, rax 0) and a saved context below the frame.
fn is_fresh_frame(t: &Stopped, regs: &Regs, prev: Sig) -> bool {
    let r = &regs.0;
    if r.rdi != prev.raw() as u64 || r.rax != 0 || r.rdx != r.rsp.wrapping_add(FRAME_UC) {
        return false;
    }
    if r.rsi != r.rsp.wrapping_add(FRAME_INFO) {
        return false;
    }
    let saved_rsp = t.read(r.rdx + UC_RSP, 8).ok().and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    saved_rsp.is_some_and(|sp| sp > r.rsp)
}

/// A caught signal taken from the kernel at its delivery stop, to deliver again at a syscall.
pub(crate) struct Held {
    pub sig: Sig,
    /// Its siginfo, given back at the delivery stop of the re-sent signal.
    pub info: Option<libc::siginfo_t>,
}

/// Whether delivering `sig` to `pid` would do nothing (ignored, or ignored by default).
pub(crate) fn has_no_effect(pid: Pid, sig: Sig) -> bool {
    matches!(disposition(pid, sig), Disposition_::NoEffect)
}

/// What delivering an asynchronous signal would do.
enum Disposition_ {
    /// Ignored, or ignored by default (SIGCHLD, SIGWINCH, SIGURG, SIGCONT): nothing.
    NoEffect,
    /// A handler runs: its position matters, so it is delivered at a syscall boundary.
    Caught,
    /// The default action (terminate, core dump, stop): delivered at once.
    Default,
}

/// Reads the signal's disposition from /proc/TID/status (SigIgn, SigCgt).
fn disposition(pid: Pid, sig: Sig) -> Disposition_ {
    let mask = status_masks(pid);
    let bit = sig.mask_bit();
    if mask("SigCgt:") & bit != 0 {
        Disposition_::Caught
    } else if mask("SigIgn:") & bit != 0 || matches!(sig, Sig::SIGCHLD | Sig::SIGWINCH | Sig::SIGURG | Sig::SIGCONT) {
        Disposition_::NoEffect
    } else {
        Disposition_::Default
    }
}

/// Delivers `sigs` at a syscall-entry stop: the syscall is skipped and the task rewound to it,
/// so it runs again once the signals are handled. They go to this thread alone, in this order,
/// all before it resumes: the kernel delivers them as it would natively (lowest number first,
/// one nesting into the handler of another that does not block it).
pub(crate) fn bounce(t: &Stopped, regs: &mut Regs, sigs: &[Sig]) -> Result<()> {
    let nr = regs.nr();
    regs.skip_with(nr as i64);
    regs.rewind();
    t.set_regs(regs)?;
    for &sig in sigs {
        let _ = send_signal_to_thread(t.pid(), sig);
    }
    Ok(())
}

/// A seccomp stop of a task with a probe's SIGSTOP pending: that signal would interrupt the
/// syscall (a blocking one returns -ERESTARTSYS and runs again, adding a stop replay does not
/// see). The syscall is skipped and the task rewound to it, so the SIGSTOP is taken first and
/// the syscall then stops again as if for the first time.
pub(crate) fn let_interrupt_in(t: Stopped) -> ft_interposer::Result<()> {
    let mut regs = t.regs()?;
    let nr = regs.nr();
    regs.skip_with(nr as i64);
    regs.rewind();
    t.set_regs(&regs)?;
    t.cont(None)?;
    Ok(())
}

/// Whether a clone creates a thread (CLONE_THREAD) rather than a process. clone3 keeps its
/// flags in struct clone_args, whose first field they are.
fn is_thread_clone(t: &Stopped, spec: &Spec, args: &[u64; 6]) -> bool {
    let flags = match spec.task.clone {
        CloneKind::Clone => args[0],
        CloneKind::Clone3 => {
            t.read(args[0], 8).ok().and_then(|b| b.try_into().ok()).map(u64::from_le_bytes).unwrap_or(0)
        }
        CloneKind::Fork | CloneKind::Vfork | CloneKind::None => 0,
    };
    flags & libc::CLONE_THREAD as u64 != 0
}

/// Whether a Tracer syscall can really run in the tracer (its buffers are of a sane size).
pub(crate) fn tracer_can_run(spec: &Spec, args: &[u64; 6]) -> bool {
    spec.writes.iter().all(|w| tracer_buffer(w.len, args).is_some_and(|(cap, _)| cap <= MAX_TRACER_BUF))
}

/// The buffer the tracer uses for one write of a Tracer syscall: its capacity and whether the
/// return value says how much of it the kernel filled (getrandom: capacity from argument 1).
/// None for lengths a tracer buffer cannot express (the syscall then runs in the tracee).
fn tracer_buffer(len: Len, args: &[u64; 6]) -> Option<(u64, bool)> {
    match len {
        Len::Fixed(n) => Some((u64::from(n), false)),
        Len::Ret => Some((args[1], true)),
        Len::Arg(i) => Some((args[i as usize], false)),
        _ => None,
    }
}

/// fcntl(F_GETLK) writes a struct flock the table cannot express per command.
pub(crate) fn fcntl_writes(spec: &Spec, args: &[u64; 6]) -> &'static [ft_libos::table::Write] {
    const FLOCK: &[ft_libos::table::Write] = &[ft_libos::table::Write { ptr: 2, len: Len::Fixed(32) }];
    if spec.special == ft_libos::table::Special::Fcntl && matches!(args[1] as i32, libc::F_GETLK | libc::F_OFD_GETLK) {
        FLOCK
    } else {
        &[]
    }
}

/// Answers an emulated syscall in the tracer.
pub(crate) fn emulate(t: &Stopped, regs: &mut Regs, e: Emulation) -> Result<()> {
    let args = regs.args();
    let ret = match e {
        Emulation::Errno(errno) => -i64::from(errno),
        Emulation::GetCpu => {
            for a in [args[0], args[1]] {
                if a != 0 {
                    t.write(a, &0u32.to_le_bytes())?;
                }
            }
            0
        }
    };
    regs.skip_with(ret);
    t.set_regs(regs)?;
    Ok(())
}

/// A fault raised by the tracee's own instruction (it recurs by itself at replay).
pub(crate) fn is_synchronous(t: &Stopped, sig: Sig) -> bool {
    matches!(sig, Sig::SIGSEGV | Sig::SIGBUS | Sig::SIGFPE | Sig::SIGILL | Sig::SIGTRAP | Sig::SIGSYS)
        && t.siginfo().map(|si| si.si_code > 0).unwrap_or(false)
}
