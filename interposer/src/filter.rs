//! The seccomp-bpf filter, generated from the libos table with seccompiler.
//!
//! Deterministic syscalls are allowed in the kernel (no stop); every other number, including
//! numbers the table does not know, returns SECCOMP_RET_TRACE (fail closed). mmap is allowed only
//! when MAP_ANONYMOUS is set: file mappings stop so the libos can decide; rt_sigprocmask only
//! when it cannot unblock a signal (SIG_BLOCK, or a NULL set). One more exception, in
//! a hand-written prefix: clock_gettime, gettimeofday and time made by the clock page's own
//! syscall instruction (see [`crate::clock`]), whose results the page logs itself.

use crate::{Result, TraceError};
use ft_libos::table::{Class, Special, TABLE};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// Builds the filter program.
pub fn build() -> Result<BpfProgram> {
    let err = |e: seccompiler::BackendError| TraceError::Filter(e.to_string());
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for spec in TABLE.iter().filter(|s| s.class == Class::Deterministic) {
        let nr = i64::from(spec.nr);
        match spec.special {
            Special::Mmap => {
                let anon = libc::MAP_ANONYMOUS as u64;
                let cond = SeccompCondition::new(3, SeccompCmpArgLen::Dword, SeccompCmpOp::MaskedEq(anon), anon)
                    .map_err(err)?;
                rules.insert(nr, vec![SeccompRule::new(vec![cond]).map_err(err)?]);
            }
            // Traced: see Special::Exit and Special::Close.
            Special::Exit | Special::Close => {}
            Special::SigMask => {
                // Allowed when it cannot unblock anything: SIG_BLOCK, or no new set.
                let block = SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, libc::SIG_BLOCK as u64)
                    .map_err(err)?;
                let no_set = SeccompCondition::new(1, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, 0).map_err(err)?;
                rules.insert(
                    nr,
                    vec![SeccompRule::new(vec![block]).map_err(err)?, SeccompRule::new(vec![no_set]).map_err(err)?],
                );
            }
            _ => {
                rules.insert(nr, vec![]);
            }
        }
    }
    let filter =
        SeccompFilter::new(rules, SeccompAction::Trace(0), SeccompAction::Allow, TargetArch::x86_64).map_err(err)?;
    let table: BpfProgram =
        filter.try_into().map_err(|e: seccompiler::BackendError| TraceError::Filter(e.to_string()))?;
    let mut prog = clock_prefix(crate::clock::allowed_ip());
    prog.extend(table);
    Ok(prog)
}

/// The syscalls ftexec's own code makes untraced from its one allowed instruction: the clock
/// stub's reads, and the syscall buffer handler's non-blocking forms (see `crate::sysbuf`).
pub fn allowed_from_stub() -> Vec<u32> {
    let mut nrs: Vec<u32> = ft_libos::clock::BUFFERED.iter().map(|&n| n as u32).collect();
    nrs.extend(crate::sysbuf::HANDLER_SYSCALLS.iter().map(|&n| n as u32));
    nrs
}

/// Allows [`allowed_from_stub`] from exactly one instruction address; everything else falls
/// through to the table's program. Jump offsets count from the next instruction.
fn clock_prefix(ip: u64) -> BpfProgram {
    use seccompiler::sock_filter;
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let ins = |code: u16, jt: u8, jf: u8, k: u32| sock_filter { code, jt, jf, k };
    let nrs = allowed_from_stub();
    let n = nrs.len() as u8;
    // seccomp_data: nr at 0, arch at 4, instruction_pointer at 8 (low word) and 12 (high word).
    // Layout: 0-6 the checks of ip and arch, 7.. one JEQ per number, then JA (to the table),
    // then RET ALLOW; `out` is the distance from instruction i's successor to the table.
    let out = |i: u8| 7 + n + 2 - (i + 1);
    let mut p = vec![
        ins(LD_W_ABS, 0, 0, 8),
        ins(JEQ_K, 0, out(1), ip as u32),
        ins(LD_W_ABS, 0, 0, 12),
        ins(JEQ_K, 0, out(3), (ip >> 32) as u32),
        ins(LD_W_ABS, 0, 0, 4),
        ins(JEQ_K, 0, out(5), 0xc000_003e), // AUDIT_ARCH_X86_64
        ins(LD_W_ABS, 0, 0, 0),
    ];
    for (k, nr) in nrs.iter().enumerate() {
        // To the RET ALLOW after the remaining JEQs and the JA.
        p.push(ins(JEQ_K, n - k as u8, 0, *nr));
    }
    p.push(ins(JA, 0, 0, 1));
    p.push(ins(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW));
    p
}

/// How many syscall numbers the filter lets through without a stop.
pub fn allowed_count() -> usize {
    TABLE
        .iter()
        .filter(|s| s.class == Class::Deterministic && !matches!(s.special, Special::Exit | Special::Close))
        .count()
}

#[cfg(test)]
mod tests {
    #[test]
    fn builds() {
        let prog = super::build().expect("filter builds");
        assert!(prog.len() > super::allowed_count());
    }
}
