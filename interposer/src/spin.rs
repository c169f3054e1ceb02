//! Preemption of a thread that spins without syscalls, without a PMU.
//!
//! rr and hermit preempt at a retired-branch count, which needs a hardware PMU; a VM without one
//! (this project's CI) cannot count. What can be found without counting is a *fixpoint*: a loop
//! iteration after which the thread's registers and every byte it wrote are what they were
//! before. From such a state the thread repeats the same iteration for as long as nothing else
//! runs, so every moment of the spin is the same state and preempting at "the fixpoint at this
//! instruction with this state" is a deterministic place: replay runs the thread until it is in
//! that state again, which it reaches on the same trajectory, and checks the state's digest.
//!
//! A spin-wait on a flag or a lock (`while (!flag)`, `while (xchg(&l, 1))`, with `pause`) is
//! such a loop; a loop that counts, reads the clock or calls into a syscall is not, and is left
//! running. [`probe`] single-steps one iteration, decoding each instruction to snapshot the bytes
//! it writes before it writes them (the writes of `xchg` and `lock cmpxchg` count even when the
//! value does not change).

use crate::regs::Regs;
use crate::tracee::{wait_for, Stop, Stopped, Waited};
use crate::Result;
use ft_libos::Sig;
use iced_x86::{Decoder, DecoderOptions, Instruction, InstructionInfoFactory, Mnemonic, OpAccess, Register};
use nix::unistd::Pid;

/// Where and in which state a spinning thread was found at a fixpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpinPoint {
    /// The instruction the iteration starts and ends at.
    pub ip: u64,
    /// blake3 (first 16 bytes) of the general and x87/SSE registers and of the bytes the iteration
    /// writes.
    pub digest: [u8; 16],
    /// Instructions in one iteration.
    pub steps: u32,
}

/// What one probe found.
pub enum Probe {
    /// One iteration from `point.ip` changed nothing; the task is stopped there.
    Fixpoint(SpinPoint, Stopped),
    /// Not at a fixpoint (the state changed, the iteration is too long or leaves the loop, or an
    /// instruction that must not be stepped over comes next); the task is stopped, unchanged
    /// but for the instructions stepped, which it would have executed anyway.
    Moving(&'static str, Stopped),
    /// A stop that is not a step (a signal came, the task died): the caller handles it as usual.
    Other(Pid, Waited),
}

/// Most instructions one iteration of a spin loop may take (and most steps taken to reach the
/// recorded instruction at replay). PostgreSQL's leader waiting for its parallel workers to
/// attach (`WaitForParallelWorkersToAttach`: an LWLock taken and released, a spinlock, per
/// worker, with no syscall) takes several hundred; at 128 no probe found its fixpoint, and a
/// default `CREATE INDEX` on a large table failed after SPIN_LIMIT. A probe of a thread that
/// computes steps this many instructions at most, once per probe gap (up to 1 s); the recorder
/// starts with [`FIRST_STEPS`] and doubles the budget at each probe that found no fixpoint, as
/// it doubles the gap, so a thread that computes pays in proportion (a step costs ~25 µs).
pub const MAX_STEPS: u32 = 4096;

/// The budget of the first probe of a thread since its last stop (see [`MAX_STEPS`]).
pub const FIRST_STEPS: u32 = 128;

/// Returns to its start in another state after which a probe gives up: a loop that passes its
/// start once per element it looks at does so a few times per iteration; a loop that counts or
/// computes passes it in a new state every time.
pub const MAX_RETURNS: u32 = 16;

/// Steps `t` until it is at `ip` (at most [`MAX_STEPS`]), then probes from there; with `ip`
/// None, probes from where `t` is.
pub fn probe(t: Stopped, ip: Option<u64>) -> Result<Probe> {
    probe_within(t, ip, MAX_STEPS)
}

/// [`probe`] with an iteration of at most `budget` instructions (at most [`MAX_STEPS`]).
pub fn probe_within(t: Stopped, ip: Option<u64>, budget: u32) -> Result<Probe> {
    let budget = budget.clamp(1, MAX_STEPS);
    let mut d = Stepper { info: InstructionInfoFactory::new(), writes: Vec::new() };
    let t = match ip {
        Some(target) => match d.step_to(t, target, 0, MAX_STEPS, false, "the recorded instruction is not reached")? {
            Ok((t, _)) => t,
            Err(p) => return Ok(p),
        },
        None => t,
    };
    let before = t.regs()?;
    let fp_before = fp_bytes(&t)?;
    let start = before.ip();
    // The iteration ends at the first return to `start` in the same state: a loop that passes
    // there more than once per iteration (a function it calls for each of its workers) passes
    // it in other states in between.
    let (mut t, mut steps, mut returns) = (t, 0, 0);
    loop {
        let (s, n) = match d.step_to(t, start, 1, budget - steps, true, "the iteration is too long")? {
            Ok(v) => v,
            Err(p) => return Ok(p),
        };
        t = s;
        steps += n;
        if same_regs(&before, &t.regs()?) && fp_bytes(&t)? == fp_before {
            break;
        }
        returns += 1;
        if steps >= budget || returns >= MAX_RETURNS {
            return Ok(Probe::Moving("the registers changed", t));
        }
    }
    let mut h = blake3::Hasher::new();
    h.update(&regs_bytes(&before));
    h.update(&fp_before);
    d.writes.sort_by_key(|w| w.0);
    for (addr, old) in &d.writes {
        let now = match t.read(*addr, old.len()) {
            Ok(v) => v,
            Err(e) if e.is_gone() => return Err(e),
            Err(_) => return Ok(Probe::Moving("a written address cannot be read", t)),
        };
        if now != *old {
            return Ok(Probe::Moving("memory changed", t));
        }
        h.update(&addr.to_le_bytes());
        h.update(old);
    }
    let mut digest = [0u8; 16];
    digest.copy_from_slice(&h.finalize().as_bytes()[..16]);
    Ok(Probe::Fixpoint(SpinPoint { ip: start, digest, steps }, t))
}

enum Stepped {
    Ok(Stopped),
    Barrier(&'static str, Stopped),
    Other(Pid, Waited),
}

struct Stepper {
    info: InstructionInfoFactory,
    /// (address, bytes before the first write) of every location written in this iteration.
    writes: Vec<(u64, Vec<u8>)>,
}

impl Stepper {
    /// Steps `t` (at least `min` instructions) until it is at `target`, at most `budget`; the
    /// task and the number of steps, or what the probe found instead.
    fn step_to(
        &mut self,
        mut t: Stopped,
        target: u64,
        min: u32,
        budget: u32,
        snapshot: bool,
        too_long: &'static str,
    ) -> Result<std::result::Result<(Stopped, u32), Probe>> {
        let mut n = 0;
        while n < min || t.regs()?.ip() != target {
            if n >= budget {
                return Ok(Err(Probe::Moving(too_long, t)));
            }
            n += 1;
            t = match self.step(t, snapshot)? {
                Stepped::Ok(t) => t,
                Stepped::Barrier(why, t) => return Ok(Err(Probe::Moving(why, t))),
                Stepped::Other(p, w) => return Ok(Err(Probe::Other(p, w))),
            };
        }
        Ok(Ok((t, n)))
    }

    /// Executes the next instruction, unless it is one that must not be stepped over here.
    /// With `snapshot`, first keeps the bytes it is about to write.
    fn step(&mut self, t: Stopped, snapshot: bool) -> Result<Stepped> {
        let regs = t.regs()?;
        let mut code = [0u8; 15];
        let n = match t.read_some(regs.ip(), &mut code) {
            Ok(n) => n,
            Err(e) if e.is_gone() => return Err(e),
            Err(_) => 0,
        };
        let mut dec = Decoder::with_ip(64, &code[..n], regs.ip(), DecoderOptions::NONE);
        let insn = dec.decode();
        if let Some(why) = barrier(&insn) {
            return Ok(Stepped::Barrier(why, t));
        }
        let info = self.info.info(&insn);
        // The comparison covers the general and x87/SSE registers, not the AVX upper halves,
        // AVX-512 or AMX state: an iteration that touches those is not taken for a fixpoint.
        if info.used_registers().iter().any(|u| {
            let r = u.register();
            r.is_ymm() || r.is_zmm() || r.is_k() || r.is_tmm()
        }) {
            return Ok(Stepped::Barrier("AVX state, which the probe does not compare", t));
        }
        if snapshot {
            for m in info.used_memory() {
                if !matches!(
                    m.access(),
                    OpAccess::Write | OpAccess::CondWrite | OpAccess::ReadWrite | OpAccess::ReadCondWrite
                ) {
                    continue;
                }
                let len = m.memory_size().size();
                let Some(addr) = m.virtual_address(0, |r, _, _| reg_value(&regs, r)) else {
                    return Ok(Stepped::Barrier("a write whose address cannot be computed", t));
                };
                if len == 0 || len > 64 {
                    return Ok(Stepped::Barrier("a write of unknown or large size", t));
                }
                if self.writes.iter().any(|(a, b)| *a == addr && b.len() >= len) {
                    continue;
                }
                match t.read(addr, len) {
                    Ok(bytes) => self.writes.push((addr, bytes)),
                    Err(e) if e.is_gone() => return Err(e),
                    // The instruction faults: let it, and the caller handles the fault's stop.
                    Err(_) => return Ok(Stepped::Barrier("a write to an unreadable address", t)),
                }
            }
        }
        let pid = t.pid();
        t.step()?;
        let (who, w) = wait_for(Some(pid))?;
        match w {
            Waited::Stopped(s) if s.stop == Stop::Signal(Sig::SIGTRAP) && is_step_trap(&s) => Ok(Stepped::Ok(s)),
            other => Ok(Stepped::Other(who, other)),
        }
    }
}

/// Whether a SIGTRAP stop is the end of a single step (not a breakpoint or a SIGTRAP sent by
/// someone).
fn is_step_trap(s: &Stopped) -> bool {
    // TRAP_TRACE (2): a single step; TRAP_BRKPT (1) would be an int3 the program placed.
    s.siginfo().is_ok_and(|si| si.si_code == 2)
}

/// Instructions a probe does not step over: they enter the kernel, are emulated by ftexec
/// (rdtsc), read something outside the thread, or write memory in ways not modelled here.
fn barrier(insn: &Instruction) -> Option<&'static str> {
    if insn.is_invalid() {
        return Some("an instruction that cannot be decoded");
    }
    let m = insn.mnemonic();
    if matches!(
        m,
        Mnemonic::Syscall
            | Mnemonic::Sysenter
            | Mnemonic::Int
            | Mnemonic::Int1
            | Mnemonic::Int3
            | Mnemonic::Into
            | Mnemonic::Ud0
            | Mnemonic::Ud1
            | Mnemonic::Ud2
            | Mnemonic::Hlt
            | Mnemonic::Rdtsc
            | Mnemonic::Rdtscp
            | Mnemonic::Rdpid
            | Mnemonic::Rdrand
            | Mnemonic::Rdseed
            | Mnemonic::Rdpmc
            | Mnemonic::Cpuid
            | Mnemonic::Xbegin
            | Mnemonic::Rdpru
            | Mnemonic::Umwait
            | Mnemonic::Tpause
            | Mnemonic::Wrpkru
    ) {
        return Some("a syscall or a nondeterministic instruction");
    }
    // Stepped, pushf would push the trap flag the step sets: the program would see it.
    if matches!(m, Mnemonic::Pushf | Mnemonic::Pushfd | Mnemonic::Pushfq) {
        return Some("pushf under a single step");
    }
    if insn.is_save_restore_instruction() {
        return Some("an xsave-like instruction");
    }
    if insn.is_string_instruction() && (insn.has_rep_prefix() || insn.has_repne_prefix()) {
        return Some("a repeated string instruction");
    }
    None
}

fn reg_value(regs: &Regs, r: Register) -> Option<u64> {
    let g = &regs.0;
    let full = match r {
        Register::ES | Register::CS | Register::SS | Register::DS => return Some(0),
        Register::FS => return Some(g.fs_base),
        Register::GS => return Some(g.gs_base),
        Register::RIP => return Some(g.rip),
        r if r.is_gpr() => r.full_register(),
        // A vector index (VSIB) or anything else: not modelled.
        _ => return None,
    };
    let v = match full {
        Register::RAX => g.rax,
        Register::RBX => g.rbx,
        Register::RCX => g.rcx,
        Register::RDX => g.rdx,
        Register::RSI => g.rsi,
        Register::RDI => g.rdi,
        Register::RBP => g.rbp,
        Register::RSP => g.rsp,
        Register::R8 => g.r8,
        Register::R9 => g.r9,
        Register::R10 => g.r10,
        Register::R11 => g.r11,
        Register::R12 => g.r12,
        Register::R13 => g.r13,
        Register::R14 => g.r14,
        Register::R15 => g.r15,
        _ => return None,
    };
    Some(match r.size() {
        1 if matches!(r, Register::AH | Register::BH | Register::CH | Register::DH) => (v >> 8) & 0xff,
        1 => v & 0xff,
        2 => v & 0xffff,
        4 => v & 0xffff_ffff,
        _ => v,
    })
}

/// eflags bits that say how the task was stopped rather than what it computed: TF (single
/// step), RF (resume flag).
const EFLAGS_NOT_STATE: u64 = 1 << 8 | 1 << 16;

fn regs_bytes(r: &Regs) -> Vec<u8> {
    let g = &r.0;
    let words = [
        g.r15,
        g.r14,
        g.r13,
        g.r12,
        g.rbp,
        g.rbx,
        g.r11,
        g.r10,
        g.r9,
        g.r8,
        g.rax,
        g.rcx,
        g.rdx,
        g.rsi,
        g.rdi,
        g.rip,
        g.eflags & !EFLAGS_NOT_STATE,
        g.rsp,
        g.fs_base,
        g.gs_base,
    ];
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn same_regs(a: &Regs, b: &Regs) -> bool {
    regs_bytes(a) == regs_bytes(b)
}

fn fp_bytes(t: &Stopped) -> Result<Vec<u8>> {
    let fp = t.fpregs()?;
    // The x87 control/status words, MXCSR, and the st and xmm registers: what a loop computes
    // with (the tag word and last-instruction pointers only say where the FPU was last used).
    let mut v = Vec::with_capacity(8 + 128 + 256);
    v.extend_from_slice(&fp.cwd.to_le_bytes());
    v.extend_from_slice(&fp.swd.to_le_bytes());
    v.extend_from_slice(&fp.mxcsr.to_le_bytes());
    v.extend(fp.st_space.iter().flat_map(|w| w.to_le_bytes()));
    v.extend(fp.xmm_space.iter().flat_map(|w| w.to_le_bytes()));
    Ok(v)
}

/// Stops a running thread where it is, with a SIGSTOP to that thread alone (the tracer sees
/// the signal's delivery stop and does not deliver it). ftexec attaches with PTRACE_TRACEME, so
/// PTRACE_INTERRUPT is not available.
pub fn interrupt(tid: Pid) -> Result<()> {
    crate::tracee::send_signal_to_thread(tid, Sig::SIGSTOP)
}

/// Whether a SIGSTOP is still pending for the thread (its own or its process's, from
/// /proc/TID/status). A SIGCONT sent to the process discards pending stop signals: a probe's
/// SIGSTOP can be lost, and its sender must not wait for it for good.
pub fn stop_pending(tid: Pid) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{tid}/status")) else { return false };
    let bit = 1u64 << (libc::SIGSTOP - 1);
    status.lines().any(|l| {
        let v = l.strip_prefix("SigPnd:").or_else(|| l.strip_prefix("ShdPnd:"));
        v.and_then(|v| u64::from_str_radix(v.trim(), 16).ok()).is_some_and(|m| m & bit != 0)
    })
}

/// How long a probe's SIGSTOP may take to arrive before its sender checks that it is still
/// pending (a running thread takes it within microseconds).
pub const INTERRUPT_PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);

/// The probe's SIGSTOP outstanding, if any: the one watchdog state record and replay share.
/// At most one is in flight; one the kernel discarded (a SIGCONT to the process) is forgotten
/// after [`INTERRUPT_PATIENCE`], so that another is sent when due.
#[derive(Debug, Clone, Copy)]
pub struct Interrupter {
    target: Option<Pid>,
    sent_at: std::time::Instant,
}

impl Default for Interrupter {
    fn default() -> Self {
        Interrupter { target: None, sent_at: std::time::Instant::now() }
    }
}

impl Interrupter {
    /// Takes over a SIGSTOP sent by another session (go-live: the replay's becomes the
    /// recorder's).
    pub fn adopt(target: Option<Pid>) -> Self {
        Interrupter { target, sent_at: std::time::Instant::now() }
    }

    /// The thread the outstanding SIGSTOP was sent to.
    pub fn target(&self) -> Option<Pid> {
        self.target
    }

    /// Whether the outstanding SIGSTOP is `tid`'s.
    pub fn is(&self, tid: Pid) -> bool {
        self.target == Some(tid)
    }

    /// The SIGSTOP arrived (or its thread died): none is outstanding.
    pub fn clear(&mut self) {
        self.target = None;
    }

    /// Forgets the SIGSTOP of `tid`, if the outstanding one is its.
    pub fn clear_if(&mut self, tid: Pid) {
        if self.is(tid) {
            self.target = None;
        }
    }

    /// A pending SIGSTOP goes with its thread when an exec gives it the leader's tid.
    pub fn moved(&mut self, from: Pid, to: Pid) {
        if self.is(from) {
            self.target = Some(to);
        }
    }

    /// One watchdog step: forgets a SIGSTOP the kernel discarded, then, when `due` and none is
    /// outstanding, sends one to `tid` (a thread that is gone is not an error: its death is
    /// reported by wait).
    pub fn tend(&mut self, tid: Option<Pid>, due: bool) -> Result<()> {
        if let Some(p) = self.target {
            if self.sent_at.elapsed() > INTERRUPT_PATIENCE && !stop_pending(p) {
                self.target = None;
            }
        }
        match (self.target, tid) {
            (None, Some(tid)) if due => match interrupt(tid) {
                Ok(()) => {
                    self.target = Some(tid);
                    self.sent_at = std::time::Instant::now();
                    Ok(())
                }
                Err(e) if e.is_gone() => Ok(()),
                Err(e) => Err(e),
            },
            _ => Ok(()),
        }
    }
}

/// The watchdog's longest wait between polls (`tracee::wait_for_within` returns earlier at the
/// next SIGCHLD): doubling from `first` up to `most`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    nap: std::time::Duration,
    most: std::time::Duration,
}

impl Backoff {
    pub fn new(first: std::time::Duration, most: std::time::Duration) -> Self {
        Backoff { nap: first, most }
    }

    /// The next nap, doubled up to the most each time.
    pub fn nap(&mut self) -> std::time::Duration {
        let nap = self.nap;
        self.nap = (self.nap * 2).min(self.most);
        nap
    }
}
