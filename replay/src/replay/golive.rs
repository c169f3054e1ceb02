//! Going live: the committed log is replayed; the stand-ins become real kernel objects and the
//! tasks are handed to a recorder (the go-live contract is [`crate::handover::Handover`]).

use super::*;

impl Replayer<'_> {
    /// The committed log is replayed: make the stand-ins real and hand the tasks to a recorder.
    pub(super) fn go_live(&mut self) -> Result<crate::handover::Handover> {
        use crate::handover::{Adopted, AdoptedState};
        self.check_states()?;
        // One task per process at a seccomp stop injects the syscalls that make its fds real.
        let mut procs: Vec<u32> = self.tasks.values().map(|t| t.proc).collect();
        procs.sort_unstable();
        procs.dedup();
        let mut made = crate::live::MadeReal::new();
        self.refill_pipes(&procs);
        for (ino, p) in self.socketpairs.drain() {
            let [a, b] = p.toward;
            let messages = [Vec::from(a.messages), Vec::from(b.messages)];
            let bytes = [Vec::from(a.queue), Vec::from(b.queue)];
            made.pairs.insert(ino, crate::live::Pair::new(p.domain, p.ty, bytes, messages));
        }
        let mut timers = self.itimers_to_arm();
        let mut posix = self.posix_timers_to_make();
        let mut deferred = HashMap::new();
        for proc in procs {
            let socks = self.sockets.get(&proc).cloned().unwrap_or_default();
            let files = self.files.get(&proc).cloned().unwrap_or_default();
            let pidfds =
                self.pidfds.iter().filter(|((p, _), _)| *p == proc).map(|((_, fd), pid)| (*fd, *pid)).collect();
            let work = crate::live::ProcWork {
                timers: timers.remove(&proc).unwrap_or_default(),
                pidfds,
                posix: posix.remove(&proc).unwrap_or_default(),
            };
            if socks.is_empty()
                && files.is_empty()
                && work.is_empty()
                && self.shadows.is_empty()
                && made.pairs.is_empty()
            {
                continue;
            }
            let Some(v) = self.at_seccomp_stop(proc) else {
                // Its tasks run user code or are inside a clone: the recorder makes its fds real
                // at its first syscall stop, before that syscall runs.
                slog::debug!(
                    self.log,
                    "going live: process {proc} is not at a syscall; its fds are made real at its first"
                );
                deferred.insert(proc, crate::live::Deferred { sockets: socks, files, work });
                continue;
            };
            let log = self.log.clone();
            let shadows = std::mem::take(&mut self.shadows);
            let done = self.in_task(v, |t| crate::live::make_real(t, &socks, &files, &work, &shadows, &mut made, &log));
            self.shadows = shadows;
            done?;
        }
        if deferred.is_empty() {
            made.pairs_done();
        }
        // The clock pages record from now on.
        for proc in self.clocks.ready_procs() {
            // A process inside an execve gets a fresh page, in record mode, in its new image.
            let execs =
                |v: &u32| self.calls.get(v).is_some_and(|c| lookup(c.nr).is_some_and(|s| s.special == Special::Exec));
            let executing = self.exec_running.contains(&proc)
                || self.tasks.iter().any(|(v, t)| t.proc == proc && matches!(t.state, RState::Executing) && execs(v));
            if executing {
                continue;
            }
            if let Some(t) = self.tasks.values().find(|t| t.proc == proc) {
                match ft_interposer::clock::to_record(t.tid) {
                    Err(e) if e.is_gone() => {}
                    other => other?,
                }
                // The syscall buffer traces every call until the recorder approves fds; a ring
                // filled from the log and not served yet is served first (its calls are in the
                // log), and the recorder resets the ring when it turns the handler on.
                if !self.fills.contains_key(&proc) {
                    match ft_interposer::sysbuf::to_off(t.tid) {
                        Err(e) if e.is_gone() => {}
                        other => other?,
                    }
                }
            }
        }
        let resent = self.resend_pending()?;
        let mut tasks = Vec::new();
        let vtids: Vec<u32> = self.tasks.keys().copied().collect();
        for v in vtids {
            let Some(t) = self.tasks.remove(&v) else { continue };
            let state = match t.state {
                RState::Starting => AdoptedState::Starting,
                RState::Idle(s) => AdoptedState::Idle(s),
                RState::Parked(p) | RState::ExecParked(p) | RState::CloneParked(p) => AdoptedState::Parked(p.t),
                RState::Fresh(s) => AdoptedState::Fresh(s),
                RState::Running => AdoptedState::Holding,
                RState::Executing => {
                    // A clone or execve whose Spawn or Exec is logged and its result is not: the
                    // recorder logs the result when it returns (a vfork returns only once its
                    // child has exec'd or ended, so it is not waited for here).
                    let Some(call) = self.calls.get(&v) else {
                        return Err(SessionError::Unsupported {
                            what: format!("going live while task {v} is inside a clone or execve"),
                            why: "replay did not keep the syscall it made".into(),
                        });
                    };
                    let args = self.clone_args.remove(&v).unwrap_or(call.args);
                    AdoptedState::Completing { nr: call.nr, args }
                }
            };
            let first_args = if matches!(state, AdoptedState::Starting) { self.clone_args.remove(&v) } else { None };
            tasks.push(Adopted { tid: t.tid, vtid: v, proc: t.proc, state, pending: t.pending, first_args });
        }
        let mut waited: Vec<(Pid, Waited)> = self.arrived.drain().collect();
        for (v, e) in self.early_deaths.drain() {
            if let Some(a) = tasks.iter().find(|a| a.vtid == v) {
                let w = if e.signal != 0 {
                    Waited::Killed(Sig::new(e.signal).unwrap_or(Sig::SIGKILL))
                } else {
                    Waited::Exited(e.code)
                };
                waited.push((a.tid, w));
            }
        }
        let max_task = tasks.iter().map(|t| t.vtid).max().unwrap_or(0);
        // The children forked at replay that are still there without an exit signal (no execve
        // since); for one that ended, whether the log gave its parent a SIGCHLD after that.
        let quiet = self
            .born
            .values()
            .filter(|b| ft_interposer::tracee::exit_signal(b.tid) == Some(0))
            .map(|b| {
                let q = crate::handover::Quiet { parent: b.parent, ns_pid: b.ns_pid, uid: b.uid };
                let told = |at: u64| {
                    self.source.taken.iter().any(|(pos, task, signo)| {
                        *signo == libc::SIGCHLD && *pos > at && self.ids.get(task).map(|i| i.1) == Some(b.parent)
                    })
                };
                let owed = b.ended.filter(|(at, _)| !told(*at));
                (b.tid, q, owed.map(|(_, (code, signal))| Exit { code, signal, task: 0 }))
            })
            .collect();
        let restarts = self
            .restarts
            .iter()
            .filter_map(|(v, r)| Some((tasks.iter().find(|a| a.vtid == *v)?.tid, r.0, r.1)))
            .collect();
        Ok(crate::handover::Handover {
            tasks,
            fds: std::mem::take(&mut self.fds),
            holder: self.fresh_holder,
            last_run: self.last_run,
            next_vtid: self.max_vtid.max(max_task) + 1,
            events: self.source.position(),
            waited,
            status0: self.status0,
            clocks: std::mem::take(&mut self.clocks),
            silent: std::mem::take(&mut self.silent),
            interrupting: self.interrupter.target(),
            restarts,
            quiet,
            deferred,
            made,
            shadows: std::mem::take(&mut self.shadows),
            yielded: self.yielded,
            resent,
        })
    }

    /// A task of process `proc` at a seccomp stop, where syscalls can be injected (none in a
    /// process whose execve runs: it is losing its other threads).
    pub(super) fn at_seccomp_stop(&self, proc: u32) -> Option<u32> {
        if self.exec_running.contains(&proc) {
            return None;
        }
        self.tasks.iter().find_map(|(v, t)| {
            let at_seccomp = match &t.state {
                RState::Parked(_) | RState::CloneParked(_) | RState::ExecParked(_) => true,
                RState::Fresh(s) | RState::Idle(s) => s.stop == Stop::Seccomp,
                _ => false,
            };
            (t.proc == proc && at_seccomp).then_some(*v)
        })
    }

    /// Runs `f` on task `v` (one [`Self::at_seccomp_stop`] gave), which it returns at the same
    /// stop; the task keeps its state.
    pub(super) fn in_task(&mut self, v: u32, f: impl FnOnce(Stopped) -> Result<Stopped>) -> Result<()> {
        let mut f = Some(f);
        let mut run = |t: Stopped| match f.take() {
            Some(f) => f(t),
            None => Ok(t),
        };
        let state = match self.take_state(v) {
            RState::Parked(p) => run(p.t).map(|t| RState::Parked(Parked { t, ..p })),
            RState::CloneParked(p) => run(p.t).map(|t| RState::CloneParked(Parked { t, ..p })),
            RState::ExecParked(p) => run(p.t).map(|t| RState::ExecParked(Parked { t, ..p })),
            RState::Fresh(s) => run(s).map(RState::Fresh),
            RState::Idle(s) => run(s).map(RState::Idle),
            other => Ok(other),
        }?;
        self.set_state(v, state);
        Ok(())
    }

    /// Before a replica goes live: every task's process state (cwd, credentials, umask, limits,
    /// capabilities) must be the one the log implies; a replica that would serve with another
    /// one stops here instead, naming each difference. Tasks in an execve are skipped (their
    /// state is settled by the Exec event).
    fn check_states(&self) -> Result<()> {
        let mut wrong = Vec::new();
        let mut tasks: Vec<(&u32, &RTask)> = self.tasks.iter().collect();
        tasks.sort_unstable_by_key(|(v, _)| **v);
        for (v, t) in tasks {
            if matches!(t.state, RState::Executing) || self.exec_running.contains(&t.proc) {
                continue;
            }
            let Some(expected) = self.states.get(v) else { continue };
            match ft_interposer::procfs::proc_state(t.tid.as_raw()) {
                Ok(got) => {
                    let d = ft_libos::process::differences(expected, &got);
                    if !d.is_empty() {
                        wrong.push(format!("task {v}: {}", d.join("; ")));
                    }
                }
                // An exiting task (its cwd and files are released before it is reaped) goes
                // live as the exit the recorder reports next.
                Err(why) => slog::debug!(self.log, "going live: task {v} has no readable state: {why}"),
            }
        }
        if wrong.is_empty() {
            return Ok(());
        }
        Err(SessionError::Mismatch {
            what: "the process state this replica would go live with".into(),
            detail: format!("it is not the one the log implies: {}", wrong.join("; ")),
        })
    }
}
