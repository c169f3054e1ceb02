//! The logs ftdbg reads: a file written by `ftexec record`, or the data directory of a replica of
//! `ftexec run`/`up` (its Raft log, read while the replica is stopped). A replica's log holds the
//! same events as a recording of the same session; only its committed entries are read.

use crate::Error;
use ft_libos::log::LogReader;
use ft_libos::proto::{Event, Header};
use std::path::Path;

/// An open log, read event by event.
pub enum Log {
    File(LogReader),
    Raft { header: Header, events: std::vec::IntoIter<Event>, position: u64, bytes: u64 },
}

impl Log {
    /// Opens a recording, a replica's data directory, or its raft.log.
    pub fn open(path: &Path) -> Result<Log, Error> {
        let raft_file = match ft_replay::raft::replica_log(path) {
            Some(f) => f,
            None if path.is_dir() => return Err(Error::NotALog { path: path.into() }),
            None => return Ok(Log::File(LogReader::open(path)?)),
        };
        let bytes = std::fs::metadata(&raft_file).map(|m| m.len()).unwrap_or(0);
        let (header, events) = ft_replay::raft::read_recording(path)?;
        Ok(Log::Raft { header, events: events.into_iter(), position: 0, bytes })
    }

    pub fn header(&self) -> &Header {
        match self {
            Log::File(r) => r.header(),
            Log::Raft { header, .. } => header,
        }
    }

    /// Index of the next event.
    pub fn position(&self) -> u64 {
        match self {
            Log::File(r) => r.position(),
            Log::Raft { position, .. } => *position,
        }
    }

    pub fn next_event(&mut self) -> Result<Option<Event>, Error> {
        match self {
            Log::File(r) => Ok(r.next_event()?),
            Log::Raft { events, position, .. } => {
                let ev = events.next();
                *position += u64::from(ev.is_some());
                Ok(ev)
            }
        }
    }

    /// The size of the log on disk.
    pub fn bytes(&self, path: &Path) -> u64 {
        match self {
            Log::File(_) => std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            Log::Raft { bytes, .. } => *bytes,
        }
    }

    /// The header and every event, in memory.
    pub fn read_all(path: &Path) -> Result<(Header, Vec<Event>), Error> {
        let mut log = Log::open(path)?;
        let mut events = Vec::new();
        while let Some(ev) = log.next_event()? {
            events.push(ev);
        }
        Ok((log.header().clone(), events))
    }
}
