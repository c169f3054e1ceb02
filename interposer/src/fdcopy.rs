//! Copies of a tracee's fds in the tracer (pidfd_getfd, Linux 5.6+), so that the tracer can run
//! a socket syscall on the tracee's own open file description and skip the tracee's syscall: one
//! ptrace stop instead of two. The copy shares the file description (offset, O_NONBLOCK, socket
//! buffers) with the tracee's fd; only the fd number is the tracer's.

use nix::unistd::Pid;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// PIDFD_THREAD (Linux 6.9): a pidfd for one thread, which pidfd_getfd accepts like a process's.
const PIDFD_THREAD: libc::c_int = libc::O_EXCL;

/// One pidfd per traced task, opened on first use.
#[derive(Default)]
pub struct FdCopier {
    pidfds: HashMap<Pid, Option<OwnedFd>>,
}

/// What the tracer may do with a copy, from fstat and fcntl of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdFacts {
    pub socket: bool,
    pub nonblocking: bool,
    /// The inode (sockets: unique while the socket lives).
    pub ino: u64,
}

impl FdCopier {
    /// A copy of `fd` of task `tid`, or None if the kernel refuses (old kernel, fd closed, task
    /// gone): the caller then lets the tracee run its syscall itself.
    pub fn copy(&mut self, tid: Pid, fd: i32) -> Option<OwnedFd> {
        if fd < 0 {
            return None;
        }
        let pidfd = self.pidfds.entry(tid).or_insert_with(|| open_pidfd(tid)).as_ref()?;
        // SAFETY: plain syscall on a pidfd we own; the result is a new fd we take ownership of.
        let r = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
        if r < 0 {
            return None;
        }
        // SAFETY: pidfd_getfd returned a fresh fd owned by nobody else.
        Some(unsafe { OwnedFd::from_raw_fd(r as i32) })
    }

    /// Forgets a task that ended (its tid may be reused).
    pub fn forget(&mut self, tid: Pid) {
        self.pidfds.remove(&tid);
    }
}

fn open_pidfd(tid: Pid) -> Option<OwnedFd> {
    for flags in [PIDFD_THREAD, 0] {
        // SAFETY: plain syscall; the result is a new fd we take ownership of.
        let r = unsafe { libc::syscall(libc::SYS_pidfd_open, tid.as_raw(), flags) };
        if r >= 0 {
            // SAFETY: pidfd_open returned a fresh fd owned by nobody else.
            return Some(unsafe { OwnedFd::from_raw_fd(r as i32) });
        }
    }
    None
}

/// fstat and F_GETFL of a copy.
pub fn facts(fd: &OwnedFd) -> Option<FdFacts> {
    // SAFETY: fstat writes a struct stat into the zeroed buffer we pass.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and buffer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return None;
    }
    // SAFETY: plain fcntl on a valid fd.
    let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if fl < 0 {
        return None;
    }
    let socket = st.st_mode & libc::S_IFMT == libc::S_IFSOCK;
    Some(FdFacts { socket, nonblocking: fl & libc::O_NONBLOCK != 0, ino: st.st_ino })
}

/// An int-valued SOL_SOCKET option of a socket.
pub fn sockopt(fd: &OwnedFd, name: libc::c_int) -> Option<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: an int-sized buffer and its length, both ours.
    let r = unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, name, (&mut v as *mut libc::c_int).cast(), &mut len)
    };
    (r == 0).then_some(v)
}

/// Makes the close of this socket's last fd reset the connection (SO_LINGER 0) instead of
/// ending the stream cleanly: for replies ftexec had to give up on, so that the client does not
/// take a cut reply for a whole one.
pub fn reset_on_close(fd: &OwnedFd) {
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: a struct linger of ours and its size.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
}

/// Whether the socket has an error or is hung up (a write to it would fail).
pub fn broken(fd: &OwnedFd) -> bool {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
    // SAFETY: one valid pollfd, no waiting.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    r < 0 || p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0
}

/// A syscall's raw result: the value, or minus errno.
fn ret(r: isize) -> i64 {
    if r < 0 {
        -i64::from(nix::errno::Errno::last_raw())
    } else {
        r as i64
    }
}

/// recv(fd, buf, flags | MSG_DONTWAIT): never blocks.
pub fn recv_nowait(fd: &OwnedFd, buf: &mut [u8], flags: i32) -> i64 {
    // SAFETY: the buffer is ours and `buf.len()` long.
    ret(unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags | libc::MSG_DONTWAIT) })
}

/// send(fd, buf, flags | MSG_DONTWAIT | MSG_NOSIGNAL): never blocks, never raises SIGPIPE in
/// the tracer.
pub fn send_nowait(fd: &OwnedFd, buf: &[u8], flags: i32) -> i64 {
    let flags = flags | libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    // SAFETY: the buffer is ours and `buf.len()` long.
    ret(unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) })
}

/// epoll_wait(fd, events, timeout 0) into `buf` (12 bytes per event, the x86-64 packed layout).
pub fn epoll_poll(fd: &OwnedFd, buf: &mut [u8]) -> i64 {
    let max = (buf.len() / 12) as i32;
    // SAFETY: `buf` holds `max` packed epoll_event structs (12 bytes each on x86-64, which is
    // the layout libc::epoll_event has there).
    ret(unsafe { libc::epoll_wait(fd.as_raw_fd(), buf.as_mut_ptr().cast(), max, 0) } as isize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_copy_of_our_own_socket_reads_what_the_peer_wrote() {
        let (a, mut b) = UnixStream::pair().expect("socketpair");
        a.set_nonblocking(true).expect("nonblocking");
        let mut c = FdCopier::default();
        let me = Pid::from_raw(std::process::id() as i32);
        let copy = c.copy(me, a.as_raw_fd()).expect("pidfd_getfd of our own fd");
        let f = facts(&copy).expect("facts");
        assert!(f.socket && f.nonblocking);
        assert_eq!(sockopt(&copy, libc::SO_TYPE), Some(libc::SOCK_STREAM));
        assert_eq!(sockopt(&copy, libc::SO_RCVLOWAT), Some(1));
        let mut buf = [0u8; 16];
        assert_eq!(recv_nowait(&copy, &mut buf, 0), -i64::from(libc::EAGAIN));
        b.write_all(b"hello").expect("write");
        assert_eq!(recv_nowait(&copy, &mut buf, 0), 5);
        assert_eq!(&buf[..5], b"hello");
        assert_eq!(send_nowait(&copy, b"back", 0), 4);
        let mut got = [0u8; 4];
        b.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"back");
        assert!(!broken(&copy));
        drop(b);
        assert!(broken(&copy));
        assert!(c.copy(me, 1_000_000).is_none());
    }
}

/// Whether a send to the POSIX message queue `fd` would wait: the queue is full and its open
/// file has no O_NONBLOCK (mq_getsetattr reads both).
pub fn mq_would_wait(fd: &OwnedFd) -> bool {
    // struct mq_attr: flags, maxmsg, msgsize, curmsgs (longs), then reserved.
    let mut attr = [0i64; 8];
    // SAFETY: mq_getsetattr writes one struct mq_attr (64 bytes) into `attr`; no new attributes.
    let r =
        unsafe { libc::syscall(libc::SYS_mq_getsetattr, fd.as_raw_fd(), std::ptr::null::<u8>(), attr.as_mut_ptr()) };
    r == 0 && attr[0] & i64::from(libc::O_NONBLOCK) == 0 && attr[3] >= attr[1]
}

/// A copy in the tracer of `fd` of process `pid` (a pid of the tracer's namespace).
pub fn take(pid: Pid, fd: i32) -> std::io::Result<OwnedFd> {
    let pidfd = open_pidfd(pid).ok_or_else(std::io::Error::last_os_error)?;
    // SAFETY: plain syscall on a pidfd we own; the result is a new fd we take ownership of.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pidfd_getfd returned a fresh fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}
