//! ft-interposer: the mechanics of tracing. It stops the tracee where the libos table says, and
//! hands typed values (registers, memory, stops) to the caller; it never decides policy.
//!
//! - [`filter`]: the seccomp-bpf program, generated from the libos syscall table;
//! - [`tracee`]: ptrace behind typed states ([`Running`] can only be waited for; only a
//!   [`Stopped`] tracee has registers and memory), process_vm_readv/writev for memory;
//! - [`launch`]: the deterministic start of the program (ASLR off, rdtsc trapped, vDSO
//!   redirected to the clock page or hidden, AT_RANDOM captured or restored, the filter
//!   installed before exec);
//! - [`clock`]: the clock page, vDSO clock reads without a ptrace stop;
//! - [`sysbuf`]: the syscall buffer, socket syscalls recorded in the tracee without a stop;
//! - [`spin`]: finding a thread that spins without syscalls at a fixpoint, where it can be
//!   preempted deterministically without a PMU.

pub mod checkpoint;
pub mod clock;
pub mod fdcopy;
pub mod filter;
pub mod inject;
pub mod launch;
pub mod procfs;
pub mod regs;
pub mod spin;
pub mod sysbuf;
pub mod tracee;
pub mod tsc;

pub use ft_libos::Sig;
pub use launch::{launch, LaunchSpec, Launched, Vdso};
pub use regs::Regs;
pub use tracee::{Running, Stop, Stopped, Waited};

use nix::unistd::Pid;

/// Errors of the tracing machinery. Each names the tracee and the operation.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The tracee disappeared (SIGKILL can take it out of any stop: rr #3581).
    #[error("tracee {pid} vanished during {op}")]
    Gone { pid: Pid, op: &'static str },
    #[error("{op} on tracee {pid} failed: {source}")]
    Ptrace { pid: Pid, op: &'static str, source: nix::Error },
    #[error("cannot {op} {len} bytes of tracee {pid} memory at {addr:#x}: {source}")]
    Memory { pid: Pid, op: &'static str, addr: u64, len: usize, source: nix::Error },
    #[error("cannot build the seccomp filter: {0}")]
    Filter(String),
    #[error("cannot start {exe}: {why}")]
    Launch { exe: String, why: String },
    #[error("tracee {pid}: unexpected {what}")]
    Unexpected { pid: Pid, what: String },
    /// Replay of a recording that read the clock through the clock page, on a kernel whose
    /// vDSO cannot be redirected.
    #[error("the recording read the clock through ftexec's clock page, but this machine's vDSO cannot be redirected ({why}); replay on a machine with an x86-64 vDSO that has clock_gettime, gettimeofday and time")]
    ClockPage { why: String },
}

pub type Result<T> = std::result::Result<T, TraceError>;

impl TraceError {
    pub(crate) fn ptrace(pid: Pid, op: &'static str, source: nix::Error) -> Self {
        if source == nix::Error::ESRCH {
            TraceError::Gone { pid, op }
        } else {
            TraceError::Ptrace { pid, op, source }
        }
    }

    /// Whether the tracee is simply gone (killed), as opposed to a real failure.
    pub fn is_gone(&self) -> bool {
        matches!(self, TraceError::Gone { .. })
            || matches!(self, TraceError::Memory { source, .. } if *source == nix::Error::ESRCH)
    }
}
