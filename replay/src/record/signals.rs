//! Signals at record: a caught signal is held by the tracer and delivered at a point replay can
//! find (a syscall stop, a syscall's exit), which is logged with it.

use super::*;

impl Recorder<'_> {
    /// The siginfo of a signal at its delivery stop: the kernel's, or for a SIGCHLD that
    /// [`Recorder::quiet_ended`] sent, the one the kernel would have given (set in the kernel
    /// too, for a signal delivered now).
    pub(super) fn incoming_info(&mut self, t: &Stopped, sig: Sig) -> Option<libc::siginfo_t> {
        let proc = self.tasks.get(&t.pid()).map(|t| t.proc).unwrap_or(u32::MAX);
        if !self.resent_info.is_empty() {
            // A sigqueue replay sent again: the kernel zeroed its si_pid (the tracer is outside
            // the namespace); it gets the program's siginfo back.
            // SAFETY: SI_QUEUE says the siginfo has si_pid.
            let resent = t.siginfo().ok().is_some_and(|si| si.si_code == libc::SI_QUEUE && unsafe { si.si_pid() } == 0);
            if let Some(info) =
                self.resent_info.get_mut(&(proc, sig.raw())).filter(|_| resent).and_then(VecDeque::pop_front)
            {
                let _ = t.set_siginfo(&info);
                return Some(info);
            }
        }
        if sig == Sig::SIGCHLD {
            // SAFETY: si_pid is a field of the siginfo of every kill(), which SI_USER says it is.
            let from_tracer =
                t.siginfo().ok().is_some_and(|si| si.si_code == libc::SI_USER && unsafe { si.si_pid() } == 0);
            if from_tracer {
                if let Some(info) = self.chld_info.remove(&proc) {
                    let _ = t.set_siginfo(&info);
                    return Some(info);
                }
            }
        }
        t.siginfo().ok()
    }

    /// The signals held for this task that it does not block now (syscall `nr` is about to
    /// run), in the order the kernel dequeued them. A blocked one stays held: re-sent now, it
    /// would wait in the kernel, and a syscall that only runs at record (rt_sigtimedwait, a
    /// signalfd read) could take it there. Before a syscall that waits with a temporary mask,
    /// if every held signal is blocked, the first one goes to the kernel all the same: the
    /// syscall may unblock it, as it would natively.
    pub(super) fn take_deliverable(&mut self, t: &Stopped, nr: u64) -> Result<Vec<Held>> {
        let Some(held) = self.held.get_mut(&t.pid()).filter(|v| !v.is_empty()) else { return Ok(Vec::new()) };
        let blocked = t.sigmask()?;
        let (free, still): (Vec<Held>, Vec<Held>) =
            std::mem::take(held).into_iter().partition(|h| blocked & h.sig.mask_bit() == 0);
        *held = still;
        if free.is_empty() && lookup(nr).is_some_and(|s| s.signals.mask.is_some()) {
            return Ok(vec![held.remove(0)]);
        }
        Ok(free)
    }

    /// Whether this signal stop is at the exit of the syscall the task was resumed from (`exit`:
    /// its registers then), before the task ran user code: the same registers, rax aside (the
    /// result), and a syscall number (an interrupt or fault in user code leaves orig_rax -1).
    /// Or the kernel delivering another signal right after `chain` in the same pass: the
    /// registers are that signal's fresh frame. Returns the registers at the stop.
    /// Only if nothing was logged since the task was resumed: replay delivers it right after the
    /// task's syscall (or previous signal), so no other event may come between.
    pub(super) fn delivery_point(&self, t: &Stopped, after: &After) -> Result<Option<Point>> {
        let exit = after.exit.as_ref().filter(|e| e.events == self.events);
        let chain = after.chain.filter(|(_, events)| *events == self.events);
        if exit.is_none() && chain.is_none() {
            return Ok(None);
        }
        let now = t.regs()?;
        if let Some(e) = exit {
            let mut same = e.regs.0;
            same.rax = now.0.rax;
            if (now.0.orig_rax as i64) >= 0 && regs_equal(&same, &now.0) {
                return Ok(Some(Point { regs: now, chained: false, silent: e.silent }));
            }
        }
        if let Some((prev, _)) = chain {
            if is_fresh_frame(t, &now, prev) {
                return Ok(Some(Point { regs: now, chained: true, silent: 0 }));
            }
        }
        Ok(None)
    }

    /// Lets the signal of this delivery stop in. If more signals wait, the kernel may deliver
    /// the next one at once, on this one's frame: that stop is handled before any other.
    pub(super) fn deliver(&mut self, t: Stopped, sig: Sig) -> Result<Running> {
        let pid = t.pid();
        self.chain.insert(pid, (sig, self.events));
        let more = signal_waiting(&t)?;
        let running = t.cont(Some(sig))?;
        if more {
            self.wait_own_stop(pid)?;
        }
        Ok(running)
    }

    /// The first signal `sig` re-sent to `pid` and not delivered yet, if any.
    pub(super) fn take_bouncing(&mut self, pid: Pid, sig: Sig) -> Option<Held> {
        let v = self.bouncing.get_mut(&pid)?;
        let i = v.iter().position(|h| h.sig == sig)?;
        Some(v.remove(i))
    }

    pub(super) fn on_signal(&mut self, t: Stopped, sig: Sig, after: After) -> Result<Running> {
        let task = self.vtid(t.pid());
        if sig == Sig::SIGSEGV {
            let mut regs = t.regs()?;
            let ip = regs.ip();
            if let Some(insn) = tsc::decode(&t, ip)? {
                let (tsc, aux) = tsc::now(insn);
                tsc::complete(&mut regs, insn, tsc, aux);
                t.set_regs(&regs)?;
                self.emit(Kind::Rdtsc(Rdtsc { tsc, aux, rdtscp: insn == tsc::TscInsn::Rdtscp, ip, task }))?;
                return Ok(t.cont(None)?);
            }
        }
        let pid = t.pid();
        let synchronous = is_synchronous(&t, sig);
        if synchronous {
            debug!(self.log, "synchronous signal"; "task" => task, "signal" => ?sig, "ip" => slog::FnValue(|_| format!("{:#x}", t.regs().map(|r| r.ip()).unwrap_or(0))));
        }
        let point = if synchronous { None } else { self.delivery_point(&t, &after)? };
        let bounced = self.take_bouncing(pid, sig);
        if let Some(held) = bounced {
            // A held signal re-sent at a syscall: replay sent it at the same point and the
            // kernel delivers it at the same point, unless a syscall that only runs at record
            // (sigsuspend) unblocked it: a delivery at a syscall's exit is logged for replay to
            // find that point.
            if let Some(p) = point.filter(|p| !p.chained) {
                self.emit(Kind::Signal(at_exit(sig, task, &p, held.info.as_ref())))?;
            }
            if let Some(info) = held.info {
                t.set_siginfo(&info)?;
            }
            return self.deliver(t, sig);
        }
        // A fault recurs at replay by itself; a default action (death, stop) is logged where it
        // happened. Both are delivered now. A caught asynchronous signal is delivered here if
        // this is the exit of a syscall (raised by it, or interrupting it), which replay finds
        // again; otherwise it waits for a syscall.
        match if synchronous { Handling::Default } else { disposition(pid, sig) } {
            Handling::NoEffect => {
                // Suppressed: the kernel goes on from the same point.
                if let Some(e) = after.exit {
                    self.exits.insert(pid, e);
                }
                if let Some(c) = after.chain {
                    self.chain.insert(pid, c);
                }
                Ok(t.cont(None)?)
            }
            Handling::Caught => match point {
                Some(p) => {
                    let info = self.incoming_info(&t, sig);
                    self.emit(Kind::Signal(at_exit(sig, task, &p, info.as_ref())))?;
                    self.deliver(t, sig)
                }
                None => {
                    let held = Held { sig, info: self.incoming_info(&t, sig) };
                    self.held.entry(pid).or_default().push(held);
                    Ok(t.cont(None)?)
                }
            },
            Handling::Default => {
                let ev = match point {
                    Some(p) => at_exit(sig, task, &p, None),
                    None => Signal { signo: sig.raw(), synchronous, task, ..Default::default() },
                };
                self.emit(Kind::Signal(ev))?;
                Ok(t.cont(Some(sig))?)
            }
        }
    }
}

/// The event of a signal delivered at a syscall's exit (or right after another one there).
pub(super) fn at_exit(sig: Sig, task: u32, p: &Point, info: Option<&libc::siginfo_t>) -> Signal {
    Signal {
        signo: sig.raw(),
        task,
        at_exit: true,
        grouped: p.chained,
        silent: p.silent,
        orig_rax: p.regs.0.orig_rax as i64,
        rax: p.regs.0.rax as i64,
        siginfo: info.map(siginfo_to_bytes).unwrap_or_default(),
        ..Default::default()
    }
}

pub(super) fn regs_equal(a: &libc::user_regs_struct, b: &libc::user_regs_struct) -> bool {
    let key = |r: &libc::user_regs_struct| {
        [
            r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx, r.rdx, r.rsi, r.rdi,
            r.orig_rax, r.rip, r.cs, r.eflags, r.rsp, r.ss, r.fs_base, r.gs_base, r.ds, r.es, r.fs, r.gs,
        ]
    };
    key(a) == key(b)
}

/// Whether the task stands at the first instruction of the handler the kernel just set up for
/// `prev`: the registers the kernel gives a handler (signal number, siginfo and ucontext
/// pointers into the frame at rsp, rax 0) and a saved context below the frame.
pub(super) fn is_fresh_frame(t: &Stopped, regs: &Regs, prev: Sig) -> bool {
    let r = &regs.0;
    if r.rdi != prev.raw() as u64 || r.rax != 0 || r.rdx != r.rsp.wrapping_add(FRAME_UC) {
        return false;
    }
    if r.rsi != r.rsp.wrapping_add(FRAME_INFO) {
        return false;
    }
    let saved_rsp = t.read(r.rdx + UC_RSP, 8).ok().and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    saved_rsp.is_some_and(|sp| sp > r.rsp)
}
