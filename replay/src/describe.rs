//! Human-readable forms of calls and events, for divergence messages and logs.

use ft_libos::proto::{event::Kind, Event};
use ft_libos::table::Spec;
use ft_libos::{lookup, table};

fn arg(v: u64) -> String {
    let s = v as i64;
    if (-4096..=65535).contains(&s) {
        s.to_string()
    } else {
        format!("{v:#x}")
    }
}

/// `name(arg0, arg1, …)` with the arguments replay checks (others shown as `_`).
pub fn call(spec: &Spec, args: &[u64]) -> String {
    let last = (0..6).rev().find(|&i| spec.checks_arg(i)).map(|i| i + 1).unwrap_or(0);
    let shown: Vec<String> = (0..last)
        .map(|i| if spec.checks_arg(i) { args.get(i).map(|&v| arg(v)).unwrap_or_default() } else { "_".into() })
        .collect();
    format!("{}({})", spec.name, shown.join(", "))
}

/// One event, in the style of strace.
pub fn event(ev: &Event) -> String {
    match &ev.kind {
        Some(Kind::Syscall(s)) => {
            let call = match lookup(u64::from(s.nr)) {
                Some(spec) => call(spec, &s.args),
                None => table::name(u64::from(s.nr)),
            };
            let ret = if (-4095..0).contains(&s.ret) {
                match ft_libos::signal::restart_name(-s.ret as i32) {
                    Some(r) => format!("{r} (the kernel ran it again after a signal)"),
                    None => format!("-1 {}", nix::Error::from_raw(-s.ret as i32)),
                }
            } else {
                arg(s.ret as u64)
            };
            let how = if s.buffered { " (buffered)" } else { "" };
            format!("{call} = {ret} in task {}{how}", s.task)
        }
        Some(Kind::Rdtsc(r)) => format!("{} at {:#x}", if r.rdtscp { "rdtscp" } else { "rdtsc" }, r.ip),
        Some(Kind::Signal(s)) => format!("delivery of {}", signal_name(s.signo)),
        Some(Kind::Start(_)) => "the program's start".into(),
        Some(Kind::Exit(e)) if e.signal != 0 => format!("task {}'s death by {}", e.task, signal_name(e.signal)),
        Some(Kind::Exit(e)) => format!("task {}'s exit with status {}", e.task, e.code),
        Some(Kind::Run(r)) => format!("a switch to task {}", r.task),
        Some(Kind::Spawn(s)) => {
            format!("task {} creating {} {}", s.parent, if s.thread { "thread" } else { "process" }, s.child)
        }
        Some(Kind::Exec(e)) => format!("task {} executing {}", e.task, String::from_utf8_lossy(&e.exe_path)),
        Some(Kind::Clocks(c)) => {
            let n = ft_libos::clock::decode(&c.reads).map(|r| r.len()).unwrap_or(0);
            format!("{n} clock read(s) of task {} through the clock page", c.task)
        }
        Some(Kind::Preempt(p)) => format!(
            "task {} spinning at {:#x} ({}-instruction loop, state {}), {}",
            p.task,
            p.ip,
            p.steps,
            ft_libos::digest::hex(&p.digest),
            preempt_outcome(p)
        ),
        Some(Kind::Patch(p)) if p.page != 0 => {
            format!("task {} mapping a trampoline page of the syscall buffer at {:#x}", p.task, p.page)
        }
        Some(Kind::Patch(p)) => format!(
            "task {} rewriting the syscall at {:#x} into a jump to the syscall buffer's trampoline at {:#x}",
            p.task, p.site, p.tramp
        ),
        None => "an empty event".into(),
    }
}

/// What a preempted task did at its fixpoint: "gives up the token" or "takes SIGALRM, …".
pub fn preempt_outcome(p: &ft_libos::proto::Preempt) -> String {
    if p.yielded {
        return "gives up the token".into();
    }
    let names: Vec<String> = p.signals.iter().map(|s| signal_name(s.signo)).collect();
    format!("takes {}", names.join(", "))
}

pub fn signal_name(signo: i32) -> String {
    ft_libos::signal::name(signo).unwrap_or_else(|| format!("signal {signo}"))
}
