//! The cost of one preemption probe without a PMU (see `ft_interposer::spin`): a child spins on
//! an atomic flag (`while !flag { pause }`); the tracer interrupts it (SIGSTOP to the thread, as
//! the recorder does), probes one iteration by single steps, and lets it run again, ROUNDS times.
//! Prints the median and 90th percentile of the interrupt round trip (tkill to the delivery stop)
//! and of the probe (steps, decoding, register and memory reads), in microseconds.
//!
//! Tracer and child share CPU 0, as under ftexec.
//!
//! Run: `cargo run --release -p ft-interposer --example probe_cost` (as bench/threads.sh does).

use ft_interposer::spin::{self, Probe};
use ft_interposer::tracee::wait_for;
use ft_interposer::{Stop, Waited};
use ft_libos::Sig;
use nix::unistd::Pid;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static FLAG: AtomicBool = AtomicBool::new(false);

const ROUNDS: usize = 300;

fn main() {
    // One CPU for tracer and child, as ftexec pins a replica's tracer and tracees.
    // SAFETY: a zeroed cpu_set_t with one bit set, passed by pointer with its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
    // SAFETY: the child only calls async-signal-safe functions (ptrace, raise) before spinning.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        eprintln!("probe_cost: fork failed");
        std::process::exit(1);
    }
    if pid == 0 {
        // SAFETY: plain syscalls in the child.
        unsafe {
            libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
            libc::raise(libc::SIGSTOP);
        }
        while !FLAG.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        std::process::exit(0);
    }
    let pid = Pid::from_raw(pid);
    let mut stopped = match wait_for(Some(pid)) {
        Ok((_, Waited::Stopped(s))) => s,
        _ => fail(pid, "the child did not stop"),
    };
    let (mut trips, mut probes, mut steps) = (Vec::new(), Vec::new(), 0);
    for _ in 0..ROUNDS {
        if stopped.cont(None).is_err() {
            fail(pid, "cannot resume the child");
        }
        std::thread::sleep(Duration::from_micros(200));
        let sent = Instant::now();
        if spin::interrupt(pid).is_err() {
            fail(pid, "cannot interrupt the child");
        }
        let s = match wait_for(Some(pid)) {
            Ok((_, Waited::Stopped(s))) if s.stop == Stop::Signal(Sig::SIGSTOP) => s,
            _ => fail(pid, "no SIGSTOP stop"),
        };
        trips.push(sent.elapsed());
        let start = Instant::now();
        stopped = match spin::probe(s, None) {
            Ok(Probe::Fixpoint(point, t)) => {
                steps = point.steps;
                t
            }
            Ok(Probe::Moving(why, _)) => fail(pid, why),
            _ => fail(pid, "the probe failed"),
        };
        probes.push(start.elapsed());
    }
    let _ = stopped.kill().wait();
    println!("{:<46} {:>10} {:>10}", format!("preemption probe ({ROUNDS} rounds)"), "median µs", "p90 µs");
    println!(
        "{:<46} {:>10} {:>10}",
        "interrupt: tkill SIGSTOP to the delivery stop",
        pct(&mut trips, 50),
        pct(&mut trips, 90)
    );
    println!(
        "{:<46} {:>10} {:>10}",
        format!("probe: one {steps}-instruction iteration stepped"),
        pct(&mut probes, 50),
        pct(&mut probes, 90)
    );
}

fn pct(v: &mut [Duration], p: usize) -> u128 {
    v.sort();
    v.get((v.len() * p / 100).min(v.len().saturating_sub(1))).map(|d| d.as_micros()).unwrap_or(0)
}

fn fail(pid: Pid, why: &str) -> ! {
    // SAFETY: kill takes two integers.
    unsafe { libc::kill(pid.as_raw(), libc::SIGKILL) };
    eprintln!("probe_cost: {why}");
    std::process::exit(1);
}
