//! The seccomp-bpf filter, generated from the libos table with seccompiler.
//!
//! Deterministic syscalls are allowed in the kernel (no stop); every other number, including
//! numbers the table does not know, returns SECCOMP_RET_TRACE (fail closed). mmap is allowed only
//! when MAP_ANONYMOUS is set: file mappings stop so the libos can decide.

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
            _ => {
                rules.insert(nr, vec![]);
            }
        }
    }
    let filter =
        SeccompFilter::new(rules, SeccompAction::Trace(0), SeccompAction::Allow, TargetArch::x86_64).map_err(err)?;
    filter.try_into().map_err(|e: seccompiler::BackendError| TraceError::Filter(e.to_string()))
}

/// How many syscall numbers the filter lets through without a stop.
pub fn allowed_count() -> usize {
    TABLE.iter().filter(|s| s.class == Class::Deterministic).count()
}

#[cfg(test)]
mod tests {
    #[test]
    fn builds() {
        let prog = super::build().expect("filter builds");
        assert!(prog.len() > super::allowed_count());
    }
}
