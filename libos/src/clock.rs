//! The clock page: clock reads that need no ptrace stop.
//!
//! A program reads the time through the vDSO, without a syscall, often tens of times per request
//! (redis measures every command). Hiding the vDSO turns each read into a traced syscall, one
//! ptrace stop (~15 µs) each. Instead, ftexec points the vDSO's clock functions at a small stub
//! it maps into the tracee at a fixed address ([`CODE_ADDR`]). At record the stub makes the real
//! syscall from one instruction the seccomp filter lets through and appends the result to a
//! buffer in the data page ([`DATA_ADDR`]); the tracer drains the buffer at the task's next stop
//! and logs it (a `Clocks` event). At replay the stub returns the logged results from the buffer;
//! when it finds the buffer empty it makes the same syscall traced, and the replayer refills the
//! buffer from the next `Clocks` event and lets the stub retry. So a record costs no stop per
//! read, and a replay one stop per run of reads between two other stops.
//!
//! This module is the layout both sides share (the stub itself is in ft-interposer).

/// Where the stub's code is mapped (read + execute): the clock stub, then the syscall
/// buffer's handler (see [`crate::sysbuf`]).
pub const CODE_ADDR: u64 = 0x7ff0_0000_0000;
pub const CODE_LEN: u64 = 0x2000;
/// Where its data page is mapped (read + write): a header, then the entries.
pub const DATA_ADDR: u64 = CODE_ADDR + CODE_LEN;
pub const DATA_LEN: u64 = 0x10000;

/// Header fields (u32 each), offsets in the data page.
pub const MODE: usize = 0;
pub const COUNT: usize = 4;
pub const POS: usize = 8;
pub const CAP: usize = 12;
/// Set by the replayer when it refilled the buffer at the stub's traced syscall: the stub then
/// clears it and retries instead of returning that syscall's result.
pub const REFILLED: usize = 16;
pub const HEADER_LEN: usize = 64;
pub const ENTRY_LEN: usize = 32;
pub const CAPACITY: u32 = ((DATA_LEN as usize - HEADER_LEN) / ENTRY_LEN) as u32;

pub const MODE_RECORD: u32 = 1;
pub const MODE_REPLAY: u32 = 2;

/// The syscalls the stub buffers (other vDSO functions go through a traced syscall).
pub const BUFFERED: [u64; 3] = [libc::SYS_clock_gettime as u64, libc::SYS_gettimeofday as u64, libc::SYS_time as u64];

/// Which function an entry records (the entry's first u32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Func {
    /// clock_gettime(arg, ts): (a, b) = (tv_sec, tv_nsec).
    ClockGettime = 0,
    /// gettimeofday(tv, NULL): (a, b) = (tv_sec, tv_usec).
    Gettimeofday = 1,
    /// time(t): the result is `ret`.
    Time = 2,
}

/// One buffered clock read: u32 func, i32 arg, i64 ret, i64 a, i64 b (little endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Read {
    pub func: u32,
    pub arg: i32,
    pub ret: i64,
    pub a: i64,
    pub b: i64,
}

impl Read {
    pub fn name(&self) -> &'static str {
        match self.func {
            0 => "clock_gettime",
            1 => "gettimeofday",
            2 => "time",
            _ => "unknown",
        }
    }
}

/// The reads of a `Clocks` event: packed (see [`pack`]); None if the bytes are damaged.
pub fn decode(bytes: &[u8]) -> Option<Vec<Read>> {
    unpack(bytes)
}

/// Packs buffer entries (raw, [`ENTRY_LEN`] bytes each) for the log: per read, varints of the
/// function, the clock id, the result, and the two values as differences from the previous
/// read's (zigzag). Consecutive reads of one clock differ by little, so a read takes ~6 bytes
/// instead of 32. None if `raw` is not whole entries.
pub fn pack(raw: &[u8]) -> Option<Vec<u8>> {
    let reads = decode_raw(raw)?;
    let mut out = Vec::with_capacity(reads.len() * 8);
    let (mut pa, mut pb) = (0i64, 0i64);
    for r in reads {
        put_varint(&mut out, u64::from(r.func));
        put_varint(&mut out, zigzag(i64::from(r.arg)));
        put_varint(&mut out, zigzag(r.ret));
        put_varint(&mut out, zigzag(r.a.wrapping_sub(pa)));
        put_varint(&mut out, zigzag(r.b.wrapping_sub(pb)));
        (pa, pb) = (r.a, r.b);
    }
    Some(out)
}

/// The reads of [`pack`]ed bytes; None if they are damaged.
pub fn unpack(mut bytes: &[u8]) -> Option<Vec<Read>> {
    let mut reads = Vec::new();
    let (mut pa, mut pb) = (0i64, 0i64);
    while !bytes.is_empty() {
        let func = u32::try_from(get_varint(&mut bytes)?).ok()?;
        let arg = i32::try_from(unzigzag(get_varint(&mut bytes)?)).ok()?;
        let ret = unzigzag(get_varint(&mut bytes)?);
        let a = pa.wrapping_add(unzigzag(get_varint(&mut bytes)?));
        let b = pb.wrapping_add(unzigzag(get_varint(&mut bytes)?));
        (pa, pb) = (a, b);
        reads.push(Read { func, arg, ret, a, b });
    }
    Some(reads)
}

/// Raw buffer entries of reads (what the replayer loads into the page).
pub fn to_raw(reads: &[Read]) -> Vec<u8> {
    let mut out = Vec::with_capacity(reads.len() * ENTRY_LEN);
    for r in reads {
        out.extend_from_slice(&r.func.to_le_bytes());
        out.extend_from_slice(&r.arg.to_le_bytes());
        out.extend_from_slice(&r.ret.to_le_bytes());
        out.extend_from_slice(&r.a.to_le_bytes());
        out.extend_from_slice(&r.b.to_le_bytes());
    }
    out
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Raw buffer entries, as the stub writes them; None if the bytes are not whole entries.
pub fn decode_raw(bytes: &[u8]) -> Option<Vec<Read>> {
    if !bytes.len().is_multiple_of(ENTRY_LEN) {
        return None;
    }
    let u32_at = |e: &[u8], o: usize| u32::from_le_bytes([e[o], e[o + 1], e[o + 2], e[o + 3]]);
    let i64_at = |e: &[u8], o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&e[o..o + 8]);
        i64::from_le_bytes(b)
    };
    Some(
        bytes
            .chunks_exact(ENTRY_LEN)
            .map(|e| Read {
                func: u32_at(e, 0),
                arg: u32_at(e, 4) as i32,
                ret: i64_at(e, 8),
                a: i64_at(e, 16),
                b: i64_at(e, 24),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trips_and_is_small() {
        let reads: Vec<Read> = (0..1000)
            .map(|i| Read { func: 0, arg: 1, ret: 0, a: 14_000 + i / 400, b: (i * 2_500_017) % 1_000_000_000 })
            .chain([
                Read { func: 2, arg: 0, ret: 1_795_336_652, a: 0, b: 0 },
                Read { func: 1, arg: 0, ret: -14, a: 0, b: 0 },
            ])
            .collect();
        let raw = to_raw(&reads);
        let packed = pack(&raw).expect("whole entries");
        assert_eq!(unpack(&packed).expect("unpacks"), reads);
        assert!(packed.len() * 3 < raw.len(), "{} packed bytes for {} raw", packed.len(), raw.len());
        assert_eq!(unpack(&packed[..packed.len() - 1]), None);
        assert_eq!(pack(&raw[..31]), None);
    }

    #[test]
    fn decodes_entries() {
        let mut b = Vec::new();
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&1i32.to_le_bytes());
        b.extend_from_slice(&0i64.to_le_bytes());
        b.extend_from_slice(&12i64.to_le_bytes());
        b.extend_from_slice(&345i64.to_le_bytes());
        let r = decode_raw(&b).expect("one entry");
        assert_eq!(r, vec![Read { func: 0, arg: 1, ret: 0, a: 12, b: 345 }]);
        assert_eq!(r[0].name(), "clock_gettime");
        assert!(decode_raw(&b[..31]).is_none());
        assert_eq!(to_raw(&r), b);
        assert_eq!(CAPACITY, 2046);
    }
}
