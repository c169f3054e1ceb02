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

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError as RaftStorageError};
use slog::{info, warn, Logger};

use crate::config::FsyncPolicy;

/// What every Raft log file starts with, before the byte of its format version: tools that only
/// need to recognise a log (of any version) compare this.
pub const LOG_MAGIC: &[u8; 7] = b"FTRAFT\0";
/// The format version this code reads and writes.
const LOG_VERSION: u8 = 1;
/// The file's header: [`LOG_MAGIC`] then [`LOG_VERSION`].
const MAGIC: &[u8; 8] = &magic();
/// The log's file name inside a node's data directory.
pub const LOG_FILE: &str = "raft.log";

const fn magic() -> [u8; 8] {
    let mut m = [LOG_VERSION; 8];
    let mut i = 0;
    while i < LOG_MAGIC.len() {
        m[i] = LOG_MAGIC[i];
        i += 1;
    }
    m
}
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

/// Where entry `i` lives in the file.
#[derive(Debug, Clone, Copy)]
struct Loc {
    term: u64,
    /// Offset of the record (its length field).
    off: u64,
    /// Whole record size, header included.
    len: u32,
}

/// Entries kept decoded in memory (the newest ones); older ones are read back from the file.
const CACHE_BYTES: usize = 32 << 20;

#[derive(Default)]
struct Core {
    /// One location per entry, `locs[i - first_index]`.
    locs: Vec<Loc>,
    /// The newest entries, decoded: indices `last_index - cache.len() + 1 ..= last_index`.
    cache: VecDeque<Entry>,
    cache_bytes: usize,
    cache_limit: usize,
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
        self.snap.index + self.locs.len() as u64
    }
    fn cache_first(&self) -> u64 {
        self.last_index() + 1 - self.cache.len() as u64
    }
    fn put_entry(&mut self, e: Entry, loc: Loc) -> Result<(), String> {
        if e.index <= self.snap.index {
            return Ok(());
        }
        let last = self.last_index();
        if e.index > last + 1 {
            return Err(format!("entry {} leaves a gap after {}", e.index, last));
        }
        // A conflicting entry replaces everything from its index on.
        let keep = (e.index - self.first_index()) as usize;
        self.locs.truncate(keep);
        while self.cache.back().is_some_and(|c| c.index >= e.index) {
            if let Some(c) = self.cache.pop_back() {
                self.cache_bytes -= c.data.len() + c.context.len();
            }
        }
        self.locs.push(loc);
        self.cache_bytes += e.data.len() + e.context.len();
        self.cache.push_back(e);
        while self.cache_bytes > self.cache_limit && self.cache.len() > 1 {
            if let Some(c) = self.cache.pop_front() {
                self.cache_bytes -= c.data.len() + c.context.len();
            }
        }
        Ok(())
    }
    fn put_snapshot(&mut self, meta: SnapshotMetadata, conf_index: u64) {
        self.locs.clear();
        self.cache.clear();
        self.cache_bytes = 0;
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
    /// File length = where the next batch goes.
    end: u64,
}

/// A batch of records written with one `write` (and one fsync).
#[derive(Default)]
pub struct WriteBatch {
    buf: Vec<u8>,
    /// Entries with their record's offset in `buf` and size.
    entries: Vec<(Entry, u64, u32)>,
    hard_state: Option<HardState>,
    conf: Option<(ConfState, u64)>,
    snapshot: Option<(SnapshotMetadata, u64)>,
    /// Skip the fsync (policy `always`) for this batch: only allowed when raft says the
    /// batch need not be durable before acting on it (`Ready::must_sync() == false`).
    no_sync: bool,
}

/// Appends one record to `buf`; returns its offset in `buf` and its size.
fn put_record(buf: &mut Vec<u8>, kind: u8, payload: &[u8]) -> (u64, u32) {
    let start = buf.len() as u64;
    let len = payload.len() as u32 + 1;
    let mut crc = crc32c::crc32c(&[kind]);
    crc = crc32c::crc32c_append(crc, payload);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(payload);
    (start, len + 8)
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    /// See `Ready::must_sync`: a batch holding only a new commit index need not be fsynced.
    pub fn set_must_sync(&mut self, must: bool) {
        self.no_sync = !must;
    }
    pub fn append(&mut self, ents: &[Entry]) {
        for e in ents {
            let bytes = e.write_to_bytes().unwrap_or_default();
            let (off, len) = put_record(&mut self.buf, KIND_ENTRY, &bytes);
            self.entries.push((e.clone(), off, len));
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
    /// Separate read handle for entries no longer cached (positional reads).
    reader: Arc<RwLock<File>>,
    /// Fault injection: when set, writes fail with an I/O error.
    fail_writes: Arc<AtomicBool>,
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

fn apply_record(core: &mut Core, kind: u8, p: &[u8], off: u64, len: u32) -> Result<(), String> {
    match kind {
        KIND_ENTRY => {
            let e = decode::<Entry>(p)?;
            let loc = Loc { term: e.term, off, len };
            core.put_entry(e, loc)
        }
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

/// Applies the records of a raft.log (after its header, at `*off`) to `core` up to the end or
/// the first torn or corrupt record; returns what is wrong there (None: the whole file is good).
fn scan(
    r: &mut impl Read,
    path: &Path,
    file_len: u64,
    off: &mut u64,
    core: &mut Core,
    rec: &mut Recovery,
) -> Result<Option<String>, StoreError> {
    let mut body = Vec::new();
    loop {
        let rest = file_len - *off;
        if rest == 0 {
            return Ok(None);
        }
        if rest < 9 {
            return Ok(Some("torn record header".to_string()));
        }
        let mut h = [0u8; 8];
        r.read_exact(&mut h).map_err(io_err("read", path))?;
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        if len == 0 || len > MAX_RECORD {
            return Ok(Some("impossible record length".to_string()));
        }
        if rest < 8 + len as u64 {
            return Ok(Some("torn record (shorter than its length)".to_string()));
        }
        body.resize(len as usize, 0);
        r.read_exact(&mut body).map_err(io_err("read", path))?;
        if crc32c::crc32c(&body) != crc {
            return Ok(Some("checksum mismatch".to_string()));
        }
        if let Err(e) = apply_record(core, body[0], &body[1..], *off, len + 8) {
            return Ok(Some(e));
        }
        *off += 8 + len as u64;
        rec.records += 1;
    }
}

/// The committed entries of a node's log, read without changing the file.
#[derive(Debug, Clone, Default)]
pub struct CommittedLog {
    /// Entries `first_index..=commit`, in order.
    pub entries: Vec<Entry>,
    /// The first index the log still has (entries before it went into a snapshot).
    pub first_index: u64,
    pub commit: u64,
    pub term: u64,
    /// A torn or corrupt tail (the node truncates it when it starts): where and why.
    pub damaged: Option<(u64, String)>,
}

/// Reads the committed entries of the log in `dir` (a node's data directory, or its raft.log),
/// read-only, while no node uses it (a running node holds its lock: [`StoreError::Locked`]).
pub fn read_committed(dir: &Path) -> Result<CommittedLog, StoreError> {
    let path = if dir.is_dir() { dir.join(LOG_FILE) } else { dir.to_path_buf() };
    let file = File::open(&path).map_err(io_err("open", &path))?;
    // SAFETY: flock on a valid, owned file descriptor; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } != 0 {
        return Err(StoreError::Locked { path });
    }
    let file_len = file.metadata().map_err(io_err("stat", &path))?.len();
    let mut r = BufReader::with_capacity(1 << 20, &file);
    let mut head = [0u8; 8];
    if file_len < MAGIC.len() as u64 || r.read_exact(&mut head).is_err() || &head != MAGIC {
        return Err(StoreError::BadHeader { path });
    }
    let mut core = Core { cache_limit: usize::MAX, ..Default::default() };
    let mut off = MAGIC.len() as u64;
    let problem = scan(&mut r, &path, file_len, &mut off, &mut core, &mut Recovery::default())?;
    let commit = core.hard_state.commit.min(core.last_index());
    let first_index = core.first_index();
    let entries = core.cache.into_iter().take_while(|e| e.index <= commit).collect();
    Ok(CommittedLog { entries, first_index, commit, term: core.hard_state.term, damaged: problem.map(|p| (off, p)) })
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
        let file_len = file.metadata().map_err(io_err("stat", &path))?.len();
        let mut core = Core { cache_limit: CACHE_BYTES, ..Default::default() };
        let mut rec = Recovery::default();
        let mut off: u64;
        if file_len < MAGIC.len() as u64 {
            let mut head = Vec::new();
            file.read_to_end(&mut head).map_err(io_err("read", &path))?;
            if !MAGIC.starts_with(&head) {
                return Err(StoreError::BadHeader { path });
            }
            // Empty or torn header: (re)write it.
            file.set_len(0).map_err(io_err("truncate", &path))?;
            file.seek(SeekFrom::Start(0)).map_err(io_err("seek", &path))?;
            file.write_all(MAGIC).map_err(io_err("write header", &path))?;
            file.sync_all().map_err(io_err("fsync", &path))?;
            sync_dir(dir)?;
            off = MAGIC.len() as u64;
        } else {
            let mut r = BufReader::with_capacity(1 << 20, &mut file);
            let mut head = [0u8; 8];
            r.read_exact(&mut head).map_err(io_err("read", &path))?;
            if &head != MAGIC {
                return Err(StoreError::BadHeader { path });
            }
            off = MAGIC.len() as u64;
            let problem = scan(&mut r, &path, file_len, &mut off, &mut core, &mut rec)?;
            if let Some(reason) = problem {
                rec.truncated_bytes = file_len - off;
                warn!(logger, "raft log has a torn or corrupt tail; truncating it";
                    "path" => %path.display(), "offset" => off,
                    "dropped_bytes" => rec.truncated_bytes, "reason" => &reason);
                rec.truncate_reason = Some(reason);
                drop(r);
                file.set_len(off).map_err(io_err("truncate", &path))?;
                file.sync_all().map_err(io_err("fsync", &path))?;
            }
        }
        rec.valid_bytes = off;
        file.seek(SeekFrom::Start(off)).map_err(io_err("seek", &path))?;
        let reader = File::open(&path).map_err(io_err("open", &path))?;
        info!(logger, "opened raft log"; "path" => %path.display(), "records" => rec.records,
            "first_index" => core.first_index(), "last_index" => core.last_index(),
            "term" => core.hard_state.term, "commit" => core.hard_state.commit);
        Ok((
            DiskStorage {
                core: Arc::new(RwLock::new(core)),
                reader: Arc::new(RwLock::new(reader)),
                fail_writes: Arc::new(AtomicBool::new(false)),
                writer: Arc::new(parking_lot::Mutex::new(Writer { file, path, fsync, end: off })),
            },
            rec,
        ))
    }

    /// True when nothing was ever written (a brand new node).
    pub fn is_empty(&self) -> bool {
        let c = self.core.read();
        c.snap.index == 0 && c.locs.is_empty() && c.hard_state == HardState::default()
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
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(StoreError::Io {
                op: "append to",
                path: self.writer.lock().path.clone(),
                source: std::io::Error::other("injected disk failure"),
            });
        }
        let base = {
            let mut w = self.writer.lock();
            let Writer { file, path, fsync, end } = &mut *w;
            let base = *end;
            let res = file.write_all(&b.buf).map_err(io_err("append to", path)).and_then(|()| {
                if *fsync == FsyncPolicy::Always && !b.no_sync {
                    file.sync_data().map_err(io_err("fdatasync", path))
                } else {
                    Ok(())
                }
            });
            if let Err(e) = res {
                // Roll back a partial write so offsets stay right; the caller stops the node.
                let _ = file.set_len(base);
                let _ = file.seek(SeekFrom::Start(base));
                return Err(e);
            }
            *end += b.buf.len() as u64;
            base
        };
        if let Some((meta, ci)) = b.snapshot.take() {
            core.put_snapshot(meta, ci);
        }
        for (e, off, len) in b.entries.drain(..) {
            let loc = Loc { term: e.term, off: base + off, len };
            if let Err(reason) = core.put_entry(e, loc) {
                return Err(StoreError::Corrupt { path: self.writer.lock().path.clone(), offset: base + off, reason });
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

    /// Reads one entry back from the file, checking its checksum again.
    fn read_entry(&self, idx: u64, loc: Loc) -> Result<Entry, StoreError> {
        use std::os::unix::fs::FileExt;
        let path = || self.writer.lock().path.clone();
        let mut buf = vec![0u8; loc.len as usize];
        self.reader.read().read_exact_at(&mut buf, loc.off).map_err(|source| StoreError::Io {
            op: "read entry from",
            path: path(),
            source,
        })?;
        let bad = |reason: String| StoreError::Corrupt { path: path(), offset: loc.off, reason };
        if buf.len() < 9 {
            return Err(bad(format!("entry {idx} has an impossible size")));
        }
        let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
        if crc32c::crc32c(&buf[8..]) != crc || buf[8] != KIND_ENTRY {
            return Err(bad(format!("entry {idx} fails its checksum on read")));
        }
        let e: Entry = decode(&buf[9..]).map_err(bad)?;
        if e.index != idx {
            return Err(bad(format!("expected entry {idx}, found {}", e.index)));
        }
        Ok(e)
    }

    /// Drops the entries up to `index` (they are in a checkpoint of the program): the file is
    /// rewritten as a snapshot record at `index` (its term, the current configuration) and the
    /// entries after it, under a temporary name, fsynced, locked and renamed over the log. A
    /// crash leaves the old log or the new one whole. No-op (false) if `index` is not after the
    /// current snapshot, or while the entries to keep outweigh those that would go (the rewrite
    /// copies what is kept: so it costs at most as much as was appended); refused beyond the
    /// commit index.
    pub fn compact(&self, index: u64) -> Result<bool, StoreError> {
        use std::os::unix::fs::FileExt;
        let mut core = self.core.write();
        let mut w = self.writer.lock();
        let path = w.path.clone();
        if index <= core.snap.index {
            return Ok(false);
        }
        if index > core.hard_state.commit || index > core.last_index() {
            return Err(StoreError::Corrupt {
                path,
                offset: 0,
                reason: format!("compaction to {index} beyond the commit index {}", core.hard_state.commit),
            });
        }
        // Amortized: the rewrite copies what is kept, so it waits until at least as much can go.
        if let Some(first_kept) = core.locs.get((index + 1 - core.first_index()) as usize) {
            let dropped = first_kept.off.saturating_sub(MAGIC.len() as u64);
            if w.end.saturating_sub(first_kept.off) > dropped {
                return Ok(false);
            }
        }
        let term = core.locs[(index - core.first_index()) as usize].term;
        let mut meta = SnapshotMetadata { index, term, ..Default::default() };
        meta.set_conf_state(core.conf_state.clone());
        let mut head = WriteBatch::default();
        head.apply_snapshot(&meta, core.conf_index);
        put_record(&mut head.buf, KIND_HARD_STATE, &core.hard_state.write_to_bytes().unwrap_or_default());
        head.set_conf_state(&core.conf_state.clone(), core.conf_index);
        let tmp = path.with_extension("compact");
        let mut out = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        // SAFETY: flock on a valid, owned file descriptor; no memory is passed.
        if unsafe { libc::flock(out.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(StoreError::Locked { path: tmp });
        }
        let mut buf = MAGIC.to_vec();
        buf.extend_from_slice(&head.buf);
        let mut locs = Vec::with_capacity(core.locs.len());
        {
            let reader = self.reader.read();
            for (i, loc) in core.locs.iter().enumerate() {
                if core.first_index() + (i as u64) <= index {
                    continue;
                }
                let mut rec = vec![0u8; loc.len as usize];
                reader.read_exact_at(&mut rec, loc.off).map_err(io_err("read", &path))?;
                locs.push(Loc { term: loc.term, off: buf.len() as u64, len: loc.len });
                buf.extend_from_slice(&rec);
            }
        }
        out.write_all(&buf).and_then(|()| out.sync_all()).map_err(io_err("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        let reader = File::open(&path).map_err(io_err("open", &path))?;
        out.seek(SeekFrom::End(0)).map_err(io_err("seek", &path))?;
        w.end = buf.len() as u64;
        w.file = out;
        *self.reader.write() = reader;
        core.snap = meta;
        core.snap_conf_index = core.conf_index;
        core.locs = locs;
        while core.cache.front().is_some_and(|e| e.index <= index) {
            if let Some(c) = core.cache.pop_front() {
                core.cache_bytes -= c.data.len() + c.context.len();
            }
        }
        Ok(true)
    }

    /// Bytes of the log file.
    pub fn file_len(&self) -> u64 {
        self.writer.lock().end
    }

    /// The switch that makes writes fail (fault injection for tests).
    pub fn write_fault_switch(&self) -> Arc<AtomicBool> {
        self.fail_writes.clone()
    }

    /// Changes how many bytes of recent entries stay decoded in memory (default 32 MiB).
    pub fn set_cache_limit(&self, bytes: usize) {
        let mut c = self.core.write();
        c.cache_limit = bytes;
        while c.cache_bytes > c.cache_limit && c.cache.len() > 1 {
            if let Some(e) = c.cache.pop_front() {
                c.cache_bytes -= e.data.len() + e.context.len();
            }
        }
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
        let max = max_size.into().unwrap_or(u64::MAX);
        let cache_first = c.cache_first();
        let mut ents = Vec::with_capacity((high - low).min(1024) as usize);
        let mut size = 0u64;
        for idx in low..high {
            let e = if idx >= cache_first {
                c.cache[(idx - cache_first) as usize].clone()
            } else {
                let loc = c.locs[(idx - c.first_index()) as usize];
                self.read_entry(idx, loc)?
            };
            size += protobuf::Message::compute_size(&e) as u64;
            if !ents.is_empty() && size > max {
                break;
            }
            ents.push(e);
        }
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
        Ok(c.locs[(idx - c.first_index()) as usize].term)
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
mod tests;
