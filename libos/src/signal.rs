//! Signal numbers as the kernel has them: 1 to 64, real-time signals included.
//!
//! nix's `Signal` enum stops at 31, so a tracer built on it cannot carry SIGRTMIN (34) through a
//! signal-delivery stop. Everything in ftexec that holds, compares, logs or re-sends a signal uses
//! [`Sig`] instead; the log already stores signals as plain numbers (`Signal.signo`,
//! `Exit.signal`).

use std::fmt;

/// The highest signal number on Linux (SIGRTMAX as the kernel sees it).
pub const SIG_MAX: i32 = 64;

/// A signal number (1..=64). Constants for the classic signals allow `match` patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sig(i32);

/// The names of signals 1..=31, in number order (x86-64).
const NAMES: [&str; 31] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// The first real-time signal a program can use (glibc keeps 32 and 33 for itself).
const GLIBC_SIGRTMIN: i32 = 34;

impl Sig {
    pub const SIGHUP: Sig = Sig(libc::SIGHUP);
    pub const SIGINT: Sig = Sig(libc::SIGINT);
    pub const SIGQUIT: Sig = Sig(libc::SIGQUIT);
    pub const SIGILL: Sig = Sig(libc::SIGILL);
    pub const SIGTRAP: Sig = Sig(libc::SIGTRAP);
    pub const SIGABRT: Sig = Sig(libc::SIGABRT);
    pub const SIGBUS: Sig = Sig(libc::SIGBUS);
    pub const SIGFPE: Sig = Sig(libc::SIGFPE);
    pub const SIGKILL: Sig = Sig(libc::SIGKILL);
    pub const SIGUSR1: Sig = Sig(libc::SIGUSR1);
    pub const SIGSEGV: Sig = Sig(libc::SIGSEGV);
    pub const SIGUSR2: Sig = Sig(libc::SIGUSR2);
    pub const SIGPIPE: Sig = Sig(libc::SIGPIPE);
    pub const SIGALRM: Sig = Sig(libc::SIGALRM);
    pub const SIGTERM: Sig = Sig(libc::SIGTERM);
    pub const SIGCHLD: Sig = Sig(libc::SIGCHLD);
    pub const SIGCONT: Sig = Sig(libc::SIGCONT);
    pub const SIGSTOP: Sig = Sig(libc::SIGSTOP);
    pub const SIGURG: Sig = Sig(libc::SIGURG);
    pub const SIGWINCH: Sig = Sig(libc::SIGWINCH);
    pub const SIGSYS: Sig = Sig(libc::SIGSYS);

    /// The signal with this number, if it is one (1..=64): numbers read from a log or a program.
    pub fn new(signo: i32) -> Option<Sig> {
        (1..=SIG_MAX).contains(&signo).then_some(Sig(signo))
    }

    /// The number as the kernel and the log have it.
    pub const fn raw(self) -> i32 {
        self.0
    }

    /// A real-time signal (32 and up): queued, not merged, default action terminate.
    pub fn is_realtime(self) -> bool {
        self.0 >= 32
    }

    /// Its bit in a 64-bit signal mask (/proc/PID/status SigCgt, SigIgn, ...).
    pub fn mask_bit(self) -> u64 {
        1u64 << (self.0 - 1)
    }

    /// SIGINT, SIGRTMIN, SIGRTMIN+3, SIGRTMAX (64); 32 and 33, which glibc reserves for
    /// itself, are SIG32 and SIG33.
    pub fn name(self) -> String {
        match self.0 {
            n @ 1..=31 => NAMES[(n - 1) as usize].to_string(),
            n @ (32 | 33) => format!("SIG{n}"),
            GLIBC_SIGRTMIN => "SIGRTMIN".to_string(),
            SIG_MAX => "SIGRTMAX".to_string(),
            n => format!("SIGRTMIN+{}", n - GLIBC_SIGRTMIN),
        }
    }
}

impl fmt::Display for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// The name of a signal number from a log (SIGINT, SIGRTMIN+2), or None when it is not a signal.
pub fn name(signo: i32) -> Option<String> {
    Sig::new(signo).map(Sig::name)
}

/// The result of a syscall that the kernel continues as restart_syscall (a sleep, poll).
pub const ERESTART_RESTARTBLOCK: i64 = -516;

/// The kernel's own codes for a syscall that a signal interrupted and that it runs again (or
/// ends with EINTR) after the handler: a program never sees them, a tracer does at the exit.
pub fn restart_name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        512 => "ERESTARTSYS",
        513 => "ERESTARTNOINTR",
        514 => "ERESTARTNOHAND",
        516 => "ERESTART_RESTARTBLOCK",
        _ => return None,
    })
}

/// Whether a syscall's result is one of those codes (see [`restart_name`]).
pub fn is_restart(ret: i64) -> bool {
    (-516..=-512).contains(&ret) && restart_name(-ret as i32).is_some()
}

/// The syscall the kernel runs again after a handler when syscall `nr` was interrupted with
/// the restart code `ret`: restart_syscall after ERESTART_RESTARTBLOCK, else `nr` itself.
pub fn restarted_nr(ret: i64, nr: u32) -> i64 {
    if ret == ERESTART_RESTARTBLOCK {
        libc::SYS_restart_syscall
    } else {
        i64::from(nr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_c_library_numbers() {
        let pairs = [
            (libc::SIGHUP, "SIGHUP"),
            (libc::SIGINT, "SIGINT"),
            (libc::SIGILL, "SIGILL"),
            (libc::SIGTRAP, "SIGTRAP"),
            (libc::SIGABRT, "SIGABRT"),
            (libc::SIGBUS, "SIGBUS"),
            (libc::SIGFPE, "SIGFPE"),
            (libc::SIGKILL, "SIGKILL"),
            (libc::SIGUSR1, "SIGUSR1"),
            (libc::SIGSEGV, "SIGSEGV"),
            (libc::SIGUSR2, "SIGUSR2"),
            (libc::SIGPIPE, "SIGPIPE"),
            (libc::SIGALRM, "SIGALRM"),
            (libc::SIGTERM, "SIGTERM"),
            (libc::SIGSTKFLT, "SIGSTKFLT"),
            (libc::SIGCHLD, "SIGCHLD"),
            (libc::SIGCONT, "SIGCONT"),
            (libc::SIGSTOP, "SIGSTOP"),
            (libc::SIGTSTP, "SIGTSTP"),
            (libc::SIGTTIN, "SIGTTIN"),
            (libc::SIGTTOU, "SIGTTOU"),
            (libc::SIGURG, "SIGURG"),
            (libc::SIGXCPU, "SIGXCPU"),
            (libc::SIGXFSZ, "SIGXFSZ"),
            (libc::SIGVTALRM, "SIGVTALRM"),
            (libc::SIGPROF, "SIGPROF"),
            (libc::SIGWINCH, "SIGWINCH"),
            (libc::SIGIO, "SIGIO"),
            (libc::SIGPWR, "SIGPWR"),
            (libc::SIGSYS, "SIGSYS"),
        ];
        for (n, want) in pairs {
            assert_eq!(name(n).as_deref(), Some(want), "{n}");
        }
        assert_eq!(name(32).as_deref(), Some("SIG32"));
        assert_eq!(name(34).as_deref(), Some("SIGRTMIN"));
        assert_eq!(name(36).as_deref(), Some("SIGRTMIN+2"));
        assert_eq!(name(64).as_deref(), Some("SIGRTMAX"));
        assert_eq!(libc::SIGRTMIN(), GLIBC_SIGRTMIN);
        assert_eq!(libc::SIGRTMAX(), SIG_MAX);
    }

    #[test]
    fn numbers_outside_1_to_64_are_not_signals() {
        assert_eq!(Sig::new(0), None);
        assert_eq!(Sig::new(65), None);
        assert_eq!(Sig::new(-9), None);
        assert_eq!(name(65), None);
        assert_eq!(Sig::new(64).map(Sig::mask_bit), Some(1u64 << 63));
        assert!(Sig::new(34).is_some_and(Sig::is_realtime));
        assert!(!Sig::SIGUSR2.is_realtime());
    }
}
