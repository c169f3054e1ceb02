//! The logs ftdbg reads: a file written by `ftexec record`, or the data directory of a replica of
//! `ftexec run`/`up` (its Raft log, read while the replica is stopped). A replica's log holds the
//! same events as a recording of the same session; only its committed entries are read.

use crate::Error;
use ft_libos::batch::{self, Batch};
use ft_libos::log::LogReader;
use ft_libos::proto::{Event, Header};
use std::path::{Path, PathBuf};

/// An open log, read event by event.
pub enum Log {
    File(LogReader),
    Raft { header: Header, events: std::vec::IntoIter<Event>, position: u64, bytes: u64 },
}

/// The first bytes of a Raft log file (consensus/src/storage.rs).
const RAFT_MAGIC: &[u8] = b"FTRAFT\0";

impl Log {
    /// Opens a recording, a replica's data directory, or its raft.log.
    pub fn open(path: &Path) -> Result<Log, Error> {
        let raft_file = if path.is_dir() { path.join("raft.log") } else { path.to_path_buf() };
        let mut magic = [0u8; 7];
        let is_raft = std::fs::File::open(&raft_file)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .is_ok_and(|()| magic == RAFT_MAGIC);
        if path.is_dir() && !is_raft {
            return Err(Error::NotALog { path: path.into() });
        }
        if !is_raft {
            return Ok(Log::File(LogReader::open(path)?));
        }
        let bytes = std::fs::metadata(&raft_file).map(|m| m.len()).unwrap_or(0);
        let (header, events) = read_raft(path)?;
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

/// The recording inside a replica's committed Raft entries.
fn read_raft(path: &Path) -> Result<(Header, Vec<Event>), Error> {
    let bad = |what: String| Error::RaftLog { path: PathBuf::from(path), what };
    let log = ft_consensus::storage::read_committed(path)?;
    // Index 1 is the bootstrap snapshot; a log that starts later lost its beginning.
    if log.first_index > 2 {
        return Err(bad(format!(
            "its entries before {} were compacted away: the recording's start is gone",
            log.first_index
        )));
    }
    let mut header = None;
    let mut events = Vec::new();
    for e in &log.entries {
        if e.data.is_empty() {
            continue;
        }
        let batches = ft_consensus::node::decode_batches(&e.data)
            .ok_or_else(|| bad(format!("entry {} is not framed as batches", e.index)))?;
        for b in batches {
            match batch::decode(&b).map_err(|why| bad(format!("entry {} has {why}", e.index)))? {
                Batch::Header(h) if header.is_none() => header = Some(*h),
                Batch::Header(_) => return Err(bad(format!("entry {} has a second header", e.index))),
                Batch::Events(evs) => events.extend(evs),
                Batch::Barrier { .. } => {}
            }
        }
    }
    match header {
        Some(h) => Ok((h, events)),
        None => Err(bad(format!(
            "none of its {} committed entries (commit index {}) holds a recording yet",
            log.entries.len(),
            log.commit
        ))),
    }
}
