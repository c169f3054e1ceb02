//! Output commit at record: socket syscalls answered in the tracer on a copy of the program's fd
//! (table `Exec::Copy`), and replies queued until the log before them is committed.

use super::*;

impl Recorder<'_> {
    /// Sends every queued output before the recording ends.
    pub(super) fn release_all(&mut self) -> Result<()> {
        let Some(r) = &self.releaser else { return Ok(()) };
        match r.drain(None, END_DRAIN) {
            Ok(Drained::Sent) => Ok(()),
            Ok(Drained::Abandoned) => {
                warn!(
                    self.log,
                    "the program ended with replies that clients did not take in {} s; their connections were reset",
                    END_DRAIN.as_secs()
                );
                Ok(())
            }
            Err(why) => Err(SessionError::Replication(why)),
        }
    }

    /// Waits until the queued writes of socket `key` (None: of every socket) are sent: a write
    /// that runs in the program must not overtake them, and a close must not leave the socket
    /// open in our copy. The whole program waits meanwhile (one task at a time): a client that
    /// takes nothing for `ORDER_DRAIN` has its connection reset.
    pub(super) fn drain_outputs(&mut self, key: Option<u64>) -> Result<Drained> {
        let Some(r) = &self.releaser else { return Ok(Drained::Sent) };
        if key.is_some_and(|k| r.queued(k) == 0) || r.total() == 0 {
            return Ok(Drained::Sent);
        }
        let d = r.drain(key, ORDER_DRAIN).map_err(SessionError::Replication)?;
        if d == Drained::Abandoned {
            warn!(
                self.log,
                "a client took no replies for {} s while the program had to wait for it; its connection was reset",
                ORDER_DRAIN.as_secs()
            );
        }
        Ok(d)
    }

    /// The queue key (socket inode) of fd `fd` of task `pid`, if it is a socket with replies
    /// queued.
    pub(super) fn queued_socket(&mut self, pid: Pid, fd: u64) -> Option<u64> {
        let r = self.releaser.as_ref()?;
        if r.total() == 0 {
            return None;
        }
        let copy = self.copier.copy(pid, fd as i32)?;
        let key = fdcopy::facts(&copy).filter(|f| f.socket)?.ino;
        (r.queued(key) > 0).then_some(key)
    }

    /// Answers a socket syscall at its seccomp stop, on a copy of the tracee's fd (table
    /// `Exec::Copy`), when that cannot block or change what the program sees. Returns false
    /// to let the tracee make the syscall itself. The tracee's syscall is skipped.
    pub(super) fn on_copy(
        &mut self,
        t: &Stopped,
        regs: &mut Regs,
        spec: &Spec,
        args: &[u64; 6],
        op: CopyOp,
    ) -> Result<bool> {
        let arg = |i: Option<u8>| i.map_or(0, |i| args[usize::from(i)]);
        let flags = match op {
            CopyOp::Recv { flags, .. } | CopyOp::Send { flags, .. } => arg(flags) as i32,
            CopyOp::SendMsg { flags } => args[usize::from(flags)] as i32,
            CopyOp::EpollWait { .. } => 0,
        };
        match op {
            CopyOp::Recv { addr, .. } => {
                // (MSG_TRUNC discards stream data unread: left to the kernel.)
                let plain = libc::MSG_DONTWAIT | libc::MSG_PEEK | libc::MSG_CMSG_CLOEXEC;
                if args[2] > MAX_TRACER_BUF || flags & !plain != 0 || arg(addr) != 0 {
                    return Ok(false);
                }
            }
            CopyOp::Send { addr, .. } => {
                let plain = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL | libc::MSG_MORE;
                if flags & !plain != 0 || arg(addr) != 0 {
                    return Ok(false);
                }
            }
            CopyOp::SendMsg { .. } => {
                let plain = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL | libc::MSG_MORE;
                if flags & !plain != 0 || !capture::plain_msghdr(t, args[1]) {
                    return Ok(false);
                }
            }
            CopyOp::EpollWait { mask } => {
                // Up to 4096 events at a time (epoll_wait may return fewer than are ready).
                // A signalfd is ready for the task that polls it: polled by the tracer, it
                // is not, and epoll drops it from its ready list, so the program's own
                // epoll_wait after would wait for the next signal.
                let max = args[2] as i32;
                if max < 1 || arg(mask) != 0 || self.signalfd_made {
                    return Ok(false);
                }
            }
        }
        let pid = t.pid();
        let Some(fd) = self.copier.copy(pid, args[0] as i32) else { return Ok(false) };
        let mut ev =
            Syscall { nr: spec.nr, args: args.to_vec(), task: self.vtid(pid), in_tracer: true, ..Default::default() };
        let ret = match op {
            CopyOp::Recv { .. } => {
                let Some(f) = fdcopy::facts(&fd).filter(|f| f.socket) else { return Ok(false) };
                if !f.nonblocking && fdcopy::sockopt(&fd, libc::SO_RCVLOWAT).unwrap_or(1) > 1 {
                    // A blocking read waits for SO_RCVLOWAT bytes; MSG_DONTWAIT would not.
                    return Ok(false);
                }
                // One buffer for every read (no allocation per stop); `args[2]` ≤ 1 MiB.
                let mut buf = std::mem::take(&mut self.scratch);
                buf.resize(buf.len().max(args[2] as usize), 0);
                let r = fdcopy::recv_nowait(&fd, &mut buf[..args[2] as usize], flags);
                let blocks = r == -i64::from(libc::EAGAIN) && !f.nonblocking && flags & libc::MSG_DONTWAIT == 0;
                let done = if blocks {
                    // A blocking read with nothing to read: it waits in the kernel.
                    None
                } else {
                    Some(self.copy_out(t, args[1], &buf[..r.clamp(0, args[2] as i64) as usize], r, &mut ev))
                };
                self.scratch = buf;
                match done {
                    Some(r) => r?,
                    None => return Ok(false),
                }
            }
            CopyOp::EpollWait { .. } => {
                // `max` was checked to be at least 1 (the kernel reads it as an int).
                let mut buf = vec![0u8; (args[2] as i32).clamp(1, 4096) as usize * 12];
                let r = fdcopy::epoll_poll(&fd, &mut buf);
                if r == 0 && args[3] as i32 != 0 {
                    return Ok(false);
                }
                self.copy_out(t, args[1], &buf[..(r.max(0) as usize * 12).min(buf.len())], r, &mut ev)?
            }
            CopyOp::Send { .. } | CopyOp::SendMsg { .. } => {
                // Datagram sockets keep their boundaries and errors in the program.
                let Some(f) = fdcopy::facts(&fd).filter(|f| f.socket) else { return Ok(false) };
                if fdcopy::sockopt(&fd, libc::SO_TYPE) != Some(libc::SOCK_STREAM) {
                    return Ok(false);
                }
                if fdcopy::broken(&fd) {
                    // Let the program meet EPIPE/ECONNRESET (and SIGPIPE) itself.
                    return Ok(false);
                }
                let Some(bytes) = capture::input_exact(t, spec.input, args)? else { return Ok(false) };
                ev.input_digest = if bytes.is_empty() { Vec::new() } else { digest::short(&bytes) };
                if let Some(r) = &self.releaser {
                    if let Some(why) = r.failed() {
                        return Err(SessionError::Replication(why));
                    }
                    if r.queued(f.ino) > 0 && r.queued(f.ino) + bytes.len() > SOCKET_QUEUE_LIMIT {
                        if f.nonblocking || flags & libc::MSG_DONTWAIT != 0 {
                            // As a full socket buffer would: the program tries again later.
                            // What it learns is an input; nothing is sent.
                            return self.answer(t, regs, ev, -i64::from(libc::EAGAIN), false).map(|()| true);
                        }
                        // A blocking write waits for room, as natively (but the whole program
                        // waits with it).
                        if self.drain_outputs(Some(f.ino))? == Drained::Abandoned {
                            return Ok(false);
                        }
                    }
                }
                match self.sink.output_ticket()? {
                    None => {
                        // Nothing waits for a commit: send now, as the program would have.
                        if !f.nonblocking && flags & libc::MSG_DONTWAIT == 0 {
                            return Ok(false);
                        }
                        let r = fdcopy::send_nowait(&fd, &bytes, flags);
                        if r == -i64::from(libc::EPIPE) {
                            return Ok(false);
                        }
                        r
                    }
                    Some(ticket) => {
                        if self.releaser.is_none() {
                            self.releaser =
                                Some(Releaser::new().map_err(SessionError::io("starting the output thread"))?);
                        }
                        let Some(r) = &self.releaser else { return Ok(false) };
                        let n = bytes.len() as i64;
                        r.push(f.ino, fd, bytes, ticket);
                        n
                    }
                }
            }
        };
        // A write's event is an output's (the next output need not wait for it).
        self.answer(t, regs, ev, ret, op.sends())?;
        Ok(true)
    }

    /// Skips the tracee's syscall with result `ret` and logs it (as an output's event, or as an
    /// input).
    pub(super) fn answer(
        &mut self,
        t: &Stopped,
        regs: &mut Regs,
        mut ev: Syscall,
        ret: i64,
        output: bool,
    ) -> Result<()> {
        ev.ret = ret;
        ev.disposition = Disposition::Inject as i32;
        regs.skip_with(ret);
        t.set_regs(regs)?;
        self.one_stop += 1;
        self.events += 1;
        self.released = None;
        let ev = Event { kind: Some(Kind::Syscall(ev)) };
        if output {
            self.sink.append_output(&ev)
        } else {
            self.sink.append(&ev)
        }
    }

    /// Before the program closes fds (close, close_range, dup2/dup3 over an open fd): a socket
    /// with replies still queued is drained first, so that our copy does not keep it open (and
    /// in the program's epoll sets) after the program closed it.
    pub(super) fn before_close(&mut self, t: &Stopped, spec: &Spec, args: &[u64; 6]) -> Result<()> {
        if self.releaser.as_ref().is_none_or(|r| r.total() == 0) {
            return Ok(());
        }
        const CLOSE_RANGE_CLOEXEC: u64 = 4;
        let fd = match spec.fds.closes {
            Closes::None => return Ok(()),
            Closes::Arg(i) => args[usize::from(i)],
            Closes::Range if args[2] & CLOSE_RANGE_CLOEXEC != 0 => return Ok(()),
            // Rare (closefrom in a child before exec): every queue.
            Closes::Range => return self.drain_outputs(None).map(drop),
        };
        match self.queued_socket(t.pid(), fd) {
            Some(k) => self.drain_outputs(Some(k)).map(drop),
            None => Ok(()),
        }
    }

    /// Writes what the tracer read into the tracee's buffer at `addr` and logs it; the result
    /// is `r`, or EFAULT if the buffer cannot take it.
    pub(super) fn copy_out(&mut self, t: &Stopped, addr: u64, data: &[u8], r: i64, ev: &mut Syscall) -> Result<i64> {
        if data.is_empty() {
            return Ok(r);
        }
        let n = t.write_some(addr, data)?;
        if n > 0 {
            ev.mem.push(MemWrite { addr, data: data[..n].to_vec() });
        }
        // Short: the bytes are consumed, and a program that hands read() a bad buffer loses them
        // (the kernel would have left them queued). The log has what the program saw, including
        // the part of the buffer that was written.
        Ok(if n == data.len() { r } else { -i64::from(libc::EFAULT) })
    }
}
