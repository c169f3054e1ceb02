//! The restore: a fresh (launched or forked) process made into a checkpointed one through
//! injected syscalls.

use super::*;

/// A page-aligned address with `len` free bytes (and a page of room either side) in both
/// layouts, for the restore's scratch page.
pub(super) fn free_gap(a: &[Vma], b: &[Vma], len: u64) -> Option<u64> {
    let mut used: Vec<(u64, u64)> = a.iter().chain(b).map(|v| (v.start, v.end)).collect();
    used.sort_unstable();
    let mut at = 0x1000_0000u64;
    for (s, e) in used {
        if s >= at + len + PAGE {
            return Some(at);
        }
        at = at.max(e + PAGE);
    }
    (at + len < 0x7fff_0000_0000).then_some(at)
}

/// A fresh process being made into a checkpointed one. Injects from a scratch page it maps at
/// an address both layouts leave free; [`Rebuild::finish`] unmaps it.
pub struct Rebuild {
    r: Remote,
    scratch: u64,
}

impl Rebuild {
    /// `t` is the fresh process at its exec stop; `target` the checkpoint's mappings.
    pub fn start(t: Stopped, target: &[Vma]) -> CResult<Rebuild> {
        let pid = t.pid();
        let fresh = maps(pid.as_raw())?;
        let scratch = free_gap(&fresh, target, 4 * PAGE)
            .ok_or_else(|| restore_err("the restore's scratch page", "no free address range"))?;
        // A first injection point: a syscall instruction at the entry point (the exec stop's
        // rax may be overwritten by execve's result: the number is set at the seccomp stop),
        // then the same at the scratch page (the entry's mapping is replaced).
        let mut regs = t.regs()?;
        let entry = regs.ip();
        t.write_forced(entry, &[0x0f, 0x05])?;
        regs.0.rax = TRAP_NR;
        t.set_regs(&regs)?;
        let t = to_seccomp_stop(t)?;
        let mut regs = t.regs()?;
        regs.0.orig_rax = TRAP_NR;
        t.set_regs(&regs)?;
        let mut r = Remote::new(t)?;
        let page = r.call(
            libc::SYS_mmap,
            [
                scratch,
                4 * PAGE,
                (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64,
                u64::MAX,
                0,
            ],
        )?;
        if page as u64 != scratch {
            return Err(restore_err("the restore's scratch page", format!("mmap gave {page:#x}")));
        }
        r.write(scratch, &[0x0f, 0x05])?;
        let t = r.into_stopped().ok_or_else(|| restore_err("the fresh process", "lost during injection"))?;
        let mut regs = t.regs()?;
        regs.skip_with(TRAP_NR as i64);
        regs.0.rip = scratch;
        t.set_regs(&regs)?;
        let t = to_seccomp_stop(t)?;
        Ok(Rebuild { r: Remote::new(t)?, scratch })
    }

    fn call(&mut self, what: &str, nr: i64, args: [u64; 6]) -> CResult<i64> {
        let ret = self.r.call(nr, args)?;
        if (-4095..0).contains(&ret) {
            return Err(restore_err(what, format!("failed with errno {}", -ret)));
        }
        Ok(ret)
    }

    /// A NUL-terminated string at the scratch page's data area.
    fn put_str(&self, s: &str) -> CResult<u64> {
        let mut b = s.as_bytes().to_vec();
        if b.len() >= 4096 {
            return Err(restore_err(format!("path {s}"), "too long"));
        }
        b.push(0);
        let at = self.scratch + PAGE;
        self.r.write(at, &b)?;
        Ok(at)
    }

    fn put(&self, b: &[u8]) -> CResult<u64> {
        let at = self.data();
        self.r.write(at, b)?;
        Ok(at)
    }

    /// Replaces the fresh address space by the checkpoint's: every mapping but the kernel's
    /// and the scratch page goes, the break is set, each mapping is made again (files by path,
    /// their hash checked first) and the kept pages are written.
    /// `kept`: address ranges of shared memory this process already has from its parent (the
    /// fork copied the mapping of the same object): neither unmapped nor written.
    pub fn memory(&mut self, m: &Memory, pages: &[u8], kept: &[(u64, u64)]) -> CResult<()> {
        let is_kept = |a: u64, b: u64| kept.iter().any(|&(s, e)| s <= a && b <= e);
        for f in &m.files {
            let here = self.r.task()?.pid().as_raw();
            let now =
                file_hash(here, &f.path).map_err(|e| restore_err(format!("mapped file {}", f.path), e.to_string()))?;
            if now.blake3 != f.blake3 {
                return Err(restore_err(
                    format!("mapped file {}", f.path),
                    "its content differs from the checkpoint's (every replica needs the same files)",
                ));
            }
        }
        let pid = self.r.task()?.pid().as_raw();
        // The break first, while the fresh heap is there (the kernel shrinks the break only
        // through a mapping: a child forked from a restored parent has the parent's).
        let got = self.r.call(libc::SYS_brk, [m.brk, 0, 0, 0, 0, 0])? as u64;
        if got != m.brk {
            return Err(restore_err("the program break", format!("brk({:#x}) gave {got:#x}", m.brk)));
        }
        let fresh = maps(pid)?;
        for v in &fresh {
            if v.is_kernel() || (v.start >= self.scratch && v.end <= self.scratch + 4 * PAGE) || is_kept(v.start, v.end)
            {
                continue;
            }
            self.call("unmapping the fresh process", libc::SYS_munmap, [v.start, v.len(), 0, 0, 0, 0])?;
        }
        for v in m.vmas.iter().filter(|v| v.is_kernel()) {
            if !fresh.iter().any(|f| f.name == v.name && f.start == v.start && f.end == v.end) {
                return Err(restore_err(
                    format!("the kernel's {} mapping", v.name),
                    format!("it is at {:#x}-{:#x} in the checkpoint, not in a fresh process here", v.start, v.end),
                ));
            }
        }
        for v in &m.vmas {
            if v.is_kernel() || is_kept(v.start, v.end) {
                continue;
            }
            let what = format!("mapping {:#x}-{:#x} {}", v.start, v.end, v.name);
            let share = if v.shared { libc::MAP_SHARED } else { libc::MAP_PRIVATE };
            let fixed = (share | libc::MAP_FIXED) as u64;
            let ret = if v.is_sysv() {
                // The segment (made again before the processes) is attached whole at its first
                // mapping; each mapping then gets its protection.
                if v.offset == 0 {
                    let mut flags = if v.prot & libc::PROT_WRITE == 0 { libc::SHM_RDONLY } else { 0 };
                    if v.prot & libc::PROT_EXEC != 0 {
                        flags |= libc::SHM_EXEC;
                    }
                    let at = self.call(&what, libc::SYS_shmat, [v.inode, v.start, flags as u64, 0, 0, 0])?;
                    if at as u64 != v.start {
                        return Err(restore_err(what, format!("shmat gave {at:#x}")));
                    }
                }
                self.call(&what, libc::SYS_mprotect, [v.start, v.len(), v.prot as u64, 0, 0, 0])?;
                v.start as i64
            } else if v.is_anon() {
                let grows = if v.name == "[stack]" { libc::MAP_GROWSDOWN } else { 0 };
                self.call(
                    &what,
                    libc::SYS_mmap,
                    [v.start, v.len(), v.prot as u64, fixed | (libc::MAP_ANONYMOUS | grows) as u64, u64::MAX, 0],
                )?
            } else {
                let mode = if v.shared && v.prot & libc::PROT_WRITE != 0 { libc::O_RDWR } else { libc::O_RDONLY };
                let path = self.put_str(&v.name)?;
                let fd = self.call(
                    &what,
                    libc::SYS_openat,
                    [libc::AT_FDCWD as i64 as u64, path, (mode | libc::O_CLOEXEC) as u64, 0, 0, 0],
                )?;
                let ret = self.r.call(libc::SYS_mmap, [v.start, v.len(), v.prot as u64, fixed, fd as u64, v.offset]);
                self.r.call(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0])?;
                let ret = ret?;
                if ret < 0 {
                    return Err(restore_err(what, format!("mmap failed with errno {}", -ret)));
                }
                ret
            };
            if ret as u64 != v.start {
                return Err(restore_err(what, format!("mmap gave {ret:#x}")));
            }
        }
        let t = self.r.task()?;
        let mut at = 0usize;
        for run in &m.runs {
            let end = at + run.len as usize;
            let bytes = pages
                .get(at..end)
                .ok_or_else(|| restore_err("the checkpoint's pages", "shorter than its page list says"))?;
            // Page by page where a kept range may cut the run.
            if kept.is_empty() {
                t.write_forced(run.addr, bytes)?;
            } else {
                for (i, page) in bytes.chunks(PAGE as usize).enumerate() {
                    let a = run.addr + i as u64 * PAGE;
                    if !is_kept(a, a + PAGE) {
                        t.write_forced(a, page)?;
                    }
                }
            }
            at = end;
        }
        let now = normalized(&maps(pid)?);
        let differs = |v: &Vma| !now.iter().any(|n| n == v);
        if let Some(v) = normalized(&m.vmas).iter().find(|v| differs(v)) {
            let here: Vec<String> = now
                .iter()
                .filter(|n| n.start < v.end && v.start < n.end)
                .map(|n| format!("{:#x}-{:#x} prot {} {}", n.start, n.end, n.prot, n.name))
                .collect();
            return Err(restore_err(
                "the restored address space",
                format!(
                    "mapping {:#x}-{:#x} prot {} {} is not as in the checkpoint (here: {})",
                    v.start,
                    v.end,
                    v.prot,
                    v.name,
                    here.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// Makes the fds again at their numbers: every fd of the fresh process that is not an
    /// inherited one goes, each object is made and moved to its number, then the epoll
    /// registrations are added.
    pub fn fds(&mut self, fds: &[Fd]) -> CResult<()> {
        let pid = self.r.task()?.pid().as_raw();
        let dir = format!("/proc/{pid}/fd");
        let fresh: Vec<i32> = std::fs::read_dir(&dir)
            .map_err(io(&dir))?
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
            .collect();
        // Objects are made above every target number (and every fresh one), then moved down.
        let park = fds.iter().map(|f| f.fd).chain(fresh.iter().copied()).max().unwrap_or(0) + 1;
        let mut parked: Vec<(i32, i64)> = Vec::new();
        // Files shared with the parent come from the fork's copy of its table, before it goes.
        for f in fds {
            if let Object::Shared { from } = f.object {
                let what = format!("fd {} (the parent's fd {from})", f.fd);
                let dup =
                    self.call(&what, libc::SYS_fcntl, [from as u64, libc::F_DUPFD as u64, park as u64, 0, 0, 0])?;
                parked.push((f.fd, dup));
            }
        }
        for fd in fresh {
            if !fds.iter().any(|f| f.fd == fd && f.object == Object::Inherited) {
                self.call("closing the fresh process's fds", libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0])?;
            }
        }
        let mut pipes: HashMap<u64, (i64, i64)> = HashMap::new();
        for f in fds {
            let what = format!("fd {}", f.fd);
            let made = match &f.object {
                Object::Inherited | Object::Shared { .. } => continue,
                Object::Path(p) => {
                    let path = self.put_str(p)?;
                    let flags = f.flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_CLOEXEC);
                    let fd = self.call(
                        &format!("{what} ({p})"),
                        libc::SYS_openat,
                        [libc::AT_FDCWD as i64 as u64, path, flags as u64, 0, 0, 0],
                    )?;
                    if f.pos != 0 {
                        self.call(&what, libc::SYS_lseek, [fd as u64, f.pos, libc::SEEK_SET as u64, 0, 0, 0])?;
                    }
                    fd
                }
                Object::EventFd { count, semaphore } => {
                    let sem = if *semaphore { libc::EFD_SEMAPHORE } else { 0 };
                    self.call(
                        &what,
                        libc::SYS_eventfd2,
                        [*count, (sem | f.flags & libc::O_NONBLOCK) as u64, 0, 0, 0, 0],
                    )?
                }
                Object::Epoll { .. } => self.call(&what, libc::SYS_epoll_create1, [0; 6])?,
                Object::Pipe { ino } => {
                    let (rd, wr) = match pipes.get(ino) {
                        Some(&p) => p,
                        None => {
                            let at = self.put(&[0u8; 8])?;
                            self.call(&what, libc::SYS_pipe2, [at, 0, 0, 0, 0, 0])?;
                            let b = self.r.read(at, 8)?;
                            let rd = i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64;
                            let wr = i32::from_le_bytes([b[4], b[5], b[6], b[7]]) as i64;
                            pipes.insert(*ino, (rd, wr));
                            (rd, wr)
                        }
                    };
                    let end = if f.flags & libc::O_ACCMODE == libc::O_RDONLY { rd } else { wr };
                    let status = f.flags & (libc::O_NONBLOCK | libc::O_APPEND);
                    let dup =
                        self.call(&what, libc::SYS_fcntl, [end as u64, libc::F_DUPFD as u64, park as u64, 0, 0, 0])?;
                    self.call(&what, libc::SYS_fcntl, [dup as u64, libc::F_SETFL as u64, status as u64, 0, 0, 0])?;
                    parked.push((f.fd, dup));
                    continue;
                }
            };
            let dup = self.call(&what, libc::SYS_fcntl, [made as u64, libc::F_DUPFD as u64, park as u64, 0, 0, 0])?;
            self.call(&what, libc::SYS_close, [made as u64, 0, 0, 0, 0, 0])?;
            parked.push((f.fd, dup));
        }
        for (rd, wr) in pipes.into_values() {
            self.call("a pipe's first ends", libc::SYS_close, [rd as u64, 0, 0, 0, 0, 0])?;
            self.call("a pipe's first ends", libc::SYS_close, [wr as u64, 0, 0, 0, 0, 0])?;
        }
        for &(target, from) in &parked {
            let cloexec = fds.iter().find(|f| f.fd == target).map_or(0, |f| f.flags & libc::O_CLOEXEC);
            self.call(&format!("fd {target}"), libc::SYS_dup3, [from as u64, target as u64, cloexec as u64, 0, 0, 0])?;
            self.call(&format!("fd {target}"), libc::SYS_close, [from as u64, 0, 0, 0, 0, 0])?;
        }
        for f in fds {
            if let Object::Epoll { regs } = &f.object {
                for &(tfd, events, data) in regs {
                    let mut ev = events.to_le_bytes().to_vec();
                    ev.extend_from_slice(&data.to_le_bytes());
                    let at = self.put(&ev)?;
                    self.call(
                        &format!("epoll fd {} registration of fd {tfd}", f.fd),
                        libc::SYS_epoll_ctl,
                        [f.fd as u64, libc::EPOLL_CTL_ADD as u64, tfd as u64, at, 0, 0],
                    )?;
                }
            }
        }
        Ok(())
    }

    /// The process's signal actions, working directory, umask and resource limits.
    pub fn process(&mut self, actions: &[(i32, Vec<u8>)], cwd: &str, umask: u32, limits: &[u64]) -> CResult<()> {
        for (sig, act) in actions {
            let at = self.put(act)?;
            self.call(&format!("the action of signal {sig}"), libc::SYS_rt_sigaction, [*sig as u64, at, 0, 8, 0, 0])?;
        }
        let at = self.put_str(cwd)?;
        self.call(&format!("the working directory {cwd}"), libc::SYS_chdir, [at, 0, 0, 0, 0, 0])?;
        // A child may have set its own (PostgreSQL's postmaster: umask 077), unlike the parent
        // it is forked from here. Before the credentials: raising a limit needs root.
        self.call("the umask", libc::SYS_umask, [u64::from(umask), 0, 0, 0, 0, 0])?;
        let pid = self.r.task()?.pid().as_raw();
        let now = crate::procfs::proc_state(pid).map_err(|why| restore_err("the fresh process's state", why))?;
        for (res, pair) in limits.chunks_exact(2).enumerate() {
            if now.limits.get(res * 2..res * 2 + 2) != Some(pair) {
                let bytes: Vec<u8> = pair.iter().flat_map(|v| v.to_le_bytes()).collect();
                let at = self.put(&bytes)?;
                self.call(&format!("resource limit {res}"), libc::SYS_prlimit64, [0, res as u64, at, 0, 0, 0])?;
            }
        }
        Ok(())
    }

    /// A new thread of the process, at its first stop (SIGSTOP, before any instruction). With
    /// `tid` (as the program sees it), the PID namespace is made to hand out that one.
    pub fn spawn_thread(&mut self, program: nix::unistd::Pid, tid: Option<i32>) -> CResult<Stopped> {
        if let Some(tid) = tid {
            set_last_pid(program, tid - 1)?;
        }
        let flags = libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM;
        let (ret, born) = self.r.call_creating(libc::SYS_clone, [flags as u64, 0, 0, 0, 0, 0])?;
        let child = match born {
            Some(c) if ret > 0 => c,
            _ => return Err(restore_err("a thread", format!("clone gave {ret}"))),
        };
        match crate::tracee::wait_for(Some(child))?.1 {
            crate::Waited::Stopped(s) => Ok(s),
            _ => Err(restore_err("a thread", "it died before its first stop")),
        }
    }

    /// A child process of this one, forked (no exit signal, as replay forks them) with the pid
    /// `pid` (as the program sees it), at its first stop; it has this process's memory, fds and
    /// scratch page until [`Rebuild::adopt`] rebuilds it.
    pub fn fork_child(&mut self, program: nix::unistd::Pid, pid: i32) -> CResult<Stopped> {
        set_last_pid(program, pid - 1)?;
        let (ret, born) = self.r.call_creating(libc::SYS_clone, [0, 0, 0, 0, 0, 0])?;
        let child = match born {
            Some(c) if ret > 0 => c,
            _ => return Err(restore_err(format!("process {pid}"), format!("fork gave {ret}"))),
        };
        match crate::tracee::wait_for(Some(child))?.1 {
            crate::Waited::Stopped(s) => Ok(s),
            _ => Err(restore_err(format!("process {pid}"), "it died before its first stop")),
        }
    }

    /// Rebuilds a child made by [`Rebuild::fork_child`] of `parent`: injection from the same
    /// scratch page, which the fork copied.
    pub fn adopt(child: Stopped, parent: &Rebuild) -> CResult<Rebuild> {
        let mut regs = child.regs()?;
        regs.skip_with(TRAP_NR as i64);
        regs.0.rip = parent.scratch;
        child.set_regs(&regs)?;
        let t = to_seccomp_stop(child)?;
        Ok(Rebuild { r: Remote::new(t)?, scratch: parent.scratch })
    }

    /// Process group and session as in the checkpoint (pids as the program sees them): a new
    /// session, or a group of its own or of another process of that session.
    pub fn session(&mut self, own: i32, pgid: i32, sid: i32) -> CResult<()> {
        let now = self.r.call(libc::SYS_getsid, [0; 6])?;
        let group = self.r.call(libc::SYS_getpgid, [0; 6])?;
        if sid == own && now != i64::from(own) {
            self.call("a new session", libc::SYS_setsid, [0; 6])?;
        } else if pgid != group as i32 && sid != own {
            let target = if pgid == own { 0 } else { pgid as u64 };
            self.call(&format!("process group {pgid}"), libc::SYS_setpgid, [0, target, 0, 0, 0, 0])?;
        }
        Ok(())
    }

    /// Puts thread `t` (a new one at its first stop) where the checkpoint has it: its per-thread
    /// attributes, then [`settle`] at its syscall site.
    pub fn place_thread(&mut self, t: Stopped, orig: &crate::Regs, s: &TaskState, parked: bool) -> CResult<Stopped> {
        let t = to_site(t, orig)?;
        let mut r = Remote::new(t)?;
        attrs(&mut r, self.data(), s)?;
        let t = r.into_stopped().ok_or_else(|| restore_err("a thread", "lost during injection"))?;
        settle(t, orig, s, parked)
    }

    fn data(&self) -> u64 {
        self.scratch + 2 * PAGE
    }
}

/// A thread's own attributes: robust list, clear_child_tid, alternate stack, name (`data`:
/// scratch memory for the arguments).
fn attrs(r: &mut Remote, data: u64, s: &TaskState) -> CResult<()> {
    {
        let call = |r: &mut Remote, what: &str, nr: i64, args: [u64; 6]| -> CResult<i64> {
            let ret = r.call(nr, args)?;
            if (-4095..0).contains(&ret) {
                return Err(restore_err(what, format!("failed with errno {}", -ret)));
            }
            Ok(ret)
        };
        let flags = s.altstack.get(8..12).map_or(0, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        if flags & libc::SS_DISABLE == 0 && s.altstack.len() == STACK_T_LEN {
            let mut st = s.altstack.clone();
            st[8..12].copy_from_slice(&0i32.to_le_bytes());
            r.write(data, &st)?;
            let at = data;
            call(r, "the alternate signal stack", libc::SYS_sigaltstack, [at, 0, 0, 0, 0, 0])?;
        }
        if s.robust.0 != 0 {
            call(r, "the robust futex list", libc::SYS_set_robust_list, [s.robust.0, s.robust.1, 0, 0, 0, 0])?;
        }
        call(r, "clear_child_tid", libc::SYS_set_tid_address, [s.tid_address, 0, 0, 0, 0, 0])?;
        let mut comm = s.comm.clone();
        comm.truncate(15);
        comm.push(0);
        r.write(data, &comm)?;
        let at = data;
        call(r, "the thread's name", libc::SYS_prctl, [libc::PR_SET_NAME as u64, at, 0, 0, 0, 0])?;
        Ok(())
    }
}

impl Rebuild {
    /// Credentials as in the checkpoint (groups, then gids, then uids: the order that keeps
    /// the privilege to set the next), when they differ from the fresh process's.
    pub fn creds(&mut self, uids: &[u32], gids: &[u32], groups: &[u32]) -> CResult<()> {
        let pid = self.r.task()?.pid().as_raw();
        let now = crate::procfs::proc_state(pid).map_err(|why| restore_err("the fresh process's state", why))?;
        if now.groups != groups {
            let bytes: Vec<u8> = groups.iter().flat_map(|g| g.to_le_bytes()).collect();
            let at = self.put(&bytes)?;
            self.call("the supplementary groups", libc::SYS_setgroups, [groups.len() as u64, at, 0, 0, 0, 0])?;
        }
        if now.gids != gids && gids.len() >= 3 {
            self.call("the gids", libc::SYS_setresgid, [gids[0] as u64, gids[1] as u64, gids[2] as u64, 0, 0, 0])?;
        }
        if now.uids != uids && uids.len() >= 3 {
            self.call("the uids", libc::SYS_setresuid, [uids[0] as u64, uids[1] as u64, uids[2] as u64, 0, 0, 0])?;
        }
        Ok(())
    }

    /// The thread that made the others (the process's leader) last: its attributes, then to
    /// its syscall site, from where the scratch page is unmapped, then [`settle`]. Returns the
    /// task at that seccomp stop, exactly as it was when the checkpoint was taken.
    pub fn finish(mut self, orig: &crate::Regs, s: &TaskState, parked: bool) -> CResult<Stopped> {
        let data = self.data();
        attrs(&mut self.r, data, s)?;
        let t = self.r.into_stopped().ok_or_else(|| restore_err("the restored process", "lost during injection"))?;
        let t = to_site(t, orig)?;
        let mut r = Remote::new(t)?;
        let un = r.call(libc::SYS_munmap, [self.scratch, 4 * PAGE, 0, 0, 0, 0])?;
        if un != 0 {
            return Err(restore_err("the restore's scratch page", format!("munmap failed with errno {}", -un)));
        }
        let t = r.into_stopped().ok_or_else(|| restore_err("the restored process", "lost during injection"))?;
        settle(t, orig, s, parked)
    }
}

/// Sends `t` (stopped anywhere) to the `syscall` instruction of its checkpointed stop, `orig`
/// the registers at that stop, as a [`TRAP_NR`] call: returns it at that seccomp stop.
fn to_site(t: Stopped, orig: &crate::Regs) -> CResult<Stopped> {
    let mut go = *orig;
    go.skip_with(TRAP_NR as i64);
    go.rewind();
    t.set_regs(&go)?;
    to_seccomp_stop(t)
}

/// From the [`TRAP_NR`] stop at its site, the task's final state: a `parked` task makes its own
/// syscall again (the seccomp stop replay waits at for the log to complete it); another gets
/// the registers it resumes with. Then the XSAVE area and the signal mask.
fn settle(t: Stopped, orig: &crate::Regs, s: &TaskState, parked: bool) -> CResult<Stopped> {
    let t = if parked {
        let mut go = *orig;
        go.skip_with(orig.nr() as i64);
        go.rewind();
        t.set_regs(&go)?;
        let t = to_seccomp_stop(t)?;
        if t.regs()?.nr() != orig.nr() {
            return Err(restore_err("a parked thread", "it did not stop at its own syscall again"));
        }
        t
    } else {
        let fin = regs_from_words(&s.regs).ok_or_else(|| restore_err("the checkpoint's registers", "malformed"))?;
        t.set_regs(&fin)?;
        t
    };
    set_xstate(t.pid().as_raw(), &s.xstate)?;
    let mask = s.sigmask;
    // SAFETY: PTRACE_SETSIGMASK reads the 8-byte kernel sigset_t at the data pointer (its size
    // is the address argument); `mask` outlives the call.
    let r = unsafe {
        libc::ptrace(libc::PTRACE_SETSIGMASK, t.pid().as_raw(), std::mem::size_of::<u64>(), &mask as *const u64)
    };
    if r < 0 {
        return Err(TraceError::ptrace(t.pid(), "PTRACE_SETSIGMASK", nix::Error::last()).into());
    }
    Ok(t)
}

/// Resumes `t` (registers set for a syscall at a program address) to that syscall's seccomp
/// stop.
fn to_seccomp_stop(t: Stopped) -> CResult<Stopped> {
    let pid = t.pid();
    t.cont(None)?;
    match crate::tracee::wait_for(Some(pid))?.1 {
        crate::Waited::Stopped(s) if s.stop == crate::Stop::Seccomp => Ok(s),
        crate::Waited::Stopped(s) => {
            Err(restore_err("an injection point", format!("{:?} instead of a seccomp stop", s.stop)))
        }
        _ => Err(restore_err("an injection point", "the process died")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_avoids_both_layouts() {
        let v =
            |s: u64, e: u64| Vma { start: s, end: e, prot: 0, shared: false, offset: 0, name: String::new(), inode: 0 };
        let a = vec![v(0x1000_0000, 0x1000_4000)];
        let b = vec![v(0x1000_5000, 0x1000_9000)];
        let g = free_gap(&a, &b, 4 * PAGE).expect("a gap");
        assert!(g >= 0x1000_a000, "{g:#x}");
        assert_eq!(free_gap(&[], &[], PAGE), Some(0x1000_0000));
    }
}
