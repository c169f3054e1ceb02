//! The stop path both sides share: the prelude of every seccomp stop (the clock page's install
//! step, the signals delivered at the syscall, the table's lookup, the policy's decision and the
//! "silent" count, which must agree exactly between record and replay), and the answers both
//! sides give the same way (a group of held signals bounced at a syscall, an emulated result, a
//! syscall the tracer can run itself).

use crate::error::Result;
use ft_interposer::clock::ClockPages;
use ft_interposer::tracee::send_signal_to_thread;
use ft_interposer::{Regs, Stopped};
use ft_libos::policy::{self, Action};
use ft_libos::table::{Emulation, Len, Spec, Waits};
use ft_libos::{lookup, FdTable, Sig};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::hash::Hash;

/// One side of the stop path: what record and replay each do at the points where they differ.
pub(crate) trait Side {
    /// How the side names a task (record: its tid; replay: the recording's task number).
    type Task: Copy + Eq + Hash;
    /// The clock page's mode (ft_libos::clock::MODE_RECORD or MODE_REPLAY).
    const CLOCK_MODE: u32;
    /// The task's process (0 if unknown).
    fn proc_of(&self, task: Self::Task) -> u32;
    fn clock_pages(&mut self) -> &mut ClockPages;
    /// The side's own work before the signals: None when it answered the stop itself (record:
    /// fds made real once the program went live; replay: the clock stub's refill and the check
    /// that the program read every clock value the recording read).
    fn before_signals(&mut self, task: Self::Task, t: Stopped, regs: Regs) -> Result<Option<(Stopped, Regs)>>;
    /// The caught signals delivered at this syscall, in order (record: the held ones the task
    /// can take now, logged; replay: the ones the log delivered here, consumed).
    fn signals_here(&mut self, task: Self::Task, t: &Stopped, nr: u64) -> Result<Vec<Held>>;
    /// Keeps a bounced group until the kernel delivers it.
    fn keep_bouncing(&mut self, task: Self::Task, group: Vec<Held>);
    /// The syscall the task is at, before the lookup (replay keeps it for go-live).
    fn at_call(&mut self, _task: Self::Task, _regs: &Regs) {}
    /// Per task, the syscalls since its last logged one (the position of a signal at an exit).
    fn silent(&mut self) -> &mut HashMap<Self::Task, u32>;
    /// The fd table of the task's process.
    fn fds(&mut self, task: Self::Task) -> &FdTable;
    /// Whether a path-taking syscall's path is in the data directory (record only: replay
    /// follows the log).
    fn path_local(&self, _t: &Stopped, _spec: &Spec, _args: &[u64; 6]) -> Result<bool> {
        Ok(false)
    }
}

/// What the prelude of a seccomp stop leaves to the side.
pub(crate) enum Entry {
    /// Answered (an install step, a clock refill, a group of signals bounced): resumed already.
    Done,
    /// Not in the table: answered -ENOSYS in the registers; the side resumes the task.
    Unknown { t: Stopped, nr: u64 },
    /// A syscall of the table and the policy's decision.
    Call(Decided),
}

pub(crate) struct Decided {
    pub t: Stopped,
    pub regs: Regs,
    pub spec: &'static Spec,
    pub args: [u64; 6],
    pub action: Action,
    /// The task's silent count including this syscall.
    pub silent: u32,
}

/// The prelude of every seccomp stop, the same on both sides: the clock page's install step,
/// the side's own step, the signals delivered here (bounced: the syscall runs again after their
/// handlers), the table's lookup and the policy's decision, with the silent count kept here
/// alone so that the two sides cannot count differently.
pub(crate) fn prelude<S: Side>(side: &mut S, task: S::Task, t: Stopped) -> Result<Entry> {
    let proc = side.proc_of(task);
    let t = match side.clock_pages().install_step(t, proc, S::CLOCK_MODE)? {
        Ok(_) => return Ok(Entry::Done),
        Err(t) => t,
    };
    let regs = t.regs()?;
    let Some((t, mut regs)) = side.before_signals(task, t, regs)? else { return Ok(Entry::Done) };
    let nr = regs.nr();
    let group = side.signals_here(task, &t, nr)?;
    if !group.is_empty() {
        let sigs: Vec<Sig> = group.iter().map(|h| h.sig).collect();
        bounce(&t, &mut regs, &sigs)?;
        side.keep_bouncing(task, group);
        side.silent().insert(task, 0);
        t.cont(None)?;
        return Ok(Entry::Done);
    }
    side.at_call(task, &regs);
    let Some(spec) = lookup(nr) else {
        *side.silent().entry(task).or_default() += 1;
        regs.skip_with(-i64::from(libc::ENOSYS));
        t.set_regs(&regs)?;
        return Ok(Entry::Unknown { t, nr });
    };
    let args = regs.args();
    let path_local = side.path_local(&t, spec, &args)?;
    let action = policy::decide(spec, &args, side.fds(task), path_local);
    let silent = {
        let n = side.silent().entry(task).or_default();
        *n = if policy::logs_nothing(action) { *n + 1 } else { 0 };
        *n
    };
    Ok(Entry::Call(Decided { t, regs, spec, args, action, silent }))
}

/// How long the token holder runs without a stop, while others wait or a caught signal waits
/// for it, before it is probed for a fixpoint (see [`spin`]).
pub(crate) const PROBE_GAP: std::time::Duration = std::time::Duration::from_millis(10);

pub(crate) const MAX_TRACER_BUF: u64 = 1 << 20;

/// A caught signal taken from the kernel at its delivery stop, to deliver again at a syscall.
pub(crate) struct Held {
    pub sig: Sig,
    /// Its siginfo, given back at the delivery stop of the re-sent signal.
    pub info: Option<libc::siginfo_t>,
}

/// What delivering an asynchronous signal would do.
pub(crate) enum Handling {
    /// Ignored, or ignored by default (SIGCHLD, SIGWINCH, SIGURG, SIGCONT): nothing.
    NoEffect,
    /// A handler runs: its position matters, so it is delivered at a syscall boundary.
    Caught,
    /// The default action (terminate, core dump, stop): delivered at once.
    Default,
}

/// Whether a signal is pending for the stopped thread (its own or its process's) that its mask
/// lets in: resumed, it stops for the delivery before running any code. (Its mask from
/// /proc: PTRACE_GETSIGMASK shows the mask a wait such as sigsuspend restores, not its own.)
pub(crate) fn signal_waiting(t: &Stopped) -> ft_interposer::Result<bool> {
    if !t.has_pending_signal()? {
        return Ok(false);
    }
    let mask = status_masks(t.pid());
    Ok((mask("SigPnd:") | mask("ShdPnd:")) & !mask("SigBlk:") != 0)
}

/// The signal masks of /proc/TID/status by field name ("SigBlk:", "SigCgt:", …); 0 if absent.
pub(crate) fn status_masks(pid: Pid) -> impl Fn(&str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    move |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    }
}

/// Whether delivering `sig` to `pid` would do nothing (ignored, or ignored by default).
pub(crate) fn has_no_effect(pid: Pid, sig: Sig) -> bool {
    matches!(disposition(pid, sig), Handling::NoEffect)
}

/// Reads the signal's disposition from /proc/TID/status (SigIgn, SigCgt).
pub(crate) fn disposition(pid: Pid, sig: Sig) -> Handling {
    let mask = status_masks(pid);
    let bit = sig.mask_bit();
    if mask("SigCgt:") & bit != 0 {
        Handling::Caught
    } else if mask("SigIgn:") & bit != 0 || matches!(sig, Sig::SIGCHLD | Sig::SIGWINCH | Sig::SIGURG | Sig::SIGCONT) {
        Handling::NoEffect
    } else {
        Handling::Default
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

/// A fault raised by the tracee's own instruction (it recurs by itself at replay).
pub(crate) fn is_synchronous(t: &Stopped, sig: Sig) -> bool {
    matches!(sig, Sig::SIGSEGV | Sig::SIGBUS | Sig::SIGFPE | Sig::SIGILL | Sig::SIGTRAP | Sig::SIGSYS)
        && t.siginfo().map(|si| si.si_code > 0).unwrap_or(false)
}

/// Whether a Tracer syscall can really run in the tracer (its buffers are of a sane size).
pub(crate) fn tracer_can_run(spec: &Spec, args: &[u64; 6]) -> bool {
    spec.writes.iter().all(|w| tracer_buffer(w.len, args).is_some_and(|(cap, _)| cap <= MAX_TRACER_BUF))
}

/// The buffer the tracer uses for one write of a Tracer syscall: its capacity and whether the
/// return value says how much of it the kernel filled (getrandom: capacity from argument 1).
/// None for lengths a tracer buffer cannot express (the syscall then runs in the tracee).
pub(crate) fn tracer_buffer(len: Len, args: &[u64; 6]) -> Option<(u64, bool)> {
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

/// Whether a Local syscall may wait in the kernel for another task of the program (table
/// `Waits`): then it runs without the token at record, and at replay where the log completes it.
pub(crate) fn may_wait(t: &Stopped, spec: &Spec, args: &[u64; 6]) -> bool {
    match spec.waits {
        Waits::Never | Waits::Holding { .. } | Waits::HoldingQueue { .. } => false,
        Waits::UnlessNoWait { arg } => args[usize::from(arg)] & libc::IPC_NOWAIT as u64 == 0,
        Waits::UnlessNonblockFd { fd } => {
            ft_interposer::procfs::fd_flags(t.pid().as_raw(), args[usize::from(fd)] as i32) & libc::O_NONBLOCK == 0
        }
        Waits::SemOps { ops, count } => {
            let n = args[usize::from(count)].min(1024) as usize;
            let Ok(b) = t.read(args[usize::from(ops)], 6 * n) else { return true };
            b.chunks_exact(6).any(|op| {
                let (sem_op, flags) = (i16::from_le_bytes([op[2], op[3]]), i16::from_le_bytes([op[4], op[5]]));
                sem_op <= 0 && (flags as i32) & libc::IPC_NOWAIT == 0
            })
        }
    }
}
