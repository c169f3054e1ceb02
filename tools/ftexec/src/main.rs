//! ftexec: record and replay an unmodified Linux x86-64 program (and, later, run it replicated).

use anyhow::Context;
use clap::{Parser, Subcommand};
use ft_libos::log::LogWriter;
use ft_replay::{FileSource, RecordOptions, ReplayOptions, SessionError};
use slog::{o, Drain, Level, Logger};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

mod replica;
mod share;
mod up;

/// Exit statuses of ftexec itself (the program's own status is passed through otherwise).
const EXIT_DIVERGENCE: u8 = 2;
pub(crate) const EXIT_FTEXEC_FAILED: u8 = 125;
const EXIT_NOT_EXECUTABLE: u8 = 126;
const EXIT_NOT_FOUND: u8 = 127;

#[derive(Parser)]
#[command(
    name = "ftexec",
    version,
    about = "Record and replay an unmodified program, deterministically, without LD_PRELOAD",
    long_about = "ftexec runs an unmodified x86-64 Linux program under a seccomp-bpf + ptrace interposer.\n\
`record` writes every nondeterministic result (time, randomness, input, rdtsc, file metadata) to a log;\n\
`replay` re-executes the same binary from that log and reproduces its output exactly, without\n\
touching the outside world.\n\n\
Exit status: the program's own (128+N if signal N killed it); 2 if replay diverged from the\n\
recording; 125 if ftexec itself failed; 126 if PROG is not executable; 127 if it was not found.",
    after_help = "Examples:\n  ftexec record -o date.ftlog -- date\n  ftexec replay date.ftlog\n  \
cp -a db db.orig && ftexec record --data-dir db -o s.ftlog -- sqlite3 db/x.db 'select random()'\n  \
ftexec replay s.ftlog --data-dir db.orig"
)]
struct Cli {
    /// More progress output (-v: info, -vv: every syscall).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Record the hot socket syscalls (read, recvfrom, write, writev, sendto, sendmsg, epoll_wait, poll) in the program,
    /// without a ptrace stop each: their call sites are rewritten into jumps to ftexec's
    /// handler (the default; see docs/ARCHITECTURE.md). Replay follows the log either way.
    #[arg(long, global = true, conflicts_with = "no_syscall_buffer")]
    syscall_buffer: bool,
    /// Trace every syscall of the program, like rr's -n (also FTEXEC_SYSCALL_BUFFER=0).
    #[arg(long, global = true)]
    no_syscall_buffer: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run PROG and record every nondeterministic event into a log file.
    Record {
        /// The log file to write [default: PROG's name + .ftlog].
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Replicated state: syscalls on files under DIR run for real at replay, against a copy of
        /// DIR as it was before recording (its digest is in the log).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// The program and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "PROG [ARGS]...")]
        command: Vec<OsString>,
    },
    /// Re-execute the program of a log, reproducing its output exactly.
    Replay {
        /// A log written by `ftexec record`, or a stopped replica's Raft data directory (its committed events).
        log: PathBuf,
        /// Replay into DIR, which must hold what the recorded data directory held before the
        /// recording (it is bind-mounted at the recorded path, which needs root).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Replay on a CPU model other than the recording's.
        #[arg(long)]
        allow_cpu_mismatch: bool,
        /// At the end of the log, go on running the program live, as a follower does when its
        /// leader dies (sockets and files made real, time and input from the world again), and
        /// record into FILE: LOG's events, then the new ones.
        #[arg(long, value_name = "FILE")]
        continue_into: Option<PathBuf>,
        /// Take a checkpoint of the program every N events (at the first event boundary where
        /// it can be checkpointed), into --checkpoint-dir.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        checkpoint_every: Option<u64>,
        /// Where checkpoints go [default: LOG's path + .ckpt].
        #[arg(long, value_name = "DIR")]
        checkpoint_dir: Option<PathBuf>,
        /// Start from this checkpoint of LOG (`ftdbg checkpoints LOG` lists them) instead of the
        /// log's start: the program's state is restored, then the rest of the log is replayed.
        #[arg(long, value_name = "FILE")]
        from_checkpoint: Option<PathBuf>,
    },
    /// Run one replica of a replicated program (see the cluster file's [service] section).
    Run {
        /// The cluster file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// This replica's node id in the cluster file.
        #[arg(long, value_name = "ID")]
        node: u64,
        /// The program and its arguments, if the config has no [service] command (identical on
        /// every replica).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "PROG [ARGS]...")]
        command: Vec<OsString>,
    },
    /// Run PROG replicated on this machine: a cluster of replicas that survives the leader's death.
    Up {
        /// Number of replicas.
        #[arg(long, default_value_t = 3)]
        replicas: u64,
        /// Where the config, the Raft logs and the replicas' data live.
        #[arg(long, value_name = "DIR", default_value = "ftexec-cluster")]
        dir: PathBuf,
        /// Delete DIR's previous cluster (its log and data) first.
        #[arg(long)]
        fresh: bool,
        /// When the Raft log is fsynced: always (survives machine crashes) or never (only
        /// process crashes; for benchmarks).
        #[arg(long, default_value = "always", value_parser = ["always", "never"])]
        fsync: String,
        /// A directory whose content every replica's data directory starts from (copied at each
        /// start with owners and modes, as `cp -a`): a database's initdb output, a site's files.
        #[arg(long, value_name = "SRC")]
        initial_data: Option<PathBuf>,
        /// Followers checkpoint the program every N events; a replica that restarts restores the
        /// newest checkpoint and replays only the log after it (the cluster file's [snapshot]
        /// section; 0 turns checkpoints off).
        #[arg(long, value_name = "N", default_value_t = 100_000)]
        snapshot_every: u64,
        /// On Ctrl-C (or SIGTERM, SIGHUP), how long the program may take to end: the signal goes to
        /// the leader's program, and every replica replays up to its exit, so that their data
        /// directories end identical. After this (or a second Ctrl-C) the replicas are stopped
        /// wherever they are.
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        stop_timeout: u64,
        /// The program and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "PROG [ARGS]...")]
        command: Vec<OsString>,
    },
}

fn logger(verbose: u8, quiet: bool) -> Logger {
    let level = match (quiet, verbose) {
        (true, _) => Level::Error,
        (false, 0) => Level::Warning,
        (false, 1) => Level::Info,
        _ => Level::Debug,
    };
    let decorator = slog_term::PlainSyncDecorator::new(std::io::stderr());
    let drain = slog_term::FullFormat::new(decorator).build().filter_level(level).fuse();
    Logger::root(drain, o!())
}

extern "C" fn forward_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: `info` is the siginfo the kernel passed to this SA_SIGINFO handler.
    ft_replay::pass_stop_signal(sig, unsafe { ft_replay::from_kernel(info) });
}

/// SIGINT, SIGTERM, SIGHUP and SIGQUIT go to the program (`ft_replay::pass_stop_signal`), so
/// the session ends with the program and the log is complete.
fn forward_signals() {
    ft_replay::on_signals(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT], forward_signal);
}

/// The signal that interrupted a replay (0: none).
static INTERRUPTED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn interrupt_replay(sig: libc::c_int) {
    INTERRUPTED.store(sig, std::sync::atomic::Ordering::SeqCst);
    let pid = ft_replay::current_tracee();
    if pid > 0 {
        // The replay's program only does what the log says; a signal forwarded to it would be
        // dropped. End the replay instead: the tracer sees the death and returns.
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// SIGINT, SIGTERM, SIGHUP and SIGQUIT end a replay (exit status 128 + the signal).
fn interrupt_on_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: installing a handler that only stores an integer and calls kill.
        unsafe { libc::signal(sig, interrupt_replay as *const () as libc::sighandler_t) };
    }
}

fn exit_code(status: i32) -> ExitCode {
    ExitCode::from(status.clamp(0, 255) as u8)
}

/// The error and its causes, skipping a cause whose text the message already contains.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if !text.contains(&c) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&c);
        }
    }
    text
}

fn session_error(e: &anyhow::Error) -> ExitCode {
    eprintln!("ftexec: error: {}", error_text(e));
    match e.downcast_ref::<SessionError>() {
        Some(SessionError::Divergence { .. }) => ExitCode::from(EXIT_DIVERGENCE),
        Some(SessionError::ProgramNotFound { .. }) => ExitCode::from(EXIT_NOT_FOUND),
        Some(SessionError::NotExecutable { .. }) => ExitCode::from(EXIT_NOT_EXECUTABLE),
        _ => ExitCode::from(EXIT_FTEXEC_FAILED),
    }
}

fn record(
    cli: &Cli,
    output: &Option<PathBuf>,
    data_dir: &Option<PathBuf>,
    command: &[OsString],
    log: &Logger,
) -> anyhow::Result<i32> {
    let prog = command.first().context("no program given")?.clone();
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let data_dir = match data_dir {
        Some(d) => Some(std::fs::canonicalize(d).with_context(|| format!("data directory {}", d.display()))?),
        None => None,
    };
    let opts = RecordOptions {
        prog: prog.clone(),
        argv: command.to_vec(),
        env: std::env::vars_os()
            .map(|(k, v)| {
                let mut s = k;
                s.push("=");
                s.push(v);
                s
            })
            .collect(),
        cwd,
        data_dir: data_dir.clone(),
    };
    let (_exe, header) = ft_replay::record::header(&opts)?;
    let out = output.clone().unwrap_or_else(|| {
        let base = PathBuf::from(&prog).file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "ftexec".into());
        let mut n = base;
        n.push(".ftlog");
        PathBuf::from(n)
    });
    let mut writer = LogWriter::create(&out, &header)?;
    forward_signals();
    let result = ft_replay::record(&header, data_dir.as_deref(), None, &mut writer, log);
    let (events, bytes) = writer.finish()?;
    let outcome = result?;
    if !cli.quiet {
        eprintln!(
            "ftexec: recorded {events} events ({} KiB) to {}; program exit status {}",
            bytes.div_ceil(1024),
            out.display(),
            outcome.status
        );
    }
    Ok(outcome.status)
}

/// Where `ftexec replay --checkpoint-every` puts checkpoints by default: LOG.ckpt.
fn default_checkpoint_dir(log: &Path) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(".ckpt");
    PathBuf::from(s)
}

fn replay(cli: &Cli, path: &Path, opts: ReplayOptions, log: &Logger) -> anyhow::Result<i32> {
    let mut source = FileSource::open(path)?;
    let header = source.header().clone();
    interrupt_on_signals();
    let result = ft_replay::replay(&header, &mut source, &opts, log);
    let sig = INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst);
    if sig != 0 {
        eprintln!("ftexec: replay interrupted by signal {sig} at event {}", ft_replay::EventSource::position(&source));
        return Ok(128 + sig);
    }
    let outcome = result?;
    if !cli.quiet && cli.verbose > 0 {
        eprintln!(
            "ftexec: replayed {} events from {}; program exit status {}",
            outcome.events,
            path.display(),
            outcome.status
        );
    }
    Ok(outcome.status)
}

/// `ftexec replay LOG --continue-into OUT`: replays LOG, then goes live at its end and records
/// into OUT (a copy of LOG's events first, so OUT is a whole recording).
fn continue_into(path: &Path, out: &Path, opts: ReplayOptions, log: &Logger) -> anyhow::Result<i32> {
    if std::fs::canonicalize(path).ok() == std::fs::canonicalize(out).ok() {
        anyhow::bail!("--continue-into {} is the log being replayed: name another file", out.display());
    }
    let mut source = FileSource::open(path)?.live_at_end();
    let header = source.header().clone();
    let mut writer = LogWriter::create(out, &header)?;
    let mut copy = FileSource::open(path)?;
    while let Some(ev) = ft_replay::EventSource::next_event(&mut copy)? {
        writer.append(&ev)?;
    }
    let recorded_dir =
        (!header.data_dir.is_empty()).then(|| PathBuf::from(std::ffi::OsStr::from_bytes(&header.data_dir)));
    let live_log = log.clone();
    let live = ft_replay::GoLive {
        sink: &mut writer,
        data_dir: recorded_dir,
        on_live: Box::new(move || slog::info!(live_log, "the log ended: the program runs live")),
    };
    let outcome = ft_replay::replay_then_live(&header, &mut source, &opts, Some(live), log)?;
    let (events, _) = writer.finish()?;
    slog::info!(log, "recorded into {}", out.display(); "events" => events, "status" => outcome.status);
    Ok(outcome.status)
}

fn main() -> ExitCode {
    // Before any thread starts: the tracer wakes on its tracees' SIGCHLD.
    ft_interposer::tracee::hold_child_signals();
    let cli = Cli::parse();
    let log = logger(cli.verbose, cli.quiet);
    // The replicas `up` starts inherit the choice through the environment.
    if cli.syscall_buffer {
        std::env::set_var("FTEXEC_SYSCALL_BUFFER", "1");
    } else if cli.no_syscall_buffer {
        std::env::set_var("FTEXEC_SYSCALL_BUFFER", "0");
    }
    ft_replay::record::set_syscall_buffer(std::env::var_os("FTEXEC_SYSCALL_BUFFER").is_none_or(|v| v != "0"));
    let r = match &cli.cmd {
        Cmd::Record { output, data_dir, command } => record(&cli, output, data_dir, command, &log),
        Cmd::Replay {
            log: path,
            data_dir,
            allow_cpu_mismatch,
            continue_into: out,
            checkpoint_every,
            checkpoint_dir,
            from_checkpoint,
        } => {
            let mut opts = ReplayOptions::new(data_dir.clone(), *allow_cpu_mismatch, true);
            opts.checkpoints = checkpoint_every.map(|every| ft_replay::Checkpoints {
                dir: checkpoint_dir.clone().unwrap_or_else(|| default_checkpoint_dir(path)),
                every,
                keep: 0,
                never_wait: false,
            });
            opts.from_checkpoint.clone_from(from_checkpoint);
            match out {
                None => replay(&cli, path, opts, &log),
                Some(out) => continue_into(path, out, opts, &log),
            }
        }
        Cmd::Run { config, node, command } => replica::run(config, *node, command, &log),
        Cmd::Up { replicas, dir, fresh, fsync, initial_data, snapshot_every, stop_timeout, command } => {
            up::up(up::UpOptions {
                snapshot_every: *snapshot_every,
                stop_timeout: Duration::from_secs(*stop_timeout),
                replicas: *replicas,
                dir: dir.clone(),
                fresh: *fresh,
                fsync: fsync.clone(),
                command: command.clone(),
                verbose: cli.verbose,
                initial_data: initial_data.clone(),
            })
        }
    };
    match r {
        Ok(status) => exit_code(status),
        // A replica that fails for any reason (divergence included) ends with 125, so `up`
        // can tell its failure from the program's own status and restart it.
        Err(e) if matches!(cli.cmd, Cmd::Run { .. }) => {
            session_error(&e);
            ExitCode::from(EXIT_FTEXEC_FAILED)
        }
        Err(e) => session_error(&e),
    }
}
