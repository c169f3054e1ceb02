//! Signals at replay: each logged delivery is made where the recording had it (at a syscall's
//! exit, at a syscall stop, synchronously at a fault), and checked against the program's state.

use super::*;

impl Replayer<'_> {
    /// The next event is a signal the recording delivered at the exit of this task's last
    /// syscall, before the task ran user code again. Takes the task from that syscall's seccomp
    /// stop (result injected, or the syscall still to run) to its exit stop, sets orig_rax and
    /// rax as the recording had them there, sends the signal and resumes: the kernel delivers
    /// it before the task returns and applies SA_RESTART or EINTR itself. A syscall that waited
    /// with a temporary mask (sigsuspend, ppoll, ...) that the signal interrupted is run as
    /// rt_sigsuspend with that mask, so the mask in effect, and restored after the handler, is
    /// the recording's.
    pub(super) fn deliver_at_exit(&mut self, vtid: u32, t: Stopped) -> Result<()> {
        let index = self.source.position();
        let s = match self.source.next_event()? {
            Some(Event { kind: Some(Kind::Signal(s)) }) => s,
            _ => return Err(SessionError::LogEnded { index }),
        };
        let expected = || describe::event(&Event { kind: Some(Kind::Signal(s.clone())) });
        let Some(sig) = Sig::new(s.signo) else {
            return Err(self.diverge(index, expected(), "a signal number out of range".into()));
        };
        let queued = self.tasks.get(&vtid).is_some_and(|task| task.pending.iter().any(|h| h.sig == sig));
        if self.calls.get(&vtid).is_some_and(|c| c.nr as i64 != s.orig_rax) {
            let got = format!("the exit of syscall {}", self.calls.get(&vtid).map_or(-1, |c| c.nr as i64));
            return Err(self.diverge(index, expected(), got));
        }
        let t = match t.stop {
            Stop::SyscallExit => t,
            Stop::Seccomp => {
                let Some(call) = self.calls.get(&vtid).copied() else {
                    return Err(self.diverge(index, expected(), format!("task {vtid} before any syscall")));
                };
                let mut regs = t.regs()?;
                if regs.nr() == u64::MAX {
                    // Injected (skipped, perhaps rewound for a restart): the exit of the same
                    // skipped call, at the address after it.
                    regs.skip_with(s.rax);
                    regs.0.rip = call.ip;
                    if let Some(mask) = temporary_mask(&t, call.nr, &call.args, s.rax)? {
                        let temp = t.read(mask, 8)?;
                        let temp = temp.try_into().map(u64::from_le_bytes).unwrap_or(u64::MAX);
                        if temp & sig.mask_bit() != 0 {
                            return Err(self.diverge(index, expected(), format!("{sig} blocked by the wait's mask")));
                        }
                        regs.rewrite(libc::SYS_rt_sigsuspend as u64, &[mask, 8, 0, 0, 0, 0]);
                        t.set_regs(&regs)?;
                        // Pending before the wait starts, so that it returns at once.
                        if !queued {
                            let _ = send_signal_to_thread(t.pid(), sig);
                        }
                        let t = self.run_to_exit(t, index)?;
                        let sent = if queued { Sent::Before } else { Sent::ForTheWait };
                        return self.signal_at_exit(vtid, t, &s, sig, sent, true);
                    }
                    t.set_regs(&regs)?;
                }
                self.run_to_exit(t, index)?
            }
            other => return Err(self.diverge(index, expected(), format!("task {vtid} at {other:?}"))),
        };
        self.signal_at_exit(vtid, t, &s, sig, if queued { Sent::Before } else { Sent::No }, false)
    }

    /// At the exit stop: the recorded orig_rax and rax, the signal sent (unless `sent` says it
    /// is in the kernel already) and the task resumed into its delivery. `waited`: after a wait
    /// with a temporary mask, which PTRACE_GETSIGMASK does not show.
    pub(super) fn signal_at_exit(
        &mut self,
        vtid: u32,
        t: Stopped,
        s: &ft_libos::proto::Signal,
        sig: Sig,
        sent: Sent,
        waited: bool,
    ) -> Result<()> {
        // The signal event, consumed already.
        let index = self.source.position().saturating_sub(1);
        let mut regs = t.regs()?;
        regs.0.orig_rax = s.orig_rax as u64;
        regs.set_ret(s.rax);
        t.set_regs(&regs)?;
        // (After a wait with a temporary mask, PTRACE_GETSIGMASK shows the mask restored after
        // the handler, not the one in effect.)
        if !waited && t.sigmask()? & sig.mask_bit() != 0 {
            let expected = describe::event(&Event { kind: Some(Kind::Signal(s.clone())) });
            return Err(self.diverge(index, expected, format!("{sig} blocked by task {vtid}")));
        }
        let info = siginfo_from_bytes(&s.siginfo);
        if let Some(task) = self.tasks.get_mut(&vtid) {
            match task.pending.iter_mut().find(|h| h.sig == sig) {
                Some(h) if sent == Sent::Before => {
                    if info.is_some() {
                        h.info = info;
                    }
                }
                _ => task.pending.push(Held { sig, info }),
            }
        }
        if sent == Sent::No {
            let _ = send_signal_to_thread(t.pid(), sig);
        }
        t.cont(None)?;
        Ok(())
    }

    pub(super) fn on_signal(&mut self, vtid: u32, t: Stopped, sig: Sig) -> Result<()> {
        let proc = self.tasks.get(&vtid).map(|t| t.proc).unwrap_or(0);
        if sig == Sig::SIGILL && self.clocks.used(proc) {
            let ip = t.regs()?.ip();
            if ft_interposer::clock::in_stub(ip) {
                return Err(self.diverge(
                    self.source.position(),
                    "the clock read the recording made next (another function or clock id)".into(),
                    format!("a different clock read by task {vtid}"),
                ));
            }
        }
        self.check_ring(proc, &t)?;
        self.check_clock_reads(proc, &t)?;
        if sig == Sig::SIGSEGV {
            let mut regs = t.regs()?;
            if let Some(insn) = tsc::decode(&t, regs.ip())? {
                let (index, ev) = self.next_for(vtid)?;
                let rdtscp = insn == tsc::TscInsn::Rdtscp;
                let got = format!("{} at {:#x}", if rdtscp { "rdtscp" } else { "rdtsc" }, regs.ip());
                return match ev.kind {
                    Some(Kind::Rdtsc(r)) if r.ip == regs.ip() && r.rdtscp == rdtscp => {
                        tsc::complete(&mut regs, insn, r.tsc, r.aux);
                        t.set_regs(&regs)?;
                        t.cont(None)?;
                        Ok(())
                    }
                    _ => Err(self.diverge(index, describe::event(&ev), got)),
                };
            }
        }
        let pending = self.tasks.get_mut(&vtid).and_then(|task| {
            let i = task.pending.iter().position(|p| p.sig == sig)?;
            Some(task.pending.remove(i))
        });
        if let Some(held) = pending {
            // The recording's kernel delivered another signal right after this one, before the
            // handler ran: it must be pending when the kernel looks again.
            if let Some(Event { kind: Some(Kind::Signal(s)) }) = self.source.peek_event()? {
                if s.at_exit && s.grouped && s.task == vtid {
                    let (signo, info) = (s.signo, siginfo_from_bytes(&s.siginfo));
                    self.source.next_event()?;
                    if let Some(next) = Sig::new(signo) {
                        let _ = send_signal_to_thread(t.pid(), next);
                        if let Some(task) = self.tasks.get_mut(&vtid) {
                            task.pending.push(Held { sig: next, info });
                        }
                    }
                }
            }
            if let Some(info) = held.info {
                t.set_siginfo(&info)?;
            }
            t.cont(Some(sig))?;
            return Ok(());
        }
        if is_synchronous(&t, sig) {
            let (index, ev) = self.next_for(vtid)?;
            return match ev.kind {
                Some(Kind::Signal(s)) if s.signo == sig.raw() => {
                    t.cont(Some(sig))?;
                    Ok(())
                }
                _ => Err(self.diverge(index, describe::event(&ev), format!("a fault ({sig})"))),
            };
        }
        // Not in the recording (SIGCHLD of a child that exits for real at replay, SIGSTOP of a
        // new task): the log decides which signals the program sees.
        t.cont(None)?;
        Ok(())
    }
}

/// A signal the recording delivered where it arrived (a default action): replay sends it when
/// the log reaches it.
pub(super) fn is_async(s: &ft_libos::proto::Signal) -> bool {
    !s.synchronous && !s.at_syscall && !s.at_exit
}

/// The temporary signal mask a syscall waited with, if it was still in effect at its exit (the
/// recorded result is the code of a wait a signal interrupted): the address of the sigset.
pub(super) fn temporary_mask(t: &Stopped, nr: u64, args: &[u64; 6], ret: i64) -> Result<Option<u64>> {
    let Some(m) = lookup(nr).and_then(|s| s.signals.mask).filter(|m| m.interrupted_by(ret)) else { return Ok(None) };
    let mask = match m.at {
        MaskAt::Arg(i) => args[usize::from(i)],
        MaskAt::Pselect if args[5] != 0 => {
            // struct { const sigset_t *ss; size_t ss_len; }
            let b = t.read(args[5], 8)?;
            b.try_into().map(u64::from_le_bytes).unwrap_or(0)
        }
        MaskAt::Pselect => 0,
    };
    Ok((mask != 0).then_some(mask))
}
