//! The syscall buffer at record (layout: `ft_libos::sysbuf`; handler and trampolines:
//! `ft_interposer::sysbuf`). A socket syscall's site is rewritten at its first traced stop; an
//! fd is approved for the handler once the recorder answered the same syscall on it from a copy
//! (table `Exec::Copy`), and unapproved by any other syscall that names it; the ring is drained
//! into ordinary events at the holder's stops, between the clock reads they followed.

use super::*;
use ft_interposer::sysbuf as isb;
use ft_libos::sysbuf::{self as lsb, FD_EPOLL, FD_LIMIT, FD_QUEUE, FD_RECV, FD_SEND};

static ON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turns the syscall buffer on or off for the recordings of this process (on by default;
/// `--no-syscall-buffer`).
pub fn set_enabled(on: bool) {
    ON.store(on, std::sync::atomic::Ordering::Relaxed);
}

fn enabled() -> bool {
    ON.load(std::sync::atomic::Ordering::Relaxed)
}

/// The syscall buffer of one process (address space), as the recorder last wrote it.
#[derive(Clone, Default)]
pub(super) struct BufProc {
    /// Per fd, what the handler may do with it.
    fds: Vec<u8>,
    /// The handler records (MODE_RECORD written).
    on: bool,
    /// PAUSE written: every call is traced until the next drain.
    paused: bool,
    /// Sites that stay traced.
    refused: HashSet<u64>,
}

/// What [`Recorder::try_patch`] did.
pub(super) enum PatchStep {
    /// Nothing, or the site is rewritten: the stop goes on.
    Go,
    /// The site needs a trampoline page first: the caller maps it (`ft_interposer::sysbuf::
    /// add_page`) and the task makes its syscall again.
    Page(u64),
}

impl Recorder<'_> {
    /// The buffer state of `proc`, created on first use.
    fn buf_proc(&mut self, proc: u32) -> Option<&mut BufProc> {
        if !self.clocks.ready(proc) {
            return None;
        }
        Some(self.bufs.entry(proc).or_insert_with(|| BufProc { fds: vec![0; FD_LIMIT], ..Default::default() }))
    }

    /// At the seccomp stop of a syscall the handler buffers, from a site not rewritten yet:
    /// rewrites the site (logging a `Patch` before the syscall's own event) when it is safe,
    /// and moves the task's return into the trampoline; or asks for a trampoline page first.
    pub(super) fn try_patch(&mut self, t: &Stopped, regs: &mut Regs, spec: &Spec, silent: u32) -> Result<PatchStep> {
        // The table's buffered Copy syscalls (`ft_interposer::sysbuf::buffers`).
        if !enabled() || !ft_interposer::sysbuf::buffers(u64::from(spec.nr)) || ft_interposer::clock::in_stub(regs.ip())
        {
            return Ok(PatchStep::Go);
        }
        let pid = t.pid();
        let proc = self.proc_of_pid(pid);
        let site = regs.ip().wrapping_sub(2);
        match self.buf_proc(proc) {
            Some(b) if !b.refused.contains(&site) => {}
            _ => return Ok(PatchStep::Go),
        }
        // Another task of the process inside the bytes a rewrite may cover (the syscall and at
        // most one more instruction past its first 5 bytes) would return into the middle of the
        // jump: try again at a later stop. Checked first: it is the cheap test.
        let end = site + 20;
        for (&other, other_task) in &self.tasks {
            if other == pid || other_task.proc != proc {
                continue;
            }
            let ip = match &other_task.state {
                TState::Ready(s) => s.regs()?.ip(),
                TState::InKernel(_) => match self.syscall_ip.get(&other) {
                    Some(&ip) => ip,
                    None => return Ok(PatchStep::Go),
                },
                TState::Starting | TState::Holding => return Ok(PatchStep::Go),
            };
            if ip > site && ip < end {
                return Ok(PatchStep::Go);
            }
        }
        let task = self.vtid(pid);
        let reach = |p: u64| p.abs_diff(site) < (1 << 31) - lsb::PAGE_LEN;
        let pages = isb::pages(t)?;
        if pages.iter().any(|&p| (p..p + lsb::PAGE_LEN).contains(&site)) {
            // The copy of `syscall` in a trampoline (a task that was stopped at the site when it
            // was rewritten, restarted or handed over there).
            self.refuse_site(proc, site);
            return Ok(PatchStep::Go);
        }
        let mut tramp = None;
        for p in pages.iter().copied().filter(|&p| reach(p)) {
            if let Some(slot) = isb::free_slot(t, p)? {
                tramp = Some(slot);
                break;
            }
        }
        let Some(tramp) = tramp else {
            let maps = ft_interposer::procfs::mapped_ranges(pid.as_raw()).unwrap_or_default();
            match (pages.len() < lsb::MAX_PAGES).then(|| isb::page_for(site, lsb::PAGE_LEN, &maps)).flatten() {
                Some(page) => {
                    self.emit(Kind::Patch(Patch { task, site, silent, page, ..Default::default() }))?;
                    return Ok(PatchStep::Page(page));
                }
                None => {
                    debug!(self.log, "syscall site stays traced"; "site" => format!("{site:#x}"), "why" => "no room for a trampoline page within 2 GiB");
                    self.refuse_site(proc, site);
                    return Ok(PatchStep::Go);
                }
            }
        };
        let plan = match t.read(site, 40).map_err(SessionError::from).map(|code| isb::plan(site, &code, tramp)) {
            Ok(Ok(p)) => p,
            Ok(Err(why)) => {
                debug!(self.log, "syscall site stays traced"; "site" => format!("{site:#x}"), "why" => why);
                self.refuse_site(proc, site);
                return Ok(PatchStep::Go);
            }
            Err(e) => {
                debug!(self.log, "syscall site stays traced"; "site" => format!("{site:#x}"), "why" => %e);
                self.refuse_site(proc, site);
                return Ok(PatchStep::Go);
            }
        };
        let before = t.read(site, plan.site_bytes.len())?;
        t.write_forced(tramp, &plan.tramp_bytes)?;
        t.write_forced(site, &plan.site_bytes)?;
        regs.0.rip = plan.resume;
        t.set_regs(regs)?;
        debug!(self.log, "syscall site rewritten"; "task" => task, "site" => format!("{site:#x}"), "tramp" => format!("{tramp:#x}"));
        self.emit(Kind::Patch(Patch {
            task,
            site,
            before,
            after: plan.site_bytes,
            tramp,
            tramp_bytes: plan.tramp_bytes,
            resume: plan.resume,
            silent,
            page: 0,
        }))?;
        Ok(PatchStep::Go)
    }

    fn refuse_site(&mut self, proc: u32, site: u64) {
        if let Some(b) = self.bufs.get_mut(&proc) {
            b.refused.insert(site);
        }
    }

    fn proc_of_pid(&self, pid: Pid) -> u32 {
        self.tasks.get(&pid).map(|t| t.proc).unwrap_or(0)
    }

    /// After the recorder answered `op` on fd `fd` from a copy (`ok`) or left it to the
    /// tracee (not `ok`): the handler may do the same from now on, or no longer.
    pub(super) fn approve(&mut self, t: &Stopped, fd: u64, op: CopyOp, ok: bool) -> Result<()> {
        if !enabled() || fd >= FD_LIMIT as u64 {
            return Ok(());
        }
        let bit = match op {
            CopyOp::Recv { .. } => FD_RECV,
            CopyOp::Send { .. } | CopyOp::SendMsg { .. } if self.sink.commits_outputs() => FD_QUEUE,
            CopyOp::Send { .. } | CopyOp::SendMsg { .. } => FD_SEND,
            CopyOp::EpollWait { .. } => FD_EPOLL,
        };
        let proc = self.proc_of_pid(t.pid());
        let Some(b) = self.buf_proc(proc) else { return Ok(()) };
        let old = b.fds[fd as usize];
        let new = if ok { old | bit } else { old & !bit };
        if new == old {
            return Ok(());
        }
        // A socketpair between the program's processes stays traced: its stand-in at replay
        // is a pipe whose bytes in flight replay follows at each logged call. Looked up only
        // when the fd would be approved (once per fd), not at every traced call.
        let pairs = &self.made_real.pair_sockets;
        if ok
            && !pairs.is_empty()
            && ft_interposer::procfs::socket_of(t.pid().as_raw(), fd as i32).is_some_and(|i| pairs.contains(&i))
        {
            return Ok(());
        }
        let Some(b) = self.buf_proc(proc) else { return Ok(()) };
        b.fds[fd as usize] = new;
        let turn_on = !b.on;
        b.on = true;
        isb::set_fd(t, fd as usize, new)?;
        if turn_on {
            // USED, PAUSE and RPOS too: a replay that went live may have left its ring.
            isb::start_recording(t)?;
        }
        Ok(())
    }

    /// A traced syscall that names fds other than as an approved socket syscall (fcntl,
    /// setsockopt, shutdown, close, dup2 over it...): the handler leaves them to the tracer.
    pub(super) fn unapprove(&mut self, t: &Stopped, spec: &Spec, args: &[u64; 6]) -> Result<()> {
        let proc = self.proc_of_pid(t.pid());
        let Some(b) = self.bufs.get_mut(&proc) else { return Ok(()) };
        if !b.on {
            return Ok(());
        }
        let mut range = match spec.fds.closes {
            Closes::Arg(i) => Some((args[usize::from(i)], args[usize::from(i)])),
            // close_range(first, last, flags)
            Closes::Range => Some((args[0], args[1].min(FD_LIMIT as u64 - 1))),
            Closes::None => None,
        };
        if range.is_none() && !matches!(spec.exec, Exec::Copy(_)) {
            range = spec.fd.map(|i| (args[usize::from(i)], args[usize::from(i)]));
        }
        let Some((first, last)) = range else { return Ok(()) };
        for fd in first..=last.min(FD_LIMIT as u64 - 1) {
            if b.fds[fd as usize] != 0 {
                b.fds[fd as usize] = 0;
                isb::set_fd(t, fd as usize, 0)?;
            }
        }
        Ok(())
    }

    /// Logs what the holder's clock stub and syscall buffer recorded since its last stop, in
    /// the order it made them (each buffered syscall after the clock reads before it). Not at
    /// a signal stop inside ftexec's code: the stub or handler may be between writing an entry
    /// and committing it (a probe's steps or a signal can stop it anywhere).
    pub(super) fn drain_buffers(&mut self, s: &Stopped) -> Result<()> {
        let pid = s.pid();
        let proc = self.proc_of_pid(pid);
        if !self.clocks.ready(proc) {
            return Ok(());
        }
        if matches!(s.stop, Stop::Signal(_)) && ft_interposer::clock::in_stub(s.regs()?.ip()) {
            return Ok(());
        }
        let raw = ft_interposer::clock::drain(s)?;
        let reads = if raw.is_empty() { Vec::new() } else { ft_libos::clock::decode_raw(&raw).unwrap_or_default() };
        let on = self.bufs.get(&proc).is_some_and(|b| b.on);
        let ring = if on { isb::drain(s)? } else { Vec::new() };
        let entries = match lsb::parse(&ring) {
            Some(e) => e,
            None => {
                return Err(SessionError::Trace(ft_interposer::TraceError::Unexpected {
                    pid,
                    what: "a damaged syscall buffer (the program wrote over ftexec's ring)".into(),
                }))
            }
        };
        let task = self.vtid(pid);
        let mut done = 0usize;
        let last = entries.len().saturating_sub(1);
        // What the handler was allowed to do when it made these calls: a socket that passes the
        // release queue's limit below loses its approval for the calls after this drain only.
        let fds = if entries.is_empty() {
            Vec::new()
        } else {
            self.bufs.get(&proc).map(|b| b.fds.clone()).unwrap_or_default()
        };
        for (i, e) in entries.into_iter().enumerate() {
            let upto = (e.clocks as usize).clamp(done, reads.len());
            self.emit_clocks(task, &reads[done..upto])?;
            done = upto;
            let queued = fds.get(e.args[0] as usize).is_some_and(|b| b & FD_QUEUE != 0);
            self.emit_buffered(s, task, e, i == last, queued)?;
            self.silent.insert(pid, 0);
        }
        self.emit_clocks(task, &reads[done..])?;
        if let Some(b) = self.bufs.get_mut(&proc) {
            if b.paused {
                b.paused = false;
                isb::set_word(s, lsb::PAUSE, 0)?;
            }
        }
        Ok(())
    }

    fn emit_clocks(&mut self, task: u32, reads: &[ft_libos::clock::Read]) -> Result<()> {
        if reads.is_empty() {
            return Ok(());
        }
        let reads = ft_libos::clock::pack(&ft_libos::clock::to_raw(reads)).unwrap_or_default();
        self.emit(Kind::Clocks(Clocks { task, reads }))
    }

    /// One drained entry as the event the recorder logs for the same syscall answered on a copy.
    fn emit_buffered(&mut self, s: &Stopped, task: u32, e: lsb::Entry, drain_end: bool, queued: bool) -> Result<()> {
        let pid = s.pid();
        let mut ev = Syscall {
            nr: e.nr,
            args: e.args.to_vec(),
            ret: e.ret,
            disposition: Disposition::Inject as i32,
            task,
            in_tracer: true,
            buffered: true,
            drain_end,
            ..Default::default()
        };
        let spec = lookup(u64::from(e.nr));
        self.one_stop += 1;
        if !spec.is_some_and(|sp| sp.copy_sends()) {
            let at = spec.map_or(1, |sp| sp.out_arg());
            if !e.data.is_empty() {
                ev.mem.push(MemWrite { addr: e.args[at], data: e.data });
            }
            return self.emit(Kind::Syscall(ev));
        }
        ev.input_digest = if e.data.is_empty() { Vec::new() } else { digest::short(&e.data) };
        ev.input_len = e.data.len() as u64;
        let fd = e.args[0];
        if queued && e.ret > 0 {
            // The handler answered "sent"; the bytes go out once the log before them is
            // committed, as a write answered on a copy would.
            let ticket = self.sink.output_ticket()?.unwrap_or_else(|| std::sync::Arc::new(crate::release::Durable));
            if self.releaser.is_none() {
                self.releaser = Some(Releaser::new().map_err(SessionError::io("starting the output thread"))?);
            }
            let copy = self.copier.copy(pid, fd as i32);
            let facts = copy.as_ref().and_then(fdcopy::facts);
            match (copy, facts, &self.releaser) {
                (Some(copy), Some(f), Some(r)) => {
                    r.push(f.ino, copy, e.data, ticket);
                    if r.queued(f.ino) > SOCKET_QUEUE_LIMIT {
                        // A client that does not read: its writes take the traced path, which
                        // waits for room.
                        let op = CopyOp::Send { flags: None, addr: None };
                        self.approve(s, fd, op, false)?;
                    }
                }
                _ => {
                    // The program closed nothing in between (a close is a stop that drains
                    // first), so the fd is there; a task that vanished loses its replies.
                    warn!(self.log, "a buffered reply could not be queued: its socket is gone"; "fd" => fd);
                }
            }
        }
        self.events += 1;
        self.released = None;
        self.sink.append_output(&Event { kind: Some(Kind::Syscall(ev)) })
    }

    /// The holder runs while another task waits for the token or a signal waits for it: its
    /// next buffered call is traced instead, so that it stops soon.
    pub(super) fn pause_holder(&mut self) -> Result<()> {
        let Some(h) = self.holder else { return Ok(()) };
        let proc = self.proc_of_pid(h);
        let Some(b) = self.bufs.get_mut(&proc) else { return Ok(()) };
        if !b.on || b.paused {
            return Ok(());
        }
        b.paused = true;
        // The holder runs: only its memory is written (process_vm_writev needs no stop).
        match isb::set_word(&Stopped::assume_stopped(h), lsb::PAUSE, 1) {
            Err(e) if e.is_gone() => Ok(()),
            other => Ok(other?),
        }
    }
}
