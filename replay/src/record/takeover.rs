//! Taking over at go-live: a recorder built from a replay's [`crate::handover::Handover`], which
//! goes on recording the program from where the log ended.

use super::*;

/// Goes on recording the tasks of a replay that reached the end of the committed log.
pub(crate) fn continue_live(
    h: Handover,
    data_dir: Option<&Path>,
    sink: &mut dyn EventSink,
    log: &Logger,
) -> Result<Outcome> {
    let mut rec = Recorder::new(sink, log, data_dir, h.events);
    rec.fds = h.fds;
    rec.last_run = h.last_run;
    rec.next_vtid = h.next_vtid;
    rec.status0 = h.status0;
    rec.clocks = h.clocks;
    rec.interrupter = spin::Interrupter::adopt(h.interrupting);
    if let Some(t) = h.tasks.first() {
        rec.note_private_shm(t.tid);
    }
    let owed: Vec<(Pid, Exit)> = h.quiet.iter().filter_map(|(c, _, e)| Some((*c, e.clone()?))).collect();
    rec.quiet = h.quiet.into_iter().map(|(c, q, _)| (c, q)).collect();
    rec.deferred_real = h.deferred;
    rec.made_real = h.made;
    rec.signalfd_made = !h.shadows.signals.is_empty();
    rec.shadows = h.shadows;
    for (proc, sig, info) in h.resent {
        rec.resent_info.entry((proc, sig)).or_default().push_back(info);
    }
    for (tid, nr, args) in h.restarts {
        if let Some(spec) = lookup(u64::from(nr)) {
            rec.restart_of.insert(tid, (spec, args));
            rec.adopted_restart.insert(tid);
        }
    }
    let first = h.tasks.iter().find(|t| t.vtid == 0).map(|t| t.tid).unwrap_or(Pid::from_raw(0));
    let mut tasks = h.tasks;
    tasks.sort_by_key(|t| t.vtid);
    let mut parked = Vec::new();
    for t in tasks {
        let state = match t.state {
            AdoptedState::Starting => TState::Starting,
            AdoptedState::Idle(s) => {
                rec.ready.push_back(t.tid);
                TState::Ready(s)
            }
            AdoptedState::Fresh(s) => {
                // The task that held the token goes on first, without a switch, as at the
                // followers, where it is still running.
                if Some(t.vtid) == h.holder {
                    rec.ready.push_front(t.tid);
                } else {
                    rec.ready.push_back(t.tid);
                }
                rec.fresh.insert(t.tid);
                TState::Ready(s)
            }
            AdoptedState::Parked(s) => {
                parked.push(s);
                TState::Holding
            }
            AdoptedState::Holding => TState::Holding,
            AdoptedState::Completing { nr, args } => {
                let spec = lookup(nr).ok_or_else(|| SessionError::Unsupported {
                    what: format!("going live with task {} inside unknown syscall {}", t.vtid, nr as i64),
                    why: "only a clone or an execve runs for real at replay".into(),
                })?;
                let fds = rec.fds.get(&t.proc).cloned().unwrap_or_default();
                let action = policy::decide(spec, &args, &fds, false);
                // A clone gets the registers replay rewrote back; a new image starts with its own.
                if spec.special != Special::Exec {
                    rec.restore_args.insert(t.tid);
                }
                TState::InKernel(Pending { spec, args, input: Vec::new(), action })
            }
        };
        if let Some(&n) = h.silent.get(&t.vtid) {
            rec.silent.insert(t.tid, n);
        }
        if !t.pending.is_empty() {
            rec.bouncing.insert(t.tid, t.pending);
        }
        if let Some(args) = t.first_args {
            rec.first_args.insert(t.tid, args);
        }
        rec.tasks.insert(t.tid, Task { vtid: t.vtid, proc: t.proc, state });
    }
    if h.holder.is_none() {
        // As at the followers: a free token goes first to the task that ran last, if it waits.
        if let Some(pid) = rec.tasks.iter().find(|(_, t)| t.vtid == h.last_run).map(|(p, _)| *p) {
            if let Some(i) = rec.ready.iter().position(|p| *p == pid) {
                rec.ready.remove(i);
                rec.ready.push_front(pid);
            }
            // Unless it gave the token up (a parent back from a clone made holding it, whose
            // result ends the log): the followers give it back only at a switch, which the
            // recorder must then log.
            if h.yielded == Some(h.last_run) {
                rec.last_run = u32::MAX;
            }
        }
    }
    for s in parked {
        match rec.resume_in_kernel(s) {
            // Ended meanwhile (another thread's execve): its death is reported by wait.
            Err(SessionError::Trace(e)) if e.is_gone() => {}
            other => other?,
        }
    }
    for (child, exit) in owed {
        rec.quiet_ended(child, &exit);
    }
    for (pid, w) in h.waited {
        rec.on_wait(pid, w)?;
    }
    if rec.status0.is_some() {
        // The log ended between the first process's death and the others'.
        rec.take_down();
    }
    rec.finish(first)
}
