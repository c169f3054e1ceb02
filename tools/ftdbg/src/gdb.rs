//! `ftdbg gdb`: replays a log and serves the GDB remote serial protocol on 127.0.0.1, so that
//! `gdb PROG -ex 'target remote :PORT'` debugs the replay: registers, memory, software
//! breakpoints, continue, single-step, and the monitor commands `event` and `goto N`.
//!
//! Going backwards re-executes: `monitor goto N` to an event at or before the current position
//! ends the replay and replays again from the start to event N (no checkpoints). Replay is
//! deterministic, so the second run reaches the same state.
//!
//! One connection is served; the replay runs in this thread, so gdb's Ctrl-C cannot interrupt
//! a `continue` (the replay runs to a breakpoint, a `goto` target or the end).

use crate::source::Log;
use crate::{decode, Error};
use ft_libos::proto::Event;
use ft_replay::debug::{Debugger, Resume, StopReason, View};
use ft_replay::{EventSource, Outcome, ReplayOptions, SessionError};
use slog::Logger;
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;

/// What `ftdbg gdb` replays and where it listens.
pub struct Options {
    pub log: PathBuf,
    /// The first stop: when the events before this index have been replayed.
    pub at: u64,
    pub port: u16,
    pub data_dir: Option<PathBuf>,
    pub allow_cpu_mismatch: bool,
}

/// Replays `opts.log` under gdb; returns when gdb kills, detaches or disconnects. `announce`
/// gets one line once the port listens.
pub fn serve(opts: &Options, announce: &mut dyn Write, log: &Logger) -> Result<(), Error> {
    let (header, events) = Log::read_all(&opts.log)?;
    let events = Arc::new(events);
    let total = events.len() as u64;
    if opts.at >= total {
        return Err(Error::NoSuchEvent { index: opts.at, events: total });
    }
    let ropts = ReplayOptions::new(opts.data_dir.clone(), opts.allow_cpu_mismatch, true);
    // A log of another binary (or a changed library) is refused before gdb connects.
    ft_replay::replay::check_inputs(&header, &ropts).map_err(session)?;
    let listener =
        TcpListener::bind(("127.0.0.1", opts.port)).map_err(|source| Error::Listen { port: opts.port, source })?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(opts.port);
    writeln!(
        announce,
        "ftdbg: replaying {} ({total} events), stopping at event {}; connect with: gdb {} -ex 'target remote :{port}'",
        opts.log.display(),
        opts.at,
        String::from_utf8_lossy(&header.exe_path),
    )?;
    announce.flush()?;
    let (stream, _) = listener.accept().map_err(Error::Connection)?;
    let mut gdb = Gdb::new(stream, Arc::clone(&events), header.exe_path.clone(), opts.at).map_err(Error::Connection)?;
    let mut use_checkpoints = true;
    loop {
        let mut source = Events { all: Arc::clone(&events), position: 0 };
        // Going to event N starts from the nearest checkpoint before it, if the log has any.
        let mut ropts = ReplayOptions::new(opts.data_dir.clone(), opts.allow_cpu_mismatch, true);
        ropts.from_checkpoint =
            gdb.target.filter(|_| use_checkpoints).and_then(|n| nearest_checkpoint(&opts.log, &header, n));
        match ft_replay::replay_debug(&header, &mut source, &ropts, &mut gdb, log) {
            Err(SessionError::Checkpoint { path, why }) => {
                slog::warn!(log, "a checkpoint could not be restored: replaying from the start";
                    "file" => %path.display(), "why" => why);
                use_checkpoints = false;
            }
            Err(SessionError::Restart) if gdb.quit => return Ok(()),
            Err(SessionError::Restart) => gdb.breakpoints.clear(),
            Err(e) => {
                gdb.failed(&e);
                return Err(session(e));
            }
            Ok(outcome) => {
                if !gdb.ended(outcome) {
                    return Ok(());
                }
                gdb.breakpoints.clear();
            }
        }
    }
}

/// The checkpoint of `log` (in LOG.ckpt) with the highest event before `n`.
fn nearest_checkpoint(log: &std::path::Path, header: &ft_libos::Header, n: u64) -> Option<std::path::PathBuf> {
    let mut dir = log.as_os_str().to_owned();
    dir.push(".ckpt");
    let id = ft_replay::replay::log_id(header);
    std::fs::read_dir(std::path::PathBuf::from(dir))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter_map(|p| ft_replay::replay::read_checkpoint_head(&p).ok().map(|h| (h, p)))
        .filter(|(h, _)| h.log_id == id && h.event > 0 && h.event < n && h.ftexec_version == env!("CARGO_PKG_VERSION"))
        .max_by_key(|(h, _)| h.event)
        .map(|(_, p)| p)
}

fn session(e: SessionError) -> Error {
    Error::Replay(Box::new(e))
}

/// The log's events, in memory, replayed again after each `goto` backwards.
struct Events {
    all: Arc<Vec<Event>>,
    position: usize,
}

impl EventSource for Events {
    fn next_event(&mut self) -> ft_replay::Result<Option<Event>> {
        let ev = self.all.get(self.position).cloned();
        self.position += usize::from(ev.is_some());
        Ok(ev)
    }

    fn peek_event(&mut self) -> ft_replay::Result<Option<&Event>> {
        Ok(self.all.get(self.position))
    }

    fn position(&self) -> u64 {
        self.position as u64
    }
}

/// What gdb waits for while the replay runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Waiting {
    Nothing,
    /// A stop reply (after c, s, vCont).
    Stop,
    /// The end of a `monitor goto N`.
    Goto(u64),
}

struct Gdb {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    no_ack: bool,
    events: Arc<Vec<Event>>,
    /// The recorded program's path.
    exe: Vec<u8>,
    target: Option<u64>,
    /// Inserted breakpoints: address, the byte the int3 replaced.
    breakpoints: HashMap<u64, u8>,
    /// The thread of g/G/m/M (Hg); 0 or -1: the stopped one.
    thread: i32,
    waiting: Waiting,
    /// gdb killed or detached, or the connection is gone: no more stops.
    quit: bool,
    detached: bool,
}

/// What one packet asks of the replay.
enum Next {
    /// Serve the next packet.
    Serve,
    Resume(Resume),
}

impl Gdb {
    fn new(stream: TcpStream, events: Arc<Vec<Event>>, exe: Vec<u8>, at: u64) -> io::Result<Gdb> {
        stream.set_nodelay(true)?;
        Ok(Gdb {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            no_ack: false,
            events,
            exe,
            target: Some(at),
            breakpoints: HashMap::new(),
            thread: 0,
            waiting: Waiting::Nothing,
            quit: false,
            detached: false,
        })
    }

    /// Reads one packet's payload; None when the connection is gone.
    fn read_packet(&mut self) -> Option<String> {
        loop {
            let mut b = [0u8; 1];
            self.reader.read_exact(&mut b).ok()?;
            // Acks, and Ctrl-C while stopped (nothing to interrupt).
            if b[0] != b'$' {
                continue;
            }
            let mut body = Vec::new();
            self.reader.read_until(b'#', &mut body).ok()?;
            body.pop();
            let mut sum = [0u8; 2];
            self.reader.read_exact(&mut sum).ok()?;
            let ok = std::str::from_utf8(&sum).ok().and_then(|s| u8::from_str_radix(s, 16).ok())
                == Some(body.iter().fold(0u8, |a, &c| a.wrapping_add(c)));
            if !self.no_ack {
                self.writer.write_all(if ok { b"+" } else { b"-" }).ok()?;
            }
            if !ok {
                continue;
            }
            let mut payload = Vec::with_capacity(body.len());
            let mut it = body.into_iter();
            while let Some(c) = it.next() {
                match c {
                    b'}' => payload.push(it.next().unwrap_or(0) ^ 0x20),
                    c => payload.push(c),
                }
            }
            return Some(String::from_utf8_lossy(&payload).into_owned());
        }
    }

    fn send(&mut self, payload: &[u8]) {
        let mut out = Vec::with_capacity(payload.len() + 4);
        out.push(b'$');
        for &c in payload {
            if matches!(c, b'$' | b'#' | b'}' | b'*') {
                out.extend_from_slice(&[b'}', c ^ 0x20]);
            } else {
                out.push(c);
            }
        }
        let sum = out[1..].iter().fold(0u8, |a, &c| a.wrapping_add(c));
        out.extend_from_slice(format!("#{sum:02x}").as_bytes());
        if self.writer.write_all(&out).is_err() {
            self.quit = true;
            return;
        }
        if !self.no_ack {
            // The ack; a '-' asks for the packet again.
            let mut b = [0u8; 1];
            loop {
                match self.reader.read_exact(&mut b) {
                    Ok(()) if b[0] == b'+' => return,
                    Ok(()) if b[0] == b'-' => {
                        if self.writer.write_all(&out).is_err() {
                            self.quit = true;
                            return;
                        }
                    }
                    Ok(()) => {}
                    Err(_) => {
                        self.quit = true;
                        return;
                    }
                }
            }
        }
    }

    fn send_str(&mut self, s: &str) {
        self.send(s.as_bytes());
    }

    /// Console output (shown by gdb), for monitor commands.
    fn console(&mut self, text: &str) {
        let hex = format!("O{}", hex(text.as_bytes()));
        self.send(hex.as_bytes());
    }

    fn stop_reply(&mut self, why: StopReason, tid: i32) {
        let extra = if why == StopReason::Breakpoint { "swbreak:;" } else { "" };
        self.send_str(&format!("T05thread:{tid:x};{extra}"));
    }

    fn where_text(&self, position: u64) -> String {
        match self.events.get(position as usize) {
            Some(ev) => format!("at event {position} of {}; next: {}\n", self.events.len(), decode::line(position, ev)),
            None => format!("at the end of the log ({} events)\n", self.events.len()),
        }
    }

    /// The replay failed (divergence, a lost tracee): tell gdb and let it go.
    fn failed(&mut self, e: &SessionError) {
        if self.waiting != Waiting::Nothing {
            self.console(&format!("ftdbg: the replay failed: {e}\n"));
            self.send_str("X09");
        }
    }

    /// The program ended; returns whether to replay again (a `monitor goto` after the end).
    fn ended(&mut self, outcome: Outcome) -> bool {
        let exit = if outcome.status >= 128 {
            format!("X{:02x}", outcome.status - 128)
        } else {
            format!("W{:02x}", outcome.status)
        };
        match std::mem::replace(&mut self.waiting, Waiting::Nothing) {
            Waiting::Stop => self.send_str(&exit),
            Waiting::Goto(n) => {
                self.console(&format!(
                    "the program ended (status {}) at event {} before reaching event {n}\n",
                    outcome.status, outcome.events
                ));
                self.send_str("OK");
            }
            Waiting::Nothing => {}
        }
        // No process any more: serve what needs none until gdb goes or goes back.
        while !self.quit && !self.detached {
            let Some(pkt) = self.read_packet() else { break };
            match self.handle(&pkt, None) {
                Next::Serve => {}
                Next::Resume(Resume::Restart) => return !self.quit,
                Next::Resume(_) => {
                    self.waiting = Waiting::Nothing;
                    self.send_str(&exit);
                }
            }
        }
        false
    }

    fn handle(&mut self, pkt: &str, view: Option<&View<'_>>) -> Next {
        let (cmd, rest) = pkt.split_at(pkt.len().min(1));
        match cmd {
            "?" => match view {
                Some(v) => self.stop_reply(StopReason::Event, v.current.tid),
                None => self.send_str("W00"),
            },
            "q" | "Q" | "v" => return self.query(pkt, view),
            "H" => {
                if let Some(t) = rest.get(1..) {
                    if rest.starts_with('g') {
                        self.thread = parse_tid(t);
                    }
                }
                self.send_str("OK");
            }
            "T" => {
                let ok = view.and_then(|v| v.task(parse_tid(rest))).is_some_and(|t| t.stopped.is_some());
                self.send_str(if ok { "OK" } else { "E01" });
            }
            "g" => {
                let reply = self.selected(view).and_then(|s| registers(s).ok());
                match reply {
                    Some(r) => self.send_str(&r),
                    None => self.send_str("E01"),
                }
            }
            "G" => {
                let ok = self.selected(view).is_some_and(|s| set_registers(s, rest).is_ok());
                self.send_str(if ok { "OK" } else { "E01" });
            }
            "m" => {
                let data = parse_range(rest).and_then(|(addr, len)| Some((addr, self.read_mem(view, addr, len)?)));
                match data {
                    Some((_, bytes)) if !bytes.is_empty() => self.send_str(&hex(&bytes)),
                    _ => self.send_str("E14"),
                }
            }
            "M" => {
                let ok = rest.split_once(':').and_then(|(range, data)| {
                    let (addr, _) = parse_range(range)?;
                    self.write_mem(view, addr, &unhex(data)?)
                });
                self.send_str(if ok.is_some() { "OK" } else { "E14" });
            }
            "Z" | "z" => {
                let reply = self.breakpoint(cmd == "Z", rest, view);
                self.send_str(reply);
            }
            "c" | "C" => return self.resume(Resume::Continue),
            "s" | "S" => return self.resume(Resume::Step),
            "k" => {
                self.quit = true;
                return Next::Resume(Resume::Restart);
            }
            "D" => {
                self.send_str("OK");
                self.detach(view);
                return Next::Resume(Resume::Continue);
            }
            _ => self.send_str(""),
        }
        Next::Serve
    }

    fn query(&mut self, pkt: &str, view: Option<&View<'_>>) -> Next {
        let head = pkt.split([':', ',', ';']).next().unwrap_or("");
        match head {
            "qSupported" => self.send_str(
                "PacketSize=4000;swbreak+;QStartNoAckMode+;qXfer:auxv:read+;qXfer:features:read+;\
                 qXfer:exec-file:read+;vContSupported+",
            ),
            "QStartNoAckMode" => {
                self.send_str("OK");
                self.no_ack = true;
            }
            "qAttached" => self.send_str("1"),
            "qC" => match view {
                Some(v) => self.send_str(&format!("QC{:x}", v.current.tid)),
                None => self.send_str(""),
            },
            "qfThreadInfo" => {
                let tids: Vec<String> = match view {
                    Some(v) => std::iter::once(&v.current)
                        .chain(v.others.iter())
                        .filter(|t| t.stopped.is_some())
                        .map(|t| format!("{:x}", t.tid))
                        .collect(),
                    None => Vec::new(),
                };
                if tids.is_empty() {
                    self.send_str("l");
                } else {
                    self.send_str(&format!("m{}", tids.join(",")));
                }
            }
            "qsThreadInfo" => self.send_str("l"),
            "qThreadExtraInfo" => {
                let text = pkt
                    .split(',')
                    .nth(1)
                    .and_then(|t| view?.task(parse_tid(t)).map(|t| format!("task {} of the log", t.vtid)));
                let reply = hex(text.unwrap_or_default().as_bytes());
                self.send_str(&reply);
            }
            "qSymbol" => self.send_str("OK"),
            "qXfer" => self.xfer(pkt, view),
            "qRcmd" => {
                let cmd = pkt.split(',').nth(1).and_then(unhex).map(|b| String::from_utf8_lossy(&b).into_owned());
                return self.monitor(cmd.as_deref().unwrap_or("").trim(), view);
            }
            "vCont?" => self.send_str("vCont;c;C;s;S"),
            "vCont" => {
                let step = pkt.split(';').skip(1).any(|a| a.starts_with('s') || a.starts_with('S'));
                return self.resume(if step { Resume::Step } else { Resume::Continue });
            }
            "vKill" => {
                self.send_str("OK");
                self.quit = true;
                return Next::Resume(Resume::Restart);
            }
            _ => self.send_str(""),
        }
        Next::Serve
    }

    fn resume(&mut self, how: Resume) -> Next {
        self.waiting = Waiting::Stop;
        Next::Resume(how)
    }

    /// gdb leaves: the breakpoints go, the replay runs to its end without stopping.
    fn detach(&mut self, view: Option<&View<'_>>) {
        let bps: Vec<(u64, u8)> = self.breakpoints.drain().collect();
        if let Some(s) = view.and_then(|v| v.current.stopped) {
            for (addr, orig) in bps {
                let _ = s.write_forced(addr, &[orig]);
            }
        }
        self.detached = true;
        self.target = None;
    }

    fn monitor(&mut self, cmd: &str, view: Option<&View<'_>>) -> Next {
        let mut words = cmd.split_whitespace();
        match (words.next(), words.next()) {
            (Some("event"), None) => {
                let text = match view {
                    Some(v) => self.where_text(v.position),
                    None => "the program has ended\n".to_string(),
                };
                self.console(&text);
                self.send_str("OK");
            }
            (Some("goto"), Some(n)) => {
                let total = self.events.len() as u64;
                let Ok(n) = n.parse::<u64>() else {
                    self.console(&format!("goto: {n:?} is not an event index\n"));
                    self.send_str("OK");
                    return Next::Serve;
                };
                if n >= total {
                    self.console(&format!("goto: there is no event {n}; the log has events 0..{}\n", total - 1));
                    self.send_str("OK");
                    return Next::Serve;
                }
                let position = view.map(|v| v.position);
                if position == Some(n) {
                    let text = self.where_text(n);
                    self.console(&text);
                    self.send_str("OK");
                    return Next::Serve;
                }
                self.target = Some(n);
                self.waiting = Waiting::Goto(n);
                // Forward: run on. Backward (or after the end): replay again from the start.
                return Next::Resume(match position {
                    Some(p) if n > p => Resume::Continue,
                    _ => Resume::Restart,
                });
            }
            _ => {
                self.console(
                    "ftdbg monitor commands:\n  monitor event     the log position and the next event\n  \
                     monitor goto N    replay to event N (backwards: from the nearest checkpoint in LOG.ckpt, or the start)\n\
                     After a goto, `maint flush register-cache` makes gdb read the new state.\n",
                );
                self.send_str("OK");
            }
        }
        Next::Serve
    }

    fn selected<'v>(&self, view: Option<&'v View<'v>>) -> Option<&'v ft_interposer::Stopped> {
        view?.task(self.thread)?.stopped
    }

    fn read_mem(&self, view: Option<&View<'_>>, addr: u64, len: usize) -> Option<Vec<u8>> {
        let mut bytes = self.selected(view)?.read_forced(addr, len.min(0x4000)).ok()?;
        // gdb sees the program's bytes, not the int3s.
        for (&bp, &orig) in &self.breakpoints {
            if let Some(off) = bp.checked_sub(addr).filter(|&o| o < bytes.len() as u64) {
                bytes[off as usize] = orig;
            }
        }
        Some(bytes)
    }

    fn write_mem(&mut self, view: Option<&View<'_>>, addr: u64, data: &[u8]) -> Option<()> {
        let s = self.selected(view)?;
        s.write_forced(addr, data).ok()?;
        for (&bp, orig) in self.breakpoints.iter_mut() {
            if let Some(off) = bp.checked_sub(addr).filter(|&o| o < data.len() as u64) {
                *orig = data[off as usize];
                s.write_forced(bp, &[0xcc]).ok()?;
            }
        }
        Some(())
    }

    fn breakpoint(&mut self, insert: bool, rest: &str, view: Option<&View<'_>>) -> &'static str {
        let mut parts = rest.split(',');
        // Software breakpoints only; gdb falls back for others.
        if parts.next() != Some("0") {
            return "";
        }
        let Some(addr) = parts.next().and_then(|a| u64::from_str_radix(a, 16).ok()) else { return "E01" };
        let Some(s) = view.and_then(|v| v.current.stopped) else { return "E01" };
        if insert {
            if self.breakpoints.contains_key(&addr) {
                return "OK";
            }
            let Some(&orig) = s.read_forced(addr, 1).ok().and_then(|b| b.first().copied()).as_ref() else {
                return "E14";
            };
            if s.write_forced(addr, &[0xcc]).is_err() {
                return "E14";
            }
            self.breakpoints.insert(addr, orig);
        } else if let Some(orig) = self.breakpoints.remove(&addr) {
            if s.write_forced(addr, &[orig]).is_err() {
                return "E14";
            }
        }
        "OK"
    }

    /// qXfer:OBJECT:read:ANNEX:OFFSET,LENGTH. auxv: gdb finds where a PIE program is loaded
    /// from AT_ENTRY; features: the architecture, so that gdb without the program file still
    /// reads amd64 registers; exec-file: the program's path.
    fn xfer(&mut self, pkt: &str, view: Option<&View<'_>>) {
        let mut parts = pkt.splitn(5, ':');
        let (object, op, range) = (parts.nth(1), parts.next(), parts.nth(1));
        let (Some(object), Some("read"), Some((off, len))) = (object, op, range.and_then(parse_range)) else {
            self.send_str("");
            return;
        };
        let data = match object {
            "features" => Some(TARGET_XML.as_bytes().to_vec()),
            "exec-file" => Some(self.exe.clone()),
            "auxv" => view.and_then(|v| std::fs::read(format!("/proc/{}/auxv", v.current.tid)).ok()),
            _ => {
                self.send_str("");
                return;
            }
        };
        let Some(data) = data else {
            self.send_str("E01");
            return;
        };
        let start = (off as usize).min(data.len());
        let end = start.saturating_add(len).min(data.len());
        let mut reply = vec![if end == data.len() { b'l' } else { b'm' }];
        reply.extend_from_slice(&data[start..end]);
        self.send(&reply);
    }
}

/// No register features: gdb uses its default amd64 registers, the layout of [`registers`].
const TARGET_XML: &str = "<?xml version=\"1.0\"?>\n<!DOCTYPE target SYSTEM \"gdb-target.dtd\">\n\
    <target><architecture>i386:x86-64</architecture><osabi>GNU/Linux</osabi></target>\n";

impl Debugger for Gdb {
    fn target(&self) -> Option<u64> {
        self.target
    }

    fn is_breakpoint(&self, addr: u64) -> bool {
        self.breakpoints.contains_key(&addr)
    }

    fn stopped(&mut self, why: StopReason, view: &View<'_>) -> Resume {
        self.target = None;
        if self.quit {
            return Resume::Restart;
        }
        if self.detached {
            return Resume::Continue;
        }
        match std::mem::replace(&mut self.waiting, Waiting::Nothing) {
            Waiting::Stop => self.stop_reply(why, view.current.tid),
            Waiting::Goto(_) => {
                let mut text = self.where_text(view.position);
                if why == StopReason::Breakpoint {
                    text = format!("stopped at a breakpoint, {text}");
                }
                self.console(&text);
                self.send_str("OK");
            }
            Waiting::Nothing => {}
        }
        loop {
            if self.quit {
                return Resume::Restart;
            }
            let Some(pkt) = self.read_packet() else {
                self.quit = true;
                return Resume::Restart;
            };
            if let Next::Resume(how) = self.handle(&pkt, Some(view)) {
                return how;
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// A thread id in a packet: hex, or -1/0 for "any".
fn parse_tid(s: &str) -> i32 {
    if s.starts_with('-') {
        return -1;
    }
    i32::from_str_radix(s, 16).unwrap_or(0)
}

/// "ADDR,LEN" in hex.
fn parse_range(s: &str) -> Option<(u64, usize)> {
    let (a, l) = s.split_once(',')?;
    Some((u64::from_str_radix(a, 16).ok()?, usize::from_str_radix(l, 16).ok()?))
}

/// The 'g' reply in gdb's amd64 order: 16 general registers, rip, eflags, 6 segment registers,
/// st0-7, the x87 control registers, xmm0-15, mxcsr.
fn registers(s: &ft_interposer::Stopped) -> Result<String, ft_interposer::TraceError> {
    let r = s.regs()?.0;
    let fp = s.fpregs()?;
    let mut out = Vec::with_capacity(560);
    for v in [
        r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15,
        r.rip,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in [r.eflags, r.cs, r.ss, r.ds, r.es, r.fs, r.gs] {
        out.extend_from_slice(&(v as u32).to_le_bytes());
    }
    let st: Vec<u8> = fp.st_space.iter().flat_map(|w| w.to_le_bytes()).collect();
    for i in 0..8 {
        out.extend_from_slice(&st[i * 16..i * 16 + 10]);
    }
    // FXSAVE keeps one "in use" bit per register; gdb wants the full tag word (11: empty).
    let ftag = (0..8).fold(0u32, |t, i| if fp.ftw & (1 << i) == 0 { t | (3 << (2 * i)) } else { t });
    for v in [u32::from(fp.cwd), u32::from(fp.swd), ftag, 0, fp.rip as u32, 0, fp.rdp as u32, u32::from(fp.fop)] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for w in fp.xmm_space {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.extend_from_slice(&fp.mxcsr.to_le_bytes());
    Ok(hex(&out))
}

/// 'G': the general registers, rip and eflags (the rest is left as it is).
fn set_registers(s: &ft_interposer::Stopped, data: &str) -> Result<(), ()> {
    let bytes = unhex(data).ok_or(())?;
    if bytes.len() < 17 * 8 + 4 {
        return Err(());
    }
    let q = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    let mut regs = s.regs().map_err(|_| ())?;
    let r = &mut regs.0;
    (r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp) = (q(0), q(1), q(2), q(3), q(4), q(5), q(6), q(7));
    (r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15) = (q(8), q(9), q(10), q(11), q(12), q(13), q(14), q(15));
    r.rip = q(16);
    r.eflags = u64::from(u32::from_le_bytes(bytes[136..140].try_into().unwrap_or([0; 4])));
    s.set_regs(&regs).map_err(|_| ())
}
