//! The replay session: re-execute the program and, at every stop, take the result from the log
//! instead of the world, checking that the program does what the recording says it did.

use crate::capture;
use crate::describe;
use crate::error::{Result, SessionError};
use crate::program;
use crate::record::{emulate, fcntl_writes, is_synchronous, launch_spec};
use crate::Outcome;
use ft_interposer::tracee::reap;
use ft_interposer::{filter, launch, tsc, Running, Stop, Stopped, Waited};
use ft_libos::digest;
use ft_libos::log::LogReader;
use ft_libos::policy::{self, Action};
use ft_libos::proto::{event::Kind, Disposition, Event, Exit, Header, Syscall};
use ft_libos::table::{NewFd, Refusal, Spec};
use ft_libos::{lookup, FdTable};
use nix::sys::signal::Signal as Sig;
use nix::unistd::Pid;
use slog::{info, Logger};
use std::ffi::{CString, OsStr};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where replayed events come from.
pub trait EventSource {
    /// The next event, or None at the end of what is available.
    fn next_event(&mut self) -> Result<Option<Event>>;
    /// The next event without consuming it.
    fn peek_event(&mut self) -> Result<Option<&Event>>;
    /// Index of the next event.
    fn position(&self) -> u64;
}

/// Events from a log file.
pub struct FileSource {
    reader: LogReader,
    peeked: Option<Event>,
    pos: u64,
}

impl FileSource {
    /// Opens a log after checking every record's checksum, so a damaged log is refused before
    /// the program prints anything.
    pub fn open(path: &Path) -> Result<Self> {
        LogReader::open(path)?.verify_rest()?;
        Ok(FileSource { reader: LogReader::open(path)?, peeked: None, pos: 0 })
    }
    pub fn header(&self) -> &Header {
        self.reader.header()
    }
}

impl EventSource for FileSource {
    fn next_event(&mut self) -> Result<Option<Event>> {
        let ev = match self.peeked.take() {
            Some(e) => Some(e),
            None => self.reader.next_event()?,
        };
        if ev.is_some() {
            self.pos += 1;
        }
        Ok(ev)
    }
    fn peek_event(&mut self) -> Result<Option<&Event>> {
        if self.peeked.is_none() {
            self.peeked = self.reader.next_event()?;
        }
        Ok(self.peeked.as_ref())
    }
    fn position(&self) -> u64 {
        self.pos
    }
}

/// How to replay.
pub struct ReplayOptions {
    /// The data directory to replay into (None: the recorded path).
    pub data_dir: Option<PathBuf>,
    /// Replay even if the CPU model differs from the recording's.
    pub allow_cpu_mismatch: bool,
    /// Write the recorded stdout/stderr bytes to ftexec's own.
    pub print_stdio: bool,
}

/// Checks that this machine can replay the log; returns the bind mount the data directory needs.
pub fn check_inputs(h: &Header, opts: &ReplayOptions) -> Result<Option<(CString, CString)>> {
    let exe = Path::new(OsStr::from_bytes(&h.exe_path));
    if !exe.exists() {
        return Err(SessionError::ProgramNotFound {
            path: exe.into(),
            hint: " (the recording ran it; replay needs the same binary at the same path)".into(),
        });
    }
    let hash = program::hash_file(exe)?;
    if hash != h.exe_hash {
        return Err(SessionError::Mismatch {
            what: format!("the executable {}", exe.display()),
            detail: format!(
                "its blake3 is {}, the recording's was {}; replay needs the exact binary that was recorded",
                digest::hex(&hash[..8]),
                digest::hex(&h.exe_hash[..8.min(h.exe_hash.len())])
            ),
        });
    }
    if !h.interp_path.is_empty() {
        let interp = Path::new(OsStr::from_bytes(&h.interp_path));
        let ok = program::hash_file(interp).map(|x| x == h.interp_hash).unwrap_or(false);
        if !ok {
            return Err(SessionError::Mismatch {
                what: format!("the dynamic loader {}", interp.display()),
                detail: "it is missing or changed since the recording (system update?)".into(),
            });
        }
    }
    let cpu = program::cpu_model();
    if cpu != h.cpu_model && !opts.allow_cpu_mismatch {
        return Err(SessionError::Mismatch {
            what: "the CPU".into(),
            detail: format!(
                "this machine has \"{cpu}\", the recording was made on \"{}\"; pass --allow-cpu-mismatch to try anyway",
                h.cpu_model
            ),
        });
    }
    if h.data_dir.is_empty() {
        if let Some(d) = &opts.data_dir {
            return Err(SessionError::Mismatch {
                what: "the data directory".into(),
                detail: format!("{} was given, but the recording was made without --data-dir", d.display()),
            });
        }
        return Ok(None);
    }
    let recorded = PathBuf::from(OsStr::from_bytes(&h.data_dir));
    let dir = opts.data_dir.clone().unwrap_or_else(|| recorded.clone());
    let dir = std::fs::canonicalize(&dir).map_err(SessionError::io(format!("data directory {}", dir.display())))?;
    let got = digest::dir(&dir)
        .map_err(|e| SessionError::Io { what: format!("data directory {}", dir.display()), source: e.source })?;
    if got != h.data_dir_digest {
        return Err(SessionError::Mismatch {
            what: format!("the data directory {}", dir.display()),
            detail: format!(
                "its content (digest {}) is not what the recorded run started with (digest {}); replay needs a copy of the data directory as it was before recording",
                digest::hex(&got[..8]),
                digest::hex(&h.data_dir_digest[..8.min(h.data_dir_digest.len())])
            ),
        });
    }
    if dir == recorded {
        return Ok(None);
    }
    if !recorded.is_dir() {
        return Err(SessionError::Mismatch {
            what: "the data directory".into(),
            detail: format!(
                "the program expects it at {}, which does not exist here; create that directory (it is used as a mount point) or replay with --data-dir {}",
                recorded.display(),
                recorded.display()
            ),
        });
    }
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).ok();
    Ok(c(&dir).zip(c(&recorded)))
}

/// Replays the log in `source` (whose header is `h`).
pub fn replay(h: &Header, source: &mut dyn EventSource, opts: &ReplayOptions, log: &Logger) -> Result<Outcome> {
    let bind = check_inputs(h, opts)?;
    let start = match source.next_event()? {
        Some(Event { kind: Some(Kind::Start(s)) }) => s,
        Some(other) => {
            return Err(SessionError::Divergence {
                index: 0,
                expected: describe::event(&other),
                got: "the program's start".into(),
            })
        }
        None => return Err(SessionError::LogEnded { index: 0 }),
    };
    let at_random: [u8; 16] = start.at_random.as_slice().try_into().map_err(|_| SessionError::Mismatch {
        what: "the log".into(),
        detail: "its start event has no AT_RANDOM bytes".into(),
    })?;
    let filter = filter::build()?;
    let launched = launch(&launch_spec(h, Some(at_random), bind)?, &filter)?;
    let pid = launched.tracee.pid();
    crate::set_current_tracee(pid.as_raw());
    info!(log, "replaying"; "pid" => pid.as_raw());
    let mut r = Replayer { source, fds: FdTable::new(), print: opts.print_stdio, pending: Vec::new(), pid };
    let result = if launched.sp != start.sp {
        Err(SessionError::Mismatch {
            what: "the program's initial stack".into(),
            detail: format!(
                "it starts at {:#x}, the recording's at {:#x}: the kernel lays out arguments differently here (different kernel or stack limit?)",
                launched.sp, start.sp
            ),
        })
    } else {
        r.run(launched.tracee)
    };
    if result.is_err() {
        let _ = nix::sys::signal::kill(pid, Sig::SIGKILL);
        let _ = reap(pid);
    }
    result
}

/// After a stop: go on with the tracee, or the program ended (and matched the log's end).
enum Step<T> {
    Go(T),
    Done(Outcome),
}

struct Replayer<'a> {
    source: &'a mut dyn EventSource,
    fds: FdTable,
    print: bool,
    /// Asynchronous signals sent to reproduce the recording, not yet delivered.
    pending: Vec<Sig>,
    pid: Pid,
}

impl Replayer<'_> {
    fn diverge(&self, index: u64, expected: String, got: String) -> SessionError {
        SessionError::Divergence { index, expected, got }
    }

    /// The next event; the end of the log here means the recording was cut short.
    fn next(&mut self) -> Result<(u64, Event)> {
        let index = self.source.position();
        match self.source.next_event()? {
            Some(ev) => Ok((index, ev)),
            None => Err(SessionError::LogEnded { index }),
        }
    }

    /// If the recording delivered an asynchronous signal here, send it now.
    fn inject_async(&mut self) -> Result<()> {
        while let Some(Event { kind: Some(Kind::Signal(s)) }) = self.source.peek_event()? {
            if s.synchronous {
                break;
            }
            let signo = s.signo;
            self.source.next_event()?;
            if let Ok(sig) = Sig::try_from(signo) {
                let _ = nix::sys::signal::kill(self.pid, sig);
                self.pending.push(sig);
            }
        }
        Ok(())
    }

    fn run(&mut self, first: Stopped) -> Result<Outcome> {
        self.inject_async()?;
        let mut running = first.cont(None)?;
        loop {
            let stopped = match running.wait()? {
                Waited::Exited(code) => return self.finish(Exit { code, signal: 0 }),
                Waited::Killed(sig) => return self.finish(Exit { code: 0, signal: sig as i32 }),
                Waited::Stopped(s) => s,
            };
            let handled = match stopped.stop {
                Stop::Seccomp => self.on_syscall(stopped),
                Stop::Signal(sig) => self.on_signal(stopped, sig).map(Step::Go),
                Stop::NewTask(child) => {
                    let index = self.source.position();
                    Err(self.diverge(index, "no new task".into(), format!("creation of task {child}")))
                }
                Stop::SyscallExit | Stop::Exec | Stop::Event(_) => stopped.cont(None).map(Step::Go).map_err(Into::into),
            };
            running = match handled {
                Ok(Step::Go(r)) => r,
                Ok(Step::Done(o)) => return Ok(o),
                // Killed while we handled its stop (by us, reproducing a recorded kill -9, or from
                // outside): the log's end says whether that death was expected.
                Err(SessionError::Trace(e)) if e.is_gone() => Running::adopt(self.pid),
                Err(e) => return Err(e),
            };
            self.inject_async()?;
        }
    }

    fn finish(&mut self, exit: Exit) -> Result<Outcome> {
        let got = describe::event(&Event { kind: Some(Kind::Exit(exit.clone())) });
        let (index, ev) = match self.next() {
            Ok(x) => x,
            Err(SessionError::LogEnded { index }) => {
                return Err(self.diverge(index, "the end of the recording".into(), got))
            }
            Err(e) => return Err(e),
        };
        match &ev.kind {
            Some(Kind::Exit(e)) if e.status() == exit.status() => {
                Ok(Outcome { status: exit.status(), events: index + 1 })
            }
            _ => Err(self.diverge(index, describe::event(&ev), got)),
        }
    }

    /// Handles a seccomp stop.
    fn on_syscall(&mut self, t: Stopped) -> Result<Step<Running>> {
        let mut regs = t.regs()?;
        let nr = regs.nr();
        let Some(spec) = lookup(nr) else {
            regs.skip_with(-i64::from(libc::ENOSYS));
            t.set_regs(&regs)?;
            return Ok(Step::Go(t.cont(None)?));
        };
        let args = regs.args();
        match policy::decide(spec, &args, &self.fds, false) {
            Action::Pass => return Ok(Step::Go(t.cont(None)?)),
            Action::Emulate(e) => {
                emulate(&t, &mut regs, e)?;
                return Ok(Step::Go(t.cont(None)?));
            }
            Action::Refuse(Refusal::Errno(errno, _)) => {
                regs.skip_with(-i64::from(errno));
                t.set_regs(&regs)?;
                return Ok(Step::Go(t.cont(None)?));
            }
            Action::Refuse(Refusal::Unsupported(why)) => {
                let index = self.source.position();
                return Err(self.diverge(
                    index,
                    "a supported syscall".into(),
                    format!("{} ({why})", describe::call(spec, &args)),
                ));
            }
            _ => {}
        }
        // The recorded run was killed here (kill -9 takes a tracee out of any stop, rr #3581):
        // skip the syscall and die the same death.
        if let Some(Event { kind: Some(Kind::Exit(e)) }) = self.source.peek_event()? {
            if let (true, Ok(sig)) = (e.signal != 0, Sig::try_from(e.signal)) {
                regs.skip_with(-i64::from(libc::EINTR));
                t.set_regs(&regs)?;
                let _ = nix::sys::signal::kill(t.pid(), sig);
                return Ok(Step::Go(t.cont(None)?));
            }
        }
        let (index, ev) = self.next()?;
        let s = match ev.kind {
            Some(Kind::Syscall(s)) if s.nr == spec.nr => s,
            _ => return Err(self.diverge(index, describe::event(&ev), describe::call(spec, &args))),
        };
        let got = || describe::call(spec, &args);
        if let Some(i) = (0..6).find(|&i| spec.checks_arg(i) && s.args.get(i) != Some(&args[i])) {
            let expected = describe::event(&Event { kind: Some(Kind::Syscall(s.clone())) });
            return Err(self.diverge(index, expected, format!("{} (argument {i} differs)", got())));
        }
        if spec.input != ft_libos::table::Input::None {
            let input = capture::input(&t, spec.input, &args)?;
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
        self.apply(t, regs, spec, &args, index, s)
    }

    fn apply(
        &mut self,
        t: Stopped,
        mut regs: ft_interposer::Regs,
        spec: &Spec,
        args: &[u64; 6],
        index: u64,
        s: Syscall,
    ) -> Result<Step<Running>> {
        let t = match s.disposition() {
            Disposition::Inject => {
                regs.skip_with(s.ret);
                t.set_regs(&regs)?;
                self.put_mem(&t, &s, false)?;
                if self.print && (s.stdio_fd == 1 || s.stdio_fd == 2) && !s.stdio.is_empty() {
                    write_stdio(s.stdio_fd, &s.stdio)?;
                }
                t
            }
            Disposition::Placeholder => {
                let mut a = [0u64; 6];
                let cloexec = s.new_fds.first().is_some_and(|f| f.cloexec);
                let nr = match spec.new_fd {
                    NewFd::Pair(p) => {
                        a[0] = args[p as usize];
                        a[1] = if cloexec { libc::O_CLOEXEC as u64 } else { 0 };
                        libc::SYS_pipe2
                    }
                    _ => {
                        a[1] = if cloexec { libc::EFD_CLOEXEC as u64 } else { 0 };
                        libc::SYS_eventfd2
                    }
                };
                regs.rewrite(nr as u64, &a);
                t.set_regs(&regs)?;
                let t = match self.to_exit(t)? {
                    Step::Go(t) => t,
                    Step::Done(o) => return Ok(Step::Done(o)),
                };
                let made = t.regs()?.ret();
                let ok = match spec.new_fd {
                    NewFd::Pair(p) => {
                        made == 0
                            && s.mem.iter().any(|m| {
                                m.addr == args[p as usize]
                                    && t.read(m.addr, 8).ok().as_deref() == Some(&m.data[..8.min(m.data.len())])
                            })
                    }
                    _ => made == s.ret,
                };
                if !ok {
                    return Err(self.diverge(
                        index,
                        format!("new fd(s) {:?}", s.new_fds.iter().map(|f| f.fd).collect::<Vec<_>>()),
                        format!("a placeholder at {made}: the fd table differs"),
                    ));
                }
                let mut regs = t.regs()?;
                regs.set_ret(s.ret);
                t.set_regs(&regs)?;
                self.put_mem(&t, &s, false)?;
                t
            }
            Disposition::Execute => {
                let t = match self.to_exit(t)? {
                    Step::Go(t) => t,
                    Step::Done(o) => return Ok(Step::Done(o)),
                };
                let ret = t.regs()?.ret();
                if !s.file_hash.is_empty() {
                    self.verify_file(&t, ret, &s)?;
                }
                if ret != s.ret {
                    let expected = describe::event(&Event { kind: Some(Kind::Syscall(s.clone())) });
                    return Err(self.diverge(index, expected, format!("{} = {ret}", describe::call(spec, args))));
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
                let t = match self.to_exit(t)? {
                    Step::Go(t) => t,
                    Step::Done(o) => return Ok(Step::Done(o)),
                };
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
                let t = match self.to_exit(t)? {
                    Step::Go(t) => t,
                    Step::Done(o) => return Ok(Step::Done(o)),
                };
                let ret = t.regs()?.ret();
                if ret != s.ret {
                    let expected = describe::event(&Event { kind: Some(Kind::Syscall(s.clone())) });
                    return Err(self.diverge(index, expected, format!("an anonymous mapping at {ret:#x}")));
                }
                self.put_mem(&t, &s, true)?;
                t
            }
        };
        for nf in &s.new_fds {
            self.fds.set(nf.fd, nf.kind());
        }
        Ok(Step::Go(t.cont(None)?))
    }

    /// Runs the syscall to its exit stop.
    fn to_exit(&mut self, t: Stopped) -> Result<Step<Stopped>> {
        match t.cont_to_exit()?.wait()? {
            Waited::Stopped(s) if s.stop == Stop::SyscallExit => Ok(Step::Go(s)),
            Waited::Stopped(s) => Err(SessionError::Trace(ft_interposer::TraceError::Unexpected {
                pid: s.pid(),
                what: format!("{:?} instead of a syscall exit", s.stop),
            })),
            Waited::Exited(code) => self.finish(Exit { code, signal: 0 }).map(Step::Done),
            Waited::Killed(sig) => self.finish(Exit { code: 0, signal: sig as i32 }).map(Step::Done),
        }
    }

    fn put_mem(&self, t: &Stopped, s: &Syscall, forced: bool) -> Result<()> {
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

    fn verify_file(&self, t: &Stopped, fd: i64, s: &Syscall) -> Result<()> {
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

    fn on_signal(&mut self, t: Stopped, sig: Sig) -> Result<Running> {
        if sig == Sig::SIGSEGV {
            let mut regs = t.regs()?;
            if let Some(insn) = tsc::decode(&t, regs.ip())? {
                let (index, ev) = self.next()?;
                let rdtscp = insn == tsc::TscInsn::Rdtscp;
                let got = format!("{} at {:#x}", if rdtscp { "rdtscp" } else { "rdtsc" }, regs.ip());
                return match ev.kind {
                    Some(Kind::Rdtsc(r)) if r.ip == regs.ip() && r.rdtscp == rdtscp => {
                        tsc::complete(&mut regs, insn, r.tsc, r.aux);
                        t.set_regs(&regs)?;
                        Ok(t.cont(None)?)
                    }
                    _ => Err(self.diverge(index, describe::event(&ev), got)),
                };
            }
        }
        if let Some(i) = self.pending.iter().position(|&p| p == sig) {
            self.pending.remove(i);
            return Ok(t.cont(Some(sig))?);
        }
        if is_synchronous(&t, sig) {
            let (index, ev) = self.next()?;
            return match ev.kind {
                Some(Kind::Signal(s)) if s.signo == sig as i32 => Ok(t.cont(Some(sig))?),
                _ => Err(self.diverge(index, describe::event(&ev), format!("a fault ({})", sig.as_str()))),
            };
        }
        // A signal from outside the replay (Ctrl-C at the terminal): the user's, deliver it.
        Ok(t.cont(Some(sig))?)
    }
}

fn write_stdio(fd: i32, bytes: &[u8]) -> Result<()> {
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
