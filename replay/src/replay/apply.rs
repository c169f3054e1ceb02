//! Applying the log's events at the program's stops: a syscall's logged result and memory
//! injected, run for real and compared, or replaced by a stand-in; clones and execs run for
//! real and checked against their Spawn and Exec events.

use super::*;

impl Replayer<'_> {
    /// Whether the next event is this task's socket syscall that the recorder answered on a
    /// copy of the fd (table `Exec::Copy`), at the seccomp stop, without releasing the token.
    pub(super) fn answered_in_tracer(&mut self, vtid: u32, spec: &Spec, action: Action) -> Result<bool> {
        if !matches!(spec.exec, Exec::Copy(_))
            || !matches!(action, Action::Record { .. } | Action::Output { stdio: None })
        {
            return Ok(false);
        }
        Ok(matches!(
            self.source.peek_event()?,
            Some(Event { kind: Some(Kind::Syscall(s)) }) if s.task == vtid && s.in_tracer && s.nr == spec.nr
        ))
    }

    pub(super) fn next_for(&mut self, vtid: u32) -> Result<(u64, Event)> {
        let index = self.source.position();
        match self.source.next_event()? {
            Some(ev) if ev.task() == Some(vtid) => Ok((index, ev)),
            Some(ev) => Err(self.diverge(index, describe::event(&ev), format!("an event of task {vtid}"))),
            None => Err(SessionError::LogEnded { index }),
        }
    }

    pub(super) fn on_syscall(&mut self, vtid: u32, t: Stopped) -> Result<()> {
        slog::debug!(self.log, "stop"; "task" => vtid, "at" => self.source.position(), "regs" => slog::FnValue(|_| format!("{:?}", t.regs())));
        let Decided { t, mut regs, spec, args, action, silent } = match stop::prelude(self, vtid, t)? {
            Entry::Done => return Ok(()),
            Entry::Unknown { t, .. } => return self.resume(vtid, t),
            Entry::Call(c) => c,
        };
        if let Some(Event { kind: Some(Kind::Patch(p)) }) = self.source.peek_event()? {
            if p.task == vtid && p.silent == silent && p.site.wrapping_add(2) == regs.ip() {
                let (p, index) = (p.clone(), self.source.position());
                self.source.next_event()?;
                if p.page != 0 {
                    ft_interposer::sysbuf::add_page(t, p.page)?;
                    return Ok(());
                }
                self.apply_patch(&t, &mut regs, &p, index)?;
                if self.source.peek_event()?.is_none() {
                    // The log ends with the rewrite: the syscall is the live program's, at this
                    // stop (going live hands the task over here).
                    self.set_state(vtid, RState::Fresh(t));
                    self.holder = None;
                    return Ok(());
                }
            }
        }
        if self.answered_in_tracer(vtid, spec, action)? {
            // The recorder answered it at this stop, holding the token: so does replay.
            let (index, ev) = self.next_for(vtid)?;
            let s = self.check_syscall(&t, spec, &args, index, ev)?;
            let t = self.apply(Parked { t, regs, spec, args }, index, s)?;
            t.cont(None)?;
            return Ok(());
        }
        match action {
            Action::Pass => {}
            Action::Emulate(e) => emulate(&t, &mut regs, e)?,
            Action::Refuse(Refusal::Errno(errno, _)) => {
                regs.skip_with(-i64::from(errno));
                t.set_regs(&regs)?;
            }
            Action::Refuse(Refusal::Unsupported(why)) => {
                let index = self.source.position();
                return Err(self.diverge(
                    index,
                    "a supported syscall".into(),
                    format!("{} ({why})", describe::call(spec, &args)),
                ));
            }
            Action::Record { exec: Exec::Tracer } if tracer_can_run(spec, &args) => {
                let (index, ev) = self.next_for(vtid)?;
                let s = self.check_syscall(&t, spec, &args, index, ev)?;
                let t = self.apply(Parked { t, regs, spec, args }, index, s)?;
                let t = self.at_boundary(vtid, t, &regs, true)?;
                return self.resume(vtid, t);
            }
            _ if action.holds_token() && !stop::may_wait(&t, spec, &args) => {
                let (index, ev) = self.next_for(vtid)?;
                let s = self.check_syscall(&t, spec, &args, index, ev)?;
                let t = self.apply(Parked { t, regs, spec, args }, index, s)?;
                let t = self.at_boundary(vtid, t, &regs, true)?;
                return self.resume(vtid, t);
            }
            Action::Clone => {
                // Released the token at record; the log says whether it created a task.
                self.set_state(vtid, RState::CloneParked(Parked { t, regs, spec, args }));
                self.holder = None;
                return Ok(());
            }
            Action::Exec => {
                // Runs for real, from now on as at record; Exec and the completion events meet
                // its stops.
                let p = Parked { t, regs, spec, args };
                let proc = self.tasks.get(&vtid).map(|t| t.proc);
                if self.tasks.iter().any(|(&v, t)| v != vtid && Some(t.proc) == proc) {
                    self.set_state(vtid, RState::ExecParked(p));
                    self.holder = None;
                    return Ok(());
                }
                p.t.cont_to_exit()?;
                self.set_state(vtid, RState::Executing);
                self.holder = None;
                return Ok(());
            }
            _ => {
                // Released the token at record: wait here for the log to complete it.
                self.set_state(vtid, RState::Parked(Parked { t, regs, spec, args }));
                self.holder = None;
                return Ok(());
            }
        }
        self.resume(vtid, t)
    }

    /// The recording rewrote the syscall site this task stops at into a jump to the syscall
    /// buffer's trampoline (see `ft_libos::sysbuf`): so does replay, with the same bytes, and
    /// the task's syscall returns into the trampoline as it did.
    pub(super) fn apply_patch(
        &mut self,
        t: &Stopped,
        regs: &mut ft_interposer::Regs,
        p: &ft_libos::proto::Patch,
        index: u64,
    ) -> Result<()> {
        let here = format!("a syscall at {:#x}", regs.ip().wrapping_sub(2));
        if regs.ip() != p.site.wrapping_add(2) {
            return Err(self.diverge(index, describe::event(&Event { kind: Some(Kind::Patch(p.clone())) }), here));
        }
        if t.read(p.site, p.before.len())? != p.before {
            return Err(self.diverge(
                index,
                describe::event(&Event { kind: Some(Kind::Patch(p.clone())) }),
                format!("{here} with other code around it"),
            ));
        }
        t.write_forced(p.tramp, &p.tramp_bytes)?;
        t.write_forced(p.site, &p.after)?;
        regs.0.rip = p.resume;
        t.set_regs(regs)?;
        // The syscall's exit (a signal delivered there, a restart, going live) is now there.
        if let Some(call) = self.calls.get_mut(&p.task) {
            call.ip = p.resume;
        }
        Ok(())
    }

    /// Resumes a task from the stop of a syscall it has done (its seccomp stop with the result
    /// in place, or its exit stop), delivering there the signals the recording delivered at that
    /// syscall's exit.
    pub(super) fn resume(&mut self, vtid: u32, t: Stopped) -> Result<()> {
        let silent = self.silent.get(&vtid).copied().unwrap_or(0);
        let at_exit = matches!(
            self.source.peek_event()?,
            Some(Event { kind: Some(Kind::Signal(s)) })
                if s.at_exit && !s.grouped && s.task == vtid && s.silent == silent
        );
        if at_exit {
            return self.deliver_at_exit(vtid, t);
        }
        t.cont(None)?;
        Ok(())
    }

    /// At a stop that consumes an event: the program must have read every clock value the
    /// recording read before this point.
    pub(super) fn check_clock_reads(&mut self, proc: u32, t: &Stopped) -> Result<()> {
        if !self.refilled.remove(&proc) {
            return Ok(());
        }
        match ft_interposer::clock::unread(t)? {
            0 => Ok(()),
            n => Err(self.diverge(
                self.source.position(),
                format!("{n} more clock read(s) through the clock page"),
                "the program went on without them".into(),
            )),
        }
    }

    /// Checks a syscall event against what the task does; returns the event's syscall.
    pub(super) fn check_syscall(
        &self,
        t: &Stopped,
        spec: &Spec,
        args: &[u64; 6],
        index: u64,
        ev: Event,
    ) -> Result<Syscall> {
        let s = match ev.kind {
            Some(Kind::Syscall(s)) if s.nr == spec.nr => s,
            _ => return Err(self.diverge(index, describe::event(&ev), describe::call(spec, args))),
        };
        let got = || describe::call(spec, args);
        if let Some(i) = (0..6).find(|&i| spec.checks_arg(i) && s.args.get(i) != Some(&args[i])) {
            let expected = describe::event(&Event { kind: Some(Kind::Syscall(s.clone())) });
            return Err(self.diverge(index, expected, format!("{} (argument {i} differs)", got())));
        }
        if spec.input != ft_libos::table::Input::None {
            let input = capture::input(t, spec.input, args)?;
            let d = if input.is_empty() { Vec::new() } else { digest::short(&input) };
            if d != s.input_digest {
                let expected = describe::event(&Event { kind: Some(Kind::Syscall(s.clone())) });
                let what = match spec.input {
                    ft_libos::table::Input::Path(_) | ft_libos::table::Input::Paths(..) => {
                        format!("{} on path \"{}\" (a different path)", got(), String::from_utf8_lossy(&input))
                    }
                    _ => format!("{} with different data", got()),
                };
                return Err(self.diverge(index, expected, what));
            }
        }
        Ok(s)
    }

    /// The completion event of a parked task's syscall.
    pub(super) fn complete(&mut self, p: Parked, index: u64, s: Syscall) -> Result<Stopped> {
        let s = self.check_syscall(&p.t, p.spec, &p.args, index, Event { kind: Some(Kind::Syscall(s)) })?;
        self.apply(p, index, s)
    }

    /// A clone or exec that ran for real completes: the parent gets the recorded result.
    pub(super) fn finish_executing(&mut self, s: Syscall, index: u64) -> Result<Stopped> {
        let (tid, proc) = {
            let t = self.task(s.task, index)?;
            (t.tid, t.proc)
        };
        // An execve that failed ended no thread.
        self.exec_running.remove(&proc);
        let t = match self.wait_tid(tid)? {
            Waited::Stopped(t) if t.stop == Stop::SyscallExit => t,
            Waited::Stopped(t) => {
                return Err(self.diverge(
                    index,
                    describe::event(&Event { kind: Some(Kind::Syscall(s)) }),
                    format!("{:?}", t.stop),
                ))
            }
            w => {
                let expected = describe::event(&Event { kind: Some(Kind::Syscall(s)) });
                let got = match w {
                    Waited::Killed(sig) => format!("death by {sig}"),
                    _ => "an exit".into(),
                };
                return Err(self.diverge(index, expected, got));
            }
        };
        let mut regs = t.regs()?;
        if let Some(args) = self.clone_args.remove(&s.task) {
            regs.set_args(&args);
        }
        if s.disposition() == Disposition::Execute && regs.ret() != s.ret {
            let expected = describe::event(&Event { kind: Some(Kind::Syscall(s)) });
            return Err(self.diverge(index, expected, format!("a result of {}", regs.ret())));
        }
        regs.set_ret(s.ret);
        t.set_regs(&regs)?;
        Ok(t)
    }

    /// Spawn: the parent's running clone created the child, which gets its number.
    pub(super) fn spawn(&mut self, sp: Spawn, index: u64) -> Result<()> {
        let parent_tid = self.task(sp.parent, index)?.tid;
        if !matches!(self.tasks.get(&sp.parent).map(|t| &t.state), Some(RState::Executing)) {
            return Err(self.diverge(
                index,
                format!("task {} creating task {}", sp.parent, sp.child),
                "no clone".into(),
            ));
        }
        self.source.next_event()?;
        let child = match self.wait_tid(parent_tid)? {
            Waited::Stopped(s) => match s.stop {
                Stop::NewTask(child) => {
                    s.cont_to_exit()?;
                    child
                }
                other => {
                    return Err(self.diverge(
                        index,
                        format!("task {} creating a task", sp.parent),
                        format!("{other:?}"),
                    ))
                }
            },
            w => return self.on_death(sp.parent, w, index),
        };
        let parent_proc = self.tasks.get(&sp.parent).map(|t| t.proc).unwrap_or(0);
        let proc = if sp.thread { parent_proc } else { sp.child };
        if !sp.thread {
            let table = self.fds.get(&parent_proc).cloned().unwrap_or_default();
            self.fds.insert(sp.child, table);
            let socks = self.sockets.get(&parent_proc).cloned().unwrap_or_default();
            self.sockets.insert(sp.child, socks);
            let files = self.files.get(&parent_proc).cloned().unwrap_or_default();
            self.files.insert(sp.child, files);
            self.clocks.fork(parent_proc, sp.child);
            match ft_interposer::tracee::ns_pid_uid(child) {
                Some((ns_pid, uid)) => {
                    self.born.insert(sp.child, Born { tid: child, ns_pid, uid, parent: parent_proc, ended: None });
                }
                None => slog::warn!(self.log, "no pid namespace entry for a forked child"; "task" => sp.child),
            }
        }
        self.max_vtid = self.max_vtid.max(sp.child);
        if let Some(args) = self.clone_args.get(&sp.parent).copied() {
            self.clone_args.insert(sp.child, args);
        }
        let ns_tid = ft_interposer::tracee::ns_pid_uid(child).map_or(0, |(p, _)| p);
        self.ids.insert(sp.child, (ns_tid, proc));
        self.tasks.insert(sp.child, RTask { tid: child, proc, state: RState::Starting, pending: Vec::new() });
        if let Some(st) = self.states.get(&sp.parent).cloned() {
            self.states.insert(sp.child, st);
        }
        Ok(())
    }

    /// Exec: the task's running execve replaced its image; check the image, restore AT_RANDOM.
    pub(super) fn exec(&mut self, ex: ExecEvent, index: u64) -> Result<()> {
        let (mut tid, proc) = {
            let t = self.task(ex.task, index)?;
            (t.tid, t.proc)
        };
        if !matches!(self.tasks.get(&ex.task).map(|t| &t.state), Some(RState::Executing)) {
            return Err(self.diverge(
                index,
                describe::event(&Event { kind: Some(Kind::Exec(ex)) }),
                "no execve".into(),
            ));
        }
        self.source.next_event()?;
        // An execve deletes the process's POSIX timers.
        self.posix_timers.retain(|(p, _), _| *p != proc);
        let mut vtid = ex.task;
        if proc != ex.task {
            // A thread other than the leader: as at record, it becomes the leader (its tid and
            // its task number); the kernel ends the other threads, whose deaths the log has,
            // except the leader's, which is never reported.
            let leader_tid = self.task(proc, index)?.tid;
            tid = self.leader_exec_stop(leader_tid)?;
            if let Some(mut t) = self.tasks.remove(&ex.task) {
                if let Some(old) = self.tasks.remove(&proc) {
                    t.pending.extend(old.pending);
                }
                if self.holder == Some(proc) {
                    self.holder = None;
                }
                t.tid = tid;
                self.tasks.insert(proc, t);
            }
            self.early_deaths.remove(&proc);
            if let Some(n) = self.silent.remove(&ex.task) {
                self.silent.insert(proc, n);
            }
            vtid = proc;
        }
        self.exec_running.remove(&proc);
        let at_random: Option<[u8; 16]> = ex.at_random.as_slice().try_into().ok();
        match self.wait_tid(tid)? {
            Waited::Stopped(s) if s.stop == Stop::Exec => {
                let exe = std::fs::read_link(format!("/proc/{tid}/exe")).unwrap_or_default();
                if program::hash_file(&exe).ok().as_deref() != Some(&ex.exe_hash[..]) {
                    return Err(SessionError::Mismatch {
                        what: format!(
                            "the program {} that the recording executed",
                            String::from_utf8_lossy(&ex.exe_path)
                        ),
                        detail: format!("{} here is missing or different; replay needs the same binary", exe.display()),
                    });
                }
                let vdso = if ex.clock_page { Vdso::ClockPage } else { Vdso::Hide };
                let sp = ft_interposer::launch::after_exec(&s, at_random, vdso)?.sp;
                if sp != ex.sp {
                    return Err(self.diverge(index, format!("a stack at {:#x} after exec", ex.sp), format!("{sp:#x}")));
                }
                self.clocks.exec(proc, ex.clock_page);
                self.refilled.remove(&proc);
                if let Some(st) = ex.state.clone() {
                    if let Some(d) = state_differs(tid, &st) {
                        let expected = describe::event(&Event { kind: Some(Kind::Exec(ex)) });
                        return Err(self.diverge(
                            index,
                            expected,
                            format!("a process state that differs after the exec: {d}"),
                        ));
                    }
                    self.note_state(vtid, st);
                }
                s.cont_to_exit()?;
            }
            Waited::Stopped(s) => {
                return Err(self.diverge(
                    index,
                    describe::event(&Event { kind: Some(Kind::Exec(ex)) }),
                    format!("{:?}", s.stop),
                ))
            }
            w => return self.on_death(vtid, w, index),
        }
        Ok(())
    }

    /// Waits for the exec stop that a non-leader thread's execve reports on the leader's tid,
    /// and leaves it to be collected again. Stops of the old leader thread collected earlier
    /// are dropped: that thread is gone.
    pub(super) fn leader_exec_stop(&mut self, leader_tid: Pid) -> Result<Pid> {
        loop {
            match self.wait_tid(leader_tid)? {
                Waited::Stopped(s) if s.stop == Stop::Exec => {
                    self.arrived.insert(leader_tid, Waited::Stopped(s));
                    return Ok(leader_tid);
                }
                Waited::Stopped(_) => {}
                w => {
                    self.arrived.insert(leader_tid, w);
                    return Ok(leader_tid);
                }
            }
        }
    }

    /// Applies a syscall event to a task at its seccomp stop; returns it stopped (not resumed).
    pub(super) fn apply(&mut self, p: Parked, index: u64, s: Syscall) -> Result<Stopped> {
        let Parked { t, mut regs, spec, args } = p;
        let args = &args;
        let vtid = s.task;
        if s.ret != ft_libos::signal::ERESTART_RESTARTBLOCK {
            self.restarts.remove(&vtid);
        } else if spec.special != Special::RestartSyscall {
            self.restarts.insert(vtid, (spec.nr, *args));
        }
        self.note_signal_syscall(&t, vtid, spec, args, s.ret);
        self.note_itimer(&t, vtid, spec, args, s.ret)?;
        self.ipc.note(&t, spec, args, s.ret);
        // Pipes, socketpairs and eventfds the program made (not its inherited stdio, not its
        // sockets): see `pipes`, `socketpairs` and `eventfds`.
        let proc = self.tasks.get(&vtid).map_or(0, |t| t.proc);
        let socket = self.sockets.get(&proc).is_some_and(|m| m.contains_key(&(args[0] as i32)));
        if s.disposition() == Disposition::Inject
            && s.ret > 0
            && !socket
            && self.fds_of(vtid).kind(args[0] as i64) == FdKind::External
        {
            if !self.pipes.is_empty() || !self.socketpairs.is_empty() {
                self.follow_pipes(&t, spec, args, s.ret as usize)?;
            }
            self.follow_eventfd(&t, spec, args, s.ret)?;
        }
        let t = match s.disposition() {
            Disposition::Inject if ft_libos::signal::is_restart(s.ret) => {
                // At record the kernel restarted this syscall after a signal (the program never
                // saw the code): rewind to the syscall instruction; the next event is the restart.
                // What the kernel wrote before it stopped (nanosleep's time left) is the program's.
                regs.skip_with(ft_libos::signal::restarted_nr(s.ret, spec.nr));
                regs.rewind();
                t.set_regs(&regs)?;
                self.put_mem(&t, &s, false)?;
                t
            }
            Disposition::Inject => {
                let proc = self.tasks.get(&vtid).map(|t| t.proc);
                let reaped = spec.task.wait.and_then(|w| ft_libos::wait::reaped(w, args, s.ret, &s.mem));
                let quiet = reaped.and_then(|pid| {
                    self.born.iter().find(|(_, b)| b.ns_pid == pid && Some(b.parent) == proc).map(|(v, b)| (*v, *b))
                });
                let t = match quiet {
                    Some((child, b)) => self.reap_born(t, regs, child, b, index)?,
                    None => t,
                };
                let t = if spec.fds.creates == NewFd::Rights && !s.new_fds.is_empty() {
                    self.received_stand_ins(t, &s, index)?
                } else {
                    t
                };
                let t = self.advance_input(t, regs, vtid, spec, args, s.ret, index)?;
                regs.skip_with(s.ret);
                t.set_regs(&regs)?;
                self.put_mem(&t, &s, false)?;
                if (s.stdio_fd == 1 || s.stdio_fd == 2) && !s.stdio.is_empty() {
                    self.stdio_out[s.stdio_fd as usize - 1] += s.stdio.len() as u64;
                    if self.print {
                        write_stdio(s.stdio_fd, &s.stdio)?;
                    }
                }
                t
            }
            Disposition::Placeholder => {
                let cloexec = s.new_fds.first().is_some_and(|f| f.cloexec);
                // A directory outside the data directory is opened for real, read-only.
                let directory = s.new_fds.first().is_some_and(|f| f.kind() == FdKind::Directory);
                let (nr, a) = spec.fds.stand_in(spec.nr, args, cloexec, directory);
                let entry = regs;
                regs.rewrite(nr as u64, &a);
                t.set_regs(&regs)?;
                let t = self.run_to_exit(t, index)?;
                let made = t.regs()?.ret();
                // The fds the kernel gave here, and the ones the recording has.
                let got: Vec<i32> = match spec.fds.creates {
                    NewFd::Pair(p) if made == 0 => t
                        .read(args[p as usize], 8)
                        .ok()
                        .map(|b| {
                            vec![
                                i32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                                i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
                            ]
                        })
                        .unwrap_or_default(),
                    NewFd::Pair(_) => Vec::new(),
                    _ if made >= 0 => vec![made as i32],
                    _ => Vec::new(),
                };
                let want: Vec<i32> = s.new_fds.iter().map(|f| f.fd).collect();
                let renumbered = got.len() == want.len() && !got.is_empty() && got != want;
                let (t, ok) = if renumbered {
                    // Allocated in another order than at record (another thread closed or
                    // created an fd while this syscall was in the kernel there): the program's
                    // fds go to the recording's numbers.
                    let moves: Vec<(i32, i32, bool)> =
                        got.iter().zip(&s.new_fds).map(|(&g, f)| (g, f.fd, f.cloexec)).collect();
                    (self.renumber(t, entry, &moves, index)?, true)
                } else {
                    (t, got == want && (made == s.ret || matches!(spec.fds.creates, NewFd::Pair(_))))
                };
                if !ok {
                    return Err(self.diverge(
                        index,
                        format!("new fd(s) {:?}", s.new_fds.iter().map(|f| f.fd).collect::<Vec<_>>()),
                        match spec.fds.creates {
                            NewFd::Pair(_) => format!("a placeholder pair that the kernel did not give those numbers (pipe2 returned {made}): the fd table differs"),
                            _ => format!("a placeholder at fd {made}: the fd table differs"),
                        },
                    ));
                }
                // The program sees its own arguments again (the kernel preserves them).
                let mut regs = t.regs()?;
                regs.set_args(args);
                if renumbered {
                    // At the syscall's seccomp stop again: skipped, with the recorded result.
                    regs.skip_with(s.ret);
                } else {
                    regs.set_ret(s.ret);
                }
                t.set_regs(&regs)?;
                self.put_mem(&t, &s, false)?;
                t
            }
            Disposition::Execute
                if s.ret < 0 && !ft_libos::signal::is_restart(s.ret) && crate::stop::may_wait(&t, spec, args) =>
            {
                // A semop or msgrcv that waited at record and failed (its timeout ran out, a
                // signal came, the set went away) did nothing. Run here, where the program's
                // other tasks are not where they were when it gave up (replay does not wait
                // for a timeout), it could succeed: its failure is given instead.
                regs.skip_with(s.ret);
                t.set_regs(&regs)?;
                t
            }
            Disposition::Execute => {
                let entry = regs;
                let t = self.run_to_exit(t, index)?;
                let mut ret = t.regs()?.ret();
                let single = matches!(spec.fds.creates, NewFd::Ret | NewFd::Dup(_) | NewFd::DupCmd);
                let t = match s.new_fds.as_slice() {
                    [f] if single && ret >= 0 && ret != s.ret && i64::from(f.fd) == s.ret => {
                        // As for a placeholder: the recording's number (a file of the data
                        // directory opened while another thread's accept was in the kernel).
                        let t = self.renumber(t, entry, &[(ret as i32, f.fd, f.cloexec)], index)?;
                        ret = s.ret;
                        let mut r = t.regs()?;
                        r.skip_with(ret);
                        t.set_regs(&r)?;
                        t
                    }
                    _ => t,
                };
                if !s.file_hash.is_empty() {
                    self.verify_file(&t, ret, &s)?;
                }
                if ret != s.ret {
                    let expected = describe::event(&Event { kind: Some(Kind::Syscall(s.clone())) });
                    return Err(self.diverge(index, expected, format!("{} = {ret}", describe::call(spec, args))));
                }
                if let Some(st) = &s.state {
                    // A syscall that changes process state (cwd, credentials, ...) ran here as at
                    // record: the state it left must be the recording's.
                    if let Some(d) = state_differs(t.pid(), st) {
                        let expected = describe::event(&Event { kind: Some(Kind::Syscall(s.clone())) });
                        return Err(self.diverge(
                            index,
                            expected,
                            format!("{} leaving another process state: {d}", describe::call(spec, args)),
                        ));
                    }
                    self.note_state(vtid, st.clone());
                }
                if !s.out_digest.is_empty() {
                    let mut regions = capture::regions(&t, spec.writes, args, ret)?;
                    regions.extend(capture::regions(&t, fcntl_writes(spec, args), args, ret)?);
                    let got = capture::digest_writes(&capture::read_regions(&t, &regions)?);
                    if got != s.out_digest {
                        let expected = describe::event(&Event { kind: Some(Kind::Syscall(s.clone())) });
                        return Err(self.diverge(
                            index,
                            expected,
                            format!(
                                "{} returning different data (replicated state differs)",
                                describe::call(spec, args)
                            ),
                        ));
                    }
                }
                t
            }
            Disposition::ExecuteInject => {
                let t = self.run_to_exit(t, index)?;
                let mut regs = t.regs()?;
                regs.set_ret(s.ret);
                t.set_regs(&regs)?;
                t
            }
            Disposition::AnonMap => {
                let mut a = *args;
                a[3] = ((a[3] as i32 & !0x3) | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
                a[4] = u64::MAX;
                a[5] = 0;
                regs.rewrite(u64::from(spec.nr), &a);
                t.set_regs(&regs)?;
                let t = self.run_to_exit(t, index)?;
                let ret = t.regs()?.ret();
                if ret != s.ret {
                    let expected = describe::event(&Event { kind: Some(Kind::Syscall(s.clone())) });
                    return Err(self.diverge(index, expected, format!("an anonymous mapping at {ret:#x}")));
                }
                let mut regs = t.regs()?;
                regs.set_args(args);
                t.set_regs(&regs)?;
                self.put_mem(&t, &s, true)?;
                t
            }
        };
        let proc = self.tasks.get(&vtid).map_or(0, |t| t.proc);
        for nf in &s.new_fds {
            self.fds_of(vtid).set(nf.fd, nf.kind());
            self.pidfds.remove(&(proc, nf.fd));
        }
        if let (Object::PidFd { pid }, true) = (spec.fds.object, s.ret >= 0) {
            self.pidfds.insert((proc, s.ret as i32), args[usize::from(pid)] as i32);
        }
        self.follow_sockets(&t, vtid, spec, args, &s)?;
        self.follow_files(&t, vtid, spec, args, &s)?;
        self.follow_new_pipes_and_eventfds(&t, spec, args, &s);
        self.follow_timers(&t, vtid, spec, args, s.ret)?;
        self.follow_signalfd_read(&t, vtid, spec, args, s.ret);
        self.follow_watches(&t, spec, args, s.ret)?;
        Ok(t)
    }

    /// The log says this wait reaped `b`, a child forked at replay: reaps it for real (wait4 with
    /// `__WALL | WNOHANG` in its place; the log's result and writes are put in afterwards), so
    /// that it is not left for a wait of the program after going live.
    pub(super) fn reap_born(
        &mut self,
        t: Stopped,
        regs: ft_interposer::Regs,
        child: u32,
        b: Born,
        index: u64,
    ) -> Result<Stopped> {
        let mut r = regs;
        let opts = ft_libos::wait::WALL | libc::WNOHANG as u64;
        r.rewrite(libc::SYS_wait4 as u64, &[i64::from(b.ns_pid) as u64, 0, opts, 0, 0, 0]);
        t.set_regs(&r)?;
        let t = self.run_to_exit(t, index)?;
        let got = t.regs()?.ret();
        if got != i64::from(b.ns_pid) {
            // Its exit came before this wait in the log, so it is a zombie here: left, it would
            // be reaped a second time after going live.
            return Err(self.diverge(
                index,
                format!("a wait that reaps child {} (task {child})", b.ns_pid),
                format!("wait4({}, __WALL|WNOHANG) = {got} here", b.ns_pid),
            ));
        }
        self.born.remove(&child);
        Ok(t)
    }

    /// A sendfile or copy_file_range that read its input at the input's file position (no
    /// offset pointer) moved that position at record. Where the input is real at replay (a
    /// data directory or verified file), later reads of it run for real: the position moves
    /// here too, with an lseek in the syscall's place.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn advance_input(
        &mut self,
        t: Stopped,
        regs: ft_interposer::Regs,
        vtid: u32,
        spec: &Spec,
        args: &[u64; 6],
        ret: i64,
        index: u64,
    ) -> Result<Stopped> {
        let Special::FdToFd { input, offset } = spec.special else { return Ok(t) };
        let fd = args[usize::from(input)];
        if ret <= 0 || args[usize::from(offset)] != 0 || !self.fds_of(vtid).is_replicated(fd as i32 as i64) {
            return Ok(t);
        }
        let mut r = regs;
        r.rewrite(libc::SYS_lseek as u64, &[fd, ret as u64, libc::SEEK_CUR as u64, 0, 0, 0]);
        t.set_regs(&r)?;
        let t = self.run_to_exit(t, index)?;
        let got = t.regs()?.ret();
        if got < 0 {
            return Err(self.diverge(
                index,
                format!("{} moving fd {fd}'s position by {ret}", spec.name),
                format!("lseek = {got}"),
            ));
        }
        Ok(t)
    }

    /// Runs the syscall to its exit stop.
    pub(super) fn run_to_exit(&mut self, t: Stopped, index: u64) -> Result<Stopped> {
        let pid = t.pid();
        t.cont_to_exit()?;
        match self.wait_tid(pid)? {
            Waited::Stopped(s) if s.stop == Stop::SyscallExit => Ok(s),
            Waited::Stopped(s) => Err(SessionError::Trace(ft_interposer::TraceError::Unexpected {
                pid,
                what: format!("{:?} instead of a syscall exit", s.stop),
            })),
            Waited::Exited(code) => {
                Err(self.diverge(index, "a syscall result".into(), format!("an exit with status {code}")))
            }
            Waited::Killed(sig) => Err(self.diverge(index, "a syscall result".into(), format!("death by {sig}"))),
        }
    }

    pub(super) fn put_mem(&self, t: &Stopped, s: &Syscall, forced: bool) -> Result<()> {
        for m in &s.mem {
            let r = if forced { t.write_forced(m.addr, &m.data) } else { t.write(m.addr, &m.data) };
            match r {
                Ok(()) => {}
                Err(e) if e.is_gone() => return Err(e.into()),
                // The page is gone or read-only in the replayed process: a divergence the next
                // checked event will show; the kernel could not have written there either.
                Err(_) => {}
            }
        }
        Ok(())
    }

    pub(super) fn verify_file(&self, t: &Stopped, fd: i64, s: &Syscall) -> Result<()> {
        let path = String::from_utf8_lossy(&s.path).into_owned();
        let hash =
            if fd >= 0 { program::hash_file(Path::new(&format!("/proc/{}/fd/{fd}", t.pid()))).ok() } else { None };
        if hash.as_deref() != Some(&s.file_hash[..]) {
            return Err(SessionError::Mismatch {
                what: format!("the file {path}"),
                detail: "it was opened by the recorded run and is missing or changed here (a library updated since?); replay needs the same file".into(),
            });
        }
        Ok(())
    }
}

/// Rewrites a parked clone so that the child's exit signal is 0.
pub(super) fn quiet_clone(p: &Parked) -> Result<()> {
    let mut regs = p.regs;
    let mut a = p.args;
    match p.spec.task.clone {
        CloneKind::Clone => a[0] &= !0xff,
        CloneKind::Fork => {
            regs.rewrite(libc::SYS_clone as u64, &[0, 0, 0, 0, 0, 0]);
            return Ok(p.t.set_regs(&regs)?);
        }
        CloneKind::Vfork => {
            let flags = (libc::CLONE_VFORK | libc::CLONE_VM) as u64;
            regs.rewrite(libc::SYS_clone as u64, &[flags, 0, 0, 0, 0, 0]);
            return Ok(p.t.set_regs(&regs)?);
        }
        CloneKind::Clone3 => {
            // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, ...
            p.t.write(a[0] + 32, &0u64.to_le_bytes())?;
            return Ok(());
        }
        CloneKind::None => {}
    }
    regs.rewrite(u64::from(p.spec.nr), &a);
    Ok(p.t.set_regs(&regs)?)
}

pub(super) fn write_stdio(fd: i32, bytes: &[u8]) -> Result<()> {
    let r = if fd == 1 {
        let mut o = std::io::stdout().lock();
        o.write_all(bytes).and_then(|()| o.flush())
    } else {
        std::io::stderr().lock().write_all(bytes)
    };
    match r {
        Ok(()) => Ok(()),
        // The reader went away (replay | head): the program's output is simply not wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(SessionError::Io { what: "write the replayed output".into(), source: e }),
    }
}

impl stop::Side for Replayer<'_> {
    type Task = u32;
    const CLOCK_MODE: u32 = ft_libos::clock::MODE_REPLAY;

    fn proc_of(&self, vtid: u32) -> u32 {
        self.tasks.get(&vtid).map(|t| t.proc).unwrap_or(0)
    }

    fn clock_pages(&mut self) -> &mut ClockPages {
        &mut self.clocks
    }

    /// The clock stub found its buffer empty: it gets the reads the recording made next and
    /// starts over (REFILLED) instead of making its syscall. At any other stop, the program must
    /// have read every clock value the recording read before it.
    fn before_signals(
        &mut self,
        vtid: u32,
        t: Stopped,
        mut regs: ft_interposer::Regs,
    ) -> Result<Option<(Stopped, ft_interposer::Regs)>> {
        let proc = self.proc_of(vtid);
        if self.clocks.used(proc) && ft_interposer::clock::is_stub_syscall(regs.ip(), regs.nr()) {
            if let Some(Event { kind: Some(Kind::Clocks(c)) }) = self.source.peek_event()? {
                if c.task == vtid {
                    let Some(reads) = ft_libos::clock::decode(&c.reads) else {
                        return Err(self.diverge(
                            self.source.position(),
                            "clock reads (the event is damaged)".into(),
                            "a clock read".into(),
                        ));
                    };
                    self.source.next_event()?;
                    ft_interposer::clock::refill(&t, &ft_libos::clock::to_raw(&reads))?;
                    self.refilled.insert(proc);
                    regs.skip_with(0);
                    t.set_regs(&regs)?;
                    t.cont(None)?;
                    return Ok(None);
                }
            }
        }
        self.check_ring(proc, &t)?;
        self.check_clock_reads(proc, &t)?;
        if self.fill_ring(vtid, &t, &mut regs)? {
            t.cont(None)?;
            return Ok(None);
        }
        Ok(Some((t, regs)))
    }

    /// The caught signals the recording delivered just before this syscall (a group sent at
    /// once), consumed from the log.
    fn signals_here(&mut self, vtid: u32, _t: &Stopped, _nr: u64) -> Result<Vec<Held>> {
        let mut group = Vec::new();
        while let Some(Event { kind: Some(Kind::Signal(s)) }) = self.source.peek_event()? {
            if !(s.at_syscall && s.task == vtid && (group.is_empty() || s.grouped)) {
                break;
            }
            let (signo, info) = (s.signo, siginfo_from_bytes(&s.siginfo));
            self.source.next_event()?;
            if let Some(sig) = Sig::new(signo) {
                group.push(Held { sig, info });
            }
        }
        Ok(group)
    }

    fn keep_bouncing(&mut self, vtid: u32, group: Vec<Held>) {
        if let Some(task) = self.tasks.get_mut(&vtid) {
            task.pending.extend(group);
        }
    }

    fn at_call(&mut self, vtid: u32, regs: &ft_interposer::Regs) {
        self.calls.insert(vtid, Call { nr: regs.nr(), ip: regs.ip(), args: regs.args() });
    }

    fn silent(&mut self) -> &mut HashMap<u32, u32> {
        &mut self.silent
    }

    fn fds(&mut self, vtid: u32) -> &FdTable {
        self.fds_of(vtid)
    }
}
