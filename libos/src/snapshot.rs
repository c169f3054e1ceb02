//! The checkpoint file: one versioned, checksummed, compressed file per checkpoint.
//!
//! ```text
//! magic "FTCKPT\0\n" | format version u32 LE
//! head length u32 LE | head (JSON, uncompressed: listed without reading the rest) | crc32c u32 LE
//! part count u32 LE
//! per part: raw length u64 LE | stored length u64 LE (bit 63: stored uncompressed) |
//!           crc32c of the stored bytes u32 LE | stored bytes (an LZ4 block, or the raw bytes when
//!           a sample of them does not compress: random values, already compressed data)
//! ```
//! The parts are ft-replay's (replay state, page bytes, the data directory). A file is written
//! under a temporary name, fsynced and renamed, so a crash or a full disk leaves either the whole
//! checkpoint or none. The data directory's content is kept as an archive ([`pack_dir`]).

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const MAGIC: &[u8; 8] = b"FTCKPT\0\n";
pub const VERSION: u32 = 1;
/// No part may claim more than this (a corrupt length must not make us allocate it).
const MAX_PART: u64 = 64 << 30;
/// The stored-length bit of a part kept uncompressed.
const RAW: u64 = 1 << 63;

/// Whether LZ4 is worth running on `p`: a 1 MiB sample must shrink by a tenth.
fn compresses(p: &[u8]) -> bool {
    let sample = &p[..p.len().min(1 << 20)];
    sample.len() < 4096 || lz4_flex::block::compress(sample).len() * 10 < sample.len() * 9
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not an ftexec checkpoint (no FTCKPT header)")]
    NotACheckpoint { path: PathBuf },
    #[error("{path} is a checkpoint of format version {found}; this ftexec reads version {VERSION} (take a new checkpoint with this ftexec)")]
    Version { path: PathBuf, found: u32 },
    #[error("{path} is cut short ({what}): a partial or damaged checkpoint")]
    Truncated { path: PathBuf, what: String },
    #[error("{path} is damaged: the checksum of its {what} does not match")]
    Checksum { path: PathBuf, what: String },
    #[error("{path} is damaged: {what} does not decompress ({why})")]
    Decompress { path: PathBuf, what: String, why: String },
    #[error("data directory archive: {0}")]
    Archive(String),
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io { path: path.to_path_buf(), source }
}

/// Writes a checkpoint file atomically (temporary name, rename); with `durable`, fsynced before
/// the rename and its directory after. Without, a crash may leave a damaged file, which its
/// checksums refuse: whoever relies on the file (log compaction) calls [`sync`] first.
/// Returns its size.
pub fn write(path: &Path, head: &[u8], parts: &[&[u8]], durable: bool) -> Result<u64, SnapshotError> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(head.len() as u32).to_le_bytes());
    out.extend_from_slice(head);
    out.extend_from_slice(&crc32c::crc32c(head).to_le_bytes());
    out.extend_from_slice(&(parts.len() as u32).to_le_bytes());
    let tmp = path.with_extension("tmp");
    let e = io_err(&tmp);
    let mut f = std::io::BufWriter::with_capacity(1 << 20, fs::File::create(&tmp).map_err(&e)?);
    let mut total = out.len() as u64;
    let mut written = f.write_all(&out);
    for p in parts {
        if written.is_err() {
            break;
        }
        let packed;
        let (stored, flag): (&[u8], u64) = if compresses(p) {
            packed = lz4_flex::block::compress(p);
            (&packed, 0)
        } else {
            (p, RAW)
        };
        let mut h = Vec::with_capacity(20);
        h.extend_from_slice(&(p.len() as u64).to_le_bytes());
        h.extend_from_slice(&(stored.len() as u64 | flag).to_le_bytes());
        h.extend_from_slice(&crc32c::crc32c(stored).to_le_bytes());
        total += (h.len() + stored.len()) as u64;
        written = f.write_all(&h).and_then(|()| f.write_all(stored));
    }
    let written = written.and_then(|()| f.into_inner().map_err(|e| e.into_error())).and_then(|f| {
        if durable {
            f.sync_all()
        } else {
            Ok(())
        }
    });
    if let Err(err) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e(err));
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    if durable {
        sync(path)?;
    }
    Ok(total)
}

/// Makes a checkpoint file and its name durable (fsync of the file and of its directory).
pub fn sync(path: &Path) -> Result<(), SnapshotError> {
    fs::File::open(path).and_then(|f| f.sync_all()).map_err(io_err(path))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = fs::File::open(if dir.as_os_str().is_empty() { Path::new(".") } else { dir }) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

struct Cursor<'a> {
    path: &'a Path,
    data: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], SnapshotError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| SnapshotError::Truncated { path: self.path.to_path_buf(), what: what.to_string() })?;
        let s = &self.data[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32, SnapshotError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &str) -> Result<u64, SnapshotError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

fn read_head_of<'a>(c: &mut Cursor<'a>) -> Result<&'a [u8], SnapshotError> {
    if c.data.len() < 8 || &c.data[..8] != MAGIC {
        return Err(SnapshotError::NotACheckpoint { path: c.path.to_path_buf() });
    }
    c.at = 8;
    let version = c.u32("its version")?;
    if version != VERSION {
        return Err(SnapshotError::Version { path: c.path.to_path_buf(), found: version });
    }
    let n = c.u32("its head length")? as usize;
    let head = c.take(n, "its head")?;
    if c.u32("its head checksum")? != crc32c::crc32c(head) {
        return Err(SnapshotError::Checksum { path: c.path.to_path_buf(), what: "head".into() });
    }
    Ok(head)
}

/// The head of a checkpoint file (checked), without reading its parts.
pub fn read_head(path: &Path) -> Result<Vec<u8>, SnapshotError> {
    use std::io::Read;
    let mut f = fs::File::open(path).map_err(io_err(path))?;
    let mut start = vec![0u8; 16];
    let n = f.read(&mut start).map_err(io_err(path))?;
    start.truncate(n);
    if n < 16 {
        let mut c = Cursor { path, data: &start, at: 0 };
        return read_head_of(&mut c).map(<[u8]>::to_vec);
    }
    let head_len = u32::from_le_bytes([start[12], start[13], start[14], start[15]]) as usize;
    let mut rest = vec![0u8; head_len.min(1 << 24) + 4];
    let got = f.read(&mut rest).map_err(io_err(path))?;
    let mut all = start;
    all.extend_from_slice(&rest[..got]);
    let mut c = Cursor { path, data: &all, at: 0 };
    read_head_of(&mut c).map(<[u8]>::to_vec)
}

/// Reads and checks a whole checkpoint file: its head and its parts, decompressed.
pub fn read(path: &Path) -> Result<(Vec<u8>, Vec<Vec<u8>>), SnapshotError> {
    let data = fs::read(path).map_err(io_err(path))?;
    let mut c = Cursor { path, data: &data, at: 0 };
    let head = read_head_of(&mut c)?.to_vec();
    let count = c.u32("its part count")?;
    let mut parts = Vec::new();
    for i in 0..count {
        let what = format!("part {i}");
        let raw = c.u64(&what)?;
        let stored_field = c.u64(&what)?;
        let (stored_len, uncompressed) = (stored_field & !RAW, stored_field & RAW != 0);
        if raw > MAX_PART || stored_len > MAX_PART {
            return Err(SnapshotError::Truncated {
                path: path.to_path_buf(),
                what: format!("{what} has an impossible length"),
            });
        }
        let crc = c.u32(&what)?;
        let stored = c.take(stored_len as usize, &what)?;
        if crc32c::crc32c(stored) != crc {
            return Err(SnapshotError::Checksum { path: path.to_path_buf(), what });
        }
        let part = if uncompressed {
            if stored_len != raw {
                return Err(SnapshotError::Truncated {
                    path: path.to_path_buf(),
                    what: format!("{what} has an impossible length"),
                });
            }
            stored.to_vec()
        } else {
            lz4_flex::block::decompress(stored, raw as usize).map_err(|e| SnapshotError::Decompress {
                path: path.to_path_buf(),
                what: what.clone(),
                why: e.to_string(),
            })?
        };
        parts.push(part);
    }
    if c.at != data.len() {
        return Err(SnapshotError::Truncated { path: path.to_path_buf(), what: "bytes after its last part".into() });
    }
    Ok((head, parts))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// An archive of everything under `dir`: per entry, its relative path, type, permission bits,
/// owner and group, and content (files) or target (symlinks), in sorted order.
pub fn pack_dir(dir: &Path) -> Result<Vec<u8>, SnapshotError> {
    let mut out = Vec::new();
    pack(dir, Path::new(""), &mut out)?;
    Ok(out)
}

fn put(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    out.extend_from_slice(b);
}

fn pack(root: &Path, rel: &Path, out: &mut Vec<u8>) -> Result<(), SnapshotError> {
    let here = root.join(rel);
    let mut names: Vec<_> =
        fs::read_dir(&here).map_err(io_err(&here))?.filter_map(|e| e.ok().map(|e| e.file_name())).collect();
    names.sort();
    for name in names {
        let rel_child = rel.join(&name);
        let path = root.join(&rel_child);
        let md = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        let ft = md.file_type();
        let (kind, body) = if ft.is_dir() {
            (b'd', Vec::new())
        } else if ft.is_symlink() {
            (b'l', fs::read_link(&path).map_err(io_err(&path))?.into_os_string().into_encoded_bytes())
        } else if ft.is_file() {
            (b'f', fs::read(&path).map_err(io_err(&path))?)
        } else {
            return Err(SnapshotError::Archive(format!(
                "{} is neither a file, a directory nor a symlink",
                path.display()
            )));
        };
        out.push(kind);
        out.extend_from_slice(&(md.mode() & 0o7777).to_le_bytes());
        out.extend_from_slice(&md.uid().to_le_bytes());
        out.extend_from_slice(&md.gid().to_le_bytes());
        put(out, rel_child.as_os_str().as_encoded_bytes());
        put(out, &body);
        if kind == b'd' {
            pack(root, &rel_child, out)?;
        }
    }
    Ok(())
}

/// Makes `dir` hold exactly what [`pack_dir`] archived: its old content goes first.
pub fn unpack_dir(archive: &[u8], dir: &Path) -> Result<(), SnapshotError> {
    if dir.exists() {
        for e in fs::read_dir(dir).map_err(io_err(dir))?.flatten() {
            let p = e.path();
            let r = if e.file_type().is_ok_and(|t| t.is_dir()) { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
            r.map_err(io_err(&p))?;
        }
    } else {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let bad = |why: &str| SnapshotError::Archive(format!("damaged archive: {why}"));
    let mut c = Cursor { path: dir, data: archive, at: 0 };
    let mut dirs = Vec::new();
    while c.at < archive.len() {
        let kind = c.take(1, "entry").map_err(|_| bad("entry cut short"))?[0];
        let mode = c.u32("mode").map_err(|_| bad("mode cut short"))?;
        let uid = c.u32("owner").map_err(|_| bad("owner cut short"))?;
        let gid = c.u32("group").map_err(|_| bad("group cut short"))?;
        let n = c.u64("path").map_err(|_| bad("path cut short"))? as usize;
        let rel = c.take(n, "path").map_err(|_| bad("path cut short"))?;
        let n = c.u64("body").map_err(|_| bad("body cut short"))? as usize;
        let body = c.take(n, "body").map_err(|_| bad("body cut short"))?;
        let rel = Path::new(OsStr::from_bytes(rel));
        if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(bad(&format!("entry {} leaves the directory", rel.display())));
        }
        let path = dir.join(rel);
        match kind {
            b'd' => {
                fs::create_dir_all(&path).map_err(io_err(&path))?;
                dirs.push((path.clone(), mode));
            }
            b'f' => {
                fs::write(&path, body).map_err(io_err(&path))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io_err(&path))?;
            }
            b'l' => {
                std::os::unix::fs::symlink(OsStr::from_bytes(body), &path).map_err(io_err(&path))?;
            }
            _ => return Err(bad("unknown entry type")),
        }
        // Owners as they were (a server that dropped to its own user owns its files); only
        // root may give files away, and then it must.
        if is_root() {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).map_err(io_err(&path))?;
        }
    }
    // Directories last: a read-only one must still take its entries first.
    for (path, mode) in dirs.into_iter().rev() {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io_err(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ftsnap-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("mkdir");
        d
    }

    #[test]
    fn round_trip_and_damage() {
        let d = tmp("rt");
        let f = d.join("a.ftckpt");
        let pages = vec![7u8; 100_000];
        // Bytes that do not compress are stored as they are.
        let noise: Vec<u8> = (0..50_000u64).map(|i| (i.wrapping_mul(6364136223846793005) >> 56) as u8).collect();
        let size = write(&f, b"{\"event\":5}", &[b"state", &pages, &noise], true).expect("write");
        assert!(size < 62_000, "compressed: {size}");
        let (head, parts) = read(&f).expect("read");
        assert_eq!(head, b"{\"event\":5}");
        assert_eq!(parts, vec![b"state".to_vec(), pages.clone(), noise.clone()]);
        assert_eq!(read_head(&f).expect("head"), b"{\"event\":5}");
        let good = fs::read(&f).expect("read");
        // Cut short anywhere: refused, never a panic.
        for cut in [0, 5, 12, 20, good.len() / 2, good.len() - 1] {
            fs::write(&f, &good[..cut]).expect("write");
            assert!(read(&f).is_err(), "cut at {cut}");
        }
        // A flipped byte in the last part: its checksum.
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 3] ^= 0x40;
        fs::write(&f, &bad).expect("write");
        assert!(matches!(read(&f), Err(SnapshotError::Checksum { .. })), "{:?}", read(&f).err());
        // Another format version, another kind of file.
        let mut v2 = good.clone();
        v2[8] = 2;
        fs::write(&f, &v2).expect("write");
        assert!(matches!(read(&f), Err(SnapshotError::Version { found: 2, .. })));
        fs::write(&f, b"hello world, not a checkpoint").expect("write");
        assert!(matches!(read_head(&f), Err(SnapshotError::NotACheckpoint { .. })));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn dir_archive_round_trip() {
        let d = tmp("dir");
        let src = d.join("src");
        fs::create_dir_all(src.join("sub")).expect("mkdir");
        fs::write(src.join("sub/a"), b"one").expect("write");
        fs::write(src.join("b"), b"").expect("write");
        fs::set_permissions(src.join("b"), fs::Permissions::from_mode(0o600)).expect("chmod");
        std::os::unix::fs::symlink("sub/a", src.join("l")).expect("symlink");
        let ar = pack_dir(&src).expect("pack");
        let dst = d.join("dst");
        fs::create_dir_all(&dst).expect("mkdir");
        fs::write(dst.join("stale"), b"x").expect("write");
        unpack_dir(&ar, &dst).expect("unpack");
        assert_eq!(crate::digest::dir(&src).expect("digest"), crate::digest::dir(&dst).expect("digest"));
        assert!(unpack_dir(&ar[..ar.len() - 2], &dst).is_err());
        let _ = fs::remove_dir_all(&d);
    }
}
