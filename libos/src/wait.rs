//! What a wait4/waitid result means for the child it names.
//!
//! Replay forks children whose exit signal is 0 (so that no SIGCHLD of its own reaches the
//! program: the log's SIGCHLDs are the program's). Such a child is a zombie until a wait with
//! `__WALL` takes it, and the program's own waits are answered from the log. Replay therefore
//! reaps, for real, each child the log says a wait reaped; this module reads that from a
//! logged wait.

use crate::effect::Wait;
use crate::proto::MemWrite;

/// Wait for every kind of child, whatever its exit signal (`<linux/wait.h>`).
pub const WALL: u64 = 0x4000_0000;
/// waitid: leave the child waitable.
pub const WNOWAIT: u64 = 0x0100_0000;
/// waitid: report stopped / continued children too.
pub const WSTOPPED: u64 = 2;
pub const WCONTINUED: u64 = 8;
/// waitid's idtype for one pid.
pub const P_PID: u64 = 1;

/// siginfo_t.si_code values for SIGCHLD (`<asm-generic/siginfo.h>`).
pub const CLD_EXITED: i32 = 1;
pub const CLD_KILLED: i32 = 2;
pub const CLD_DUMPED: i32 = 3;

/// The pid (as the program sees it) of the child that a logged wait4/waitid reaped: None if
/// it reaped nothing, reported a stop or a continue, or left the child waitable (WNOWAIT).
pub fn reaped(wait: Wait, args: &[u64], ret: i64, mem: &[MemWrite]) -> Option<i32> {
    let written = |addr: u64, off: usize| -> Option<i32> {
        let m = mem.iter().find(|m| m.addr == addr && addr != 0)?;
        let b = m.data.get(off..off + 4)?;
        Some(i32::from_le_bytes(b.try_into().ok()?))
    };
    match wait {
        Wait::Wait4 if ret > 0 => {
            let pid = i32::try_from(ret).ok()?;
            match written(*args.get(1)?, 0) {
                // WIFSTOPPED / WIFCONTINUED: the child is still there.
                Some(st) if st & 0xff == 0x7f || st == 0xffff => None,
                _ => Some(pid),
            }
        }
        Wait::Waitid if ret == 0 => {
            if args.get(3)? & WNOWAIT != 0 {
                return None;
            }
            // siginfo_t: si_signo, si_errno, si_code, a pad, then si_pid.
            let info = *args.get(2)?;
            if info == 0 {
                // No siginfo: only waitid(P_PID, pid, NULL, WEXITED) says which child it reaped.
                let only_exits = args.get(3)? & (WSTOPPED | WCONTINUED) == 0;
                return (args.first() == Some(&P_PID) && only_exits).then(|| i32::try_from(*args.get(1)?).ok())?;
            }
            let code = written(info, 8)?;
            let pid = written(info, 16)?;
            (pid > 0 && matches!(code, CLD_EXITED | CLD_KILLED | CLD_DUMPED)).then_some(pid)
        }
        Wait::Wait4 | Wait::Waitid => None,
    }
}

/// The 128 bytes of the siginfo_t the kernel gives the parent of a child that ended
/// (SIGCHLD): `status` is the exit code for CLD_EXITED, the signal for CLD_KILLED.
pub fn sigchld_info(pid: i32, uid: u32, code: i32, status: i32) -> Vec<u8> {
    let mut b = vec![0u8; 128];
    b[0..4].copy_from_slice(&17i32.to_le_bytes()); // SIGCHLD
    b[8..12].copy_from_slice(&code.to_le_bytes());
    b[16..20].copy_from_slice(&pid.to_le_bytes());
    b[20..24].copy_from_slice(&uid.to_le_bytes());
    b[24..28].copy_from_slice(&status.to_le_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(addr: u64, data: Vec<u8>) -> Vec<MemWrite> {
        vec![MemWrite { addr, data }]
    }

    #[test]
    fn wait4_reaps_an_exit_or_a_death_but_not_a_stop() {
        let exited = mem(0x1000, (7i32 << 8).to_le_bytes().to_vec());
        assert_eq!(reaped(Wait::Wait4, &[u64::MAX, 0x1000, 1, 0], 42, &exited), Some(42));
        let killed = mem(0x1000, 9i32.to_le_bytes().to_vec());
        assert_eq!(reaped(Wait::Wait4, &[u64::MAX, 0x1000, 1, 0], 42, &killed), Some(42));
        let stopped = mem(0x1000, (0x137f_i32).to_le_bytes().to_vec());
        assert_eq!(reaped(Wait::Wait4, &[u64::MAX, 0x1000, 2, 0], 42, &stopped), None);
        let continued = mem(0x1000, 0xffff_i32.to_le_bytes().to_vec());
        assert_eq!(reaped(Wait::Wait4, &[u64::MAX, 0x1000, 8, 0], 42, &continued), None);
        // No status pointer: a reap, as far as the log can tell.
        assert_eq!(reaped(Wait::Wait4, &[u64::MAX, 0, 0, 0], 42, &[]), Some(42));
        assert_eq!(reaped(Wait::Wait4, &[u64::MAX, 0x1000, 1, 0], 0, &[]), None);
        assert_eq!(reaped(Wait::Wait4, &[u64::MAX, 0x1000, 0, 0], -10, &[]), None);
    }

    #[test]
    fn waitid_reaps_unless_wnowait_or_a_stop() {
        let info = |code: i32, pid: i32| {
            let mut b = sigchld_info(pid, 0, code, 0);
            b.truncate(32);
            mem(0x2000, b)
        };
        assert_eq!(reaped(Wait::Waitid, &[0, 0, 0x2000, 4, 0], 0, &info(CLD_EXITED, 5)), Some(5));
        assert_eq!(reaped(Wait::Waitid, &[0, 0, 0x2000, 4, 0], 0, &info(CLD_KILLED, 5)), Some(5));
        assert_eq!(reaped(Wait::Waitid, &[0, 0, 0x2000, 4 | WNOWAIT, 0], 0, &info(CLD_EXITED, 5)), None);
        assert_eq!(reaped(Wait::Waitid, &[0, 0, 0x2000, 2, 0], 0, &info(5, 5)), None);
        // WNOHANG with nothing ready: si_pid 0.
        assert_eq!(reaped(Wait::Waitid, &[0, 0, 0x2000, 4 | 1, 0], 0, &info(0, 0)), None);
        assert_eq!(reaped(Wait::Waitid, &[0, 0, 0x2000, 4, 0], 0, &[]), None);
        // No infop: only a P_PID wait for exits names its child.
        assert_eq!(reaped(Wait::Waitid, &[P_PID, 9, 0, 4, 0], 0, &[]), Some(9));
        assert_eq!(reaped(Wait::Waitid, &[P_PID, 9, 0, 4 | WSTOPPED, 0], 0, &[]), None);
        assert_eq!(reaped(Wait::Waitid, &[0, 0, 0, 4, 0], 0, &[]), None);
    }

    #[test]
    fn a_sigchld_info_has_the_kernels_layout() {
        let b = sigchld_info(12, 1000, CLD_EXITED, 3);
        assert_eq!(b.len(), 128);
        assert_eq!(&b[0..4], &17i32.to_le_bytes());
        assert_eq!(&b[8..12], &1i32.to_le_bytes());
        assert_eq!(&b[16..20], &12i32.to_le_bytes());
        assert_eq!(&b[20..24], &1000u32.to_le_bytes());
        assert_eq!(&b[24..28], &3i32.to_le_bytes());
    }
}
