//! The program's identity: where its executable is, its hash, its ELF interpreter, the CPU model.

use crate::error::{Result, SessionError};
use ft_libos::digest;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Resolves PROG like execvp: a name without '/' is searched in PATH.
pub fn resolve(prog: &OsStr) -> Result<PathBuf> {
    let candidate = if prog.as_bytes().contains(&b'/') {
        PathBuf::from(prog)
    } else {
        let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
        let found = std::env::split_paths(&path)
            .map(|d| d.join(prog))
            .find(|p| fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false));
        match found {
            Some(p) => p,
            None => {
                return Err(SessionError::ProgramNotFound {
                    path: PathBuf::from(prog),
                    hint: " in PATH; give its full path or install it".into(),
                })
            }
        }
    };
    let md = fs::metadata(&candidate)
        .map_err(|_| SessionError::ProgramNotFound { path: candidate.clone(), hint: String::new() })?;
    if !md.is_file() {
        return Err(SessionError::NotExecutable { path: candidate, why: "not a regular file".into() });
    }
    if md.permissions().mode() & 0o111 == 0 {
        return Err(SessionError::NotExecutable { path: candidate, why: "no execute permission (chmod +x)".into() });
    }
    let abs = fs::canonicalize(&candidate).map_err(SessionError::io(format!("resolve {}", candidate.display())))?;
    Ok(abs)
}

/// blake3 of a file, with the error naming it.
pub fn hash_file(path: &Path) -> Result<Vec<u8>> {
    digest::file(path).map_err(SessionError::io(format!("read {}", path.display())))
}

/// The PT_INTERP of an ELF executable (the dynamic loader), if any.
pub fn elf_interp(path: &Path) -> Option<PathBuf> {
    let data = fs::read(path).ok()?;
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(data.get(o..o + 2)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(data.get(o..o + 8)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(data.get(o..o + 4)?.try_into().ok()?));
    let phoff = u64_at(32)? as usize;
    let phentsize = u16_at(54)? as usize;
    let phnum = u16_at(56)? as usize;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(ph)? == 3 {
            let off = u64_at(ph + 8)? as usize;
            let size = u64_at(ph + 32)? as usize;
            let raw = data.get(off..off + size)?;
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            return Some(PathBuf::from(OsStr::from_bytes(&raw[..end])));
        }
    }
    None
}

/// "vendor family/model/stepping model-name" of this machine's CPU.
pub fn cpu_model() -> String {
    let info = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.split(':').next().map(str::trim) == Some(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    format!(
        "{} {}/{}/{} {}",
        field("vendor_id"),
        field("cpu family"),
        field("model"),
        field("stepping"),
        field("model name")
    )
}
