//! A process's kernel state, read by the tracer at a checkpoint and rebuilt in a fresh process at
//! a restore: its mappings and the pages the program wrote in them, one task's registers (with
//! the XSAVE area), signal mask, handlers and alternate stack, robust list, clear_child_tid and
//! name, and the kernel objects behind its fds. What the tracer knows on top of the kernel (the
//! fd model, replay's bookkeeping) is ft-replay's (replay/src/replay/checkpoint.rs).
//!
//! Pages: a private mapping keeps only the pages the program wrote (/proc/PID/pagemap: present
//! and not a file page, or swapped); a file's other pages come from the file again, which must
//! have the same blake3. A shared anonymous mapping keeps every page of its object.

use crate::inject::Remote;
use crate::{Result, Stopped, TraceError};

mod rebuild;
pub mod sysv;
use rebuild::free_gap;
pub use rebuild::Rebuild;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Mutex;

pub const PAGE: u64 = 4096;
/// A syscall number no table entry has: the filter traps it, the kernel answers ENOSYS. The
/// injection point of a capture or a restore re-executes it to come back to its seccomp stop.
pub const TRAP_NR: u64 = 999;
/// Bytes of the kernel's struct sigaction (handler, flags, restorer, 8-byte mask).
const SIGACTION_LEN: usize = 32;
/// Bytes of stack_t.
const STACK_T_LEN: usize = 24;
/// The XSAVE area read with PTRACE_GETREGSET; the kernel says how much it filled.
const XSTATE_MAX: usize = 16384;
const NT_X86_XSTATE: usize = 0x202;

/// Why a process cannot be checkpointed (yet) or restored: said, never a wrong state.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error("{0}")]
    Unsupported(String),
    #[error("{what}: {why}")]
    Restore { what: String, why: String },
    #[error("read {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

type CResult<T> = std::result::Result<T, CheckpointError>;

fn io(path: impl Into<String>) -> impl FnOnce(std::io::Error) -> CheckpointError {
    let path = path.into();
    move |source| CheckpointError::Io { path, source }
}

fn restore_err(what: impl Into<String>, why: impl Into<String>) -> CheckpointError {
    CheckpointError::Restore { what: what.into(), why: why.into() }
}

/// One line of /proc/PID/maps.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    /// PROT_READ | PROT_WRITE | PROT_EXEC.
    pub prot: i32,
    pub shared: bool,
    pub offset: u64,
    /// A path, `[heap]`, `[stack]`, `[vdso]`..., or empty (anonymous).
    pub name: String,
    /// The inode of a file or shared anonymous mapping: the same object in two processes.
    #[serde(default)]
    pub inode: u64,
}

impl Vma {
    fn len(&self) -> u64 {
        self.end - self.start
    }
    fn is_file(&self) -> bool {
        self.name.starts_with('/') && !self.is_shared_anon() && !self.is_sysv()
    }
    /// A System V shared memory segment (its inode is the segment's id): the segment is kept
    /// once in the checkpoint ([`sysv`]) and attached again at a restore.
    pub fn is_sysv(&self) -> bool {
        self.shared && self.name.starts_with("/SYSV")
    }
    /// MAP_SHARED|MAP_ANONYMOUS memory (the kernel shows it as a deleted /dev/zero).
    pub fn is_shared_anon(&self) -> bool {
        self.shared && self.name.starts_with("/dev/zero")
    }
    /// Mapped by the kernel itself (the vDSO, its data, vsyscall): the same in a fresh process.
    fn is_kernel(&self) -> bool {
        matches!(self.name.as_str(), "[vdso]" | "[vvar]" | "[vvar_vclock]" | "[vsyscall]")
    }
    fn is_anon(&self) -> bool {
        self.name.is_empty()
            || self.name.starts_with("[anon:")
            || self.name == "[heap]"
            || self.name == "[stack]"
            || self.is_shared_anon()
    }
}

/// `vmas` with neighbours the kernel may merge or keep apart (same protection, sharing, name,
/// and for files the next offset) joined, [heap] as any anonymous memory: two layouts compare
/// equal when they map the same.
fn normalized(vmas: &[Vma]) -> Vec<Vma> {
    let mut out: Vec<Vma> = Vec::new();
    for v in vmas {
        // The kernel names an anonymous mapping [heap] when it overlaps the break's range,
        // also after it merged with the program's .bss next to it.
        let mut v = v.clone();
        if v.name == "[heap]" {
            v.name.clear();
        }
        // The same content in a new object (shared memory made again has another inode).
        v.inode = 0;
        let v = &v;
        if let Some(last) = out.last_mut() {
            let joins = last.end == v.start
                && last.prot == v.prot
                && last.shared == v.shared
                && last.name == v.name
                && (!v.is_file() || last.offset + last.len() == v.offset);
            if joins {
                last.end = v.end;
                continue;
            }
        }
        out.push(v.clone());
    }
    out
}

/// The maps of process `pid`.
pub fn maps(pid: i32) -> CResult<Vec<Vma>> {
    let path = format!("/proc/{pid}/maps");
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let mut w = line.splitn(6, ' ');
        let (Some(range), Some(perms), Some(off), Some(_dev), Some(ino)) =
            (w.next(), w.next(), w.next(), w.next(), w.next())
        else {
            continue;
        };
        let name = w.next().unwrap_or("").trim_start().to_string();
        let Some((a, b)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end), Ok(offset)) =
            (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16), u64::from_str_radix(off, 16))
        else {
            continue;
        };
        let p = perms.as_bytes();
        let bit = |i: usize, c: u8, v: i32| if p.get(i) == Some(&c) { v } else { 0 };
        let prot = bit(0, b'r', libc::PROT_READ) | bit(1, b'w', libc::PROT_WRITE) | bit(2, b'x', libc::PROT_EXEC);
        let inode = ino.parse().unwrap_or(0);
        out.push(Vma { start, end, prot, shared: p.get(3) == Some(&b's'), offset, name, inode });
    }
    Ok(out)
}

/// A run of consecutive pages whose bytes are in the checkpoint (in order, `len` bytes each).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Run {
    pub addr: u64,
    pub len: u64,
}

/// A file mapped by the process: its pages not in the checkpoint come from it again.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct MappedFile {
    pub path: String,
    pub size: u64,
    pub blake3: Vec<u8>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Memory {
    pub vmas: Vec<Vma>,
    /// The pages kept, their bytes in the same order in the checkpoint's page data.
    pub runs: Vec<Run>,
    pub files: Vec<MappedFile>,
    /// The program break (brk(0)).
    pub brk: u64,
}

/// A task's state outside memory.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct TaskState {
    /// user_regs_struct, word by word.
    pub regs: Vec<u64>,
    /// The XSAVE area (x87, SSE, AVX...), as PTRACE_GETREGSET(NT_X86_XSTATE) gives it.
    pub xstate: Vec<u8>,
    pub sigmask: u64,
    /// get_robust_list: head, length.
    pub robust: (u64, u64),
    /// The clear_child_tid address (set_tid_address).
    pub tid_address: u64,
    /// stack_t of sigaltstack.
    pub altstack: Vec<u8>,
    pub comm: Vec<u8>,
    /// (signal, kernel struct sigaction) of each signal whose action is not the default.
    pub actions: Vec<(i32, Vec<u8>)>,
}

/// The kernel object behind an fd, as a restore makes it again.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Object {
    /// The fd the program got at launch (its stdio) and still has: the restored process gets
    /// its own launch's.
    Inherited,
    /// A file or directory opened again by path.
    Path(String),
    EventFd {
        count: u64,
        semaphore: bool,
    },
    /// One end of a pipe (the pipe's inode groups the ends).
    Pipe {
        ino: u64,
    },
    /// An epoll instance and its registrations (target fd, events, data).
    Epoll {
        regs: Vec<(i32, u32, u64)>,
    },
    /// The same open file as the parent process's fd `from` (inherited over fork): taken from
    /// the fork's copy of the parent's table.
    Shared {
        from: i32,
    },
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Fd {
    pub fd: i32,
    /// fdinfo flags (access mode, O_NONBLOCK, O_APPEND, O_CLOEXEC...).
    pub flags: i32,
    pub pos: u64,
    pub object: Object,
    /// An eventfd's kernel id (fdinfo `eventfd-id`), which replay's bookkeeping is keyed by.
    pub event_id: Option<u64>,
}

/// A process's kernel state besides its threads' (the page bytes are kept apart, see
/// [`memory`]).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Process {
    pub memory: Memory,
    pub fds: Vec<Fd>,
}

fn read_link(path: &str) -> Option<String> {
    std::fs::read_link(path).ok().and_then(|l| l.to_str().map(str::to_owned))
}

fn fdinfo(pid: i32, fd: i32) -> CResult<HashMap<String, String>> {
    let path = format!("/proc/{pid}/fdinfo/{fd}");
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .collect())
}

/// The fds of `pid` and what is behind each. `inherited(fd)` says the fd model still knows it
/// as the program's launch stdio; with `parent`, an fd that is the same open file as one of the
/// parent's (kcmp) is [`Object::Shared`].
pub fn fds(pid: i32, inherited: &dyn Fn(i32) -> bool, parent: Option<i32>) -> CResult<Vec<Fd>> {
    let parent_fds: Vec<i32> = parent.map_or_else(Vec::new, |pp| {
        let mut v: Vec<i32> = std::fs::read_dir(format!("/proc/{pp}/fd"))
            .map(|d| d.flatten().filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok())).collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    });
    let dir = format!("/proc/{pid}/fd");
    let mut nums: Vec<i32> = std::fs::read_dir(&dir)
        .map_err(io(&dir))?
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect();
    nums.sort_unstable();
    let epolls = crate::procfs::epoll_registrations(pid);
    let mut out = Vec::new();
    for fd in nums {
        let info = fdinfo(pid, fd)?;
        let flags = info.get("flags").and_then(|v| i32::from_str_radix(v, 8).ok()).unwrap_or(0);
        let pos = info.get("pos").and_then(|v| v.parse().ok()).unwrap_or(0);
        let link = read_link(&format!("/proc/{pid}/fd/{fd}")).unwrap_or_default();
        let shared_with = parent.and_then(|pp| {
            parent_fds.iter().copied().find(|&pfd| {
                // SAFETY: kcmp compares two fds of two processes; no memory is passed.
                unsafe {
                    libc::syscall(libc::SYS_kcmp, pid, pp, 0 /* KCMP_FILE */, fd, pfd) == 0
                }
            })
        });
        let object = if let Some(from) = shared_with {
            Object::Shared { from }
        } else if inherited(fd) {
            Object::Inherited
        } else if link == "anon_inode:[eventfd]" {
            let count = info.get("eventfd-count").and_then(|v| u64::from_str_radix(v, 16).ok()).unwrap_or(0);
            let semaphore = info.get("eventfd-semaphore").is_some_and(|v| v == "1");
            Object::EventFd { count, semaphore }
        } else if link == "anon_inode:[eventpoll]" {
            let regs = epolls.iter().filter(|r| r.0 == fd).map(|&(_, t, ev, data)| (t, ev, data)).collect();
            Object::Epoll { regs }
        } else if let Some(ino) = link.strip_prefix("pipe:[").and_then(|s| s.strip_suffix(']')) {
            Object::Pipe { ino: ino.parse().unwrap_or(0) }
        } else if is_mqueue(pid, fd) {
            return Err(CheckpointError::Unsupported(format!(
                "fd {fd} is the POSIX message queue {link:?}, which checkpoints cannot make again yet"
            )));
        } else if link.starts_with('/') && !link.ends_with(" (deleted)") && !link.starts_with("/memfd:") {
            Object::Path(link)
        } else {
            return Err(CheckpointError::Unsupported(format!(
                "fd {fd} is {link:?}, a kind of object checkpoints cannot make again yet"
            )));
        };
        let event_id = info.get("eventfd-id").and_then(|v| v.parse().ok());
        out.push(Fd { fd, flags, pos, object, event_id });
    }
    Ok(out)
}

/// Whether fd `fd` of `pid` is a POSIX message queue (its link reads like a path: "/name").
fn is_mqueue(pid: i32, fd: i32) -> bool {
    const MQUEUE_MAGIC: i64 = 0x1980_0202;
    let Ok(path) = std::ffi::CString::new(format!("/proc/{pid}/fd/{fd}")) else { return false };
    // SAFETY: statfs fills the zeroed struct from a NUL-terminated path that lives across the call.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::statfs(path.as_ptr(), &mut st) == 0 && st.f_type as i64 == MQUEUE_MAGIC }
}

/// blake3 of a mapped file, cached by (device, inode, size, mtime): libraries are hashed once.
/// `path` is as the program sees it; the file is read through /proc/`pid`/root, in the
/// program's mount namespace (its data directory bound at the recorded path, its own /dev/shm).
fn file_hash(pid: i32, path: &str) -> CResult<MappedFile> {
    let path_here = format!("/proc/{pid}/root{path}");
    let (shown, path) = (path, path_here.as_str());
    /// (device, inode, size, mtime s, mtime ns) to blake3.
    type Key = (u64, u64, u64, i64, i64);
    static CACHE: Mutex<Option<HashMap<Key, Vec<u8>>>> = Mutex::new(None);
    let md = std::fs::metadata(path).map_err(io(path))?;
    let key = (md.dev(), md.ino(), md.size(), md.mtime(), md.mtime_nsec());
    let cached = CACHE.lock().ok().and_then(|c| c.as_ref().and_then(|m| m.get(&key).cloned()));
    let blake3 = match cached {
        Some(h) => h,
        None => {
            let h = ft_libos::digest::file(std::path::Path::new(path)).map_err(io(path))?;
            if let Ok(mut c) = CACHE.lock() {
                c.get_or_insert_with(HashMap::new).insert(key, h.clone());
            }
            h
        }
    };
    Ok(MappedFile { path: shown.to_string(), size: md.size(), blake3 })
}

/// Reads the pages worth keeping of every mapping: (memory description, page bytes).
pub fn memory(t: &Stopped, brk: u64) -> CResult<(Memory, Vec<u8>)> {
    let pid = t.pid().as_raw();
    let vmas = maps(pid)?;
    let pm_path = format!("/proc/{pid}/pagemap");
    let pagemap = std::fs::File::open(&pm_path).map_err(io(&pm_path))?;
    let mut runs: Vec<Run> = Vec::new();
    let mut files: Vec<MappedFile> = Vec::new();
    for v in &vmas {
        if v.is_kernel() {
            continue;
        }
        if v.is_sysv() {
            continue;
        }
        if !v.is_shared_anon()
            && (v.name.ends_with(" (deleted)") || v.name.starts_with("/memfd:") || v.name.starts_with("/SYSV"))
        {
            return Err(CheckpointError::Unsupported(format!(
                "mapping {:#x}-{:#x} is of {}, which checkpoints cannot map again yet",
                v.start, v.end, v.name
            )));
        }
        if v.is_file() {
            // A file the program writes through a shared mapping is replicated state (the data
            // directory, its own /dev/shm): the checkpoint's archive has its content. Others
            // (libraries, read-only data) must be the same file at restore.
            let written = vmas.iter().any(|o| o.name == v.name && o.shared && o.prot & libc::PROT_WRITE != 0);
            if !written && !files.iter().any(|f| f.path == v.name) {
                files.push(file_hash(pid, &v.name)?);
            }
            if v.shared {
                // The file holds these pages (a data-directory file: in the checkpoint's copy).
                continue;
            }
        }
        let pages = (v.len() / PAGE) as usize;
        let mut entries = vec![0u8; pages * 8];
        pagemap.read_exact_at(&mut entries, v.start / PAGE * 8).map_err(io(&pm_path))?;
        for (i, e) in entries.chunks_exact(8).enumerate() {
            let e = u64::from_le_bytes(e.try_into().unwrap_or([0; 8]));
            let (present, swapped, file_page) = (e >> 63 & 1 == 1, e >> 62 & 1 == 1, e >> 61 & 1 == 1);
            // Shared memory: every page of the object (another process may have written a page
            // this one has not touched since: absent from its page table, present in the object).
            let keep = if v.shared { true } else { (present && !file_page) || swapped };
            if !keep {
                continue;
            }
            let addr = v.start + i as u64 * PAGE;
            match runs.last_mut() {
                Some(r) if r.addr + r.len == addr => r.len += PAGE,
                _ => runs.push(Run { addr, len: PAGE }),
            }
        }
    }
    // One read per run, through one open /proc/PID/mem (it also reads pages the program
    // cannot: PROT_NONE guard pages that were written before).
    let mem_path = format!("/proc/{pid}/mem");
    let mem = std::fs::File::open(&mem_path).map_err(io(&mem_path))?;
    let total: u64 = runs.iter().map(|r| r.len).sum();
    let mut data = vec![0u8; total as usize];
    let mut at = 0usize;
    for r in &runs {
        let end = at + r.len as usize;
        mem.read_exact_at(&mut data[at..end], r.addr).map_err(|e| {
            CheckpointError::Unsupported(format!("pages {:#x}+{:#x} cannot be read: {e}", r.addr, r.len))
        })?;
        at = end;
    }
    Ok((Memory { vmas, runs, files, brk }, data))
}

fn xstate(pid: i32) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; XSTATE_MAX];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: PTRACE_GETREGSET writes at most iov_len bytes at iov_base and sets iov_len to
    // what it wrote; buf outlives the call.
    let r = unsafe { libc::ptrace(libc::PTRACE_GETREGSET, pid, NT_X86_XSTATE, &mut iov as *mut libc::iovec) };
    if r < 0 {
        return Err(TraceError::ptrace(nix::unistd::Pid::from_raw(pid), "PTRACE_GETREGSET", nix::Error::last()));
    }
    buf.truncate(iov.iov_len);
    Ok(buf)
}

fn set_xstate(pid: i32, state: &[u8]) -> Result<()> {
    let mut buf = state.to_vec();
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: PTRACE_SETREGSET reads iov_len bytes at iov_base; buf outlives the call.
    let r = unsafe { libc::ptrace(libc::PTRACE_SETREGSET, pid, NT_X86_XSTATE, &mut iov as *mut libc::iovec) };
    if r < 0 {
        return Err(TraceError::ptrace(nix::unistd::Pid::from_raw(pid), "PTRACE_SETREGSET", nix::Error::last()));
    }
    Ok(())
}

pub fn regs_words(r: &libc::user_regs_struct) -> Vec<u64> {
    vec![
        r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx, r.rdx, r.rsi, r.rdi,
        r.orig_rax, r.rip, r.cs, r.eflags, r.rsp, r.ss, r.fs_base, r.gs_base, r.ds, r.es, r.fs, r.gs,
    ]
}

/// The registers of `words` (as [`regs_words`] lists them).
pub fn regs_from_words(w: &[u64]) -> Option<crate::Regs> {
    if w.len() != 27 {
        return None;
    }
    Some(crate::Regs(libc::user_regs_struct {
        r15: w[0],
        r14: w[1],
        r13: w[2],
        r12: w[3],
        rbp: w[4],
        rbx: w[5],
        r11: w[6],
        r10: w[7],
        r9: w[8],
        r8: w[9],
        rax: w[10],
        rcx: w[11],
        rdx: w[12],
        rsi: w[13],
        rdi: w[14],
        orig_rax: w[15],
        rip: w[16],
        cs: w[17],
        eflags: w[18],
        rsp: w[19],
        ss: w[20],
        fs_base: w[21],
        gs_base: w[22],
        ds: w[23],
        es: w[24],
        fs: w[25],
        gs: w[26],
    }))
}

/// A scratch page mapped for a capture's queries at an address the process leaves free, and
/// unmapped after: the address space is as it was.
struct Scratch(u64);

impl Scratch {
    fn map(r: &mut Remote) -> CResult<Scratch> {
        let pid = r.task()?.pid().as_raw();
        let at = free_gap(&maps(pid)?, &[], PAGE).ok_or_else(|| {
            CheckpointError::Unsupported("no free address range for the capture's scratch page".into())
        })?;
        let got = r.call(
            libc::SYS_mmap,
            [
                at,
                PAGE,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64,
                u64::MAX,
                0,
            ],
        )?;
        if got as u64 != at {
            return Err(CheckpointError::Unsupported(format!("the capture's scratch mmap gave {got:#x}")));
        }
        Ok(Scratch(at))
    }
    fn unmap(self, r: &mut Remote) -> CResult<()> {
        let ret = r.call(libc::SYS_munmap, [self.0, PAGE, 0, 0, 0, 0])?;
        if ret != 0 {
            return Err(CheckpointError::Unsupported(format!("the capture's scratch munmap failed with {ret}")));
        }
        Ok(())
    }
}

/// Reads the task's state outside memory; `r` holds it at a seccomp stop (its syscall number
/// [`TRAP_NR`]), `fin` are the registers it resumes with. Injects only queries, and a scratch
/// page it unmaps again.
/// `with_process`: also the process's signal actions and break (once per process).
pub fn task_state(r: &mut Remote, fin: &crate::Regs, with_process: bool) -> CResult<(TaskState, u64)> {
    let pid = r.task()?.pid();
    // The program cannot set debug registers (its ptrace and perf_event_open are refused): they
    // are not kept, and a task that has one enabled (DR7) is not checkpointed rather than
    // restored without it.
    let dr7 = std::mem::offset_of!(libc::user, u_debugreg) + 7 * 8;
    // SAFETY: PTRACE_PEEKUSER reads one word of the stopped tracee's user area; no memory of
    // ours is written.
    let enabled = unsafe { libc::ptrace(libc::PTRACE_PEEKUSER, pid.as_raw(), dr7, 0) };
    if enabled != 0 && enabled != -1 {
        return Err(CheckpointError::Unsupported(format!("task {pid} has debug registers enabled (DR7 {enabled:#x})")));
    }
    let s = Scratch::map(r)?;
    let result = (|| -> CResult<(TaskState, u64)> {
        let a = s.0;
        let mut actions = Vec::new();
        for sig in 1..=64i32 {
            if !with_process || sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let ret = r.call(libc::SYS_rt_sigaction, [sig as u64, 0, a, 8, 0, 0])?;
            if ret < 0 {
                continue;
            }
            let act = r.read(a, SIGACTION_LEN)?;
            if act.iter().any(|&b| b != 0) {
                actions.push((sig, act));
            }
        }
        r.call(libc::SYS_sigaltstack, [0, a, 0, 0, 0, 0])?;
        let altstack = r.read(a, STACK_T_LEN)?;
        r.call(libc::SYS_prctl, [libc::PR_GET_TID_ADDRESS as u64, a, 0, 0, 0, 0])?;
        let tid_address = u64::from_le_bytes(r.read(a, 8)?.try_into().unwrap_or([0; 8]));
        let brk = if with_process { r.call(libc::SYS_brk, [0; 6])? as u64 } else { 0 };
        let mut head: u64 = 0;
        let mut len: usize = 0;
        // SAFETY: get_robust_list writes one pointer and one size_t at the given addresses.
        let ret = unsafe {
            libc::syscall(libc::SYS_get_robust_list, pid.as_raw(), &mut head as *mut u64, &mut len as *mut usize)
        };
        let robust = if ret == 0 { (head, len as u64) } else { (0, 0) };
        let comm = std::fs::read(format!("/proc/{pid}/comm")).unwrap_or_default();
        let comm = comm.strip_suffix(b"\n").unwrap_or(&comm).to_vec();
        let task = TaskState {
            regs: regs_words(&fin.0),
            xstate: xstate(pid.as_raw())?,
            sigmask: r.task()?.sigmask()?,
            robust,
            tid_address,
            altstack,
            comm,
            actions,
        };
        Ok((task, brk))
    })();
    s.unmap(r)?;
    result
}

/// Makes the next pid that the PID namespace of `program` hands out `last + 1`, as it was in
/// the checkpointed run (its tasks and children so far took the pids up to `last`). A helper
/// process enters the namespace (its child is in it) and writes ns_last_pid there: as root, or
/// as the user who made the program's user namespace (an unprivileged `up`), after entering it.
pub fn set_last_pid(program: nix::unistd::Pid, last: i32) -> CResult<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let ns_path = format!("/proc/{program}/ns/pid");
    let ns = std::fs::File::open(&ns_path).map_err(io(&ns_path))?;
    let user_path = format!("/proc/{program}/ns/user");
    let user = std::fs::File::open(&user_path).map_err(io(&user_path))?;
    let own_user = std::fs::metadata("/proc/self/ns/user").map_err(io("/proc/self/ns/user"))?;
    let other_user = user.metadata().map_err(io(&user_path))?.ino() != own_user.ino();
    let user_fd = user.as_raw_fd();
    let text = last.to_string();
    let sysctl = c"/proc/sys/kernel/ns_last_pid";
    let ns_fd = ns.as_raw_fd();
    // SAFETY: fork in a multithreaded process: the child makes only raw syscalls (setns, fork,
    // open, write, waitpid, _exit) on memory prepared before the fork, and takes no lock.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: raw syscalls on prepared data; the process ends with _exit.
        unsafe {
            if other_user && libc::setns(user_fd, libc::CLONE_NEWUSER) != 0 {
                libc::_exit(14);
            }
            if libc::setns(ns_fd, libc::CLONE_NEWPID) != 0 {
                libc::_exit(10);
            }
            let inner = libc::fork();
            if inner == 0 {
                let fd = libc::open(sysctl.as_ptr(), libc::O_WRONLY);
                let ok = fd >= 0 && libc::write(fd, text.as_ptr().cast(), text.len()) == text.len() as isize;
                libc::_exit(if ok { 0 } else { 11 });
            }
            let mut st = 0;
            if inner < 0 || libc::waitpid(inner, &mut st, 0) != inner {
                libc::_exit(12);
            }
            libc::_exit(if libc::WIFEXITED(st) { libc::WEXITSTATUS(st) } else { 13 });
        }
    }
    if child < 0 {
        return Err(restore_err("the next pid", format!("fork failed: {}", std::io::Error::last_os_error())));
    }
    let mut st = 0;
    // SAFETY: waits for the helper forked above.
    let got = unsafe { libc::waitpid(child, &mut st, 0) };
    if got != child || !libc::WIFEXITED(st) || libc::WEXITSTATUS(st) != 0 {
        let step = match libc::WEXITSTATUS(st) {
            10 => "entering the program's PID namespace (needs root)",
            14 => "entering the program's user namespace",
            11 => "writing ns_last_pid",
            _ => "a helper process",
        };
        return Err(restore_err("the next pid", format!("{step} failed")));
    }
    Ok(())
}

/// Whether processes `a` and `b` share one address space (a vfork child before its exec).
pub fn same_memory(a: i32, b: i32) -> bool {
    // SAFETY: kcmp compares two processes' address spaces; no memory is passed.
    unsafe {
        libc::syscall(libc::SYS_kcmp, a, b, 1 /* KCMP_VM */, 0, 0) == 0
    }
}

/// Process group and session of `pid` as the program sees them (NSpgid, NSsid).
pub fn process_group(pid: i32) -> Option<(i32, i32)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let last = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().last()?.parse().ok())
    };
    Some((last("NSpgid:")?, last("NSsid:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_of_self() {
        let m = maps(std::process::id() as i32).expect("own maps");
        assert!(m.iter().any(|v| v.name == "[stack]" && v.prot & libc::PROT_WRITE != 0));
        assert!(m.iter().any(|v| v.is_file() && v.prot & libc::PROT_EXEC != 0));
    }

    #[test]
    fn regs_round_trip() {
        // SAFETY: user_regs_struct is plain integers; all-zero is a valid value.
        let mut r: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        r.rip = 0x401000;
        r.fs_base = 7;
        r.gs = 3;
        let back = regs_from_words(&regs_words(&r)).expect("27 words");
        assert_eq!((back.0.rip, back.0.fs_base, back.0.gs), (0x401000, 7, 3));
        assert!(regs_from_words(&[0; 3]).is_none());
    }
}
