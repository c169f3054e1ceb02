//! Durable Raft storage: one append-only file of checksummed records per node.
//!
//! File `raft.log` in the data directory:
//! ```text
//! header:  b"FTRAFT\0" + version byte (1)
//! record:  len: u32 LE | crc32c(kind ++ payload): u32 LE | kind: u8 | payload (len - 1 bytes)
//! ```
//! Kinds: 1 = `Entry`, 2 = `HardState`, 3 = conf state (`applied_index: u64 LE` ++ `ConfState`),
//! 4 = snapshot metadata (`conf_index: u64 LE` ++ `SnapshotMetadata`). Protobuf payloads.
//!
//! Replaying the file rebuilds the state: an `Entry` record with index `i` replaces every
//! entry at `>= i` (that is how conflicting suffixes are truncated without rewriting the file),
//! the last `HardState` and conf-state records win. A record that is cut short or fails its
//! checksum ends the valid log: the file is truncated there and a warning is logged. Records
//! are written in one `write` per batch and `fdatasync`ed (policy `always`) before `commit`
//! returns, which is before any message depending on them is sent.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError as RaftStorageError};
use slog::{info, warn, Logger};

use crate::config::FsyncPolicy;

const MAGIC: &[u8; 8] = b"FTRAFT\0\x01";
const LOG_FILE: &str = "raft.log";
const KIND_ENTRY: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_CONF_STATE: u8 = 3;
const KIND_SNAPSHOT: u8 = 4;
/// Upper bound for one record; anything larger in a length field is corruption.
const MAX_RECORD: u32 = 256 << 20;

/// Errors of the durable log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a ftexec Raft log (bad header); refusing to touch it")]
    BadHeader { path: PathBuf },
    #[error("{path}: {reason} at byte {offset}")]
    Corrupt { path: PathBuf, offset: u64, reason: String },
    #[error("{path} is locked by another process (is a node with this data_dir already running?)")]
    Locked { path: PathBuf },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io { op, path: path.to_path_buf(), source }
}

impl From<StoreError> for raft::Error {
    fn from(e: StoreError) -> Self {
        raft::Error::Store(RaftStorageError::Other(Box::new(e)))
    }
}

/// What `open` found on disk.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    pub records: u64,
    pub valid_bytes: u64,
    /// Bytes cut off a torn or corrupt tail, and why.
    pub truncated_bytes: u64,
    pub truncate_reason: Option<String>,
}

#[derive(Default)]
struct Core {
    entries: Vec<Entry>,
    snap: SnapshotMetadata,
    /// Index of the log entry that produced `snap.conf_state`... kept for restore.
    snap_conf_index: u64,
    hard_state: HardState,
    conf_state: ConfState,
    /// Index of the last conf change applied to `conf_state`.
    conf_index: u64,
    hs_dirty: bool,
}

impl Core {
    fn first_index(&self) -> u64 {
        self.snap.index + 1
    }
    fn last_index(&self) -> u64 {
        self.entries.last().map_or(self.snap.index, |e| e.index)
    }
    fn put_entry(&mut self, e: Entry) -> Result<(), String> {
        if e.index <= self.snap.index {
            return Ok(());
        }
        let last = self.last_index();
        if e.index > last + 1 {
            return Err(format!("entry {} leaves a gap after {}", e.index, last));
        }
        let keep = (e.index - self.first_index()) as usize;
        self.entries.truncate(keep);
        self.entries.push(e);
        Ok(())
    }
    fn put_snapshot(&mut self, meta: SnapshotMetadata, conf_index: u64) {
        self.entries.clear();
        self.conf_state = meta.get_conf_state().clone();
        self.conf_index = conf_index;
        self.snap_conf_index = conf_index;
        if self.hard_state.commit < meta.index {
            self.hard_state.commit = meta.index;
        }
        if self.hard_state.term < meta.term {
            self.hard_state.term = meta.term;
        }
        self.snap = meta;
    }
}

struct Writer {
    file: File,
    path: PathBuf,
    fsync: FsyncPolicy,
}

/// A batch of records written with one `write` (and one fsync).
#[derive(Default)]
pub struct WriteBatch {
    buf: Vec<u8>,
    entries: Vec<Entry>,
    hard_state: Option<HardState>,
    conf: Option<(ConfState, u64)>,
    snapshot: Option<(SnapshotMetadata, u64)>,
}

fn put_record(buf: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    let len = payload.len() as u32 + 1;
    let mut crc = crc32c::crc32c(&[kind]);
    crc = crc32c::crc32c_append(crc, payload);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(payload);
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn append(&mut self, ents: &[Entry]) {
        for e in ents {
            let bytes = e.write_to_bytes().unwrap_or_default();
            put_record(&mut self.buf, KIND_ENTRY, &bytes);
            self.entries.push(e.clone());
        }
    }
    pub fn set_hard_state(&mut self, hs: &HardState) {
        self.hard_state = Some(hs.clone());
    }
    pub fn set_conf_state(&mut self, cs: &ConfState, applied_index: u64) {
        let mut p = applied_index.to_le_bytes().to_vec();
        p.extend_from_slice(&cs.write_to_bytes().unwrap_or_default());
        put_record(&mut self.buf, KIND_CONF_STATE, &p);
        self.conf = Some((cs.clone(), applied_index));
    }
    /// Replaces the whole log by a snapshot's metadata. `conf_index` is the index of the conf
    /// change that produced the snapshot's conf state.
    pub fn apply_snapshot(&mut self, meta: &SnapshotMetadata, conf_index: u64) {
        let mut p = conf_index.to_le_bytes().to_vec();
        p.extend_from_slice(&meta.write_to_bytes().unwrap_or_default());
        put_record(&mut self.buf, KIND_SNAPSHOT, &p);
        self.snapshot = Some((meta.clone(), conf_index));
    }
}

/// Disk-backed implementation of raft's `Storage`. Cheap to clone (shared state).
#[derive(Clone)]
pub struct DiskStorage {
    core: Arc<RwLock<Core>>,
    writer: Arc<parking_lot::Mutex<Writer>>,
}

fn decode<M: protobuf::Message>(b: &[u8]) -> Result<M, String> {
    M::parse_from_bytes(b).map_err(|e| format!("undecodable record: {e}"))
}

fn u64_prefix(p: &[u8]) -> Result<(u64, &[u8]), String> {
    if p.len() < 8 {
        return Err("short record".into());
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&p[..8]);
    Ok((u64::from_le_bytes(a), &p[8..]))
}

fn apply_record(core: &mut Core, kind: u8, p: &[u8]) -> Result<(), String> {
    match kind {
        KIND_ENTRY => core.put_entry(decode::<Entry>(p)?),
        KIND_HARD_STATE => {
            core.hard_state = decode::<HardState>(p)?;
            Ok(())
        }
        KIND_CONF_STATE => {
            let (idx, rest) = u64_prefix(p)?;
            core.conf_state = decode::<ConfState>(rest)?;
            core.conf_index = idx;
            Ok(())
        }
        KIND_SNAPSHOT => {
            let (idx, rest) = u64_prefix(p)?;
            core.put_snapshot(decode::<SnapshotMetadata>(rest)?, idx);
            Ok(())
        }
        k => Err(format!("unknown record kind {k}")),
    }
}

impl DiskStorage {
    /// Opens (creating if needed) the log in `dir`, replays it and truncates a torn tail.
    pub fn open(dir: &Path, fsync: FsyncPolicy, logger: &Logger) -> Result<(DiskStorage, Recovery), StoreError> {
        std::fs::create_dir_all(dir).map_err(io_err("create data directory", dir))?;
        let path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err("open", &path))?;
        // SAFETY: flock on a valid, owned file descriptor; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(StoreError::Locked { path });
        }
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(io_err("read", &path))?;

        let mut core = Core::default();
        let mut rec = Recovery::default();
        let mut off: usize;
        if data.len() < MAGIC.len() {
            if !MAGIC.starts_with(&data) {
                return Err(StoreError::BadHeader { path });
            }
            // Empty or torn header: (re)write it.
            file.set_len(0).map_err(io_err("truncate", &path))?;
            file.seek(SeekFrom::Start(0)).map_err(io_err("seek", &path))?;
            file.write_all(MAGIC).map_err(io_err("write header", &path))?;
            file.sync_all().map_err(io_err("fsync", &path))?;
            sync_dir(dir)?;
            off = MAGIC.len();
        } else {
            if &data[..MAGIC.len()] != MAGIC {
                return Err(StoreError::BadHeader { path });
            }
            off = MAGIC.len();
            loop {
                let rest = &data[off..];
                if rest.is_empty() {
                    break;
                }
                let bad = |r: &str| Some(r.to_string());
                let problem = if rest.len() < 9 {
                    bad("torn record header")
                } else {
                    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
                    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
                    if len == 0 || len > MAX_RECORD {
                        bad("impossible record length")
                    } else if rest.len() < 8 + len as usize {
                        bad("torn record (shorter than its length)")
                    } else {
                        let body = &rest[8..8 + len as usize];
                        if crc32c::crc32c(body) != crc {
                            bad("checksum mismatch")
                        } else {
                            match apply_record(&mut core, body[0], &body[1..]) {
                                Ok(()) => {
                                    off += 8 + len as usize;
                                    rec.records += 1;
                                    None
                                }
                                Err(e) => Some(e),
                            }
                        }
                    }
                };
                if let Some(reason) = problem {
                    rec.truncated_bytes = (data.len() - off) as u64;
                    warn!(logger, "raft log has a torn or corrupt tail; truncating it";
                        "path" => %path.display(), "offset" => off,
                        "dropped_bytes" => rec.truncated_bytes, "reason" => &reason);
                    rec.truncate_reason = Some(reason);
                    file.set_len(off as u64).map_err(io_err("truncate", &path))?;
                    file.sync_all().map_err(io_err("fsync", &path))?;
                    break;
                }
            }
        }
        rec.valid_bytes = off as u64;
        file.seek(SeekFrom::Start(off as u64)).map_err(io_err("seek", &path))?;
        info!(logger, "opened raft log"; "path" => %path.display(), "records" => rec.records,
            "first_index" => core.first_index(), "last_index" => core.last_index(),
            "term" => core.hard_state.term, "commit" => core.hard_state.commit);
        Ok((
            DiskStorage {
                core: Arc::new(RwLock::new(core)),
                writer: Arc::new(parking_lot::Mutex::new(Writer { file, path, fsync })),
            },
            rec,
        ))
    }

    /// True when nothing was ever written (a brand new node).
    pub fn is_empty(&self) -> bool {
        let c = self.core.read();
        c.snap.index == 0 && c.entries.is_empty() && c.hard_state == HardState::default()
    }

    /// Initializes a new cluster member: a bootstrap snapshot at index 1, term 1 whose conf
    /// state has `voters`. Every initial member does the same, so their logs agree.
    pub fn bootstrap(&self, voters: &[u64]) -> Result<(), StoreError> {
        let mut meta = SnapshotMetadata { index: 1, term: 1, ..Default::default() };
        meta.set_conf_state(ConfState { voters: voters.to_vec(), ..Default::default() });
        let mut b = WriteBatch::default();
        b.apply_snapshot(&meta, 1);
        b.set_hard_state(&HardState { term: 1, commit: 1, ..Default::default() });
        self.write(b)
    }

    /// Writes a batch durably (per the fsync policy) and then makes it visible.
    pub fn write(&self, mut b: WriteBatch) -> Result<(), StoreError> {
        let mut core = self.core.write();
        let hs = match b.hard_state.take() {
            Some(hs) => Some(hs),
            None if core.hs_dirty => Some(core.hard_state.clone()),
            None => None,
        };
        if let Some(hs) = &hs {
            put_record(&mut b.buf, KIND_HARD_STATE, &hs.write_to_bytes().unwrap_or_default());
        }
        if b.buf.is_empty() {
            return Ok(());
        }
        {
            let mut w = self.writer.lock();
            let Writer { file, path, fsync } = &mut *w;
            file.write_all(&b.buf).map_err(io_err("append to", path))?;
            if *fsync == FsyncPolicy::Always {
                file.sync_data().map_err(io_err("fdatasync", path))?;
            }
        }
        if let Some((meta, ci)) = b.snapshot.take() {
            core.put_snapshot(meta, ci);
        }
        for e in b.entries.drain(..) {
            if let Err(reason) = core.put_entry(e) {
                return Err(StoreError::Corrupt { path: self.writer.lock().path.clone(), offset: 0, reason });
            }
        }
        if let Some((cs, idx)) = b.conf.take() {
            core.conf_state = cs;
            core.conf_index = idx;
        }
        if let Some(hs) = hs {
            core.hard_state = hs;
        }
        core.hs_dirty = false;
        Ok(())
    }

    /// Records a new commit index (persisted with the next write).
    pub fn set_commit(&self, commit: u64) {
        let mut c = self.core.write();
        if c.hard_state.commit != commit {
            c.hard_state.commit = commit;
            c.hs_dirty = true;
        }
    }

    pub fn hard_state(&self) -> HardState {
        self.core.read().hard_state.clone()
    }
    pub fn conf_state(&self) -> (ConfState, u64) {
        let c = self.core.read();
        (c.conf_state.clone(), c.conf_index)
    }
    /// The conf index a snapshot carries in its data.
    pub fn snapshot_conf_index(snap: &Snapshot) -> u64 {
        u64_prefix(snap.get_data()).map(|(i, _)| i).unwrap_or(0)
    }
    pub fn path(&self) -> PathBuf {
        self.writer.lock().path.clone()
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("fsync directory", dir))
}

impl raft::Storage for DiskStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let c = self.core.read();
        Ok(RaftState::new(c.hard_state.clone(), c.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let c = self.core.read();
        if low < c.first_index() {
            return Err(raft::Error::Store(RaftStorageError::Compacted));
        }
        if high > c.last_index() + 1 || low > high {
            return Err(raft::Error::Store(RaftStorageError::Unavailable));
        }
        let off = c.first_index();
        let mut ents = c.entries[(low - off) as usize..(high - off) as usize].to_vec();
        raft::util::limit_size(&mut ents, max_size.into());
        Ok(ents)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let c = self.core.read();
        if idx == c.snap.index {
            return Ok(c.snap.term);
        }
        if idx < c.first_index() {
            return Err(raft::Error::Store(RaftStorageError::Compacted));
        }
        if idx > c.last_index() {
            return Err(raft::Error::Store(RaftStorageError::Unavailable));
        }
        Ok(c.entries[(idx - c.first_index()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.core.read().first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.core.read().last_index())
    }

    /// The log is never compacted, so the only snapshot is the bootstrap one at index 1. It is
    /// sent to brand-new members (added by a conf change) with the *current* conf state, which
    /// already contains them; the conf changes after it are replayed but skipped up to the
    /// conf index carried in the data.
    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let c = self.core.read();
        if c.snap.index == 0 {
            return Err(raft::Error::Store(RaftStorageError::SnapshotTemporarilyUnavailable));
        }
        let mut s = Snapshot::default();
        let mut m = c.snap.clone();
        m.set_conf_state(c.conf_state.clone());
        s.set_metadata(m);
        s.data = c.conf_index.to_le_bytes().to_vec().into();
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn logger() -> Logger {
        Logger::root(slog::Discard, slog::o!())
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ftstore-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn ent(index: u64, term: u64, data: &str) -> Entry {
        Entry { index, term, data: data.as_bytes().to_vec().into(), ..Default::default() }
    }

    fn fill(dir: &Path) {
        let (s, _) = DiskStorage::open(dir, FsyncPolicy::Always, &logger()).expect("open");
        s.bootstrap(&[1, 2, 3]).expect("bootstrap");
        let mut b = WriteBatch::default();
        b.append(&[ent(2, 2, "a"), ent(3, 2, "b"), ent(4, 2, "c")]);
        b.set_hard_state(&HardState { term: 2, vote: 1, commit: 3, ..Default::default() });
        s.write(b).expect("write");
        // Conflicting suffix from a new term replaces index 4.
        let mut b = WriteBatch::default();
        b.append(&[ent(4, 3, "c2"), ent(5, 3, "d")]);
        s.write(b).expect("write");
    }

    #[test]
    fn roundtrip_and_conflict_truncation() {
        let d = tmp("rt");
        fill(&d);
        let (s, rec) = DiskStorage::open(&d, FsyncPolicy::Always, &logger()).expect("reopen");
        assert_eq!(rec.truncated_bytes, 0);
        assert_eq!(s.first_index().expect("fi"), 2);
        assert_eq!(s.last_index().expect("li"), 5);
        assert_eq!(s.term(4).expect("t"), 3);
        assert_eq!(s.term(1).expect("t"), 1);
        let es = s.entries(2, 6, None, GetEntriesContext::empty(false)).expect("ents");
        let data: Vec<&[u8]> = es.iter().map(|e| &e.data[..]).collect();
        assert_eq!(data, vec![&b"a"[..], b"b", b"c2", b"d"]);
        let st = s.initial_state().expect("state");
        assert_eq!(st.hard_state.commit, 3);
        assert_eq!(st.hard_state.vote, 1);
        assert_eq!(st.conf_state.voters, vec![1, 2, 3]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn torn_tail_is_truncated() {
        let d = tmp("torn");
        fill(&d);
        let p = d.join(LOG_FILE);
        let len = std::fs::metadata(&p).expect("meta").len();
        // Cut the last record in half.
        let f = OpenOptions::new().write(true).open(&p).expect("open");
        f.set_len(len - 3).expect("truncate");
        drop(f);
        let (s, rec) = DiskStorage::open(&d, FsyncPolicy::Always, &logger()).expect("reopen");
        assert!(rec.truncated_bytes > 0, "{rec:?}");
        assert_eq!(rec.truncate_reason.as_deref(), Some("torn record (shorter than its length)"));
        assert_eq!(s.last_index().expect("li"), 4, "the torn record was entry 5");
        assert_eq!(s.term(4).expect("t"), 3);
        assert_eq!(std::fs::metadata(&p).expect("meta").len(), rec.valid_bytes);
        // And it can be appended to again.
        let mut b = WriteBatch::default();
        b.append(&[ent(5, 3, "e")]);
        s.write(b).expect("write");
        drop(s);
        let (s, rec) = DiskStorage::open(&d, FsyncPolicy::Always, &logger()).expect("reopen2");
        assert_eq!(rec.truncated_bytes, 0);
        assert_eq!(s.last_index().expect("li"), 5);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn corrupt_last_record_is_truncated() {
        let d = tmp("corrupt");
        fill(&d);
        let p = d.join(LOG_FILE);
        let mut bytes = std::fs::read(&p).expect("read");
        let n = bytes.len();
        bytes[n - 1] ^= 0xff;
        std::fs::write(&p, &bytes).expect("write");
        let (_s, rec) = DiskStorage::open(&d, FsyncPolicy::Always, &logger()).expect("reopen");
        assert_eq!(rec.truncate_reason.as_deref(), Some("checksum mismatch"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn foreign_file_and_lock_are_errors() {
        let d = tmp("foreign");
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join(LOG_FILE), b"hello world, not a log").expect("write");
        let e = DiskStorage::open(&d, FsyncPolicy::Always, &logger()).err();
        assert!(matches!(e, Some(StoreError::BadHeader { .. })), "{e:?}");
        let d2 = tmp("lock");
        let (_a, _) = DiskStorage::open(&d2, FsyncPolicy::Never, &logger()).expect("open");
        let e = DiskStorage::open(&d2, FsyncPolicy::Never, &logger()).err();
        assert!(matches!(e, Some(StoreError::Locked { .. })), "{e:?}");
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::remove_dir_all(&d2);
    }
}
