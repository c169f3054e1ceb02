//! Where recorded events go: a log file, or a replica's Raft log (`crate::raft`).

use crate::error::Result;
use crate::release::Ticket;
use ft_libos::proto::Event;

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
    /// Whether outputs wait for a commit (a replicated log): the syscall buffer then keeps a
    /// socket write's bytes for the recorder to queue instead of sending them.
    fn commits_outputs(&self) -> bool {
        false
    }
}

impl EventSink for ft_libos::log::LogWriter {
    fn append(&mut self, ev: &Event) -> Result<()> {
        Ok(ft_libos::log::LogWriter::append(self, ev)?)
    }
}
