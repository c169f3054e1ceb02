//! rdtsc/rdtscp trapping. With PR_SET_TSC(PR_TSC_SIGSEGV) both instructions fault; the tracer
//! sees a SIGSEGV stop, recognizes the instruction at rip, and completes it with a value of its
//! choosing (the real counter when recording, the logged one when replaying).

use crate::regs::Regs;
use crate::tracee::Stopped;
use crate::Result;

/// A trapped time-stamp-counter read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TscInsn {
    /// 0f 31
    Rdtsc,
    /// 0f 01 f9 (also writes TSC_AUX to ecx)
    Rdtscp,
}

impl TscInsn {
    pub fn size(self) -> u64 {
        match self {
            TscInsn::Rdtsc => 2,
            TscInsn::Rdtscp => 3,
        }
    }
}

/// The instruction at `ip`, if it is rdtsc or rdtscp.
pub fn decode(t: &Stopped, ip: u64) -> Result<Option<TscInsn>> {
    let mut b = [0u8; 3];
    let n = match t.read_some(ip, &mut b) {
        Ok(n) => n,
        Err(e) if e.is_gone() => return Err(e),
        Err(_) => 0,
    };
    Ok(match &b[..n] {
        [0x0f, 0x31, ..] => Some(TscInsn::Rdtsc),
        [0x0f, 0x01, 0xf9] => Some(TscInsn::Rdtscp),
        _ => None,
    })
}

/// Reads this CPU's counter (and TSC_AUX for rdtscp).
pub fn now(insn: TscInsn) -> (u64, u32) {
    let mut aux = 0u32;
    // SAFETY: rdtsc/rdtscp only read the time-stamp counter.
    let tsc = unsafe {
        match insn {
            TscInsn::Rdtscp => core::arch::x86_64::__rdtscp(&mut aux),
            TscInsn::Rdtsc => core::arch::x86_64::_rdtsc(),
        }
    };
    (tsc, aux)
}

/// Completes the instruction in `regs`: edx:eax = tsc, ecx = aux (rdtscp), rip past it.
pub fn complete(regs: &mut Regs, insn: TscInsn, tsc: u64, aux: u32) {
    regs.0.rax = tsc & 0xffff_ffff;
    regs.0.rdx = tsc >> 32;
    if insn == TscInsn::Rdtscp {
        regs.0.rcx = u64::from(aux);
    }
    regs.0.rip += insn.size();
}
