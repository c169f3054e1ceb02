//! The syscall buffer at replay (layout: `ft_libos::sysbuf`): when the handler finds its ring
//! served, its own syscall stops at the handler's fallback; the replayer fills the ring with the
//! rest of the recording's drain (buffered syscalls, and the clock reads between them into the
//! clock page), consuming their events, and the handler starts over. At the task's next stop the
//! ring must be served, and each write must have sent the bytes whose digest the log has. The
//! recording drained at every stop of the task, so a faithful replay makes no stop in between;
//! going live with a ring not served yet, the task serves the rest under the recorder (the
//! calls are in the committed log) before its next stop.

use super::*;
use ft_interposer::sysbuf as isb;
use ft_libos::sysbuf::{self as lsb, Entry};

/// A filled ring, not checked yet.
pub(super) struct Fill {
    /// Ring bytes filled.
    used: u32,
    /// Per syscall entry: its ring offset, the log index of its event, the event.
    entries: Vec<(u32, u64, Event)>,
    /// Per write entry: its ring offset, data length, the logged input digest, the log index.
    writes: Vec<(usize, usize, Vec<u8>, u64)>,
}

impl Replayer<'_> {
    /// At a seccomp stop at the handler's fallback (a trampoline's own syscall): if the log's
    /// next event is this call, buffered at record, fills the ring and sends the task back to the
    /// trampoline's start (true: the caller resumes it).
    pub(super) fn fill_ring(&mut self, vtid: u32, t: &Stopped, regs: &mut ft_interposer::Regs) -> Result<bool> {
        let proc = self.proc_of_vtid(vtid);
        if !isb::buffers(regs.nr()) || self.fills.contains_key(&proc) {
            return Ok(false);
        }
        // The log's next event first (in memory); the tracee's page list only then.
        let args = regs.args();
        let first = self.source.peek_event()?;
        let Some(Event { kind: Some(Kind::Syscall(s)) }) = first else { return Ok(false) };
        if !(s.buffered && s.task == vtid && u64::from(s.nr) == regs.nr() && s.args.first() == Some(&args[0])) {
            return Ok(false);
        }
        // The handler's fallback: the trampoline's own syscall, in a trampoline page.
        let ip = regs.ip();
        if !isb::pages(t)?.iter().any(|&p| (p..p + lsb::PAGE_LEN).contains(&ip)) {
            return Ok(false);
        }
        let base = self.source.position();
        let mut ring = Vec::new();
        let mut reads = Vec::new();
        let mut fill = Fill { used: 0, entries: Vec::new(), writes: Vec::new() };
        let mut ended = false;
        let mut events = 0usize;
        while let Some(ev) = self.source.peek_nth(events)? {
            match &ev.kind {
                // The reads after the drain's last call are the clock stub's to load: a stop
                // that logs nothing may separate them from the next drain's.
                Some(Kind::Clocks(c)) if c.task == vtid && !ended => {
                    let Some(more) = ft_libos::clock::decode(&c.reads) else { break };
                    if reads.len() + more.len() > ft_libos::clock::CAPACITY as usize {
                        break;
                    }
                    reads.extend(more);
                }
                Some(Kind::Syscall(s)) if s.buffered && s.task == vtid && !ended => {
                    let Some(entry) = entry_of(s) else { break };
                    let bytes = lsb::encode(&entry);
                    if ring.len() + bytes.len() > lsb::RING_LEN {
                        break;
                    }
                    let at = ring.len();
                    let index = base + events as u64;
                    if is_write(s.nr) {
                        fill.writes.push((at, entry.data.len(), s.input_digest.clone(), index));
                    }
                    ended = s.drain_end;
                    fill.entries.push((at as u32, index, ev.clone()));
                    ring.extend(bytes);
                }
                _ => break,
            }
            events += 1;
        }
        if fill.entries.is_empty() {
            return Ok(false);
        }
        if !reads.is_empty() {
            ft_interposer::clock::load(t, &ft_libos::clock::to_raw(&reads))?;
            self.refilled.insert(proc);
        }
        isb::fill(t, &ring)?;
        slog::debug!(self.log, "syscall buffer filled"; "task" => vtid, "calls" => fill.entries.len(), "clock reads" => reads.len());
        fill.used = ring.len() as u32;
        self.fills.insert(proc, fill);
        for _ in 0..events {
            self.source.next_event()?;
        }
        self.silent.insert(vtid, 0);
        let nr = regs.nr();
        regs.skip_with(0);
        regs.0.rax = nr;
        regs.0.rip = ip - isb::TRAMP_RESUME;
        t.set_regs(regs)?;
        Ok(true)
    }

    /// At a stop of a process with a filled ring: the program must have made every call the ring
    /// held, and each write must have sent what the recording sent.
    pub(super) fn check_ring(&mut self, proc: u32, t: &Stopped) -> Result<()> {
        let Some(fill) = self.fills.remove(&proc) else { return Ok(()) };
        let (served, used) = isb::served(t)?;
        if served < used || used != fill.used {
            let (index, ev) = match fill.entries.iter().find(|(at, _, _)| *at >= served) {
                Some((_, index, ev)) => (*index, ev),
                None => return Err(self.diverge(self.source.position(), "a buffered syscall".into(), "none".into())),
            };
            let now = t.regs().map(|r| format!("a syscall {} at {:#x}", r.nr() as i64, r.ip())).unwrap_or_default();
            return Err(self.diverge(
                index,
                describe::event(ev),
                format!("{now}, before the calls the syscall buffer held"),
            ));
        }
        if !fill.writes.is_empty() {
            let ring = isb::ring(t, used as usize)?;
            for (at, len, digest, index) in &fill.writes {
                let data = ring.get(at + lsb::ENTRY_HEADER..at + lsb::ENTRY_HEADER + len).unwrap_or_default();
                let got = if data.is_empty() { Vec::new() } else { ft_libos::digest::short(data) };
                if &got != digest {
                    let expected = fill
                        .entries
                        .iter()
                        .find(|(_, i, _)| i == index)
                        .map_or("a buffered write".into(), |(_, _, ev)| describe::event(ev));
                    return Err(self.diverge(*index, expected, "the same write with different data".into()));
                }
            }
        }
        Ok(())
    }

    fn proc_of_vtid(&self, vtid: u32) -> u32 {
        self.tasks.get(&vtid).map(|t| t.proc).unwrap_or(0)
    }
}

fn is_write(nr: u32) -> bool {
    lookup(u64::from(nr)).is_some_and(|sp| sp.copy_sends())
}

/// The ring entry that serves a buffered syscall event: a read's bytes, or room for a write's.
fn entry_of(s: &Syscall) -> Option<Entry> {
    let mut args = [0u64; 6];
    for (a, v) in args.iter_mut().zip(&s.args) {
        *a = *v;
    }
    let data = if is_write(s.nr) {
        if s.input_len > lsb::MAX_DATA {
            return None;
        }
        vec![0u8; s.input_len as usize]
    } else {
        let at = lookup(u64::from(s.nr)).map_or(1, |sp| sp.out_arg());
        match s.mem.as_slice() {
            [] => Vec::new(),
            [m] if m.addr == args[at] => m.data.clone(),
            _ => return None,
        }
    };
    Some(Entry { nr: s.nr, args, ret: s.ret, clocks: 0, data })
}
