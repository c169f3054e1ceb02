//! ptrace behind typed states. A [`Running`] tracee can only be waited for; waiting yields a
//! [`Stopped`] one (with the reason, [`Stop`]) or its end ([`Waited::Exited`]). Registers and
//! memory are reachable only through [`Stopped`], and resuming consumes it.

use crate::regs::Regs;
use crate::{Result, TraceError};
use ft_libos::Sig;
use nix::sys::ptrace;
use nix::sys::uio::{process_vm_readv, process_vm_writev, RemoteIoVec};
use nix::unistd::Pid;
use std::fs::File;
use std::io::{IoSlice, IoSliceMut};
use std::os::unix::fs::FileExt;

/// Why a tracee stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// PTRACE_EVENT_SECCOMP: before a syscall the filter traced.
    Seccomp,
    /// Syscall-exit stop (after resuming from a seccomp stop with PTRACE_SYSCALL).
    SyscallExit,
    /// A signal is about to be delivered (any number, real-time signals included).
    Signal(Sig),
    /// PTRACE_EVENT_EXEC: the exec completed.
    Exec,
    /// PTRACE_EVENT_CLONE / FORK / VFORK: a new task was created (its pid).
    NewTask(Pid),
    /// Any other ptrace event (number).
    Event(i32),
}

/// The outcome of waiting for a running tracee.
pub enum Waited {
    Stopped(Stopped),
    /// It exited with this status.
    Exited(i32),
    /// A signal killed it.
    Killed(Sig),
}

/// A tracee that is running (or about to): only [`Running::wait`] is possible.
pub struct Running {
    pid: Pid,
}

thread_local! {
    /// The task whose next [`Stopped::cont`] is a single step (0: none). The tracer is one
    /// thread per session, so a thread-local is the session's.
    static STEP_NEXT: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

/// Makes the next resume of `pid` through [`Stopped::cont`] a single step (PTRACE_SINGLESTEP):
/// whatever the replay does at the current stop, the task then stops after one instruction
/// (after a syscall instruction: at its return) with a SIGTRAP.
pub fn step_next(pid: Pid) {
    STEP_NEXT.with(|s| s.set(pid.as_raw()));
}

/// A tracee in a ptrace stop.
pub struct Stopped {
    pid: Pid,
    pub stop: Stop,
}

impl Running {
    /// Adopts a child that is (or will be) in a ptrace stop.
    pub fn adopt(pid: Pid) -> Running {
        Running { pid }
    }

    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Waits for the next stop or the end of the tracee.
    pub fn wait(self) -> Result<Waited> {
        wait_for(Some(self.pid)).map(|(_, w)| w)
    }
}

static INITS: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// `pid` is the init of a tracee's PID namespace: a child of the tracer that is not traced, whose
/// end the wait functions reap silently.
pub fn add_init(pid: Pid) {
    if let Ok(mut v) = INITS.lock() {
        v.push(pid.as_raw());
    }
}

fn forget_init(pid: Pid) -> bool {
    let Ok(mut v) = INITS.lock() else { return false };
    match v.iter().position(|&p| p == pid.as_raw()) {
        Some(i) => {
            v.swap_remove(i);
            true
        }
        None => false,
    }
}

/// Waits for the next stop or end of `pid`, or of any tracee when None (waitpid with __WALL).
pub fn wait_for(pid: Option<Pid>) -> Result<(Pid, Waited)> {
    loop {
        if let Some(w) = wait_opt(pid, false)? {
            return Ok(w);
        }
    }
}

/// Blocks SIGCHLD in the calling thread, and in the threads it starts after (they inherit the
/// mask; the program's launch and std's Command give their children an empty one): the
/// SIGCHLD the kernel sends the tracer at every stop and end of a tracee then stays pending, and
/// [`wait_for_within`] wakes at once instead of sleeping out its nap. Call it before any thread
/// is started (a thread that does not block it takes the signal, and the wait sleeps its nap).
pub fn hold_child_signals() {
    // SAFETY: plain calls on a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Like [`try_wait_for`], but waits up to `most` for something to report: until the next
/// SIGCHLD (see [`hold_child_signals`]; without it, for `most`). None if nothing came.
pub fn wait_for_within(pid: Option<Pid>, most: std::time::Duration) -> Result<Option<(Pid, Waited)>> {
    if let Some(w) = try_wait_for(pid)? {
        return Ok(Some(w));
    }
    let ts = libc::timespec { tv_sec: most.as_secs() as libc::time_t, tv_nsec: most.subsec_nanos() as libc::c_long };
    // SAFETY: sigtimedwait reads a local sigset_t and timespec; no siginfo is asked for. Its
    // result does not matter: a timeout, an interruption or the signal all mean "look again".
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigtimedwait(&set, std::ptr::null_mut(), &ts);
    }
    try_wait_for(pid)
}

/// Like [`wait_for`], but returns None at once when nothing is to report (WNOHANG).
pub fn try_wait_for(pid: Option<Pid>) -> Result<Option<(Pid, Waited)>> {
    wait_opt(pid, true)
}

fn wait_opt(pid: Option<Pid>, nohang: bool) -> Result<Option<(Pid, Waited)>> {
    let target = pid.unwrap_or(Pid::from_raw(-1));
    let flags = if nohang { libc::__WALL | libc::WNOHANG } else { libc::__WALL };
    loop {
        // nix's waitpid cannot decode a stop or death by a real-time signal (its Signal enum
        // ends at 31: EINVAL), so the status is decoded here, with the signal as a number.
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid writes one int at the given address.
        let r = unsafe { libc::waitpid(target.as_raw(), &mut status, flags) };
        if r < 0 {
            match nix::Error::last() {
                nix::Error::EINTR => continue,
                e => return Err(TraceError::ptrace(target, "waitpid", e)),
            }
        }
        if r == 0 {
            if nohang {
                return Ok(None);
            }
            continue;
        }
        let who = Pid::from_raw(r);
        let ended = libc::WIFEXITED(status) || libc::WIFSIGNALED(status);
        if ended && forget_init(who) {
            continue;
        }
        let unexpected = |what: String| TraceError::Unexpected { pid: who, what };
        let stop = if libc::WIFEXITED(status) {
            return Ok(Some((who, Waited::Exited(libc::WEXITSTATUS(status)))));
        } else if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            let sig = Sig::new(sig).ok_or_else(|| unexpected(format!("death by signal number {sig}")))?;
            return Ok(Some((who, Waited::Killed(sig))));
        } else if libc::WIFSTOPPED(status) {
            let sig = libc::WSTOPSIG(status);
            let event = (status >> 16) & 0xff;
            if sig == libc::SIGTRAP | 0x80 {
                // PTRACE_O_TRACESYSGOOD marks syscall stops.
                Stop::SyscallExit
            } else if event != 0 {
                match event {
                    libc::PTRACE_EVENT_SECCOMP => Stop::Seccomp,
                    libc::PTRACE_EVENT_EXEC => Stop::Exec,
                    libc::PTRACE_EVENT_CLONE | libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK => {
                        let child =
                            ptrace::getevent(who).map_err(|e| TraceError::ptrace(who, "PTRACE_GETEVENTMSG", e))?;
                        Stop::NewTask(Pid::from_raw(child as i32))
                    }
                    other => Stop::Event(other),
                }
            } else {
                Stop::Signal(Sig::new(sig).ok_or_else(|| unexpected(format!("stop by signal number {sig}")))?)
            }
        } else {
            // WIFCONTINUED: nothing to handle.
            continue;
        };
        return Ok(Some((who, Waited::Stopped(Stopped { pid: who, stop }))));
    }
}

/// Sends `sig` to `pid` with kill(2): any signal number, real-time ones included.
pub fn send_signal(pid: Pid, sig: Sig) -> Result<()> {
    // SAFETY: kill takes two integers and touches no memory of ours.
    let r = unsafe { libc::kill(pid.as_raw(), sig.raw()) };
    if r < 0 {
        return Err(TraceError::ptrace(pid, "kill", nix::Error::last()));
    }
    Ok(())
}

/// Sends `sig` to the thread `tid` alone (tkill(2)), as the kernel sends a signal it directs at
/// one thread. The caller holds `tid` in a ptrace stop, so the number cannot have been reused.
pub fn send_signal_to_thread(tid: Pid, sig: Sig) -> Result<()> {
    // SAFETY: tkill takes two integers and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_tkill, tid.as_raw(), sig.raw()) };
    if r < 0 {
        return Err(TraceError::ptrace(tid, "tkill", nix::Error::last()));
    }
    Ok(())
}

/// Sends `sig` to process `tgid`, or to its thread `tid`, from the tracer: with `info` (a
/// siginfo whose si_code a process may send, below 0) by rt_(tg)sigqueueinfo, which keeps it;
/// without, by kill or tgkill.
pub fn queue_signal(tgid: Pid, tid: Option<Pid>, sig: Sig, info: Option<&libc::siginfo_t>) -> Result<()> {
    let (tgid_, signo) = (tgid.as_raw(), sig.raw());
    // SAFETY: rt_(tg)sigqueueinfo read the siginfo_t we borrow for the call; kill and tgkill
    // take integers.
    let r = unsafe {
        match (info, tid) {
            (Some(info), None) => {
                libc::syscall(libc::SYS_rt_sigqueueinfo, tgid_, signo, info as *const libc::siginfo_t)
            }
            (Some(info), Some(tid)) => {
                libc::syscall(libc::SYS_rt_tgsigqueueinfo, tgid_, tid.as_raw(), signo, info as *const libc::siginfo_t)
            }
            (None, Some(tid)) => libc::syscall(libc::SYS_tgkill, tgid_, tid.as_raw(), signo),
            (None, None) => i64::from(libc::kill(tgid_, signo)),
        }
    };
    if r < 0 {
        return Err(TraceError::ptrace(tid.unwrap_or(tgid), "sending a signal", nix::Error::last()));
    }
    Ok(())
}

/// The size of the kernel's siginfo_t.
pub const SIGINFO_SIZE: usize = std::mem::size_of::<libc::siginfo_t>();

/// The bytes of a siginfo_t, as a log stores them.
pub fn siginfo_to_bytes(si: &libc::siginfo_t) -> Vec<u8> {
    // SAFETY: siginfo_t is plain data of SIGINFO_SIZE bytes; reading it as bytes is always valid.
    unsafe { std::slice::from_raw_parts((si as *const libc::siginfo_t).cast::<u8>(), SIGINFO_SIZE) }.to_vec()
}

/// A siginfo_t from a log's bytes; None unless there are exactly [`SIGINFO_SIZE`] of them.
pub fn siginfo_from_bytes(bytes: &[u8]) -> Option<libc::siginfo_t> {
    if bytes.len() != SIGINFO_SIZE {
        return None;
    }
    let mut si = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
    // SAFETY: the destination is SIGINFO_SIZE bytes long and every bit pattern is a valid
    // siginfo_t (integers and raw pointers).
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), si.as_mut_ptr().cast::<u8>(), SIGINFO_SIZE);
        Some(si.assume_init())
    }
}

/// PTRACE_CONT / PTRACE_SYSCALL / PTRACE_SINGLESTEP with a signal to deliver given as a number
/// (nix's requests take its Signal enum, which has no real-time signals).
fn resume(request: libc::c_uint, pid: Pid, sig: Option<Sig>) -> nix::Result<()> {
    let data = sig.map_or(0, Sig::raw) as libc::c_long;
    // SAFETY: these requests use no address and take the signal number as the data word.
    let r = unsafe { libc::ptrace(request, pid.as_raw(), std::ptr::null_mut::<libc::c_void>(), data) };
    if r < 0 {
        return Err(nix::Error::last());
    }
    Ok(())
}

impl Stopped {
    pub fn pid(&self) -> Pid {
        self.pid
    }

    fn err(&self, op: &'static str) -> impl Fn(nix::Error) -> TraceError {
        let pid = self.pid;
        move |e| TraceError::ptrace(pid, op, e)
    }

    pub fn regs(&self) -> Result<Regs> {
        ptrace::getregs(self.pid).map(Regs).map_err(self.err("PTRACE_GETREGS"))
    }

    pub fn set_regs(&self, regs: &Regs) -> Result<()> {
        ptrace::setregs(self.pid, regs.0).map_err(self.err("PTRACE_SETREGS"))
    }

    pub fn siginfo(&self) -> Result<libc::siginfo_t> {
        ptrace::getsiginfo(self.pid).map_err(self.err("PTRACE_GETSIGINFO"))
    }

    /// At an exec stop ([`Stop::Exec`], reported on the thread-group leader's tid): the tid the
    /// exec'ing thread had. A thread other than the leader takes over the leader's tid in
    /// execve, after the kernel ended every other thread (ptrace(2), "execve(2) under ptrace").
    pub fn exec_former_tid(&self) -> Result<Pid> {
        let msg = ptrace::getevent(self.pid).map_err(self.err("PTRACE_GETEVENTMSG"))?;
        Ok(Pid::from_raw(msg as i32))
    }

    /// Replaces the siginfo of the signal this task is stopped to deliver (PTRACE_SETSIGINFO).
    pub fn set_siginfo(&self, si: &libc::siginfo_t) -> Result<()> {
        ptrace::setsiginfo(self.pid, si).map_err(self.err("PTRACE_SETSIGINFO"))
    }

    /// The task's blocked-signal mask (PTRACE_GETSIGMASK): bit N-1 is signal N.
    pub fn sigmask(&self) -> Result<u64> {
        let mut mask: u64 = 0;
        // SAFETY: PTRACE_GETSIGMASK writes the 8-byte kernel sigset_t (its size is the address
        // argument) at the data pointer.
        let r = unsafe {
            libc::ptrace(libc::PTRACE_GETSIGMASK, self.pid.as_raw(), std::mem::size_of::<u64>(), &mut mask as *mut u64)
        };
        if r < 0 {
            return Err(self.err("PTRACE_GETSIGMASK")(nix::Error::last()));
        }
        Ok(mask)
    }

    /// Sets the task's blocked-signal mask (PTRACE_SETSIGMASK; SIGKILL and SIGSTOP stay
    /// unblockable).
    pub fn set_sigmask(&self, mask: u64) -> Result<()> {
        // SAFETY: PTRACE_SETSIGMASK reads the 8-byte kernel sigset_t (its size is the address
        // argument) at the data pointer, which points at a live u64.
        let r = unsafe {
            libc::ptrace(libc::PTRACE_SETSIGMASK, self.pid.as_raw(), std::mem::size_of::<u64>(), &mask as *const u64)
        };
        if r < 0 {
            return Err(self.err("PTRACE_SETSIGMASK")(nix::Error::last()));
        }
        Ok(())
    }

    /// Whether any signal is pending for this task, in its own queue or its process's
    /// (PTRACE_PEEKSIGINFO; blocked ones included).
    pub fn has_pending_signal(&self) -> Result<bool> {
        #[repr(C)]
        struct PeekArgs {
            off: u64,
            flags: u32,
            nr: i32,
        }
        const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
        for flags in [0, PTRACE_PEEKSIGINFO_SHARED] {
            let args = PeekArgs { off: 0, flags, nr: 1 };
            let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
            // SAFETY: PTRACE_PEEKSIGINFO reads the args struct and writes at most `nr` (1)
            // siginfo_t at the data pointer.
            let r = unsafe {
                libc::ptrace(libc::PTRACE_PEEKSIGINFO, self.pid.as_raw(), &args as *const PeekArgs, info.as_mut_ptr())
            };
            if r < 0 {
                return Err(self.err("PTRACE_PEEKSIGINFO")(nix::Error::last()));
            }
            if r > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub fn set_options(&self, opts: ptrace::Options) -> Result<()> {
        ptrace::setoptions(self.pid, opts).map_err(self.err("PTRACE_SETOPTIONS"))
    }

    /// Resumes to the next stop; the seccomp stop stays the only syscall-entry stop. After
    /// [`step_next`] for this task, resumes for one instruction instead (a debugger's stepi).
    pub fn cont(self, sig: Option<Sig>) -> Result<Running> {
        if STEP_NEXT.with(|s| s.get()) == self.pid.as_raw() {
            STEP_NEXT.with(|s| s.set(0));
            resume(libc::PTRACE_SINGLESTEP, self.pid, sig).map_err(self.err("PTRACE_SINGLESTEP"))?;
        } else {
            resume(libc::PTRACE_CONT, self.pid, sig).map_err(self.err("PTRACE_CONT"))?;
        }
        Ok(Running { pid: self.pid })
    }

    /// Executes one instruction (PTRACE_SINGLESTEP) and stops with a SIGTRAP; the signal of a
    /// signal-delivery stop is not delivered.
    pub fn step(self) -> Result<Running> {
        resume(libc::PTRACE_SINGLESTEP, self.pid, None).map_err(self.err("PTRACE_SINGLESTEP"))?;
        Ok(Running { pid: self.pid })
    }

    /// The x87/SSE registers (PTRACE_GETFPREGS).
    pub fn fpregs(&self) -> Result<libc::user_fpregs_struct> {
        let mut fp = std::mem::MaybeUninit::<libc::user_fpregs_struct>::zeroed();
        // SAFETY: PTRACE_GETFPREGS writes one user_fpregs_struct at the given address.
        let r = unsafe {
            libc::ptrace(
                libc::PTRACE_GETFPREGS,
                self.pid.as_raw(),
                std::ptr::null_mut::<libc::c_void>(),
                fp.as_mut_ptr(),
            )
        };
        if r < 0 {
            return Err(self.err("PTRACE_GETFPREGS")(nix::Error::last()));
        }
        // SAFETY: zero-initialized plain data, filled by the kernel.
        Ok(unsafe { fp.assume_init() })
    }

    /// A view of a task known to be in a ptrace stop (a debugger reading another thread).
    pub fn assume_stopped(pid: Pid) -> Stopped {
        Stopped { pid, stop: Stop::Event(0) }
    }

    /// Resumes so that the current syscall's exit stops too.
    pub fn cont_to_exit(self) -> Result<Running> {
        resume(libc::PTRACE_SYSCALL, self.pid, None).map_err(self.err("PTRACE_SYSCALL"))?;
        Ok(Running { pid: self.pid })
    }

    /// Kills the tracee and returns a handle to reap it.
    pub fn kill(self) -> Running {
        let _ = send_signal(self.pid, Sig::SIGKILL);
        Running { pid: self.pid }
    }

    fn mem_err(&self, op: &'static str, addr: u64, len: usize) -> impl Fn(nix::Error) -> TraceError {
        let pid = self.pid;
        move |source| TraceError::Memory { pid, op, addr, len, source }
    }

    /// Reads up to `buf.len()` bytes at `addr`; returns how many could be read (a read crossing
    /// into an unmapped page stops there).
    pub fn read_some(&self, addr: u64, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let len = buf.len();
        let remote = [RemoteIoVec { base: addr as usize, len }];
        process_vm_readv(self.pid, &mut [IoSliceMut::new(buf)], &remote).map_err(self.mem_err("read", addr, len))
    }

    /// Reads exactly `len` bytes at `addr`.
    pub fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let n = self.read_some(addr, &mut buf)?;
        if n < len {
            return Err(self.mem_err("read", addr, len)(nix::Error::EFAULT));
        }
        Ok(buf)
    }

    /// Reads a NUL-terminated string (without the NUL), at most `max` bytes.
    pub fn read_cstr(&self, addr: u64, max: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 256];
        let mut at = addr;
        while out.len() < max {
            // Stay within the page so a string ending just before an unmapped page still reads.
            let to_page_end = 4096 - (at as usize % 4096);
            let want = chunk.len().min(to_page_end);
            let n = self.read_some(at, &mut chunk[..want])?;
            if n == 0 {
                return Err(self.mem_err("read string", addr, out.len())(nix::Error::EFAULT));
            }
            if let Some(z) = chunk[..n].iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..z]);
                return Ok(out);
            }
            out.extend_from_slice(&chunk[..n]);
            at += n as u64;
        }
        Ok(out)
    }

    /// Writes `data` at `addr` (respects page protections, like the kernel's own copy_to_user).
    /// Writes what fits from the start of `data` (stops at the first page the tracee does not
    /// have writable); returns how many bytes were written.
    pub fn write_some(&self, addr: u64, data: &[u8]) -> Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let remote = [RemoteIoVec { base: addr as usize, len: data.len() }];
        match process_vm_writev(self.pid, &[IoSlice::new(data)], &remote) {
            Ok(n) => Ok(n),
            Err(nix::Error::EFAULT) => Ok(0),
            Err(e) => Err(self.mem_err("write", addr, data.len())(e)),
        }
    }

    pub fn write(&self, addr: u64, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let remote = [RemoteIoVec { base: addr as usize, len: data.len() }];
        let n = process_vm_writev(self.pid, &[IoSlice::new(data)], &remote).map_err(self.mem_err(
            "write",
            addr,
            data.len(),
        ))?;
        if n < data.len() {
            return Err(self.mem_err("write", addr, data.len())(nix::Error::EFAULT));
        }
        Ok(())
    }

    /// /proc/PID/mem, opened per use: it names one address space, which exec replaces.
    fn mem_file(&self, op: &'static str, addr: u64, len: usize) -> Result<File> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/{}/mem", self.pid))
            .map_err(|e| self.mem_err(op, addr, len)(nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))
    }

    /// Reads through /proc/PID/mem, which also reaches pages the tracee cannot read itself.
    pub fn read_forced(&self, addr: u64, len: usize) -> Result<Vec<u8>> {
        let f = self.mem_file("read", addr, len)?;
        let mut buf = vec![0u8; len];
        let mut done = 0;
        while done < len {
            match f.read_at(&mut buf[done..], addr + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) => {
                    return Err(self.mem_err("read", addr, len)(nix::Error::from_raw(
                        e.raw_os_error().unwrap_or(libc::EIO),
                    )))
                }
            }
        }
        buf.truncate(done);
        Ok(buf)
    }

    /// Writes through /proc/PID/mem (FOLL_FORCE: works on read-only private mappings).
    pub fn write_forced(&self, addr: u64, data: &[u8]) -> Result<()> {
        let f = self.mem_file("write", addr, data.len())?;
        f.write_all_at(data, addr).map_err(|e| {
            self.mem_err("write", addr, data.len())(nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
        })
    }
}

/// The pid of a task as the program sees it (the last field of /proc/PID/status's NSpid: its
/// own PID namespace), and its real uid. Readable for a zombie too; None once it is reaped.
pub fn ns_pid_uid(pid: Pid) -> Option<(i32, u32)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::split_whitespace);
    let ns_pid = field("NSpid:")?.last()?.parse().ok()?;
    let uid = field("Uid:")?.next()?.parse().ok()?;
    Some((ns_pid, uid))
}

/// The signal a process sends its parent when it ends (field 38 of /proc/PID/stat): 0 for a
/// child cloned without one until it calls execve, which makes it SIGCHLD. None once reaped.
pub fn exit_signal(pid: Pid) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start with field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(38 - 3)?.parse().ok()
}

/// Reaps a tracee that is known to be dying (after SIGKILL or a Gone error).
pub fn reap(pid: Pid) -> Option<Waited> {
    let mut r = Running::adopt(pid);
    loop {
        match r.wait() {
            Ok(Waited::Stopped(s)) => {
                // Still in a stop (SIGKILL not yet processed): resume so it can die.
                r = match s.cont(None) {
                    Ok(r) => r,
                    Err(_) => Running::adopt(pid),
                };
            }
            Ok(w) => return Some(w),
            Err(_) => return None,
        }
    }
}

/// Kills and reaps every remaining tracee (after an error). A thread group leader is reported
/// only once its other threads are reaped, so waiting for it alone would hang.
pub fn kill_and_reap_all(tids: impl IntoIterator<Item = Pid>) {
    for tid in tids {
        let _ = send_signal(tid, Sig::SIGKILL);
    }
    loop {
        match wait_for(None) {
            Ok((_, Waited::Stopped(s))) => {
                let _ = s.cont(None);
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}
