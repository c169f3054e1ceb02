//! The recording in the Raft log: the sessions' [`EventSource`] and [`EventSink`] over a running
//! node (`ftexec run`), and the committed recording of a stopped replica read from disk (ftdbg).
//!
//! Raft entries carry batches (`ft_libos::batch`); the first byte of a batch says what it holds:
//! header (the recording's identity), events (length-prefixed protobuf `Event`s), or a barrier
//! (node id, term) that a new leader proposes to learn where the committed log ends. Committed
//! entries become batches in one place, [`EntryDecoder::entry`], for both readers.

use crate::error::SessionError;
pub use crate::error::{EntryError, RaftLogError};
use crate::release::{Commit, Ticket};
use crate::{EventSink, EventSource};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use ft_consensus::node::decode_batches;
use ft_consensus::storage::{self, LOG_FILE, LOG_MAGIC};
use ft_consensus::{CommittedEntry, EntryId, Node, NodeError, PendingProposal};
use ft_libos::batch::{self, Batch};
use ft_libos::proto::{Event, Header};
use std::collections::VecDeque;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Group commit: a batch is proposed when it is this big, or this old, or an output waits.
const BATCH_BYTES: usize = 64 << 10;
const BATCH_AGE: Duration = Duration::from_millis(2);
/// How long an output may wait for its commit before the leader gives up (lost quorum).
const COMMIT_PATIENCE: Duration = Duration::from_secs(10);
/// How often a commit wait checks that this replica still leads: a deposed leader (partitioned
/// away from its quorum) ends its session at once instead of after `COMMIT_PATIENCE`.
const COMMIT_POLL: Duration = Duration::from_millis(50);

/// Turns committed entries into the batches of the recording, in log order, and refuses a
/// second header (the recording's identity is proposed once).
#[derive(Debug, Default)]
pub struct EntryDecoder {
    header_seen: bool,
    /// The parts of a large event read so far (see `batch::parts`).
    partial: Vec<u8>,
}

impl EntryDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The batches of committed entry `index` (as the node splits them), decoded in proposal
    /// order: the header, events, barriers.
    pub fn entry(&mut self, index: u64, batches: &[Vec<u8>]) -> Result<Vec<Batch>, EntryError> {
        let mut out = Vec::with_capacity(batches.len());
        for b in batches {
            let b = batch::decode(b).map_err(|source| EntryError::Batch { index, source })?;
            if let Batch::Header(_) = b {
                if self.header_seen {
                    return Err(EntryError::SecondHeader { index });
                }
                self.header_seen = true;
            }
            match b {
                Batch::Part { last, bytes } => {
                    self.partial.extend_from_slice(&bytes);
                    if last {
                        let whole = std::mem::take(&mut self.partial);
                        let ev = batch::event_of_parts(&whole).map_err(|source| EntryError::Batch { index, source })?;
                        out.push(Batch::Events(vec![ev]));
                    }
                }
                other => {
                    // Parts cut short by another batch: their leader died before the last one.
                    self.partial.clear();
                    out.push(other);
                }
            }
        }
        Ok(out)
    }

    /// Whether the parts of a large event are pending (its last part is in a later entry).
    pub fn mid_event(&self) -> bool {
        !self.partial.is_empty()
    }

    /// Whether a header was among the entries decoded so far.
    pub fn header_seen(&self) -> bool {
        self.header_seen
    }
}

/// The Raft log file of a replica if `path` is one: its data directory, or the log file itself
/// (of any format version). None for anything else, such as a log of `ftexec record`.
pub fn replica_log(path: &Path) -> Option<PathBuf> {
    let file = if path.is_dir() { path.join(LOG_FILE) } else { path.to_path_buf() };
    let mut magic = [0u8; LOG_MAGIC.len()];
    let is_raft =
        std::fs::File::open(&file).and_then(|mut f| f.read_exact(&mut magic)).is_ok_and(|()| magic == *LOG_MAGIC);
    is_raft.then_some(file)
}

/// The recording (header and events) in the committed entries of a stopped replica's Raft log:
/// `path` is its data directory or its raft.log. Read-only; a running node holds the log's lock
/// ([`ft_consensus::StoreError::Locked`]). Barriers are skipped; a torn tail is left for the
/// node to repair when it starts.
pub fn read_recording(path: &Path) -> Result<(Header, Vec<Event>), RaftLogError> {
    let log = storage::read_committed(path)?;
    // Index 1 is the bootstrap snapshot; a log that starts later lost its beginning.
    if log.first_index > 2 {
        return Err(RaftLogError::Compacted { path: path.into(), first_index: log.first_index });
    }
    let mut decoder = EntryDecoder::new();
    let mut header = None;
    let mut events = Vec::new();
    for e in &log.entries {
        if e.data.is_empty() {
            continue;
        }
        let batches = decode_batches(&e.data)
            .ok_or(EntryError::Unframed { index: e.index })
            .and_then(|b| decoder.entry(e.index, &b))
            .map_err(|source| RaftLogError::Entry { path: path.into(), source })?;
        for b in batches {
            match b {
                Batch::Header(h) => header = Some(*h),
                Batch::Events(evs) => events.extend(evs),
                // Joined into events by the decoder.
                Batch::Barrier { .. } | Batch::Part { .. } => {}
            }
        }
    }
    match header {
        Some(h) => Ok((h, events)),
        None => Err(RaftLogError::NoRecording { path: path.into(), entries: log.entries.len(), commit: log.commit }),
    }
}

/// What a replica is doing ([`Progress`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Starting,
    Replaying,
    Recording,
    Ended,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Starting => "starting",
            Mode::Replaying => "replaying",
            Mode::Recording => "recording",
            Mode::Ended => "ended",
        }
    }
}

/// What the replica is doing, for `ftctl status`: updated by [`RaftSource`] and [`RaftSink`]
/// and by the tool that runs them; read from any thread.
#[derive(Debug, Default)]
pub struct Progress {
    mode: AtomicU8,
    events: AtomicU64,
    caught_up_ms: AtomicU64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Progress {
    pub fn set_mode(&self, mode: Mode) {
        let m = match mode {
            Mode::Starting => 0,
            Mode::Replaying => 1,
            Mode::Recording => 2,
            Mode::Ended => 3,
        };
        self.mode.store(m, Ordering::Relaxed);
    }

    pub fn mode(&self) -> Mode {
        match self.mode.load(Ordering::Relaxed) {
            1 => Mode::Replaying,
            2 => Mode::Recording,
            3 => Mode::Ended,
            _ => Mode::Starting,
        }
    }

    /// Events read from the committed log (replaying) or appended to it (recording).
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// While replaying: how long since the replay last had read every committed event.
    pub fn lag_ms(&self) -> u64 {
        match self.mode() {
            Mode::Replaying => now_ms().saturating_sub(self.caught_up_ms.load(Ordering::Relaxed)),
            _ => 0,
        }
    }
}

fn repl_err(e: impl std::fmt::Display) -> SessionError {
    SessionError::Replication(e.to_string())
}

/// Events from the committed Raft log, in order; blocks for more while this replica follows.
pub struct RaftSource {
    node: Arc<Node>,
    rx: Receiver<CommittedEntry>,
    queue: VecDeque<Event>,
    pos: u64,
    header: Option<Header>,
    decoder: EntryDecoder,
    /// Set when our own barrier came back: the committed log ends at this position.
    live_at: Option<u64>,
    barrier_term: Option<u64>,
    progress: Arc<Progress>,
    /// Per entry that gave events (recent ones): its first event's position, and where those
    /// events can be read again from (see [`EventSource::entry_of`]).
    origins: VecDeque<(u64, (u64, u64))>,
    /// Entries below this index are skipped (a checkpoint holds them).
    skip_below: u64,
}

/// How many entries [`RaftSource`] remembers the origin of: replay consumes an event soon after
/// its entry arrives.
const ORIGINS: usize = 4096;

impl RaftSource {
    /// Reads the committed stream `rx` of `node` (from [`Node::take_committed`]).
    pub fn new(node: Arc<Node>, rx: Receiver<CommittedEntry>, progress: Arc<Progress>) -> Self {
        RaftSource {
            node,
            rx,
            queue: VecDeque::new(),
            pos: 0,
            header: None,
            decoder: EntryDecoder::new(),
            live_at: None,
            barrier_term: None,
            progress,
            origins: VecDeque::new(),
            skip_below: 0,
        }
    }

    /// Reads on from a checkpoint's place in the log: entry `index` first, whose first event
    /// has position `first_event`; the recording's `header` is the checkpoint's (the log may no
    /// longer begin with it). Entries before `index` that the node still delivers are skipped.
    pub fn resume_at(mut self, index: u64, first_event: u64, header: Header) -> Self {
        self.skip_below = index;
        self.pos = first_event;
        self.header = Some(header);
        self.decoder.header_seen = true;
        self
    }

    fn at_end(&self) -> bool {
        self.queue.is_empty() && self.live_at == Some(self.pos)
    }

    /// Waits for one committed entry (or a timeout) and takes it in.
    fn step(&mut self) -> crate::Result<()> {
        if self.node.is_leader() && self.live_at.is_none() {
            let term = self.node.term();
            if self.barrier_term != Some(term) {
                let b = batch::barrier(self.node.id(), term);
                match self.node.submit(b) {
                    Ok(_) => self.barrier_term = Some(term),
                    Err(e) => return Err(repl_err(e)),
                }
            }
        }
        if self.queue.is_empty() {
            self.progress.caught_up_ms.store(now_ms(), Ordering::Relaxed);
        }
        let entry = match self.rx.recv_timeout(Duration::from_millis(50)) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => {
                if let Some(why) = self.node.stopped() {
                    return Err(repl_err(format!("the Raft node stopped: {why}")));
                }
                return Ok(());
            }
            Err(RecvTimeoutError::Disconnected) => return Err(repl_err("the Raft node stopped")),
        };
        if entry.snapshot {
            if entry.index < self.skip_below {
                return Ok(());
            }
            return Err(SessionError::Compacted { index: entry.index });
        }
        if entry.index < self.skip_below {
            return Ok(());
        }
        let first = self.pos + self.queue.len() as u64;
        // An event whose parts began in an earlier entry is read again from there.
        let origin = match (self.decoder.mid_event(), self.origins.back()) {
            (true, Some(&(_, o))) => o,
            _ => (entry.index, first),
        };
        if self.origins.len() >= ORIGINS {
            self.origins.pop_front();
        }
        self.origins.push_back((first, origin));
        for b in self.decoder.entry(entry.index, &entry.batches)? {
            match b {
                Batch::Header(h) => self.header = Some(*h),
                Batch::Events(evs) => self.queue.extend(evs),
                // Joined into events by the decoder.
                Batch::Part { .. } => {}
                Batch::Barrier { node, term } => {
                    if node == self.node.id() && term == self.node.term() && self.node.is_leader() {
                        self.live_at = Some(self.pos + self.queue.len() as u64);
                    }
                }
            }
        }
        Ok(())
    }

    /// The recording's header, or None if this replica leads and the log has none: it starts
    /// the program.
    pub fn wait_header(&mut self) -> crate::Result<Option<Header>> {
        loop {
            if let Some(h) = self.header.take() {
                return Ok(Some(h));
            }
            if self.live_at.is_some() && !self.decoder.header_seen() {
                return Ok(None);
            }
            self.step()?;
        }
    }
}

impl EventSource for RaftSource {
    fn next_event(&mut self) -> crate::Result<Option<Event>> {
        self.peek_event()?;
        let ev = self.queue.pop_front();
        if ev.is_some() {
            self.pos += 1;
            self.progress.events.store(self.pos, Ordering::Relaxed);
        }
        Ok(ev)
    }
    fn peek_event(&mut self) -> crate::Result<Option<&Event>> {
        while self.queue.is_empty() && !self.at_end() {
            self.step()?;
        }
        Ok(self.queue.front())
    }
    fn position(&self) -> u64 {
        self.pos
    }
    fn live(&self) -> bool {
        self.at_end()
    }
    fn entry_of(&self, pos: u64) -> Option<(u64, u64)> {
        self.origins.iter().rev().find(|(first, _)| *first <= pos).map(|(_, o)| *o)
    }
}

/// One submitted batch, for the outputs that wait for its commit (proposals are appended in
/// order, so a batch's commit covers every earlier one).
struct RaftTicket {
    node: Arc<Node>,
    state: Mutex<TicketState>,
}

enum TicketState {
    Proposed(PendingProposal),
    Entry { id: EntryId, committed: bool },
    Failed(String),
}

impl RaftTicket {
    /// Waits for the batch's entry id, then for its commit. Fails at once if this replica is
    /// no longer the leader, and after `COMMIT_PATIENCE` without a quorum.
    fn wait_commit(&self) -> Result<(), String> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let id = match std::mem::replace(&mut *st, TicketState::Failed("the proposal was lost".into())) {
            TicketState::Proposed(p) => match p.wait_entry() {
                Ok(id) => id,
                Err(e) => {
                    *st = TicketState::Failed(e.to_string());
                    return Err(e.to_string());
                }
            },
            TicketState::Entry { id, committed: true } => {
                *st = TicketState::Entry { id, committed: true };
                return Ok(());
            }
            TicketState::Entry { id, committed: false } => id,
            TicketState::Failed(why) => {
                *st = TicketState::Failed(why.clone());
                return Err(why);
            }
        };
        *st = TicketState::Entry { id, committed: false };
        drop(st);
        let t0 = Instant::now();
        loop {
            let e = match self.node.await_entry(id, Some(COMMIT_POLL)) {
                Ok(()) => break,
                Err(NodeError::Timeout { .. }) if !self.node.is_leader() => {
                    format!("this replica lost its leadership (term {})", self.node.term())
                }
                Err(NodeError::Timeout { .. }) if t0.elapsed() < COMMIT_PATIENCE => continue,
                Err(e) => e.to_string(),
            };
            let why = format!("entry {} was not committed ({e}); outputs that depend on it are withheld", id.index);
            *self.state.lock().unwrap_or_else(PoisonError::into_inner) = TicketState::Failed(why.clone());
            return Err(why);
        }
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = TicketState::Entry { id, committed: true };
        Ok(())
    }
}

impl Commit for RaftTicket {
    fn wait(&self) -> Result<(), String> {
        self.wait_commit()
    }
}

/// The leader's side: events go into Raft batches; an output waits for their commit.
pub struct RaftSink {
    node: Arc<Node>,
    buf: Vec<u8>,
    /// The latest submitted batch.
    last: Option<Arc<RaftTicket>>,
    /// Events other than outputs appended since the last ticket was handed out or waited for.
    inputs: bool,
    /// The ticket last handed to an output: an output that runs in the program must wait for
    /// it too (the inputs it covers are no longer counted in `inputs`).
    handed: Option<Arc<RaftTicket>>,
    since: Instant,
    appended: u64,
    progress: Arc<Progress>,
}

impl RaftSink {
    pub fn new(node: Arc<Node>, progress: Arc<Progress>) -> Self {
        RaftSink {
            node,
            buf: Vec::new(),
            last: None,
            inputs: false,
            handed: None,
            since: Instant::now(),
            appended: 0,
            progress,
        }
    }

    fn push(&mut self, ev: &Event) -> crate::Result<()> {
        if let Some(parts) = batch::parts(ev) {
            // Larger than an entry may be: the held events first, then one entry per part.
            self.submit()?;
            for p in parts {
                self.buf = p;
                self.submit()?;
            }
            self.appended += 1;
            self.progress.events.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        if self.buf.is_empty() {
            self.since = Instant::now();
        }
        batch::push_event(ev, &mut self.buf);
        self.appended += 1;
        self.progress.events.fetch_add(1, Ordering::Relaxed);
        if self.appended.is_multiple_of(256) && !self.node.is_leader() {
            return Err(repl_err("this replica is no longer the leader; its program must not go on"));
        }
        if self.buf.len() >= BATCH_BYTES || self.since.elapsed() >= BATCH_AGE {
            self.submit()?;
        }
        Ok(())
    }

    /// Hands the held events to Raft without waiting for their entry.
    fn submit(&mut self) -> crate::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.buf);
        let p = self.node.submit(batch).map_err(repl_err)?;
        // The previous proposal is earlier in the log: the new one's commit covers it.
        self.last = Some(Arc::new(RaftTicket { node: self.node.clone(), state: Mutex::new(TicketState::Proposed(p)) }));
        Ok(())
    }

    /// Proposes the held events and waits until everything appended so far is committed.
    pub fn commit(&mut self) -> crate::Result<()> {
        self.submit()?;
        if let Some(t) = &self.last {
            t.wait_commit().map_err(repl_err)?;
        }
        self.inputs = false;
        Ok(())
    }

    /// Proposes the recording's header (the first batch of a new cluster's log) and waits for
    /// its commit.
    pub fn propose_header(&mut self, h: &Header) -> crate::Result<()> {
        self.buf = batch::header(h);
        self.commit()
    }
}

impl EventSink for RaftSink {
    fn append(&mut self, ev: &Event) -> crate::Result<()> {
        self.inputs = true;
        self.push(ev)
    }
    fn append_output(&mut self, ev: &Event) -> crate::Result<()> {
        self.push(ev)
    }
    fn before_output(&mut self) -> crate::Result<()> {
        if self.inputs {
            self.commit()?;
        } else if let Some(t) = &self.handed {
            // Returns at once when it is known committed.
            t.wait_commit().map_err(repl_err)?;
        }
        Ok(())
    }
    fn idle(&mut self) -> crate::Result<()> {
        self.submit()
    }
    fn commits_outputs(&self) -> bool {
        true
    }
    fn output_ticket(&mut self) -> crate::Result<Option<Ticket>> {
        // Only outputs since the last ticket: the next output does not depend on them.
        if !self.inputs {
            if let Some(t) = &self.last {
                return Ok(Some(t.clone() as Ticket));
            }
        }
        self.submit()?;
        self.inputs = false;
        self.handed = self.last.clone();
        match &self.last {
            Some(t) => Ok(Some(t.clone() as Ticket)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events_batch(n: u64) -> Vec<u8> {
        let mut b = Vec::new();
        for _ in 0..n {
            batch::push_event(&Event::default(), &mut b);
        }
        b
    }

    #[test]
    fn entries_decode_in_order_with_one_header() {
        let mut d = EntryDecoder::new();
        let h = Header { argv: vec![b"prog".to_vec()], ..Default::default() };
        let got = d.entry(2, &[batch::header(&h), events_batch(2), batch::barrier(1, 3)]).expect("decode");
        assert!(d.header_seen());
        assert!(
            matches!(&got[..], [Batch::Header(_), Batch::Events(e), Batch::Barrier { node: 1, term: 3 }] if e.len() == 2)
        );
        let e = d.entry(5, &[batch::header(&h)]).expect_err("second header");
        assert!(matches!(e, EntryError::SecondHeader { index: 5 }), "{e}");
        assert_eq!(e.to_string(), "entry 5 of the log has a second header");
    }

    #[test]
    fn a_large_event_in_parts_is_joined_across_entries_and_cut_parts_are_dropped() {
        use ft_libos::proto::{event::Kind, MemWrite, Syscall};
        let data = vec![7u8; batch::PART_BYTES + 10];
        let big = Event {
            kind: Some(Kind::Syscall(Syscall { mem: vec![MemWrite { addr: 1, data }], ..Default::default() })),
        };
        let parts = batch::parts(&big).expect("parts");
        assert_eq!(parts.len(), 2);
        let mut d = EntryDecoder::new();
        assert!(d.entry(3, &[parts[0].clone()]).expect("first part").is_empty());
        let got = d.entry(4, &[parts[1].clone(), events_batch(1)]).expect("last part");
        assert!(matches!(&got[..], [Batch::Events(a), Batch::Events(b)] if a == &vec![big.clone()] && b.len() == 1));
        // A leader that died after the first part: the next leader's barrier drops it.
        let mut d = EntryDecoder::new();
        d.entry(3, &[parts[0].clone()]).expect("first part");
        let got = d.entry(4, &[batch::barrier(2, 5), events_batch(1)]).expect("barrier");
        assert!(matches!(&got[..], [Batch::Barrier { node: 2, term: 5 }, Batch::Events(e)] if e.len() == 1));
        assert!(d.entry(5, &[parts[1].clone()]).is_err(), "a last part without its first is not an event");
    }

    #[test]
    fn a_broken_batch_names_its_entry() {
        let e = EntryDecoder::new().entry(7, &[vec![9, 9]]).expect_err("unknown tag");
        assert!(e.to_string().starts_with("entry 7 of the log has an unknown batch"), "{e}");
        let session: SessionError = e.into();
        assert!(session.to_string().starts_with("replication: entry 7"), "{session}");
    }

    #[test]
    fn a_recording_is_not_a_replica_log() {
        let d = std::env::temp_dir().join(format!("ft-replay-raft-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("mkdir");
        let f = d.join("rec.ftlog");
        std::fs::write(&f, b"FTLOG and more").expect("write");
        assert_eq!(replica_log(&f), None);
        assert_eq!(replica_log(&d), None);
        std::fs::write(d.join(LOG_FILE), b"FTRAFT\0\x07 a later version").expect("write");
        assert_eq!(replica_log(&d), Some(d.join(LOG_FILE)));
        let _ = std::fs::remove_dir_all(&d);
    }
}
