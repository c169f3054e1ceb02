//! The log file: a preamble (magic and version), then length-prefixed protobuf records, each
//! with a crc32c. Record 0 is the [`Header`]; the rest are [`Event`]s, the last one an Exit when
//! the recording finished.
//!
//! ```text
//! "FTEXECLG" | u32 version (LE) | { u32 len (LE) | u32 crc32c(payload) (LE) | payload }*
//! ```

use crate::proto::{Event, Header};
use prost::Message;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

pub const MAGIC: &[u8; 8] = b"FTEXECLG";
/// 2: process state (`ProcState`) in Start, Exec and state-changing Syscall events; those
/// syscalls (chdir, setuid, umask, setrlimit...) run at replay.
/// 3: the syscall buffer (`Patch` events, `Syscall.buffered`).
/// 4: a file mapping that replay makes anonymous (`Disposition::AnonMap`) runs holding the token
/// at record, so its completion is the next event of its task.
pub const VERSION: u32 = 4;
/// A record larger than this is taken as a corrupt length, not an allocation request.
pub const MAX_RECORD: u32 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot open log {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot write log {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read log {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is not an ftexec log (bad magic); record one with `ftexec record -o FILE -- PROG`")]
    BadMagic { path: PathBuf },
    #[error("{path} is log format version {found}, this ftexec reads version {VERSION}; replay it with the ftexec that recorded it")]
    BadVersion { path: PathBuf, found: u32 },
    #[error("{path} is truncated in record {index} (at byte {offset}): the recording was cut short (disk full, or ftexec killed); the log cannot be replayed past this point")]
    Truncated { path: PathBuf, index: u64, offset: u64 },
    #[error("{path} is corrupt at record {index} (byte {offset}): {what}; the file was damaged after recording")]
    Corrupt { path: PathBuf, index: u64, offset: u64, what: String },
    #[error("{path} has no header record")]
    NoHeader { path: PathBuf },
}

/// Encodes one record (length, checksum, payload) onto `out`.
pub fn encode_record(msg: &impl Message, out: &mut Vec<u8>) {
    let len = msg.encoded_len();
    out.reserve(8 + len);
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    // Encoding into a Vec cannot run out of space.
    let _ = msg.encode(out);
    let payload_len = (out.len() - start - 8) as u32;
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Writes a log file.
pub struct LogWriter {
    path: PathBuf,
    out: BufWriter<File>,
    buf: Vec<u8>,
    events: u64,
    bytes: u64,
}

impl LogWriter {
    pub fn create(path: &Path, header: &Header) -> Result<Self, LogError> {
        let file = File::create(path).map_err(|source| LogError::Open { path: path.into(), source })?;
        let mut w = LogWriter {
            path: path.into(),
            out: BufWriter::with_capacity(1 << 16, file),
            buf: Vec::with_capacity(4096),
            events: 0,
            bytes: 0,
        };
        let mut pre = MAGIC.to_vec();
        pre.extend_from_slice(&VERSION.to_le_bytes());
        w.put(&pre)?;
        w.buf.clear();
        encode_record(header, &mut w.buf);
        let rec = std::mem::take(&mut w.buf);
        w.put(&rec)?;
        w.buf = rec;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), LogError> {
        self.bytes += bytes.len() as u64;
        self.out.write_all(bytes).map_err(|source| LogError::Write { path: self.path.clone(), source })
    }

    pub fn append(&mut self, ev: &Event) -> Result<(), LogError> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        encode_record(ev, &mut buf);
        let r = self.put(&buf);
        self.buf = buf;
        self.events += 1;
        r
    }

    /// Flushes and fsyncs the file.
    pub fn finish(mut self) -> Result<(u64, u64), LogError> {
        let path = self.path.clone();
        let werr = |source| LogError::Write { path: path.clone(), source };
        self.out.flush().map_err(werr)?;
        self.out.get_ref().sync_all().map_err(werr)?;
        Ok((self.events, self.bytes))
    }

    pub fn events(&self) -> u64 {
        self.events
    }
}

/// Reads a log file record by record.
pub struct LogReader {
    path: PathBuf,
    input: BufReader<File>,
    header: Header,
    index: u64,
    offset: u64,
    buf: Vec<u8>,
}

impl LogReader {
    pub fn open(path: &Path) -> Result<Self, LogError> {
        let file = File::open(path).map_err(|source| LogError::Open { path: path.into(), source })?;
        let mut input = BufReader::with_capacity(1 << 16, file);
        let mut pre = [0u8; 12];
        match input.read_exact(&mut pre) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(LogError::BadMagic { path: path.into() }),
            Err(source) => return Err(LogError::Read { path: path.into(), source }),
        }
        if &pre[..8] != MAGIC {
            return Err(LogError::BadMagic { path: path.into() });
        }
        let found = u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]]);
        if found != VERSION {
            return Err(LogError::BadVersion { path: path.into(), found });
        }
        let mut r =
            LogReader { path: path.into(), input, header: Header::default(), index: 0, offset: 12, buf: Vec::new() };
        let header = match r.next_payload()? {
            Some(()) => Header::decode(&r.buf[..]).map_err(|e| r.corrupt(format!("undecodable header: {e}")))?,
            None => return Err(LogError::NoHeader { path: path.into() }),
        };
        r.header = header;
        Ok(r)
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Index of the next event (0-based; the header is not counted).
    pub fn position(&self) -> u64 {
        self.index.saturating_sub(1)
    }

    fn corrupt(&self, what: String) -> LogError {
        LogError::Corrupt { path: self.path.clone(), index: self.index, offset: self.offset, what }
    }

    /// Reads the next record's payload into self.buf; None at a clean end of file.
    fn next_payload(&mut self) -> Result<Option<()>, LogError> {
        let mut head = [0u8; 8];
        let mut got = 0;
        while got < head.len() {
            match self.input.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(LogError::Read { path: self.path.clone(), source }),
            }
        }
        if got == 0 {
            return Ok(None);
        }
        let truncated = LogError::Truncated { path: self.path.clone(), index: self.index, offset: self.offset };
        if got < head.len() {
            return Err(truncated);
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_RECORD {
            return Err(self.corrupt(format!("record length {len} is impossible")));
        }
        self.buf.resize(len as usize, 0);
        match self.input.read_exact(&mut self.buf) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(truncated),
            Err(source) => return Err(LogError::Read { path: self.path.clone(), source }),
        }
        if crc32c::crc32c(&self.buf) != crc {
            return Err(self.corrupt("checksum mismatch".into()));
        }
        self.index += 1;
        self.offset += 8 + len as u64;
        Ok(Some(()))
    }

    /// Checks every remaining record's length and checksum without decoding; returns how many
    /// records there were.
    pub fn verify_rest(&mut self) -> Result<u64, LogError> {
        let mut n = 0;
        while self.next_payload()?.is_some() {
            n += 1;
        }
        Ok(n)
    }

    /// The next event, or None at the end of the log.
    pub fn next_event(&mut self) -> Result<Option<Event>, LogError> {
        match self.next_payload()? {
            None => Ok(None),
            Some(()) => {
                Event::decode(&self.buf[..]).map(Some).map_err(|e| self.corrupt(format!("undecodable event: {e}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{event::Kind, Exit, Syscall};

    fn sample(dir: &Path) -> PathBuf {
        let path = dir.join("t.ftlog");
        let header = Header { version: VERSION, exe_path: b"/bin/true".to_vec(), ..Default::default() };
        let mut w = LogWriter::create(&path, &header).expect("create");
        for i in 0..10 {
            let ev = Event { kind: Some(Kind::Syscall(Syscall { nr: 228, ret: i, ..Default::default() })) };
            w.append(&ev).expect("append");
        }
        w.append(&Event { kind: Some(Kind::Exit(Exit { code: 3, signal: 0, task: 0 })) }).expect("append");
        w.finish().expect("finish");
        path
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ftlog-test-{}-{name}", std::process::id()));
        let _ = std::fs::create_dir_all(&d);
        d
    }

    fn read_all(path: &Path) -> Result<Vec<Event>, LogError> {
        let mut r = LogReader::open(path)?;
        let mut v = Vec::new();
        while let Some(e) = r.next_event()? {
            v.push(e);
        }
        Ok(v)
    }

    #[test]
    fn roundtrip() {
        let p = sample(&tmpdir("rt"));
        let r = LogReader::open(&p).expect("open");
        assert_eq!(r.header().exe_path, b"/bin/true");
        let evs = read_all(&p).expect("read");
        assert_eq!(evs.len(), 11);
        assert!(matches!(evs[10].kind, Some(Kind::Exit(Exit { code: 3, .. }))));
    }

    #[test]
    fn truncation_and_corruption_are_reported() {
        let p = sample(&tmpdir("bad"));
        let bytes = std::fs::read(&p).expect("read");
        // Cut in the middle of the last record.
        std::fs::write(&p, &bytes[..bytes.len() - 3]).expect("write");
        assert!(matches!(read_all(&p), Err(LogError::Truncated { index: 11, .. })));
        // Flip a payload byte of the third record.
        let mut b = bytes.clone();
        let n = b.len();
        b[n - 1] ^= 0xff;
        std::fs::write(&p, &b).expect("write");
        assert!(matches!(read_all(&p), Err(LogError::Corrupt { .. })));
        // A huge bogus length.
        let mut b = bytes.clone();
        let hdr_len = u32::from_le_bytes([b[12], b[13], b[14], b[15]]) as usize;
        let first_event = 12 + 8 + hdr_len;
        b[first_event..first_event + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&p, &b).expect("write");
        assert!(matches!(read_all(&p), Err(LogError::Corrupt { .. })));
        // Not a log at all; an empty file.
        std::fs::write(&p, b"hello world, not a log").expect("write");
        assert!(matches!(LogReader::open(&p), Err(LogError::BadMagic { .. })));
        std::fs::write(&p, b"").expect("write");
        assert!(matches!(LogReader::open(&p), Err(LogError::BadMagic { .. })));
        let mut b = bytes;
        b[8] = 99;
        std::fs::write(&p, &b).expect("write");
        assert!(matches!(LogReader::open(&p), Err(LogError::BadVersion { found: 99, .. })));
    }
}
