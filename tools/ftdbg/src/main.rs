//! ftdbg: look inside an ftexec log or a stopped replica's Raft log offline (decoded events, statistics, the first difference
//! between two logs).

use clap::{Parser, Subcommand};
use ftdbg::{diff, stats::Stats, Error, Filter};
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ftdbg",
    version,
    about = "Look inside a log written by `ftexec record`, or a stopped replica's data directory: its \
             events decoded like strace, statistics, the first difference between two logs, and a gdb \
             server over its replay",
    after_help = "Exit status: 0 success (diff: the logs are identical); 1 diff: the logs differ; \
                  2 error (unreadable, truncated or corrupt log, bad arguments).\n\n\
                  Examples:\n  ftdbg events date.ftlog --syscall clock_gettime,write\n  \
                  ftdbg events date.ftlog --from 10 --to 20 --json\n  ftdbg stats date.ftlog\n  \
                  ftdbg diff a.ftlog b.ftlog\n  ftdbg diff /var/lib/ft/node1 /var/lib/ft/node2   (two replicas)\n  \
                  ftdbg gdb date.ftlog --at 40 --port 2345   then: gdb PROG -ex 'target remote :2345'\n\n\
                  LOG is a file written by `ftexec record` or a replica's Raft data directory (the node's \
                  data_dir, read while the replica is stopped)."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the events, one a line: log index, [task], the decoded event, <disposition>.
    Events {
        /// A log written by `ftexec record`, or a stopped replica's data directory.
        log: PathBuf,
        /// First log index to show (0 is the first event after the header).
        #[arg(long, value_name = "N")]
        from: Option<u64>,
        /// Last log index to show (inclusive).
        #[arg(long, value_name = "M")]
        to: Option<u64>,
        /// Only the events of task T (0 is the first thread, then in creation order).
        #[arg(long, value_name = "T")]
        thread: Option<u32>,
        /// Only these syscalls (comma-separated names or numbers, e.g. openat,read).
        #[arg(long, value_name = "NAME")]
        syscall: Option<String>,
        /// One JSON object a line (fields: index, task, kind, text, syscall, nr, class, args,
        /// decoded_args, ret, errno, disposition, path, path2, stdio, stdio_fd, new_fds, mem, ...).
        #[arg(long)]
        json: bool,
    },
    /// Count the log's events per syscall, class, disposition and kind; duration, tasks, header.
    Stats {
        log: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the checkpoints of a log (`ftexec replay LOG --checkpoint-every N` writes them into
    /// LOG.ckpt): event, size, age, memory and data kept; a damaged or foreign one says why.
    Checkpoints {
        log: PathBuf,
        /// Another directory of checkpoints than LOG.ckpt.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// One JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show the first event where two logs differ, both sides decoded. Exit status 0: identical,
    /// 1: different (or one is a prefix of the other), 2: error.
    Diff { log1: PathBuf, log2: PathBuf },
    /// Replay the log and serve the GDB remote protocol on 127.0.0.1:PORT for
    /// `gdb PROG -ex 'target remote :PORT'`: registers, memory, breakpoints, continue, stepi,
    /// `monitor event`, `monitor goto N` (backwards: re-executes from the start).
    Gdb {
        log: PathBuf,
        /// Stop first when the events before N have been replayed (0: at the first stop).
        #[arg(long, value_name = "N", default_value_t = 0)]
        at: u64,
        /// TCP port on 127.0.0.1 (0: any free port, printed).
        #[arg(long, value_name = "P", default_value_t = 2345)]
        port: u16,
        /// Replay into this data directory instead of the recorded path (as `ftexec replay`).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Replay even if this CPU differs from the recording's.
        #[arg(long)]
        allow_cpu_mismatch: bool,
        /// Log the replay's progress on stderr.
        #[arg(short, long)]
        verbose: bool,
    },
}

fn run(cli: &Cli, out: &mut dyn Write) -> Result<u8, Error> {
    match &cli.cmd {
        Cmd::Events { log, from, to, thread, syscall, json } => {
            let filter = Filter::new(*from, *to, *thread, syscall.as_deref())?;
            ftdbg::events(log, &filter, *json, out)?;
            Ok(0)
        }
        Cmd::Stats { log, json } => {
            let st = Stats::read(log)?;
            if *json {
                writeln!(out, "{}", st.json())?;
                out.flush()?;
            } else {
                st.write_text(out)?;
            }
            Ok(0)
        }
        Cmd::Checkpoints { log, dir, json } => ftdbg::checkpoints::list(log, dir.as_deref(), *json, out),
        Cmd::Diff { log1, log2 } => Ok(if diff::diff(log1, log2, out)?.identical() { 0 } else { 1 }),
        Cmd::Gdb { log, at, port, data_dir, allow_cpu_mismatch, verbose } => {
            let opts = ftdbg::gdb::Options {
                log: log.clone(),
                at: *at,
                port: *port,
                data_dir: data_dir.clone(),
                allow_cpu_mismatch: *allow_cpu_mismatch,
            };
            ftdbg::gdb::serve(&opts, &mut io::stderr(), &logger(*verbose))?;
            Ok(0)
        }
    }
}

fn logger(verbose: bool) -> slog::Logger {
    use slog::Drain;
    let level = if verbose { slog::Level::Info } else { slog::Level::Warning };
    let decorator = slog_term::PlainSyncDecorator::new(io::stderr());
    let drain = slog_term::FullFormat::new(decorator).build().filter_level(level).fuse();
    slog::Logger::root(drain, slog::o!())
}

fn main() -> ExitCode {
    // Before any thread starts: the replay wakes on its tracees' SIGCHLD.
    ft_interposer::tracee::hold_child_signals();
    let cli = Cli::parse();
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match run(&cli, &mut out) {
        Ok(code) => ExitCode::from(code),
        // `ftdbg events LOG | head`: the reader went away; not an error.
        Err(Error::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            // Whatever was decoded before the error stays visible above the message.
            let _ = out.flush();
            eprintln!("ftdbg: {e}");
            ExitCode::from(2)
        }
    }
}
