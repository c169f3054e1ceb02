//! The record session: run the program under the interposer and send every nondeterministic
//! result to an [`EventSink`] (a log file now, the Raft log later).

pub(crate) mod buffer;
mod output;
mod schedule;
mod signals;
mod syscall;
mod takeover;

pub(crate) use crate::handover::{AdoptedState, Handover, Quiet};
pub(crate) use crate::launch::launch_spec;
pub use crate::launch::{header, RecordOptions};
pub use crate::sink::EventSink;
pub use buffer::set_enabled as set_syscall_buffer;
use syscall::is_thread_clone;
pub(crate) use takeover::continue_live;

use crate::capture;
use crate::error::{Result, SessionError};
use crate::program;
use crate::release::{Drained, Releaser, SOCKET_QUEUE_LIMIT};
use crate::stop::{
    self, disposition, emulate, fcntl_writes, is_synchronous, signal_waiting, status_masks, tracer_buffer,
    tracer_can_run, Decided, Entry, Handling, Held, MAX_TRACER_BUF, PROBE_GAP,
};
use crate::{describe, Outcome};
use ft_interposer::clock::ClockPages;
use ft_interposer::fdcopy::{self, FdCopier};
use ft_interposer::spin::{self, Probe};
use ft_interposer::tracee::{send_signal, send_signal_to_thread, siginfo_to_bytes, wait_for};
use ft_interposer::{filter, launch, tsc, Regs, Running, Stop, Stopped, Vdso, Waited};
use ft_libos::digest;
use ft_libos::policy::{self, Action};
use ft_libos::proto::{
    event::Kind, Clocks, Disposition, Event, Exec as ExecEvent, Exit, FdKind, Header, MemWrite, NewFd, Patch, Preempt,
    Rdtsc, Run, Signal, Spawn, Start, Syscall,
};
use ft_libos::table::{
    Changes, CloneKind, Closes, CopyOp, Exec, NewFd as NewFdEffect, Object, Refusal, Spec, Special, Stream,
};
use ft_libos::{lookup, FdTable, Sig};
use nix::unistd::Pid;
use slog::{debug, info, warn, Logger};
use std::collections::VecDeque;
use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

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
    crate::launch::warn_inherited_fds(log);
    let launched = launch(&launch_spec(header, None, bind, Vdso::TryClockPage, None)?, &filter)?;
    info!(log, "recording"; "pid" => launched.tracee.pid().as_raw(), "exe" => String::from_utf8_lossy(&header.exe_path).into_owned());
    if let Some(why) = &launched.no_clock_page {
        warn!(log, "clock reads will be syscalls (slower): {}", why);
    }
    let (at_random, sp, clock_page) = (launched.at_random.to_vec(), launched.sp, launched.clock_page);
    let pid = launched.tracee.pid();
    let state = ft_interposer::procfs::proc_state(pid.as_raw()).ok();
    sink.append(&Event { kind: Some(Kind::Start(Start { at_random, sp, clock_page, state })) })?;
    crate::set_current_tracee(pid.as_raw());
    let mut rec = Recorder::new(sink, log, data_dir, 1);
    rec.note_private_shm(pid);
    if clock_page {
        rec.clocks.exec(0, true);
    }
    rec.tasks.insert(pid, Task { vtid: 0, proc: 0, state: TState::Ready(launched.tracee) });
    rec.ready.push_back(pid);
    rec.finish(pid)
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
    /// The program's own /dev/shm, when it has one (see `launch::PRIVATE_SHM`): files there are
    /// replicated state as the data directory's are.
    private_shm: Option<PathBuf>,
    warned: HashSet<u64>,
    events: u64,
    /// blake3 of verified files by (dev, ino, size, mtime).
    hashes: HashMap<(u64, u64, u64, i64), Vec<u8>>,
    /// When this recorder started (ns since the epoch): a file changed since is the program's
    /// own work, never verified by hash (see `verified_file`).
    started_ns: i128,
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
    interrupter: spin::Interrupter,
    /// Since when the holder has run without a stop other than probes (None: not probing).
    probing_since: Option<std::time::Instant>,
    /// How long the holder runs without a stop before the next probe (doubles while probes
    /// find it computing, up to PROBE_GAP_MAX).
    probe_gap: std::time::Duration,
    /// The next probe's budget of instructions (see `spin::MAX_STEPS`).
    probe_steps: u32,
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
    /// The task that released the token since the last event, if one did (see
    /// `Syscall::token_released`).
    released: Option<Pid>,
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
    /// The syscall buffer of each process (by the vtid of its leader).
    bufs: HashMap<u32, buffer::BufProc>,
    /// Each task's last seccomp stop's instruction pointer (where a task in the kernel returns).
    syscall_ip: HashMap<Pid, u64>,
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
    shadows: crate::live::Shadows,
    /// The program made a signalfd: its epoll instances are not polled by the tracer (see
    /// `on_copy`).
    signalfd_made: bool,
    /// Per (process, signal), the siginfo of the sigqueues a replay going live sent again.
    resent_info: HashMap<(u32, i32), VecDeque<libc::siginfo_t>>,
    /// Per process, the siginfo of the SIGCHLD sent by [`Recorder::quiet_ended`], given to its
    /// delivery stop in place of the kernel's (which names the tracer as the sender).
    chld_info: HashMap<u32, libc::siginfo_t>,
}

/// How long the token holder may run without a stop while others wait (see wait_watchdog).
const SPIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);
const PROBE_GAP_MAX: std::time::Duration = std::time::Duration::from_secs(1);
/// How long the holder may make buffered calls without a stop while others wait for the token
/// (a tenth of the first probe's gap), see wait_watchdog.
const PAUSE_AFTER: std::time::Duration = std::time::Duration::from_millis(1);

impl<'a> Recorder<'a> {
    fn new(sink: &'a mut dyn EventSink, log: &Logger, data_dir: Option<&Path>, events: u64) -> Self {
        Recorder {
            sink,
            log: log.clone(),
            fds: HashMap::from([(0, FdTable::new())]),
            data_dir: data_dir.map(Path::to_path_buf),
            private_shm: None,
            warned: HashSet::new(),
            events,
            hashes: HashMap::new(),
            started_ns: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i128),
            tasks: HashMap::new(),
            early: HashMap::new(),
            ready: VecDeque::new(),
            holder: None,
            last_run: 0,
            next_vtid: 1,
            status0: None,
            progress: std::time::Instant::now(),
            spinning: None,
            interrupter: spin::Interrupter::default(),
            probing_since: None,
            probe_gap: PROBE_GAP,
            probe_steps: spin::FIRST_STEPS,
            probed: false,
            held: HashMap::new(),
            bouncing: HashMap::new(),
            exits: HashMap::new(),
            silent: HashMap::new(),
            released: None,
            chain: HashMap::new(),
            restart_of: HashMap::new(),
            fresh: HashSet::new(),
            clocks: ClockPages::default(),
            copier: FdCopier::default(),
            releaser: None,
            one_stop: 0,
            scratch: Vec::new(),
            bufs: HashMap::new(),
            syscall_ip: HashMap::new(),
            quiet: HashMap::new(),
            adopted_restart: HashSet::new(),
            restore_args: HashSet::new(),
            first_args: HashMap::new(),
            deferred_real: HashMap::new(),
            made_real: crate::live::MadeReal::new(),
            shadows: crate::live::Shadows::default(),
            signalfd_made: false,
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
    fn emit(&mut self, kind: Kind) -> Result<()> {
        self.events += 1;
        self.released = None;
        self.sink.append(&Event { kind: Some(kind) })
    }

    /// Whether the program's /dev/shm is its own (then its files are replicated state).
    pub(crate) fn note_private_shm(&mut self, pid: Pid) {
        if ft_interposer::procfs::private_shm(pid.as_raw()) {
            self.private_shm = Some(PathBuf::from(ft_interposer::launch::PRIVATE_SHM.to_string_lossy().into_owned()));
        }
    }

    /// The holder `pid` no longer holds the token (it blocks in the kernel, is ready again or is
    /// gone).
    fn release(&mut self, pid: Pid) {
        if self.holder == Some(pid) {
            self.holder = None;
            self.released = Some(pid);
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

/// A delivery stop at a syscall's exit: the registers there, whether the kernel delivered
/// another signal just before in the same pass, and which exit (see `Signal.silent`).
struct Point {
    regs: Regs,
    chained: bool,
    silent: u32,
}

/// Offsets in the x86-64 rt_sigframe the kernel builds for a handler: the return address at
/// rsp, the ucontext after it, the siginfo after the ucontext (304 bytes).
const FRAME_UC: u64 = 8;
const FRAME_INFO: u64 = 8 + 304;
/// Offset of the saved rsp in the ucontext (uc_flags, uc_link, uc_stack, then the sigcontext's
/// r8..r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp).
const UC_RSP: u64 = 8 + 8 + 24 + 15 * 8;
