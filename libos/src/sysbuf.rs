//! The syscall buffer: the hot socket syscalls of an event loop recorded without a ptrace stop.
//!
//! The clock page's pattern, extended to the table's `Exec::Copy` syscalls (read, recvfrom,
//! write, sendto, epoll_wait, epoll_pwait). At the first traced stop of such a syscall at a
//! site whose next instructions can be moved, the recorder rewrites the site into a jump to a
//! trampoline in ftexec's code region, which calls a handler there ([`crate::clock::CODE_ADDR`]).
//! At record the handler makes the syscall itself, in a form that cannot block, from the one
//! instruction the seccomp filter lets through, and appends an entry (the program's arguments,
//! the result and the bytes the kernel wrote or the program sent) to a ring in the buffer region
//! ([`ADDR`]). The recorder drains the ring at the holder's next stop into ordinary `Syscall`
//! events (`buffered` set), interleaved with the clock reads they followed. Whatever the handler
//! does not handle (would block, ring full, an fd the recorder has not approved, a flag, any
//! error) it turns into the program's own syscall, traced as before. Replay rewrites the same
//! sites at the same events (`Patch`); when the handler finds its ring empty, the replayer fills
//! it with the rest of the recording's drain (the buffered syscalls the recorder drained at one
//! stop, and the clock reads between them) and the handler serves them without a stop, checking
//! each call against its entry and copying a write's bytes into the entry for the replayer to
//! check at the next stop.
//!
//! This module is the layout both sides share (the handler is in ft-interposer).

use crate::clock;

/// The buffer region: a header page (header, then one byte per fd), then the ring.
pub const ADDR: u64 = clock::DATA_ADDR + clock::DATA_LEN;
pub const RING_OFFSET: usize = 0x1000;
pub const RING_LEN: usize = 1 << 20;
pub const LEN: u64 = (RING_OFFSET + RING_LEN) as u64;

/// Header fields (u32 each), offsets in the region.
/// [`MODE_OFF`], [`MODE_RECORD`] or [`MODE_REPLAY`].
pub const MODE: usize = 0;
/// Bytes of the ring in use (record).
pub const USED: usize = 4;
/// Nonzero: every call takes the traced path (another task waits to run, or a signal waits for
/// this one).
pub const PAUSE: usize = 8;
/// Replay: bytes of the ring the handler has served (the ring holds USED bytes).
pub const RPOS: usize = 12;
/// Per fd below [`FD_LIMIT`], what the handler may do with it ([`FD_RECV`] ...).
pub const FDS: usize = 64;
pub const FD_LIMIT: usize = 1024;

pub const MODE_OFF: u32 = 0;
pub const MODE_RECORD: u32 = 1;
pub const MODE_REPLAY: u32 = 2;

/// A socket whose reads the recorder answers from a copy (recv with MSG_DONTWAIT is the same).
pub const FD_RECV: u8 = 1;
/// A stream socket whose writes go out at once (nothing waits for a commit).
pub const FD_SEND: u8 = 2;
/// A stream socket whose writes wait for the commit of the log before them: the handler keeps
/// the bytes in the ring and the recorder queues them for release.
pub const FD_QUEUE: u8 = 4;
/// An epoll instance.
pub const FD_EPOLL: u8 = 8;

/// An entry: u32 nr, u32 length (this header and the data, a multiple of 8), the six argument
/// registers, i64 result, u32 clock reads made before it since the last drain, u32 data
/// length, then the data.
pub const ENTRY_HEADER: usize = 72;
pub const E_NR: usize = 0;
pub const E_LEN: usize = 4;
pub const E_ARGS: usize = 8;
pub const E_RET: usize = 56;
pub const E_CLOCKS: usize = 64;
pub const E_DATA_LEN: usize = 68;

/// Largest buffer a buffered call may name (larger ones are traced).
pub const MAX_DATA: u64 = 256 << 10;

/// Bytes of a site that the jump to its trampoline covers (`jmp rel32`).
pub const SITE_LEN: usize = 5;
/// A trampoline page (within 2 GiB of the sites it serves), and the size of one trampoline.
pub const PAGE_LEN: u64 = 0x10000;
pub const TRAMP_LEN: u64 = 64;
/// The trampoline pages of the process (u64 addresses, 0 for none), in the header: where a
/// recorder that takes over after a replay finds them.
pub const PAGES: usize = 0x800;
pub const MAX_PAGES: usize = 64;

/// One drained entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub nr: u32,
    pub args: [u64; 6],
    pub ret: i64,
    /// Clock reads the program made before this call since the previous drain.
    pub clocks: u32,
    pub data: Vec<u8>,
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// The entries of a drained ring; None if it is damaged (a length that does not fit).
pub fn parse(ring: &[u8]) -> Option<Vec<Entry>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < ring.len() {
        let e = ring.get(at..)?;
        let len = u32_at(e, E_LEN)? as usize;
        let data_len = u32_at(e, E_DATA_LEN)? as usize;
        if len < ENTRY_HEADER || !len.is_multiple_of(8) || len > e.len() || ENTRY_HEADER + data_len > len {
            return None;
        }
        let mut args = [0u64; 6];
        for (i, a) in args.iter_mut().enumerate() {
            *a = u64_at(e, E_ARGS + 8 * i)?;
        }
        out.push(Entry {
            nr: u32_at(e, E_NR)?,
            args,
            ret: u64_at(e, E_RET)? as i64,
            clocks: u32_at(e, E_CLOCKS)?,
            data: e.get(ENTRY_HEADER..ENTRY_HEADER + data_len)?.to_vec(),
        });
        at += len;
    }
    Some(out)
}

/// Builds an entry as the handler writes it (tests and ftdbg).
pub fn encode(e: &Entry) -> Vec<u8> {
    let len = (ENTRY_HEADER + e.data.len()).div_ceil(8) * 8;
    let mut b = vec![0u8; len];
    b[E_NR..E_NR + 4].copy_from_slice(&e.nr.to_le_bytes());
    b[E_LEN..E_LEN + 4].copy_from_slice(&(len as u32).to_le_bytes());
    for (i, a) in e.args.iter().enumerate() {
        b[E_ARGS + 8 * i..E_ARGS + 8 * i + 8].copy_from_slice(&a.to_le_bytes());
    }
    b[E_RET..E_RET + 8].copy_from_slice(&e.ret.to_le_bytes());
    b[E_CLOCKS..E_CLOCKS + 4].copy_from_slice(&e.clocks.to_le_bytes());
    b[E_DATA_LEN..E_DATA_LEN + 4].copy_from_slice(&(e.data.len() as u32).to_le_bytes());
    b[ENTRY_HEADER..ENTRY_HEADER + e.data.len()].copy_from_slice(&e.data);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_damage_is_refused() {
        let a = Entry { nr: 0, args: [5, 0x1000, 64, 0, 0, 0], ret: 3, clocks: 2, data: b"abc".to_vec() };
        let b = Entry { nr: 232, args: [4, 0x2000, 16, 1000, 0, 0], ret: 0, clocks: 0, data: Vec::new() };
        let mut ring = encode(&a);
        assert_eq!(ring.len(), 80);
        ring.extend(encode(&b));
        assert_eq!(parse(&ring), Some(vec![a, b]));
        ring[E_LEN] = 7;
        assert_eq!(parse(&ring), None);
        assert_eq!(parse(&[0u8; 10]), None);
    }

    #[test]
    fn region_follows_the_clock_page() {
        assert_eq!(ADDR, clock::DATA_ADDR + clock::DATA_LEN);
        assert!(FDS + FD_LIMIT <= PAGES);
        assert!(PAGES + 8 * MAX_PAGES <= RING_OFFSET);
    }
}
