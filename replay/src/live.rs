//! Going live: a follower that has replayed every committed event becomes the leader. Its
//! stand-ins for outside-world fds (eventfds at the numbers of sockets) become real kernel
//! objects, made by syscalls injected into a task parked at a syscall stop:
//! - a socket that was bound and listening is rebuilt (same options, address, backlog, status
//!   flags), so clients reconnect to the same address; so is a datagram socket (UDP, unix), with
//!   its address and the peer it was connected to;
//! - any other socket (a client connection, an outgoing connection) becomes a socket whose peer
//!   has closed: the program reads EOF and closes it, as if the client had gone away;
//! - epoll registrations of the replaced fds are re-added (the epoll instances are real at
//!   replay, see `Live::Epoll`), with the events and data the program registered;
//! - a file outside the data directory (a stand-in too: its reads were inputs) is opened again
//!   by its path, with the flags it was opened with (O_CREAT, O_TRUNC, O_EXCL left out) and at
//!   the offset its reads, writes and lseeks had reached; if it cannot be opened, /dev/null
//!   takes its place (with a warning), rather than an eventfd that a read waits on forever;
//! - bytes written into a pipe of the program's own and not read when the log ends (replay
//!   runs neither the write nor the read: both are logged) are written into that pipe by the
//!   tracer (replay.rs `refill_pipes`);
//! - a socketpair of the program's (both ends in its processes: nginx's master-worker channels,
//!   a python parent and its forked child; a pipe stands in for it at replay) becomes a real
//!   socketpair of the same type, each process getting the end its fds stood for, with the
//!   bytes in flight each way written in (`Pair`);
//! - a stand-in that several processes share (inherited over fork: a server's listening socket
//!   in a BGSAVE child) is made real once, in the first of them; the others take that socket
//!   with pidfd_getfd, so they share it as they did at record (and the address is bound once).
//!
//! Everything injected is undone in the address space (the scratch page is unmapped), so the
//! new leader's memory layout stays the followers'.

use crate::error::{Result, SessionError};
use ft_interposer::inject::Remote;
use ft_interposer::procfs::{epoll_registrations, eventfd_id, fd_flags, is_stand_in};
use ft_interposer::Stopped;
use slog::{debug, info, warn, Logger};
use std::collections::HashMap;

/// What replay learned of a socket from the syscalls that made and configured it.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct SockShadow {
    /// socket() arguments; None for an accepted connection.
    pub made: Option<(i32, i32, i32)>,
    pub addr: Vec<u8>,
    pub backlog: Option<i32>,
    /// setsockopt (level, name, value), in order.
    pub opts: Vec<(i32, i32, Vec<u8>)>,
    /// The address connect gave it.
    #[serde(default)]
    pub peer: Vec<u8>,
    /// An accepted connection's address family and whether it is a stream: its listener's
    /// (a socket made here has them in `made`; see [`SockShadow::kind`]).
    #[serde(default)]
    pub family: i32,
    #[serde(default)]
    pub stream: bool,
}

/// What replay learned of a file outside the data directory from the syscalls on it.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct FileShadow {
    /// Absolute, as resolved when it was opened.
    pub path: std::path::PathBuf,
    pub flags: i32,
    pub offset: u64,
}

/// What make_real does for a process that no task of is at a syscall stop when the replay goes
/// live: the recorder does it at the process's first syscall stop.
pub(crate) struct Deferred {
    pub sockets: HashMap<i32, SockShadow>,
    pub files: HashMap<i32, FileShadow>,
    pub work: ProcWork,
}

/// What else going live does in a process, besides its fds.
#[derive(Default)]
pub(crate) struct ProcWork {
    /// Interval timers to arm (which, struct itimerval: interval s, µs, value s, µs).
    pub timers: Vec<(i32, [i64; 4])>,
    /// Pidfds that pidfd_open made (stand-ins at replay): (fd, pid as the program sees it).
    pub pidfds: Vec<(i32, i32)>,
    /// POSIX timers to make and arm.
    pub posix: crate::timers::PosixWork,
}

impl ProcWork {
    pub fn is_empty(&self) -> bool {
        self.timers.is_empty() && self.pidfds.is_empty() && self.posix.is_empty()
    }
}

/// A signalfd the program made (a stand-in at replay: its reads are logged): the signals it
/// takes (a sigset, signal n at bit n-1) and its flags.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct SignalShadow {
    pub mask: u64,
    pub flags: i32,
}

/// An inotify instance the program made (a stand-in at replay: its reads are logged): its
/// flags, and the watches added and removed, in order, with the descriptors the kernel gave
/// (made again in the same order, a fresh instance numbers them alike).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct InotifyShadow {
    pub flags: i32,
    pub ops: Vec<WatchOp>,
    /// More operations than kept (`WatchOp::KEPT`): descriptors may differ after going live.
    pub overflowed: bool,
}

/// A watch added (the path absolute, as resolved when it was added) or removed.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) enum WatchOp {
    Add { path: std::path::PathBuf, mask: u32, wd: i32 },
    Rm { wd: i32 },
}

impl WatchOp {
    /// The operations kept per instance.
    pub const KEPT: usize = 4096;
}

/// The program's eventfds, timerfds, signalfds and inotify instances, stand-ins at replay, by
/// the eventfd id of their stand-ins: what they are made again as. Followed by replay, handed
/// over to the recorder for the processes made real at their first stop.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Shadows {
    pub events: HashMap<u64, EventShadow>,
    pub timers: HashMap<u64, crate::timers::TimerFdShadow>,
    pub signals: HashMap<u64, SignalShadow>,
    pub inotify: HashMap<u64, InotifyShadow>,
}

impl Shadows {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.timers.is_empty() && self.signals.is_empty() && self.inotify.is_empty()
    }

    /// Forgets whatever stood at stand-in id `id` (another stand-in took it).
    pub fn forget(&mut self, id: u64) {
        self.events.remove(&id);
        self.timers.remove(&id);
        self.signals.remove(&id);
        self.inotify.remove(&id);
    }

    /// The same, its ids renamed by `id` (old to new: a checkpoint's restore made the stand-ins
    /// again).
    pub fn renamed(self, id: &HashMap<u64, u64>) -> Shadows {
        fn re<V>(m: HashMap<u64, V>, id: &HashMap<u64, u64>) -> HashMap<u64, V> {
            m.into_iter().map(|(k, v)| (id.get(&k).copied().unwrap_or(k), v)).collect()
        }
        Shadows {
            events: re(self.events, id),
            timers: re(self.timers, id),
            signals: re(self.signals, id),
            inotify: re(self.inotify, id),
        }
    }
}

/// An eventfd the program made (a stand-in at replay: its reads and writes are logged): its
/// counter as the log's writes and reads leave it, and its flags.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct EventShadow {
    pub count: u64,
    pub flags: i32,
}

/// A stand-in to make real.
#[derive(Clone, Copy)]
enum Stand<'a> {
    Sock(&'a SockShadow),
    File(&'a FileShadow),
    Event(&'a EventShadow),
    Timer(&'a crate::timers::TimerFdShadow),
    Signal(&'a SignalShadow),
    Inotify(&'a InotifyShadow),
    /// A pidfd of this pid (as the program sees it).
    PidFd(i32),
    /// An end of one of the program's socketpairs: its stand-in pipe's inode, and which end.
    PairEnd(u64, usize),
}

impl<'a> Stand<'a> {
    /// A socket made again as it was, not one whose peer has gone: a listening socket, a
    /// datagram socket, and a stream socket bound but not connected (varnish's manager binds
    /// the socket its child listens on).
    fn rebuilt(self) -> Option<&'a SockShadow> {
        match self {
            Stand::Sock(sh) if sh.listening() || sh.datagram() || sh.bound_only() => Some(sh),
            _ => None,
        }
    }
}

impl SockShadow {
    fn listening(&self) -> bool {
        self.made.is_some() && !self.addr.is_empty() && self.backlog.is_some()
    }

    /// A datagram socket the program made (UDP, a unix datagram socket to /dev/log): it has no
    /// connection to lose; it is made again with its address and its peer.
    fn datagram(&self) -> bool {
        self.made.is_some_and(|(_, ty, _)| ty & 0xf == libc::SOCK_DGRAM)
    }

    /// Its address family (0: not known) and whether it is a stream: a connection that does not
    /// survive going live is made dead in the same family.
    pub fn kind(&self) -> (i32, bool) {
        match self.made {
            Some((domain, ty, _)) => (domain, ty & 0xf == libc::SOCK_STREAM),
            None => (self.family, self.stream),
        }
    }

    /// A socket this process made and bound, and did not connect (nor listen on).
    fn bound_only(&self) -> bool {
        self.made.is_some() && !self.addr.is_empty() && self.peer.is_empty()
    }
}

/// What this go-live made real so far, for the processes made real after.
#[derive(Default)]
pub(crate) struct MadeReal {
    /// The real sockets, by the eventfd id of the stand-in they replaced: the process (its pid
    /// as the program sees it) and fd that hold one.
    shared: HashMap<u64, (i32, i32)>,
    /// The program's socketpairs, by the inode of their stand-in pipe.
    pub pairs: HashMap<u64, Pair>,
    /// The socket inodes of the program's socketpairs (made real here, or by the program at
    /// record): the syscall buffer leaves their calls traced, so that a replica that replays
    /// them follows their bytes in flight (`Replayer::follow_pipes`).
    pub pair_sockets: std::collections::HashSet<u64>,
}

impl MadeReal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every process holding a socketpair end has its own now: the tracer lets its copies go
    /// (held on, they would keep a peer from seeing the other end closed).
    pub fn pairs_done(&mut self) {
        self.pairs.clear();
    }
}

/// One of the program's socketpairs going live: made once, in the tracer, on the first fd that
/// stands for one of its ends; each process then gets a duplicate of the end it held
/// ([`send_fd`]), so the processes share the two ends as they did at record.
pub(crate) struct Pair {
    pub domain: i32,
    pub ty: i32,
    /// The bytes in flight toward each end (0: sv[0], the end the stand-in pipe reads from).
    pub toward: [Vec<u8>; 2],
    /// For a datagram pair, the lengths of the messages in `toward` (each sent by itself).
    pub messages: [Vec<usize>; 2],
    ends: Option<[std::os::fd::OwnedFd; 2]>,
}

impl Pair {
    pub fn new(domain: i32, ty: i32, toward: [Vec<u8>; 2], messages: [Vec<usize>; 2]) -> Self {
        Pair { domain, ty, toward, messages, ends: None }
    }

    /// The tracer's copy of end `end`, the pair made (and its bytes in flight written) first.
    fn end(&mut self, end: usize, log: &Logger) -> std::io::Result<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::{AsFd, FromRawFd, OwnedFd};
        if self.ends.is_none() {
            let mut sv = [0i32; 2];
            let ty = (self.ty & !libc::SOCK_NONBLOCK) | libc::SOCK_CLOEXEC;
            // SAFETY: sv has room for the two fds socketpair writes.
            if unsafe { libc::socketpair(self.domain, ty, 0, sv.as_mut_ptr()) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: socketpair succeeded: both fds are new and ours.
            let ends = unsafe { [OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])] };
            for (to, bytes) in self.toward.iter().enumerate().filter(|(_, b)| !b.is_empty()) {
                // Written into the other end, to be read at this one; without waiting: what
                // does not fit the socket's buffer is lost, with a warning.
                let from = &ends[1 - to];
                // A stream's bytes as they fit; a datagram pair's messages one send each.
                let sizes = match self.messages[to].as_slice() {
                    [] => vec![bytes.len()],
                    m => m.to_vec(),
                };
                let mut done = 0;
                for size in sizes {
                    let end = (done + size).min(bytes.len());
                    let mut at = done;
                    while at < end {
                        // SAFETY: a send from a live buffer of the given length.
                        let n = unsafe {
                            libc::send(
                                std::os::fd::AsRawFd::as_raw_fd(from),
                                bytes[at..end].as_ptr().cast(),
                                end - at,
                                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                            )
                        };
                        if n <= 0 {
                            break;
                        }
                        at += n as usize;
                    }
                    if at < end {
                        break;
                    }
                    done = end;
                }
                if done < bytes.len() {
                    warn!(log, "going live: bytes in flight in a socketpair are lost"; "bytes" => bytes.len() - done);
                } else {
                    info!(log, "going live: bytes in flight written into a socketpair"; "bytes" => done);
                }
            }
            self.ends = Some(ends);
        }
        match &self.ends {
            Some(e) => Ok(e[end].as_fd()),
            None => Err(std::io::Error::other("no socketpair")),
        }
    }
}

/// How long to retry binding an address the old leader's socket may still hold.
const BIND_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// Makes the stand-ins of one process real. `t` is one of its tasks, at a seccomp stop; it is
/// returned at the same stop.
pub(crate) fn make_real(
    t: Stopped,
    sockets: &HashMap<i32, SockShadow>,
    files: &HashMap<i32, FileShadow>,
    work: &ProcWork,
    shadows: &Shadows,
    made: &mut MadeReal,
    log: &Logger,
) -> Result<Stopped> {
    let pid = t.pid().as_raw();
    let tgid = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Tgid:").and_then(|v| v.trim().parse::<i32>().ok())))
        .unwrap_or(pid);
    let stands = sockets
        .iter()
        .map(|(fd, s)| (*fd, Stand::Sock(s)))
        .chain(files.iter().filter(|(fd, _)| !sockets.contains_key(fd)).map(|(fd, f)| (*fd, Stand::File(f))));
    let pidfds = work.pidfds.iter().filter(|(fd, _)| !sockets.contains_key(fd) && !files.contains_key(fd));
    let stands = stands.chain(pidfds.map(|(fd, pid)| (*fd, Stand::PidFd(*pid))));
    let mut todo: Vec<(i32, Stand, Option<u64>)> =
        stands.filter(|(fd, _)| is_stand_in(tgid, *fd)).map(|(fd, s)| (fd, s, eventfd_id(tgid, fd))).collect();
    if !shadows.is_empty() {
        let fds = std::fs::read_dir(format!("/proc/{tgid}/fd")).into_iter().flatten().flatten();
        for fd in fds.filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()) {
            if sockets.contains_key(&fd) || files.contains_key(&fd) {
                continue;
            }
            let Some(id) = eventfd_id(tgid, fd) else { continue };
            if let Some(ev) = shadows.events.get(&id) {
                todo.push((fd, Stand::Event(ev), Some(id)));
            } else if let Some(tf) = shadows.timers.get(&id) {
                todo.push((fd, Stand::Timer(tf), Some(id)));
            } else if let Some(sf) = shadows.signals.get(&id) {
                todo.push((fd, Stand::Signal(sf), Some(id)));
            } else if let Some(sh) = shadows.inotify.get(&id) {
                todo.push((fd, Stand::Inotify(sh), Some(id)));
            }
        }
    }
    if !made.pairs.is_empty() {
        let fds = std::fs::read_dir(format!("/proc/{tgid}/fd")).into_iter().flatten().flatten();
        for fd in fds.filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()) {
            if let Some((ino, write_end)) = ft_interposer::procfs::pipe_of(tgid, fd) {
                if made.pairs.contains_key(&ino) {
                    todo.push((fd, Stand::PairEnd(ino, usize::from(write_end)), None));
                }
            }
        }
    }
    if todo.is_empty() && work.is_empty() {
        return Ok(t);
    }
    todo.sort_by_key(|(fd, _, _)| *fd);
    let ns_pid = ft_interposer::tracee::ns_pid_uid(t_pid(tgid)).map(|(p, _)| p);
    let regs = epoll_registrations(tgid);
    let mut r = Remote::signals_blocked(t)?;
    let done = rebuild_all(&mut r, tgid, &todo, &regs, made, log)?;
    if let Some(ns_pid) = ns_pid {
        for (id, fd) in done {
            made.shared.entry(id).or_insert((ns_pid, fd));
        }
    }
    arm_timers(&mut r, tgid, &work.timers, log)?;
    work.posix.make(&mut r, log)?;
    r.into_stopped().ok_or_else(|| unexpected(t_pid(tgid), "lost the task".into()))
}

fn unexpected(pid: nix::unistd::Pid, what: String) -> SessionError {
    SessionError::Trace(ft_interposer::TraceError::Unexpected { pid, what })
}

fn t_pid(p: i32) -> nix::unistd::Pid {
    nix::unistd::Pid::from_raw(p)
}

/// Opens a file outside the data directory again, at its offset, in the process of `r`:
/// returns its new fd there (/dev/null if the file cannot be opened).
fn reopen(r: &mut Remote, tgid: i32, fd: i32, f: &FileShadow, log: &Logger) -> Result<i64> {
    use std::os::unix::ffi::OsStrExt;
    let flags = f.flags & !(libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL);
    let is_fifo = std::fs::metadata(&f.path).map(|m| std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()));
    if let Some(std_fd) = stdio_alias(&f.path) {
        // The program's own stdin/stdout/stderr, which are this replica's (its fd may have been
        // replaced since: nginx dup2s its error log over 2): the tracer's own, passed over.
        // SAFETY: 0, 1 and 2 stay open for the tracer's whole life.
        let own = unsafe { std::os::fd::BorrowedFd::borrow_raw(std_fd) };
        let got = r.give_fd(own)?;
        info!(log, "going live: a standard stream opened by path is this replica's"; "fd" => fd, "path" => f.path.display().to_string());
        return Ok(got);
    }
    let mut opened = if matches!(is_fifo, Ok(true)) {
        -i64::from(libc::ENXIO)
    } else {
        r.open(f.path.as_os_str().as_bytes(), flags)?
    };
    if opened == -i64::from(libc::EACCES) || opened == -i64::from(libc::EPERM) {
        // The program had it open before it dropped privileges (varnish's manager keeps its pid
        // file, made as root, while it runs as user varnish): opened by the tracer, in the
        // program's root, and handed over, as the fd it held natively.
        use std::os::unix::fs::OpenOptionsExt;
        let in_root =
            std::path::Path::new(&format!("/proc/{tgid}/root")).join(f.path.strip_prefix("/").unwrap_or(&f.path));
        let acc = flags & libc::O_ACCMODE;
        let own = std::fs::OpenOptions::new()
            .read(acc != libc::O_WRONLY)
            .write(acc != libc::O_RDONLY)
            .custom_flags(flags & !(libc::O_ACCMODE | libc::O_CLOEXEC))
            .open(&in_root);
        if let Ok(file) = own {
            opened = r.give_fd(std::os::fd::AsFd::as_fd(&file))?;
        }
    }
    if opened >= 0 {
        if f.offset > 0 && flags & libc::O_APPEND == 0 {
            // Devices and /proc files may refuse; their offset matters little.
            r.seek(opened, f.offset)?;
        }
        info!(log, "going live: file reopened"; "fd" => fd, "path" => f.path.display().to_string(), "offset" => f.offset);
        return Ok(opened);
    }
    if opened == -i64::from(libc::ENOENT) && flags & libc::O_DIRECTORY == 0 {
        // Gone (the program unlinked it, as a temporary file is; or it is only on the old
        // leader's machine): an unnamed file in its directory, or in /tmp, takes its place, so
        // that the program's writes, fchmod and fstat act on a file of its own (gunicorn's
        // workers tell their master they live by the ctime of such a file), not on /dev/null.
        // What the old file held is not in the log.
        let tmp_flags = (flags & !libc::O_ACCMODE) | libc::O_RDWR | libc::O_TMPFILE;
        let dirs = [f.path.parent().map(|d| d.as_os_str().as_bytes()).unwrap_or(b"/tmp"), b"/tmp"];
        for dir in dirs {
            let made = r.open_mode(dir, tmp_flags, 0o600)?;
            if made >= 0 {
                if f.offset > 0 && flags & libc::O_APPEND == 0 {
                    r.seek(made, f.offset)?;
                }
                warn!(log, "going live: a file the program has open is gone; an empty unnamed file takes its place (what it held is lost)";
                    "fd" => fd, "path" => f.path.display().to_string(), "in" => String::from_utf8_lossy(dir).into_owned());
                return Ok(made);
            }
        }
    }
    warn!(log, "going live: a file the program has open cannot be opened again; /dev/null takes its place";
        "fd" => fd, "path" => f.path.display().to_string(), "errno" => -opened);
    let null = r.open(b"/dev/null", flags & libc::O_ACCMODE)?;
    if null < 0 {
        return Err(unexpected(t_pid(tgid), format!("opening /dev/null for fd {fd} failed with {null}")));
    }
    Ok(null)
}

/// Arms the interval timers the program had armed when the log ended (replay arms none).
fn arm_timers(r: &mut Remote, tgid: i32, timers: &[(i32, [i64; 4])], log: &Logger) -> Result<()> {
    for (which, itv) in timers {
        let ret = r.setitimer(*which, *itv)?;
        if ret != 0 {
            return Err(unexpected(t_pid(tgid), format!("setitimer({which}) failed with {ret}")));
        }
        info!(log, "going live: interval timer armed"; "which" => which, "value_s" => itv[2], "interval_s" => itv[0]);
    }
    Ok(())
}

/// Makes an inotify instance again in the process of `r` and adds and removes its watches in
/// the program's order; returns its fd. A watch whose path cannot be watched now, or that gets
/// another descriptor than at record, is named in a warning.
fn make_inotify(r: &mut Remote, tgid: i32, fd: i32, sh: &InotifyShadow, log: &Logger) -> Result<i64> {
    use std::os::unix::ffi::OsStrExt;
    let new = r.inotify_init(sh.flags & libc::IN_NONBLOCK)?;
    if new < 0 {
        return Err(unexpected(t_pid(tgid), format!("inotify_init1 for fd {fd} failed with {new}")));
    }
    let mut differ = 0;
    for op in &sh.ops {
        match op {
            WatchOp::Add { path, mask, wd } => {
                let got = r.inotify_add_watch(new, path.as_os_str().as_bytes(), *mask)?;
                if got != i64::from(*wd) {
                    differ += 1;
                    warn!(log, "going live: an inotify watch is not what it was"; "fd" => fd, "path" => path.display().to_string(), "wd" => wd, "now" => got);
                }
            }
            WatchOp::Rm { wd } => {
                r.inotify_rm_watch(new, *wd)?;
            }
        }
    }
    // Removing a watch queued an IN_IGNORED event: the program's events at record were read from
    // another instance: read away.
    r.read_away(new)?;
    if sh.overflowed {
        warn!(log, "going live: an inotify instance had more watch operations than followed; its descriptors may differ"; "fd" => fd);
    }
    info!(log, "going live: inotify instance made again"; "fd" => fd, "operations" => sh.ops.len(), "differing" => differ);
    Ok(new)
}

/// Takes the socket at `fd` of process `owner` (pid as the program sees it) into the process
/// of `r`: returns its new fd there.
fn take_shared(r: &mut Remote, tgid: i32, owner: i32, fd: i32) -> Result<i64> {
    let new = r.take_fd(owner, fd)?;
    if new == -i64::from(libc::EPERM) {
        // This process may not take from that one (a worker that dropped its privileges, the
        // owner still root): the tracer takes the socket and passes it over.
        let host = ft_interposer::procfs::host_pid(owner, tgid).ok_or_else(|| {
            unexpected(t_pid(tgid), format!("process {owner}, which has the socket at fd {fd}, is not found"))
        })?;
        let taken = ft_interposer::fdcopy::take(t_pid(host), fd)
            .map_err(|e| unexpected(t_pid(tgid), format!("pidfd_getfd({host}, {fd}) in the tracer: {e}")))?;
        return Ok(r.give_fd(std::os::fd::AsFd::as_fd(&taken))?);
    }
    if new < 0 {
        return Err(SessionError::Unsupported {
            what: format!("going live: taking the socket at fd {fd} of process {owner} into a process that shares it"),
            why: format!(
                "pidfd_open or pidfd_getfd failed with errno {} (it needs ptrace access between the two)",
                -new
            ),
        });
    }
    Ok(new)
}

/// The standard fd that `path` names in the process that opens it (/dev/stderr is 2), if any.
fn stdio_alias(path: &std::path::Path) -> Option<i32> {
    let p = path.to_str()?;
    let n = match p {
        "/dev/stdin" => return Some(0),
        "/dev/stdout" => return Some(1),
        "/dev/stderr" => return Some(2),
        _ => ["/dev/fd/", "/proc/self/fd/", "/proc/thread-self/fd/"].iter().find_map(|pre| p.strip_prefix(pre))?,
    };
    n.parse().ok().filter(|fd| (0..3).contains(fd))
}

/// Makes each stand-in of `todo` real; returns the (eventfd id, fd) of those it made (not the
/// ones it took from another process).
fn rebuild_all(
    r: &mut Remote,
    tgid: i32,
    todo: &[(i32, Stand, Option<u64>)],
    regs: &[(i32, i32, u32, u64)],
    made: &mut MadeReal,
    log: &Logger,
) -> Result<Vec<(u64, i32)>> {
    let fail = |what: String| unexpected(t_pid(tgid), what);
    let mut done = Vec::new();
    // Stand-ins of this process made real already, by eventfd id: a dup of one shares it.
    let mut here: HashMap<u64, i32> = HashMap::new();
    for (fd, stand, id) in todo {
        let fd = *fd;
        let flags = fd_flags(tgid, fd);
        let shared = id.and_then(|id| made.shared.get(&id)).copied();
        let dup_of = id.and_then(|id| here.get(&id)).copied();
        let new = if let Some(first) = dup_of {
            let d = r.dup(i64::from(first))?;
            if d < 0 {
                return Err(fail(format!("dup of the rebuilt fd {first} for fd {fd} failed with {d}")));
            }
            d
        } else if let Some((owner, owner_fd)) = shared {
            debug!(log, "going live: an fd shared with another process"; "fd" => fd, "from" => owner);
            let got = take_shared(r, tgid, owner, owner_fd)?;
            // This process listened on it (varnish's child, on what its manager bound): the
            // process that made it real knew only the bind.
            if let Stand::Sock(SockShadow { backlog: Some(backlog), .. }) = stand {
                let l = r.listen(got, *backlog)?;
                if l < 0 {
                    warn!(log, "going live: listening on a shared socket failed"; "fd" => fd, "errno" => -l);
                }
            }
            got
        } else if let Stand::File(f) = stand {
            reopen(r, tgid, fd, f, log)?
        } else if let Stand::PairEnd(ino, end) = stand {
            let pair = made.pairs.get_mut(ino).ok_or_else(|| fail(format!("socketpair {ino} unknown")))?;
            let mine = pair.end(*end, log).map_err(|e| fail(format!("making the socketpair for fd {fd}: {e}")))?;
            debug!(log, "going live: socketpair end made real"; "fd" => fd, "end" => end);
            r.give_fd(mine)?
        } else if let Stand::PidFd(pid) = stand {
            let new = r.pidfd_open(*pid)?;
            if new < 0 {
                // Natively the pidfd outlives its process; here a process that is gone
                // cannot be named again.
                warn!(log, "going live: a pidfd of a process that has ended cannot be made again; /dev/null takes its place"; "fd" => fd, "pid" => *pid);
                r.open(b"/dev/null", libc::O_RDONLY)?
            } else {
                debug!(log, "going live: pidfd made again"; "fd" => fd, "pid" => *pid);
                new
            }
        } else if let Stand::Event(ev) = stand {
            let keep = libc::EFD_SEMAPHORE | libc::EFD_NONBLOCK;
            let new = r.eventfd(ev.flags & keep)?;
            if new < 0 {
                return Err(fail(format!("eventfd2 for fd {fd} failed with {new}")));
            }
            if ev.count > 0 {
                // A write, not eventfd2's initval: the counter is 64 bits, initval 32.
                let w = r.write_fd(new, &ev.count.to_le_bytes())?;
                if w != 8 {
                    return Err(fail(format!("setting the counter of the eventfd at fd {fd} failed with {w}")));
                }
            }
            debug!(log, "going live: eventfd made again"; "fd" => fd, "count" => ev.count);
            new
        } else if let Stand::Timer(tf) = stand {
            tf.make(r, fd, log)?
        } else if let Stand::Inotify(sh) = stand {
            make_inotify(r, tgid, fd, sh, log)?
        } else if let Stand::Signal(sf) = stand {
            let new = r.signalfd(sf.mask, sf.flags & libc::SFD_NONBLOCK)?;
            if new < 0 {
                return Err(fail(format!("signalfd4 for fd {fd} failed with {new}")));
            }
            info!(log, "going live: signalfd made again"; "fd" => fd, "mask" => format!("{:#x}", sf.mask));
            new
        } else if let Some(new) = match stand.rebuilt() {
            Some(sh) => rebuild_socket(r, tgid, fd, sh, log)?,
            None => None,
        } {
            new
        } else if let Some(dead) = match stand {
            Stand::Sock(sh) => dead_connection(r, sh, fd, log)?,
            _ => None,
        } {
            dead
        } else {
            let [a, peer] = r.socketpair()?.map_err(|e| fail(format!("socketpair for fd {fd} failed with {e}")))?;
            r.close(peer)?;
            a
        };
        if let Some(id) = id {
            here.entry(*id).or_insert(fd);
            if shared.is_none() && dup_of.is_none() {
                done.push((*id, fd));
            }
        }
        r.set_status_flags(new, flags & libc::O_NONBLOCK)?;
        let d = r.move_fd(new, i64::from(fd), flags & libc::O_CLOEXEC != 0)?;
        if d != i64::from(fd) {
            return Err(fail(format!("dup3 onto fd {fd} failed with {d}")));
        }
        if let Stand::PairEnd(..) = stand {
            made.pair_sockets.extend(ft_interposer::procfs::socket_of(tgid, fd));
        }
        for (epfd, _, events, data) in regs.iter().filter(|(_, t, _, _)| *t == fd) {
            let e = r.epoll_add(*epfd, fd, *events, *data)?;
            // EEXIST: an epoll instance shared with a process made real before this one has
            // the socket already.
            if e < 0 && e != -i64::from(libc::EEXIST) {
                warn!(log, "going live: re-registering an fd in epoll failed"; "epfd" => epfd, "fd" => fd, "ret" => e);
            }
        }
    }
    Ok(done)
}

/// A TCP connection of the program, which does not survive going live: a TCP socket of the same
/// family whose peer has closed (made on loopback by the tracer and handed over), so that the
/// program reads its end and its getsockname names an IPv4 or IPv6 address, as natively. (A unix
/// socketpair stood for it before: varnish asserts on the address of its sessions and its child
/// aborted after every failover.) None for other sockets, or if loopback has no such family.
fn dead_connection(r: &mut Remote, sh: &SockShadow, fd: i32, log: &Logger) -> Result<Option<i64>> {
    // A socket that listened here (made in another process: varnish's child listens on what its
    // manager made) is no connection: not made dead as one.
    if sh.backlog.is_some() {
        return Ok(None);
    }
    let (family, stream) = sh.kind();
    let here = match family {
        libc::AF_INET if stream => "127.0.0.1:0",
        libc::AF_INET6 if stream => "[::1]:0",
        _ => return Ok(None),
    };
    let made = (|| -> std::io::Result<std::net::TcpStream> {
        let l = std::net::TcpListener::bind(here)?;
        let c = std::net::TcpStream::connect(l.local_addr()?)?;
        drop(l.accept()?);
        Ok(c)
    })();
    match made {
        Ok(c) => {
            let got = r.give_fd(std::os::fd::AsFd::as_fd(&c))?;
            debug!(log, "going live: a connection that ends here is a TCP socket whose peer closed"; "fd" => fd, "family" => family);
            Ok(Some(got))
        }
        Err(e) => {
            debug!(log, "going live: no loopback TCP socket for a connection that ends here"; "fd" => fd, "err" => %e);
            Ok(None)
        }
    }
}

/// Makes a socket of the program again (see [`Stand::rebuilt`]): the same domain, type and
/// protocol, its options, its address (retried while the old leader's socket may hold it), its
/// backlog if it listened, its peer if it was connected. Its fd in the process of `r`; None for
/// a datagram socket this process may not make (it becomes one whose peer has gone, as before).
fn rebuild_socket(r: &mut Remote, tgid: i32, fd: i32, sh: &SockShadow, log: &Logger) -> Result<Option<i64>> {
    let fail = |what: String| unexpected(t_pid(tgid), what);
    let (domain, ty, proto) = sh.made.unwrap_or_default();
    let ty = ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
    let s = r.socket(domain, ty, proto)?;
    if s < 0 && sh.backlog.is_none() {
        warn!(log, "going live: a socket that does not listen (datagram, or bound only) cannot be made again; reads on it see its end"; "fd" => fd, "domain" => domain, "errno" => -s);
        return Ok(None);
    }
    if s < 0 {
        return Err(fail(format!("socket({domain}, {ty}, {proto}) for fd {fd} failed with {s}")));
    }
    for (level, name, val) in &sh.opts {
        r.setsockopt(s, *level, *name, val)?;
    }
    if !sh.addr.is_empty() {
        r.setsockopt(s, libc::SOL_SOCKET, libc::SO_REUSEADDR, &1i32.to_ne_bytes())?;
        let started = std::time::Instant::now();
        loop {
            let b = r.bind(s, &sh.addr)?;
            if b == 0 {
                break;
            }
            if b == -i64::from(libc::EADDRINUSE) && remove_stale_unix_socket(tgid, &sh.addr, log) {
                continue;
            }
            let gave_up = b != -i64::from(libc::EADDRINUSE) || started.elapsed() > BIND_PATIENCE;
            if gave_up && sh.backlog.is_none() {
                // A datagram socket, or one bound only: the program goes on with it unbound
                // (clients of a listening socket need its address; going live fails without it).
                warn!(log, "going live: a socket that does not listen cannot be bound to its address again; it stays unbound"; "fd" => fd, "errno" => -b);
                break;
            }
            if gave_up {
                return Err(SessionError::Unsupported {
                    what: format!("going live: binding the program's socket (fd {fd}) failed with errno {}", -b),
                    why: "the address is still in use (is the old leader's process still alive on this machine?)"
                        .into(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    if let Some(backlog) = sh.backlog {
        let l = r.listen(s, backlog)?;
        if l < 0 {
            return Err(fail(format!("listen on the rebuilt fd {fd} failed with {l}")));
        }
    }
    if !sh.peer.is_empty() {
        let c = r.connect(s, &sh.peer)?;
        if c < 0 {
            // A unix datagram peer that is gone (natively, sends would fail the same way).
            warn!(log, "going live: a rebuilt socket cannot be connected to its peer again"; "fd" => fd, "errno" => -c);
        }
    }
    info!(log, "going live: socket rebuilt"; "fd" => fd, "listening" => sh.backlog.is_some(), "connected" => !sh.peer.is_empty());
    Ok(Some(s))
}

/// A unix socket address whose file the dead leader's program left behind (nobody listens:
/// connecting is refused): removes the file, as a server removes its own stale socket at start.
/// Whether it did. The path is looked up in the program's root (its mount namespace).
fn remove_stale_unix_socket(tgid: i32, addr: &[u8], log: &Logger) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let family = addr.get(..2).map(|f| u16::from_ne_bytes([f[0], f[1]]));
    let path = addr.get(2..).map(|p| &p[..p.iter().position(|&c| c == 0).unwrap_or(p.len())]);
    let (Some(f), Some(path)) = (family, path) else { return false };
    if f != libc::AF_UNIX as u16 || path.first() != Some(&b'/') {
        return false;
    }
    let file = std::path::PathBuf::from(format!("/proc/{tgid}/root")).join(std::ffi::OsStr::from_bytes(&path[1..]));
    let refused = matches!(
        std::os::unix::net::UnixStream::connect(&file),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    );
    if refused && std::fs::remove_file(&file).is_ok() {
        info!(log, "going live: removed a stale unix socket nobody listens on"; "path" => String::from_utf8_lossy(path).into_owned());
        return true;
    }
    false
}
