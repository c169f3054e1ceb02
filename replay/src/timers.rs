//! The program's POSIX timers and timerfds across a go-live. Replay runs neither timer_create
//! nor timerfd_settime (their results and the signals or expirations they gave are in the
//! log): it follows what the program asked of them (the table's `Timer` effects), and a
//! replica that goes live makes them again and arms them as they would be armed now:
//! - a POSIX timer gets its id back (prctl PR_TIMER_CREATE_RESTORE_IDS, which lets
//!   timer_create take the id it is given), with its clock and sigevent; the kernel's next id
//!   is the recording's (the last id it gave is made again, and deleted if the program had);
//! - a timerfd (an eventfd stands in for it at replay) becomes a timerfd of its clock and flags
//!   at the same number, registered again in the epoll instances that watched it.
//!
//! How a timer is armed: see [`TimerSet::to_arm`].

use crate::error::{Result, SessionError};
use ft_interposer::inject::Remote;
use slog::{debug, info, warn, Logger};

/// `prctl(PR_TIMER_CREATE_RESTORE_IDS, ...)` (linux/prctl.h): timer_create takes the id at its
/// third argument instead of choosing one.
const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;
const RESTORE_IDS_OFF: u64 = 0;
const RESTORE_IDS_ON: u64 = 1;
/// sizeof(struct sigevent).
const SIGEVENT_LEN: usize = 64;
const NS: i64 = 1_000_000_000;

/// How a timer is armed: flags and struct itimerspec (interval s, ns, value s, ns).
pub(crate) type Arm = (i32, [i64; 4]);

/// A setting the program gave a timer (timer_settime, timerfd_settime): its flags, its struct
/// itimerspec (interval s, ns, value s, ns) and where in the log it was set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct TimerSet {
    pub flags: i32,
    pub its: [i64; 4],
    pub at: u64,
}

impl TimerSet {
    /// Reads a setting: `flags` and the struct itimerspec at `new` in the program's memory.
    pub fn read(t: &ft_interposer::Stopped, flags: u64, new: u64, at: u64) -> Result<TimerSet> {
        let b = t.read(new, 32)?;
        let word = |i: usize| b.get(i * 8..i * 8 + 8).and_then(|w| w.try_into().ok()).map_or(0, i64::from_le_bytes);
        Ok(TimerSet { flags: flags as i32, its: [word(0), word(1), word(2), word(3)], at })
    }

    /// Whether the setting disarms the timer (a zero value).
    pub fn disarms(&self) -> bool {
        self.its[2] == 0 && self.its[3] == 0
    }

    /// How to arm the timer going live (flags, itimerspec), None to leave it disarmed. `fired`:
    /// the log shows that it expired since it was set (its signal was taken, its timerfd read).
    /// - periodic and absolute: at the next expiry after now on `clock`, so it keeps its phase
    ///   and does not report the periods the recording's program already counted;
    /// - periodic and relative: one interval from now;
    /// - one-shot that has fired: disarmed;
    /// - one-shot absolute: at its time (at once if that has passed);
    /// - one-shot relative: for its whole value, late by the time that went by at record
    ///   before the log ended (the log does not tell it), as interval timers are.
    pub fn to_arm(self, clock: i32, fired: bool) -> Option<Arm> {
        let [is, ins, vs, vns] = self.its;
        if self.disarms() {
            return None;
        }
        let periodic = is != 0 || ins != 0;
        let absolute = self.flags & libc::TIMER_ABSTIME != 0;
        match (periodic, absolute) {
            (false, _) if fired => None,
            (false, _) => Some((self.flags, self.its)),
            (true, false) => Some((self.flags, [is, ins, is, ins])),
            (true, true) => {
                let interval = is.saturating_mul(NS).saturating_add(ins).max(1);
                let value = vs.saturating_mul(NS).saturating_add(vns);
                let Some(now) = clock_now(clock) else {
                    // A clock the tracer cannot read (a CPU-time clock): one interval from now.
                    return Some((self.flags & !libc::TIMER_ABSTIME, [is, ins, is, ins]));
                };
                let next = if now < value {
                    Some(value)
                } else {
                    ((now - value) / interval)
                        .checked_add(1)
                        .and_then(|k| k.checked_mul(interval))
                        .and_then(|d| value.checked_add(d))
                };
                match next {
                    Some(next) => Some((self.flags, [is, ins, next / NS, next % NS])),
                    // Periods too long to count: as the program armed it.
                    None => Some((self.flags, self.its)),
                }
            }
        }
    }
}

/// The time on `clock` as the tracer reads it, in ns (the replicas of this machine share it).
fn clock_now(clock: i32) -> Option<i64> {
    let base = match clock {
        libc::CLOCK_REALTIME | libc::CLOCK_REALTIME_ALARM => libc::CLOCK_REALTIME,
        libc::CLOCK_MONOTONIC => libc::CLOCK_MONOTONIC,
        libc::CLOCK_BOOTTIME | libc::CLOCK_BOOTTIME_ALARM => libc::CLOCK_BOOTTIME,
        libc::CLOCK_TAI => libc::CLOCK_TAI,
        _ => return None,
    };
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into `ts`, which lives across the call.
    let r = unsafe { libc::clock_gettime(base, &mut ts) };
    (r == 0).then(|| ts.tv_sec.saturating_mul(NS).saturating_add(ts.tv_nsec))
}

/// One of the program's timerfds (a stand-in at replay): timerfd_create's clock and flags, its
/// last setting, and whether a read took an expiration since.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct TimerFdShadow {
    pub clock: i32,
    pub flags: i32,
    pub set: Option<TimerSet>,
    pub fired: bool,
}

impl TimerFdShadow {
    /// Makes the timerfd in the process of `r` (at a syscall stop) and arms it; returns its fd.
    pub fn make(&self, r: &mut Remote, fd: i32, log: &Logger) -> Result<i64> {
        let new = r.timerfd_create(self.clock, self.flags & libc::TFD_NONBLOCK)?;
        if new < 0 {
            return Err(unsupported(format!("making the timerfd at fd {fd} again (clock {})", self.clock), new));
        }
        let arm = self.set.and_then(|s| s.to_arm(self.clock, self.fired));
        if let Some((flags, its)) = arm {
            let s = r.timerfd_settime(new, flags, &itimerspec(its))?;
            if s < 0 {
                return Err(unsupported(format!("arming the timerfd at fd {fd} again"), s));
            }
        }
        info!(log, "going live: timerfd made again"; "fd" => fd, "clock" => self.clock, "armed" => ?arm.map(|a| a.1));
        Ok(new)
    }
}

/// One of the program's POSIX timers: timer_create's clock and sigevent (None: a null
/// pointer, SIGALRM), and its last setting.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct PosixTimer {
    pub clock: i32,
    pub event: Option<Vec<u8>>,
    pub set: Option<TimerSet>,
}

impl PosixTimer {
    /// Reads timer_create's arguments.
    pub fn read(t: &ft_interposer::Stopped, clock: u64, event: u64) -> Result<PosixTimer> {
        let event = if event == 0 { None } else { Some(t.read(event, SIGEVENT_LEN)?) };
        Ok(PosixTimer { clock: clock as i32, event, set: None })
    }

    /// The signal its expiry sends, if any (SIGEV_SIGNAL, SIGEV_THREAD_ID; a null sigevent:
    /// SIGALRM).
    pub fn signal(&self) -> Option<i32> {
        let Some(ev) = &self.event else { return Some(libc::SIGALRM) };
        let word = |i: usize| ev.get(i..i + 4).and_then(|w| w.try_into().ok()).map_or(0, i32::from_le_bytes);
        // struct sigevent: sigev_value (8), sigev_signo (4), sigev_notify (4).
        let (signo, notify) = (word(8), word(12));
        (notify == libc::SIGEV_SIGNAL || notify == libc::SIGEV_THREAD_ID).then_some(signo)
    }
}

/// The POSIX timers of one process to make going live: (id, timer, how to arm it), and the last
/// id the kernel gave in that process.
#[derive(Default)]
pub(crate) struct PosixWork {
    pub timers: Vec<(i32, PosixTimer, Option<Arm>)>,
    pub last: Option<i32>,
}

impl PosixWork {
    pub fn is_empty(&self) -> bool {
        self.timers.is_empty() && self.last.is_none()
    }

    /// Makes the timers in the process of `r` (at a syscall stop), each with its id, and leaves
    /// the kernel's next id where the recording's was.
    pub fn make(&self, r: &mut Remote, log: &Logger) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let on = r.prctl(PR_TIMER_CREATE_RESTORE_IDS, RESTORE_IDS_ON)?;
        if on < 0 {
            if !self.timers.is_empty() {
                warn!(log, "going live: the program's POSIX timers cannot be made again with their ids: this kernel has no prctl PR_TIMER_CREATE_RESTORE_IDS; a program that waits for them will wait forever"; "timers" => self.timers.len());
            }
            return Ok(());
        }
        // The last id given is made last (the kernel goes on after the last id it made); if the
        // program deleted it, it is made and deleted.
        let mut order: Vec<(i32, Option<&PosixTimer>, Option<Arm>)> =
            self.timers.iter().map(|(id, t, arm)| (*id, Some(t), *arm)).collect();
        order.sort_by_key(|(id, _, _)| (Some(*id) == self.last, *id));
        if let Some(last) = self.last.filter(|l| !self.timers.iter().any(|(id, _, _)| id == l)) {
            order.push((last, None, None));
        }
        let result = (|| {
            for (id, timer, arm) in order {
                // A placeholder's sigevent: SIGEV_NONE.
                let event = match timer {
                    Some(t) => t.event.clone(),
                    None => Some(sigev_none()),
                };
                let clock = timer.map_or(libc::CLOCK_MONOTONIC, |t| t.clock);
                let c = r.timer_create(clock, event.as_deref(), id)?;
                if c < 0 {
                    // A SIGEV_THREAD_ID timer whose thread has ended, say: natively it would
                    // not fire either once its thread is gone.
                    warn!(log, "going live: a POSIX timer cannot be made again"; "id" => id, "errno" => -c);
                    continue;
                }
                if timer.is_none() {
                    r.timer_delete(id)?;
                    continue;
                }
                if let Some((flags, its)) = arm {
                    let s = r.timer_settime(id, flags, &itimerspec(its))?;
                    if s < 0 {
                        return Err(unsupported(format!("arming POSIX timer {id} again"), s));
                    }
                }
                debug!(log, "going live: POSIX timer made again"; "id" => id, "armed" => ?arm.map(|a| a.1));
            }
            Ok(())
        })();
        r.prctl(PR_TIMER_CREATE_RESTORE_IDS, RESTORE_IDS_OFF)?;
        if result.is_ok() {
            info!(log, "going live: POSIX timers made again"; "timers" => self.timers.len());
        }
        result
    }
}

/// A struct sigevent with SIGEV_NONE.
fn sigev_none() -> Vec<u8> {
    let mut ev = vec![0u8; SIGEVENT_LEN];
    ev[12..16].copy_from_slice(&libc::SIGEV_NONE.to_le_bytes());
    ev
}

fn itimerspec(its: [i64; 4]) -> Vec<u8> {
    its.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn unsupported(what: String, ret: i64) -> SessionError {
    SessionError::Unsupported {
        what: format!("going live: {what}"),
        why: format!("the kernel answered errno {}", -ret),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(flags: i32, its: [i64; 4]) -> TimerSet {
        TimerSet { flags, its, at: 0 }
    }

    #[test]
    fn a_one_shot_timer_is_armed_again_unless_it_fired() {
        let s = set(0, [0, 0, 2, 500]);
        assert_eq!(s.to_arm(libc::CLOCK_MONOTONIC, false), Some((0, [0, 0, 2, 500])));
        assert_eq!(s.to_arm(libc::CLOCK_MONOTONIC, true), None);
        assert_eq!(set(0, [0, 0, 0, 0]).to_arm(libc::CLOCK_MONOTONIC, false), None);
    }

    #[test]
    fn a_relative_periodic_timer_fires_one_interval_from_now() {
        let s = set(0, [1, 5, 30, 0]);
        assert_eq!(s.to_arm(libc::CLOCK_MONOTONIC, true), Some((0, [1, 5, 1, 5])));
    }

    #[test]
    fn an_absolute_periodic_timer_keeps_its_phase() {
        let now = clock_now(libc::CLOCK_MONOTONIC).unwrap_or(0);
        // Started 10.25 periods of 100 ms ago: the next expiry is 0.75 period from now.
        let start = now - 1_025_000_000;
        let s = set(libc::TIMER_ABSTIME, [0, 100_000_000, start / NS, start % NS]);
        let Some((flags, its)) = s.to_arm(libc::CLOCK_MONOTONIC, true) else { panic!("not armed") };
        assert_eq!(flags, libc::TIMER_ABSTIME);
        let next = its[2] * NS + its[3];
        assert_eq!((next - start) % 100_000_000, 0, "the phase is kept");
        assert!(next > now && next <= now + 100_000_000, "the next expiry after now");
    }

    #[test]
    fn a_posix_timers_signal_comes_from_its_sigevent() {
        let mut ev = sigev_none();
        assert_eq!(PosixTimer { clock: 1, event: Some(ev.clone()), set: None }.signal(), None);
        ev[8..12].copy_from_slice(&libc::SIGUSR2.to_le_bytes());
        ev[12..16].copy_from_slice(&libc::SIGEV_SIGNAL.to_le_bytes());
        assert_eq!(PosixTimer { clock: 1, event: Some(ev), set: None }.signal(), Some(libc::SIGUSR2));
        assert_eq!(PosixTimer::default().signal(), Some(libc::SIGALRM));
    }
}
