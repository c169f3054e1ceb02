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
        self.name.starts_with('/') && !self.is_shared_anon()
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

/// A page-aligned address with `len` free bytes (and a page of room either side) in both
/// layouts, for the restore's scratch page.
fn free_gap(a: &[Vma], b: &[Vma], len: u64) -> Option<u64> {
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
            let ret = if v.is_anon() {
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

    /// The process's signal actions and working directory.
    pub fn process(&mut self, actions: &[(i32, Vec<u8>)], cwd: &str) -> CResult<()> {
        for (sig, act) in actions {
            let at = self.put(act)?;
            self.call(&format!("the action of signal {sig}"), libc::SYS_rt_sigaction, [*sig as u64, at, 0, 8, 0, 0])?;
        }
        let at = self.put_str(cwd)?;
        self.call(&format!("the working directory {cwd}"), libc::SYS_chdir, [at, 0, 0, 0, 0, 0])?;
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

/// Makes the next pid that the PID namespace of `program` hands out `last + 1`, as it was in
/// the checkpointed run (its tasks and children so far took the pids up to `last`). A helper
/// process enters the namespace (its child is in it) and writes ns_last_pid there; needs root.
pub fn set_last_pid(program: nix::unistd::Pid, last: i32) -> CResult<()> {
    use std::os::fd::AsRawFd;
    let ns_path = format!("/proc/{program}/ns/pid");
    let ns = std::fs::File::open(&ns_path).map_err(io(&ns_path))?;
    let text = last.to_string();
    let sysctl = c"/proc/sys/kernel/ns_last_pid";
    let ns_fd = ns.as_raw_fd();
    // SAFETY: fork in a multithreaded process: the child makes only raw syscalls (setns, fork,
    // open, write, waitpid, _exit) on memory prepared before the fork, and takes no lock.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: raw syscalls on prepared data; the process ends with _exit.
        unsafe {
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
            11 => "writing ns_last_pid",
            _ => "a helper process",
        };
        return Err(restore_err("the next pid", format!("{step} failed")));
    }
    Ok(())
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

/// Process group and session of `pid` as the program sees them (NSpgid, NSsid).
pub fn process_group(pid: i32) -> Option<(i32, i32)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let last = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().last()?.parse().ok())
    };
    Some((last("NSpgid:")?, last("NSsid:")?))
}
