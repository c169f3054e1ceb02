//! The program's launch and the checks before it: the log header a recording starts with (the
//! program, its environment, its binary's hash, the data directory's digest), the launch spec
//! built from it, and replay's pre-flight checks that this machine can replay that log.

use crate::error::{Result, SessionError};
use crate::program;
use ft_interposer::{LaunchSpec, Vdso};
use ft_libos::digest;
use ft_libos::proto::Header;
use std::ffi::{CString, OsStr};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// What to record.
pub struct RecordOptions {
    /// PROG as given (resolved through PATH).
    pub prog: std::ffi::OsString,
    /// argv[0..]; argv[0] is PROG as given.
    pub argv: Vec<std::ffi::OsString>,
    pub env: Vec<std::ffi::OsString>,
    pub cwd: PathBuf,
    /// Replicated state: syscalls on files in here run for real at replay.
    pub data_dir: Option<PathBuf>,
}

/// How to replay.
pub struct ReplayOptions {
    /// The data directory to replay into (None: the recorded path).
    pub data_dir: Option<PathBuf>,
    /// Replay even if the CPU model differs from the recording's.
    pub allow_cpu_mismatch: bool,
    /// Write the recorded stdout/stderr bytes to ftexec's own.
    pub print_stdio: bool,
    /// Take checkpoints while replaying.
    pub checkpoints: Option<Checkpoints>,
    /// Start from this checkpoint (of the same log) instead of the log's start.
    pub from_checkpoint: Option<PathBuf>,
}

/// Where and how often a replay takes checkpoints.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    /// Written here as `event-N.ftckpt`.
    pub dir: PathBuf,
    /// One at the first event boundary where the program can be checkpointed at or after
    /// every multiple of this many events.
    pub every: u64,
    /// Keep the newest this many, remove older ones (0: keep all).
    pub keep: usize,
    /// A follower's: a checkpoint due while the last one is still being written waits for a
    /// later boundary, so that replay never waits for a write (the boundaries then depend on
    /// timing). Otherwise replay waits for the write and the boundaries depend on the log alone.
    pub never_wait: bool,
}

impl ReplayOptions {
    /// Replay as `ftexec replay` does by default: no checkpoints, stdio printed.
    pub fn new(data_dir: Option<PathBuf>, allow_cpu_mismatch: bool, print_stdio: bool) -> Self {
        ReplayOptions { data_dir, allow_cpu_mismatch, print_stdio, checkpoints: None, from_checkpoint: None }
    }
}

/// The header for a recording: identity of the program and of its inputs.
pub fn header(opts: &RecordOptions) -> Result<(PathBuf, Header)> {
    let exe = program::resolve(&opts.prog)?;
    let exe_hash = program::hash_file(&exe)?;
    let (interp_path, interp_hash) = match program::elf_interp(&exe) {
        Some(p) => {
            let h = program::hash_file(&p)?;
            (p.into_os_string().into_vec(), h)
        }
        None => (Vec::new(), Vec::new()),
    };
    let (data_dir, data_dir_digest) = match &opts.data_dir {
        Some(d) => {
            let digest = digest::dir(d)
                .map_err(|e| SessionError::Io { what: format!("data directory {}", d.display()), source: e.source })?;
            (d.as_os_str().as_bytes().to_vec(), digest)
        }
        None => (Vec::new(), Vec::new()),
    };
    let start_unix_ns =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let h = Header {
        version: ft_libos::log::VERSION,
        ftexec_version: env!("CARGO_PKG_VERSION").into(),
        exe_path: exe.as_os_str().as_bytes().to_vec(),
        exe_hash,
        argv: opts.argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
        env: opts.env.iter().map(|a| a.as_bytes().to_vec()).collect(),
        cwd: opts.cwd.as_os_str().as_bytes().to_vec(),
        cpu_model: program::cpu_model(),
        data_dir,
        data_dir_digest,
        interp_path,
        interp_hash,
        start_unix_ns,
    };
    Ok((exe, h))
}

pub(crate) fn cstrings(items: &[Vec<u8>], what: &str) -> Result<Vec<CString>> {
    items
        .iter()
        .map(|b| CString::new(b.clone()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| SessionError::Mismatch { what: what.into(), detail: "contains a NUL byte".into() })
}

pub(crate) fn launch_spec(
    h: &Header,
    at_random: Option<[u8; 16]>,
    bind: Option<(CString, CString)>,
    vdso: Vdso,
    state: Option<&ft_libos::proto::ProcState>,
) -> Result<LaunchSpec> {
    let exe = CString::new(h.exe_path.clone())
        .map_err(|_| SessionError::Mismatch { what: "program path".into(), detail: "contains a NUL byte".into() })?;
    let cwd = CString::new(h.cwd.clone()).ok();
    Ok(LaunchSpec {
        exe,
        argv: cstrings(&h.argv, "argv")?,
        env: cstrings(&h.env, "environment")?,
        cwd,
        bind,
        at_random,
        pid_ns: true,
        vdso,
        umask: state.map(|s| s.umask),
        limits: state
            .map(|s| s.limits.chunks_exact(2).zip(0u32..).map(|(l, r)| (r, l[0], l[1])).collect())
            .unwrap_or_default(),
    })
}

/// Checks that this machine can replay the log; returns the bind mount the data directory needs.
pub fn check_inputs(h: &Header, opts: &ReplayOptions) -> Result<Option<(CString, CString)>> {
    check_inputs_with(h, opts, true)
}

/// [`check_inputs`]; `initial_data` false skips the data directory's digest (a restore puts
/// the checkpoint's content there, not the recording's initial one).
pub(crate) fn check_inputs_with(
    h: &Header,
    opts: &ReplayOptions,
    initial_data: bool,
) -> Result<Option<(CString, CString)>> {
    let exe = Path::new(OsStr::from_bytes(&h.exe_path));
    if !exe.exists() {
        return Err(SessionError::ProgramNotFound {
            path: exe.into(),
            hint: " (the recording ran it; replay needs the same binary at the same path)".into(),
        });
    }
    let hash = program::hash_file(exe)?;
    if hash != h.exe_hash {
        return Err(SessionError::Mismatch {
            what: format!("the executable {}", exe.display()),
            detail: format!(
                "its blake3 is {}, the recording's was {}; replay needs the exact binary that was recorded",
                digest::hex(&hash[..8]),
                digest::hex(&h.exe_hash[..8.min(h.exe_hash.len())])
            ),
        });
    }
    if !h.interp_path.is_empty() {
        let interp = Path::new(OsStr::from_bytes(&h.interp_path));
        let ok = program::hash_file(interp).map(|x| x == h.interp_hash).unwrap_or(false);
        if !ok {
            return Err(SessionError::Mismatch {
                what: format!("the dynamic loader {}", interp.display()),
                detail: "it is missing or changed since the recording (system update?)".into(),
            });
        }
    }
    let cpu = program::cpu_model();
    if cpu != h.cpu_model && !opts.allow_cpu_mismatch {
        return Err(SessionError::Mismatch {
            what: "the CPU".into(),
            detail: format!(
                "this machine has \"{cpu}\", the recording was made on \"{}\"; pass --allow-cpu-mismatch to try anyway",
                h.cpu_model
            ),
        });
    }
    if h.data_dir.is_empty() {
        if let Some(d) = &opts.data_dir {
            return Err(SessionError::Mismatch {
                what: "the data directory".into(),
                detail: format!("{} was given, but the recording was made without --data-dir", d.display()),
            });
        }
        return Ok(None);
    }
    let recorded = PathBuf::from(OsStr::from_bytes(&h.data_dir));
    let dir = opts.data_dir.clone().unwrap_or_else(|| recorded.clone());
    let dir = std::fs::canonicalize(&dir).map_err(SessionError::io(format!("data directory {}", dir.display())))?;
    let got = if !initial_data {
        h.data_dir_digest.clone()
    } else {
        digest::dir(&dir)
            .map_err(|e| SessionError::Io { what: format!("data directory {}", dir.display()), source: e.source })?
    };
    if initial_data && got != h.data_dir_digest {
        return Err(SessionError::Mismatch {
            what: format!("the data directory {}", dir.display()),
            detail: format!(
                "its content (digest {}) is not what the recorded run started with (digest {}); replay needs a copy of the data directory as it was before recording",
                digest::hex(&got[..8]),
                digest::hex(&h.data_dir_digest[..8.min(h.data_dir_digest.len())])
            ),
        });
    }
    if dir == recorded {
        return Ok(None);
    }
    if !recorded.is_dir() {
        return Err(SessionError::Mismatch {
            what: "the data directory".into(),
            detail: format!(
                "the program expects it at {}, which does not exist here; create that directory (it is used as a mount point) or replay with --data-dir {}",
                recorded.display(),
                recorded.display()
            ),
        });
    }
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).ok();
    Ok(c(&dir).zip(c(&recorded)))
}

/// At record, says which fds ftexec inherited beyond 0-2 (without close-on-exec): the program
/// does not get them, since they are not in the log and a replica would not have them. (Replay
/// never passes them either; it says nothing.)
pub(crate) fn warn_inherited_fds(log: &slog::Logger) {
    let fds = ft_interposer::launch::inherited_fds();
    if !fds.is_empty() {
        let list: Vec<String> = fds.iter().map(|(fd, what)| format!("{fd} ({what})")).collect();
        slog::warn!(
            log,
            "fds inherited by ftexec are not passed to the program (only 0, 1 and 2 are): {}",
            list.join(", ")
        );
    }
}
