//! The decision the libos makes at each stop: what to do with this syscall, given the table, the
//! fd model and where its path points. Pure functions: the interposer supplies the facts.

use crate::fd::FdTable;
use crate::proto::FdKind;
use crate::table::{Class, Emulation, Exec, NewFd, Refusal, Spec, Special};
use std::path::{Component, Path, PathBuf};

/// What to do with one syscall stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Let it run untouched and log nothing (a Deterministic syscall that stopped anyway).
    Pass,
    /// Answer it in the tracer, the same way in every mode; nothing logged.
    Emulate(Emulation),
    /// Refuse it.
    Refuse(Refusal),
    /// Run it for real in every mode; log its result and a digest of what it wrote.
    Execute,
    /// Record: run it (in the tracer or the tracee) and log result and written bytes. Replay:
    /// inject them; fds it creates become placeholders.
    Record { exec: Exec },
    /// Run it for its effect in every mode, inject the recorded result at replay.
    ExecuteInject,
    /// An output to the world. `stdio` is 1 or 2 when it writes ftexec's own stdout/stderr,
    /// whose bytes replay prints.
    Output { stdio: Option<i32> },
    /// mmap of a file that is not replicated state: replay maps anonymous memory with the bytes.
    AnonMap,
    /// Creates a task: runs for real everywhere; the new task is logged (Spawn).
    Clone,
    /// Replaces the program image: runs for real everywhere after checking the image.
    Exec,
}

impl Action {
    /// Whether the syscall runs in the tracee holding the token, unless it may wait for another
    /// task (then it releases it as any blocking syscall): replicated state, a mapping whose
    /// address the kernel chooses (another thread's munmap, which makes no stop, must not race
    /// with the choice: apache's worker threads mapped and unmapped the file they served, and
    /// a follower got another address), ftexec's own stdout/stderr (whose byte order must be
    /// the log's). Its completion is then the next event of its task, at record and replay.
    pub fn holds_token(&self) -> bool {
        matches!(self, Action::Execute | Action::AnonMap | Action::Output { stdio: Some(_) })
    }
}

const PR_SET_TSC: u64 = 26;

/// Decides what to do with `spec` called with `args`. `path_local` says whether its path argument
/// (if the table names one) resolves into the data directory.
pub fn decide(spec: &Spec, args: &[u64; 6], fds: &FdTable, path_local: bool) -> Action {
    let fd_replicated = spec.fd.is_some_and(|i| fds.is_replicated(args[i as usize] as i32 as i64));
    match spec.special {
        Special::Fcntl => {
            let cmd = args[1] as i32;
            return match cmd {
                libc::F_DUPFD | libc::F_DUPFD_CLOEXEC | libc::F_GETFD | libc::F_SETFD => Action::Execute,
                _ if fd_replicated => Action::Execute,
                // The stand-in carries the status flags (O_NONBLOCK) to the real fd of go-live.
                libc::F_GETFL | libc::F_SETFL => Action::ExecuteInject,
                _ => Action::Record { exec: Exec::Tracee },
            };
        }
        Special::Ioctl => match crate::ioctl::effect(args[1]) {
            crate::ioctl::Effect::FdFlags => return Action::Execute,
            // The stand-in carries the flag to the real fd of go-live, as with F_SETFL.
            crate::ioctl::Effect::StatusFlags => return Action::ExecuteInject,
            _ => {}
        },
        Special::FdToFd { input, .. } => {
            let input_real = fds.is_replicated(args[usize::from(input)] as i32 as i64);
            return match (fd_replicated, input_real) {
                (true, true) => Action::Execute,
                (true, false) => Action::Emulate(Emulation::Errno(libc::EINVAL)),
                // Not to stdout's capture: replay has no bytes of it to print.
                (false, _) => Action::Output { stdio: None },
            };
        }
        Special::Prctl => {
            return if args[0] == PR_SET_TSC {
                Action::Emulate(Emulation::Errno(libc::EPERM))
            } else {
                Action::Execute
            };
        }
        Special::Mmap => {
            let flags = args[3] as i32;
            return if flags & libc::MAP_ANONYMOUS != 0 {
                Action::Pass
            } else if fd_replicated {
                Action::Execute
            } else {
                Action::AnonMap
            };
        }
        Special::Clone => return Action::Clone,
        Special::Exec => return Action::Exec,
        Special::None | Special::Exit | Special::Close | Special::SigMask | Special::RestartSyscall => {}
    }
    match spec.class {
        Class::Deterministic => Action::Pass,
        Class::Emulated(e) => Action::Emulate(e),
        Class::Refused(r) => Action::Refuse(r),
        Class::Local => Action::Execute,
        Class::Recorded | Class::Output if fd_replicated || path_local => Action::Execute,
        Class::Recorded if spec.replay_runs => Action::ExecuteInject,
        Class::Recorded => Action::Record { exec: spec.exec },
        Class::Output => {
            let stdio = spec
                .fd
                .map(|i| args[i as usize] as i32)
                .filter(|fd| (*fd == 1 || *fd == 2) && fds.kind(*fd as i64) == FdKind::Stdio);
            Action::Output { stdio }
        }
    }
}

/// Whether a syscall stop with this action logs no event (it runs untouched, or is answered the
/// same way in every mode): record and replay count these stops alike to name a signal
/// delivery at the exit of one of them.
pub fn logs_nothing(action: Action) -> bool {
    matches!(action, Action::Pass | Action::Emulate(_) | Action::Refuse(Refusal::Errno(..)))
}

/// The fds a completed syscall created and the kind of each, given the kinds the caller found for
/// fresh objects (`fresh`) and the fd model (for duplicates).
pub fn new_fds(
    spec: &Spec,
    args: &[u64; 6],
    ret: i64,
    pair: Option<[i32; 2]>,
    fds: &FdTable,
    fresh: FdKind,
) -> Vec<(i32, FdKind)> {
    if ret < 0 {
        return Vec::new();
    }
    let dup_of = |src: u64| fds.kind(src as i32 as i64);
    match spec.fds.creates {
        NewFd::DupCmd if duplicates(args) => vec![(ret as i32, dup_of(args[0]))],
        NewFd::None | NewFd::DupCmd => Vec::new(),
        NewFd::Ret => vec![(ret as i32, fresh)],
        NewFd::Dup(i) => vec![(ret as i32, dup_of(args[i as usize]))],
        NewFd::Pair(_) => pair.map(|p| vec![(p[0], fresh), (p[1], fresh)]).unwrap_or_default(),
        // Received fds are in the control data the caller reads (see `scm_rights`).
        NewFd::Rights => Vec::new(),
    }
}

/// The fds an SCM_RIGHTS message carried, from the control data a recvmsg filled (the struct
/// cmsghdr records: a u64 length, the level, the type, then the data, each record 8-aligned).
pub fn scm_rights(control: &[u8]) -> Vec<i32> {
    let mut fds = Vec::new();
    let mut off = 0usize;
    while off + 16 <= control.len() {
        let word = |at: usize| control.get(at..at + 4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let len = control.get(off..off + 8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]))) as usize;
        if len < 16 || off + len > control.len() {
            break;
        }
        if word(off + 8) == Some(libc::SOL_SOCKET) && word(off + 12) == Some(libc::SCM_RIGHTS) {
            fds.extend((off + 16..off + len).step_by(4).filter_map(|at| word(at).filter(|_| at + 4 <= off + len)));
        }
        off += (len + 7) & !7;
    }
    fds
}

/// Whether an mmap shares writes with a file (MAP_SHARED or MAP_SHARED_VALIDATE, PROT_WRITE).
/// Outside the data directory such a mapping is made private at record (`private_flags`): the
/// program's writes through it stay its own, the same at replay and after going live; other
/// processes do not see them (they are an output ftexec cannot order).
pub fn shares_writes(args: &[u64; 6]) -> bool {
    let (prot, flags) = (args[2] as i32, args[3] as i32);
    flags & 0x3 != libc::MAP_PRIVATE && prot & libc::PROT_WRITE != 0
}

/// mmap flags with the mapping type made MAP_PRIVATE.
pub fn private_flags(flags: u64) -> u64 {
    (flags & !0x3) | libc::MAP_PRIVATE as u64
}

/// fcntl(fd, F_DUPFD or F_DUPFD_CLOEXEC, min).
fn duplicates(args: &[u64; 6]) -> bool {
    matches!(args[1] as i32, libc::F_DUPFD | libc::F_DUPFD_CLOEXEC)
}

/// Whether `spec` called with `args` creates fds that the recorder must look at in its result.
pub fn creates_fds(spec: &Spec, args: &[u64; 6]) -> bool {
    match spec.fds.creates {
        NewFd::None | NewFd::Rights => false,
        NewFd::DupCmd => duplicates(args),
        NewFd::Ret | NewFd::Dup(_) | NewFd::Pair(_) => true,
    }
}

/// The fds `spec` called with `args` creates duplicate another fd (dup, dup2, dup3, F_DUPFD).
pub fn duplicates_fd(spec: &Spec, args: &[u64; 6]) -> bool {
    match spec.fds.creates {
        NewFd::Dup(_) => true,
        NewFd::DupCmd => duplicates(args),
        NewFd::None | NewFd::Rights | NewFd::Ret | NewFd::Pair(_) => false,
    }
}

/// Lexically normalizes `path` against `base` (no symlinks are followed).
pub fn normalize(base: &Path, path: &Path) -> PathBuf {
    let mut out = if path.is_absolute() { PathBuf::from("/") } else { base.to_path_buf() };
    for c in path.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => out = PathBuf::from("/"),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    out
}

/// Whether `path` (resolved against `base`) lies inside `dir` (itself included).
pub fn inside(base: &Path, path: &Path, dir: &Path) -> bool {
    normalize(base, path).starts_with(dir)
}

/// A read-only file at least this large outside the data directory is verified by hash and
/// opened for real at replay, not logged byte for byte (a JVM maps its 128 MiB `lib/modules`).
pub const LARGE_FILE: u64 = 1 << 20;

/// What a freshly opened file is: Data inside the data directory; Verified for a read-only regular
/// file that starts with the ELF magic (executables and shared libraries) or holds at least
/// [`LARGE_FILE`] bytes: replay opens it, reads it and maps it for real after checking its
/// hash, so it must be the same file on every replica; External otherwise.
pub fn opened_file_kind(in_data_dir: bool, regular: bool, read_only: bool, elf: bool, size: u64) -> FdKind {
    if in_data_dir {
        FdKind::Data
    } else if regular && read_only && (elf || size >= LARGE_FILE) {
        FdKind::Verified
    } else {
        FdKind::External
    }
}

#[cfg(test)]
mod scm_tests {
    use super::scm_rights;

    fn cmsg(level: i32, kind: i32, data: &[i32]) -> Vec<u8> {
        let mut v = ((16 + 4 * data.len()) as u64).to_le_bytes().to_vec();
        v.extend(level.to_le_bytes());
        v.extend(kind.to_le_bytes());
        data.iter().for_each(|d| v.extend(d.to_le_bytes()));
        while v.len() % 8 != 0 {
            v.push(0);
        }
        v
    }

    #[test]
    fn fds_of_scm_rights_records_only() {
        let mut control = cmsg(libc::SOL_SOCKET, libc::SCM_CREDENTIALS, &[1, 2, 3]);
        control.extend(cmsg(libc::SOL_SOCKET, libc::SCM_RIGHTS, &[8]));
        control.extend(cmsg(libc::SOL_SOCKET, libc::SCM_RIGHTS, &[9, 10]));
        assert_eq!(scm_rights(&control), vec![8, 9, 10]);
        assert_eq!(scm_rights(&control[..control.len() - 3]), vec![8], "a truncated record is not read");
        assert!(scm_rights(&[]).is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::lookup;

    fn spec(nr: u64) -> &'static Spec {
        lookup(nr).expect("known syscall")
    }

    #[test]
    fn decisions() {
        let mut fds = FdTable::new();
        let a = |v: &[u64]| {
            let mut x = [0u64; 6];
            x[..v.len()].copy_from_slice(v);
            x
        };
        // clock_gettime: one stop, in the tracer.
        assert_eq!(decide(spec(228), &a(&[0, 0x1000]), &fds, false), Action::Record { exec: Exec::Tracer });
        // write to stdout: output with its bytes kept.
        assert_eq!(decide(spec(1), &a(&[1, 0, 5]), &fds, false), Action::Output { stdio: Some(1) });
        // write to a socket: output, no stdio bytes.
        assert_eq!(decide(spec(1), &a(&[5, 0, 5]), &fds, false), Action::Output { stdio: None });
        // read of a data-dir file runs for real.
        fds.set(6, FdKind::Data);
        assert_eq!(decide(spec(0), &a(&[6, 0, 5]), &fds, false), Action::Execute);
        // open inside the data dir runs for real; outside it is recorded.
        assert_eq!(decide(spec(257), &a(&[0, 0, 0]), &fds, true), Action::Execute);
        assert_eq!(decide(spec(257), &a(&[0, 0, 0]), &fds, false), Action::Record { exec: Exec::Tracee });
        // anonymous mmap passes; a private file mapping is recorded; a data-dir mapping is real.
        let anon = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        assert_eq!(decide(spec(9), &a(&[0, 4096, 3, anon, u64::MAX, 0]), &fds, false), Action::Pass);
        assert_eq!(decide(spec(9), &a(&[0, 4096, 1, 2, 5, 0]), &fds, false), Action::AnonMap);
        assert_eq!(decide(spec(9), &a(&[0, 4096, 1, 2, 6, 0]), &fds, false), Action::Execute);
        // A shared writable mapping of a file outside the data directory: made private at record.
        assert_eq!(decide(spec(9), &a(&[0, 4096, 3, 1, 5, 0]), &fds, false), Action::AnonMap);
        assert!(shares_writes(&a(&[0, 4096, 3, 1, 5, 0])) && !shares_writes(&a(&[0, 4096, 1, 1, 5, 0])));
        assert_eq!(private_flags(0x03 | 0x20000), 0x02 | 0x20000);
        // fcntl(F_DUPFD) always runs; F_SETFL on a socket is recorded.
        assert_eq!(decide(spec(72), &a(&[5, libc::F_DUPFD as u64]), &fds, false), Action::Execute);
        assert_eq!(decide(spec(72), &a(&[5, libc::F_SETFL as u64]), &fds, false), Action::ExecuteInject);
        assert_eq!(
            decide(spec(72), &a(&[5, libc::F_GETLK as u64]), &fds, false),
            Action::Record { exec: Exec::Tracee }
        );
        // prctl(PR_SET_TSC) would defeat rdtsc trapping.
        assert_eq!(decide(spec(157), &a(&[26, 1]), &fds, false), Action::Emulate(Emulation::Errno(libc::EPERM)));
        // rseq is emulated, io_uring refused, clone unsupported.
        assert_eq!(decide(spec(334), &a(&[]), &fds, false), Action::Emulate(Emulation::Errno(libc::ENOSYS)));
        assert!(matches!(decide(spec(425), &a(&[]), &fds, false), Action::Refuse(Refusal::Errno(..))));
        assert_eq!(decide(spec(56), &a(&[]), &fds, false), Action::Clone);
        assert_eq!(decide(spec(435), &a(&[]), &fds, false), Action::Clone);
        assert_eq!(decide(spec(59), &a(&[]), &fds, false), Action::Exec);
    }

    #[test]
    fn paths() {
        let d = Path::new("/srv/data");
        assert!(inside(Path::new("/"), Path::new("/srv/data/x.db"), d));
        assert!(inside(Path::new("/srv"), Path::new("data/./x.db"), d));
        assert!(!inside(Path::new("/srv/data"), Path::new("../other"), d));
        assert!(!inside(Path::new("/"), Path::new("/srv/database"), d));
        assert!(inside(Path::new("/tmp"), Path::new("/srv/data"), d));
    }

    #[test]
    fn fd_creation() {
        let mut fds = FdTable::new();
        fds.set(4, FdKind::Data);
        let mut a = [0u64; 6];
        a[0] = 4;
        assert_eq!(new_fds(spec(32), &a, 7, None, &fds, FdKind::External), vec![(7, FdKind::Data)]);
        assert_eq!(
            new_fds(spec(22), &a, 0, Some([3, 5]), &fds, FdKind::External),
            vec![(3, FdKind::External), (5, FdKind::External)]
        );
        assert!(new_fds(spec(41), &a, -24, None, &fds, FdKind::External).is_empty());
        a[1] = libc::F_DUPFD_CLOEXEC as u64;
        assert!(creates_fds(spec(72), &a));
        assert_eq!(new_fds(spec(72), &a, 9, None, &fds, FdKind::External), vec![(9, FdKind::Data)]);
    }
}
