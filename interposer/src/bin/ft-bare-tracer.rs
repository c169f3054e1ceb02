//! Benchmark floor: runs a program under ftexec's launch and seccomp filter and resumes every
//! stop without looking at it. Its cost per traced syscall is the bare ptrace seccomp stop that
//! `ftexec record` is measured against (bench/record_replay.sh).

use ft_interposer::{filter, launch, tsc, LaunchSpec, Waited};
use ft_libos::Sig;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.is_empty() {
        eprintln!("usage: ft-bare-tracer PROG [ARGS...]");
        return ExitCode::from(2);
    }
    let c = |s: &std::ffi::OsStr| CString::new(s.as_bytes()).ok();
    let (Some(argv), Some(env)) = (
        args.iter().map(|a| c(a)).collect::<Option<Vec<_>>>(),
        std::env::vars_os()
            .map(|(k, v)| {
                let mut s = k;
                s.push("=");
                s.push(v);
                c(&s)
            })
            .collect::<Option<Vec<_>>>(),
    ) else {
        eprintln!("ft-bare-tracer: NUL byte in arguments or environment");
        return ExitCode::from(2);
    };
    let spec = LaunchSpec {
        exe: argv[0].clone(),
        argv,
        env,
        cwd: None,
        bind: None,
        at_random: None,
        pid_ns: false,
        vdso: ft_interposer::Vdso::Hide,
        umask: None,
        limits: Vec::new(),
    };
    let run = || -> ft_interposer::Result<i32> {
        let prog = filter::build()?;
        let mut running = launch(&spec, &prog)?.tracee.cont(None)?;
        loop {
            match running.wait()? {
                Waited::Exited(c) => return Ok(c),
                Waited::Killed(s) => return Ok(128 + s.raw()),
                Waited::Stopped(s) => {
                    let sig = match s.stop {
                        ft_interposer::Stop::Signal(Sig::SIGSEGV) => {
                            // rdtsc is trapped by the launch; complete it like ftexec does.
                            let mut regs = s.regs()?;
                            match tsc::decode(&s, regs.ip())? {
                                Some(insn) => {
                                    let (t, aux) = tsc::now(insn);
                                    tsc::complete(&mut regs, insn, t, aux);
                                    s.set_regs(&regs)?;
                                    None
                                }
                                None => Some(Sig::SIGSEGV),
                            }
                        }
                        ft_interposer::Stop::Signal(sig) => Some(sig),
                        _ => None,
                    };
                    running = s.cont(sig)?;
                }
            }
        }
    };
    match run() {
        Ok(status) => ExitCode::from(status.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("ft-bare-tracer: {e}");
            ExitCode::from(125)
        }
    }
}
