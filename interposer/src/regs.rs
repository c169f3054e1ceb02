//! Typed decoding of the x86-64 register file at a syscall stop.

use libc::user_regs_struct;

/// The registers of a stopped tracee.
#[derive(Clone, Copy)]
pub struct Regs(pub user_regs_struct);

impl Regs {
    /// The syscall number (orig_rax), or -1 once skipped.
    pub fn nr(&self) -> u64 {
        self.0.orig_rax
    }

    /// The six syscall arguments in ABI order.
    pub fn args(&self) -> [u64; 6] {
        let r = &self.0;
        [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9]
    }

    pub fn set_args(&mut self, a: &[u64; 6]) {
        let r = &mut self.0;
        (r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9) = (a[0], a[1], a[2], a[3], a[4], a[5]);
    }

    /// The syscall's return value (at the exit stop).
    pub fn ret(&self) -> i64 {
        self.0.rax as i64
    }

    pub fn set_ret(&mut self, v: i64) {
        self.0.rax = v as u64;
    }

    /// Makes the kernel skip the syscall at a seccomp stop; rax is then its return value.
    pub fn skip_with(&mut self, ret: i64) {
        self.0.orig_rax = u64::MAX;
        self.0.rax = ret as u64;
    }

    /// Moves the instruction pointer back over the `syscall` instruction (2 bytes) that stopped:
    /// resumed, the task makes that syscall again.
    pub fn rewind(&mut self) {
        self.0.rip -= 2;
    }

    /// Replaces the syscall at a seccomp stop by another (the kernel re-reads the registers).
    pub fn rewrite(&mut self, nr: u64, args: &[u64; 6]) {
        self.0.orig_rax = nr;
        self.set_args(args);
    }

    pub fn ip(&self) -> u64 {
        self.0.rip
    }

    pub fn sp(&self) -> u64 {
        self.0.rsp
    }
}

impl std::fmt::Debug for Regs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Regs {{ nr: {}, args: {:x?}, rax: {:#x}, rip: {:#x} }}",
            self.nr() as i64,
            self.args(),
            self.0.rax,
            self.0.rip
        )
    }
}
