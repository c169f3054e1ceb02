//! Syscalls injected into a tracee: the tracer makes a task that is stopped at the seccomp stop
//! of one of its own syscalls run others first (going live makes a follower's stand-ins real
//! this way), then brings it back to that same stop with its registers as they were.

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
}

impl Remote {
    pub fn new(t: Stopped) -> Result<Remote> {
        let orig = t.regs()?;
        Ok(Remote { t: Some(t), orig })
    }

    /// Runs syscall `nr` with `args` in the task; its result (a negative errno on failure).
    pub fn call(&mut self, nr: i64, args: [u64; 6]) -> Result<i64> {
        let t = self.t.take().ok_or_else(|| unexpected(Pid::from_raw(0), "no stopped task".into()))?;
        let pid = t.pid();
        let mut r = self.orig;
        r.rewrite(nr as u64, &args);
        t.set_regs(&r)?;
        t.cont_to_exit()?;
        let s = match wait_for(Some(pid))?.1 {
            Waited::Stopped(s) if s.stop == Stop::SyscallExit => s,
            Waited::Stopped(s) => return Err(unexpected(pid, format!("{:?} during an injected syscall", s.stop))),
            _ => return Err(unexpected(pid, "death during an injected syscall".into())),
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
        Ok(ret)
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

    /// The task back, at its own seccomp stop.
    pub fn into_stopped(mut self) -> Option<Stopped> {
        self.t.take()
    }
}
