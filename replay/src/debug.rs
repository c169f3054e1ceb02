//! The seam between a replay and a debugger (`ftdbg gdb`). The replay calls
//! [`Debugger::stopped`] when the running task reaches the debugger's target event, executes one
//! of its breakpoints or finishes a single step; the debugger looks at and changes the stopped
//! tasks through a [`View`] and says how the replay goes on ([`Resume`]).
//!
//! A replay with a debugger replays exactly as without one: breakpoint traps and single steps
//! consume no log event, and the debugger only sees tasks while they are in a ptrace stop.

use ft_interposer::tracee::Stopped;

/// Why the replay stopped for the debugger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The events before the debugger's target have all been replayed.
    Event,
    /// The task executed one of the debugger's breakpoints; its ip is back on the breakpoint.
    Breakpoint,
    /// A single step finished (after a syscall instruction: at the syscall's return).
    Step,
}

/// How the replay goes on after a stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Run on to the next breakpoint, target event or the end.
    Continue,
    /// Run the stopped task for one instruction.
    Step,
    /// End this replay now ([`crate::SessionError::Restart`]): the caller replays again from the
    /// start, or quits.
    Restart,
}

/// One task of the replayed program as a debugger sees it.
pub struct Task<'a> {
    /// The task's number in the log (0 is the first thread, then in creation order).
    pub vtid: u32,
    /// Its thread id in this replay.
    pub tid: i32,
    /// The task if it is in a ptrace stop (tasks inside clone/exec or not yet started are not).
    pub stopped: Option<&'a Stopped>,
}

/// What the debugger can reach at a stop.
pub struct View<'a> {
    /// Log position: the index of the next event to replay.
    pub position: u64,
    /// The task that stopped.
    pub current: Task<'a>,
    /// The other tasks.
    pub others: Vec<Task<'a>>,
}

impl<'a> View<'a> {
    /// The stopped task with thread id `tid` (the current one for 0 or -1).
    pub fn task(&self, tid: i32) -> Option<&Task<'a>> {
        if tid <= 0 || tid == self.current.tid {
            return Some(&self.current);
        }
        self.others.iter().find(|t| t.tid == tid)
    }
}

/// A debugger attached to a replay.
pub trait Debugger {
    /// Stop when the log position reaches this index (None: do not stop for events).
    fn target(&self) -> Option<u64>;
    /// Whether a breakpoint of the debugger is at `addr`.
    fn is_breakpoint(&self, addr: u64) -> bool;
    /// The replay stopped; serve the debugger and say how to go on.
    fn stopped(&mut self, why: StopReason, view: &View<'_>) -> Resume;
}
