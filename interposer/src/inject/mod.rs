//! Syscalls injected into a tracee: the tracer makes a task that is stopped at the seccomp stop
//! of one of its own syscalls run others first (going live makes a follower's stand-ins real
//! this way), then brings it back to that same stop with its registers as they were.

mod calls;

pub use calls::SCRATCH_LEN;

use crate::tracee::wait_for;
use crate::{Regs, Result, Stop, Stopped, TraceError, Waited};
use nix::unistd::Pid;

fn unexpected(pid: Pid, what: String) -> TraceError {
    TraceError::Unexpected { pid, what }
}

/// Syscalls injected into a task stopped at the seccomp stop of one of its own syscalls; after
/// each, the task is brought back to that same stop.
pub struct Remote {
    t: Option<Stopped>,
    orig: Regs,
    /// The task's own signal mask, while every signal is blocked ([`Remote::signals_blocked`]).
    mask: Option<u64>,
    /// The scratch page of the typed calls ([`calls`]), once mapped.
    scratch: Option<u64>,
}

impl Remote {
    pub fn new(t: Stopped) -> Result<Remote> {
        let orig = t.regs()?;
        Ok(Remote { t: Some(t), orig, mask: None, scratch: None })
    }

    /// Like [`Remote::new`], with every signal blocked in the task while it runs the injected
    /// syscalls (going live makes timers that may be due at once, and sends signals within the
    /// program): one delivered on the way back would stop it elsewhere. The injected syscalls
    /// must not change the mask: it is given back with the task ([`Remote::into_stopped`], or
    /// when the Remote is dropped), and a signal that came meanwhile stays pending for the
    /// program.
    pub fn signals_blocked(t: Stopped) -> Result<Remote> {
        let orig = t.regs()?;
        let mask = t.sigmask()?;
        t.set_sigmask(u64::MAX)?;
        Ok(Remote { t: Some(t), orig, mask: Some(mask), scratch: None })
    }

    /// Runs syscall `nr` with `args` in the task; its result (a negative errno on failure).
    pub fn call(&mut self, nr: i64, args: [u64; 6]) -> Result<i64> {
        self.call_creating(nr, args).map(|(ret, _)| ret)
    }

    /// [`Remote::call`] for a syscall that may create a task (clone): also the new task, which
    /// the tracer now traces (PTRACE_O_TRACECLONE) and which waits for its first stop.
    pub fn call_creating(&mut self, nr: i64, args: [u64; 6]) -> Result<(i64, Option<Pid>)> {
        let t = self.t.take().ok_or_else(|| unexpected(Pid::from_raw(0), "no stopped task".into()))?;
        let pid = t.pid();
        let mut r = self.orig;
        r.rewrite(nr as u64, &args);
        t.set_regs(&r)?;
        t.cont_to_exit()?;
        let mut born = None;
        let s = loop {
            match wait_for(Some(pid))?.1 {
                Waited::Stopped(s) if s.stop == Stop::SyscallExit => break s,
                Waited::Stopped(s) => match s.stop {
                    Stop::NewTask(child) if born.is_none() => {
                        born = Some(child);
                        s.cont_to_exit()?;
                    }
                    other => return Err(unexpected(pid, format!("{other:?} during an injected syscall"))),
                },
                _ => return Err(unexpected(pid, "death during an injected syscall".into())),
            }
        };
        let ret = s.regs()?.ret();
        // Back to the seccomp stop of the task's own syscall: rewind to its instruction.
        let mut back = self.orig;
        back.skip_with(self.orig.nr() as i64);
        back.rewind();
        s.set_regs(&back)?;
        s.cont(None)?;
        match wait_for(Some(pid))?.1 {
            Waited::Stopped(s) if s.stop == Stop::Seccomp => {
                s.set_regs(&self.orig)?;
                self.t = Some(s);
            }
            Waited::Stopped(s) => {
                return Err(unexpected(pid, format!("{:?} instead of the syscall it was parked at", s.stop)))
            }
            _ => return Err(unexpected(pid, "death instead of the syscall it was parked at".into())),
        }
        Ok((ret, born))
    }

    /// The task, unless an injected syscall failed and lost it (then nothing may go on).
    pub fn task(&self) -> Result<&Stopped> {
        self.t.as_ref().ok_or_else(|| unexpected(Pid::from_raw(0), "no stopped task".into()))
    }

    pub fn write(&self, addr: u64, data: &[u8]) -> Result<()> {
        self.task()?.write(addr, data)
    }

    pub fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>> {
        self.task()?.read(addr, len)
    }

    /// An error naming the task, for an injected syscall that failed where nothing may go on.
    pub fn failed(&self, what: String) -> TraceError {
        unexpected(self.t.as_ref().map_or(Pid::from_raw(0), |t| t.pid()), what)
    }

    /// The task back, at its own seccomp stop, with its own signal mask (and its scratch page
    /// unmapped).
    pub fn into_stopped(mut self) -> Option<Stopped> {
        self.release_scratch().ok()?;
        let t = self.t.take()?;
        if let Some(mask) = self.mask {
            t.set_sigmask(mask).ok()?;
        }
        Some(t)
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        let _ = self.release_scratch();
        if let (Some(t), Some(mask)) = (&self.t, self.mask) {
            // A task kept after a failed injection gets its mask back too (if it is gone,
            // there is nothing to give back).
            let _ = t.set_sigmask(mask);
        }
    }
}
