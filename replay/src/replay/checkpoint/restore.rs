//! Restoring a checkpoint: the program launched as replay launches it, its System V segments
//! and processes made again through injected syscalls (`ft_interposer::checkpoint`), replay's
//! bookkeeping taken over, then the log read on from the checkpoint's event. Also which
//! checkpoint a replica starts from, and setting aside one that fails.

use super::*;
/// Replays from the checkpoint in `file`: see the module's documentation.
pub(in crate::replay) fn restore_session<'a>(
    h: &Header,
    source: &'a mut dyn EventSource,
    opts: &ReplayOptions,
    live: Option<GoLive<'_>>,
    debug: Option<&'a mut dyn Debugger>,
    file: &Path,
    log: &Logger,
) -> Result<Outcome> {
    let refuse = |why: String| SessionError::Checkpoint { path: file.to_path_buf(), why };
    let head = read_head(file)?;
    if head.ftexec_version != env!("CARGO_PKG_VERSION") {
        return Err(refuse(format!(
            "it was made by ftexec {}, this is ftexec {}: replay the log from its start, or take checkpoints with this ftexec",
            head.ftexec_version,
            env!("CARGO_PKG_VERSION")
        )));
    }
    if head.log_id != log_id(h) {
        return Err(refuse(format!(
            "it belongs to another recording (of {}), not to this log",
            if head.program.is_empty() { "another program" } else { &head.program }
        )));
    }
    let parts = match take_preloaded(file) {
        Some(p) => p,
        None => snapshot::read(file)?.1,
    };
    let [state, pages, data, shm] = parts.as_slice() else {
        return Err(refuse(format!("it has {} parts, not 4", parts.len())));
    };
    let state: State = serde_json::from_slice(state).map_err(|e| refuse(format!("its state does not decode ({e})")))?;
    let start = match <Event as prost::Message>::decode(state.start.as_slice()) {
        Ok(Event { kind: Some(Kind::Start(s)) }) => s,
        _ => return Err(refuse("its copy of the program's start does not decode".into())),
    };
    if source.position() == 0 {
        match source.next_event()? {
            Some(Event { kind: Some(Kind::Start(s)) }) if s == start => {}
            _ => return Err(refuse("the log does not begin with the program's start it has".into())),
        }
    }
    while source.position() < head.event {
        if source.next_event()?.is_none() {
            return Err(refuse(format!(
                "it is at event {}, but the log has only {} events",
                head.event,
                source.position()
            )));
        }
    }
    let decode_state = |b: &[u8]| {
        <ProcState as prost::Message>::decode(b).map_err(|_| refuse("its process state does not decode".into()))
    };
    let first = state.procs.first().ok_or_else(|| refuse("it has no process".into()))?;
    let proc_state = decode_state(&first.proc_state)?;
    let mut states = HashMap::new();
    for p in &state.procs {
        states.insert(p.proc, decode_state(&p.proc_state)?);
    }
    if !h.data_dir.is_empty() {
        let recorded = PathBuf::from(OsStr::from_bytes(&h.data_dir));
        let dir = opts.data_dir.clone().unwrap_or(recorded);
        snapshot::unpack_dir(data, &dir)?;
    }
    let bind = crate::launch::check_inputs_with(h, opts, false)?;
    let at_random: Option<[u8; 16]> = start.at_random.as_slice().try_into().ok();
    let filter = filter::build()?;
    let vdso = if start.clock_page { Vdso::ClockPage } else { Vdso::Hide };
    let launched = launch(&launch_spec(h, at_random, bind, vdso, Some(&proc_state))?, &filter)?;
    let pid = launched.tracee.pid();
    crate::set_current_tracee(pid.as_raw());
    info!(log, "restoring"; "checkpoint" => %file.display(), "event" => head.event, "pid" => pid.as_raw());
    if !shm.is_empty() {
        let dir = format!("/proc/{}/root{}", pid, ft_interposer::launch::PRIVATE_SHM.to_string_lossy());
        if let Err(e) = snapshot::unpack_dir(shm, Path::new(&dir)) {
            ft_interposer::tracee::kill_and_reap_all([pid]);
            return Err(refuse(format!("restoring the program's /dev/shm failed: {e}")));
        }
    }
    let mut made = Made::default();
    let rebuilt = kernel::sysv::restore(pid.as_raw(), &state.sysv, pages)
        .and_then(|()| kernel::Rebuild::start(launched.tracee, &first.process.memory.vmas))
        .and_then(|b| rebuild_proc(b, &state, 0, pages, &states, pid, &mut made))
        .and_then(|()| kernel::sysv::remove_marked(pid.as_raw(), &state.sysv));
    if let Err(e) = rebuilt {
        ft_interposer::tracee::kill_and_reap_all(made.created.iter().copied().chain([pid]));
        return Err(refuse(format!("restoring it failed: {e}")));
    }
    let stopped = made.tasks;
    let leaders = made.leaders;
    let all_tids: Vec<nix::unistd::Pid> = made.created.clone();
    let mut r = Replayer::new(source, opts, debug, log);
    r.program_data_dir =
        (!h.data_dir.is_empty()).then(|| std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&h.data_dir)));
    if let Some(p) = r.plan.as_mut() {
        p.data_dir = data_dir_view(h, opts);
        p.log_id = log_id(h);
        p.header = prost::Message::encode_to_vec(h);
        p.start.clone_from(&state.start);
        p.next_due = (head.event / p.opts.every.max(1) + 1) * p.opts.every.max(1);
    }
    // Kernel ids of pipes and eventfds are this process's now.
    let mut pipe_ino = HashMap::new();
    let mut event_id = HashMap::new();
    for p in &state.procs {
        let Some(&host) = leaders.get(&p.proc) else { continue };
        for f in &p.process.fds {
            match f.object {
                kernel::Object::Pipe { ino } => {
                    if let Some((new, _)) = ft_interposer::procfs::pipe_of(host.as_raw(), f.fd) {
                        pipe_ino.insert(ino, new);
                    }
                }
                kernel::Object::EventFd { .. } => {
                    if let (Some(old), Some(new)) = (f.event_id, ft_interposer::procfs::eventfd_id(host.as_raw(), f.fd))
                    {
                        event_id.insert(old, new);
                    }
                }
                _ => {}
            }
        }
    }
    let saved_tasks: HashMap<u32, (&SavedTask, u32)> =
        state.procs.iter().flat_map(|p| p.tasks.iter().map(move |t| (t.vtid, (t, p.proc)))).collect();
    let checked = r.load_book(state.book, &pipe_ino, &event_id).and_then(|()| {
        for (v, t) in &stopped {
            let ns_tid = ft_interposer::tracee::ns_pid_uid(t.pid()).map_or(0, |(p, _)| p);
            let want = saved_tasks.get(v).map_or(0, |s| s.0.ns_tid);
            if ns_tid != want || r.ids.get(v).map(|i| i.0) != Some(ns_tid) {
                return Err(refuse(format!(
                    "task {v} was restored as tid {ns_tid} of its namespace, not the checkpoint's {want}"
                )));
            }
        }
        let highest = saved_tasks.values().map(|t| t.0.ns_tid).max().unwrap_or(2);
        if state.last_pid > highest {
            kernel::set_last_pid(pid, state.last_pid).map_err(|e| refuse(e.to_string()))?;
        }
        for p in &state.procs {
            let (Some(host), Some(want)) = (leaders.get(&p.proc), states.get(&p.proc)) else { continue };
            if let Some(d) = state_differs(*host, want) {
                return Err(refuse(format!("the restored state of process {} differs: {d}", p.ns_pid)));
            }
            if kernel::process_group(host.as_raw()) != Some((p.pgid, p.sid)) {
                return Err(refuse(format!(
                    "process {} is in process group {:?} (group, session), the checkpoint's is ({}, {})",
                    p.ns_pid,
                    kernel::process_group(host.as_raw()),
                    p.pgid,
                    p.sid
                )));
            }
        }
        // Children forked at replay are the new processes now.
        for (proc, b) in r.born.iter_mut() {
            if let Some(&host) = leaders.get(proc) {
                b.tid = host;
            }
        }
        Ok(())
    });
    if let Err(e) = checked {
        ft_interposer::tracee::kill_and_reap_all(all_tids);
        return Err(e);
    }
    let mut resume = None;
    for (v, t) in stopped {
        let Some(&(saved, proc)) = saved_tasks.get(&v) else { continue };
        let tid = t.pid();
        let orig = kernel::regs_from_words(&saved.orig_regs);
        let st = match (saved.how, orig) {
            (How::Running, _) => {
                r.holder = Some(v);
                resume = Some((v, t));
                RState::Running
            }
            (How::Idle, _) => RState::Idle(t),
            (How::Parked, Some(regs)) => match lookup(regs.nr()) {
                Some(spec) => RState::Parked(Parked { t, regs, spec, args: regs.args() }),
                None => {
                    ft_interposer::tracee::kill_and_reap_all(all_tids);
                    return Err(refuse(format!("task {v} is parked at syscall {}, which the table lacks", regs.nr())));
                }
            },
            (How::Parked, None) => {
                ft_interposer::tracee::kill_and_reap_all(all_tids);
                return Err(refuse("its registers are malformed".into()));
            }
        };
        r.tasks.insert(v, RTask { tid, proc, state: st, pending: Vec::new() });
    }
    if let Some((v, t)) = resume {
        if let Err(e) = r.resume(v, t) {
            ft_interposer::tracee::kill_and_reap_all(all_tids);
            return Err(e);
        }
    }
    drive(r, live, pid, log)
}

#[derive(Default)]
struct Made {
    tasks: Vec<(u32, Stopped)>,
    leaders: HashMap<u32, nix::unistd::Pid>,
    created: Vec<nix::unistd::Pid>,
}

/// Rebuilds process `s.procs[idx]` in the one `b` injects into (launched fresh, or forked from
/// its parent's rebuild): memory, fds, actions and cwd, group and session, then its children
/// (forked from it, each rebuilt the same way), its credentials, its other threads, and last
/// its leader at its seccomp stop.
fn rebuild_proc(
    mut b: kernel::Rebuild,
    s: &State,
    idx: usize,
    pages: &[u8],
    states: &HashMap<u32, ProcState>,
    program: nix::unistd::Pid,
    made: &mut Made,
) -> std::result::Result<(), CheckpointError> {
    let p = &s.procs[idx];
    let regs_of = |task: &SavedTask| {
        kernel::regs_from_words(&task.orig_regs)
            .ok_or_else(|| CheckpointError::Unsupported("its registers are malformed".into()))
    };
    let Some((leader, others)) = p.tasks.split_first() else {
        return Err(CheckpointError::Unsupported(format!("process {} has no task", p.ns_pid)));
    };
    let ps = states.get(&p.proc).ok_or_else(|| CheckpointError::Unsupported("no process state".into()))?;
    let mine = pages
        .get(p.pages_at as usize..(p.pages_at + p.pages_len) as usize)
        .ok_or_else(|| CheckpointError::Unsupported("its page part is shorter than its processes say".into()))?;
    b.memory(&p.process.memory, mine, &p.kept)?;
    b.fds(&p.process.fds)?;
    b.process(&leader.state.actions, &String::from_utf8_lossy(&ps.cwd), ps.umask, &ps.limits)?;
    b.session(p.ns_pid, p.pgid, p.sid)?;
    for (ci, c) in s.procs.iter().enumerate().filter(|(_, c)| c.parent == Some(p.proc)) {
        let child = b.fork_child(program, c.ns_pid)?;
        made.created.push(child.pid());
        let cb = kernel::Rebuild::adopt(child, &b)?;
        rebuild_proc(cb, s, ci, pages, states, program, made)?;
    }
    b.creds(&ps.uids, &ps.gids, &ps.groups)?;
    for task in others {
        let orig = regs_of(task)?;
        let t = b.spawn_thread(program, Some(task.ns_tid))?;
        made.created.push(t.pid());
        let t = b.place_thread(t, &orig, &task.state, task.how == How::Parked)?;
        made.tasks.push((task.vtid, t));
    }
    let orig = regs_of(leader)?;
    let t = b.finish(&orig, &leader.state, leader.how == How::Parked)?;
    made.leaders.insert(p.proc, t.pid());
    if !made.created.contains(&t.pid()) {
        made.created.push(t.pid());
    }
    made.tasks.push((leader.vtid, t));
    Ok(())
}

/// A checkpoint a replica can start from: its file, head and the recording's header.
pub struct Usable {
    pub path: PathBuf,
    pub head: Head,
    pub header: Header,
}

/// The newest checkpoint in `dir` that is whole (every checksum), of this ftexec, and placed
/// in a replicated log. A damaged one is renamed `*.bad` (kept for a look, never used again)
/// and the next older one is tried.
pub fn newest_usable(dir: &Path, log: &Logger) -> Option<Usable> {
    for (_, path) in files_newest_first(dir) {
        let checked = (|| -> Result<Usable> {
            let head = read_head(&path)?;
            if head.ftexec_version != env!("CARGO_PKG_VERSION") {
                return Err(SessionError::Checkpoint {
                    path: path.clone(),
                    why: format!("made by ftexec {}", head.ftexec_version),
                });
            }
            if head.raft_index == 0 {
                return Err(SessionError::Checkpoint { path: path.clone(), why: "not of a replicated log".into() });
            }
            let (_, parts) = snapshot::read(&path)?;
            let state: State = parts.first().and_then(|s| serde_json::from_slice(s).ok()).ok_or_else(|| {
                SessionError::Checkpoint { path: path.clone(), why: "its state does not decode".into() }
            })?;
            let header = <Header as prost::Message>::decode(state.header.as_slice()).map_err(|_| {
                SessionError::Checkpoint { path: path.clone(), why: "its header does not decode".into() }
            })?;
            *PRELOADED.lock().unwrap_or_else(|e| e.into_inner()) = Some((path.clone(), parts));
            Ok(Usable { path: path.clone(), head, header })
        })();
        match checked {
            Ok(u) => return Some(u),
            Err(e) => {
                slog::warn!(log, "checkpoint unusable, trying an older one"; "file" => %path.display(), "why" => %e);
                set_aside(&path, log);
            }
        }
    }
    None
}

/// The parts of the checkpoint [`newest_usable`] chose, read and checked whole there: the restore
/// that follows takes them instead of reading the file again (for a 100 MB program, a second
/// read, decompression and checksum of every part).
static PRELOADED: std::sync::Mutex<Option<(PathBuf, Vec<Vec<u8>>)>> = std::sync::Mutex::new(None);

/// The preloaded parts if they are `file`'s (taken: the memory goes with the restore).
fn take_preloaded(file: &Path) -> Option<Vec<Vec<u8>>> {
    let mut slot = PRELOADED.lock().unwrap_or_else(|e| e.into_inner());
    match slot.take() {
        Some((path, parts)) if path == file => Some(parts),
        _ => None,
    }
}

/// Drops the parts [`newest_usable`] preloaded, when its choice is not restored (the caller
/// wanted a newer one, or none).
pub fn forget_preloaded() {
    *PRELOADED.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Renames a checkpoint that failed to `*.bad`, so that the next start does not take it again.
pub fn set_aside(path: &Path, log: &Logger) {
    let bad = path.with_extension("bad");
    if let Err(e) = std::fs::rename(path, &bad) {
        slog::warn!(log, "cannot set a bad checkpoint aside"; "file" => %path.display(), "err" => %e);
    }
}
