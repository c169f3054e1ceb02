//! Replay's scheduler: one task runs at a time, in the log's order. The token goes to the task
//! the next event names; a task parked at a stop waits for it; preemptions and deaths are
//! found where the log has them, and the debugger is served at stops.

use super::*;

impl Replayer<'_> {
    pub(super) fn run(&mut self) -> Result<Ended> {
        loop {
            let index = self.source.position();
            // Every task is gone: the recording ended here too (its last event was the last exit).
            // A replicated source would wait for more entries that never come.
            if self.tasks.is_empty() {
                return Ok(Ended::Done(Outcome { status: self.status0.unwrap_or(0), events: index }));
            }
            // At record a free token goes at once to the only ready task, without a Run event when
            // it is the task that had it last: do the same here, before reading on.
            if self.holder.is_none()
                && !self.next_is_free_completion()?
                && self.yielded != Some(self.last_run)
                && matches!(self.tasks.get(&self.last_run).map(|t| &t.state), Some(RState::Idle(_)))
            {
                self.give_token(self.last_run, index)?;
                continue;
            }
            // Look without copying: on the hot path the running task consumes the event itself.
            let ended = self.source.peek_event()?.is_none();
            if ended && !self.tasks.is_empty() && self.source.live() {
                // Let the running task reach its next stop first (kept as Fresh).
                if let Some(h) = self.holder {
                    self.advance(h)?;
                    continue;
                }
                return Ok(Ended::Live);
            }
            let (owner, async_signal) = match self.source.peek_event()? {
                Some(ev) => (ev.task(), matches!(&ev.kind, Some(Kind::Signal(s)) if is_async(s))),
                None => return Err(SessionError::LogEnded { index }),
            };
            let exec_released = self.release_exec(index)?;
            self.release_clone()?;
            // The running task first reaches the point where the recording logged this event.
            if let Some(h) = self.holder {
                // A thread that is not running and ends without a signal was ended by a sibling's
                // exit_group or execve: the running sibling first gets there.
                let proc_of = |v: u32| self.tasks.get(&v).map(|t| t.proc);
                let ended_by_running_sibling = match self.source.peek_event()? {
                    Some(Event { kind: Some(Kind::Exit(e)) }) => {
                        e.signal == 0 && e.task != h && proc_of(e.task).is_some() && proc_of(e.task) == proc_of(h)
                    }
                    _ => false,
                };
                let is_completion = exec_released
                    || !ended_by_running_sibling
                        && owner.is_some_and(|o| {
                            matches!(self.tasks.get(&o).map(|t| &t.state), Some(RState::Parked(_) | RState::Executing))
                        });
                if !is_completion && !async_signal {
                    self.advance(h)?;
                    continue;
                }
            }
            self.holder_catches_up(owner)?;
            let Some(ev) = self.source.peek_event()?.cloned() else { return Err(SessionError::LogEnded { index }) };
            slog::debug!(self.log, "event"; "index" => index, "holder" => ?self.holder, "event" => slog::FnValue(|_| describe::event(&ev)));
            match ev.kind.clone() {
                Some(Kind::Run(r)) => {
                    self.source.next_event()?;
                    self.give_token(r.task, index)?;
                }
                Some(Kind::Signal(s)) if is_async(&s) => {
                    self.source.next_event()?;
                    let task = self.task(s.task, index)?;
                    if let Some(sig) = Sig::new(s.signo) {
                        // To the thread that took it at record: a process-directed send could be
                        // taken by another thread (whose stop would not expect it), and would be
                        // pending for every thread (a clone the log releases meanwhile would fail
                        // with -ERESTARTNOINTR). Its default action (end, stop) is the process's.
                        let _ = send_signal_to_thread(task.tid, sig);
                        task.pending.push(Held { sig, info: None });
                    }
                }
                Some(Kind::Spawn(sp)) => self.spawn(sp, index)?,
                Some(Kind::Exec(ex)) => self.exec(ex, index)?,
                Some(Kind::Exit(e)) => self.death_of_idle(e, index)?,
                Some(Kind::Start(_)) | None => {
                    return Err(self.diverge(index, describe::event(&ev), "a running program".into()))
                }
                Some(Kind::Syscall(s)) => {
                    let task = s.task;
                    match self.take_state(task) {
                        RState::Parked(p) => {
                            self.source.next_event()?;
                            let orig = p.regs;
                            let t = self.complete(p, index, s)?;
                            let t = self.at_boundary(task, t, &orig, false)?;
                            self.set_state(task, RState::Idle(t));
                        }
                        RState::Executing => {
                            self.source.next_event()?;
                            // A fork held the token at record (no flag says that another task
                            // ran meanwhile; see the recorder's `copies_address_space`): it gave
                            // it up at its exit, and a Run says who got it.
                            let forked_holding = !s.token_free
                                && !s.token_released
                                && s.holder_silent.is_none()
                                && ft_libos::table::lookup(u64::from(s.nr))
                                    .is_some_and(|sp| sp.special == Special::Clone);
                            let t = self.finish_executing(s, index)?;
                            self.set_state(task, RState::Idle(t));
                            if forked_holding {
                                self.yielded = Some(task);
                            }
                        }
                        other => {
                            self.set_state(s.task, other);
                            self.implicit_token(s.task, index, &ev)?;
                        }
                    }
                }
                Some(Kind::Rdtsc(_))
                | Some(Kind::Signal(_))
                | Some(Kind::Clocks(_))
                | Some(Kind::Preempt(_))
                | Some(Kind::Patch(_)) => {
                    let task = owner.unwrap_or(u32::MAX);
                    self.implicit_token(task, index, &ev)?;
                }
            }
        }
    }

    /// Whether the next event completes a parked syscall while, at record, no task had run since
    /// the previous event (`token_free`): it is applied before the token goes to anyone.
    fn next_is_free_completion(&mut self) -> Result<bool> {
        Ok(match self.source.peek_event()? {
            Some(Event { kind: Some(Kind::Syscall(s)) }) if s.token_free => {
                matches!(self.tasks.get(&s.task).map(|t| &t.state), Some(RState::Parked(_) | RState::Executing))
            }
            _ => false,
        })
    }

    /// Before the completion of another task's syscall: the running holder first passes as many
    /// silent stops as it had at record when the completion was logged (`holder_silent`), and
    /// reaches its next stop, kept in `arrived` for [`Replayer::advance`]. So a syscall it made
    /// before that point (a close that freed the fd an accept got) has run here too. A holder that
    /// does not stop within HOLDER_CATCH_UP (computing, spinning) gets a probe's SIGSTOP (see
    /// [`spin`]), whose stop the scheduler later lets go as any probe's.
    pub(super) fn holder_catches_up(&mut self, owner: Option<u32>) -> Result<()> {
        let (n, released) = match self.source.peek_event()? {
            Some(Event { kind: Some(Kind::Syscall(s)) }) => (s.holder_silent, s.token_released),
            _ => return Ok(()),
        };
        loop {
            let Some(h) = self.holder.filter(|h| Some(*h) != owner) else { return Ok(()) };
            let Some((tid, running)) = self.tasks.get(&h).map(|t| (t.tid, matches!(t.state, RState::Running))) else {
                return Ok(());
            };
            if !running {
                return Ok(());
            }
            // A stop of the holder collected already (for an earlier completion) is handled
            // first when the holder has more silent stops to pass: it may be one of them (a
            // close the completion's fd needs).
            let arrived = self.arrived.contains_key(&tid);
            if released {
                if arrived {
                    return Ok(());
                }
                // The holder released the token at record before this was logged: it first
                // parks here too (its stops until then log nothing).
                self.advance(h)?;
                continue;
            }
            let Some(n) = n else { return Ok(()) };
            let count = self.silent.get(&h).copied().unwrap_or(0);
            if count > n {
                return Ok(());
            }
            if count < n {
                self.advance(h)?;
                continue;
            }
            if arrived {
                return Ok(());
            }
            // Its next stop; one that computes or spins is stopped by a probe's SIGSTOP, whose
            // delivery stop comes in user code: the syscall before it has run.
            if let Some(w) = self.wait_or_interrupt(tid, HOLDER_CATCH_UP, Some(HOLDER_CATCH_UP_LIMIT))? {
                self.arrived.insert(tid, w);
            }
            return Ok(());
        }
    }

    /// If the next event shows what a clone held in [`RState::CloneParked`] did at record, lets
    /// it go on: its Spawn runs it for real (a vfork parent then waits on the child's exec in the
    /// kernel, as at record); its result without a Spawn completes it as any parked syscall
    /// (the failure injected, or the syscall rewound for the kernel's restart).
    pub(super) fn release_clone(&mut self) -> Result<()> {
        let (vtid, spawned) = match self.source.peek_event()? {
            Some(Event { kind: Some(Kind::Spawn(sp)) }) => (sp.parent, true),
            Some(Event { kind: Some(Kind::Syscall(sc)) }) => (sc.task, false),
            _ => return Ok(()),
        };
        if !matches!(self.tasks.get(&vtid).map(|t| &t.state), Some(RState::CloneParked(_))) {
            return Ok(());
        }
        let RState::CloneParked(p) = self.take_state(vtid) else { return Ok(()) };
        if !spawned {
            self.set_state(vtid, RState::Parked(p));
            return Ok(());
        }
        quiet_clone(&p)?;
        self.clone_args.insert(vtid, p.args);
        p.t.cont_to_exit()?;
        self.set_state(vtid, RState::Executing);
        Ok(())
    }

    /// If the next event shows the effect of an execve held in [`RState::ExecParked`] (its Exec
    /// event or result, or the death of a thread of its process), lets the execve run. Returns
    /// whether it did.
    pub(super) fn release_exec(&mut self, index: u64) -> Result<bool> {
        let waiting = match self.source.peek_event()? {
            Some(Event { kind: Some(Kind::Exec(ex)) }) => Some(ex.task),
            Some(Event { kind: Some(Kind::Syscall(sc)) }) => Some(sc.task),
            Some(Event { kind: Some(Kind::Exit(e)) }) => {
                let proc = self.tasks.get(&e.task).map(|t| t.proc);
                self.tasks
                    .iter()
                    .find(|(_, t)| Some(t.proc) == proc && matches!(t.state, RState::ExecParked(_)))
                    .map(|(v, _)| *v)
            }
            _ => None,
        };
        let Some(vtid) = waiting else { return Ok(false) };
        if !matches!(self.tasks.get(&vtid).map(|t| &t.state), Some(RState::ExecParked(_))) {
            return Ok(false);
        }
        let RState::ExecParked(p) = self.take_state(vtid) else { return Err(SessionError::LogEnded { index }) };
        p.t.cont_to_exit()?;
        self.set_state(vtid, RState::Executing);
        if let Some(proc) = self.tasks.get(&vtid).map(|t| t.proc) {
            self.exec_running.insert(proc);
        }
        Ok(true)
    }

    /// An event of a task that does not run: it runs on after its last switch (no Run logged
    /// when the token goes back to the task that had it last).
    pub(super) fn implicit_token(&mut self, task: u32, index: u64, ev: &Event) -> Result<()> {
        if self.holder.is_none() && task == self.last_run && self.tasks.contains_key(&task) {
            return self.give_token(task, index);
        }
        Err(self.diverge(index, describe::event(ev), format!("task {task} not scheduled to run here")))
    }

    pub(super) fn give_token(&mut self, vtid: u32, index: u64) -> Result<()> {
        let tid = self.task(vtid, index)?.tid;
        let t = match self.take_state(vtid) {
            RState::Idle(t) => t,
            RState::Starting => match self.wait_tid(tid)? {
                Waited::Stopped(s) => {
                    if let Some(args) = self.clone_args.remove(&vtid) {
                        let mut regs = s.regs()?;
                        regs.set_args(&args);
                        s.set_regs(&regs)?;
                    }
                    s
                }
                w => return self.on_death(vtid, w, index),
            },
            other => {
                self.set_state(vtid, other);
                return Err(self.diverge(
                    index,
                    format!("a switch to task {vtid}"),
                    format!("task {vtid} is not waiting"),
                ));
            }
        };
        self.holder = Some(vtid);
        self.last_run = vtid;
        self.yielded = None;
        self.set_state(vtid, RState::Running);
        let r = if matches!(t.stop, Stop::Seccomp | Stop::SyscallExit) {
            self.resume(vtid, t)
        } else {
            Ok(t.cont(None).map(drop)?)
        };
        match r {
            Err(SessionError::Trace(e)) if e.is_gone() => Ok(()),
            other => other,
        }
    }

    /// Waits for `tid`'s next stop. Meanwhile the running task may stop too (a vfork child
    /// reaching execve, which the vfork parent waits for): its stops that need no event are
    /// handled at once, as at record; others wait in `arrived` for their turn in the log.
    pub(super) fn wait_tid(&mut self, tid: Pid) -> Result<Waited> {
        loop {
            if let Some(w) = self.arrived.remove(&tid) {
                return Ok(w);
            }
            let (pid, w) = wait_for(None)?;
            if pid == tid {
                return Ok(w);
            }
            let holder = self.holder.and_then(|h| self.tasks.get(&h).map(|t| (h, t.tid)));
            match (holder, w) {
                (Some((h, htid)), Waited::Stopped(st)) if htid == pid && self.needs_no_event(h, &st)? => {
                    match self.on_stop(h, st) {
                        Err(SessionError::Trace(e)) if e.is_gone() => {}
                        other => other?,
                    }
                }
                (_, w) => {
                    self.arrived.insert(pid, w);
                }
            }
        }
    }

    /// Whether handling this stop of the running task consumes no log event.
    pub(super) fn needs_no_event(&mut self, vtid: u32, st: &Stopped) -> Result<bool> {
        match st.stop {
            Stop::Seccomp => {
                if let Some(Event { kind: Some(Kind::Signal(s)) }) = self.source.peek_event()? {
                    if (s.at_syscall || s.at_exit) && s.task == vtid {
                        return Ok(false);
                    }
                }
                let regs = st.regs()?;
                // The log rewrites this syscall site before the task's next event: its stop
                // waits for that rewrite (a task running while another's exec or completion is
                // applied may get here before the log does).
                if self.patch_pending(vtid, regs.ip())? {
                    return Ok(false);
                }
                let Some(spec) = lookup(regs.nr()) else { return Ok(true) };
                let args = regs.args();
                let action = policy::decide(spec, &args, self.fds_of(vtid), false);
                if self.answered_in_tracer(vtid, spec, action)? {
                    return Ok(false);
                }
                Ok(match action {
                    Action::Record { exec: Exec::Tracer } => !tracer_can_run(spec, &args),
                    _ if action.holds_token() => false,
                    Action::Refuse(Refusal::Unsupported(_)) => false,
                    _ => true,
                })
            }
            Stop::Signal(sig) => {
                let pending = self.tasks.get(&vtid).is_some_and(|t| t.pending.iter().any(|h| h.sig == sig));
                Ok(pending || (sig != Sig::SIGSEGV && !is_synchronous(st, sig)))
            }
            // Another thread's execve, reported on this leader's tid: the log's Exec event.
            Stop::Exec => Ok(false),
            _ => Ok(true),
        }
    }

    /// Whether the log rewrites task `vtid`'s syscall site at `ip` before the task's next event
    /// (looking at most 16 events ahead, without waiting for more).
    fn patch_pending(&mut self, vtid: u32, ip: u64) -> Result<bool> {
        for i in 0..16 {
            match self.source.peek_nth(i)? {
                Some(Event { kind: Some(Kind::Patch(p)) }) if p.task == vtid => return Ok(p.site.wrapping_add(2) == ip),
                Some(ev) if ev.task() == Some(vtid) => return Ok(false),
                Some(_) => {}
                None => return Ok(false),
            }
        }
        Ok(false)
    }

    /// Lets the running task reach its next stop and handles it.
    pub(super) fn advance(&mut self, vtid: u32) -> Result<()> {
        let index = self.source.position();
        let tid = self.task(vtid, index)?.tid;
        let next = self.source.peek_event()?;
        let ended = next.is_none();
        if let Some(Event { kind: Some(Kind::Preempt(p)) }) = next {
            if p.task == vtid {
                let p = p.clone();
                return self.preempt(vtid, tid, p, index);
            }
        }
        let others_idle =
            || self.tasks.iter().any(|(v, t)| *v != vtid && matches!(t.state, RState::Idle(_) | RState::Fresh(_)));
        let waited = if ended && self.source.live() && others_idle() {
            // At the end of a log that goes on live, the task may spin until another runs: probe
            // it as the recorder would (the handover tells the recorder the SIGSTOP is its). A
            // syscall it reaches first lets the SIGSTOP in before it and stops again.
            loop {
                let Some(w) = self.wait_or_interrupt(tid, stop::PROBE_GAP, None)? else {
                    return Err(SessionError::LogEnded { index });
                };
                match w {
                    Waited::Stopped(s) if s.stop == Stop::Seccomp && self.interrupter.is(tid) => {
                        let_interrupt_in(s)?;
                    }
                    w => break w,
                }
            }
        } else {
            self.wait_tid(tid)?
        };
        match waited {
            Waited::Stopped(s) if s.stop == Stop::Exec => {
                // The running task never reaches an exec stop itself (its own execve makes it
                // Executing): another thread's execve took over this leader's tid and ended
                // it. The log's Exec event (after the other threads' deaths) collects the stop.
                self.arrived.insert(tid, Waited::Stopped(s));
                self.holder = None;
                Ok(())
            }
            Waited::Stopped(s) if self.source.peek_event()?.is_none() && self.source.live() => {
                // The syscall buffer's ring filled from the end of the log is served by now.
                let proc = self.tasks.get(&vtid).map(|t| t.proc).unwrap_or(0);
                self.check_ring(proc, &s)?;
                self.set_state(vtid, RState::Fresh(s));
                self.holder = None;
                self.fresh_holder = Some(vtid);
                Ok(())
            }
            Waited::Stopped(s) => {
                let Some(s) = self.debug_stop(vtid, s)? else { return Ok(()) };
                match self.on_stop(vtid, s) {
                    Err(SessionError::Trace(e)) if e.is_gone() => Ok(()),
                    other => other,
                }
            }
            w => self.on_death(vtid, w, index),
        }
    }

    /// Waits for a stop of `tid`; if none comes within `gap`, sends it a probe's SIGSTOP. Gives
    /// up after `limit` (None: waits for good).
    pub(super) fn wait_or_interrupt(
        &mut self,
        tid: Pid,
        gap: std::time::Duration,
        limit: Option<std::time::Duration>,
    ) -> Result<Option<Waited>> {
        let start = std::time::Instant::now();
        let mut backoff = spin::Backoff::new(std::time::Duration::from_micros(20), std::time::Duration::from_millis(1));
        let mut nap = std::time::Duration::ZERO;
        loop {
            if let Some(w) = self.arrived.remove(&tid) {
                return Ok(Some(w));
            }
            if let Some((_, w)) = ft_interposer::tracee::wait_for_within(Some(tid), nap)? {
                return Ok(Some(w));
            }
            if limit.is_some_and(|l| start.elapsed() > l) {
                return Ok(None);
            }
            self.interrupter.tend(Some(tid), start.elapsed() >= gap)?;
            nap = backoff.nap();
        }
    }

    /// The recording preempted the running task at a fixpoint of a spin loop (see
    /// [`ft_interposer::spin`]): probe it until it is in that state, then do what the recording
    /// did there. A task that reaches another fixpoint, or makes an event of its own first, has
    /// diverged.
    pub(super) fn preempt(&mut self, vtid: u32, tid: Pid, p: Preempt, index: u64) -> Result<()> {
        let expected = || describe::event(&Event { kind: Some(Kind::Preempt(p.clone())) });
        let start = std::time::Instant::now();
        let mut gap = std::time::Duration::from_millis(1);
        // A loop may pass the recorded instruction in several states per iteration (one per
        // worker it looks at): a fixpoint in another state is where the probe landed this time.
        let mut other: Option<[u8; 16]> = None;
        loop {
            let left = PREEMPT_LIMIT.saturating_sub(start.elapsed());
            let Some(w) = self.wait_or_interrupt(tid, gap, Some(left))? else {
                let seen = match other {
                    Some(d) => format!(", spinning there in another state (digest {})", digest::hex(&d)),
                    None => String::new(),
                };
                return Err(self.diverge(
                    index,
                    expected(),
                    format!(
                        "task {vtid} still running {} s later without reaching that state{seen}",
                        PREEMPT_LIMIT.as_secs()
                    ),
                ));
            };
            let s = match w {
                Waited::Stopped(s) if self.interrupter.is(tid) && s.stop == Stop::Signal(Sig::SIGSTOP) => s,
                // A stop of its own on the way (one that logged nothing at record), or a
                // divergence, which handling it reports.
                Waited::Stopped(s) => {
                    return match self.on_stop(vtid, s) {
                        Err(SessionError::Trace(e)) if e.is_gone() => Ok(()),
                        other => other,
                    }
                }
                w => return self.on_death(vtid, w, index),
            };
            self.interrupter.clear();
            match spin::probe(s, Some(p.ip))? {
                Probe::Fixpoint(point, t) if point.digest[..] == p.digest[..] => return self.preempted(vtid, t, p),
                Probe::Fixpoint(point, t) => {
                    other = Some(point.digest);
                    t.cont(None)?;
                    gap = (gap * 2).min(std::time::Duration::from_millis(50));
                }
                Probe::Moving(_, t) => {
                    t.cont(None)?;
                    gap = (gap * 2).min(std::time::Duration::from_millis(50));
                }
                Probe::Other(pid, w) => {
                    self.arrived.insert(pid, w);
                    return Ok(());
                }
            }
        }
    }

    /// The task is where the recording preempted it: it gives up the token, or takes the
    /// signals the recording delivered there.
    pub(super) fn preempted(&mut self, vtid: u32, t: Stopped, p: Preempt) -> Result<()> {
        self.source.next_event()?;
        let proc = self.tasks.get(&vtid).map(|t| t.proc).unwrap_or(0);
        self.check_ring(proc, &t)?;
        self.check_clock_reads(proc, &t)?;
        if p.yielded {
            self.holder = None;
            self.yielded = Some(vtid);
            self.set_state(vtid, RState::Idle(t));
            return Ok(());
        }
        let tid = t.pid();
        for s in &p.signals {
            let Some(sig) = Sig::new(s.signo) else { continue };
            let _ = send_signal_to_thread(tid, sig);
            if let Some(task) = self.tasks.get_mut(&vtid) {
                task.pending.push(Held { sig, info: siginfo_from_bytes(&s.siginfo) });
            }
        }
        t.cont(None)?;
        Ok(())
    }

    /// With a debugger: serves it if this stop of the running task is one of its stops. Returns
    /// the stop if the replay still has to handle it (None: a breakpoint trap or a finished step,
    /// which the recording never saw, handled and resumed here).
    pub(super) fn debug_stop(&mut self, vtid: u32, s: Stopped) -> Result<Option<Stopped>> {
        let Some(dbg) = self.debug.take() else { return Ok(Some(s)) };
        let r = self.serve_debugger(&mut *dbg, vtid, s);
        self.debug = Some(dbg);
        r
    }

    pub(super) fn serve_debugger(&mut self, dbg: &mut dyn Debugger, vtid: u32, s: Stopped) -> Result<Option<Stopped>> {
        let position = self.source.position();
        let tid = s.pid();
        let trap = match s.stop {
            Stop::Signal(Sig::SIGTRAP) if self.stepping == Some(tid) => Some(StopReason::Step),
            Stop::Signal(Sig::SIGTRAP) => {
                let mut regs = s.regs()?;
                let at = regs.ip().wrapping_sub(1);
                if dbg.is_breakpoint(at) {
                    regs.0.rip = at;
                    s.set_regs(&regs)?;
                    Some(StopReason::Breakpoint)
                } else {
                    None
                }
            }
            _ => None,
        };
        if trap.is_some() {
            self.stepping = None;
        }
        let Some(why) = trap.or_else(|| dbg.target().filter(|&t| position >= t).map(|_| StopReason::Event)) else {
            return Ok(Some(s));
        };
        fn stopped(t: &RTask) -> Option<&Stopped> {
            match &t.state {
                RState::Idle(st) | RState::Fresh(st) => Some(st),
                RState::Parked(p) | RState::ExecParked(p) | RState::CloneParked(p) => Some(&p.t),
                _ => None,
            }
        }
        let mut others: Vec<_> = self
            .tasks
            .iter()
            .filter(|(&v, _)| v != vtid)
            .map(|(&v, t)| debug::Task { vtid: v, tid: t.tid.as_raw(), stopped: stopped(t) })
            .collect();
        others.sort_by_key(|t| t.vtid);
        let view =
            debug::View { position, current: debug::Task { vtid, tid: tid.as_raw(), stopped: Some(&s) }, others };
        match dbg.stopped(why, &view) {
            Resume::Restart => return Err(SessionError::Restart),
            Resume::Step => {
                ft_interposer::tracee::step_next(tid);
                self.stepping = Some(tid);
            }
            Resume::Continue => {}
        }
        if trap.is_some() {
            s.cont(None)?;
            return Ok(None);
        }
        Ok(Some(s))
    }

    /// A task died; the log's next event must say so.
    pub(super) fn on_death(&mut self, vtid: u32, w: Waited, index: u64) -> Result<()> {
        if let Some(tid) = self.tasks.get(&vtid).map(|t| t.tid) {
            self.interrupter.clear_if(tid);
        }
        let exit = match w {
            Waited::Exited(code) => Exit { code, signal: 0, task: vtid },
            Waited::Killed(sig) => Exit { code: 0, signal: sig.raw(), task: vtid },
            Waited::Stopped(_) => return Ok(()),
        };
        let got = describe::event(&Event { kind: Some(Kind::Exit(exit.clone())) });
        if self.source.peek_event()?.is_none() && self.source.live() {
            // Past the end of a log that goes on live (an exit_group runs without a stop): the
            // recorder logs this death.
            if let Some(t) = self.tasks.get(&vtid) {
                self.arrived.insert(t.tid, w);
            }
            if self.holder == Some(vtid) {
                self.holder = None;
            }
            return Ok(());
        }
        if let Some(Event { kind: Some(Kind::Exit(e)) }) = self.source.peek_event()? {
            if e.task != vtid && self.tasks.contains_key(&e.task) {
                // A sibling's death is logged first; this one must follow among the exits.
                if self.holder == Some(vtid) {
                    self.holder = None;
                }
                self.early_deaths.insert(vtid, exit);
                return Ok(());
            }
        }
        match self.source.next_event()? {
            Some(Event { kind: Some(Kind::Exit(e)) }) if e.task == vtid && e.status() == exit.status() => {
                self.buried(vtid, &exit);
                Ok(())
            }
            Some(other) => Err(self.diverge(index, describe::event(&other), got)),
            None => Err(self.diverge(index, "the end of the recording".into(), got)),
        }
    }

    pub(super) fn buried(&mut self, vtid: u32, exit: &Exit) {
        let status = exit.status();
        if let Some(b) = self.born.get_mut(&vtid) {
            b.ended = Some((self.source.position(), (exit.code, exit.signal)));
        }
        self.tasks.remove(&vtid);
        if self.holder == Some(vtid) {
            self.holder = None;
        }
        if vtid == 0 {
            self.status0 = Some(status);
        }
    }

    /// The log says a task that is not running died: killed from outside (kill -9 at record), or
    /// by another thread's exit_group (then it is dying already).
    pub(super) fn death_of_idle(&mut self, e: Exit, index: u64) -> Result<()> {
        if let Some(seen) = self.early_deaths.remove(&e.task) {
            self.source.next_event()?;
            if seen.status() != e.status() {
                let got = describe::event(&Event { kind: Some(Kind::Exit(seen)) });
                return Err(self.diverge(index, describe::event(&Event { kind: Some(Kind::Exit(e)) }), got));
            }
            self.buried(e.task, &seen);
            return Ok(());
        }
        let (tid, proc) = {
            let t = self.task(e.task, index)?;
            (t.tid, t.proc)
        };
        if self.exec_running.contains(&proc) {
            // Ended by another thread's execve: it dies from whatever stop it is in (SIGKILL),
            // and must not run on meanwhile.
            self.take_state(e.task);
            loop {
                match self.wait_tid(tid)? {
                    Waited::Stopped(_) => {}
                    w => return self.on_death(e.task, w, index),
                }
            }
        }
        if e.signal != 0 {
            if let Some(sig) = Sig::new(e.signal) {
                let _ = send_signal(tid, sig);
            }
        }
        if let RState::Parked(p) | RState::CloneParked(p) = self.take_state(e.task) {
            // Keep a killed task from running its syscall.
            let mut regs = p.regs;
            regs.skip_with(-i64::from(libc::EINTR));
            let _ = p.t.set_regs(&regs);
            let _ = p.t.cont(None);
        }
        loop {
            match self.wait_tid(tid)? {
                Waited::Stopped(s) => {
                    let sig = match s.stop {
                        Stop::Signal(sig) => Some(sig),
                        _ => None,
                    };
                    let _ = s.cont(sig);
                }
                w => return self.on_death(e.task, w, index),
            }
        }
    }

    pub(super) fn on_stop(&mut self, vtid: u32, t: Stopped) -> Result<()> {
        if self.interrupter.is(t.pid()) {
            match t.stop {
                // A probe's SIGSTOP that came after the probe was over: not the program's.
                Stop::Signal(Sig::SIGSTOP) => {
                    self.interrupter.clear();
                    t.cont(None)?;
                    return Ok(());
                }
                Stop::Seccomp => return Ok(let_interrupt_in(t)?),
                _ => {}
            }
        }
        match t.stop {
            Stop::Seccomp => self.on_syscall(vtid, t),
            Stop::Signal(sig) => self.on_signal(vtid, t, sig),
            Stop::SyscallExit | Stop::Exec | Stop::NewTask(_) | Stop::Event(_) => {
                t.cont(None)?;
                Ok(())
            }
        }
    }
}
