//! System V IPC objects in a checkpoint, read and made again inside the program's IPC namespace
//! by a thread of the tracer that enters it (setns moves only the calling thread; the thread
//! ends after):
//! - shared memory segments: ids, keys, sizes, owners, modes and bytes;
//! - semaphore sets: ids, keys, owners, modes and values (semctl GETALL, SETALL). Adjustments
//!   of semops with SEM_UNDO are the kernel's per process and cannot be read: once the program
//!   made one, no checkpoint is taken (replay follows the flag, see `refusal`). Which process
//!   last operated on a semaphore (GETPID) is not kept;
//! - message queues: ids, keys, owners, modes, their byte limit and their messages in order
//!   (read with MSG_COPY, which leaves them queued; sent again in order).
//!
//! Replay takes a checkpoint only where no task waits inside the kernel (every task is at a
//! seccomp stop), so no semop or msgrcv is waiting in one.
//!
//! An object must come back at its id (the program holds the number), and the next object of
//! its kind the program creates must get the id it got at record. The kernel allocates an id's
//! index cyclically after the index of the last object of the kind it created, with a sequence
//! number that grows when that cycle wraps (`ipc_idr_alloc`). A restore writes `*_next_id` for
//! each kept object (an explicit id moves neither the cycle nor the sequence), fills the
//! indexes below the last created one with placeholders, and creates the last one (or a
//! placeholder) the ordinary way: the cycle is then where the recording's was. That holds while
//! the sequence is still 0 (fewer than 64 objects of the kind were created in the program's life,
//! or more with fewer alive at any time); beyond, no checkpoint is taken and the reason says so.

use super::{io, restore_err, CResult, CheckpointError, PAGE};
use serde::{Deserialize, Serialize};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

/// Marked for removal while still attached (SHM_DEST in the mode).
const SHM_DEST: u32 = 0o1000;
/// An id is its sequence number shifted by this, plus its index (IPCMNI 32768: the kernel's
/// default without ipcmni_extend).
const SEQ_SHIFT: u32 = 15;
const SHM_NEXT_ID: &str = "/proc/sys/kernel/shm_next_id";
const SEM_NEXT_ID: &str = "/proc/sys/kernel/sem_next_id";
const MSG_NEXT_ID: &str = "/proc/sys/kernel/msg_next_id";
/// msgrcv: copy the message at index `msgtyp`, leaving it queued (linux/msg.h).
const MSG_COPY: i32 = 0o40000;
/// The largest message read from a queue (the kernel's msgmax cannot exceed this).
const MSG_MAX: usize = 1 << 20;

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

/// One semaphore set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SemSet {
    pub id: i32,
    pub key: i32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub values: Vec<u16>,
}

/// One message queue: its byte limit and its messages in order, each (type, its bytes: this
/// range of the checkpoint's page part).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Queue {
    pub id: i32,
    pub key: i32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub qbytes: u64,
    pub messages: Vec<(i64, u64, u64)>,
}

/// The id of the last object of each kind the program created (replay's bookkeeping knows
/// them: the kernel's allocation cycles continue after them). -1: too many to follow.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lasts {
    pub shm: Option<i32>,
    #[serde(default)]
    pub sem: Option<i32>,
    #[serde(default)]
    pub msg: Option<i32>,
}

/// The program's System V IPC objects.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Sysv {
    pub shm: Vec<Segment>,
    #[serde(default)]
    pub sem: Vec<SemSet>,
    #[serde(default)]
    pub msg: Vec<Queue>,
    #[serde(default)]
    pub lasts: Lasts,
}

impl Sysv {
    /// Moves every byte range by `by` (the part is appended after `by` bytes of pages).
    pub fn shift(&mut self, by: u64) {
        for seg in &mut self.shm {
            seg.at += by;
        }
        for m in self.msg.iter_mut().flat_map(|q| q.messages.iter_mut()) {
            m.1 += by;
        }
    }
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

/// A line of the last ids, a line per segment (`g`), semaphore set (`s`, its values after)
/// and queue (`q`), each queue's messages after it (`m`); then the bytes.
impl Carry for (Sysv, Vec<u8>) {
    fn to_wire(self) -> (String, Vec<u8>) {
        let (s, data) = self;
        let last = |l: Option<i32>| l.map_or("-".into(), |l| l.to_string());
        let mut w = format!("{} {} {}\n", last(s.lasts.shm), last(s.lasts.sem), last(s.lasts.msg));
        for g in &s.shm {
            w += &format!("g {} {} {} {} {} {} {} {}\n", g.id, g.key, g.size, g.mode, g.uid, g.gid, g.at, g.len);
        }
        for m in &s.sem {
            let values: Vec<String> = m.values.iter().map(u16::to_string).collect();
            w += &format!("s {} {} {} {} {} {}\n", m.id, m.key, m.mode, m.uid, m.gid, values.join(" "));
        }
        for q in &s.msg {
            w += &format!("q {} {} {} {} {} {}\n", q.id, q.key, q.mode, q.uid, q.gid, q.qbytes);
            for (ty, at, len) in &q.messages {
                w += &format!("m {ty} {at} {len}\n");
            }
        }
        (w, data)
    }
    fn from_wire(words: &str, bytes: Vec<u8>) -> Option<Self> {
        let mut lines = words.lines();
        let last = |w: Option<&str>| -> Option<Option<i32>> {
            match w? {
                "-" => Some(None),
                l => Some(Some(l.parse().ok()?)),
            }
        };
        let mut head = lines.next()?.split(' ');
        let lasts = Lasts { shm: last(head.next())?, sem: last(head.next())?, msg: last(head.next())? };
        let mut s = Sysv { lasts, ..Default::default() };
        for l in lines {
            let f: Vec<&str> = l.split(' ').collect();
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<i64>().ok());
            let id = |i: usize| n(i).and_then(|v| i32::try_from(v).ok());
            let u32_at = |i: usize| n(i).and_then(|v| u32::try_from(v).ok());
            let u64_at = |i: usize| n(i).and_then(|v| u64::try_from(v).ok());
            match *f.first()? {
                "g" => s.shm.push(Segment {
                    id: id(1)?,
                    key: id(2)?,
                    size: u64_at(3)?,
                    mode: u32_at(4)?,
                    uid: u32_at(5)?,
                    gid: u32_at(6)?,
                    at: u64_at(7)?,
                    len: u64_at(8)?,
                }),
                "s" => s.sem.push(SemSet {
                    id: id(1)?,
                    key: id(2)?,
                    mode: u32_at(3)?,
                    uid: u32_at(4)?,
                    gid: u32_at(5)?,
                    values: f[6..].iter().filter(|v| !v.is_empty()).map(|v| v.parse().ok()).collect::<Option<_>>()?,
                }),
                "q" => s.msg.push(Queue {
                    id: id(1)?,
                    key: id(2)?,
                    mode: u32_at(3)?,
                    uid: u32_at(4)?,
                    gid: u32_at(5)?,
                    qbytes: u64_at(6)?,
                    messages: Vec::new(),
                }),
                "m" => s.msg.last_mut()?.messages.push((n(1)?, u64_at(2)?, u64_at(3)?)),
                _ => return None,
            }
        }
        Some((s, bytes))
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

/// Why no checkpoint can be taken now, if one cannot: a semop with SEM_UNDO ran (`sem_undo`),
/// or the objects' ids could not be made again.
pub fn refusal(lasts: Lasts, sem_undo: bool) -> Option<String> {
    if sem_undo {
        return Some(
            "the program made a semop with SEM_UNDO (the kernel's adjustments of its processes are not kept in checkpoints)"
                .into(),
        );
    }
    let kinds = [("shared memory segments", lasts.shm), ("semaphore sets", lasts.sem), ("message queues", lasts.msg)];
    for (what, last) in kinds {
        if last.is_some_and(|l| l < 0 || l >> SEQ_SHIFT != 0) {
            return Some(format!("the program created more System V {what} than a restore can give the same ids to"));
        }
    }
    None
}

/// Reads every System V object of the program's IPC namespace: (description, bytes).
pub fn capture(program: i32, lasts: Lasts) -> CResult<(Sysv, Vec<u8>)> {
    in_ipc_ns(program, || {
        let mut out = Sysv { lasts, ..Default::default() };
        let mut data = Vec::new();
        // key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime rss swap
        for row in table("shm")? {
            let key = row.first().and_then(|k| k.parse::<i32>().ok()).unwrap_or(0);
            let id = object_id(&row)?;
            let mode: u32 = field(&row, 2, true)?;
            let size: u64 = field(&row, 3, false)?;
            let (uid, gid): (u32, u32) = (field(&row, 7, false)?, field(&row, 8, false)?);
            let bytes = read_segment(id, size)?;
            out.shm.push(Segment { id, key, size, mode, uid, gid, at: data.len() as u64, len: bytes.len() as u64 });
            data.extend_from_slice(&bytes);
        }
        // key semid perms nsems uid gid cuid cgid otime ctime
        for row in table("sem")? {
            let key = row.first().and_then(|k| k.parse::<i32>().ok()).unwrap_or(0);
            let id = object_id(&row)?;
            let mode: u32 = field(&row, 2, true)?;
            let nsems: usize = field(&row, 3, false)?;
            let (uid, gid): (u32, u32) = (field(&row, 4, false)?, field(&row, 5, false)?);
            let mut values = vec![0u16; nsems];
            // SAFETY: GETALL writes nsems values into the array, which has room for them.
            if unsafe { libc::semctl(id, 0, libc::GETALL, values.as_mut_ptr()) } != 0 {
                return Err(unreadable("semaphore set", id));
            }
            out.sem.push(SemSet { id, key, mode, uid, gid, values });
        }
        // key msqid perms cbytes qnum lspid lrpid uid gid cuid cgid stime rtime ctime
        for row in table("msg")? {
            let key = row.first().and_then(|k| k.parse::<i32>().ok()).unwrap_or(0);
            let id = object_id(&row)?;
            let mode: u32 = field(&row, 2, true)?;
            let qnum: usize = field(&row, 4, false)?;
            let (uid, gid): (u32, u32) = (field(&row, 7, false)?, field(&row, 8, false)?);
            // SAFETY: msqid_ds is plain data, filled by IPC_STAT.
            let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
            // SAFETY: as above, on a valid, owned struct.
            if unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) } != 0 {
                return Err(unreadable("message queue", id));
            }
            let mut q = Queue { id, key, mode, uid, gid, qbytes: ds.msg_qbytes, messages: Vec::new() };
            let mut buf = vec![0u8; 8 + MSG_MAX];
            for index in 0..qnum {
                // SAFETY: msgrcv writes a long and at most MSG_MAX bytes into buf, which has
                // room for both; MSG_COPY leaves the message queued.
                let n = unsafe {
                    libc::msgrcv(id, buf.as_mut_ptr().cast(), MSG_MAX, index as i64, libc::IPC_NOWAIT | MSG_COPY)
                };
                if n < 0 {
                    return Err(unreadable("message queue", id));
                }
                let ty = i64::from_ne_bytes(buf[..8].try_into().unwrap_or_default());
                q.messages.push((ty, data.len() as u64, n as u64));
                data.extend_from_slice(&buf[8..8 + n as usize]);
            }
            out.msg.push(q);
        }
        out.shm.sort_by_key(|s| s.id);
        out.sem.sort_by_key(|s| s.id);
        out.msg.sort_by_key(|s| s.id);
        Ok((out, data))
    })
}

/// The id in a /proc/sysvipc line (its second field).
fn object_id(row: &[String]) -> CResult<i32> {
    let id: u64 = field(row, 1, false)?;
    i32::try_from(id).map_err(|_| CheckpointError::Unsupported(format!("System V id {id}")))
}

fn unreadable(what: &str, id: i32) -> CheckpointError {
    CheckpointError::Unsupported(format!("System V {what} {id} cannot be read: {}", std::io::Error::last_os_error()))
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

/// Makes the next object of a kind (`next` the path of its `*_next_id`) at id `at`, or where the
/// kernel's cycle is if None, with `make`.
fn made_at(next: &str, what: &str, at: Option<i32>, make: impl FnOnce() -> i32) -> CResult<i32> {
    if let Some(n) = at {
        std::fs::write(next, n.to_string())
            .map_err(|e| restore_err(format!("System V {what} {n}"), format!("writing {next} failed: {e}")))?;
    }
    let id = make();
    if id < 0 {
        return Err(restore_err(
            format!("System V {what} {}", at.unwrap_or(-1)),
            format!("making it failed: {}", std::io::Error::last_os_error()),
        ));
    }
    Ok(id)
}

/// How one kind of object is made again.
struct Kind<'a, T> {
    what: &'static str,
    next: &'static str,
    items: &'a [T],
    last: Option<i32>,
    id: fn(&T) -> i32,
    /// Makes the item (None: a placeholder) where the kernel's next id says.
    make: &'a dyn Fn(Option<&T>) -> i32,
    /// Gives a made item its owner, mode and content.
    fill: &'a dyn Fn(i32, &T) -> CResult<()>,
    remove: fn(i32),
}

/// Makes a kind's items at their ids, with the kernel's allocation cycle where the recording
/// had it: placeholders at the indexes below the last created id that no item holds (removed
/// after), the last created one (or a placeholder) made the ordinary way.
fn recreate<T>(k: Kind<'_, T>) -> CResult<()> {
    let idx = |id: i32| id & ((1 << SEQ_SHIFT) - 1);
    let mut placeholders = Vec::new();
    let result = (|| {
        let last = k.last.filter(|l| *l >= 0);
        if let Some(l) = last {
            for i in 0..idx(l) {
                if !k.items.iter().any(|it| idx((k.id)(it)) == i) {
                    placeholders.push(made_at(k.next, k.what, Some(i), || (k.make)(None))?);
                }
            }
        }
        for it in k.items.iter().filter(|it| Some((k.id)(it)) != last) {
            let want = (k.id)(it);
            let id = made_at(k.next, k.what, Some(want), || (k.make)(Some(it)))?;
            if id != want {
                return Err(restore_err(format!("System V {} {want}", k.what), format!("it was made as {id}")));
            }
            (k.fill)(id, it)?;
        }
        if let Some(l) = last {
            let it = k.items.iter().find(|it| (k.id)(it) == l);
            let id = made_at(k.next, k.what, None, || (k.make)(it))?;
            if id != l {
                return Err(restore_err(
                    format!("System V {}", k.what),
                    format!("the kernel's next id is {id}, the recording's was {l}"),
                ));
            }
            match it {
                Some(it) => (k.fill)(id, it)?,
                None => placeholders.push(id),
            }
        }
        Ok(())
    })();
    for p in placeholders {
        (k.remove)(p);
    }
    result
}

fn make_segment(seg: Option<&Segment>) -> i32 {
    let (key, size, mode) = seg.map_or((libc::IPC_PRIVATE, PAGE, 0o600), |s| (s.key, s.size, s.mode));
    // SAFETY: creates a segment; no memory is passed.
    unsafe { libc::shmget(key, size as usize, libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as i32) }
}

fn remove(id: i32) {
    // SAFETY: IPC_RMID takes no buffer.
    unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
}

fn make_semset(set: Option<&SemSet>) -> i32 {
    let (key, n, mode) = set.map_or((libc::IPC_PRIVATE, 1, 0o600), |s| (s.key, s.values.len() as i32, s.mode));
    // SAFETY: creates a semaphore set; no memory is passed.
    unsafe { libc::semget(key, n, libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as i32) }
}

fn remove_semset(id: i32) {
    // SAFETY: IPC_RMID takes no argument.
    unsafe { libc::semctl(id, 0, libc::IPC_RMID) };
}

/// Gives a made object its owner and mode: IPC_STAT into `ds` (its kind's struct, zeroed),
/// `perm` edits it (and returns its ipc_perm), IPC_SET. `ctl` is the kind's *ctl on the object.
fn set_owner<T>(
    what: &str,
    mut ds: T,
    ctl: impl Fn(i32, &mut T) -> i32,
    owner: (u32, u32, u32),
    perm: impl FnOnce(&mut T) -> &mut libc::ipc_perm,
) -> CResult<()> {
    let failed = |cmd: &str| restore_err(what, format!("{cmd} failed: {}", std::io::Error::last_os_error()));
    if ctl(libc::IPC_STAT, &mut ds) != 0 {
        return Err(failed("IPC_STAT"));
    }
    let p = perm(&mut ds);
    (p.uid, p.gid, p.mode) = (owner.0, owner.1, (owner.2 & 0o777) as u16);
    if ctl(libc::IPC_SET, &mut ds) != 0 {
        return Err(failed("IPC_SET"));
    }
    Ok(())
}

/// Gives a made semaphore set its owner, mode and values.
fn fill_semset(id: i32, set: &SemSet) -> CResult<()> {
    let what = format!("System V semaphore set {}", set.id);
    // SAFETY: semid_ds is plain data, which zeros make valid.
    let ds = unsafe { std::mem::zeroed::<libc::semid_ds>() };
    // SAFETY: semctl fills or reads the owned struct, passed as semun's buf.
    let ctl = |cmd, ds: &mut libc::semid_ds| unsafe { libc::semctl(id, 0, cmd, ds as *mut libc::semid_ds) };
    set_owner(&what, ds, ctl, (set.uid, set.gid, set.mode), |ds| &mut ds.sem_perm)?;
    let mut values = set.values.clone();
    // SAFETY: SETALL reads nsems values from the array, which has them.
    if unsafe { libc::semctl(id, 0, libc::SETALL, values.as_mut_ptr()) } != 0 {
        return Err(restore_err(what, format!("SETALL failed: {}", std::io::Error::last_os_error())));
    }
    Ok(())
}

fn make_queue(q: Option<&Queue>) -> i32 {
    let (key, mode) = q.map_or((libc::IPC_PRIVATE, 0o600), |q| (q.key, q.mode));
    // SAFETY: creates a message queue; no memory is passed.
    unsafe { libc::msgget(key, libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as i32) }
}

fn remove_queue(id: i32) {
    // SAFETY: IPC_RMID takes no buffer.
    unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
}

/// Gives a made queue its owner, mode and byte limit, and sends its messages in order.
fn fill_queue(id: i32, q: &Queue, data: &[u8]) -> CResult<()> {
    let what = || format!("System V message queue {}", q.id);
    // SAFETY: msqid_ds is plain data, which zeros make valid.
    let ds = unsafe { std::mem::zeroed::<libc::msqid_ds>() };
    // SAFETY: msgctl fills or reads the owned struct.
    let ctl = |cmd, ds: &mut libc::msqid_ds| unsafe { libc::msgctl(id, cmd, ds) };
    // Room for every message first (the program may have lowered the limit below what its
    // queue holds), the program's limit after.
    let queued: u64 = q.messages.iter().map(|m| m.2).sum();
    set_owner(&what(), ds, ctl, (q.uid, q.gid, q.mode), |ds| {
        ds.msg_qbytes = q.qbytes.max(queued);
        &mut ds.msg_perm
    })?;
    for (ty, at, len) in &q.messages {
        let text = data
            .get(*at as usize..(*at + *len) as usize)
            .ok_or_else(|| restore_err("the checkpoint's pages", "shorter than its message list says"))?;
        let mut buf = ty.to_ne_bytes().to_vec();
        buf.extend_from_slice(text);
        // SAFETY: msgsnd reads a long and `len` bytes from buf, which holds them.
        if unsafe { libc::msgsnd(id, buf.as_ptr().cast(), text.len(), libc::IPC_NOWAIT) } != 0 {
            return Err(restore_err(what(), format!("msgsnd failed: {}", std::io::Error::last_os_error())));
        }
    }
    if queued > q.qbytes {
        // SAFETY: msqid_ds is plain data, which zeros make valid.
        let ds = unsafe { std::mem::zeroed::<libc::msqid_ds>() };
        set_owner(&what(), ds, ctl, (q.uid, q.gid, q.mode), |ds| {
            ds.msg_qbytes = q.qbytes;
            &mut ds.msg_perm
        })?;
    }
    Ok(())
}

/// Gives a made segment its owner and mode, and its bytes (pages of zeros stay holes).
fn fill(id: i32, seg: &Segment, bytes: &[u8]) -> CResult<()> {
    let what = || format!("System V segment {}", seg.id);
    // SAFETY: shmid_ds is plain data, which zeros make valid.
    let ds = unsafe { std::mem::zeroed::<libc::shmid_ds>() };
    // SAFETY: shmctl fills or reads the owned struct.
    let ctl = |cmd, ds: &mut libc::shmid_ds| unsafe { libc::shmctl(id, cmd, ds) };
    set_owner(&what(), ds, ctl, (seg.uid, seg.gid, seg.mode), |ds| &mut ds.shm_perm)?;
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

/// Makes the objects of `s` again in the (fresh) IPC namespace of `program`, at their ids,
/// with the kernel's allocation cycles where the recording had them. `data` is the
/// checkpoint's page part.
pub fn restore(program: i32, s: &Sysv, data: &[u8]) -> CResult<()> {
    let lasts = s.lasts;
    if s.shm.is_empty() && s.sem.is_empty() && s.msg.is_empty() && lasts == Lasts::default() {
        return Ok(());
    }
    in_ipc_ns(program, || {
        if ["shm", "sem", "msg"].iter().any(|t| table(t).map(|rows| !rows.is_empty()).unwrap_or(true)) {
            return Err(restore_err("System V IPC", "the program's new IPC namespace is not empty"));
        }
        let bytes = |seg: &Segment| {
            data.get(seg.at as usize..(seg.at + seg.len) as usize)
                .ok_or_else(|| restore_err("the checkpoint's pages", "shorter than its segment list says"))
        };
        recreate(Kind {
            what: "shared memory segment",
            next: SHM_NEXT_ID,
            items: &s.shm,
            last: lasts.shm,
            id: |g| g.id,
            make: &make_segment,
            fill: &|id, g| fill(id, g, bytes(g)?),
            remove,
        })?;
        recreate(Kind {
            what: "semaphore set",
            next: SEM_NEXT_ID,
            items: &s.sem,
            last: lasts.sem,
            id: |m| m.id,
            make: &make_semset,
            fill: &fill_semset,
            remove: remove_semset,
        })?;
        recreate(Kind {
            what: "message queue",
            next: MSG_NEXT_ID,
            items: &s.msg,
            last: lasts.msg,
            id: |q| q.id,
            make: &make_queue,
            fill: &|id, q| fill_queue(id, q, data),
            remove: remove_queue,
        })
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
