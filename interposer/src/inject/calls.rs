//! The syscalls the tracer injects by name: each writes its arguments into a scratch page of the
//! task's own (mapped at the first call that needs memory, unmapped when the task is given back)
//! and returns the kernel's result, a negative errno on failure, for the caller to judge. The
//! replay crates say what to make; the syscall numbers and argument layouts are here.

use super::Remote;
use crate::Result;

/// The scratch page's size: a path argument may take all of it.
pub const SCRATCH_LEN: u64 = 4096;

fn enametoolong() -> i64 {
    -i64::from(libc::ENAMETOOLONG)
}

fn c_string(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut s = bytes.to_vec();
    s.push(0);
    (s.len() as u64 <= SCRATCH_LEN).then_some(s)
}

impl Remote {
    /// The scratch page, mapped on first use.
    fn scratch(&mut self) -> Result<u64> {
        if let Some(at) = self.scratch {
            return Ok(at);
        }
        let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        let at = self.call(libc::SYS_mmap, [0, SCRATCH_LEN, prot, flags, u64::MAX, 0])?;
        if at < 0 {
            return Err(self.failed(format!("mapping a scratch page failed with {at}")));
        }
        self.scratch = Some(at as u64);
        Ok(at as u64)
    }

    /// Unmaps the scratch page, if one was mapped.
    pub(super) fn release_scratch(&mut self) -> Result<()> {
        if let Some(at) = self.scratch.take() {
            self.call(libc::SYS_munmap, [at, SCRATCH_LEN, 0, 0, 0, 0])?;
        }
        Ok(())
    }

    /// Writes `data` at `offset` in the scratch page; its address.
    fn put(&mut self, offset: u64, data: &[u8]) -> Result<u64> {
        // Past the page is the program's memory, which nothing injected may write.
        if offset + data.len() as u64 > SCRATCH_LEN {
            return Err(self.failed(format!("{} bytes at +{offset} do not fit the scratch page", data.len())));
        }
        let at = self.scratch()? + offset;
        self.write(at, data)?;
        Ok(at)
    }

    fn get(&mut self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let at = self.scratch()? + offset;
        self.read(at, len)
    }

    pub fn close(&mut self, fd: i64) -> Result<i64> {
        self.call(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0])
    }

    pub fn dup(&mut self, fd: i64) -> Result<i64> {
        self.call(libc::SYS_dup, [fd as u64, 0, 0, 0, 0, 0])
    }

    /// dup3 of `old` onto `new`, close-on-exec or not.
    pub fn dup3(&mut self, old: i64, new: i64, cloexec: bool) -> Result<i64> {
        let flags = if cloexec { libc::O_CLOEXEC as u64 } else { 0 };
        self.call(libc::SYS_dup3, [old as u64, new as u64, flags, 0, 0, 0])
    }

    /// Moves `fd` to number `to` (dup3, then closes `fd`), close-on-exec or not; dup3's result.
    pub fn move_fd(&mut self, fd: i64, to: i64, cloexec: bool) -> Result<i64> {
        let d = self.dup3(fd, to, cloexec)?;
        self.close(fd)?;
        Ok(d)
    }

    /// fcntl(F_SETFL).
    pub fn set_status_flags(&mut self, fd: i64, flags: i32) -> Result<i64> {
        self.call(libc::SYS_fcntl, [fd as u64, libc::F_SETFL as u64, flags as u64, 0, 0, 0])
    }

    /// openat(AT_FDCWD, path, flags) (mode 0: nothing is created).
    pub fn open(&mut self, path: &[u8], flags: i32) -> Result<i64> {
        self.open_mode(path, flags, 0)
    }

    /// openat(AT_FDCWD, path, flags, mode): for flags that create a file.
    pub fn open_mode(&mut self, path: &[u8], flags: i32, mode: u32) -> Result<i64> {
        let Some(p) = c_string(path) else { return Ok(enametoolong()) };
        let at = self.put(0, &p)?;
        self.call(libc::SYS_openat, [libc::AT_FDCWD as i64 as u64, at, flags as u64, u64::from(mode), 0, 0])
    }

    /// lseek to `offset` from the start.
    pub fn seek(&mut self, fd: i64, offset: u64) -> Result<i64> {
        self.call(libc::SYS_lseek, [fd as u64, offset, libc::SEEK_SET as u64, 0, 0, 0])
    }

    /// write(2) of `data`, at most a page of it (a longer one is a short write).
    pub fn write_fd(&mut self, fd: i64, data: &[u8]) -> Result<i64> {
        let data = &data[..data.len().min(SCRATCH_LEN as usize)];
        let at = self.put(0, data)?;
        self.call(libc::SYS_write, [fd as u64, at, data.len() as u64, 0, 0, 0])
    }

    pub fn eventfd(&mut self, flags: i32) -> Result<i64> {
        self.call(libc::SYS_eventfd2, [0, flags as u64, 0, 0, 0, 0])
    }

    /// A new signalfd for the signals of `mask`.
    pub fn signalfd(&mut self, mask: u64, flags: i32) -> Result<i64> {
        let at = self.put(0, &mask.to_le_bytes())?;
        self.call(libc::SYS_signalfd4, [u64::MAX, at, 8, flags as u64, 0, 0])
    }

    pub fn inotify_init(&mut self, flags: i32) -> Result<i64> {
        self.call(libc::SYS_inotify_init1, [flags as u64, 0, 0, 0, 0, 0])
    }

    pub fn inotify_add_watch(&mut self, fd: i64, path: &[u8], mask: u32) -> Result<i64> {
        let Some(p) = c_string(path) else { return Ok(enametoolong()) };
        let at = self.put(0, &p)?;
        self.call(libc::SYS_inotify_add_watch, [fd as u64, at, u64::from(mask), 0, 0, 0])
    }

    pub fn inotify_rm_watch(&mut self, fd: i64, wd: i32) -> Result<i64> {
        self.call(libc::SYS_inotify_rm_watch, [fd as u64, wd as u64, 0, 0, 0, 0])
    }

    /// Reads away what `fd` holds (FIONREAD counts it) until it holds nothing; safe on a
    /// blocking fd.
    pub fn read_away(&mut self, fd: i64) -> Result<()> {
        loop {
            let at = self.put(0, &0i32.to_ne_bytes())?;
            if self.call(libc::SYS_ioctl, [fd as u64, libc::FIONREAD, at, 0, 0, 0])? != 0 {
                return Ok(());
            }
            let n = self.get(0, 4)?;
            let queued = i32::from_ne_bytes([n[0], n[1], n[2], n[3]]);
            if queued <= 0
                || self.call(libc::SYS_read, [fd as u64, at, (queued as u64).min(SCRATCH_LEN), 0, 0, 0])? <= 0
            {
                return Ok(());
            }
        }
    }

    /// pidfd_open of `pid` as the task sees it.
    pub fn pidfd_open(&mut self, pid: i32) -> Result<i64> {
        self.call(libc::SYS_pidfd_open, [pid as u64, 0, 0, 0, 0, 0])
    }

    /// A copy of `fd` of process `pid` (as the task sees it), through a pidfd: its fd here.
    pub fn take_fd(&mut self, pid: i32, fd: i32) -> Result<i64> {
        let pidfd = self.pidfd_open(pid)?;
        if pidfd < 0 {
            return Ok(pidfd);
        }
        let new = self.call(libc::SYS_pidfd_getfd, [pidfd as u64, fd as u64, 0, 0, 0, 0])?;
        self.close(pidfd)?;
        Ok(new)
    }

    pub fn socket(&mut self, domain: i32, ty: i32, proto: i32) -> Result<i64> {
        self.call(libc::SYS_socket, [domain as u64, ty as u64, proto as u64, 0, 0, 0])
    }

    pub fn setsockopt(&mut self, fd: i64, level: i32, name: i32, value: &[u8]) -> Result<i64> {
        let at = self.put(0, value)?;
        self.call(libc::SYS_setsockopt, [fd as u64, level as u64, name as u64, at, value.len() as u64, 0])
    }

    pub fn bind(&mut self, fd: i64, addr: &[u8]) -> Result<i64> {
        let at = self.put(0, addr)?;
        self.call(libc::SYS_bind, [fd as u64, at, addr.len() as u64, 0, 0, 0])
    }

    pub fn connect(&mut self, fd: i64, addr: &[u8]) -> Result<i64> {
        let at = self.put(0, addr)?;
        self.call(libc::SYS_connect, [fd as u64, at, addr.len() as u64, 0, 0, 0])
    }

    pub fn listen(&mut self, fd: i64, backlog: i32) -> Result<i64> {
        self.call(libc::SYS_listen, [fd as u64, backlog as u64, 0, 0, 0, 0])
    }

    /// A unix stream socketpair: its two fds, or the errno.
    pub fn socketpair(&mut self) -> Result<std::result::Result<[i64; 2], i64>> {
        let at = self.put(0, &[0; 8])?;
        let r = self.call(libc::SYS_socketpair, [libc::AF_UNIX as u64, libc::SOCK_STREAM as u64, 0, at, 0, 0])?;
        if r < 0 {
            return Ok(Err(r));
        }
        let b = self.get(0, 8)?;
        let fd = |i: usize| i64::from(i32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]));
        Ok(Ok([fd(0), fd(4)]))
    }

    /// Receives one byte and one fd (SCM_RIGHTS, close-on-exec) on socket `s`: the fd, or why not.
    pub fn recv_fd(&mut self, s: i64) -> Result<std::result::Result<i64, String>> {
        // struct msghdr at +256 (its iovec at +384, the byte at +400), the control buffer at +512.
        let base = self.scratch()?;
        let (msg, iov_at, byte, control) = (base + 256, base + 384, base + 400, base + 512);
        let mut iovec = byte.to_le_bytes().to_vec();
        iovec.extend_from_slice(&1u64.to_le_bytes());
        self.write(iov_at, &iovec)?;
        let mut hdr = vec![0u8; 56];
        hdr[16..24].copy_from_slice(&iov_at.to_le_bytes());
        hdr[24..32].copy_from_slice(&1u64.to_le_bytes());
        hdr[32..40].copy_from_slice(&control.to_le_bytes());
        hdr[40..48].copy_from_slice(&64u64.to_le_bytes());
        self.write(msg, &hdr)?;
        let n = self.call(libc::SYS_recvmsg, [s as u64, msg, libc::MSG_CMSG_CLOEXEC as u64, 0, 0, 0])?;
        if n != 1 {
            return Ok(Err(format!("recvmsg of the handed-over fd returned {n}")));
        }
        // struct cmsghdr: len (8), level (4), type (4), then the fd.
        let got = self.read(control, 20)?;
        let word = |i: usize| i32::from_le_bytes([got[i], got[i + 1], got[i + 2], got[i + 3]]);
        if word(8) != libc::SOL_SOCKET || word(12) != libc::SCM_RIGHTS {
            return Ok(Err("the hand-over message carried no fd".into()));
        }
        Ok(Ok(i64::from(word(16))))
    }

    /// epoll_ctl(EPOLL_CTL_ADD) of `fd` into `epfd` with `events` and `data`.
    pub fn epoll_add(&mut self, epfd: i32, fd: i32, events: u32, data: u64) -> Result<i64> {
        let mut ev = events.to_ne_bytes().to_vec();
        ev.extend_from_slice(&data.to_ne_bytes());
        let at = self.put(0, &ev)?;
        self.call(libc::SYS_epoll_ctl, [epfd as u64, libc::EPOLL_CTL_ADD as u64, fd as u64, at, 0, 0])
    }

    /// setitimer(`which`) to `itv` (interval seconds and microseconds, then value's).
    pub fn setitimer(&mut self, which: i32, itv: [i64; 4]) -> Result<i64> {
        let bytes: Vec<u8> = itv.iter().flat_map(|v| v.to_le_bytes()).collect();
        let at = self.put(0, &bytes)?;
        self.call(libc::SYS_setitimer, [which as u64, at, 0, 0, 0, 0])
    }

    pub fn timerfd_create(&mut self, clock: i32, flags: i32) -> Result<i64> {
        self.call(libc::SYS_timerfd_create, [clock as u64, flags as u64, 0, 0, 0, 0])
    }

    /// timerfd_settime to the struct itimerspec `its`.
    pub fn timerfd_settime(&mut self, fd: i64, flags: i32, its: &[u8]) -> Result<i64> {
        let at = self.put(0, its)?;
        self.call(libc::SYS_timerfd_settime, [fd as u64, flags as u64, at, 0, 0, 0])
    }

    /// timer_create on `clock` with the struct sigevent `event` (None: a null pointer), asking
    /// for id `id` (the kernel takes it while PR_TIMER_CREATE_RESTORE_IDS is on).
    pub fn timer_create(&mut self, clock: i32, event: Option<&[u8]>, id: i32) -> Result<i64> {
        let event_at = match event {
            Some(ev) => self.put(0, ev)?,
            None => 0,
        };
        let id_at = self.put(128, &id.to_le_bytes())?;
        self.call(libc::SYS_timer_create, [clock as u64, event_at, id_at, 0, 0, 0])
    }

    /// timer_settime to the struct itimerspec `its`.
    pub fn timer_settime(&mut self, id: i32, flags: i32, its: &[u8]) -> Result<i64> {
        let at = self.put(256, its)?;
        self.call(libc::SYS_timer_settime, [id as u64, flags as u64, at, 0, 0, 0])
    }

    pub fn timer_delete(&mut self, id: i32) -> Result<i64> {
        self.call(libc::SYS_timer_delete, [id as u64, 0, 0, 0, 0, 0])
    }

    pub fn prctl(&mut self, option: u64, arg: u64) -> Result<i64> {
        self.call(libc::SYS_prctl, [option, arg, 0, 0, 0, 0])
    }

    /// kill, or tgkill when `tid` names one thread (pids as the task sees them).
    pub fn kill(&mut self, tgid: i32, tid: Option<i32>, sig: i32) -> Result<i64> {
        match tid {
            Some(tid) => self.call(libc::SYS_tgkill, [tgid as u64, tid as u64, sig as u64, 0, 0, 0]),
            None => self.call(libc::SYS_kill, [tgid as u64, sig as u64, 0, 0, 0, 0]),
        }
    }
}

impl Remote {
    /// Gives the task's process a duplicate of the tracer's `fd`, over a unix socket of the
    /// abstract namespace that the task connects to: SCM_RIGHTS, received by an injected recvmsg
    /// (close-on-exec). Its new fd there.
    pub fn give_fd(&mut self, fd: std::os::fd::BorrowedFd<'_>) -> Result<i64> {
        use std::os::fd::AsRawFd;
        use std::os::linux::net::SocketAddrExt;
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("ftexec-pass-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .map_err(|e| self.failed(format!("abstract socket name: {e}")))?;
        let listener = std::os::unix::net::UnixListener::bind_addr(&addr)
            .map_err(|e| self.failed(format!("binding the hand-over socket: {e}")))?;
        // In the process: socket, connect (queued in the backlog), recvmsg.
        let s = self.socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0)?;
        if s < 0 {
            return Err(self.failed(format!("socket for the hand-over failed with {s}")));
        }
        let mut sun = (libc::AF_UNIX as u16).to_le_bytes().to_vec();
        sun.push(0);
        sun.extend_from_slice(name.as_bytes());
        let c = self.connect(s, &sun)?;
        let result = (|| {
            if c < 0 {
                return Err(self.failed(format!("connect to the hand-over socket failed with {c}")));
            }
            let (conn, _) = listener.accept().map_err(|e| self.failed(format!("accepting the hand-over: {e}")))?;
            let fds = [fd.as_raw_fd()];
            let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
            let iov = [std::io::IoSlice::new(b"F")];
            nix::sys::socket::sendmsg::<()>(conn.as_raw_fd(), &iov, &cmsg, nix::sys::socket::MsgFlags::empty(), None)
                .map_err(|e| self.failed(format!("sending the fd over: {e}")))?;
            self.recv_fd(s)?.map_err(|why| self.failed(why))
        })();
        self.close(s)?;
        result
    }
}
