//! System V shared memory segments in a checkpoint: their ids, keys, sizes, owners, modes and
//! bytes, read and made again inside the program's IPC namespace by a thread of the tracer that
//! enters it (setns moves only the calling thread; the thread ends after).
//!
//! A segment must come back at its id (the program holds the number), and the next segment the
//! program creates must get the id it got at record. The kernel allocates an id's index
//! cyclically after the index of the last segment it created, with a sequence number that grows
//! when that cycle wraps (`ipc_idr_alloc`). A restore writes `shm_next_id` for each kept
//! segment (an explicit id moves neither the cycle nor the sequence), fills the indexes below
//! the last created one with placeholders, and creates the last one (or a placeholder) the
//! ordinary way: the cycle is then where the recording's was. That holds while the sequence is
//! still 0 (fewer than 64 segments were created in the program's life, or more with fewer alive
//! at any time); beyond, no checkpoint is taken and the reason says so.
//!
//! Semaphore sets and message queues are not kept: while one exists, no checkpoint is taken.

use super::{io, restore_err, CResult, CheckpointError, PAGE};
use serde::{Deserialize, Serialize};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

/// Marked for removal while still attached (SHM_DEST in the mode).
const SHM_DEST: u32 = 0o1000;
/// An id is its sequence number shifted by this, plus its index (IPCMNI 32768: the kernel's
/// default without ipcmni_extend).
const SEQ_SHIFT: u32 = 15;
const NEXT_ID: &str = "/proc/sys/kernel/shm_next_id";

/// One segment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub id: i32,
    pub key: i32,
    pub size: u64,
    /// Permission bits (and SHM_DEST, SHM_LOCKED as the kernel shows them).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Its bytes: this range of the checkpoint's page part.
    pub at: u64,
    pub len: u64,
}

impl Segment {
    /// Marked for removal (IPC_RMID) while attached: removed again once the restored processes
    /// attached it.
    pub fn removed(&self) -> bool {
        self.mode & SHM_DEST != 0
    }
}

/// The program's System V shared memory.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Sysv {
    pub shm: Vec<Segment>,
    /// The id of the last segment the program created (replay's bookkeeping knows it: the
    /// kernel's allocation cycle continues after it).
    pub shm_last: Option<i32>,
}

/// Runs `f` inside the IPC namespace of `program`: on a thread of this process that enters it,
/// or, when the program is in a user namespace of its own (an unprivileged `up`), in a helper
/// process that enters that user namespace first (a thread cannot: a multithreaded process may
/// not join a user namespace) and sends the result back through a pipe.
fn in_ipc_ns<T: Send + Carry>(program: i32, f: impl FnOnce() -> CResult<T> + Send) -> CResult<T> {
    let ns_path = format!("/proc/{program}/ns/ipc");
    let ns = std::fs::File::open(&ns_path).map_err(io(&ns_path))?;
    let user_path = format!("/proc/{program}/ns/user");
    let user = std::fs::File::open(&user_path).map_err(io(&user_path))?;
    let ino = |f: &std::fs::File| f.metadata().map(|m| std::os::unix::fs::MetadataExt::ino(&m)).map_err(io(&user_path));
    let own = std::fs::File::open("/proc/self/ns/user").map_err(io("/proc/self/ns/user"))?;
    if ino(&user)? != ino(&own)? {
        return in_helper(&user, &ns, f);
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on an fd this thread owns; it changes this thread's IPC namespace
            // only, and the thread ends after `f`.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWIPC) } != 0 {
                return Err(CheckpointError::Unsupported(format!(
                    "entering the program's IPC namespace failed ({}; it needs root)",
                    std::io::Error::last_os_error()
                )));
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(CheckpointError::Unsupported("the IPC namespace thread panicked".into())))
    })
}

/// What a helper process sends back: a few numbers or words, and bytes.
trait Carry: Sized {
    fn to_wire(self) -> (String, Vec<u8>);
    fn from_wire(words: &str, bytes: Vec<u8>) -> Option<Self>;
}

impl Carry for () {
    fn to_wire(self) -> (String, Vec<u8>) {
        (String::new(), Vec::new())
    }
    fn from_wire(_: &str, _: Vec<u8>) -> Option<()> {
        Some(())
    }
}

/// A refusal's reason ("-" for none: a reason is never empty).
impl Carry for Option<String> {
    fn to_wire(self) -> (String, Vec<u8>) {
        (self.unwrap_or_else(|| "-".into()), Vec::new())
    }
    fn from_wire(words: &str, _: Vec<u8>) -> Option<Self> {
        Some((words != "-").then(|| words.to_string()))
    }
}

/// The segment list as a line per segment, then the pages.
impl Carry for (Sysv, Vec<u8>) {
    fn to_wire(self) -> (String, Vec<u8>) {
        let (s, data) = self;
        let mut w = format!("{}\n", s.shm_last.map_or("-".into(), |l| l.to_string()));
        for g in &s.shm {
            w += &format!("{} {} {} {} {} {} {} {}\n", g.id, g.key, g.size, g.mode, g.uid, g.gid, g.at, g.len);
        }
        (w, data)
    }
    fn from_wire(words: &str, bytes: Vec<u8>) -> Option<Self> {
        let mut lines = words.lines();
        let shm_last = match lines.next()? {
            "-" => None,
            l => Some(l.parse().ok()?),
        };
        let mut shm = Vec::new();
        for l in lines {
            let f: Vec<&str> = l.split(' ').collect();
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok());
            shm.push(Segment {
                id: i32::try_from(n(0)?).ok()?,
                key: i32::try_from(n(1)?).ok()?,
                size: u64::try_from(n(2)?).ok()?,
                mode: u32::try_from(n(3)?).ok()?,
                uid: u32::try_from(n(4)?).ok()?,
                gid: u32::try_from(n(5)?).ok()?,
                at: u64::try_from(n(6)?).ok()?,
                len: u64::try_from(n(7)?).ok()?,
            });
        }
        Some((Sysv { shm, shm_last }, bytes))
    }
}

/// Runs `f` in a forked helper that joins the user namespace `user`, then the IPC namespace
/// `ipc`; its result comes back through a pipe as: a status byte (0 ok, 1 error), the length
/// of the words, the words (or the error), then the bytes.
fn in_helper<T: Carry>(user: &std::fs::File, ipc: &std::fs::File, f: impl FnOnce() -> CResult<T>) -> CResult<T> {
    use std::io::{Read, Write};
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| CheckpointError::Unsupported(format!("a pipe for the IPC helper: {e}")))?;
    // SAFETY: fork in a multithreaded process. The child enters the namespaces with raw
    // syscalls, then runs `f`, which allocates: glibc's fork leaves malloc usable in the child
    // (its atfork handlers), and the child takes no other lock another thread may hold. It
    // ends with _exit.
    let child = unsafe { libc::fork() };
    if child == 0 {
        drop(rd);
        let mut out = std::fs::File::from(wr);
        // SAFETY: setns on fds of ours.
        let entered = unsafe {
            libc::setns(user.as_raw_fd(), libc::CLONE_NEWUSER) == 0
                && libc::setns(ipc.as_raw_fd(), libc::CLONE_NEWIPC) == 0
        };
        let (status, words, bytes) = if !entered {
            (
                1u8,
                format!("entering the program's user and IPC namespaces failed: {}", std::io::Error::last_os_error()),
                Vec::new(),
            )
        } else {
            match f() {
                Ok(v) => {
                    let (w, b) = v.to_wire();
                    (0, w, b)
                }
                Err(e) => (1, e.to_string(), Vec::new()),
            }
        };
        let mut head = vec![status];
        head.extend_from_slice(&(words.len() as u64).to_le_bytes());
        head.extend_from_slice(words.as_bytes());
        let ok = out.write_all(&head).and_then(|()| out.write_all(&bytes)).is_ok();
        // SAFETY: ends the helper without running this process's exit handlers.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    drop(wr);
    if child < 0 {
        return Err(CheckpointError::Unsupported(format!(
            "forking the IPC helper: {}",
            std::io::Error::last_os_error()
        )));
    }
    let mut got = Vec::new();
    let read = std::fs::File::from(rd).read_to_end(&mut got);
    let mut st = 0;
    // SAFETY: reaps the helper forked above.
    unsafe { libc::waitpid(child, &mut st, 0) };
    let bad = || CheckpointError::Unsupported("the IPC helper ended without its answer".into());
    read.map_err(|_| bad())?;
    let n = got.get(1..9).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes).ok_or_else(bad)? as usize;
    let words = got.get(9..9 + n).map(|w| String::from_utf8_lossy(w).into_owned()).ok_or_else(bad)?;
    let bytes = got.get(9 + n..).map(<[u8]>::to_vec).unwrap_or_default();
    match got.first() {
        Some(0) => T::from_wire(&words, bytes).ok_or_else(bad),
        Some(_) => Err(CheckpointError::Unsupported(words)),
        None => Err(bad()),
    }
}

/// The entries of /proc/sysvipc/NAME (of the calling thread's namespace), split in fields.
fn table(name: &str) -> CResult<Vec<Vec<String>>> {
    let path = format!("/proc/sysvipc/{name}");
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    Ok(text.lines().skip(1).map(|l| l.split_whitespace().map(str::to_string).collect()).collect())
}

fn field<T>(row: &[String], i: usize, radix8: bool) -> CResult<T>
where
    T: std::str::FromStr + TryFrom<u64>,
{
    let s = row.get(i).ok_or_else(|| CheckpointError::Unsupported("a short /proc/sysvipc/shm line".into()))?;
    let parsed = if radix8 { u64::from_str_radix(s, 8).ok().and_then(|v| T::try_from(v).ok()) } else { s.parse().ok() };
    parsed.ok_or_else(|| CheckpointError::Unsupported(format!("a /proc/sysvipc/shm field that does not parse: {s}")))
}

/// Why no checkpoint can be taken now, if one cannot: semaphores or message queues exist, or
/// the segments' ids could not be made again.
pub fn refusal(program: i32, shm_last: Option<i32>) -> CResult<Option<String>> {
    in_ipc_ns(program, || {
        let (sem, msg) = (table("sem")?.len(), table("msg")?.len());
        if sem + msg > 0 {
            return Ok(Some(format!(
                "{sem} System V semaphore sets and {msg} message queues exist (only System V shared memory is kept in checkpoints)"
            )));
        }
        if shm_last.is_some_and(|l| l < 0 || l >> SEQ_SHIFT != 0) {
            return Ok(Some(
                "the program created more System V shared memory segments than a restore can give the same ids to"
                    .into(),
            ));
        }
        Ok(None)
    })
}

/// Reads every segment of the program's IPC namespace: (description, bytes).
pub fn capture(program: i32, shm_last: Option<i32>) -> CResult<(Sysv, Vec<u8>)> {
    in_ipc_ns(program, || {
        let mut out = Sysv { shm: Vec::new(), shm_last };
        let mut data = Vec::new();
        // key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime rss swap
        for row in table("shm")? {
            let key = row.first().and_then(|k| k.parse::<i32>().ok()).unwrap_or(0);
            let id: u64 = field(&row, 1, false)?;
            let id = i32::try_from(id).map_err(|_| CheckpointError::Unsupported(format!("segment id {id}")))?;
            let mode: u32 = field(&row, 2, true)?;
            let size: u64 = field(&row, 3, false)?;
            let (uid, gid): (u32, u32) = (field(&row, 7, false)?, field(&row, 8, false)?);
            let bytes = read_segment(id, size)?;
            out.shm.push(Segment { id, key, size, mode, uid, gid, at: data.len() as u64, len: bytes.len() as u64 });
            data.extend_from_slice(&bytes);
        }
        out.shm.sort_by_key(|s| s.id);
        Ok((out, data))
    })
}

/// Maps segment `id` read-only in this process and reads it through its file (holes read as
/// zeros and stay holes).
fn read_segment(id: i32, size: u64) -> CResult<Vec<u8>> {
    // SAFETY: attaches a segment read-only at an address the kernel picks; detached below.
    let p = unsafe { libc::shmat(id, std::ptr::null(), libc::SHM_RDONLY) };
    if p as isize == -1 {
        return Err(CheckpointError::Unsupported(format!(
            "System V segment {id} cannot be read: {}",
            std::io::Error::last_os_error()
        )));
    }
    let start = p as u64;
    let end = start + size.div_ceil(PAGE) * PAGE;
    let path = format!("/proc/self/map_files/{start:x}-{end:x}");
    let read = std::fs::File::open(&path)
        .and_then(|f| {
            let mut buf = vec![0u8; size as usize];
            f.read_exact_at(&mut buf, 0).map(|()| buf)
        })
        .or_else(|e| match e.raw_os_error() {
            // map_files needs CAP_SYS_ADMIN of the first user namespace, which the helper of an
            // unprivileged `up` lacks: read the attached memory instead (which fills its holes).
            Some(libc::EPERM) => {
                // SAFETY: the segment is attached read-only at p for at least `size` bytes.
                Ok(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), size as usize) }.to_vec())
            }
            _ => Err(e),
        });
    // SAFETY: detaches what shmat attached above.
    unsafe { libc::shmdt(p) };
    read.map_err(io(path))
}

fn shmget(next_id: Option<i32>, key: i32, size: u64, mode: u32) -> CResult<i32> {
    if let Some(n) = next_id {
        std::fs::write(NEXT_ID, n.to_string())
            .map_err(|e| restore_err(format!("System V segment {n}"), format!("writing {NEXT_ID} failed: {e}")))?;
    }
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as i32;
    // SAFETY: creates a segment; no memory is passed.
    let id = unsafe { libc::shmget(key, size as usize, flags) };
    if id < 0 {
        return Err(restore_err(
            format!("System V segment {}", next_id.unwrap_or(-1)),
            format!("shmget(key {key:#x}, {size} bytes) failed: {}", std::io::Error::last_os_error()),
        ));
    }
    Ok(id)
}

fn remove(id: i32) {
    // SAFETY: IPC_RMID takes no buffer.
    unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
}

/// Gives a made segment its owner and mode, and its bytes (pages of zeros stay holes).
fn fill(id: i32, seg: &Segment, bytes: &[u8]) -> CResult<()> {
    let what = || format!("System V segment {}", seg.id);
    // SAFETY: shmid_ds is plain data; IPC_STAT fills it, IPC_SET reads it.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: as above, on a valid, owned struct.
    if unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) } != 0 {
        return Err(restore_err(what(), format!("IPC_STAT failed: {}", std::io::Error::last_os_error())));
    }
    ds.shm_perm.uid = seg.uid;
    ds.shm_perm.gid = seg.gid;
    ds.shm_perm.mode = (seg.mode & 0o777) as u16;
    // SAFETY: as above.
    if unsafe { libc::shmctl(id, libc::IPC_SET, &mut ds) } != 0 {
        return Err(restore_err(what(), format!("IPC_SET failed: {}", std::io::Error::last_os_error())));
    }
    if bytes.iter().all(|b| *b == 0) {
        return Ok(());
    }
    // SAFETY: attaches the segment just made, writable, where the kernel picks; detached below.
    let p = unsafe { libc::shmat(id, std::ptr::null(), 0) };
    if p as isize == -1 {
        return Err(restore_err(what(), format!("shmat failed: {}", std::io::Error::last_os_error())));
    }
    for (i, page) in bytes.chunks(PAGE as usize).enumerate() {
        if page.iter().any(|b| *b != 0) {
            // SAFETY: the segment is at least bytes.len() long and attached writable at p;
            // the ranges do not overlap.
            unsafe { std::ptr::copy_nonoverlapping(page.as_ptr(), p.cast::<u8>().add(i * PAGE as usize), page.len()) };
        }
    }
    // SAFETY: detaches what shmat attached above.
    unsafe { libc::shmdt(p) };
    Ok(())
}

/// Makes the segments of `s` again in the (fresh) IPC namespace of `program`, at their ids,
/// with the kernel's allocation cycle where the recording had it. `data` is the checkpoint's
/// page part.
pub fn restore(program: i32, s: &Sysv, data: &[u8]) -> CResult<()> {
    if s.shm.is_empty() && s.shm_last.is_none() {
        return Ok(());
    }
    in_ipc_ns(program, || {
        if !table("shm")?.is_empty() {
            return Err(restore_err("System V shared memory", "the program's new IPC namespace is not empty"));
        }
        let idx = |id: i32| id & ((1 << SEQ_SHIFT) - 1);
        let bytes = |seg: &Segment| {
            data.get(seg.at as usize..(seg.at + seg.len) as usize)
                .ok_or_else(|| restore_err("the checkpoint's pages", "shorter than its segment list says"))
        };
        let mut placeholders = Vec::new();
        let result = (|| {
            let last = s.shm_last.filter(|l| *l >= 0);
            if let Some(l) = last {
                for i in 0..idx(l) {
                    if !s.shm.iter().any(|seg| idx(seg.id) == i) {
                        placeholders.push(shmget(Some(i), libc::IPC_PRIVATE, PAGE, 0o600)?);
                    }
                }
            }
            for seg in s.shm.iter().filter(|seg| Some(seg.id) != last) {
                let id = shmget(Some(seg.id), seg.key, seg.size, seg.mode)?;
                if id != seg.id {
                    return Err(restore_err(format!("System V segment {}", seg.id), format!("it was made as {id}")));
                }
                fill(id, seg, bytes(seg)?)?;
            }
            if let Some(l) = last {
                let seg = s.shm.iter().find(|seg| seg.id == l);
                let id = match seg {
                    Some(seg) => shmget(None, seg.key, seg.size, seg.mode)?,
                    None => shmget(None, libc::IPC_PRIVATE, PAGE, 0o600)?,
                };
                if id != l {
                    return Err(restore_err(
                        "System V shared memory",
                        format!("the kernel's next id is {id}, the recording's was {l}"),
                    ));
                }
                match seg {
                    Some(seg) => fill(id, seg, bytes(seg)?)?,
                    None => placeholders.push(id),
                }
            }
            Ok(())
        })();
        for p in placeholders {
            remove(p);
        }
        result
    })
}

/// Marks for removal the segments that were (they are attached again now).
pub fn remove_marked(program: i32, s: &Sysv) -> CResult<()> {
    if !s.shm.iter().any(Segment::removed) {
        return Ok(());
    }
    in_ipc_ns(program, || {
        for seg in s.shm.iter().filter(|seg| seg.removed()) {
            remove(seg.id);
        }
        Ok(())
    })
}
