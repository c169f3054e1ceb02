//! Go-live bookkeeping: what replay follows of the program's outside world while it replays
//! (sockets and how they were made, files outside the data directory and their offsets, the
//! bytes in flight in its pipes, eventfd counters, pidfds, interval timers, the signals it sent
//! and took), read from the table's declared effects, so that a replica that goes live can
//! rebuild them.

use super::*;

impl Replayer<'_> {
    /// Registers the pipes and eventfds the program makes (see `pipes`, `shadows`), and forgets
    /// an eventfd whose stand-in id another stand-in takes.
    pub(super) fn follow_new_pipes_and_eventfds(&mut self, t: &Stopped, spec: &Spec, args: &[u64; 6], s: &Syscall) {
        let pipe = || s.new_fds.first().and_then(|nf| ft_interposer::procfs::pipe_of(t.pid().as_raw(), nf.fd));
        if spec.fds.object == Object::Pipe && s.ret == 0 {
            if let Some((ino, _)) = pipe() {
                // An inode freed by a closed socketpair may come back.
                self.socketpairs.remove(&ino);
                self.pipes.insert(ino, Flow::default());
            }
        }
        if spec.fds.object == Object::SocketPair && s.ret == 0 {
            if let Some((ino, _)) = pipe() {
                self.pipes.remove(&ino);
                let pair = PairFlows { domain: args[0] as i32, ty: args[1] as i32, ..Default::default() };
                self.socketpairs.insert(ino, pair);
            }
        }
        let made = matches!(spec.fds.object, Object::EventFd | Object::TimerFd | Object::SignalFd | Object::Inotify)
            && s.ret >= 0;
        let stand_in = |fd: i32| ft_interposer::procfs::eventfd_id(t.pid().as_raw(), fd);
        // signalfd on a signalfd of the program's changes its mask (its flags stay).
        let signalfd_flags = match spec.fds.object {
            Object::SignalFd if s.ret >= 0 && args[0] as i32 != -1 => {
                stand_in(args[0] as i32).and_then(|id| self.shadows.signals.get(&id)).map(|sf| sf.flags)
            }
            _ => None,
        };
        if made || (s.disposition() == Disposition::Placeholder && !self.shadows.is_empty()) {
            // A new stand-in (all are eventfds) may take the id of a closed eventfd, timerfd or
            // signalfd of the program's: that one is gone.
            for nf in &s.new_fds {
                if let Some(id) = stand_in(nf.fd) {
                    self.shadows.forget(id);
                }
            }
        }
        if made {
            let flags = spec.fds.open_flags(args, |_| None).unwrap_or(0);
            if let Some(id) = stand_in(s.ret as i32) {
                match spec.fds.object {
                    Object::EventFd => {
                        self.shadows
                            .events
                            .insert(id, crate::live::EventShadow { count: args[0] & 0xffff_ffff, flags });
                    }
                    Object::TimerFd => {
                        let tf = crate::timers::TimerFdShadow { clock: args[0] as i32, flags, set: None, fired: false };
                        self.shadows.timers.insert(id, tf);
                    }
                    Object::Inotify => {
                        self.shadows.inotify.insert(id, crate::live::InotifyShadow { flags, ..Default::default() });
                    }
                    _ => {
                        // signalfd(fd, mask, size[, flags]): a sigset of up to 64 signals.
                        let mask =
                            t.read(args[1], 8).ok().and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
                        let flags = signalfd_flags.unwrap_or(flags);
                        self.shadows.signals.insert(id, crate::live::SignalShadow { mask, flags });
                    }
                }
            }
        }
    }

    /// Learns which files outside the data directory the program has open (they are stand-ins
    /// at replay), with their flags and offsets, to open them again if it goes live.
    pub(super) fn follow_files(
        &mut self,
        t: &Stopped,
        vtid: u32,
        spec: &Spec,
        args: &[u64; 6],
        s: &Syscall,
    ) -> Result<()> {
        let proc = self.tasks.get(&vtid).map(|t| t.proc).unwrap_or(0);
        let files = without_new_fds(&mut self.files, proc, s);
        if s.ret < 0 {
            return Ok(());
        }
        let fd = args[0] as i32;
        if spec.fds.object == Object::File {
            let Some(nf) = s.new_fds.first().filter(|nf| nf.kind() == ft_libos::FdKind::External) else {
                return Ok(());
            };
            let Some((dirfd, path_arg)) = spec.path else { return Ok(()) };
            let read_word = |addr: u64| t.read(addr, 8).ok().and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
            let flags = spec.fds.open_flags(args, read_word).unwrap_or(0);
            let raw = t.read_cstr(args[path_arg as usize], 4095)?;
            let path = PathBuf::from(OsStr::from_bytes(&raw));
            let dirfd = dirfd.map(|i| args[i as usize] as i32);
            if let Some(base) =
                ft_interposer::procfs::path_base(t.pid().as_raw(), dirfd, &path).filter(|b| b.is_absolute())
            {
                files.insert(nf.fd, FileShadow { path: base.join(path), flags, offset: 0 });
            }
            return Ok(());
        }
        if policy::duplicates_fd(spec, args) {
            let new = s.ret as i32;
            match files.get(&fd).cloned() {
                Some(f) if new != fd => {
                    files.insert(new, f);
                }
                Some(_) => {}
                None => {
                    files.remove(&new);
                }
            }
            return Ok(());
        }
        if let Some(closed) = spec.fds.closed_fd(args) {
            files.remove(&(closed as i32));
        }
        match spec.follow.stream {
            Stream::Read { .. } | Stream::Write { .. } => {
                if let Some(f) = files.get_mut(&fd) {
                    f.offset += s.ret as u64;
                }
            }
            Stream::Seek => {
                if let Some(f) = files.get_mut(&fd) {
                    f.offset = s.ret as u64;
                }
            }
            Stream::None | Stream::Shutdown | Stream::SendMsg | Stream::RecvMsg => {}
        }
        Ok(())
    }

    /// Going live: writes the bytes in flight into each pipe that a process can still read.
    /// The tracer opens a write end of its own through `/proc/PID/fd/N` of any fd on the pipe
    /// (the writer may have closed its end or ended: natively the bytes stay in the pipe).
    pub(super) fn refill_pipes(&mut self, procs: &[u32]) {
        use std::io::Write as _;
        for (ino, flow) in self.pipes.drain().filter(|(_, f)| !f.queue.is_empty()) {
            let bytes = flow.queue;
            let mut reader = None;
            for proc in procs {
                let Some(tgid) = self.tasks.get(proc).map(|t| t.tid.as_raw()) else { continue };
                let Ok(fds) = std::fs::read_dir(format!("/proc/{tgid}/fd")) else { continue };
                let fd = fds.flatten().find_map(|e| {
                    let fd: i32 = e.file_name().to_str()?.parse().ok()?;
                    (ft_interposer::procfs::pipe_of(tgid, fd)? == (ino, false)).then_some(fd)
                });
                if let Some(fd) = fd {
                    reader = Some((tgid, fd));
                    break;
                }
            }
            // None: nobody can read them any more.
            let Some((tgid, fd)) = reader else { continue };
            let (data, _) = bytes.as_slices();
            // Non-blocking: the pipe is empty here, but a program may have enlarged it at record
            // (F_SETPIPE_SZ is not run at replay); what does not fit is lost, with a warning.
            let written = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(format!("/proc/{tgid}/fd/{fd}"))
                .and_then(|mut w| w.write_all(data).and_then(|()| w.write_all(bytes.as_slices().1)));
            match written {
                Ok(()) => {
                    slog::info!(self.log, "going live: bytes in flight written into a pipe"; "bytes" => bytes.len())
                }
                Err(e) => {
                    slog::warn!(self.log, "going live: bytes in flight in a pipe are lost"; "bytes" => bytes.len(), "error" => e.to_string())
                }
            }
        }
    }

    /// Follows the counter of one of the program's eventfds (see `shadows`), and the
    /// expirations read from its timerfds.
    pub(super) fn follow_eventfd(&mut self, t: &Stopped, spec: &Spec, args: &[u64; 6], ret: i64) -> Result<()> {
        let plain = matches!(spec.follow.stream, Stream::Read { vectored: false } | Stream::Write { vectored: false });
        if ret != 8 || !plain || (self.shadows.events.is_empty() && self.shadows.timers.is_empty()) {
            return Ok(());
        }
        let Some(id) = ft_interposer::procfs::eventfd_id(t.pid().as_raw(), args[0] as i32) else { return Ok(()) };
        if let Some(tf) = self.shadows.timers.get_mut(&id) {
            tf.fired |= matches!(spec.follow.stream, Stream::Read { .. });
            return Ok(());
        }
        let Some(ev) = self.shadows.events.get_mut(&id) else { return Ok(()) };
        if matches!(spec.follow.stream, Stream::Write { .. }) {
            let v = t.read(args[1], 8)?.try_into().map(u64::from_le_bytes).unwrap_or(0);
            ev.count = ev.count.saturating_add(v);
        } else if ev.flags & libc::EFD_SEMAPHORE != 0 {
            ev.count = ev.count.saturating_sub(1);
        } else {
            ev.count = 0;
        }
        Ok(())
    }

    /// Follows the bytes in flight in the program's pipes (see `pipes`): a logged write adds
    /// what the program wrote (read from its memory), a logged read takes as many away.
    pub(super) fn follow_pipes(&mut self, t: &Stopped, spec: &Spec, args: &[u64; 6], n: usize) -> Result<()> {
        // The iovecs of a vectored call: at argument 1 with their count at 2 (writev), or in
        // the struct msghdr at argument 1 (msg_iov at offset 16, msg_iovlen at 24).
        let (writes, iovecs) = match spec.follow.stream {
            Stream::Write { vectored } => (true, vectored.then_some((args[1], args[2]))),
            Stream::Read { vectored } => (false, vectored.then_some((args[1], args[2]))),
            Stream::SendMsg | Stream::RecvMsg => {
                let h = t.read(args[1], 32)?;
                let word = |i: usize| h.get(i..i + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
                (spec.follow.stream == Stream::SendMsg, Some((word(16), word(24))))
            }
            Stream::None | Stream::Seek | Stream::Shutdown => return Ok(()),
        };
        let Some((ino, end)) = ft_interposer::procfs::pipe_of(t.pid().as_raw(), args[0] as i32) else {
            return Ok(());
        };
        // A recv that only peeks takes nothing.
        if let Exec::Copy(CopyOp::Recv { flags: Some(i), .. }) = spec.exec {
            if args[usize::from(i)] as i32 & libc::MSG_PEEK != 0 {
                return Ok(());
            }
        }
        // Pipes the program made with pipe/pipe2, and its socketpairs (their stand-ins are
        // pipes: the read end stands for sv[0], the write end for sv[1]): what one end writes
        // goes toward the other.
        let (flow, datagrams) = match self.socketpairs.get_mut(&ino) {
            Some(pair) => {
                let datagrams = matches!(pair.ty & 0xf, libc::SOCK_DGRAM | libc::SOCK_SEQPACKET);
                (&mut pair.toward[usize::from(end != writes)], datagrams)
            }
            None => match self.pipes.get_mut(&ino) {
                Some(flow) => (flow, false),
                None => return Ok(()),
            },
        };
        if !writes {
            if datagrams {
                // A read takes one whole message (what does not fit is dropped, as the kernel
                // truncates it).
                let m = flow.messages.pop_front().unwrap_or(n);
                let had = flow.queue.len();
                flow.queue.drain(..m.min(had));
            } else {
                let had = flow.queue.len();
                flow.queue.drain(..n.min(had));
                flow.debt += n.saturating_sub(had);
            }
            return Ok(());
        }
        // What the write took from the program's memory: its n bytes, from the iovecs in order.
        let pieces: Vec<(u64, usize)> = if let Some((iov, count)) = iovecs {
            let iov = t.read(iov, 16 * (count as usize).min(1024))?;
            iov.chunks_exact(16)
                .map(|c| {
                    let word = |b: &[u8]| b.try_into().map(u64::from_le_bytes).unwrap_or(0);
                    (word(&c[..8]), word(&c[8..]) as usize)
                })
                .collect()
        } else {
            vec![(args[1], n)]
        };
        let mut bytes = Vec::with_capacity(n);
        for (base, len) in pieces {
            let take = len.min(n - bytes.len());
            if take == 0 {
                break;
            }
            bytes.extend(t.read(base, take)?);
        }
        if datagrams {
            // A write adds one message.
            flow.messages.push_back(bytes.len());
            flow.queue.extend(bytes);
        } else {
            let paid = flow.debt.min(bytes.len());
            flow.debt -= paid;
            flow.queue.extend(&bytes[paid..]);
        }
        Ok(())
    }

    /// Notes an interval timer the program set (see `itimers`).
    pub(super) fn note_itimer(&mut self, t: &Stopped, vtid: u32, spec: &Spec, args: &[u64; 6], ret: i64) -> Result<()> {
        let (which, itv) = match spec.follow.timer {
            Timer::Alarm { secs } if ret >= 0 => (libc::ITIMER_REAL, [0, 0, args[usize::from(secs)] as u32 as i64, 0]),
            Timer::Itimer { which, new } if ret == 0 && args[usize::from(new)] != 0 => {
                let b = t.read(args[usize::from(new)], 32)?;
                let word =
                    |i: usize| b.get(i * 8..i * 8 + 8).and_then(|w| w.try_into().ok()).map_or(0, i64::from_le_bytes);
                (args[usize::from(which)] as i32, [word(0), word(1), word(2), word(3)])
            }
            _ => return Ok(()),
        };
        let proc = self.tasks.get(&vtid).map_or(0, |t| t.proc);
        if itv[2] == 0 && itv[3] == 0 {
            self.itimers.remove(&(proc, which));
        } else {
            let at = self.source.position();
            self.itimers.insert((proc, which), Itimer { itv, at });
        }
        Ok(())
    }

    /// Follows the program's POSIX timers and timerfds (see `crate::timers`), after the log's
    /// writes are in place (timer_create's id is one).
    pub(super) fn follow_timers(
        &mut self,
        t: &Stopped,
        vtid: u32,
        spec: &Spec,
        args: &[u64; 6],
        ret: i64,
    ) -> Result<()> {
        if ret < 0 {
            return Ok(());
        }
        let proc = self.tasks.get(&vtid).map_or(0, |t| t.proc);
        let arg = |i: u8| args[usize::from(i)];
        let at = self.source.position();
        match spec.follow.timer {
            Timer::PosixCreate { clock, event, id } => {
                let timer = crate::timers::PosixTimer::read(t, arg(clock), arg(event))?;
                let id = t.read(arg(id), 4)?.try_into().map(i32::from_le_bytes).unwrap_or(-1);
                self.posix_timers.insert((proc, id), timer);
                self.posix_last.insert(proc, id);
            }
            Timer::Posix { id, flags, new } => {
                let set = crate::timers::TimerSet::read(t, arg(flags), arg(new), at)?;
                if let Some(timer) = self.posix_timers.get_mut(&(proc, arg(id) as i32)) {
                    timer.set = (!set.disarms()).then_some(set);
                }
            }
            Timer::PosixDelete { id } => {
                self.posix_timers.remove(&(proc, arg(id) as i32));
            }
            Timer::Fd { fd, flags, new } if !self.shadows.timers.is_empty() => {
                let set = crate::timers::TimerSet::read(t, arg(flags), arg(new), at)?;
                let stand_in = ft_interposer::procfs::eventfd_id(t.pid().as_raw(), arg(fd) as i32);
                if let Some(tf) = stand_in.and_then(|id| self.shadows.timers.get_mut(&id)) {
                    tf.set = (!set.disarms()).then_some(set);
                    tf.fired = false;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Follows the watches added to and removed from the program's inotify instances (see
    /// `shadows.inotify`): a path as resolved when it was added (the program's working directory).
    pub(super) fn follow_watches(&mut self, t: &Stopped, spec: &Spec, args: &[u64; 6], ret: i64) -> Result<()> {
        let op = match spec.follow.live {
            Live::Watch { .. } | Live::Unwatch { .. } if ret < 0 || self.shadows.inotify.is_empty() => return Ok(()),
            Live::Watch { path, mask } => {
                let raw = t.read_cstr(args[usize::from(path)], 4095)?;
                let rel = PathBuf::from(OsStr::from_bytes(&raw));
                let Some(base) = ft_interposer::procfs::path_base(t.pid().as_raw(), None, &rel) else {
                    return Ok(());
                };
                crate::live::WatchOp::Add { path: base.join(rel), mask: args[usize::from(mask)] as u32, wd: ret as i32 }
            }
            Live::Unwatch { wd } => crate::live::WatchOp::Rm { wd: args[usize::from(wd)] as i32 },
            _ => return Ok(()),
        };
        let stand_in = ft_interposer::procfs::eventfd_id(t.pid().as_raw(), args[0] as i32);
        if let Some(sh) = stand_in.and_then(|id| self.shadows.inotify.get_mut(&id)) {
            if sh.ops.len() < crate::live::WatchOp::KEPT {
                sh.ops.push(op);
            } else {
                sh.overflowed = true;
            }
        }
        Ok(())
    }

    /// A read of one of the program's signalfds took signals (struct signalfd_siginfo, 128
    /// bytes each, ssi_signo first): they count as taken (see `SentSignal`), as a delivery or
    /// a sigtimedwait does, so that going live does not send them again.
    pub(super) fn follow_signalfd_read(&mut self, t: &Stopped, vtid: u32, spec: &Spec, args: &[u64; 6], ret: i64) {
        const INFO: usize = 128;
        if self.shadows.signals.is_empty()
            || ret < INFO as i64
            || spec.follow.stream != (Stream::Read { vectored: false })
        {
            return;
        }
        let is_signalfd = ft_interposer::procfs::eventfd_id(t.pid().as_raw(), args[0] as i32)
            .is_some_and(|id| self.shadows.signals.contains_key(&id));
        if !is_signalfd {
            return;
        }
        let Ok(infos) = t.read(args[1], ret as usize / INFO * INFO) else { return };
        let at = self.source.position();
        for info in infos.chunks_exact(INFO) {
            let signo = u32::from_le_bytes([info[0], info[1], info[2], info[3]]);
            self.source.taken.push((at, vtid, signo as i32));
        }
    }

    /// Going live: the POSIX timers to make per process, each with how to arm it (see
    /// `crate::timers::TimerSet::to_arm`): a one-shot one has fired if a task of its process
    /// took its signal since it was set.
    pub(super) fn posix_timers_to_make(&self) -> HashMap<u32, crate::timers::PosixWork> {
        let mut out: HashMap<u32, crate::timers::PosixWork> = HashMap::new();
        for (&proc, &last) in &self.posix_last {
            out.entry(proc).or_default().last = Some(last);
        }
        for (&(proc, id), timer) in &self.posix_timers {
            let arm = timer.set.and_then(|set| {
                let fired = timer.signal().is_some_and(|sig| {
                    self.source.taken.iter().any(|(pos, task, signo)| {
                        *signo == sig && *pos > set.at && self.ids.get(task).map(|i| i.1) == Some(proc)
                    })
                });
                set.to_arm(timer.clock, fired)
            });
            out.entry(proc).or_default().timers.push((id, timer.clone(), arm));
        }
        out
    }

    /// Going live: the interval timers to arm per process. A periodic one is armed for its
    /// interval; a one-shot one whose signal a task of its process took since it was set has
    /// fired, the others are armed again for their whole value (the time already gone by at
    /// record is not known here: they fire late by as much).
    pub(super) fn itimers_to_arm(&self) -> HashMap<u32, Vec<(i32, [i64; 4])>> {
        let mut out: HashMap<u32, Vec<(i32, [i64; 4])>> = HashMap::new();
        for (&(proc, which), t) in &self.itimers {
            let sig = match which {
                libc::ITIMER_REAL => libc::SIGALRM,
                libc::ITIMER_VIRTUAL => libc::SIGVTALRM,
                _ => libc::SIGPROF,
            };
            let periodic = t.itv[0] != 0 || t.itv[1] != 0;
            let fired = self.source.taken.iter().any(|(pos, task, signo)| {
                *signo == sig && *pos > t.at && self.ids.get(task).map(|i| i.1) == Some(proc)
            });
            let itv = match (periodic, fired) {
                (true, _) => [t.itv[0], t.itv[1], t.itv[0], t.itv[1]],
                (false, false) => t.itv,
                (false, true) => continue,
            };
            out.entry(proc).or_default().push((which, itv));
        }
        out
    }

    /// The process (pid as the program sees it) a pidfd of task `vtid` refers to: one that
    /// pidfd_open made (a stand-in at replay), or a real pidfd (clone's CLONE_PIDFD), whose
    /// fdinfo names its pid in every namespace, the program's last.
    pub(super) fn pidfd_target(&self, t: &Stopped, vtid: u32, fd: i32) -> Option<i32> {
        let proc = self.tasks.get(&vtid).map_or(0, |t| t.proc);
        if let Some(&pid) = self.pidfds.get(&(proc, fd)) {
            return Some(pid);
        }
        let info = std::fs::read_to_string(format!("/proc/{}/fdinfo/{fd}", t.pid())).ok()?;
        let line = info.lines().find(|l| l.starts_with("NSpid:"))?;
        line.split_whitespace().last()?.parse().ok().filter(|pid: &i32| *pid > 0)
    }

    /// Notes a signal the program sent (see [`SentSignal`]) or took with sigtimedwait.
    pub(super) fn note_signal_syscall(&mut self, t: &Stopped, vtid: u32, spec: &Spec, args: &[u64; 6], ret: i64) {
        let at = self.source.position();
        if spec.signals.takes && ret > 0 {
            self.source.taken.push((at, vtid, ret as i32));
            return;
        }
        let Some(send) = spec.follow.sends.filter(|_| ret == 0) else { return };
        let arg = |i: u8| args[usize::from(i)];
        let (target, thread) = match send.target {
            Target::Process(i) => (arg(i) as i32, false),
            Target::Thread(i) => (arg(i) as i32, true),
            Target::PidFd(i) => match self.pidfd_target(t, vtid, arg(i) as i32) {
                Some(pid) => (pid, false),
                None => return,
            },
        };
        let (sig, info_at) = (arg(send.sig) as i32, send.info.map(arg).filter(|p| *p != 0));
        if !(1..=ft_libos::signal::SIG_MAX).contains(&sig) || target == -1 {
            return;
        }
        let info = info_at.and_then(|p| t.read(p, ft_interposer::tracee::SIGINFO_SIZE).ok());
        let info = info.as_deref().and_then(ft_interposer::tracee::siginfo_from_bytes);
        // A signal that does nothing to its target is not logged when it arrives: not a send
        // to follow (its disposition is real at replay: sigaction runs).
        let effect = |this: &Self, ns: i32| {
            let task = this.tasks.iter().find(|(v, _)| this.ids.get(v).map(|i| i.0) == Some(ns));
            match (task, Sig::new(sig)) {
                (Some((_, task)), Some(s)) => !has_no_effect(task.tid, s),
                _ => true,
            }
        };
        let from = self.tasks.get(&vtid).map_or(0, |t| t.proc);
        if target > 0 {
            if effect(self, target) {
                self.sent.push(SentSignal { at, target, thread, sig, info, from });
            }
            return;
        }
        // kill(0 or -pgid): one send to each process of the group (real at replay: setpgid runs).
        let outer_pgid = |pid: Pid| -> Option<i32> {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            stat[stat.rfind(')')? + 1..].split_whitespace().nth(2)?.parse().ok()
        };
        let group = if target == 0 {
            outer_pgid(t.pid())
        } else {
            let leader = self
                .ids
                .iter()
                .find(|(_, (tid, proc))| *tid == -target && self.ids.get(proc).map(|i| i.0) == Some(*tid));
            leader.and_then(|(v, _)| self.tasks.get(v)).map(|l| l.tid.as_raw())
        };
        let Some(group) = group else { return };
        let members: Vec<i32> = self
            .tasks
            .iter()
            .filter(|(v, task)| **v == task.proc && outer_pgid(task.tid) == Some(group))
            .filter_map(|(v, _)| self.ids.get(v).map(|i| i.0))
            .collect();
        for target in members {
            if effect(self, target) {
                self.sent.push(SentSignal { at, target, thread: false, sig, info, from });
            }
        }
    }

    /// Going live: sends again each signal the program sent that no task of its target took in
    /// the log since (a standard signal is taken by any later delivery of its number, as the
    /// kernel merges them; a real-time one by one delivery each), if its target still runs. A
    /// sigqueue goes with its siginfo; a kill or tgkill is made again by the process that
    /// sent it (injected at a syscall stop of one of its tasks), so that its siginfo names that
    /// process and its uid, as a handler, sigtimedwait or signalfd read sees it; if no task of
    /// that process is at a syscall stop, it is a kill from outside the program's namespace
    /// (si_pid 0). SIGKILL and SIGSTOP are left out (the log shows their effect).
    /// Returns (process, signal, siginfo) of each sigqueue sent again: the kernel zeroes si_pid
    /// for a sender outside the program's PID namespace, so the recorder gives the signal its
    /// siginfo at its delivery stop.
    pub(super) fn resend_pending(&mut self) -> Result<Vec<(u32, i32, libc::siginfo_t)>> {
        let mut queued = Vec::new();
        let mut used = vec![false; self.source.taken.len()];
        let in_target = |task: u32, s: &SentSignal, ids: &HashMap<u32, (i32, u32)>| {
            let (tid, proc) = ids.get(&task).copied().unwrap_or((0, u32::MAX));
            if s.thread {
                tid == s.target
            } else {
                ids.get(&proc).map(|i| i.0) == Some(s.target)
            }
        };
        let mut resend = Vec::new();
        for s in &self.sent {
            if matches!(s.sig, libc::SIGKILL | libc::SIGSTOP) {
                continue;
            }
            let later = |(i, (pos, task, signo)): (usize, &(u64, u32, i32))| {
                (*pos > s.at && *signo == s.sig && in_target(*task, s, &self.ids)).then_some(i)
            };
            let taken = if s.sig < 32 {
                self.source.taken.iter().enumerate().any(|e| later(e).is_some())
            } else {
                match self.source.taken.iter().enumerate().filter(|(i, _)| !used[*i]).find_map(later) {
                    Some(i) => {
                        used[i] = true;
                        true
                    }
                    None => false,
                }
            };
            if !taken {
                resend.push(s);
            }
        }
        let resend: Vec<SentSignal> = resend.into_iter().cloned().collect();
        for s in &resend {
            let target = self.tasks.iter().find(|(v, _)| {
                let (tid, proc) = self.ids.get(v).copied().unwrap_or((0, u32::MAX));
                if s.thread {
                    tid == s.target
                } else {
                    **v == proc && tid == s.target
                }
            });
            let Some((v, t)) = target else { continue };
            let tgid = self.tasks.get(&t.proc).map_or(t.tid, |l| l.tid);
            let (v, proc, tid) = (*v, t.proc, t.tid);
            slog::info!(self.log, "going live: a signal the program sent is still pending"; "signal" => s.sig, "task" => v);
            if s.info.is_none_or(|i| i.si_code >= 0) && self.send_from_sender(s, v, proc)? {
                continue;
            }
            let sig = Sig::new(s.sig).ok_or_else(|| SessionError::Mismatch {
                what: "the log".into(),
                detail: format!("signal number {}", s.sig),
            })?;
            let info = s.info.as_ref().filter(|i| i.si_code < 0);
            let sent = ft_interposer::tracee::queue_signal(tgid, s.thread.then_some(tid), sig, info);
            if sent.is_err() {
                slog::warn!(self.log, "going live: could not send a pending signal again"; "signal" => s.sig, "task" => v);
            } else if let Some(info) = s.info.filter(|i| i.si_code < 0) {
                queued.push((proc, s.sig, info));
            }
        }
        Ok(queued)
    }

    /// Sends `s` again from its sender, to task `v` of process `proc`: kill (or tgkill for a
    /// thread) injected into a task of the sending process at a syscall stop. Whether it was.
    fn send_from_sender(&mut self, s: &SentSignal, v: u32, proc: u32) -> Result<bool> {
        let Some(by) = self.at_seccomp_stop(s.from) else { return Ok(false) };
        let ns = |task: u32| self.ids.get(&task).map(|i| i.0);
        let (Some(tgid), Some(tid)) = (ns(proc), ns(v)) else { return Ok(false) };
        let tid = s.thread.then_some(tid);
        let mut ret = 0;
        self.in_task(by, |t| {
            let mut r = ft_interposer::inject::Remote::signals_blocked(t)?;
            ret = r.kill(tgid, tid, s.sig)?;
            r.into_stopped().ok_or_else(|| SessionError::Unsupported {
                what: "going live: sending a pending signal again".into(),
                why: "the sending task was lost".into(),
            })
        })?;
        Ok(ret == 0)
    }

    /// Learns how the program made and configured its sockets, to rebuild them if it goes live.
    pub(super) fn follow_sockets(
        &mut self,
        t: &Stopped,
        vtid: u32,
        spec: &Spec,
        args: &[u64; 6],
        s: &Syscall,
    ) -> Result<()> {
        let proc = self.tasks.get(&vtid).map(|t| t.proc).unwrap_or(0);
        let socks = without_new_fds(&mut self.sockets, proc, s);
        if s.ret < 0 {
            return Ok(());
        }
        let fd = args[0] as i32;
        let read = |ptr: u64, len: u64, max: u64| t.read(ptr, len.min(max) as usize);
        match spec.fds.object {
            Object::Socket => {
                let made = Some((args[0] as i32, args[1] as i32, args[2] as i32));
                socks.insert(s.ret as i32, SockShadow { made, ..Default::default() });
            }
            Object::Connection => {
                // Accepted from the listener at argument 0: its family.
                let (family, stream) = socks.get(&fd).map_or((0, false), |l| l.kind());
                socks.insert(s.ret as i32, SockShadow { family, stream, ..Default::default() });
            }
            _ => {}
        }
        match spec.follow.live {
            // Not sockets: see `follow_watches`.
            Live::None | Live::Watch { .. } | Live::Unwatch { .. } => {}
            Live::Bind => {
                let addr = read(args[1], args[2], 128)?;
                self.make_socket_file(t, &addr);
                let socks = self.sockets.entry(proc).or_default();
                if let Some(sh) = socks.get_mut(&fd) {
                    sh.addr = addr;
                }
            }
            Live::Listen => {
                if let Some(sh) = socks.get_mut(&fd) {
                    sh.backlog = Some(args[1] as i32);
                }
            }
            Live::Connect => {
                if let Some(sh) = socks.get_mut(&fd) {
                    sh.peer = read(args[1], args[2], 128)?;
                }
            }
            Live::SockOpt => {
                if let Some(sh) = socks.get_mut(&fd) {
                    sh.opts.push((args[1] as i32, args[2] as i32, read(args[3], args[4], 256)?));
                }
            }
        }
        Ok(())
    }
}

impl Replayer<'_> {
    /// A bind of a unix socket to a path in the data directory made a file there at record (a
    /// socket inode: mode 0777 less the umask, owned by the caller). Replay binds nothing, so it
    /// makes that file, and the data directory stays the recording's: a later unlink or stat
    /// of it has the recorded result, and the replicas' directories stay identical. Going live
    /// removes it and binds for real (`remove_stale_unix_socket`). Paths outside the data
    /// directory are the host's, left alone as any host file.
    fn make_socket_file(&self, t: &Stopped, addr: &[u8]) {
        let Some(dir) = &self.program_data_dir else { return };
        let family = addr.get(..2).map(|f| u16::from_ne_bytes([f[0], f[1]]));
        let Some(raw) = addr.get(2..).filter(|_| family == Some(libc::AF_UNIX as u16)) else { return };
        let Some(end) = raw.iter().position(|&c| c == 0) else { return };
        if end == 0 {
            // Abstract (or unnamed): no file.
            return;
        }
        let pid = t.pid().as_raw();
        let path = Path::new(OsStr::from_bytes(&raw[..end]));
        let Some(base) = ft_interposer::procfs::path_base(pid, None, path) else { return };
        if !policy::inside(&base, path, dir) {
            return;
        }
        let full = policy::normalize(&base, path);
        let Ok(rel) = full.strip_prefix("/") else { return };
        let file = PathBuf::from(format!("/proc/{pid}/root")).join(rel);
        // The program's umask and filesystem ids (the fourth of each) make the file, as its bind did.
        let Ok(st) = ft_interposer::procfs::proc_state(pid) else { return };
        let umask = st.umask;
        let Ok(c) = std::ffi::CString::new(file.as_os_str().as_bytes()) else { return };
        let mode = 0o777 & !umask;
        // SAFETY: mknod, chmod and lchown read a NUL-terminated path of ours.
        let made = unsafe { libc::mknod(c.as_ptr(), libc::S_IFSOCK | mode, 0) } == 0;
        if !made {
            slog::warn!(self.log, "replay: making the file of a unix socket bound in the data directory failed";
                "path" => full.display().to_string(), "error" => std::io::Error::last_os_error().to_string());
            return;
        }
        // SAFETY: as above.
        unsafe {
            // mknod applied the tracer's umask; the program's is the one that counts.
            libc::chmod(c.as_ptr(), mode);
            if let (Some(&uid), Some(&gid)) = (st.uids.get(3), st.gids.get(3)) {
                libc::lchown(c.as_ptr(), uid, gid);
            }
        }
    }
}

/// The per-process map of what the process's fds stand for, without the fds `s` made: those
/// numbers name new objects now.
fn without_new_fds<'m, V>(
    maps: &'m mut HashMap<u32, HashMap<i32, V>>,
    proc: u32,
    s: &Syscall,
) -> &'m mut HashMap<i32, V> {
    let m = maps.entry(proc).or_default();
    for nf in &s.new_fds {
        m.remove(&nf.fd);
    }
    m
}
