//! Fd numbers at replay: fds the kernel numbered otherwise than the recording's (an fd taken
//! while the recording's syscall was in the kernel, see docs/ARCHITECTURE.md "Fd numbers across
//! threads") are moved to the recorded numbers, and fds received in SCM_RIGHTS data are made as
//! stand-ins at theirs, by syscalls injected at the syscall's seccomp stop.

use super::*;

impl Replayer<'_> {
    /// At the exit stop of a syscall that created fds: moves each (got, want, cloexec) fd to
    /// the recording's number `want` (dup3, then close of `got`), through syscalls injected at
    /// the syscall's own seccomp stop, where it leaves the task (the caller puts the result in
    /// and skips the syscall). `want` must be free here: an fd still open at that number is a
    /// divergence (the recording had closed it before this syscall).
    pub(super) fn renumber(
        &mut self,
        t: Stopped,
        entry: ft_interposer::Regs,
        moves: &[(i32, i32, bool)],
        index: u64,
    ) -> Result<Stopped> {
        let pid = t.pid();
        let busy: Vec<i32> = moves
            .iter()
            .map(|m| m.1)
            .filter(|w| !moves.iter().any(|m| m.0 == *w) && Path::new(&format!("/proc/{pid}/fd/{w}")).exists())
            .collect();
        let cyclic = moves.iter().any(|a| a.0 != a.1 && moves.iter().any(|b| b.0 == a.1 && b.1 == a.0));
        if !busy.is_empty() || cyclic {
            let got: Vec<i32> = moves.iter().map(|m| m.0).collect();
            let want: Vec<i32> = moves.iter().map(|m| m.1).collect();
            return Err(self.diverge(
                index,
                format!("new fd(s) {want:?}"),
                format!("fd(s) {got:?}, and {busy:?} still open here: the fd table differs"),
            ));
        }
        // Back to the syscall's seccomp stop (as inject::Remote does), then the moves.
        let mut back = entry;
        back.skip_with(entry.nr() as i64);
        back.rewind();
        t.set_regs(&back)?;
        t.cont(None)?;
        let t = match self.wait_tid(pid)? {
            Waited::Stopped(s) if s.stop == Stop::Seccomp => s,
            Waited::Stopped(s) => {
                return Err(SessionError::Trace(ft_interposer::TraceError::Unexpected {
                    pid,
                    what: format!("{:?} instead of the syscall's stop again", s.stop),
                }))
            }
            w => return self.on_death_during(index, w),
        };
        t.set_regs(&entry)?;
        let mut remote = ft_interposer::inject::Remote::new(t)?;
        // A move whose target is another move's source goes after that one.
        let mut order: Vec<&(i32, i32, bool)> = moves.iter().filter(|m| m.0 != m.1).collect();
        order.sort_by_key(|m| moves.iter().any(|o| o.0 == m.1));
        for &&(got, want, cloexec) in &order {
            let r = remote.dup3(i64::from(got), i64::from(want), cloexec)?;
            if r != i64::from(want) {
                return Err(self.diverge(index, format!("fd {want}"), format!("dup3 to it failed ({r})")));
            }
            if !moves.iter().any(|m| m.1 == got) {
                remote.close(i64::from(got))?;
            }
        }
        slog::debug!(self.log, "fds moved to the recording's numbers"; "moves" => format!("{moves:?}"), "at" => index);
        remote.into_stopped().ok_or_else(|| {
            SessionError::Trace(ft_interposer::TraceError::Unexpected { pid, what: "lost during injected dup3".into() })
        })
    }

    /// A task that died where the replay injected syscalls into it: a divergence.
    pub(super) fn on_death_during(&mut self, index: u64, w: Waited) -> Result<Stopped> {
        let how = match w {
            Waited::Exited(code) => format!("exit status {code}"),
            Waited::Killed(sig) => format!("killed by {sig}"),
            Waited::Stopped(_) => "a stop".into(),
        };
        Err(self.diverge(index, "a syscall".into(), format!("the task ended ({how}) while its fds were renumbered")))
    }

    /// The fds a recvmsg received at record (SCM_RIGHTS): stand-ins (eventfds) at their numbers,
    /// made by syscalls injected at the recvmsg's seccomp stop, where the task is left.
    pub(super) fn received_stand_ins(&mut self, t: Stopped, s: &Syscall, index: u64) -> Result<Stopped> {
        let pid = t.pid();
        let busy: Vec<i32> =
            s.new_fds.iter().map(|f| f.fd).filter(|fd| Path::new(&format!("/proc/{pid}/fd/{fd}")).exists()).collect();
        if !busy.is_empty() {
            let want: Vec<i32> = s.new_fds.iter().map(|f| f.fd).collect();
            return Err(self.diverge(
                index,
                format!("received fd(s) {want:?}"),
                format!("{busy:?} still open here: the fd table differs"),
            ));
        }
        let mut remote = ft_interposer::inject::Remote::new(t)?;
        for f in &s.new_fds {
            let got = remote.eventfd(if f.cloexec { libc::EFD_CLOEXEC } else { 0 })?;
            if got < 0 {
                return Err(self.diverge(
                    index,
                    format!("received fd {}", f.fd),
                    format!("no stand-in for it (eventfd2: {got})"),
                ));
            }
            if got != i64::from(f.fd) {
                let r = remote.move_fd(got, i64::from(f.fd), f.cloexec)?;
                if r != i64::from(f.fd) {
                    return Err(self.diverge(
                        index,
                        format!("received fd {}", f.fd),
                        format!("dup3 to it failed ({r})"),
                    ));
                }
            }
        }
        remote.into_stopped().ok_or_else(|| {
            SessionError::Trace(ft_interposer::TraceError::Unexpected {
                pid,
                what: "lost while making received fds".into(),
            })
        })
    }
}
