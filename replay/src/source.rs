//! Where replay takes its events from: a log file ([`FileSource`]), or a replica's committed
//! Raft entries (`crate::raft`).

use crate::error::Result;
use ft_libos::log::LogReader;
use ft_libos::proto::{event::Kind, Event, Header};
use std::path::Path;

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
    /// Where event `pos` can be read again from (a checkpoint's place in the log): the Raft
    /// index of the first entry needed, and the position of that entry's first event. None for
    /// a log file (events are counted from its start).
    fn entry_of(&self, _pos: u64) -> Option<(u64, u64)> {
        None
    }
}

/// Events from a log file, or from a stopped replica's Raft log (its data directory or raft.log).
pub struct FileSource {
    reader: Reader,
    peeked: Option<Event>,
    pos: u64,
    /// The end of the file is the end of what a leader committed: a replay goes live there.
    live_at_end: bool,
}

impl FileSource {
    /// Opens a log after checking every record's checksum, so a damaged log is refused before
    /// the program prints anything.
    /// A replica's Raft log is read whole (its committed entries), with the same checks.
    pub fn open(path: &Path) -> Result<Self> {
        let reader = if crate::raft::replica_log(path).is_some() {
            let (header, events) = crate::raft::read_recording(path)?;
            Reader::Replica { header: Box::new(header), events: events.into_iter() }
        } else {
            LogReader::open(path)?.verify_rest()?;
            Reader::File(Box::new(LogReader::open(path)?))
        };
        Ok(FileSource { reader, peeked: None, pos: 0, live_at_end: false })
    }

    /// Makes the end of the file the end of a committed log: [`replay_then_live`] goes live
    /// there, as a follower does when its leader dies (`ftexec replay --continue-into`).
    pub fn live_at_end(mut self) -> Self {
        self.live_at_end = true;
        self
    }
    pub fn header(&self) -> &Header {
        match &self.reader {
            Reader::File(r) => r.header(),
            Reader::Replica { header, .. } => header,
        }
    }
}

enum Reader {
    File(Box<LogReader>),
    Replica { header: Box<Header>, events: std::vec::IntoIter<Event> },
}

impl Reader {
    fn next_event(&mut self) -> Result<Option<Event>> {
        match self {
            Reader::File(r) => Ok(r.next_event()?),
            Reader::Replica { events, .. } => Ok(events.next()),
        }
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
    fn entry_of(&self, _pos: u64) -> Option<(u64, u64)> {
        Some((0, 0))
    }
}

/// The log as replay takes it, noting every signal a task took (going live: a child that ended
/// after its parent's last SIGCHLD is owed one; a signal the program sent that no task took
/// since is still pending, see `SentSignal`).
pub(crate) struct Noted<'a> {
    pub(crate) inner: &'a mut dyn EventSource,
    /// (log position, task, signal) of each signal event, in order; replay adds the signals
    /// that sigtimedwait took.
    pub(crate) taken: Vec<(u64, u32, i32)>,
    /// Events taken from `inner` by [`Noted::peek_nth`] and not consumed yet.
    pub(crate) ahead: std::collections::VecDeque<Event>,
}

impl Noted<'_> {
    /// The event `n` places after the next one, if it is available now (never waits).
    pub(crate) fn peek_nth(&mut self, n: usize) -> Result<Option<&Event>> {
        while self.ahead.len() <= n {
            if self.inner.peek_event()?.is_none() {
                return Ok(None);
            }
            match self.inner.next_event()? {
                Some(ev) => self.ahead.push_back(ev),
                None => return Ok(None),
            }
        }
        Ok(self.ahead.get(n))
    }
}

impl EventSource for Noted<'_> {
    fn next_event(&mut self) -> Result<Option<Event>> {
        let position = self.position();
        let ev = match self.ahead.pop_front() {
            Some(ev) => Some(ev),
            None => self.inner.next_event()?,
        };
        if let Some(Event { kind: Some(Kind::Signal(s)) }) = &ev {
            self.taken.push((position + 1, s.task, s.signo));
        }
        Ok(ev)
    }
    fn peek_event(&mut self) -> Result<Option<&Event>> {
        if !self.ahead.is_empty() {
            return Ok(self.ahead.front());
        }
        self.inner.peek_event()
    }
    fn position(&self) -> u64 {
        self.inner.position() - self.ahead.len() as u64
    }
    fn live(&self) -> bool {
        self.ahead.is_empty() && self.inner.live()
    }
    fn entry_of(&self, pos: u64) -> Option<(u64, u64)> {
        self.inner.entry_of(pos)
    }
}
