//! `ftdbg stats`: what a log holds, counted.

use crate::decode::{self, class_name, disposition_name};
use crate::source::Log;
use crate::Error;
use ft_libos::proto::{event::Kind, Disposition, Header};
use ft_libos::table;
use prost::Message;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Counts for one syscall or one class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    pub calls: u64,
    /// Calls with disposition Execute (or ExecuteInject): they run for real at replay too.
    pub executed: u64,
    /// Calls that returned an error.
    pub errors: u64,
    /// Calls the recorder answered at their seccomp stop on a copy of the fd (one ptrace stop),
    /// or that the syscall buffer recorded in the program (no stop: also in `buffered`).
    pub one_stop: u64,
    /// Calls the syscall buffer recorded in the program.
    pub buffered: u64,
}

/// First and last reading of one clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    pub first_ns: i128,
    pub last_ns: i128,
    pub readings: u64,
}

#[derive(Clone, Debug)]
pub struct Stats {
    pub path: PathBuf,
    pub file_bytes: u64,
    pub header: Header,
    pub events: u64,
    /// Per event kind: (events, bytes in the file including the 8-byte record framing).
    pub by_kind: BTreeMap<String, (u64, u64)>,
    pub by_syscall: BTreeMap<u32, Count>,
    pub by_class: BTreeMap<&'static str, Count>,
    pub by_disposition: BTreeMap<String, u64>,
    /// Syscalls per task number.
    pub tasks: BTreeMap<u32, u64>,
    pub clocks: BTreeMap<String, Clock>,
    /// Clock reads served by the clock page (no syscall, logged in `clocks` events).
    pub clock_page_reads: u64,
    /// Preemptions of a task spinning without syscalls (yields, deliveries of signals).
    pub preemptions: u64,
    /// Syscall sites rewritten to the syscall buffer, and syscalls it served without a stop.
    pub patched_sites: u64,
    pub buffered: u64,
    pub exit: Option<String>,
}

/// Preference order for the duration: a clock that cannot jump first.
const CLOCK_ORDER: &[&str] = &["CLOCK_MONOTONIC", "CLOCK_MONOTONIC_RAW", "CLOCK_BOOTTIME", "CLOCK_REALTIME"];

impl Stats {
    /// Reads the whole log at `path`.
    pub fn read(path: &Path) -> Result<Stats, Error> {
        let mut reader = Log::open(path)?;
        let file_bytes = reader.bytes(path);
        let mut st = Stats {
            path: path.into(),
            file_bytes,
            header: reader.header().clone(),
            events: 0,
            by_kind: BTreeMap::new(),
            by_syscall: BTreeMap::new(),
            by_class: BTreeMap::new(),
            by_disposition: BTreeMap::new(),
            tasks: BTreeMap::new(),
            clocks: BTreeMap::new(),
            clock_page_reads: 0,
            preemptions: 0,
            patched_sites: 0,
            buffered: 0,
            exit: None,
        };
        while let Some(ev) = reader.next_event()? {
            st.events += 1;
            let k = st.by_kind.entry(ev.kind_name().to_string()).or_default();
            k.0 += 1;
            k.1 += 8 + ev.encoded_len() as u64;
            match &ev.kind {
                Some(Kind::Syscall(s)) => {
                    let executed = matches!(
                        Disposition::try_from(s.disposition),
                        Ok(Disposition::Execute | Disposition::ExecuteInject)
                    );
                    let error = (-4095..0).contains(&s.ret);
                    let class = table::lookup(u64::from(s.nr)).map(|sp| class_name(sp.class)).unwrap_or("unknown");
                    for c in [st.by_syscall.entry(s.nr).or_default(), st.by_class.entry(class).or_default()] {
                        c.calls += 1;
                        c.executed += u64::from(executed);
                        c.errors += u64::from(error);
                        c.one_stop += u64::from(s.in_tracer);
                        c.buffered += u64::from(s.buffered);
                    }
                    *st.by_disposition.entry(disposition_name(s.disposition)).or_default() += 1;
                    *st.tasks.entry(s.task).or_default() += 1;
                    st.buffered += u64::from(s.buffered);
                    if let Some((clock, ns)) = decode::time_reading(s) {
                        let c = st.clocks.entry(clock).or_insert(Clock { first_ns: ns, last_ns: ns, readings: 0 });
                        c.last_ns = ns;
                        c.readings += 1;
                    }
                }
                Some(Kind::Exit(_)) => st.exit = Some(decode::text(&ev)),
                Some(Kind::Preempt(_)) => st.preemptions += 1,
                Some(Kind::Patch(p)) => st.patched_sites += u64::from(p.page == 0),
                Some(Kind::Clocks(c)) => {
                    let reads = ft_libos::clock::decode(&c.reads).unwrap_or_default();
                    st.clock_page_reads += reads.len() as u64;
                    for (clock, ns) in decode::clock_readings(&reads) {
                        let c = st.clocks.entry(clock).or_insert(Clock { first_ns: ns, last_ns: ns, readings: 0 });
                        c.last_ns = ns;
                        c.readings += 1;
                    }
                }
                Some(
                    Kind::Rdtsc(_) | Kind::Signal(_) | Kind::Start(_) | Kind::Run(_) | Kind::Spawn(_) | Kind::Exec(_),
                )
                | None => {}
            }
        }
        Ok(st)
    }

    /// The program's duration as its own clock readings show it: (seconds, clock, readings), from
    /// the first clock (monotonic preferred) read at least twice.
    pub fn duration(&self) -> Option<(f64, &str, u64)> {
        let preferred = CLOCK_ORDER.iter().filter_map(|&n| self.clocks.get_key_value(n));
        let others = self.clocks.iter().filter(|(n, _)| !CLOCK_ORDER.contains(&n.as_str()));
        preferred
            .chain(others)
            .find(|(_, c)| c.readings >= 2)
            .map(|(n, c)| ((c.last_ns - c.first_ns) as f64 / 1e9, n.as_str(), c.readings))
    }

    fn duration_text(&self) -> String {
        match self.duration() {
            Some((secs, clock, n)) => format!("{secs:.6} s ({clock}, first to last of {n} readings)"),
            None => {
                let n: u64 = self.clocks.values().map(|c| c.readings).sum();
                format!("unknown ({n} time readings; at least two of one clock are needed)")
            }
        }
    }

    pub fn write_text(&self, out: &mut dyn Write) -> Result<(), Error> {
        let h = &self.header;
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let argv: Vec<String> = h.argv.iter().map(|a| decode::escape(a, 4096)).collect();
        writeln!(out, "log: {} ({} bytes, format version {})", self.path.display(), self.file_bytes, h.version)?;
        writeln!(out, "header:")?;
        writeln!(out, "  exe:       {} (blake3 {})", s(&h.exe_path), hex(&h.exe_hash, 8))?;
        if !h.interp_path.is_empty() {
            writeln!(out, "  interp:    {} (blake3 {})", s(&h.interp_path), hex(&h.interp_hash, 8))?;
        }
        writeln!(out, "  argv:      [{}]", argv.join(", "))?;
        writeln!(out, "  cwd:       {}", s(&h.cwd))?;
        writeln!(out, "  env:       {} variables", h.env.len())?;
        writeln!(out, "  cpu:       {}", h.cpu_model)?;
        if h.data_dir.is_empty() {
            writeln!(out, "  data dir:  (none)")?;
        } else {
            writeln!(out, "  data dir:  {} (digest {})", s(&h.data_dir), hex(&h.data_dir_digest, 8))?;
        }
        writeln!(out, "  ftexec:    {}", h.ftexec_version)?;
        writeln!(out, "  recorded:  {} (unix time)", unix_time(h.start_unix_ns))?;
        writeln!(out, "events: {}", self.events)?;
        writeln!(out, "end: {}", self.exit.as_deref().unwrap_or("no exit event (the recording did not finish)"))?;
        let tasks: Vec<String> = self.tasks.iter().map(|(t, n)| format!("{t} ({n} syscalls)")).collect();
        writeln!(out, "tasks: {}", if tasks.is_empty() { "none".into() } else { tasks.join(", ") })?;
        writeln!(out, "duration: {}", self.duration_text())?;
        if self.preemptions > 0 {
            writeln!(out, "preemptions of a task spinning without syscalls: {}", self.preemptions)?;
        }
        if self.clock_page_reads > 0 {
            writeln!(out, "clock reads through the clock page (no syscall): {}", self.clock_page_reads)?;
        }
        if self.patched_sites > 0 {
            writeln!(
                out,
                "syscall buffer: {} site(s) rewritten, {} syscall(s) recorded without a stop",
                self.patched_sites, self.buffered
            )?;
        }
        writeln!(out, "by kind:                 events       bytes")?;
        for (k, (n, b)) in &self.by_kind {
            writeln!(out, "  {k:<20} {n:>9} {b:>11}")?;
        }
        writeln!(out, "by class:                 calls   executed   errors  (executed: ran for real)")?;
        for (k, c) in &self.by_class {
            writeln!(out, "  {k:<20} {:>9} {:>10} {:>8}", c.calls, c.executed, c.errors)?;
        }
        writeln!(out, "by disposition:           calls")?;
        for (k, n) in &self.by_disposition {
            writeln!(out, "  {k:<20} {n:>9}")?;
        }
        writeln!(out, "by syscall:                calls   executed   errors  one-stop  buffered  class")?;
        let mut rows: Vec<(&u32, &Count)> = self.by_syscall.iter().collect();
        rows.sort_by(|a, b| b.1.calls.cmp(&a.1.calls).then(a.0.cmp(b.0)));
        for (nr, c) in rows {
            let class = table::lookup(u64::from(*nr)).map(|sp| class_name(sp.class)).unwrap_or("unknown");
            let name = table::name(u64::from(*nr));
            let one = c.one_stop;
            writeln!(
                out,
                "  {name:<20} {:>9} {:>10} {:>8} {one:>9} {:>9}  {class}",
                c.calls, c.executed, c.errors, c.buffered
            )?;
        }
        out.flush()?;
        Ok(())
    }

    pub fn json(&self) -> Value {
        let h = &self.header;
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let count = |c: &Count| json!({"calls": c.calls, "executed": c.executed, "errors": c.errors, "one_stop": c.one_stop, "buffered": c.buffered});
        json!({
            "path": self.path.display().to_string(),
            "file_bytes": self.file_bytes,
            "header": {
                "version": h.version,
                "exe_path": s(&h.exe_path),
                "interp_path": s(&h.interp_path),
                "argv": h.argv.iter().map(|a| s(a)).collect::<Vec<_>>(),
                "cwd": s(&h.cwd),
                "cpu_model": h.cpu_model,
                "data_dir": s(&h.data_dir),
                "ftexec_version": h.ftexec_version,
                "start_unix_ns": h.start_unix_ns,
            },
            "events": self.events,
            "exit": self.exit,
            "tasks": self.tasks.iter().map(|(t, n)| json!({"task": t, "syscalls": n})).collect::<Vec<_>>(),
            "duration_s": self.duration().map(|d| d.0),
            "duration_clock": self.duration().map(|d| d.1),
            "clock_page_reads": self.clock_page_reads,
            "preemptions": self.preemptions,
            "patched_sites": self.patched_sites,
            "buffered": self.buffered,
            "by_kind": self.by_kind.iter().map(|(k, (n, b))| (k.to_string(), json!({"events": n, "bytes": b})))
                .collect::<serde_json::Map<_, _>>(),
            "by_class": self.by_class.iter().map(|(k, c)| (k.to_string(), count(c)))
                .collect::<serde_json::Map<_, _>>(),
            "by_disposition": self.by_disposition,
            "by_syscall": self.by_syscall.iter().map(|(nr, c)| (table::name(u64::from(*nr)), count(c)))
                .collect::<serde_json::Map<_, _>>(),
        })
    }
}

fn hex(b: &[u8], n: usize) -> String {
    if b.is_empty() {
        return "-".into();
    }
    b.iter().take(n).map(|x| format!("{x:02x}")).collect::<String>() + if b.len() > n { "…" } else { "" }
}

fn unix_time(ns: u64) -> String {
    format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
}
