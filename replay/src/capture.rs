//! Turning the table's declarations into concrete tracee memory: the regions a syscall wrote
//! (read at its exit stop) and the input bytes it consumes (read at its seccomp stop).

use ft_interposer::{Result, Stopped};
use ft_libos::proto::MemWrite;
use ft_libos::table::{Input, Len, Write};

/// Largest single region captured; a larger request is a program bug, clipped for sanity.
const MAX_REGION: u64 = 64 << 20;
const IOV_MAX: u64 = 1024;

fn word(t: &Stopped, addr: u64) -> Result<u64> {
    let b = t.read(addr, 8)?;
    Ok(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
}

fn u32_at(t: &Stopped, addr: u64) -> Result<u32> {
    let b = t.read(addr, 4)?;
    Ok(u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
}

/// The (addr, len) pairs of an iovec array, following `total` bytes (None: the whole array).
fn iovecs(t: &Stopped, iov: u64, cnt: u64, mut total: Option<u64>) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    if iov == 0 {
        return Ok(out);
    }
    for i in 0..cnt.min(IOV_MAX) {
        if total == Some(0) {
            break;
        }
        let base = word(t, iov + i * 16)?;
        let mut len = word(t, iov + i * 16 + 8)?.min(MAX_REGION);
        if let Some(left) = total.as_mut() {
            len = len.min(*left);
            *left -= len;
        }
        if len > 0 && base != 0 {
            out.push((base, len));
        }
    }
    Ok(out)
}

/// A struct msghdr at `msg` after a recvmsg that returned `ret` bytes: the header itself (the
/// kernel updates msg_namelen, msg_controllen, msg_flags), the name, the data, the control bytes.
fn msghdr(t: &Stopped, msg: u64, ret: u64, out: &mut Vec<(u64, u64)>) -> Result<()> {
    out.push((msg, 56));
    let name = word(t, msg)?;
    let namelen = u64::from(u32_at(t, msg + 8)?);
    if name != 0 && namelen > 0 {
        out.push((name, namelen.min(128)));
    }
    let iov = word(t, msg + 16)?;
    let iovlen = word(t, msg + 24)?;
    out.extend(iovecs(t, iov, iovlen, Some(ret))?);
    let control = word(t, msg + 32)?;
    let controllen = word(t, msg + 40)?;
    if control != 0 && controllen > 0 {
        out.push((control, controllen.min(MAX_REGION)));
    }
    Ok(())
}

/// Whether the struct msghdr at `msg` names no destination and carries no control data (a
/// sendmsg that only sends bytes).
pub fn plain_msghdr(t: &Stopped, msg: u64) -> bool {
    let Ok(h) = t.read(msg, 48) else { return false };
    let word = |i: usize| h.get(i..i + 8).and_then(|w| w.try_into().ok()).map_or(u64::MAX, u64::from_le_bytes);
    let namelen = h.get(8..12).and_then(|w| w.try_into().ok()).map_or(u32::MAX, u32::from_le_bytes);
    (word(0) == 0 || namelen == 0) && word(40) == 0
}

/// The bytes a write-like syscall hands to the kernel (`Input::Buf`, `Input::Iov` or the iovecs
/// of `Input::Msghdr`), only if
/// every byte is readable and the request is of a sane size; None otherwise (the tracee then
/// makes the syscall itself and the kernel decides: EFAULT, EINVAL, a partial write).
pub fn input_exact(t: &Stopped, input: Input, args: &[u64; 6]) -> Result<Option<Vec<u8>>> {
    let mut parts = Vec::new();
    match input {
        Input::Buf(p, l) => parts.push((args[p as usize], args[l as usize])),
        Input::Iov(..) | Input::Msghdr(_) => {
            let (iov, cnt) = match input {
                // struct msghdr: msg_iov at +16, msg_iovlen at +24.
                Input::Msghdr(p) => match (word(t, args[p as usize] + 16), word(t, args[p as usize] + 24)) {
                    (Ok(iov), Ok(n)) => (iov, n),
                    (Err(e), _) | (_, Err(e)) if e.is_gone() => return Err(e),
                    _ => return Ok(None),
                },
                Input::Iov(p, c) => (args[p as usize], args[c as usize]),
                _ => (0, 0),
            };
            if cnt > IOV_MAX || (iov == 0 && cnt > 0) {
                return Ok(None);
            }
            for i in 0..cnt {
                let entry = word(t, iov + i * 16).and_then(|base| Ok((base, word(t, iov + i * 16 + 8)?)));
                let (base, len) = match entry {
                    Ok(e) => e,
                    Err(e) if e.is_gone() => return Err(e),
                    Err(_) => return Ok(None),
                };
                // The kernel would fail (EFAULT, EINVAL) or stop short here: let it.
                if len > MAX_REGION || (base == 0 && len > 0) {
                    return Ok(None);
                }
                if len > 0 {
                    parts.push((base, len));
                }
            }
        }
        _ => return Ok(None),
    }
    if parts.iter().map(|(_, l)| *l).sum::<u64>() > MAX_REGION {
        return Ok(None);
    }
    let mut out = Vec::new();
    for (addr, len) in parts {
        let start = out.len();
        out.resize(start + len as usize, 0);
        match t.read_some(addr, &mut out[start..]) {
            Ok(n) if n as u64 == len => {}
            Ok(_) => return Ok(None),
            Err(e) if e.is_gone() => return Err(e),
            Err(_) => return Ok(None),
        }
    }
    Ok(Some(out))
}

/// The regions the kernel wrote for `writes`, given the arguments and the return value.
pub fn regions(t: &Stopped, writes: &[Write], args: &[u64; 6], ret: i64) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let nonneg = ret.max(0) as u64;
    for w in writes {
        let ptr = args[w.ptr as usize];
        if ptr == 0 {
            continue;
        }
        let a = |i: u8| args[i as usize];
        let len = match w.len {
            Len::Fixed(n) => u64::from(n),
            Len::Arg(i) => a(i),
            Len::Ret => nonneg,
            Len::RetTimes(k) => nonneg.saturating_mul(u64::from(k)),
            Len::ArgTimes(i, k) => a(i).saturating_mul(u64::from(k)),
            Len::DerefU32(i) => match a(i) {
                0 => 0,
                p => u64::from(u32_at(t, p).unwrap_or(0)),
            },
            Len::FdSet(i) => a(i).min(1 << 20).div_ceil(64) * 8,
            Len::Pages(i) => a(i).div_ceil(4096),
            Len::Ioctl => match ft_libos::ioctl::effect(a(1)) {
                ft_libos::ioctl::Effect::Writes(n) => u64::from(n),
                ft_libos::ioctl::Effect::IfConf => {
                    if ret == 0 {
                        // ifc_len, then ifc_len bytes at ifc_buf (if not NULL).
                        out.push((ptr, 4));
                        let len = u64::from(u32_at(t, ptr)?);
                        let buf = u64::from_le_bytes(t.read(ptr + 8, 8)?.try_into().unwrap_or_default());
                        if buf != 0 && len > 0 {
                            out.push((buf, len.min(MAX_REGION)));
                        }
                    }
                    continue;
                }
                ft_libos::ioctl::Effect::FdFlags | ft_libos::ioctl::Effect::StatusFlags => 0,
            },
            Len::Iov(cnt) => {
                if ret > 0 {
                    out.extend(iovecs(t, ptr, a(cnt), Some(nonneg))?);
                }
                continue;
            }
            Len::Msghdr => {
                if ret >= 0 {
                    msghdr(t, ptr, nonneg, &mut out)?;
                }
                continue;
            }
            Len::Mmsghdr => {
                for i in 0..nonneg.min(IOV_MAX) {
                    let m = ptr + i * 64;
                    let got = u64::from(u32_at(t, m + 56)?);
                    msghdr(t, m, got, &mut out)?;
                    out.push((m + 56, 4));
                }
                continue;
            }
        };
        if len > 0 {
            out.push((ptr, len.min(MAX_REGION)));
        }
    }
    Ok(out)
}

/// Reads the regions; a region the tracee cannot access (the kernel would have failed with
/// EFAULT) is skipped.
pub fn read_regions(t: &Stopped, regions: &[(u64, u64)]) -> Result<Vec<MemWrite>> {
    let mut out = Vec::with_capacity(regions.len());
    for &(addr, len) in regions {
        let mut data = vec![0u8; len as usize];
        match t.read_some(addr, &mut data) {
            Ok(n) => {
                data.truncate(n);
                if n > 0 {
                    out.push(MemWrite { addr, data });
                }
            }
            Err(e) if e.is_gone() => return Err(e),
            Err(_) => {}
        }
    }
    Ok(out)
}

/// Digest of what a syscall wrote (for Execute events).
pub fn digest_writes(mem: &[MemWrite]) -> Vec<u8> {
    if mem.is_empty() {
        return Vec::new();
    }
    let mut all = Vec::new();
    for m in mem {
        all.extend_from_slice(&m.addr.to_le_bytes());
        all.extend_from_slice(&m.data);
    }
    ft_libos::digest::short(&all)
}

/// The input bytes a syscall consumes, per the table (paths, written data). Unreadable input
/// yields what could be read: the kernel will fail the syscall with EFAULT the same way.
pub fn input(t: &Stopped, input: Input, args: &[u64; 6]) -> Result<Vec<u8>> {
    let path = |i: u8| -> Result<Vec<u8>> {
        match args[i as usize] {
            0 => Ok(Vec::new()),
            p => match t.read_cstr(p, 4096) {
                Ok(v) => Ok(v),
                Err(e) if e.is_gone() => Err(e),
                Err(_) => Ok(Vec::new()),
            },
        }
    };
    let buf = |addr: u64, len: u64| -> Result<Vec<u8>> {
        let mut data = vec![0u8; len.min(MAX_REGION) as usize];
        match t.read_some(addr, &mut data) {
            Ok(n) => data.truncate(n),
            Err(e) if e.is_gone() => return Err(e),
            Err(_) => data.clear(),
        }
        Ok(data)
    };
    match input {
        Input::None => Ok(Vec::new()),
        Input::Path(i) => path(i),
        Input::Paths(i, j) => {
            let mut v = path(i)?;
            v.push(0);
            v.extend(path(j)?);
            Ok(v)
        }
        Input::Buf(p, l) => buf(args[p as usize], args[l as usize]),
        Input::Iov(p, c) => {
            let mut v = Vec::new();
            for (a, l) in iovecs(t, args[p as usize], args[c as usize], None).unwrap_or_default() {
                v.extend(buf(a, l)?);
            }
            Ok(v)
        }
        Input::Msghdr(p) => {
            let msg = args[p as usize];
            let mut v = Vec::new();
            if let (Ok(iov), Ok(n)) = (word(t, msg + 16), word(t, msg + 24)) {
                for (a, l) in iovecs(t, iov, n, None).unwrap_or_default() {
                    v.extend(buf(a, l)?);
                }
            }
            Ok(v)
        }
    }
}
