//! Content digests: files, input buffers, and a data directory's whole content.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Digest of a buffer, as stored in events (16 bytes of blake3 is plenty to detect divergence).
pub fn short(bytes: &[u8]) -> Vec<u8> {
    blake3::hash(bytes).as_bytes()[..16].to_vec()
}

/// blake3 of a file's content.
pub fn file(path: &Path) -> io::Result<Vec<u8>> {
    let mut f = fs::File::open(path)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().as_bytes().to_vec())
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read data directory entry {path}: {source}")]
pub struct DirDigestError {
    pub path: PathBuf,
    pub source: io::Error,
}

/// Digest of everything under `dir`: the sorted relative paths, their types, permission bits and
/// contents (not times or inode numbers, which differ between machines).
pub fn dir(dir: &Path) -> Result<Vec<u8>, DirDigestError> {
    let mut h = blake3::Hasher::new();
    walk(dir, Path::new(""), &mut h)?;
    Ok(h.finalize().as_bytes().to_vec())
}

fn walk(root: &Path, rel: &Path, h: &mut blake3::Hasher) -> Result<(), DirDigestError> {
    let here = root.join(rel);
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DirDigestError { path, source }
    };
    let mut names: Vec<_> = fs::read_dir(&here)
        .map_err(err(&here))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(err(&here))?;
    names.sort();
    for name in names {
        let rel_child = rel.join(&name);
        let path = root.join(&rel_child);
        let md = fs::symlink_metadata(&path).map_err(err(&path))?;
        h.update(rel_child.as_os_str().as_encoded_bytes());
        h.update(&[0]);
        h.update(&(md.mode() & 0o7777).to_le_bytes());
        let ft = md.file_type();
        if ft.is_dir() {
            h.update(b"d");
            walk(root, &rel_child, h)?;
        } else if ft.is_symlink() {
            h.update(b"l");
            let target = fs::read_link(&path).map_err(err(&path))?;
            h.update(target.as_os_str().as_encoded_bytes());
        } else if ft.is_file() {
            h.update(b"f");
            h.update(&md.len().to_le_bytes());
            h.update(&file(&path).map_err(err(&path))?);
        } else {
            h.update(if ft.is_fifo() { b"p" } else { b"o" });
        }
        h.update(&[0]);
    }
    Ok(())
}

/// Lower-case hex, for messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_digest_sees_content_not_times() {
        let d = std::env::temp_dir().join(format!("ftdigest-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("sub")).expect("mkdir");
        fs::write(d.join("sub/a"), b"one").expect("write");
        let a = dir(&d).expect("digest");
        // Rewriting the same content (new mtime) keeps the digest.
        fs::write(d.join("sub/a"), b"one").expect("write");
        assert_eq!(a, dir(&d).expect("digest"));
        fs::write(d.join("sub/a"), b"two").expect("write");
        assert_ne!(a, dir(&d).expect("digest"));
        fs::write(d.join("sub/a"), b"one").expect("write");
        fs::write(d.join("b"), b"").expect("write");
        assert_ne!(a, dir(&d).expect("digest"));
        let _ = fs::remove_dir_all(&d);
    }
}
