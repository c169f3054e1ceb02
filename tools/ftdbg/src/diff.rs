//! `ftdbg diff`: the first event where two logs differ.

use crate::source::Log;
use crate::{decode, Error};
use ft_libos::proto::{event::Kind, Event, Header};
use std::io::Write;
use std::path::Path;

/// What comparing two logs found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Same header (the recording time aside) and the same events.
    Identical { events: u64 },
    /// The events are the same; the headers differ in these fields.
    HeadersDiffer { events: u64, fields: Vec<&'static str> },
    /// Event `index` differs (in these fields).
    Differ { index: u64, fields: Vec<String> },
    /// One log ends where the other goes on: `shorter` is 0 (LOG1) or 1 (LOG2).
    Prefix { shorter: usize, events: u64 },
}

impl Outcome {
    pub fn identical(&self) -> bool {
        matches!(self, Outcome::Identical { .. })
    }
}

/// The header fields that differ, the recording time (start_unix_ns) aside.
pub fn header_fields(a: &Header, b: &Header) -> Vec<&'static str> {
    let mut v = Vec::new();
    let mut cmp = |name, same: bool| {
        if !same {
            v.push(name)
        }
    };
    cmp("version", a.version == b.version);
    cmp("ftexec_version", a.ftexec_version == b.ftexec_version);
    cmp("exe_path", a.exe_path == b.exe_path);
    cmp("exe_hash", a.exe_hash == b.exe_hash);
    cmp("argv", a.argv == b.argv);
    cmp("env", a.env == b.env);
    cmp("cwd", a.cwd == b.cwd);
    cmp("cpu_model", a.cpu_model == b.cpu_model);
    cmp("data_dir", a.data_dir == b.data_dir);
    cmp("data_dir_digest", a.data_dir_digest == b.data_dir_digest);
    cmp("interp_path", a.interp_path == b.interp_path);
    cmp("interp_hash", a.interp_hash == b.interp_hash);
    v
}

/// The fields in which two events differ ("kind" when they are of different kinds).
pub fn event_fields(a: &Event, b: &Event) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    macro_rules! cmp {
        ($x:ident, $y:ident, $($f:ident),*) => {{
            $(if $x.$f != $y.$f { v.push(stringify!($f).to_string()); })*
        }};
    }
    match (&a.kind, &b.kind) {
        (Some(Kind::Syscall(x)), Some(Kind::Syscall(y))) => {
            cmp!(x, y, nr);
            let n = x.args.len().max(y.args.len());
            for i in 0..n {
                if x.args.get(i) != y.args.get(i) {
                    v.push(format!("args[{i}]"));
                }
            }
            cmp!(x, y, input_digest, ret, disposition, mem, out_digest, stdio, stdio_fd, new_fds, path, file_hash);
            cmp!(x, y, path_arg, task);
        }
        (Some(Kind::Rdtsc(x)), Some(Kind::Rdtsc(y))) => cmp!(x, y, tsc, aux, rdtscp, ip),
        (Some(Kind::Signal(x)), Some(Kind::Signal(y))) => {
            cmp!(x, y, signo, synchronous, at_syscall, siginfo, at_exit, orig_rax, rax, grouped, silent)
        }
        (Some(Kind::Start(x)), Some(Kind::Start(y))) => cmp!(x, y, at_random, sp),
        (Some(Kind::Exit(x)), Some(Kind::Exit(y))) => cmp!(x, y, code, signal),
        _ if a != b => v.push("kind".into()),
        _ => {}
    }
    if !matches!(a.kind, Some(Kind::Syscall(_))) && decode::task(a) != decode::task(b) {
        v.push("task".into());
    }
    if v.is_empty() && a != b {
        v.push("fields this ftdbg does not know".into());
    }
    v
}

/// Compares the logs at `a` and `b` event by event and writes what it finds to `out`.
pub fn diff(a: &Path, b: &Path, out: &mut dyn Write) -> Result<Outcome, Error> {
    let mut ra = Log::open(a)?;
    let mut rb = Log::open(b)?;
    let (na, nb) = (a.display(), b.display());
    let width = na.to_string().len().max(nb.to_string().len()) + 1;
    let header_diff = header_fields(ra.header(), rb.header());
    for f in &header_diff {
        writeln!(out, "header field {f} differs")?;
    }
    let mut index = 0u64;
    let outcome = loop {
        let ea = ra.next_event()?;
        let eb = rb.next_event()?;
        match (ea, eb) {
            (None, None) if header_diff.is_empty() => {
                writeln!(out, "identical: {index} events each (the recording times aside)")?;
                break Outcome::Identical { events: index };
            }
            (None, None) => {
                writeln!(out, "same {index} events, but the headers differ ({})", header_diff.join(", "))?;
                break Outcome::HeadersDiffer { events: index, fields: header_diff };
            }
            (Some(x), Some(y)) if x == y => index += 1,
            (Some(x), Some(y)) => {
                let fields = event_fields(&x, &y);
                writeln!(out, "first difference at event {index} (in {}):", fields.join(", "))?;
                writeln!(out, "  {:<width$} {}", format!("{na}:"), decode::line(index, &x))?;
                writeln!(out, "  {:<width$} {}", format!("{nb}:"), decode::line(index, &y))?;
                if index > 0 {
                    writeln!(out, "events 0..{} are equal", index - 1)?;
                } else {
                    writeln!(out, "no event is equal")?;
                }
                break Outcome::Differ { index, fields };
            }
            (None, Some(next)) => break prefix(out, 0, (&na, &nb), index, &next, width)?,
            (Some(next), None) => break prefix(out, 1, (&nb, &na), index, &next, width)?,
        }
    };
    out.flush()?;
    Ok(outcome)
}

/// Reports that the log named `names.0` ended at `index` while `names.1` goes on with `next`.
fn prefix(
    out: &mut dyn Write,
    shorter: usize,
    names: (&dyn std::fmt::Display, &dyn std::fmt::Display),
    index: u64,
    next: &Event,
    width: usize,
) -> Result<Outcome, Error> {
    let (short, long) = names;
    writeln!(out, "{short} is a prefix of {long}: the first {index} events are equal, then {long} goes on with")?;
    writeln!(out, "  {:<width$} {}", format!("{long}:"), decode::line(index, next))?;
    Ok(Outcome::Prefix { shorter, events: index })
}
