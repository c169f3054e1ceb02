//! Recording a syscall at its seccomp stop: the table's class and policy decide; the result and
//! the memory it wrote are logged, run in the tracer, the tracee or not at all.

use super::*;

impl Recorder<'_> {
    pub(super) fn warn_once(&mut self, nr: u64, msg: String) {
        if self.warned.insert(nr) {
            warn!(self.log, "{}", msg);
        }
    }

    pub(super) fn on_syscall(&mut self, t: Stopped) -> Result<()> {
        let pid = t.pid();
        let Decided { t, mut regs, spec, args, action, silent } = match stop::prelude(self, pid, t)? {
            Entry::Done => return Ok(()),
            Entry::Unknown { t, nr } => {
                self.warn_once(nr, format!("unknown syscall {} refused with ENOSYS", nr as i64));
                t.cont(None)?;
                return Ok(());
            }
            Entry::Call(c) => c,
        };
        let nr = regs.nr();
        self.syscall_ip.insert(pid, regs.ip());
        self.unapprove(&t, spec, &args)?;
        if let buffer::PatchStep::Page(page) = self.try_patch(&t, &mut regs, spec, silent)? {
            ft_interposer::sysbuf::add_page(t, page)?;
            return Ok(());
        }
        // Lazy: slog builds key-values before filtering, and this runs at every stop.
        debug!(self.log, "syscall"; "ip" => slog::FnValue(|_| format!("{:#x}", regs.ip())), "task" => self.vtid(pid), "call" => slog::FnValue(|_| describe::call(spec, &args)), "action" => slog::FnValue(|_| format!("{action:?}")));
        if spec.fds.closes != Closes::None {
            self.before_close(&t, spec, &args)?;
        }
        if action == Action::AnonMap && policy::shares_writes(&args) {
            // A file outside the data directory mapped shared and writable (a JVM's hsperfdata):
            // mapped private, so that the program's writes are its own in every run.
            let file = std::fs::read_link(format!("/proc/{pid}/fd/{}", args[4] as i32)).unwrap_or_default();
            self.warn_once(
                nr,
                format!(
                    "a shared writable mapping of {} is made private: other processes do not see the program's writes to it (put the file in --data-dir to share it)",
                    file.display()
                ),
            );
            let mut a = args;
            a[3] = policy::private_flags(a[3]);
            regs.set_args(&a);
            t.set_regs(&regs)?;
        }
        if let Exec::Copy(op) = spec.exec {
            if matches!(action, Action::Record { .. } | Action::Output { stdio: None }) {
                let ok = self.on_copy(&t, &mut regs, spec, &args, op)?;
                if ok || op.sends() {
                    self.approve(&t, args[0], op, ok)?;
                }
                if ok {
                    t.cont(None)?;
                    return Ok(());
                }
            }
        }
        match action {
            // Runs in the kernel and returns without an exit stop.
            Action::Pass => {
                self.exits.insert(pid, ExitPoint { regs, silent, events: self.events });
                let waiting = signal_waiting(&t)?;
                t.cont(None)?;
                if waiting {
                    self.wait_own_stop(pid)?;
                }
                return Ok(());
            }
            Action::Emulate(e) => emulate(&t, &mut regs, e)?,
            Action::Refuse(Refusal::Errno(errno, why)) => {
                self.warn_once(nr, format!("{} refused with {}: {why}", spec.name, nix::Error::from_raw(errno)));
                regs.skip_with(-i64::from(errno));
                t.set_regs(&regs)?;
            }
            Action::Refuse(Refusal::Unsupported(why)) => {
                return Err(SessionError::Unsupported {
                    what: format!("the program called {}", describe::call(spec, &args)),
                    why: why.into(),
                })
            }
            Action::Record { exec: Exec::Tracer } if tracer_can_run(spec, &args) => {
                return self.in_tracer(t, regs, spec, args).map(drop)
            }
            _ if action.holds_token() && !stop::may_wait(&t, spec, &args) => {
                if matches!(action, Action::Output { .. }) {
                    self.sink.before_output()?;
                }
                let p = Pending { spec, args, input: capture::input(&t, spec.input, &args)?, action };
                // A POSIX message queue's send, or a receive that cannot wait: after the receives
                // that have returned.
                if let ft_libos::table::Waits::HoldingQueue { fd } | ft_libos::table::Waits::UnlessNonblockFd { fd } =
                    spec.waits
                {
                    self.settle_receivers(pid, args[usize::from(fd)] as i32)?;
                }
                if let ft_libos::table::Waits::HoldingQueue { fd } = spec.waits {
                    let copy = self.copier.copy(pid, args[usize::from(fd)] as i32);
                    if copy.as_ref().is_some_and(ft_interposer::fdcopy::mq_would_wait) {
                        return Err(SessionError::Unsupported {
                            what: format!("{} to a full POSIX message queue, which would wait for a receiver", spec.name),
                            why: "it runs holding the token (a receiver must find the message where the log has it), so no receiver could run; make the queue larger (mq_maxmsg) or open it with O_NONBLOCK".into(),
                        });
                    }
                }
                // Made non-blocking (msgsnd): it must not wait holding the token.
                let nowait = match spec.waits {
                    ft_libos::table::Waits::Holding { arg }
                        if args[usize::from(arg)] & libc::IPC_NOWAIT as u64 == 0 =>
                    {
                        let mut a = args;
                        a[usize::from(arg)] |= libc::IPC_NOWAIT as u64;
                        let mut r = regs;
                        r.set_args(&a);
                        t.set_regs(&r)?;
                        Some(arg)
                    }
                    _ => None,
                };
                t.cont_to_exit()?;
                return match wait_for(Some(pid))? {
                    (_, Waited::Stopped(s)) if s.stop == Stop::SyscallExit => {
                        if nowait.is_some() {
                            let mut r = s.regs()?;
                            let ret = r.ret();
                            r.set_args(&args);
                            s.set_regs(&r)?;
                            if ret == -i64::from(libc::EAGAIN) {
                                return Err(SessionError::Unsupported {
                                    what: format!("{} to a full System V message queue, which would wait for a receiver", spec.name),
                                    why: "it runs holding the token (a receiver must find the message where the log has it), so no receiver could run; make the queue larger (msgctl IPC_SET msg_qbytes) or send with IPC_NOWAIT".into(),
                                });
                            }
                        }
                        self.complete(&s, &p)?;
                        if let ft_libos::table::Waits::HoldingQueue { fd } = spec.waits {
                            if s.regs()?.ret() >= 0 {
                                self.await_woken_receiver(pid, args[usize::from(fd)] as i32)?;
                            }
                        }
                        self.exits.insert(pid, ExitPoint { regs: s.regs()?, silent: 0, events: self.events });
                        let waiting = signal_waiting(&s)?;
                        s.cont(None)?;
                        if waiting {
                            self.wait_own_stop(pid)?;
                        }
                        Ok(())
                    }
                    (_, Waited::Stopped(s)) => Err(SessionError::Trace(ft_interposer::TraceError::Unexpected {
                        pid,
                        what: format!("{:?} instead of the exit of {}", s.stop, spec.name),
                    })),
                    (_, Waited::Exited(code)) => self.on_death(pid, Exit { code, signal: 0, task: 0 }),
                    (_, Waited::Killed(sig)) => self.on_death(pid, Exit { code: 0, signal: sig.raw(), task: 0 }),
                };
            }
            _ => {
                // Runs in the kernel, may block on another task: the token is free meanwhile.
                let input = capture::input(&t, spec.input, &args)?;
                self.before_blocking(&t, spec, &args)?;
                if matches!(action, Action::Output { .. }) {
                    // Replies queued for this socket go first (shutdown, sendmsg, a write the
                    // tracer could not take); other fds do not wait for them.
                    let stream_fd = (spec.follow.stream != Stream::None).then_some(args[0]);
                    let fd = spec.fd.map(|i| args[i as usize]).or(stream_fd);
                    if let Some(k) = fd.and_then(|fd| self.queued_socket(pid, fd)) {
                        self.drain_outputs(Some(k))?;
                    }
                    self.sink.before_output()?;
                }
                // A clone that copies the address space keeps the token: the copy must not race
                // with another thread's writes (a bio thread's free while redis forks its AOF
                // rewrite child would change the child's memory from run to run). Nothing it
                // waits for needs another task of the program; vfork (which waits for the
                // child's exec) and threads share the memory and release it as any syscall.
                let copies = action == Action::Clone && copies_address_space(&t, spec, &args);
                t.cont_to_exit()?;
                self.set_state(pid, TState::InKernel(Pending { spec, args, input, action }));
                if !copies {
                    self.release(pid);
                }
                return Ok(());
            }
        }
        t.cont(None)?;
        Ok(())
    }

    /// Runs a pure syscall in the tracer with its own buffers, copies the results into the
    /// tracee and skips the tracee's syscall: one stop.
    pub(super) fn in_tracer(&mut self, t: Stopped, mut regs: Regs, spec: &Spec, args: [u64; 6]) -> Result<Running> {
        let mut a = args;
        let mut bufs: Vec<(usize, Vec<u8>, bool)> = Vec::new();
        for w in spec.writes {
            let p = w.ptr as usize;
            if args[p] == 0 {
                continue;
            }
            let Some((cap, by_ret)) = tracer_buffer(w.len, &args) else { continue };
            bufs.push((p, vec![0u8; cap as usize], by_ret));
        }
        for (p, buf, _) in bufs.iter_mut() {
            a[*p] = buf.as_mut_ptr() as u64;
        }
        // SAFETY: the table marks only pure syscalls (time, random, uname, ids) as Tracer; every
        // pointer argument now points to a buffer of the size the table declares.
        let r = unsafe { libc::syscall(spec.nr as libc::c_long, a[0], a[1], a[2], a[3], a[4], a[5]) };
        let mut ret = if r == -1 { -i64::from(nix::errno::Errno::last_raw()) } else { r as i64 };
        let mut mem = Vec::with_capacity(bufs.len());
        for (p, mut buf, by_ret) in bufs {
            if by_ret {
                buf.truncate(ret.max(0) as usize);
            }
            match t.write(args[p], &buf) {
                Ok(()) => mem.push(MemWrite { addr: args[p], data: buf }),
                Err(e) if e.is_gone() => return Err(e.into()),
                Err(_) => ret = -i64::from(libc::EFAULT),
            }
        }
        regs.skip_with(ret);
        t.set_regs(&regs)?;
        let task = self.vtid(t.pid());
        self.emit(Kind::Syscall(Syscall {
            nr: spec.nr,
            args: args.to_vec(),
            ret,
            disposition: Disposition::Inject as i32,
            mem,
            task,
            ..Default::default()
        }))?;
        Ok(t.cont(None)?)
    }

    /// Runs the syscall in the tracee to its exit stop and logs what the action calls for.
    /// Logs a syscall that ran in the tracee, at its exit stop.
    pub(super) fn complete(&mut self, t: &Stopped, p: &Pending) -> Result<()> {
        let (spec, args, action, input) = (p.spec, p.args, p.action, &p.input);
        let task = self.vtid(t.pid());
        let ret = t.regs()?.ret();
        let mut ev = Syscall {
            nr: spec.nr,
            args: args.to_vec(),
            input_digest: if input.is_empty() { Vec::new() } else { digest::short(input) },
            ret,
            path_arg: match spec.input {
                ft_libos::table::Input::Path(_) | ft_libos::table::Input::Paths(..) => input.clone(),
                _ => Vec::new(),
            },
            task,
            ..Default::default()
        };
        let restarted = match self.restart_of.get(&t.pid()) {
            Some(&(orig, orig_args)) if spec.special == Special::RestartSyscall => Some((orig, orig_args)),
            _ => None,
        };
        if ret != ft_libos::signal::ERESTART_RESTARTBLOCK {
            self.restart_of.remove(&t.pid());
        } else if restarted.is_none() {
            self.restart_of.insert(t.pid(), (spec, args));
        }
        let regions = match restarted {
            Some((orig, orig_args)) => capture::regions(t, orig.writes, &orig_args, ret)?,
            None => capture::regions(t, spec.writes, &args, ret)?,
        };
        let extra = fcntl_writes(spec, &args);
        let regions =
            if extra.is_empty() { regions } else { [regions, capture::regions(t, extra, &args, ret)?].concat() };
        if spec.fds.object == Object::SignalFd && ret >= 0 {
            self.signalfd_made = true;
        }
        let mut fresh = FdKind::External;
        let mut disposition = match action {
            Action::Execute => {
                ev.out_digest = capture::digest_writes(&capture::read_regions(t, &regions)?);
                if spec.path.is_some() || spec.fds.creates != NewFdEffect::None {
                    fresh = if matches!(spec.fds.object, Object::Memfd | Object::MqDesc) {
                        FdKind::Private
                    } else {
                        FdKind::Data
                    };
                }
                Disposition::Execute
            }
            Action::ExecuteInject => Disposition::ExecuteInject,
            Action::Clone if ret >= 0 => Disposition::ExecuteInject,
            Action::Exec if ret >= 0 => Disposition::Execute,
            Action::AnonMap if ret >= 0 => {
                ev.mem = self.capture_mapping(t, &args, ret)?;
                Disposition::AnonMap
            }
            Action::Output { stdio } => {
                if let Some(fd) = stdio {
                    ev.stdio_fd = fd;
                    ev.stdio = input[..(ret.max(0) as usize).min(input.len())].to_vec();
                }
                // What an output writes back into the program (sendfile's offset).
                ev.mem = capture::read_regions(t, &regions)?;
                Disposition::Inject
            }
            _ => {
                ev.mem = capture::read_regions(t, &regions)?;
                Disposition::Inject
            }
        };
        let pid = t.pid();
        if policy::creates_fds(spec, &args) && ret >= 0 {
            let pair = match spec.fds.creates {
                NewFdEffect::Pair(p) => {
                    let b = t.read(args[p as usize], 8)?;
                    Some([i32::from_le_bytes([b[0], b[1], b[2], b[3]]), i32::from_le_bytes([b[4], b[5], b[6], b[7]])])
                }
                _ => None,
            };
            if disposition == Disposition::Inject && spec.path.is_some() {
                // An opened file outside the data directory: executables and libraries are
                // verified by hash and opened for real at replay; anything else is recorded.
                if let Some((path, hash)) = self.verified_file(t, ret as i32, &args, spec)? {
                    fresh = FdKind::Verified;
                    ev.path = path;
                    ev.file_hash = hash;
                    disposition = Disposition::Execute;
                } else if ret >= 0
                    && spec.fds.object == Object::File
                    && std::fs::metadata(format!("/proc/{}/fd/{ret}", t.pid())).is_ok_and(|m| m.is_dir())
                {
                    fresh = FdKind::Directory;
                }
            }
            let created = policy::new_fds(spec, &args, ret, pair, self.fds_of(pid), fresh);
            if disposition == Disposition::Inject
                && created.iter().any(|(_, k)| matches!(k, FdKind::External | FdKind::Directory))
            {
                disposition = Disposition::Placeholder;
            }
            for (fd, kind) in created {
                self.fds_of(pid).set(fd, kind);
                let cloexec = ft_interposer::procfs::fd_flags(pid.as_raw(), fd) & libc::O_CLOEXEC != 0;
                ev.new_fds.push(NewFd { fd, kind: kind as i32, cloexec });
                if spec.fds.object == Object::SocketPair {
                    self.made_real.pair_sockets.extend(ft_interposer::procfs::socket_of(pid.as_raw(), fd));
                }
            }
        }
        if spec.fds.creates == NewFdEffect::Rights && ret >= 0 {
            // fds received in SCM_RIGHTS control data (a master passing sockets to workers):
            // stand-ins at their numbers at replay.
            for fd in received_fds(t, &args) {
                self.fds_of(pid).set(fd, FdKind::External);
                let cloexec = ft_interposer::procfs::fd_flags(pid.as_raw(), fd) & libc::O_CLOEXEC != 0;
                ev.new_fds.push(NewFd { fd, kind: FdKind::External as i32, cloexec });
            }
        }
        if self.holder != Some(t.pid()) {
            // Logged while another task ran, or none: where replay applies it.
            match self.holder {
                Some(h) => ev.holder_silent = Some(self.silent.get(&h).copied().unwrap_or(0)),
                None if self.released.is_some_and(|r| r != t.pid()) => ev.token_released = true,
                None => ev.token_free = true,
            }
        }
        if spec.process != Changes::None && ret >= 0 {
            // The state it left (cwd, credentials...): replay checks its own against it.
            ev.state = ft_interposer::procfs::proc_state(t.pid().as_raw()).ok();
        }
        ev.disposition = disposition as i32;
        if matches!(action, Action::Output { .. }) {
            self.events += 1;
            self.released = None;
            return self.sink.append_output(&Event { kind: Some(Kind::Syscall(ev)) });
        }
        self.emit(Kind::Syscall(ev))
    }

    /// If fd `fd` (just opened) is a file replay opens for real after a hash check (a read-only
    /// ELF or large file: `policy::opened_file_kind`), its path and blake3.
    pub(super) fn verified_file(
        &mut self,
        t: &Stopped,
        fd: i32,
        args: &[u64; 6],
        spec: &Spec,
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if spec.fds.object != Object::File {
            return Ok(None);
        }
        let read_word = |addr: u64| t.read(addr, 8).ok().and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
        let Some(flags) = spec.fds.open_flags(args, read_word) else { return Ok(None) };
        let proc_path = format!("/proc/{}/fd/{fd}", t.pid());
        let Ok(md) = std::fs::metadata(&proc_path) else {
            return Ok(None);
        };
        let read_only = flags & libc::O_ACCMODE == libc::O_RDONLY;
        // Only a read-only regular file can be Verified: anything else is never opened here (a
        // pipe or FIFO, such as /dev/stderr on a pipe, would block the tracer in open or read).
        if !(md.is_file() && read_only) {
            return Ok(None);
        }
        let mut magic = [0u8; 4];
        let elf = std::fs::File::open(&proc_path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .map(|()| &magic == b"\x7fELF")
            .unwrap_or(false);
        if policy::opened_file_kind(false, md.is_file(), read_only, elf, md.len()) != FdKind::Verified {
            return Ok(None);
        }
        // Made or changed since the recording began (a compiler's object file in /tmp that the
        // linker reads back: varnish compiles its VCL at start): the program's own work, which
        // no other replica has. Recorded, as any other file outside the data directory.
        if i128::from(md.ctime()) * 1_000_000_000 + i128::from(md.ctime_nsec()) >= self.started_ns {
            return Ok(None);
        }
        let key = (md.dev(), md.ino(), md.size(), md.mtime_nsec() + md.mtime() * 1_000_000_000);
        let hash = match self.hashes.get(&key) {
            Some(h) => h.clone(),
            None => {
                let h = program::hash_file(Path::new(&proc_path))?;
                self.hashes.insert(key, h.clone());
                h
            }
        };
        let path = std::fs::read_link(&proc_path).map(|p| p.into_os_string().into_vec()).unwrap_or_default();
        Ok(Some((path, hash)))
    }

    /// The bytes of a private file mapping just made at `addr` (up to the end of the file).
    pub(super) fn capture_mapping(&self, t: &Stopped, args: &[u64; 6], addr: i64) -> Result<Vec<MemWrite>> {
        let fd = args[4] as i32;
        let size = std::fs::metadata(format!("/proc/{}/fd/{fd}", t.pid())).map(|m| m.len()).unwrap_or(0);
        // The program sees whole pages: a mapping of 1 byte shows the file's first page.
        let len = args[1].div_ceil(4096).saturating_mul(4096).min(size.saturating_sub(args[5]));
        if len == 0 {
            return Ok(Vec::new());
        }
        let data = t.read_forced(addr as u64, len as usize)?;
        Ok(vec![MemWrite { addr: addr as u64, data }])
    }

    /// Register changes for a syscall about to block in the kernel, given back at its exit
    /// ([`Recorder::after_blocking`]): a wait's `__WALL` ([`Recorder::widen_wait`]) and an
    /// adopted restart ([`Recorder::adopted_restart`]).
    pub(super) fn before_blocking(&mut self, t: &Stopped, spec: &Spec, args: &[u64; 6]) -> Result<()> {
        self.widen_wait(t, spec, args)?;
        self.adopted_restart(t, spec)
    }

    /// A handed-over task at restart_syscall, continuing a syscall that the log interrupted with
    /// -ERESTART_RESTARTBLOCK: it runs that syscall again (the log still shows restart_syscall,
    /// which is what the followers wait at). A relative sleep sleeps for the time left that the
    /// kernel wrote at the interruption (in its `rem`); an absolute one is the same call; poll
    /// and futex waits get their first timeout again.
    pub(super) fn adopted_restart(&mut self, t: &Stopped, spec: &Spec) -> Result<()> {
        if spec.special != Special::RestartSyscall || !self.adopted_restart.remove(&t.pid()) {
            return Ok(());
        }
        let Some(&(orig, orig_args)) = self.restart_of.get(&t.pid()) else { return Ok(()) };
        let a = orig.signals.restart.map_or(orig_args, |sleep| sleep.continued(&orig_args));
        debug!(self.log, "a handed-over restart_syscall runs as its syscall again"; "call" => orig.name);
        let mut regs = t.regs()?;
        regs.rewrite(u64::from(orig.nr), &a);
        Ok(t.set_regs(&regs)?)
    }

    /// A wait4/waitid of a process that has [`Recorder::quiet`] children: `__WALL` added to
    /// its options, so that it sees them (the options register is given back at its exit).
    pub(super) fn widen_wait(&self, t: &Stopped, spec: &Spec, args: &[u64; 6]) -> Result<()> {
        let Some(i) = spec.task.wait.map(|w| w.options_arg()) else { return Ok(()) };
        let proc = self.tasks.get(&t.pid()).map(|t| t.proc);
        if args[i] & ft_libos::wait::WALL != 0 || !self.quiet.values().any(|q| Some(q.parent) == proc) {
            return Ok(());
        }
        let mut regs = t.regs()?;
        let mut a = *args;
        a[i] |= ft_libos::wait::WALL;
        regs.set_args(&a);
        Ok(t.set_regs(&regs)?)
    }

    /// At the exit of a syscall [`Recorder::before_blocking`] may have changed: the argument
    /// registers as the program set them; after a wait, the quiet children it reaped forgotten.
    pub(super) fn after_blocking(&mut self, s: &Stopped, p: &Pending) -> Result<()> {
        let waits = p.spec.task.wait.is_some();
        let adopted = self.restore_args.remove(&s.pid());
        let restart = p.spec.special == Special::RestartSyscall;
        if !waits && !adopted && !restart {
            return Ok(());
        }
        let mut regs = s.regs()?;
        // An adopted restart_syscall ran as its syscall: it is restart_syscall again at its exit,
        // where a signal delivery is logged with the syscall number (replay has restart_syscall
        // there) and where the kernel restarts it (its restart block is real now).
        let renamed = restart && regs.nr() != u64::from(p.spec.nr);
        if regs.args() != p.args || renamed {
            regs.set_args(&p.args);
            regs.0.orig_rax = u64::from(p.spec.nr);
            s.set_regs(&regs)?;
        }
        if waits && !self.quiet.is_empty() {
            self.quiet.retain(|child, _| Path::new(&format!("/proc/{child}")).exists());
        }
        Ok(())
    }

    /// A child forked by replay (exit signal 0, no execve since: [`Recorder::on_exec`] forgets
    /// one that calls it) ended: the kernel sent its parent nothing, so the recorder sends the
    /// SIGCHLD natively due, if the parent catches it (its handler gets the kernel's siginfo
    /// for it) or blocks it (for sigwaitinfo or a signalfd, which then read a kill's siginfo),
    /// unless a SIGCHLD is pending already (the kernel would keep that one). The child stays a
    /// zombie until the parent's (widened) wait.
    pub(super) fn quiet_ended(&mut self, child: Pid, exit: &Exit) {
        let Some(&q) = self.quiet.get(&child) else { return };
        let Some(leader) = self.tasks.iter().find(|(_, t)| t.vtid == q.parent).map(|(p, _)| *p) else { return };
        let caught = matches!(disposition(leader, Sig::SIGCHLD), Handling::Caught);
        let masks = status_masks(leader);
        let bit = Sig::SIGCHLD.mask_bit();
        if (!caught && masks("SigBlk:") & bit == 0) || (masks("ShdPnd:") | masks("SigPnd:")) & bit != 0 {
            return;
        }
        if caught {
            let (code, status) = if exit.signal != 0 {
                (ft_libos::wait::CLD_KILLED, exit.signal)
            } else {
                (ft_libos::wait::CLD_EXITED, exit.code)
            };
            let bytes = ft_libos::wait::sigchld_info(q.ns_pid, q.uid, code, status);
            if let Some(info) = ft_interposer::tracee::siginfo_from_bytes(&bytes) {
                self.chld_info.insert(q.parent, info);
            }
        }
        debug!(self.log, "SIGCHLD for a child forked at replay"; "child" => child.as_raw(), "parent" => q.parent);
        let _ = send_signal(leader, Sig::SIGCHLD);
    }
}

/// A clone's flags. clone3 keeps them in struct clone_args, whose first field they are; vfork's
/// are CLONE_VM | CLONE_VFORK and fork's none.
fn clone_flags(t: &Stopped, spec: &Spec, args: &[u64; 6]) -> u64 {
    match spec.task.clone {
        CloneKind::Clone => args[0],
        CloneKind::Clone3 => {
            t.read(args[0], 8).ok().and_then(|b| b.try_into().ok()).map(u64::from_le_bytes).unwrap_or(0)
        }
        CloneKind::Vfork => (libc::CLONE_VM | libc::CLONE_VFORK) as u64,
        CloneKind::Fork | CloneKind::None => 0,
    }
}

/// Whether a clone creates a thread (CLONE_THREAD) rather than a process.
pub(super) fn is_thread_clone(t: &Stopped, spec: &Spec, args: &[u64; 6]) -> bool {
    clone_flags(t, spec, args) & libc::CLONE_THREAD as u64 != 0
}

/// Whether a clone gives the child a copy of the caller's memory (no CLONE_VM) and returns
/// without waiting for it (no CLONE_VFORK, whose parent waits for the child's exec, which needs
/// the token): the kernel reads the whole address space while it runs.
pub(super) fn copies_address_space(t: &Stopped, spec: &Spec, args: &[u64; 6]) -> bool {
    let flags = clone_flags(t, spec, args);
    spec.task.clone != CloneKind::None && flags & (libc::CLONE_VM | libc::CLONE_VFORK) as u64 == 0
}

impl stop::Side for Recorder<'_> {
    type Task = Pid;
    const CLOCK_MODE: u32 = ft_libos::clock::MODE_RECORD;

    fn proc_of(&self, pid: Pid) -> u32 {
        self.tasks.get(&pid).map(|t| t.proc).unwrap_or(0)
    }

    fn clock_pages(&mut self) -> &mut ClockPages {
        &mut self.clocks
    }

    /// Once the program went live, a process's first stop makes its stand-ins real.
    fn before_signals(&mut self, pid: Pid, t: Stopped, regs: Regs) -> Result<Option<(Stopped, Regs)>> {
        let Some(d) = self.deferred_real.remove(&self.proc_of(pid)) else { return Ok(Some((t, regs))) };
        let t =
            crate::live::make_real(t, &d.sockets, &d.files, &d.work, &self.shadows, &mut self.made_real, &self.log)?;
        if self.deferred_real.is_empty() {
            self.made_real.pairs_done();
        }
        let regs = t.regs()?;
        Ok(Some((t, regs)))
    }

    /// The held signals the task can take now, each logged (the first one of a group, the
    /// others `grouped`).
    fn signals_here(&mut self, pid: Pid, t: &Stopped, nr: u64) -> Result<Vec<Held>> {
        let group = self.take_deliverable(t, nr)?;
        let task = self.vtid(pid);
        for (i, held) in group.iter().enumerate() {
            let siginfo = held.info.as_ref().map(siginfo_to_bytes).unwrap_or_default();
            self.emit(Kind::Signal(Signal {
                signo: held.sig.raw(),
                task,
                at_syscall: true,
                grouped: i > 0,
                siginfo,
                ..Default::default()
            }))?;
        }
        Ok(group)
    }

    fn keep_bouncing(&mut self, pid: Pid, group: Vec<Held>) {
        self.bouncing.entry(pid).or_default().extend(group);
    }

    fn silent(&mut self) -> &mut HashMap<Pid, u32> {
        &mut self.silent
    }

    fn fds(&mut self, pid: Pid) -> &FdTable {
        self.fds_of(pid)
    }

    /// Whether the path argument of `spec` resolves into the data directory.
    fn path_local(&self, t: &Stopped, spec: &Spec, args: &[u64; 6]) -> Result<bool> {
        let Some((dirfd, arg)) = spec.path else { return Ok(false) };
        if self.data_dir.is_none() && self.private_shm.is_none() {
            return Ok(false);
        }
        let raw = match t.read_cstr(args[arg as usize], 4096) {
            Ok(p) => p,
            Err(e) if e.is_gone() => return Err(e.into()),
            Err(_) => return Ok(false),
        };
        let path = Path::new(std::ffi::OsStr::from_bytes(&raw));
        let base = ft_interposer::procfs::path_base(t.pid().as_raw(), dirfd.map(|i| args[i as usize] as i32), path);
        let Some(base) = base else { return Ok(false) };
        Ok([&self.data_dir, &self.private_shm].into_iter().flatten().any(|dir| policy::inside(&base, path, dir)))
    }
}

/// The fds a recvmsg received in SCM_RIGHTS control data: its struct msghdr (argument 1) has
/// msg_control at offset 32 and msg_controllen, which the kernel set, at 40.
fn received_fds(t: &Stopped, args: &[u64; 6]) -> Vec<i32> {
    let word = |at: u64| t.read(at, 8).ok().and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    let (Some(control), Some(len)) = (word(args[1] + 32), word(args[1] + 40)) else { return Vec::new() };
    if control == 0 || len == 0 || len > 4096 {
        return Vec::new();
    }
    t.read(control, len as usize).map(|c| policy::scm_rights(&c)).unwrap_or_default()
}

impl Recorder<'_> {
    /// The tasks whose receive from the POSIX message queue at `fd` of `pid` runs in the kernel
    /// (without the token).
    fn receivers(&self, pid: Pid, fd: i32) -> Vec<Pid> {
        let ino = |p: Pid, fd: u64| std::fs::metadata(format!("/proc/{p}/fd/{fd}")).ok().map(|m| m.ino());
        let Some(queue) = ino(pid, fd as u64) else { return Vec::new() };
        self.tasks
            .iter()
            .filter(|(p, t)| match &t.state {
                TState::InKernel(k) => match k.spec.waits {
                    ft_libos::table::Waits::UnlessNonblockFd { fd } => ino(**p, k.args[usize::from(fd)]) == Some(queue),
                    _ => false,
                },
                _ => false,
            })
            .map(|(p, _)| *p)
            .collect()
    }

    /// Before a send to a POSIX message queue: a receive of the same queue that has returned
    /// took a message that was there before this send, so its completion is logged first; one
    /// still on its way into the kernel is let reach its end or its sleep (up to 200 ms), so
    /// that it does not take a message the log has it wait for.
    fn settle_receivers(&mut self, pid: Pid, fd: i32) -> Result<()> {
        for r in self.receivers(pid, fd) {
            let until = std::time::Instant::now() + std::time::Duration::from_millis(200);
            while std::time::Instant::now() < until {
                if let Some((r, w)) = ft_interposer::tracee::try_wait_for(Some(r))? {
                    self.on_wait(r, w)?;
                    break;
                }
                let stat = std::fs::read_to_string(format!("/proc/{r}/stat")).unwrap_or_default();
                let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next());
                if state != Some("R") {
                    // Asleep in the kernel: waiting for a message (or gone).
                    break;
                }
                std::thread::sleep(std::time::Duration::from_micros(20));
            }
        }
        Ok(())
    }

    /// A send to a POSIX message queue on which receivers wait (their receive runs without the
    /// token) hands its message to one of them at once. That receive's completion is logged
    /// now, before the sender goes on: replay runs it where the log completes it, and there the
    /// queue holds that message alone, as at record; logged after a later send of another
    /// priority, it would take that one. Waits up to 200 ms for a receiver of the same queue
    /// (`fd` of the sender `pid`) to stop.
    fn await_woken_receiver(&mut self, pid: Pid, fd: i32) -> Result<()> {
        let waiting = self.receivers(pid, fd);
        if waiting.is_empty() {
            return Ok(());
        }
        let until = std::time::Instant::now() + std::time::Duration::from_millis(200);
        while std::time::Instant::now() < until {
            for &r in &waiting {
                if let Some((r, w)) = ft_interposer::tracee::try_wait_for(Some(r))? {
                    return self.on_wait(r, w);
                }
            }
            std::thread::sleep(std::time::Duration::from_micros(20));
        }
        warn!(self.log, "a receiver of a POSIX message queue did not return within 200 ms of the send that should have woken it: its receive may be logged after a later send, and replay would then stop at it"; "receivers" => waiting.len());
        Ok(())
    }
}
