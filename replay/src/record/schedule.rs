//! Record's scheduler: one task holds the token and runs; the others wait at a stop or in the
//! kernel. Stops are taken in the order they come, deaths and execs followed, a task that spins
//! without a stop probed and preempted (see ft_interposer::spin).

use super::*;

impl Recorder<'_> {
    pub(super) fn run(&mut self) -> Result<Outcome> {
        loop {
            // A handed-over task's fresh stop may release the token at once (a blocking
            // syscall): schedule until someone holds it or nobody is ready.
            while self.holder.is_none() && !self.ready.is_empty() {
                self.schedule()?;
            }
            if self.tasks.is_empty() {
                break;
            }
            if self.holder.is_none() {
                self.sink.idle()?;
            }
            let waited = if self.holder.is_some() && (!self.ready.is_empty() || self.holder_has_held()) {
                self.wait_watchdog()
            } else {
                wait_for(None)
            };
            let (pid, waited) = match waited {
                Ok(w) => w,
                Err(ft_interposer::TraceError::Ptrace { source: nix::Error::ECHILD, .. }) => break,
                Err(_) if self.spinning.is_some() => {
                    let (task, waiting) = self.spinning.unwrap_or_default();
                    return Err(SessionError::Unsupported {
                        what: format!(
                            "task {task} ran for {} s without a syscall while {waiting} other task(s) waited to run, and never reached a loop iteration that leaves its registers and memory unchanged",
                            SPIN_LIMIT.as_secs()
                        ),
                        why: "ftexec preempts a thread spinning without syscalls only where it waits (a spin-wait on a flag or a lock); preempting a thread that computes needs a hardware PMU, which this machine lacks (issue #3)"
                            .into(),
                    });
                }
                Err(e) => return Err(e.into()),
            };
            self.progress = std::time::Instant::now();
            self.probed = false;
            let r = self.on_wait(pid, waited);
            if !self.probed {
                self.probing_since = None;
                self.probe_gap = PROBE_GAP;
                self.probe_steps = spin::FIRST_STEPS;
            }
            match r {
                Ok(()) => {}
                // Killed (kill -9) while we handled its stop: its death is reported next.
                Err(SessionError::Trace(e)) if e.is_gone() => {
                    if let Some(t) = self.tasks.get_mut(&pid) {
                        t.state = TState::Holding;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Outcome { status: self.status0.unwrap_or(0), events: self.events })
    }

    /// Waits while other tasks wait for the token (or a caught signal waits for the holder): a
    /// holder that runs for PROBE_GAP without a stop is probed for a fixpoint, where it is
    /// preempted (see [`Recorder::on_interrupt`]). One that runs for SPIN_LIMIT without reaching
    /// one while others wait would starve them (hermit #33): fail with a clear error instead.
    pub(super) fn wait_watchdog(&mut self) -> ft_interposer::Result<(Pid, Waited)> {
        // The syscall buffer's holder is told to stop at its next buffered call (PAUSE) at once
        // for a signal held for it; for tasks waiting for the token, only once it has run
        // PAUSE_AFTER without a stop: the stop does not hand the token over (a blocking call
        // does), it gives the watchdog a point of progress, and at once it made nearly every
        // read of memcached's worker threads a stop.
        let mut paused = false;
        let mut backoff = spin::Backoff::new(std::time::Duration::from_micros(50), std::time::Duration::from_millis(2));
        let mut nap = std::time::Duration::ZERO;
        loop {
            if !paused && (self.holder_has_held() || self.progress.elapsed() >= PAUSE_AFTER) {
                paused = true;
                if let Err(SessionError::Trace(e)) = self.pause_holder() {
                    return Err(e);
                }
            }
            // Woken by the SIGCHLD of the next stop: with several tasks waiting for the token
            // (nginx's workers), a stop that waited out a sleep here cost up to 2 ms.
            if let Some(w) = ft_interposer::tracee::wait_for_within(None, nap)? {
                return Ok(w);
            }
            // A holder in the kernel (a fork copying its memory) is not probed.
            let holder_runs =
                self.holder.and_then(|h| self.tasks.get(&h)).is_some_and(|t| matches!(t.state, TState::Holding));
            let due = holder_runs && self.progress.elapsed() >= self.probe_gap;
            if due && self.interrupter.target().is_none() {
                self.probing_since.get_or_insert(self.progress);
            }
            self.interrupter.tend(self.holder, due)?;
            if !self.ready.is_empty() && self.probing_since.unwrap_or(self.progress).elapsed() > SPIN_LIMIT {
                let task = self.holder.map(|h| self.vtid(h)).unwrap_or(u32::MAX);
                self.spinning = Some((task, self.ready.len()));
                return Err(ft_interposer::TraceError::Unexpected {
                    pid: self.holder.unwrap_or(Pid::from_raw(0)),
                    what: "spinning".into(),
                });
            }
            nap = backoff.nap();
        }
    }

    pub(super) fn holder_has_held(&self) -> bool {
        self.holder.and_then(|h| self.held.get(&h)).is_some_and(|v| !v.is_empty())
    }

    /// The delivery stop of a probe's SIGSTOP: if the holder is at a fixpoint of a spin loop,
    /// it gives up the token there, or takes the caught signals held for it, and the log says
    /// where (Preempt). Otherwise it runs on, and the next probe comes later.
    pub(super) fn on_interrupt(&mut self, s: Stopped) -> Result<()> {
        let pid = s.pid();
        self.probed = true;
        let blocked = s.sigmask()?;
        let deliverable = self.held.get(&pid).is_some_and(|v| v.iter().any(|h| blocked & h.sig.mask_bit() == 0));
        if self.ready.is_empty() && !deliverable {
            // Its held signals are blocked: nothing to do here until it unblocks them.
            self.probe_gap = (self.probe_gap * 2).min(PROBE_GAP_MAX);
            s.cont(None)?;
            return Ok(());
        }
        let (point, t) = match spin::probe_within(s, None, self.probe_steps)? {
            Probe::Fixpoint(point, t) => (point, t),
            Probe::Moving(why, t) => {
                debug!(self.log, "probe: not at a fixpoint"; "task" => self.vtid(pid), "why" => why, "steps" => self.probe_steps);
                self.probe_gap = (self.probe_gap * 2).min(PROBE_GAP_MAX);
                self.probe_steps = (self.probe_steps * 2).min(spin::MAX_STEPS);
                t.cont(None)?;
                return Ok(());
            }
            // A signal came while stepping, or the task died: as any stop of the holder.
            Probe::Other(p, w) => {
                self.probed = false;
                return self.on_wait(p, w);
            }
        };
        let task = self.vtid(pid);
        self.drain_buffers(&t)?;
        let sigs: Vec<Held> = match self.held.get_mut(&pid) {
            Some(v) => {
                let (free, still) = std::mem::take(v).into_iter().partition(|h| blocked & h.sig.mask_bit() == 0);
                *v = still;
                free
            }
            None => Vec::new(),
        };
        let signals = sigs
            .iter()
            .map(|h| Signal {
                signo: h.sig.raw(),
                task,
                siginfo: h.info.as_ref().map(siginfo_to_bytes).unwrap_or_default(),
                ..Default::default()
            })
            .collect();
        debug!(self.log, "preempted at a fixpoint"; "task" => task, "ip" => format!("{:#x}", point.ip), "steps" => point.steps, "signals" => sigs.len());
        self.emit(Kind::Preempt(Preempt {
            task,
            ip: point.ip,
            digest: point.digest.to_vec(),
            steps: point.steps,
            yielded: sigs.is_empty(),
            signals,
        }))?;
        self.exits.remove(&pid);
        self.chain.remove(&pid);
        self.probing_since = None;
        self.probe_gap = PROBE_GAP;
        if sigs.is_empty() {
            self.make_ready(t);
            return Ok(());
        }
        // As at a syscall (bounce): re-sent to this thread, delivered when it resumes.
        for h in sigs {
            let _ = send_signal_to_thread(pid, h.sig);
            self.bouncing.entry(pid).or_default().push(h);
        }
        t.cont(None)?;
        Ok(())
    }

    /// Gives the token to the first ready task; logs the switch.
    pub(super) fn schedule(&mut self) -> Result<()> {
        while let Some(pid) = self.ready.pop_front() {
            let Some(task) = self.tasks.get_mut(&pid) else { continue };
            let TState::Ready(stopped) = std::mem::replace(&mut task.state, TState::Holding) else { continue };
            let vtid = task.vtid;
            self.holder = Some(pid);
            if vtid != self.last_run {
                self.last_run = vtid;
                self.emit(Kind::Run(Run { task: vtid }))?;
            }
            if self.fresh.remove(&pid) {
                return match self.on_holder_stop(stopped) {
                    Err(SessionError::Trace(e)) if e.is_gone() => Ok(()),
                    other => other,
                };
            }
            let waiting = match self.exits.get_mut(&pid) {
                Some(e) => {
                    e.events = self.events;
                    match signal_waiting(&stopped) {
                        Err(e) if e.is_gone() => false,
                        other => other?,
                    }
                }
                None => false,
            };
            match stopped.cont(None) {
                Ok(_) => {}
                Err(e) if e.is_gone() => {}
                Err(e) => return Err(e.into()),
            }
            if waiting {
                // Its delivery stop comes at once: handle it before any other task's stop logs an
                // event, so that replay finds it right after this task's syscall.
                self.wait_own_stop(pid)?;
            }
            return Ok(());
        }
        Ok(())
    }

    /// Waits for the holder's next stop and handles it (see [`signal_waiting`]). Gives up after
    /// SPIN_LIMIT (the holder then runs user code; the main loop collects its stop).
    pub(super) fn wait_own_stop(&mut self, pid: Pid) -> Result<()> {
        let start = std::time::Instant::now();
        let mut backoff = spin::Backoff::new(std::time::Duration::from_micros(10), std::time::Duration::from_millis(2));
        let mut nap = std::time::Duration::ZERO;
        loop {
            if let Some((p, w)) = ft_interposer::tracee::wait_for_within(Some(pid), nap)? {
                self.progress = std::time::Instant::now();
                return match self.on_wait(p, w) {
                    Err(SessionError::Trace(e)) if e.is_gone() => {
                        self.set_state(p, TState::Holding);
                        Ok(())
                    }
                    other => other,
                };
            }
            if start.elapsed() > SPIN_LIMIT || self.holder != Some(pid) {
                return Ok(());
            }
            nap = backoff.nap();
        }
    }

    /// Puts a stopped task in the ready queue.
    pub(super) fn make_ready(&mut self, s: Stopped) {
        let pid = s.pid();
        self.release(pid);
        self.set_state(pid, TState::Ready(s));
        self.ready.push_back(pid);
    }

    pub(super) fn on_wait(&mut self, pid: Pid, waited: Waited) -> Result<()> {
        let s = match waited {
            Waited::Exited(code) => return self.on_death(pid, Exit { code, signal: 0, task: 0 }),
            Waited::Killed(sig) => return self.on_death(pid, Exit { code: 0, signal: sig.raw(), task: 0 }),
            Waited::Stopped(s) => s,
        };
        if s.stop == Stop::Exec {
            let former = s.exec_former_tid()?;
            if former != pid && self.tasks.contains_key(&former) {
                return self.exec_from_thread(s, former);
            }
        }
        let Some(task) = self.tasks.get_mut(&pid) else {
            self.early.insert(pid, s);
            return Ok(());
        };
        match std::mem::replace(&mut task.state, TState::Holding) {
            TState::Starting | TState::Ready(_) => {
                if let Some(args) = self.first_args.remove(&pid) {
                    let mut regs = s.regs()?;
                    regs.set_args(&args);
                    s.set_regs(&regs)?;
                }
                self.make_ready(s);
                Ok(())
            }
            TState::Holding => self.on_holder_stop(s),
            TState::InKernel(p) => self.on_kernel_stop(s, p),
        }
    }

    /// A thread other than the leader completed an execve: the kernel ended the other threads
    /// (their deaths are reported, except the leader's) and gave the exec'ing thread the
    /// leader's tid. It takes the leader's task number too, as replay does at the Exec event,
    /// so the process keeps its task 0 (or its first task) and its exit is still the
    /// program's. The Exec event names the task that called execve.
    pub(super) fn exec_from_thread(&mut self, s: Stopped, former: Pid) -> Result<()> {
        let leader = s.pid();
        let Some(mut task) = self.tasks.remove(&former) else { return Ok(()) };
        let from = task.vtid;
        if self.tasks.remove(&leader).is_some() {
            self.release(leader);
            self.ready.retain(|p| *p != leader);
        }
        let mut held = self.held.remove(&leader).unwrap_or_default();
        held.extend(self.held.remove(&former).unwrap_or_default());
        if !held.is_empty() {
            self.held.insert(leader, held);
        }
        // A probe's SIGSTOP still pending goes with the thread, which now has the leader's tid.
        self.interrupter.moved(former, leader);
        for p in [leader, former] {
            self.bouncing.remove(&p);
            self.exits.remove(&p);
            self.chain.remove(&p);
            self.copier.forget(p);
        }
        if let Some(n) = self.silent.remove(&former) {
            self.silent.insert(leader, n);
        }
        task.vtid = task.proc;
        let TState::InKernel(p) = std::mem::replace(&mut task.state, TState::Holding) else {
            return Err(SessionError::Trace(ft_interposer::TraceError::Unexpected {
                pid: leader,
                what: format!("an exec stop of task {from}, which was not in a syscall"),
            }));
        };
        debug!(self.log, "execve from a thread"; "task" => from, "becomes" => task.vtid, "tid" => former.as_raw(), "leader" => leader.as_raw());
        self.tasks.insert(leader, task);
        self.on_exec(s, p, from)
    }

    pub(super) fn on_death(&mut self, pid: Pid, mut exit: Exit) -> Result<()> {
        let Some(task) = self.tasks.remove(&pid) else { return Ok(()) };
        self.copier.forget(pid);
        self.interrupter.clear_if(pid);
        self.release(pid);
        self.ready.retain(|p| *p != pid);
        self.exits.remove(&pid);
        self.chain.remove(&pid);
        self.restart_of.remove(&pid);
        self.bouncing.remove(&pid);
        self.silent.remove(&pid);
        if let Some(sigs) = self.held.remove(&pid).filter(|v| !v.is_empty()) {
            // Caught signals held for this task until its next syscall, which never came: the
            // kernel chose it for a process-directed signal (SIGINT from a terminal, kill(pid))
            // just before it ended. Send them to the process again so that a thread that lives
            // on takes them, as the kernel would have. (A thread-directed signal to an ending
            // thread is lost natively; it is rerouted too, and the log records where it went.)
            let leader = self.tasks.iter().find(|(_, t)| t.vtid == task.proc).map(|(p, _)| *p);
            let tgid = leader.or((task.vtid == task.proc).then_some(pid));
            if let Some(tgid) = tgid {
                for h in sigs {
                    let _ = send_signal(tgid, h.sig);
                }
            }
        }
        if exit.signal == libc::SIGSYS {
            warn!(self.log, "the program was killed by SIGSYS: it made a syscall of another architecture (32-bit int 0x80 or x32), which the filter refuses");
        }
        exit.task = task.vtid;
        if task.vtid == task.proc {
            self.quiet_ended(pid, &exit);
        }
        let first = task.vtid == 0;
        if first {
            self.status0 = Some(exit.status());
        }
        self.emit(Kind::Exit(exit))?;
        if first {
            self.take_down();
        }
        Ok(())
    }

    /// The program's first process ended: in a PID namespace of its own, its end takes the
    /// namespace down. The tracer kills the others (SIGKILL) instead of the namespace's init, so
    /// that their deaths come after the first one's in the log, at a point the log fixes, and
    /// replay kills them at the same point (a death the kernel timed would race with what they do).
    pub(super) fn take_down(&mut self) {
        let Some(any) = self.tasks.keys().next().copied() else { return };
        let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
        let theirs = ns(&any.as_raw().to_string());
        if theirs.is_none() || theirs == ns("self") {
            // Not in a namespace of its own (the launch fell back to a plain fork): the other
            // processes go on, as they would natively.
            return;
        }
        debug!(self.log, "the program's first process ended: killing the rest of its namespace"; "tasks" => self.tasks.len());
        // Processes that go on with no signal on its way: the program forked into the
        // background and its first process exited (a daemon), which ends it here.
        let running_on: std::collections::BTreeSet<u32> = self
            .tasks
            .iter()
            .filter(|(pid, t)| {
                t.proc != 0 && {
                    let m = crate::stop::status_masks(**pid);
                    (m("SigPnd:") | m("ShdPnd:")) == 0
                }
            })
            .map(|(_, t)| t.proc)
            .collect();
        if self.status0 == Some(0) && !running_on.is_empty() {
            warn!(self.log, "the program's first process exited (status 0) while {} other process(es) of it ran on: they end with it, as in a container. A server that forks into the background and exits must run in the foreground under ftexec (nginx: daemon off; redis: --daemonize no; apache2: -DFOREGROUND)", running_on.len());
        }
        for pid in self.tasks.keys() {
            let _ = send_signal(*pid, Sig::SIGKILL);
        }
    }

    pub(super) fn on_holder_stop(&mut self, s: Stopped) -> Result<()> {
        let pid = s.pid();
        if self.interrupter.is(pid) {
            match s.stop {
                Stop::Signal(Sig::SIGSTOP) => {
                    self.interrupter.clear();
                    return self.on_interrupt(s);
                }
                Stop::Seccomp => return Ok(stop::let_interrupt_in(s)?),
                // The SIGSTOP comes at the next return to user code.
                _ => {}
            }
        }
        if matches!(s.stop, Stop::Seccomp | Stop::Signal(_)) {
            self.drain_buffers(&s)?;
        }
        let after = After { exit: self.exits.remove(&pid), chain: self.chain.remove(&pid) };
        match s.stop {
            Stop::Seccomp => self.on_syscall(s),
            Stop::Signal(sig) => self.on_signal(s, sig, after).map(drop),
            Stop::SyscallExit | Stop::Exec | Stop::NewTask(_) | Stop::Event(_) => {
                s.cont(None)?;
                Ok(())
            }
        }
    }

    /// A stop of a task inside a syscall: its exit, or an event the syscall raised.
    pub(super) fn on_kernel_stop(&mut self, s: Stopped, p: Pending) -> Result<()> {
        let pid = s.pid();
        match s.stop {
            Stop::SyscallExit => {
                self.after_blocking(&s, &p)?;
                self.complete(&s, &p)?;
                self.exits.insert(pid, ExitPoint { regs: s.regs()?, silent: 0, events: self.events });
                let forked_holding = p.action == Action::Clone && self.holder == Some(pid);
                self.make_ready(s);
                if forked_holding {
                    // It gives up the token here, behind the tasks that were ready first (its
                    // child): whoever gets it is named by a Run, even the parent (replay waits
                    // for one after such a fork).
                    self.last_run = u32::MAX;
                }
            }
            Stop::NewTask(child) => {
                let (vtid, proc) = (self.vtid(pid), self.tasks.get(&pid).map(|t| t.proc).unwrap_or(0));
                let thread = is_thread_clone(&s, p.spec, &p.args);
                let child_vtid = self.next_vtid;
                self.next_vtid += 1;
                let child_proc = if thread { proc } else { child_vtid };
                // A new task with a number a quiet child had: that one was reaped.
                self.quiet.remove(&child);
                if !thread {
                    let table = self.fds.get(&proc).cloned().unwrap_or_default();
                    self.fds.insert(child_vtid, table);
                    self.clocks.fork(proc, child_vtid);
                    if let Some(b) = self.bufs.get(&proc).cloned() {
                        self.bufs.insert(child_vtid, b);
                    }
                }
                self.emit(Kind::Spawn(Spawn { parent: vtid, child: child_vtid, thread }))?;
                self.tasks.insert(child, Task { vtid: child_vtid, proc: child_proc, state: TState::Starting });
                if let Some(first) = self.early.remove(&child) {
                    self.make_ready(first);
                }
                s.cont_to_exit()?;
                self.set_state(pid, TState::InKernel(p));
            }
            Stop::Exec => {
                let task = self.vtid(pid);
                return self.on_exec(s, p, task);
            }
            Stop::Signal(sig) => {
                let task = self.vtid(pid);
                if let Some(held) = self.take_bouncing(pid, sig) {
                    // Handed over by a replay that sent it (see `Adopted::pending`).
                    if let Some(info) = held.info {
                        s.set_siginfo(&info)?;
                    }
                    s.cont(Some(sig))?;
                    self.set_state(pid, TState::InKernel(p));
                    return Ok(());
                }
                match disposition(pid, sig) {
                    Handling::NoEffect => s.cont(None)?,
                    Handling::Caught => {
                        let held = Held { sig, info: self.incoming_info(&s, sig) };
                        self.held.entry(pid).or_default().push(held);
                        s.cont(None)?
                    }
                    Handling::Default => {
                        self.emit(Kind::Signal(Signal {
                            signo: sig.raw(),
                            synchronous: false,
                            task,
                            at_syscall: false,
                            ..Default::default()
                        }))?;
                        s.cont(Some(sig))?
                    }
                };
                self.set_state(pid, TState::InKernel(p));
            }
            Stop::Seccomp | Stop::Event(_) => {
                s.cont_to_exit()?;
                self.set_state(pid, TState::InKernel(p));
            }
        }
        Ok(())
    }

    /// The exec stop of `task`'s execve (now running as the task at `s`): log the new image.
    pub(super) fn on_exec(&mut self, s: Stopped, p: Pending, task: u32) -> Result<()> {
        let pid = s.pid();
        // execve gives a child SIGCHLD as its exit signal: the kernel tells its parent now.
        self.quiet.remove(&pid);
        let a = ft_interposer::launch::after_exec(&s, None, Vdso::TryClockPage)?;
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        let exe_hash = program::hash_file(&exe)?;
        // The process of the task now at `pid` (after an execve from a thread, the leader's tid
        // and task number; `task` is the thread that called execve).
        let proc = self.tasks.get(&pid).map(|t| t.proc).unwrap_or(task);
        self.clocks.exec(proc, a.clock_page);
        self.bufs.remove(&proc);
        // The kernel deleted the process's POSIX timers: a go-live deferred to this process's
        // first stop does not make them again (the next id stays).
        if let Some(d) = self.deferred_real.get_mut(&proc) {
            d.work.posix.timers.clear();
        }
        self.emit(Kind::Exec(ExecEvent {
            task,
            exe_path: exe.into_os_string().into_vec(),
            exe_hash,
            at_random: a.at_random.to_vec(),
            sp: a.sp,
            clock_page: a.clock_page,
            state: ft_interposer::procfs::proc_state(pid.as_raw()).ok(),
        }))?;
        s.cont_to_exit()?;
        self.set_state(pid, TState::InKernel(p));
        Ok(())
    }

    /// Runs a handed-over task's syscall in the kernel, without the token (see Parked).
    pub(super) fn resume_in_kernel(&mut self, t: Stopped) -> Result<()> {
        let pid = t.pid();
        let regs = t.regs()?;
        let Some(spec) = lookup(regs.nr()) else {
            return Err(SessionError::Unsupported {
                what: format!("going live with a task parked at unknown syscall {}", regs.nr() as i64),
                why: "it cannot have released the token".into(),
            });
        };
        let args = regs.args();
        let path_local = stop::Side::path_local(self, &t, spec, &args)?;
        let action = policy::decide(spec, &args, self.fds_of(pid), path_local);
        let input = capture::input(&t, spec.input, &args)?;
        if matches!(action, Action::Output { .. }) {
            self.sink.before_output()?;
        }
        self.before_blocking(&t, spec, &args)?;
        t.cont_to_exit()?;
        self.set_state(pid, TState::InKernel(Pending { spec, args, input, action }));
        Ok(())
    }
}
