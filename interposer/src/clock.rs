//! The clock page in the tracee (layout and rationale: [`ft_libos::clock`]).
//!
//! Three pieces:
//! - the stub, machine code assembled into ftexec itself (`global_asm!` below) and copied into
//!   the tracee at [`CODE_ADDR`]; it has no relocations, so it runs wherever it is copied;
//! - [`patch_vdso`], at an exec stop: the vDSO's clock_gettime, gettimeofday and time jump to
//!   the stub, getcpu and clock_getres to a traced syscall, and every other vDSO symbol is hidden
//!   (a future vgetrandom must not bypass the log);
//! - [`install`], at the first seccomp stops after that exec: maps the code page, then the data
//!   page, each by turning the tracee's syscall into an mmap and letting it retry its own.
//!
//! Until the pages exist a call through the vDSO would fault; the program makes a syscall before
//! any clock read (the dynamic loader maps itself; a static binary sets up TLS), and a program
//! that did not would crash at record and replay alike, not replay wrongly.

use crate::tracee::{Running, Stop, Stopped, Waited};
use crate::{Result, TraceError};
use ft_libos::clock::{
    CAP, CAPACITY, CODE_ADDR, CODE_LEN, COUNT, DATA_ADDR, DATA_LEN, ENTRY_LEN, HEADER_LEN, MODE, MODE_RECORD,
    MODE_REPLAY, POS, REFILLED,
};

// The stub. Calling convention of the vDSO functions (System V): arguments in rdi, rsi; result
// in rax; rcx, rdx, r8-r11 are scratch. r8 holds the data page throughout (the kernel keeps it
// across syscalls). Record: the real syscall through `ftexec_clock_sys` (the filter's allowed
// instruction), then an entry appended. Replay: the next entry, which must be for the same
// function and clock (ud2 otherwise: the replay reports a SIGILL in the stub). Empty replay
// buffer, full record buffer or an unusual argument: the same syscall, traced (label `slow`);
// after it, a set REFILLED flag means "the replayer refilled the buffer: start over". The three
// buffered functions return through `.Lclock_out`, which leaves rcx, rdx, rsi, r9-r11 zero and
// the flags fixed on every path (r8 is the data page on every path).
std::arch::global_asm!(
    ".pushsection .text.ftexec_clock,\"ax\",@progbits",
    ".p2align 4",
    ".globl ftexec_clock_start",
    "ftexec_clock_start:",
    "ftexec_clock_sys:",
    "    syscall",
    ".globl ftexec_clock_sys_ret",
    "ftexec_clock_sys_ret:",
    "    ret",
    // Appends an entry: func in r9d, arg in r10d, ret in rax, a in r11, b in rdx. Count in ecx.
    "ftexec_clock_append:",
    "    mov ecx, dword ptr [r8 + {count}]",
    "    mov esi, ecx",
    "    shl rsi, 5",
    "    lea rsi, [r8 + rsi + {header}]",
    "    mov dword ptr [rsi], r9d",
    "    mov dword ptr [rsi + 4], r10d",
    "    mov qword ptr [rsi + 8], rax",
    "    mov qword ptr [rsi + 16], r11",
    "    mov qword ptr [rsi + 24], rdx",
    "    inc ecx",
    "    mov dword ptr [r8 + {count}], ecx",
    "    ret",
    // Takes the next replay entry for func r9d / arg r10d into rsi (pointer); CF-free protocol:
    // returns with rsi = 0 when the buffer is empty.
    "ftexec_clock_take:",
    "    mov ecx, dword ptr [r8 + {pos}]",
    "    cmp ecx, dword ptr [r8 + {count}]",
    "    jae .Ltake_empty",
    "    mov esi, ecx",
    "    shl rsi, 5",
    "    lea rsi, [r8 + rsi + {header}]",
    "    cmp dword ptr [rsi], r9d",
    "    jne .Ltake_diverged",
    "    cmp dword ptr [rsi + 4], r10d",
    "    jne .Ltake_diverged",
    "    inc ecx",
    "    mov dword ptr [r8 + {pos}], ecx",
    "    ret",
    ".Ltake_empty:",
    "    xor esi, esi",
    "    ret",
    ".Ltake_diverged:",
    "    ud2",
    // int clock_gettime(clockid_t rdi, struct timespec *rsi)
    ".globl ftexec_clock_gettime",
    "ftexec_clock_gettime:",
    "    movabs r8, {data}",
    "    xor r9d, r9d",
    "    mov r10d, edi",
    "    cmp dword ptr [r8 + {mode}], {replay}",
    "    je .Lcg_replay",
    "    mov ecx, dword ptr [r8 + {count}]",
    "    cmp ecx, dword ptr [r8 + {cap}]",
    "    jae .Lcg_slow",
    "    mov eax, {nr_clock_gettime}",
    "    call ftexec_clock_sys",
    "    xor r11d, r11d",
    "    xor edx, edx",
    "    test rax, rax",
    "    jne .Lcg_append",
    "    mov r11, qword ptr [rsi]",
    "    mov rdx, qword ptr [rsi + 8]",
    ".Lcg_append:",
    "    call ftexec_clock_append",
    "    jmp .Lclock_out",
    ".Lcg_replay:",
    "    mov r11, rsi",
    "    call ftexec_clock_take",
    "    test rsi, rsi",
    "    jz .Lcg_empty",
    "    mov rax, qword ptr [rsi + 8]",
    "    test rax, rax",
    "    jne .Lcg_done",
    "    mov rcx, qword ptr [rsi + 16]",
    "    mov qword ptr [r11], rcx",
    "    mov rcx, qword ptr [rsi + 24]",
    "    mov qword ptr [r11 + 8], rcx",
    ".Lcg_done:",
    "    jmp .Lclock_out",
    ".Lcg_empty:",
    "    mov rsi, r11",
    ".Lcg_slow:",
    "    mov eax, {nr_clock_gettime}",
    "    syscall",
    "    cmp dword ptr [r8 + {refilled}], 0",
    "    je .Lcg_ret",
    "    mov dword ptr [r8 + {refilled}], 0",
    "    jmp ftexec_clock_gettime",
    ".Lcg_ret:",
    "    jmp .Lclock_out",
    // int gettimeofday(struct timeval *rdi, struct timezone *rsi): buffered only with tz NULL.
    ".globl ftexec_clock_gettimeofday",
    "ftexec_clock_gettimeofday:",
    "    movabs r8, {data}",
    "    mov r9d, 1",
    "    xor r10d, r10d",
    "    test rsi, rsi",
    "    jnz .Lgt_slow",
    "    test rdi, rdi",
    "    jz .Lgt_slow",
    "    cmp dword ptr [r8 + {mode}], {replay}",
    "    je .Lgt_replay",
    "    mov ecx, dword ptr [r8 + {count}]",
    "    cmp ecx, dword ptr [r8 + {cap}]",
    "    jae .Lgt_slow",
    "    mov eax, {nr_gettimeofday}",
    "    call ftexec_clock_sys",
    "    xor r11d, r11d",
    "    xor edx, edx",
    "    test rax, rax",
    "    jne .Lgt_append",
    "    mov r11, qword ptr [rdi]",
    "    mov rdx, qword ptr [rdi + 8]",
    ".Lgt_append:",
    "    call ftexec_clock_append",
    "    jmp .Lclock_out",
    ".Lgt_replay:",
    "    call ftexec_clock_take",
    "    test rsi, rsi",
    "    jz .Lgt_slow",
    "    mov rax, qword ptr [rsi + 8]",
    "    test rax, rax",
    "    jne .Lgt_done",
    "    mov rcx, qword ptr [rsi + 16]",
    "    mov qword ptr [rdi], rcx",
    "    mov rcx, qword ptr [rsi + 24]",
    "    mov qword ptr [rdi + 8], rcx",
    ".Lgt_done:",
    "    jmp .Lclock_out",
    ".Lgt_slow:",
    "    mov eax, {nr_gettimeofday}",
    "    syscall",
    "    cmp dword ptr [r8 + {refilled}], 0",
    "    je .Lgt_ret",
    "    mov dword ptr [r8 + {refilled}], 0",
    "    jmp ftexec_clock_gettimeofday",
    ".Lgt_ret:",
    "    jmp .Lclock_out",
    // time_t time(time_t *rdi)
    ".globl ftexec_clock_time",
    "ftexec_clock_time:",
    "    movabs r8, {data}",
    "    mov r9d, 2",
    "    xor r10d, r10d",
    "    cmp dword ptr [r8 + {mode}], {replay}",
    "    je .Ltm_replay",
    "    mov ecx, dword ptr [r8 + {count}]",
    "    cmp ecx, dword ptr [r8 + {cap}]",
    "    jae .Ltm_slow",
    "    mov rdx, rdi",
    "    xor edi, edi",
    "    mov eax, {nr_time}",
    "    call ftexec_clock_sys",
    "    mov rdi, rdx",
    "    xor r11d, r11d",
    "    xor edx, edx",
    "    call ftexec_clock_append",
    "    jmp .Ltm_store",
    ".Ltm_replay:",
    "    call ftexec_clock_take",
    "    test rsi, rsi",
    "    jz .Ltm_slow",
    "    mov rax, qword ptr [rsi + 8]",
    ".Ltm_store:",
    "    test rdi, rdi",
    "    jz .Ltm_ret",
    "    mov qword ptr [rdi], rax",
    ".Ltm_ret:",
    "    jmp .Lclock_out",
    ".Ltm_slow:",
    "    mov eax, {nr_time}",
    "    syscall",
    "    cmp dword ptr [r8 + {refilled}], 0",
    "    je .Ltm_ret",
    "    mov dword ptr [r8 + {refilled}], 0",
    "    jmp ftexec_clock_time",
    // The common return of the buffered functions: the scratch registers and flags they leave
    // differ between the record and replay paths, so they are cleared (a thread preempted in a
    // spin loop after a clock read is compared register for register at replay).
    ".Lclock_out:",
    "    xor ecx, ecx",
    "    xor edx, edx",
    "    xor esi, esi",
    "    xor r9d, r9d",
    "    xor r10d, r10d",
    "    xor r11d, r11d",
    "    cmp ecx, ecx",
    "    ret",
    // getcpu and clock_getres: always the traced syscall.
    ".globl ftexec_clock_getcpu",
    "ftexec_clock_getcpu:",
    "    mov eax, {nr_getcpu}",
    "    syscall",
    "    ret",
    ".globl ftexec_clock_getres",
    "ftexec_clock_getres:",
    "    mov eax, {nr_clock_getres}",
    "    syscall",
    "    ret",
    ".globl ftexec_clock_end",
    "ftexec_clock_end:",
    ".popsection",
    data = const DATA_ADDR,
    mode = const MODE,
    count = const COUNT,
    pos = const POS,
    cap = const CAP,
    refilled = const REFILLED,
    header = const HEADER_LEN,
    replay = const MODE_REPLAY,
    nr_clock_gettime = const libc::SYS_clock_gettime,
    nr_gettimeofday = const libc::SYS_gettimeofday,
    nr_time = const libc::SYS_time,
    nr_getcpu = const libc::SYS_getcpu,
    nr_clock_getres = const libc::SYS_clock_getres,
);

unsafe extern "C" {
    static ftexec_clock_start: u8;
    static ftexec_clock_sys_ret: u8;
    static ftexec_clock_gettime: u8;
    static ftexec_clock_gettimeofday: u8;
    static ftexec_clock_time: u8;
    static ftexec_clock_getcpu: u8;
    static ftexec_clock_getres: u8;
    static ftexec_clock_end: u8;
}

/// Offset of a stub symbol from the start of the stub.
fn offset(sym: *const u8) -> u64 {
    let start = std::ptr::addr_of!(ftexec_clock_start) as u64;
    sym as u64 - start
}

/// The stub's bytes, as copied to [`CODE_ADDR`].
fn code() -> &'static [u8] {
    // SAFETY: start and end delimit the assembled stub in this binary's text, which is mapped
    // and readable for the life of the process.
    unsafe {
        let start = std::ptr::addr_of!(ftexec_clock_start);
        let end = std::ptr::addr_of!(ftexec_clock_end);
        std::slice::from_raw_parts(start, end as usize - start as usize)
    }
}

/// The address the kernel reports for a syscall made by the stub's untraced syscall instruction
/// (seccomp_data.instruction_pointer is the address after the instruction).
pub fn allowed_ip() -> u64 {
    CODE_ADDR + offset(std::ptr::addr_of!(ftexec_clock_sys_ret))
}

/// Where in the stub each vDSO function goes, by the vDSO's symbol name (with or without the
/// __vdso_ prefix).
fn target(name: &[u8]) -> Option<u64> {
    let name = name.strip_prefix(b"__vdso_").unwrap_or(name);
    let sym = match name {
        b"clock_gettime" => std::ptr::addr_of!(ftexec_clock_gettime),
        b"gettimeofday" => std::ptr::addr_of!(ftexec_clock_gettimeofday),
        b"time" => std::ptr::addr_of!(ftexec_clock_time),
        b"getcpu" => std::ptr::addr_of!(ftexec_clock_getcpu),
        b"clock_getres" => std::ptr::addr_of!(ftexec_clock_getres),
        _ => return None,
    };
    Some(CODE_ADDR + offset(sym))
}

/// `movabs r11, imm64; jmp r11`.
fn jump_to(addr: u64) -> [u8; 13] {
    let mut j = [0u8; 13];
    j[0] = 0x49;
    j[1] = 0xbb;
    j[2..10].copy_from_slice(&addr.to_le_bytes());
    j[10..13].copy_from_slice(&[0x41, 0xff, 0xe3]);
    j
}

/// Why the vDSO could not be redirected (the caller then hides it).
#[derive(Debug)]
pub struct NoPatch(pub String);

fn le_u16(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn le_u32(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn le_u64(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// One vDSO symbol: where its entry is in the image, its name, address (offset) and size.
struct Sym {
    entry: usize,
    name: Vec<u8>,
    value: u64,
    size: u64,
    is_func: bool,
}

/// The vDSO's dynamic symbols, from its section headers (the mapped vDSO is a whole ELF file).
fn vdso_symbols(image: &[u8]) -> std::result::Result<Vec<Sym>, NoPatch> {
    let bad = |what: &str| NoPatch(format!("vDSO image: {what}"));
    if image.get(..4) != Some(b"\x7fELF".as_slice()) || image.get(4) != Some(&2) {
        return Err(bad("not a 64-bit ELF image"));
    }
    let shoff = le_u64(image, 0x28).ok_or_else(|| bad("short header"))? as usize;
    let shentsize = le_u16(image, 0x3a).ok_or_else(|| bad("short header"))? as usize;
    let shnum = le_u16(image, 0x3c).ok_or_else(|| bad("short header"))? as usize;
    let section = |i: usize| -> Option<(u32, usize, usize, u32, usize)> {
        let o = shoff.checked_add(i.checked_mul(shentsize)?)?;
        // sh_type, sh_offset, sh_size, sh_link, sh_entsize
        Some((
            le_u32(image, o + 4)?,
            le_u64(image, o + 0x18)? as usize,
            le_u64(image, o + 0x20)? as usize,
            le_u32(image, o + 0x28)?,
            le_u64(image, o + 0x38)? as usize,
        ))
    };
    const SHT_DYNSYM: u32 = 11;
    let (_, symoff, symsize, link, entsize) =
        (0..shnum).filter_map(section).find(|s| s.0 == SHT_DYNSYM).ok_or_else(|| bad("no .dynsym section"))?;
    let (_, stroff, strsize, _, _) = section(link as usize).ok_or_else(|| bad("no string table"))?;
    let strtab = image.get(stroff..stroff.saturating_add(strsize)).ok_or_else(|| bad("string table outside"))?;
    if entsize != 24 {
        return Err(bad("unexpected symbol size"));
    }
    let mut syms = Vec::new();
    for entry in (symoff..symoff.saturating_add(symsize)).step_by(24) {
        let name_at = le_u32(image, entry).ok_or_else(|| bad("symbol outside"))? as usize;
        let info = *image.get(entry + 4).ok_or_else(|| bad("symbol outside"))?;
        let value = le_u64(image, entry + 8).ok_or_else(|| bad("symbol outside"))?;
        let size = le_u64(image, entry + 16).ok_or_else(|| bad("symbol outside"))?;
        let name = strtab.get(name_at..).and_then(|s| s.split(|&b| b == 0).next()).unwrap_or_default().to_vec();
        if value != 0 {
            syms.push(Sym { entry, name, value, size, is_func: info & 0xf == 2 });
        }
    }
    Ok(syms)
}

/// Redirects the vDSO mapped at `base` (AT_SYSINFO_EHDR): clock functions jump to the stub,
/// every other symbol is hidden. Nothing is written unless every clock function can be patched.
pub fn patch_vdso(t: &Stopped, base: u64) -> Result<std::result::Result<(), NoPatch>> {
    // The image ends with its section headers; reading past it would hit an unmapped page.
    let head = t.read_forced(base, 64)?;
    let end = match (le_u64(&head, 0x28), le_u16(&head, 0x3a), le_u16(&head, 0x3c)) {
        (Some(off), Some(size), Some(n)) => off.saturating_add(u64::from(size) * u64::from(n)),
        _ => return Ok(Err(NoPatch("vDSO image: short header".into()))),
    };
    if end > 0x10000 {
        return Ok(Err(NoPatch(format!("vDSO image: section headers end at {end:#x}, beyond 64 KiB"))));
    }
    let image = t.read_forced(base, end as usize)?;
    let syms = match vdso_symbols(&image) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let mut jumps = Vec::new();
    let mut hide = Vec::new();
    for s in &syms {
        match target(&s.name) {
            Some(to) if s.is_func && s.size >= 13 => jumps.push((base + s.value, jump_to(to))),
            Some(_) => {
                return Ok(Err(NoPatch(format!(
                    "vDSO function {} is too small to redirect",
                    String::from_utf8_lossy(&s.name)
                ))))
            }
            None => hide.push(s.entry),
        }
    }
    for name in [&b"clock_gettime"[..], b"gettimeofday", b"time"] {
        if !syms.iter().any(|s| s.name.strip_prefix(b"__vdso_").unwrap_or(&s.name) == name) {
            return Ok(Err(NoPatch(format!("the vDSO has no {}", String::from_utf8_lossy(name)))));
        }
    }
    for (at, j) in jumps {
        t.write_forced(at, &j)?;
    }
    // A hidden symbol: undefined (st_shndx 0) with no value, which loaders skip.
    for entry in hide {
        t.write_forced(base + entry as u64 + 6, &0u16.to_le_bytes())?;
        t.write_forced(base + entry as u64 + 8, &0u64.to_le_bytes())?;
    }
    Ok(Ok(()))
}

/// How far the clock page of a process is installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Install {
    /// The vDSO points at the stub; no page is mapped yet.
    Patched,
    /// The code page is mapped.
    CodeMapped,
    /// The data page too (the syscall buffer's region is next).
    DataMapped,
    /// Every page exists: the stub and the syscall buffer's handler work.
    Ready,
}

/// At a seccomp stop of a process whose clock page is not [`Install::Ready`]: performs the next
/// step instead of the tracee's syscall, which the tracee then makes again (a new seccomp stop).
/// Returns the new state and the running tracee. `mode` is [`MODE_RECORD`] or [`MODE_REPLAY`].
pub fn install(t: Stopped, state: Install, mode: u32) -> Result<(Install, Running)> {
    let prot_code = libc::PROT_READ | libc::PROT_EXEC;
    let prot_data = libc::PROT_READ | libc::PROT_WRITE;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64;
    let (addr, len, prot, next) = match state {
        Install::Patched => (CODE_ADDR, CODE_LEN, prot_code, Install::CodeMapped),
        Install::CodeMapped => (DATA_ADDR, DATA_LEN, prot_data, Install::DataMapped),
        Install::DataMapped => (ft_libos::sysbuf::ADDR, ft_libos::sysbuf::LEN, prot_data, Install::Ready),
        Install::Ready => return Ok((Install::Ready, t.cont(None)?)),
    };
    let args = [addr, len, prot as u64, flags, u64::MAX, 0];
    let (s, ret) = inject_and_retry(t, libc::SYS_mmap as u64, args)?;
    if ret as u64 != addr {
        return Err(TraceError::Unexpected {
            pid: s.pid(),
            what: format!(
                "mapping ftexec's clock page or syscall buffer at {addr:#x} failed ({}); something is mapped there already",
                nix::Error::from_raw((-ret) as i32)
            ),
        });
    }
    match next {
        Install::CodeMapped => {
            s.write_forced(CODE_ADDR, code())?;
            s.write_forced(crate::sysbuf::HANDLER_ADDR, crate::sysbuf::handler())?;
        }
        // Zero-filled: the handler is off (every call traced) until the recorder turns it on.
        Install::Ready => {}
        Install::DataMapped | Install::Patched => {
            let mut h = [0u8; HEADER_LEN];
            h[MODE..MODE + 4].copy_from_slice(&mode.to_le_bytes());
            h[CAP..CAP + 4].copy_from_slice(&CAPACITY.to_le_bytes());
            s.write(DATA_ADDR, &h)?;
        }
    }
    Ok((next, s.cont(None)?))
}

/// Runs `nr(args)` in place of the syscall at this seccomp stop, then rewinds the tracee to its
/// syscall instruction with its registers as they were: resumed, it makes its own syscall again.
/// Returns the tracee stopped at the injected syscall's exit (registers already rewound) and the
/// injected call's result.
pub(crate) fn inject_and_retry(t: Stopped, nr: u64, args: [u64; 6]) -> Result<(Stopped, i64)> {
    let pid = t.pid();
    let orig = t.regs()?;
    let mut r = orig;
    r.rewrite(nr, &args);
    t.set_regs(&r)?;
    let s = match t.cont_to_exit()?.wait()? {
        Waited::Stopped(s) if s.stop == Stop::SyscallExit => s,
        Waited::Stopped(s) => {
            return Err(TraceError::Unexpected { pid, what: format!("{:?} while mapping the clock page", s.stop) })
        }
        Waited::Exited(_) | Waited::Killed(_) => return Err(TraceError::Gone { pid, op: "mapping the clock page" }),
    };
    let ret = s.regs()?.ret();
    let mut back = orig;
    back.0.rax = orig.0.orig_rax;
    back.rewind();
    s.set_regs(&back)?;
    Ok((s, ret))
}

/// Record: the entries the stub appended since the last drain (empty: none); resets the count.
pub fn drain(t: &Stopped) -> Result<Vec<u8>> {
    let mut buf = [0u8; HEADER_LEN + 16 * ENTRY_LEN];
    let n = t.read_some(DATA_ADDR, &mut buf)?;
    let count = le_u32(&buf[..n], COUNT).unwrap_or(0).min(CAPACITY) as usize;
    if count == 0 {
        return Ok(Vec::new());
    }
    let len = count * ENTRY_LEN;
    let entries = if HEADER_LEN + len <= n {
        buf[HEADER_LEN..HEADER_LEN + len].to_vec()
    } else {
        t.read(DATA_ADDR + HEADER_LEN as u64, len)?
    };
    t.write(DATA_ADDR + COUNT as u64, &0u32.to_le_bytes())?;
    Ok(entries)
}

/// Replay: loads logged entries into the buffer and flags the refill for the stub.
pub fn refill(t: &Stopped, entries: &[u8]) -> Result<()> {
    put(t, entries, true)
}

/// Replay: loads logged entries into the buffer without the refill flag (the stub is not in
/// its traced syscall: the syscall buffer's handler is being refilled).
pub fn load(t: &Stopped, entries: &[u8]) -> Result<()> {
    put(t, entries, false)
}

fn put(t: &Stopped, entries: &[u8], refilled: bool) -> Result<()> {
    let count = (entries.len() / ENTRY_LEN).min(CAPACITY as usize);
    let mut page = vec![0u8; HEADER_LEN + count * ENTRY_LEN];
    page[MODE..MODE + 4].copy_from_slice(&MODE_REPLAY.to_le_bytes());
    page[COUNT..COUNT + 4].copy_from_slice(&(count as u32).to_le_bytes());
    page[CAP..CAP + 4].copy_from_slice(&CAPACITY.to_le_bytes());
    page[REFILLED..REFILLED + 4].copy_from_slice(&u32::from(refilled).to_le_bytes());
    page[HEADER_LEN..].copy_from_slice(&entries[..count * ENTRY_LEN]);
    t.write(DATA_ADDR, &page)
}

/// Replay: how many loaded entries the program has not read yet.
pub fn unread(t: &Stopped) -> Result<u32> {
    let b = t.read(DATA_ADDR, HEADER_LEN)?;
    let (count, pos) = (le_u32(&b, COUNT).unwrap_or(0), le_u32(&b, POS).unwrap_or(0));
    Ok(count.saturating_sub(pos))
}

/// Going live: the stub of process `pid` (all its tasks stopped) records from now on, with an
/// empty buffer.
pub fn to_record(pid: nix::unistd::Pid) -> Result<()> {
    let mut h = [0u8; 20];
    h[MODE..MODE + 4].copy_from_slice(&MODE_RECORD.to_le_bytes());
    h[CAP..CAP + 4].copy_from_slice(&CAPACITY.to_le_bytes());
    Stopped::assume_stopped(pid).write(DATA_ADDR, &h)
}

/// Whether `ip` is in the stub's code page.
pub fn in_stub(ip: u64) -> bool {
    (CODE_ADDR..CODE_ADDR + CODE_LEN).contains(&ip)
}

/// Whether a seccomp stop is the stub's traced syscall for a buffered clock function (where
/// the replayer may refill).
pub fn is_stub_syscall(ip: u64, nr: u64) -> bool {
    in_stub(ip) && ft_libos::clock::BUFFERED.contains(&nr)
}

/// The clock page of each process (by the task number of its leader) whose vDSO goes to it:
/// the same bookkeeping at record and replay.
#[derive(Default)]
pub struct ClockPages(std::collections::HashMap<u32, Install>);

impl ClockPages {
    /// After an exec of `proc`: a new page to install if its vDSO was redirected.
    pub fn exec(&mut self, proc: u32, clock_page: bool) {
        if clock_page {
            self.0.insert(proc, Install::Patched);
        } else {
            self.0.remove(&proc);
        }
    }

    /// A new process shares its parent's state (fork copies the address space).
    pub fn fork(&mut self, parent: u32, child: u32) {
        if let Some(c) = self.0.get(&parent).copied() {
            self.0.insert(child, c);
        }
    }

    /// Whether `proc`'s vDSO goes to the clock page (installed or not).
    pub fn used(&self, proc: u32) -> bool {
        self.0.contains_key(&proc)
    }

    pub fn ready(&self, proc: u32) -> bool {
        self.0.get(&proc) == Some(&Install::Ready)
    }

    /// At a seccomp stop of `proc`: if its page is not installed yet, does the next step (see
    /// [`install`]) and returns the resumed tracee; otherwise gives the stop back.
    pub fn install_step(&mut self, t: Stopped, proc: u32, mode: u32) -> Result<std::result::Result<Running, Stopped>> {
        match self.0.get(&proc).copied() {
            Some(state) if state != Install::Ready => {
                let (next, running) = install(t, state, mode)?;
                self.0.insert(proc, next);
                Ok(Ok(running))
            }
            _ => Ok(Err(t)),
        }
    }

    /// Every process's install state (a checkpoint keeps them).
    pub fn entries(&self) -> Vec<(u32, Install)> {
        self.0.iter().map(|(&p, &s)| (p, s)).collect()
    }

    pub fn from_entries(entries: &[(u32, Install)]) -> ClockPages {
        ClockPages(entries.iter().copied().collect())
    }

    /// The processes whose page is installed.
    pub fn ready_procs(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().filter(|(_, s)| **s == Install::Ready).map(|(p, _)| *p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stub_fits_its_page_and_targets_are_inside() {
        assert!(!code().is_empty() && (code().len() as u64) < CODE_LEN);
        for n in ["clock_gettime", "__vdso_gettimeofday", "time", "getcpu", "clock_getres"] {
            let t = target(n.as_bytes()).expect("known");
            assert!((CODE_ADDR..CODE_ADDR + code().len() as u64).contains(&t));
        }
        assert_eq!(target(b"__vdso_getrandom"), None);
        assert_eq!(allowed_ip(), CODE_ADDR + 2);
    }

    #[test]
    fn own_vdso_parses() {
        // SAFETY: getauxval has no preconditions.
        let base = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) };
        if base == 0 {
            eprintln!("SKIP: this process has no vDSO");
            return;
        }
        // SAFETY: the vDSO is mapped readable for the life of the process; its image is at
        // least 2 pages.
        let image = unsafe { std::slice::from_raw_parts(base as *const u8, 0x2000) };
        let syms = vdso_symbols(image).expect("parses");
        assert!(syms.iter().any(|s| s.name == b"__vdso_clock_gettime" && s.size >= 13), "{:?}", syms.len());
    }
}
