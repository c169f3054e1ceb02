//! ftdbg: look inside an ftexec log offline. [`decode`] turns events into strace-like text and
//! JSON, [`events`] lists them with filters, [`stats`] summarizes a log, [`diff`] finds the first
//! event where two logs differ.
//!
//! Every function reads the log as a stream, so a truncated or corrupt log shows everything up to
//! the damage and then a [`Error::Log`] naming the file, the record and the byte offset.

pub mod checkpoints;
pub mod decode;
pub mod diff;
pub mod gdb;
pub mod source;
pub mod stats;

use ft_libos::log::LogError;
use ft_libos::proto::{event::Kind, Event};
use ft_libos::table;
use source::Log;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log cannot be read: missing, not a log, another version, truncated, corrupt.
    #[error(transparent)]
    Log(#[from] LogError),
    /// Writing the output failed (a closed pipe, a full disk).
    #[error("cannot write the output: {0}")]
    Output(#[from] io::Error),
    #[error("no syscall is named {0:?}; use the kernel's names (openat, clock_gettime, write) or numbers")]
    UnknownSyscall(String),
    #[error("--from {from} is after --to {to}: no event can match")]
    EmptyRange { from: u64, to: u64 },
    #[error("there is no event {index}: the log has {events} events (0..{})", events.saturating_sub(1))]
    NoSuchEvent { index: u64, events: u64 },
    #[error("cannot listen on 127.0.0.1:{port}: {source}; choose another port with --port (0: any free port)")]
    Listen { port: u16, source: io::Error },
    #[error("waiting for gdb to connect failed: {0}")]
    Connection(io::Error),
    /// A replica's Raft log cannot be read (running node, not a Raft log, damaged, no
    /// recording in it).
    #[error(transparent)]
    Raft(#[from] ft_replay::raft::RaftLogError),
    #[error(
        "{path} is a directory without a raft.log: give a log written by `ftexec record` or a replica's data directory"
    )]
    NotALog { path: PathBuf },
    /// The replay under the debugger cannot start or failed.
    #[error(transparent)]
    Replay(Box<ft_replay::SessionError>),
}

/// The number of a syscall name (or a number given as digits).
pub fn syscall_nr(name: &str) -> Option<u32> {
    if let Ok(n) = name.parse::<u32>() {
        return table::lookup(u64::from(n)).map(|s| s.nr);
    }
    (0..=table::MAX_NR).find(|&n| table::lookup(u64::from(n)).is_some_and(|s| s.name == name))
}

/// Which events `ftdbg events` shows.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// First log index shown.
    pub from: Option<u64>,
    /// Last log index shown (inclusive).
    pub to: Option<u64>,
    /// Only the events of this task (see [`Event::task`]).
    pub task: Option<u32>,
    /// Only syscall events with one of these numbers.
    pub syscalls: Option<Vec<u32>>,
}

impl Filter {
    /// A filter from command-line values; `syscalls` is a comma-separated list of names.
    pub fn new(from: Option<u64>, to: Option<u64>, task: Option<u32>, syscalls: Option<&str>) -> Result<Self, Error> {
        if let (Some(from), Some(to)) = (from, to) {
            if from > to {
                return Err(Error::EmptyRange { from, to });
            }
        }
        let syscalls = match syscalls {
            None => None,
            Some(list) => Some(
                list.split(',')
                    .map(|n| syscall_nr(n.trim()).ok_or_else(|| Error::UnknownSyscall(n.trim().to_string())))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(Filter { from, to, task, syscalls })
    }

    pub fn accepts(&self, index: u64, ev: &Event) -> bool {
        if self.from.is_some_and(|f| index < f) || self.to.is_some_and(|t| index > t) {
            return false;
        }
        if self.task.is_some_and(|t| ev.task() != Some(t)) {
            return false;
        }
        let Some(nrs) = &self.syscalls else { return true };
        match &ev.kind {
            Some(Kind::Syscall(s)) => nrs.contains(&s.nr),
            // Clock reads through the clock page count as the syscalls they stand for.
            Some(Kind::Clocks(c)) => clock_read_nrs(c).any(|nr| nrs.contains(&nr)),
            Some(
                Kind::Rdtsc(_)
                | Kind::Signal(_)
                | Kind::Start(_)
                | Kind::Exit(_)
                | Kind::Run(_)
                | Kind::Spawn(_)
                | Kind::Exec(_)
                | Kind::Preempt(_)
                | Kind::Patch(_),
            )
            | None => false,
        }
    }
}

/// The syscall numbers of the reads in a clock-page event.
fn clock_read_nrs(c: &ft_libos::proto::Clocks) -> impl Iterator<Item = u32> + '_ {
    ft_libos::clock::decode(&c.reads)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| ft_libos::clock::BUFFERED.get(r.func as usize).map(|&nr| nr as u32))
}

/// Writes the events of the log at `path` that pass `filter`, one a line (text or JSON); returns
/// how many were written. Events before a damaged record are written before the error returns.
pub fn events(path: &Path, filter: &Filter, json: bool, out: &mut dyn Write) -> Result<u64, Error> {
    let mut reader = Log::open(path)?;
    let mut shown = 0;
    loop {
        let index = reader.position();
        if filter.to.is_some_and(|t| index > t) {
            break;
        }
        let Some(ev) = reader.next_event()? else { break };
        if !filter.accepts(index, &ev) {
            continue;
        }
        if json {
            writeln!(out, "{}", decode::json(index, &ev))?;
        } else {
            writeln!(out, "{}", decode::line(index, &ev))?;
        }
        shown += 1;
    }
    out.flush()?;
    Ok(shown)
}
