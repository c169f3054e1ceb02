//! `ftdbg checkpoints LOG`: the checkpoints taken of a log, each read whole (its checksums).

use crate::Error;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Lists the checkpoints in `dir` (default LOG.ckpt), by event.
pub fn list(log: &Path, dir: Option<&Path>, json: bool, out: &mut dyn Write) -> Result<u8, Error> {
    let header = ft_libos::log::LogReader::open(log)?.header().clone();
    let id = ft_replay::replay::log_id(&header);
    let dir = dir.map(Path::to_path_buf).unwrap_or_else(|| {
        let mut s = log.as_os_str().to_owned();
        s.push(".ckpt");
        PathBuf::from(s)
    });
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "ftckpt")).collect())
        .unwrap_or_default();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut rows = Vec::new();
    for f in files.drain(..) {
        let size = std::fs::metadata(&f).map_or(0, |m| m.len());
        let row = match ft_replay::replay::read_checkpoint_head(&f) {
            Ok(h) => {
                let problem = if let Err(e) = ft_libos::snapshot::read(&f) {
                    Some(e.to_string())
                } else if h.log_id != id {
                    Some("of another recording".to_string())
                } else if h.ftexec_version != env!("CARGO_PKG_VERSION") {
                    Some(format!("made by ftexec {}", h.ftexec_version))
                } else {
                    None
                };
                serde_json::json!({
                    "file": f.display().to_string(), "event": h.event, "bytes": size,
                    "age_s": now.saturating_sub(h.created_unix), "memory_bytes": h.memory_bytes,
                    "data_bytes": h.data_bytes, "program": h.program, "problem": problem,
                })
            }
            Err(e) => serde_json::json!({ "file": f.display().to_string(), "bytes": size, "problem": e.to_string() }),
        };
        rows.push(row);
    }
    rows.sort_by_key(|r| r["event"].as_u64().unwrap_or(u64::MAX));
    if json {
        writeln!(out, "{}", serde_json::Value::Array(rows))?;
        return Ok(0);
    }
    if rows.is_empty() {
        writeln!(out, "no checkpoints in {}", dir.display())?;
        return Ok(0);
    }
    writeln!(out, "{:>10} {:>12} {:>12} {:>10} {:>8}  file", "event", "bytes", "memory", "data", "age")?;
    for r in &rows {
        let n = |k: &str| r[k].as_u64().map_or("-".to_string(), |v| v.to_string());
        write!(
            out,
            "{:>10} {:>12} {:>12} {:>10} {:>7}s  {}",
            n("event"),
            n("bytes"),
            n("memory_bytes"),
            n("data_bytes"),
            n("age_s"),
            r["file"].as_str().unwrap_or("")
        )?;
        if let Some(p) = r["problem"].as_str() {
            write!(out, "  (unusable: {p})")?;
        }
        writeln!(out)?;
    }
    Ok(0)
}
