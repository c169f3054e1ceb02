//! The deterministic start of a tracee.
//!
//! In the child, before exec: an optional private mount namespace with the data directory bound
//! at the recorded path, ASLR off (personality), the recorded cwd, PTRACE_TRACEME and a SIGSTOP so
//! the tracer attaches before the filter exists (a RET_TRACE filter without a tracer makes
//! syscalls fail with ENOSYS), rdtsc trapping (PR_SET_TSC survives exec), no_new_privs and the
//! seccomp filter, then execve. At the exec stop the tracer redirects the vDSO's clock functions
//! to the clock page ([`crate::clock`]) or, where it cannot, hides the vDSO (AT_SYSINFO_EHDR →
//! AT_IGNORE) so time queries become syscalls; and it reads or restores the 16 AT_RANDOM bytes.

use crate::tracee::{reap, Running, Stop, Stopped, Waited};
use crate::{Result, TraceError};
use nix::sys::ptrace::Options;
use nix::unistd::{fork, ForkResult, Pid};
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

/// What to start and how.
pub struct LaunchSpec {
    pub exe: CString,
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    pub cwd: Option<CString>,
    /// (source, target): bind-mount source at target in a private mount namespace.
    pub bind: Option<(CString, CString)>,
    /// AT_RANDOM bytes to restore (replay); None keeps the kernel's (record).
    pub at_random: Option<[u8; 16]>,
    /// Run the program in a new PID namespace (with its own /proc), so that its pids are the
    /// same in every run: 2 for the program, then in creation order. Needs root; without it the
    /// program runs in the tracer's namespace ([`Launched::pid_ns`] says which).
    pub pid_ns: bool,
    /// What to do with the vDSO at exec.
    pub vdso: Vdso,
    /// The umask to start the program with (replay: the recording's); None keeps ftexec's.
    pub umask: Option<u32>,
    /// Resource limits to start the program with, (resource, soft, hard) (replay: the
    /// recording's, so that a replica that goes live has them); empty keeps ftexec's.
    pub limits: Vec<(u32, u64, u64)>,
}

/// The vDSO at an exec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vdso {
    /// Hide it: every clock read is a traced syscall.
    Hide,
    /// Redirect its clock functions to the clock page; fail if this kernel's vDSO cannot be.
    ClockPage,
    /// Redirect if possible, else hide (recording).
    TryClockPage,
}

/// A tracee stopped right after its exec.
pub struct Launched {
    pub tracee: Stopped,
    pub at_random: [u8; 16],
    /// Initial stack pointer.
    pub sp: u64,
    /// Whether the program runs in its own PID namespace.
    pub pid_ns: bool,
    /// Whether its vDSO goes to the clock page (which still has to be installed).
    pub clock_page: bool,
    /// Why not, when it was tried.
    pub no_clock_page: Option<String>,
}

/// What [`after_exec`] did.
pub struct AfterExec {
    pub at_random: [u8; 16],
    pub sp: u64,
    pub clock_page: bool,
    /// Why the clock page could not be used (recording falls back to hiding the vDSO).
    pub no_clock_page: Option<String>,
}

// Steps reported by the child through the error pipe.
/// Where a program launched in its own namespaces has a tmpfs of its own (POSIX shared memory:
/// PostgreSQL's dynamic shared memory, shm_open): what it creates there is its own replicated
/// state, made for real in every run like the data directory's files.
pub const PRIVATE_SHM: &std::ffi::CStr = c"/dev/shm";

const STEPS: [&str; 15] = [
    "unshare(CLONE_NEWNS)",
    "make / private",
    "bind-mount the data directory",
    "personality(ADDR_NO_RANDOMIZE)",
    "chdir to the recorded working directory",
    "PTRACE_TRACEME",
    "prctl(PR_SET_TSC)",
    "prctl(PR_SET_NO_NEW_PRIVS)",
    "install the seccomp filter",
    "execve",
    "mount /proc for the new PID namespace",
    "fork the program inside the PID namespace",
    "close_range(3, ~0, CLOSE_RANGE_CLOEXEC) on the fds ftexec inherited",
    "set the recording's resource limits",
    "mount a tmpfs of the program's own at /dev/shm",
];

const AT_NULL: u64 = 0;
const AT_IGNORE: u64 = 1;
const AT_RANDOM: u64 = 25;
const AT_SYSINFO_EHDR: u64 = 33;

/// The fds beyond 0-2 that ftexec inherited without close-on-exec, with what they name: the
/// program does not get them (they are not in the log; see `program_setup`), and a caller says
/// so.
pub fn inherited_fds() -> Vec<(i32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return Vec::new() };
    let mut fds: Vec<(i32, String)> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&fd| fd > 2 && crate::procfs::fd_flags(std::process::id() as i32, fd) & libc::O_CLOEXEC == 0)
        .filter_map(|fd| Some((fd, std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?.display().to_string())))
        .collect();
    fds.sort();
    fds
}

/// Starts the program under the tracer and returns it stopped after exec.
pub fn launch(spec: &LaunchSpec, filter: &[seccompiler::sock_filter]) -> Result<Launched> {
    let exe_name = spec.exe.to_string_lossy().into_owned();
    let fail = |why: String| TraceError::Launch { exe: exe_name.clone(), why };

    // Everything the child touches is prepared here: after fork only async-signal-safe calls.
    let argv: Vec<*const libc::c_char> =
        spec.argv.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    let envp: Vec<*const libc::c_char> =
        spec.env.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    // seccompiler's sock_filter has the kernel's layout (u16 code, u8 jt, u8 jf, u32 k).
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut libc::sock_filter };
    let root = c"/";
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| fail(format!("pipe2: {e}")))?;
    pin_to_current_cpu();

    let proc_src = c"proc";
    let fresh = Fresh { spec, argv: &argv, envp: &envp, prog: &prog, root: root.as_ptr(), proc: proc_src.as_ptr() };
    if spec.pid_ns {
        // A fork-like clone whose child is the init (pid 1) of a new PID namespace, and of a new
        // IPC namespace (System V IPC and its ids are the program's own, the same in every run);
        // the program will be its child, pid 2. A user without the privilege gets them inside a
        // user namespace of its own (its uid and gid mapped to themselves, as rootless
        // containers do); where that is not allowed either, a plain fork below.
        let ns = libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::SIGCHLD;
        // SAFETY: clone without CLONE_VM and without a new stack behaves like fork.
        let mut r = unsafe { libc::syscall(libc::SYS_clone, ns as libc::c_ulong, 0, 0, 0, 0) };
        if r == 0 {
            drop(rd);
            // SAFETY: as for fork below; `ns_init` never returns.
            unsafe { ns_init(&fresh, wr) }
        }
        let mut go = None;
        if r < 0 && nix::Error::last() == nix::Error::EPERM {
            let (go_rd, go_wr) =
                nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| fail(format!("pipe2: {e}")))?;
            // SAFETY: as above.
            r = unsafe { libc::syscall(libc::SYS_clone, (ns | libc::CLONE_NEWUSER) as libc::c_ulong, 0, 0, 0, 0) };
            if r == 0 {
                drop(rd);
                drop(go_wr);
                // SAFETY: raw syscalls on a pipe of ours; then as for fork below.
                unsafe {
                    // The parent maps our ids first: until then, no mount or file operation.
                    let mut b = 0u8;
                    if libc::read(go_rd.as_raw_fd(), (&mut b as *mut u8).cast(), 1) != 1 {
                        libc::_exit(127);
                    }
                    libc::close(go_rd.as_raw_fd());
                    ns_init(&fresh, wr)
                }
            }
            go = Some(go_wr);
        }
        if r > 0 {
            drop(wr);
            let child = Pid::from_raw(r as i32);
            if let Some(go) = go {
                if let Err(why) = map_own_ids(child) {
                    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                    let _ = nix::sys::wait::waitpid(child, None);
                    return Err(fail(format!("mapping this user's ids in a user namespace: {why}")));
                }
                // SAFETY: one byte to the child from a local.
                unsafe { libc::write(go.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
            }
            return parent(child, true, spec, rd).map_err(|e| match e {
                TraceError::Launch { why, .. } => fail(why),
                other => other,
            });
        }
    }
    // SAFETY: the child only makes raw syscalls on memory prepared above, then execs or _exits.
    match unsafe { fork() }.map_err(|e| fail(format!("fork: {e}")))? {
        ForkResult::Child => {
            drop(rd);
            // SAFETY: all pointers point into `spec`, `argv`, `envp` and `prog`, alive in this
            // copy of the address space; `child` never returns.
            unsafe { child(&fresh, wr) }
        }
        ForkResult::Parent { child } => {
            drop(wr);
            parent(child, false, spec, rd).map_err(|e| match e {
                TraceError::Launch { why, .. } => fail(why),
                other => other,
            })
        }
    }
}

/// The user namespace of `child` maps this process's uid and gid to themselves, so that the
/// program sees the ids it would see natively (supplementary groups show as the overflow gid,
/// and setgroups is denied, as in any user namespace made without privilege).
fn map_own_ids(child: Pid) -> std::io::Result<()> {
    // SAFETY: geteuid and getegid have no preconditions and cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    std::fs::write(format!("/proc/{child}/uid_map"), format!("{uid} {uid} 1\n"))?;
    std::fs::write(format!("/proc/{child}/setgroups"), "deny")?;
    std::fs::write(format!("/proc/{child}/gid_map"), format!("{gid} {gid} 1\n"))
}

/// Whether this process can give a program PID, IPC and mount namespaces of its own: with the
/// privilege (root), or inside a user namespace of its own (an unprivileged user, where the
/// kernel allows them).
pub fn can_make_namespaces() -> bool {
    for flags in [libc::CLONE_NEWNS, libc::CLONE_NEWUSER | libc::CLONE_NEWNS] {
        // SAFETY: a fork-like clone whose child exits at once, reaped below.
        let r = unsafe { libc::syscall(libc::SYS_clone, (flags | libc::SIGCHLD) as libc::c_ulong, 0, 0, 0, 0) };
        if r == 0 {
            // SAFETY: the child only exits.
            unsafe { libc::_exit(0) };
        }
        if r > 0 {
            let mut st = 0;
            // SAFETY: reaps the child made above.
            unsafe { libc::waitpid(r as i32, &mut st, 0) };
            return true;
        }
    }
    false
}

/// What a freshly forked child works with: prepared before the fork.
struct Fresh<'a> {
    spec: &'a LaunchSpec,
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    prog: &'a libc::sock_fprog,
    root: *const libc::c_char,
    proc: *const libc::c_char,
}

/// Reports the failed step and errno through the error pipe and exits.
fn die(errfd: i32, step: u8) -> ! {
    // SAFETY: errno location and write/_exit are async-signal-safe.
    unsafe {
        let e = *libc::__errno_location();
        let mut msg = [0u8; 5];
        msg[0] = step;
        msg[1..].copy_from_slice(&e.to_le_bytes());
        libc::write(errfd, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }
}

/// The program's signal state, not ftexec's: default dispositions, an empty mask. The namespace's
/// init thus ignores a stop signal sent to the replica's process group (an init gets only the
/// signals it handles), rather than running ftexec's handler.
fn reset_signals() {
    // SAFETY: plain syscalls on a local set.
    unsafe {
        for sig in [libc::SIGPIPE, libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
            libc::signal(sig, libc::SIG_DFL);
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// A private mount namespace, with the data directory bound at its recorded path and, for a new
/// PID namespace, its own /proc.
///
/// # Safety
/// Must run in a freshly forked child; the pointers in `f` must be valid.
unsafe fn mounts(f: &Fresh<'_>, errfd: i32, proc: bool) {
    if f.spec.bind.is_none() && !proc {
        return;
    }
    // SAFETY: plain syscalls with valid arguments.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            die(errfd, 0);
        }
        let private = libc::MS_REC | libc::MS_PRIVATE;
        if libc::mount(std::ptr::null(), f.root, std::ptr::null(), private, std::ptr::null()) != 0 {
            die(errfd, 1);
        }
        if proc {
            let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            if libc::mount(f.proc, c"/proc".as_ptr(), f.proc, flags, std::ptr::null()) != 0 {
                die(errfd, 10);
            }
            // POSIX shared memory (shm_open, /dev/shm) of the program's own, empty at start as
            // its IPC namespace is: files in it are replicated state (see PRIVATE_SHM).
            let shm_flags = libc::MS_NOSUID | libc::MS_NODEV;
            if libc::mount(
                c"tmpfs".as_ptr(),
                PRIVATE_SHM.as_ptr(),
                c"tmpfs".as_ptr(),
                shm_flags,
                c"mode=1777".as_ptr().cast(),
            ) != 0
            {
                die(errfd, 14);
            }
        }
        if let Some((src, dst)) = &f.spec.bind {
            if libc::mount(src.as_ptr(), dst.as_ptr(), std::ptr::null(), libc::MS_BIND | libc::MS_REC, std::ptr::null())
                != 0
            {
                die(errfd, 2);
            }
        }
    }
}

/// The init of the program's PID namespace: sets up the mounts, lets the tracer attach, forks
/// the program (which the tracer inherits through PTRACE_O_TRACEFORK, then detaches from this
/// init), and reaps until the program is gone; its end takes the namespace down.
///
/// # Safety
/// Must run in a freshly cloned child; the pointers in `f` must be valid.
unsafe fn ns_init(f: &Fresh<'_>, errfd: OwnedFd) -> ! {
    let fd = errfd.as_raw_fd();
    reset_signals();
    // SAFETY: raw syscalls only (another thread of the tracer may have held a libc lock).
    unsafe {
        mounts(f, fd, true);
        if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
            die(fd, 5);
        }
        libc::syscall(libc::SYS_kill, libc::syscall(libc::SYS_getpid), libc::SIGSTOP);
        let program = libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0);
        if program == 0 {
            program_setup(f, fd);
        }
        if program < 0 {
            die(fd, 11);
        }
        libc::close(fd);
        // It reaps until no process is left in the namespace. It does not end with the program's
        // first process: that would make the kernel SIGKILL the others at a moment of its own,
        // racing with what they do at record and not at the same point at replay. The tracer
        // kills them itself and logs it (`Recorder::take_down`).
        loop {
            let mut status = 0;
            let r = libc::syscall(libc::SYS_wait4, -1, &mut status as *mut i32, libc::__WALL, 0);
            if r < 0 && *libc::__errno_location() == libc::ECHILD {
                libc::_exit(0);
            }
        }
    }
}

/// The program's side of the launch without a PID namespace.
///
/// # Safety
/// Must run in a freshly forked child; the pointers in `f` must be valid.
unsafe fn child(f: &Fresh<'_>, errfd: OwnedFd) -> ! {
    let fd = errfd.as_raw_fd();
    reset_signals();
    // SAFETY: plain syscalls with valid arguments.
    unsafe {
        mounts(f, fd, false);
        if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
            die(fd, 5);
        }
        libc::syscall(libc::SYS_kill, libc::syscall(libc::SYS_getpid), libc::SIGSTOP);
        program_setup(f, fd)
    }
}

/// The last steps before the program: no ASLR, the recorded cwd, rdtsc trapping, no new
/// privileges, the seccomp filter, exec. The tracer is attached already.
///
/// # Safety
/// Must run in a freshly forked child; the pointers in `f` must be valid.
unsafe fn program_setup(f: &Fresh<'_>, fd: i32) -> ! {
    // SAFETY: plain syscalls with valid arguments.
    unsafe {
        let persona = libc::personality(0xffff_ffff);
        if persona == -1 || libc::personality((persona | libc::ADDR_NO_RANDOMIZE) as libc::c_ulong) == -1 {
            die(fd, 3);
        }
        if let Some(cwd) = &f.spec.cwd {
            if libc::chdir(cwd.as_ptr()) != 0 {
                die(fd, 4);
            }
        }
        if libc::prctl(libc::PR_SET_TSC, libc::PR_TSC_SIGSEGV, 0, 0, 0) != 0 {
            die(fd, 6);
        }
        // Only stdin, stdout and stderr reach the program: an fd ftexec inherited is not in the
        // log, so a replica (or a replay from another shell) would not have it (see
        // `inherited_fds`). Marked close-on-exec, so that the error pipe still reports a failed
        // exec; the kernel closes them at the exec.
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) != 0 {
            die(fd, 12);
        }
        if let Some(mask) = f.spec.umask {
            libc::umask(mask as libc::mode_t);
        }
        for &(resource, soft, hard) in &f.spec.limits {
            let new = libc::rlimit64 { rlim_cur: soft, rlim_max: hard };
            if libc::prlimit64(0, resource as _, &new, std::ptr::null_mut()) != 0 {
                die(fd, 13);
            }
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            die(fd, 7);
        }
        if libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, f.prog as *const libc::sock_fprog) != 0 {
            die(fd, 8);
        }
        libc::execve(f.spec.exe.as_ptr(), f.argv.as_ptr(), f.envp.as_ptr());
        die(fd, 9)
    }
}

/// Pins the tracer (and so, by inheritance, every tracee) to the CPU it runs on. Only one task
/// runs at a time anyway, and a ptrace stop that hands control between two CPUs costs about three
/// times one that stays on a CPU (measured here: 67 vs 21 µs per stop on an idle 2-vCPU VM). The
/// program sees that one CPU in sched_getaffinity, in every run alike (rr does the same).
fn pin_to_current_cpu() {
    // SAFETY: sched_getcpu and sched_setaffinity on a zeroed, then filled, local cpu_set_t.
    unsafe {
        let cpu = libc::sched_getcpu();
        if cpu < 0 {
            return;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn child_failure(pid: Pid, errfd: &OwnedFd, status: String) -> TraceError {
    let mut msg = [0u8; 5];
    // SAFETY: reading into a local buffer from a pipe we own.
    let n = unsafe { libc::read(errfd.as_raw_fd(), msg.as_mut_ptr().cast(), msg.len()) };
    let why = if n == 5 {
        let step = STEPS.get(msg[0] as usize).copied().unwrap_or("setup");
        let errno = nix::Error::from_raw(i32::from_le_bytes([msg[1], msg[2], msg[3], msg[4]]));
        let hint = match (msg[0], errno) {
            (0..=2, nix::Error::EPERM) => " (a bind mount needs root; or replay with the recorded data directory path)",
            (6, _) => " (this kernel or CPU cannot trap rdtsc)",
            (8, _) => " (this kernel lacks seccomp filters)",
            (13, nix::Error::EPERM) => {
                " (a hard limit above this user's needs CAP_SYS_RESOURCE: replay as root or as the user that recorded)"
            }
            _ => "",
        };
        format!("{step} failed in the child: {errno}{hint}")
    } else {
        format!("the program ended before it started ({status})")
    };
    let _ = pid;
    TraceError::Launch { exe: String::new(), why }
}

fn parent(first: Pid, pid_ns: bool, spec: &LaunchSpec, errfd: OwnedFd) -> Result<Launched> {
    // 1. The child stops itself after PTRACE_TRACEME.
    let ended = |pid: Pid, w: Waited| match w {
        Waited::Exited(c) => child_failure(pid, &errfd, format!("exit status {c}")),
        Waited::Killed(s) => child_failure(pid, &errfd, format!("killed by {s}")),
        Waited::Stopped(s) => TraceError::Unexpected { pid, what: format!("{:?}", s.stop) },
    };
    let stopped = match Running::adopt(first).wait()? {
        Waited::Stopped(s) => s,
        w => return Err(ended(first, w)),
    };
    let opts = Options::PTRACE_O_TRACESYSGOOD
        | Options::PTRACE_O_TRACESECCOMP
        | Options::PTRACE_O_TRACEEXEC
        | Options::PTRACE_O_EXITKILL
        | Options::PTRACE_O_TRACECLONE
        | Options::PTRACE_O_TRACEFORK
        | Options::PTRACE_O_TRACEVFORK;
    stopped.set_options(opts)?;
    let (pid, stopped) = if pid_ns { adopt_program(first, stopped, &ended)? } else { (first, stopped) };
    // 2. Run to the exec: the only traced syscall on the way is execve itself.
    let mut running = stopped.cont(None)?;
    let stopped = loop {
        match running.wait()? {
            Waited::Stopped(s) => match s.stop {
                Stop::Exec => break s,
                Stop::Seccomp => running = s.cont(None)?,
                Stop::Signal(sig) => running = s.cont(Some(sig))?,
                other => {
                    let _ = reap_killed(s);
                    return Err(TraceError::Unexpected { pid, what: format!("{other:?} before exec") });
                }
            },
            w => return Err(ended(pid, w)),
        }
    };
    // 3. Fix up the auxiliary vector.
    match after_exec(&stopped, spec.at_random, spec.vdso) {
        Ok(a) => {
            let (at_random, sp, clock_page, no_clock_page) = (a.at_random, a.sp, a.clock_page, a.no_clock_page);
            Ok(Launched { tracee: stopped, at_random, sp, pid_ns, clock_page, no_clock_page })
        }
        Err(e) => {
            let _ = reap_killed(stopped);
            Err(e)
        }
    }
}

/// With a PID namespace: the namespace's init forks the program, which the tracer inherits
/// (PTRACE_O_TRACEFORK); the init is let go and the program, stopped at its start, returned.
fn adopt_program(init: Pid, stopped: Stopped, ended: &dyn Fn(Pid, Waited) -> TraceError) -> Result<(Pid, Stopped)> {
    // The options set on the init (PTRACE_O_TRACEFORK among them) pass to the program.
    let mut running = stopped.cont(None)?;
    let program = loop {
        match running.wait()? {
            Waited::Stopped(s) => match s.stop {
                Stop::NewTask(p) => {
                    nix::sys::ptrace::detach(init, None).map_err(|e| TraceError::ptrace(init, "PTRACE_DETACH", e))?;
                    break p;
                }
                Stop::Signal(sig) => running = s.cont(Some(sig))?,
                _ => running = s.cont(None)?,
            },
            w => return Err(ended(init, w)),
        }
    };
    crate::tracee::add_init(init);
    // The program starts in a SIGSTOP stop (auto-attached); that stop is not delivered.
    match Running::adopt(program).wait()? {
        Waited::Stopped(s) => Ok((program, s)),
        w => Err(ended(program, w)),
    }
}

/// At a PTRACE_EVENT_EXEC stop: redirects or hides the vDSO as `vdso` says, and reads, or with
/// `at_random` restores, the 16 AT_RANDOM bytes.
pub fn after_exec(stopped: &Stopped, at_random: Option<[u8; 16]>, vdso: Vdso) -> Result<AfterExec> {
    let sp = stopped.regs()?.sp();
    let (at_random_addr, ehdr_slot) = scan_auxv(stopped, sp)?;
    let (mut clock_page, mut no_clock_page) = (false, None);
    if let Some(slot) = ehdr_slot {
        let base = {
            let b = stopped.read(slot + 8, 8)?;
            u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
        };
        if vdso != Vdso::Hide {
            match crate::clock::patch_vdso(stopped, base)? {
                Ok(()) => clock_page = true,
                Err(crate::clock::NoPatch(why)) if vdso == Vdso::ClockPage => {
                    return Err(TraceError::ClockPage { why })
                }
                Err(crate::clock::NoPatch(why)) => no_clock_page = Some(why),
            }
        }
        if !clock_page {
            stopped.write(slot, &AT_IGNORE.to_le_bytes())?;
        }
    } else if vdso == Vdso::ClockPage {
        return Err(TraceError::ClockPage { why: "the program has no vDSO here".into() });
    } else if vdso == Vdso::TryClockPage {
        no_clock_page = Some("the kernel gave the program no vDSO".into());
    }
    let mut bytes = [0u8; 16];
    if let Some(addr) = at_random_addr {
        match at_random {
            Some(b) => {
                stopped.write(addr, &b)?;
                bytes = b;
            }
            None => bytes.copy_from_slice(&stopped.read(addr, 16)?),
        }
    }
    Ok(AfterExec { at_random: bytes, sp, clock_page, no_clock_page })
}

fn reap_killed(s: Stopped) -> Option<Waited> {
    let pid = s.pid();
    let _ = s.kill();
    reap(pid)
}

/// Walks argc, argv, envp to the auxiliary vector; returns the AT_RANDOM address and the address
/// of the AT_SYSINFO_EHDR entry's type word.
fn scan_auxv(t: &Stopped, sp: u64) -> Result<(Option<u64>, Option<u64>)> {
    let word = |addr: u64| -> Result<u64> {
        let b = t.read(addr, 8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&b);
        Ok(u64::from_le_bytes(a))
    };
    let argc = word(sp)?;
    let mut at = sp + 8 + (argc + 1) * 8;
    // Skip envp.
    let mut guard = 0;
    while word(at)? != 0 {
        at += 8;
        guard += 1;
        if guard > 1 << 20 {
            return Err(TraceError::Unexpected {
                pid: t.pid(),
                what: "unterminated environment on the new stack".into(),
            });
        }
    }
    at += 8;
    let (mut random, mut ehdr) = (None, None);
    for _ in 0..512 {
        let (ty, val) = (word(at)?, word(at + 8)?);
        match ty {
            AT_NULL => break,
            AT_RANDOM => random = Some(val),
            AT_SYSINFO_EHDR => ehdr = Some(at),
            _ => {}
        }
        at += 16;
    }
    Ok((random, ehdr))
}
