//! `ftdbg diff`: the first event where two logs differ.

use crate::source::Log;
use crate::{decode, Error};
use ft_libos::clock;
use ft_libos::proto::{
    event::Kind, Clocks, Event, Exec, Exit, Header, Patch, Preempt, ProcState, Rdtsc, Run, Signal, Spawn, Start,
    Syscall,
};
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

/// The fields in which two events of the same kind differ, by name, in the order the schema
/// declares them (`args[2]` for a syscall argument, `reads[3]` for the first differing clock-page
/// read, `signals[0]` for a signal a preemption delivered); `kind` when the kinds differ.
///
/// Each arm takes its event apart with a pattern that names every field, so a field or a kind
/// added to the schema does not compile until it is compared here.
/// The differing fields of two events' process states ("state.cwd"), or "state" when only
/// one has one.
fn state_fields(v: &mut Vec<String>, a: &Option<ProcState>, b: &Option<ProcState>) {
    match (a, b) {
        (Some(a), Some(b)) => {
            v.extend(ft_libos::process::differing_fields(a, b).into_iter().map(|f| format!("state.{f}")))
        }
        (None, None) => {}
        _ => v.push("state".into()),
    }
}

pub fn event_fields(a: &Event, b: &Event) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    // Each field bound by the arm's pattern against the same field of `$y`; a differing one named.
    macro_rules! same {
        ($y:ident; $($f:ident),* $(,)?) => {{
            $(if $f != &$y.$f { v.push(stringify!($f).to_string()); })*
        }};
    }
    match (&a.kind, &b.kind) {
        (Some(Kind::Syscall(x)), Some(Kind::Syscall(y))) => {
            let Syscall {
                nr,
                args,
                input_digest,
                ret,
                disposition,
                mem,
                out_digest,
                stdio,
                stdio_fd,
                new_fds,
                path,
                file_hash,
                path_arg,
                task,
                in_tracer,
                state,
                holder_silent,
                token_released,
                token_free,
                buffered,
                drain_end,
                input_len,
            } = x;
            same!(y; nr);
            for i in 0..args.len().max(y.args.len()) {
                if args.get(i) != y.args.get(i) {
                    v.push(format!("args[{i}]"));
                }
            }
            same!(y; input_digest, ret, disposition, mem, out_digest, stdio, stdio_fd, new_fds, path, file_hash);
            same!(y; path_arg, task, in_tracer, holder_silent, token_released, token_free, buffered, drain_end, input_len);
            state_fields(&mut v, state, &y.state);
        }
        (Some(Kind::Rdtsc(x)), Some(Kind::Rdtsc(y))) => {
            let Rdtsc { tsc, aux, rdtscp, ip, task } = x;
            same!(y; tsc, aux, rdtscp, ip, task);
        }
        (Some(Kind::Signal(x)), Some(Kind::Signal(y))) => {
            let Signal { signo, synchronous, task, at_syscall, siginfo, at_exit, orig_rax, rax, grouped, silent } = x;
            same!(y; signo, synchronous, task, at_syscall, siginfo, at_exit, orig_rax, rax, grouped, silent);
        }
        (Some(Kind::Start(x)), Some(Kind::Start(y))) => {
            let Start { at_random, sp, clock_page, state } = x;
            same!(y; at_random, sp, clock_page);
            state_fields(&mut v, state, &y.state);
        }
        (Some(Kind::Exit(x)), Some(Kind::Exit(y))) => {
            let Exit { code, signal, task } = x;
            same!(y; code, signal, task);
        }
        (Some(Kind::Run(x)), Some(Kind::Run(y))) => {
            let Run { task } = x;
            same!(y; task);
        }
        (Some(Kind::Spawn(x)), Some(Kind::Spawn(y))) => {
            let Spawn { parent, child, thread } = x;
            same!(y; parent, child, thread);
        }
        (Some(Kind::Exec(x)), Some(Kind::Exec(y))) => {
            let Exec { task, exe_path, exe_hash, at_random, sp, clock_page, state } = x;
            same!(y; task, exe_path, exe_hash, at_random, sp, clock_page);
            state_fields(&mut v, state, &y.state);
        }
        (Some(Kind::Clocks(x)), Some(Kind::Clocks(y))) => {
            let Clocks { task, reads } = x;
            same!(y; task);
            if *reads != y.reads {
                v.push(match (clock::decode(reads), clock::decode(&y.reads)) {
                    (Some(rx), Some(ry)) => first_difference("reads", &rx, &ry),
                    _ => "reads".into(),
                });
            }
        }
        (Some(Kind::Preempt(x)), Some(Kind::Preempt(y))) => {
            let Preempt { task, ip, digest, steps, yielded, signals } = x;
            same!(y; task, ip, digest, steps, yielded);
            if *signals != y.signals {
                v.push(first_difference("signals", signals, &y.signals));
            }
        }
        (Some(Kind::Patch(x)), Some(Kind::Patch(y))) => {
            let Patch { task, site, before, after, tramp, tramp_bytes, resume, silent, page } = x;
            same!(y; task, site, before, after, tramp, tramp_bytes, resume, silent, page);
        }
        // Different kinds (or an event without a kind). The left side lists every kind, so that
        // a new one does not compile until it has its arm above.
        (
            Some(
                Kind::Syscall(_)
                | Kind::Rdtsc(_)
                | Kind::Signal(_)
                | Kind::Start(_)
                | Kind::Exit(_)
                | Kind::Run(_)
                | Kind::Spawn(_)
                | Kind::Exec(_)
                | Kind::Clocks(_)
                | Kind::Preempt(_)
                | Kind::Patch(_),
            )
            | None,
            _,
        ) => {
            if a != b {
                v.push("kind".into())
            }
        }
    }
    if v.is_empty() && a != b {
        v.push("fields this ftdbg does not know".into());
    }
    v
}

/// `name[i]` for the first index where two lists differ (one of them may be shorter).
fn first_difference<T: PartialEq>(name: &str, a: &[T], b: &[T]) -> String {
    let i = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)).unwrap_or(0);
    format!("{name}[{i}]")
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

#[cfg(test)]
mod tests {
    use super::*;
    use ft_libos::clock::{pack, to_raw, Read};

    fn fields(a: Kind, b: Kind) -> Vec<String> {
        event_fields(&Event { kind: Some(a) }, &Event { kind: Some(b) })
    }

    /// For each `field: value => name`, a copy of `base` with that one field changed differs from
    /// `base` in exactly the field `name`, whichever side it is on.
    macro_rules! names_each_field {
        ($kind:ident, $base:expr, $($f:ident: $value:expr => $name:expr),+ $(,)?) => {{
            let base = $base;
            assert!(fields(Kind::$kind(base.clone()), Kind::$kind(base.clone())).is_empty());
            $(
                let mut changed = base.clone();
                changed.$f = $value;
                let what = concat!(stringify!($kind), ".", stringify!($f));
                assert_eq!(fields(Kind::$kind(base.clone()), Kind::$kind(changed.clone())), [$name], "{what}");
                assert_eq!(fields(Kind::$kind(changed), Kind::$kind(base.clone())), [$name], "{what}");
            )+
        }};
    }

    fn reads(values: &[i64]) -> Vec<u8> {
        let reads: Vec<Read> = values.iter().map(|&b| Read { func: 0, arg: 1, ret: 0, a: 100, b }).collect();
        pack(&to_raw(&reads)).unwrap_or_default()
    }

    #[test]
    fn names_the_differing_field_of_spawn_exec_run_clocks_preempt() {
        names_each_field!(Spawn, Spawn { parent: 1, child: 5, thread: false },
            parent: 2 => "parent", child: 6 => "child", thread: true => "thread");
        let exec = Exec {
            task: 1,
            exe_path: b"/bin/a".to_vec(),
            exe_hash: vec![1; 32],
            at_random: vec![2; 16],
            sp: 0x7fff_0000,
            clock_page: true,
            state: None,
        };
        names_each_field!(Exec, exec,
            task: 2 => "task", exe_path: b"/bin/b".to_vec() => "exe_path", exe_hash: vec![3; 32] => "exe_hash",
            at_random: vec![4; 16] => "at_random", sp: 0x7fff_1000 => "sp", clock_page: false => "clock_page");
        names_each_field!(Run, Run { task: 1 }, task: 2 => "task");
        let clocks = Clocks { task: 1, reads: reads(&[5, 6, 7]) };
        names_each_field!(Clocks, clocks.clone(), task: 2 => "task", reads: reads(&[5, 6, 8]) => "reads[2]");
        names_each_field!(Clocks, clocks, reads: reads(&[5, 6]) => "reads[2]", reads: vec![0xff] => "reads");
        let held = Signal { signo: 10, task: 1, at_syscall: true, ..Default::default() };
        let preempt = Preempt {
            task: 1,
            ip: 0x401000,
            digest: vec![9; 16],
            steps: 3,
            yielded: false,
            signals: vec![held.clone()],
        };
        names_each_field!(Preempt, preempt,
            task: 2 => "task", ip: 0x401004 => "ip", digest: vec![8; 16] => "digest", steps: 4 => "steps",
            yielded: true => "yielded", signals: vec![Signal { signo: 12, ..held.clone() }] => "signals[0]",
            signals: vec![held.clone(), held] => "signals[1]");
    }

    #[test]
    fn names_the_differing_field_of_the_other_kinds() {
        names_each_field!(Start, Start { at_random: vec![1; 16], sp: 0x7fff_0000, clock_page: true, state: None },
            at_random: vec![2; 16] => "at_random", sp: 0 => "sp", clock_page: false => "clock_page",
            state: Some(ProcState::default()) => "state");
        let st = ProcState { cwd: b"/srv".to_vec(), uids: vec![0; 4], ..Default::default() };
        names_each_field!(Syscall, Syscall { nr: 80, state: Some(st.clone()), ..Default::default() },
            state: Some(ProcState { cwd: b"/".to_vec(), ..st.clone() }) => "state.cwd",
            state: Some(ProcState { uids: vec![65534; 4], ..st.clone() }) => "state.uids",
            state: None => "state");
        names_each_field!(Syscall, Syscall { nr: 0, args: vec![3, 0x1000, 10], ..Default::default() },
            args: vec![3, 0x1000, 11] => "args[2]", task: 1 => "task", in_tracer: true => "in_tracer");
        names_each_field!(Rdtsc, Rdtsc { tsc: 1, ..Default::default() }, tsc: 2 => "tsc", task: 1 => "task");
        names_each_field!(Signal, Signal { signo: 2, ..Default::default() }, signo: 15 => "signo", task: 1 => "task");
        names_each_field!(Exit, Exit { code: 0, ..Default::default() }, code: 1 => "code", task: 1 => "task");
    }

    #[test]
    fn different_kinds_are_a_kind_difference() {
        let run = Event { kind: Some(Kind::Run(Run { task: 0 })) };
        let exit = Event { kind: Some(Kind::Exit(Exit::default())) };
        assert_eq!(event_fields(&run, &exit), ["kind"]);
        assert_eq!(event_fields(&run, &Event { kind: None }), ["kind"]);
        assert!(event_fields(&Event { kind: None }, &Event { kind: None }).is_empty());
    }
}
