//! What every reader of a log asks of an [`Event`]: whose it is and what kind it is. Defined once
//! here, so that replay and ftdbg agree, and matched exhaustively, so that a new event kind does
//! not compile until it says which task it belongs to.

use crate::proto::{event::Kind, Event};

impl Event {
    /// The task (thread, as numbered in the log: 0 is the program's first task, then in creation
    /// order) the event belongs to: the one it happened to, the parent for a spawn, the task that
    /// gets the token for a run. The start is task 0's: it is the exec of the program's first
    /// task. None for an event without a kind (written by a newer ftexec, or damaged).
    pub fn task(&self) -> Option<u32> {
        match &self.kind {
            Some(Kind::Syscall(s)) => Some(s.task),
            Some(Kind::Rdtsc(r)) => Some(r.task),
            Some(Kind::Signal(s)) => Some(s.task),
            Some(Kind::Start(_)) => Some(0),
            Some(Kind::Exit(e)) => Some(e.task),
            Some(Kind::Run(r)) => Some(r.task),
            Some(Kind::Spawn(s)) => Some(s.parent),
            Some(Kind::Exec(e)) => Some(e.task),
            Some(Kind::Clocks(c)) => Some(c.task),
            Some(Kind::Preempt(p)) => Some(p.task),
            Some(Kind::Patch(p)) => Some(p.task),
            None => None,
        }
    }

    /// The kind as one lower-case word (`syscall`, `rdtsc`, `signal`, `start`, `exit`, `run`,
    /// `spawn`, `exec`, `clocks`, `preempt`, `patch`), `empty` for an event without a kind. Stable: tools
    /// print it and match on it.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            Some(Kind::Syscall(_)) => "syscall",
            Some(Kind::Rdtsc(_)) => "rdtsc",
            Some(Kind::Signal(_)) => "signal",
            Some(Kind::Start(_)) => "start",
            Some(Kind::Exit(_)) => "exit",
            Some(Kind::Run(_)) => "run",
            Some(Kind::Spawn(_)) => "spawn",
            Some(Kind::Exec(_)) => "exec",
            Some(Kind::Clocks(_)) => "clocks",
            Some(Kind::Preempt(_)) => "preempt",
            Some(Kind::Patch(_)) => "patch",
            None => "empty",
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::proto::{Exec, Run, Spawn, Start, Syscall};

    use super::*;

    fn ev(kind: Kind) -> Event {
        Event { kind: Some(kind) }
    }

    #[test]
    fn the_start_is_the_first_tasks() {
        let start = ev(Kind::Start(Start::default()));
        assert_eq!(start.task(), Some(0));
        assert_eq!(start.kind_name(), "start");
    }

    #[test]
    fn task_and_kind_of_each_event() {
        let spawn = ev(Kind::Spawn(Spawn { parent: 2, child: 5, thread: true }));
        assert_eq!((spawn.task(), spawn.kind_name()), (Some(2), "spawn"));
        let run = ev(Kind::Run(Run { task: 3 }));
        assert_eq!((run.task(), run.kind_name()), (Some(3), "run"));
        let exec = ev(Kind::Exec(Exec { task: 4, ..Default::default() }));
        assert_eq!((exec.task(), exec.kind_name()), (Some(4), "exec"));
        let sys = ev(Kind::Syscall(Syscall { task: 1, ..Default::default() }));
        assert_eq!((sys.task(), sys.kind_name()), (Some(1), "syscall"));
        let empty = Event { kind: None };
        assert_eq!((empty.task(), empty.kind_name()), (None, "empty"));
    }
}
