//! Decoding of log events into strace-like text and JSON.
//!
//! The syscall table (`ft_libos::table`) says what ftexec does with a syscall and, for the
//! syscalls that ordinary programs make, the types of its arguments (`Spec::args`), how its result
//! reads (`Spec::returns`) and where a clock read puts the time (`Spec::now`). A syscall whose
//! entry declares no argument types is shown with the arguments replay checks
//! (`ft_replay::describe::call`).

use ft_libos::clock;
use ft_libos::proto::{event::Kind, Clocks, Disposition, Event, FdKind, Syscall};
use ft_libos::table::{self, Arg, Class, Input, Now, Returns};
use serde_json::{json, Value};

/// How long a decoded byte string may get before it is cut (strace's default is 32).
pub const STRING_LIMIT: usize = 40;
/// How many random bytes are shown as hex before "...".
const HEX_LIMIT: usize = 32;

use Arg::*;

/// A byte string as a C-style quoted literal, cut after `limit` bytes with "...".
pub fn escape(bytes: &[u8], limit: usize) -> String {
    let mut s = String::from("\"");
    for &b in bytes.iter().take(limit) {
        match b {
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\r' => s.push_str("\\r"),
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\\""),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s.push('"');
    if bytes.len() > limit {
        s.push_str("...");
    }
    s
}

fn hex_bytes(bytes: &[u8], limit: usize) -> String {
    let mut s: String = bytes.iter().take(limit).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > limit {
        s.push_str("...");
    }
    s
}

/// Symbolic names for the set bits of `v`; leftover bits in hex.
fn flags(v: u64, names: &[(u64, &str)]) -> String {
    let mut parts = Vec::new();
    let mut rest = v;
    for &(bit, name) in names {
        if bit != 0 && v & bit == bit {
            parts.push(name.to_string());
            rest &= !bit;
        }
    }
    if rest != 0 || parts.is_empty() {
        parts.push(format!("{rest:#x}"));
    }
    parts.join("|")
}

fn open_flags(v: u64) -> String {
    let acc = match v & 3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    };
    // O_TMPFILE includes O_DIRECTORY; check it first.
    const NAMES: &[(u64, &str)] = &[
        (libc::O_TMPFILE as u64, "O_TMPFILE"),
        (libc::O_CREAT as u64, "O_CREAT"),
        (libc::O_EXCL as u64, "O_EXCL"),
        (libc::O_NOCTTY as u64, "O_NOCTTY"),
        (libc::O_TRUNC as u64, "O_TRUNC"),
        (libc::O_APPEND as u64, "O_APPEND"),
        (libc::O_NONBLOCK as u64, "O_NONBLOCK"),
        (libc::O_DSYNC as u64, "O_DSYNC"),
        (libc::O_DIRECT as u64, "O_DIRECT"),
        (libc::O_LARGEFILE as u64, "O_LARGEFILE"),
        (libc::O_DIRECTORY as u64, "O_DIRECTORY"),
        (libc::O_NOFOLLOW as u64, "O_NOFOLLOW"),
        (libc::O_NOATIME as u64, "O_NOATIME"),
        (libc::O_CLOEXEC as u64, "O_CLOEXEC"),
        (libc::O_PATH as u64, "O_PATH"),
        (libc::O_SYNC as u64, "O_SYNC"),
    ];
    let rest = v & !3;
    if rest == 0 {
        acc.to_string()
    } else {
        format!("{acc}|{}", flags(rest, NAMES))
    }
}

fn prot(v: u64) -> String {
    if v == 0 {
        return "PROT_NONE".into();
    }
    flags(
        v,
        &[
            (libc::PROT_READ as u64, "PROT_READ"),
            (libc::PROT_WRITE as u64, "PROT_WRITE"),
            (libc::PROT_EXEC as u64, "PROT_EXEC"),
        ],
    )
}

fn map_flags(v: u64) -> String {
    let kind = match v & 3 {
        1 => "MAP_SHARED",
        2 => "MAP_PRIVATE",
        3 => "MAP_SHARED_VALIDATE",
        _ => "0",
    };
    let rest = v & !3;
    if rest == 0 {
        return kind.to_string();
    }
    let names: &[(u64, &str)] = &[
        (libc::MAP_FIXED as u64, "MAP_FIXED"),
        (libc::MAP_ANONYMOUS as u64, "MAP_ANONYMOUS"),
        (libc::MAP_GROWSDOWN as u64, "MAP_GROWSDOWN"),
        (libc::MAP_DENYWRITE as u64, "MAP_DENYWRITE"),
        (libc::MAP_EXECUTABLE as u64, "MAP_EXECUTABLE"),
        (libc::MAP_LOCKED as u64, "MAP_LOCKED"),
        (libc::MAP_NORESERVE as u64, "MAP_NORESERVE"),
        (libc::MAP_POPULATE as u64, "MAP_POPULATE"),
        (libc::MAP_NONBLOCK as u64, "MAP_NONBLOCK"),
        (libc::MAP_STACK as u64, "MAP_STACK"),
        (libc::MAP_HUGETLB as u64, "MAP_HUGETLB"),
        (libc::MAP_FIXED_NOREPLACE as u64, "MAP_FIXED_NOREPLACE"),
    ];
    format!("{kind}|{}", flags(rest, names))
}

fn at_flags(v: u64) -> String {
    if v == 0 {
        return "0".into();
    }
    flags(
        v,
        &[
            (libc::AT_SYMLINK_NOFOLLOW as u64, "AT_SYMLINK_NOFOLLOW"),
            (libc::AT_REMOVEDIR as u64, "AT_REMOVEDIR"),
            (libc::AT_SYMLINK_FOLLOW as u64, "AT_SYMLINK_FOLLOW"),
            (libc::AT_NO_AUTOMOUNT as u64, "AT_NO_AUTOMOUNT"),
            (libc::AT_EMPTY_PATH as u64, "AT_EMPTY_PATH"),
            (libc::AT_EACCESS as u64, "AT_EACCESS"),
        ],
    )
}

fn access_mode(v: u64) -> String {
    if v == 0 {
        return "F_OK".into();
    }
    flags(v, &[(libc::R_OK as u64, "R_OK"), (libc::W_OK as u64, "W_OK"), (libc::X_OK as u64, "X_OK")])
}

fn clock_id(v: u64) -> String {
    let name = match v as i32 {
        libc::CLOCK_REALTIME => "CLOCK_REALTIME",
        libc::CLOCK_MONOTONIC => "CLOCK_MONOTONIC",
        libc::CLOCK_PROCESS_CPUTIME_ID => "CLOCK_PROCESS_CPUTIME_ID",
        libc::CLOCK_THREAD_CPUTIME_ID => "CLOCK_THREAD_CPUTIME_ID",
        libc::CLOCK_MONOTONIC_RAW => "CLOCK_MONOTONIC_RAW",
        libc::CLOCK_REALTIME_COARSE => "CLOCK_REALTIME_COARSE",
        libc::CLOCK_MONOTONIC_COARSE => "CLOCK_MONOTONIC_COARSE",
        libc::CLOCK_BOOTTIME => "CLOCK_BOOTTIME",
        libc::CLOCK_REALTIME_ALARM => "CLOCK_REALTIME_ALARM",
        libc::CLOCK_BOOTTIME_ALARM => "CLOCK_BOOTTIME_ALARM",
        libc::CLOCK_TAI => "CLOCK_TAI",
        _ => return int(v),
    };
    name.into()
}

fn whence(v: u64) -> String {
    match v as i32 {
        libc::SEEK_SET => "SEEK_SET".into(),
        libc::SEEK_CUR => "SEEK_CUR".into(),
        libc::SEEK_END => "SEEK_END".into(),
        libc::SEEK_DATA => "SEEK_DATA".into(),
        libc::SEEK_HOLE => "SEEK_HOLE".into(),
        _ => int(v),
    }
}

fn fcntl_cmd(v: u64) -> String {
    match v as i32 {
        libc::F_DUPFD => "F_DUPFD".into(),
        libc::F_GETFD => "F_GETFD".into(),
        libc::F_SETFD => "F_SETFD".into(),
        libc::F_GETFL => "F_GETFL".into(),
        libc::F_SETFL => "F_SETFL".into(),
        libc::F_GETLK => "F_GETLK".into(),
        libc::F_SETLK => "F_SETLK".into(),
        libc::F_SETLKW => "F_SETLKW".into(),
        libc::F_DUPFD_CLOEXEC => "F_DUPFD_CLOEXEC".into(),
        libc::F_OFD_GETLK => "F_OFD_GETLK".into(),
        libc::F_OFD_SETLK => "F_OFD_SETLK".into(),
        libc::F_OFD_SETLKW => "F_OFD_SETLKW".into(),
        _ => int(v),
    }
}

fn resource(v: u64) -> String {
    u32::try_from(v).ok().and_then(ft_libos::process::limit_name).map_or_else(|| int(v), String::from)
}

fn sock_domain(v: u64) -> String {
    match v as i32 {
        libc::AF_UNIX => "AF_UNIX".into(),
        libc::AF_INET => "AF_INET".into(),
        libc::AF_INET6 => "AF_INET6".into(),
        libc::AF_NETLINK => "AF_NETLINK".into(),
        _ => int(v),
    }
}

fn sock_type(v: u64) -> String {
    let base = match (v & 0xf) as i32 {
        libc::SOCK_STREAM => "SOCK_STREAM".to_string(),
        libc::SOCK_DGRAM => "SOCK_DGRAM".to_string(),
        libc::SOCK_RAW => "SOCK_RAW".to_string(),
        libc::SOCK_SEQPACKET => "SOCK_SEQPACKET".to_string(),
        _ => format!("{}", v & 0xf),
    };
    let rest = v & !0xf;
    if rest == 0 {
        base
    } else {
        let names = &[(libc::SOCK_NONBLOCK as u64, "SOCK_NONBLOCK"), (libc::SOCK_CLOEXEC as u64, "SOCK_CLOEXEC")];
        format!("{base}|{}", flags(rest, names))
    }
}

/// The name of a signal number (SIGINT), or the number.
pub fn signal_name(signo: i32) -> String {
    ft_libos::signal::name(signo).unwrap_or_else(|| signo.to_string())
}

/// The symbolic name of an errno value (ENOENT), if it has one.
pub fn errno_name(e: i32) -> Option<String> {
    let err = nix::errno::Errno::from_raw(e);
    if err == nix::errno::Errno::UnknownErrno {
        None
    } else {
        Some(format!("{err:?}"))
    }
}

fn int(v: u64) -> String {
    (v as i64).to_string()
}

fn ptr(v: u64) -> String {
    if v == 0 {
        "NULL".into()
    } else {
        format!("{v:#x}")
    }
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8).and_then(|s| s.try_into().ok()).map(u64::from_le_bytes)
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).and_then(|s| s.try_into().ok()).map(u32::from_le_bytes)
}

fn cstr(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(n) => &b[..n],
        None => b,
    }
}

/// The bytes the kernel wrote at `addr` during this syscall, when the log holds them.
fn mem_at(s: &Syscall, addr: u64) -> Option<&[u8]> {
    if addr == 0 {
        return None;
    }
    s.mem.iter().find(|m| m.addr == addr).map(|m| &m.data[..])
}

fn timespec(b: &[u8], sub: &str) -> Option<String> {
    Some(format!("{{tv_sec={}, {sub}={}}}", le_u64(b, 0)? as i64, le_u64(b, 8)? as i64))
}

fn file_mode(m: u32) -> String {
    let kind = match m & libc::S_IFMT {
        libc::S_IFREG => "S_IFREG",
        libc::S_IFDIR => "S_IFDIR",
        libc::S_IFLNK => "S_IFLNK",
        libc::S_IFCHR => "S_IFCHR",
        libc::S_IFBLK => "S_IFBLK",
        libc::S_IFIFO => "S_IFIFO",
        libc::S_IFSOCK => "S_IFSOCK",
        _ => "0",
    };
    format!("{kind}|{:04o}", m & 0o7777)
}

fn stat(b: &[u8]) -> Option<String> {
    // struct stat on x86-64: st_dev 0, st_ino 8, st_nlink 16, st_mode 24, st_uid 28, st_gid 32,
    // st_rdev 40, st_size 48, st_blksize 56, st_blocks 64, st_mtime 88.
    Some(format!(
        "{{st_mode={}, st_size={}, st_ino={}, st_mtime={}}}",
        file_mode(le_u32(b, 24)?),
        le_u64(b, 48)? as i64,
        le_u64(b, 8)?,
        le_u64(b, 88)? as i64
    ))
}

fn rlim(v: u64) -> String {
    if v == u64::MAX {
        "RLIM_INFINITY".into()
    } else {
        v.to_string()
    }
}

fn utsname(b: &[u8]) -> Option<String> {
    let field = |i: usize| b.get(i * 65..(i + 1) * 65).map(|f| escape(cstr(f), STRING_LIMIT));
    Some(format!("{{sysname={}, nodename={}, release={}, machine={}}}", field(0)?, field(1)?, field(2)?, field(4)?))
}

/// One argument, decoded.
fn decode_arg(s: &Syscall, t: Arg, v: u64, path: Option<&[u8]>) -> String {
    let out = |f: &dyn Fn(&[u8]) -> Option<String>| mem_at(s, v).and_then(f).unwrap_or_else(|| ptr(v));
    match t {
        Fd | Int => int(v as i32 as u64),
        DirFd if v as i32 == libc::AT_FDCWD => "AT_FDCWD".into(),
        DirFd => int(v as i32 as u64),
        Uint => v.to_string(),
        Hex => format!("{v:#x}"),
        Ptr => ptr(v),
        Path => match path {
            Some(p) => escape(p, 4096),
            // The recorder logs the path of every syscall whose table entry names one; none
            // logged means it was empty (fstatat(fd, "", AT_EMPTY_PATH)).
            None if v != 0 && names_path(s) => "\"\"".into(),
            None => ptr(v),
        },
        InBuf if s.stdio_fd != 0 && !s.stdio.is_empty() => escape(&s.stdio, STRING_LIMIT),
        InBuf => ptr(v),
        OutBuf => out(&|b| Some(escape(b, STRING_LIMIT))),
        OutStr => out(&|b| Some(escape(cstr(b), STRING_LIMIT))),
        OpenFlags => open_flags(v),
        Mode if v & 0o7777 == 0 => "0".into(),
        Mode => format!("0{:03o}", v & 0o7777),
        Prot => prot(v),
        MapFlags => map_flags(v),
        ClockId => clock_id(v),
        Whence => whence(v),
        AtFlags => at_flags(v),
        AccessMode => access_mode(v),
        FcntlCmd => fcntl_cmd(v),
        Signal => signal_name(v as i32),
        Timespec => out(&|b| timespec(b, "tv_nsec")),
        Timeval => out(&|b| timespec(b, "tv_usec")),
        TimePtr => out(&|b| le_u64(b, 0).map(|t| format!("[{}]", t as i64))),
        Random => out(&|b| Some(hex_bytes(b, HEX_LIMIT))),
        Stat => out(&stat),
        FdPair => out(&|b| Some(format!("[{}, {}]", le_u32(b, 0)? as i32, le_u32(b, 4)? as i32))),
        Rlimit => out(&|b| Some(format!("{{rlim_cur={}, rlim_max={}}}", rlim(le_u64(b, 0)?), rlim(le_u64(b, 8)?)))),
        Resource => resource(v),
        Utsname => out(&utsname),
        SockDomain => sock_domain(v),
        SockType => sock_type(v),
    }
}

/// Whether the table says the syscall's path argument(s) are logged.
fn names_path(s: &Syscall) -> bool {
    table::lookup(u64::from(s.nr)).is_some_and(|sp| matches!(sp.input, Input::Path(_) | Input::Paths(..)))
}

/// The path arguments recorded in `path_arg` (up to two, joined by a NUL).
pub fn paths(s: &Syscall) -> Vec<&[u8]> {
    if s.path_arg.is_empty() {
        // Logs from before path_arg existed still name the files of verified opens.
        if s.path.is_empty() {
            Vec::new()
        } else {
            vec![&s.path[..]]
        }
    } else {
        s.path_arg.split(|&b| b == 0).collect()
    }
}

/// The decoded arguments of a syscall, one string each.
pub fn args(s: &Syscall) -> Vec<String> {
    let reg = |i: usize| s.args.get(i).copied().unwrap_or(0);
    let Some(spec) = ft_libos::lookup(u64::from(s.nr)) else {
        return (0..6).map(|i| format!("{:#x}", reg(i))).collect();
    };
    if spec.args.is_empty() {
        // Without argument types, the arguments replay checks (the others as `_`).
        let last = (0..6).rev().find(|&i| spec.checks_arg(i)).map(|i| i + 1).unwrap_or(0);
        return (0..last).map(|i| if spec.checks_arg(i) { int(reg(i)) } else { "_".into() }).collect();
    }
    let paths = paths(s);
    let mut next_path = 0;
    spec.args
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let p = if t == Path {
                next_path += 1;
                paths.get(next_path - 1).copied()
            } else {
                None
            };
            decode_arg(s, t, reg(i), p)
        })
        .collect()
}

/// The result: `-1 ENOENT (No such file or directory)` for errors, hex for addresses.
pub fn result(s: &Syscall) -> String {
    if (-4095..0).contains(&s.ret) {
        let e = -s.ret as i32;
        if let Some(r) = ft_libos::signal::restart_name(e) {
            return format!("{r} (run again after a signal)");
        }
        return match errno_name(e) {
            Some(n) => format!("-1 {n} ({})", nix::errno::Errno::from_raw(e).desc()),
            None => format!("-1 errno {e}"),
        };
    }
    match ft_libos::lookup(u64::from(s.nr)).map(|spec| spec.returns) {
        Some(Returns::Addr) => format!("{:#x}", s.ret),
        Some(Returns::Number) | None => s.ret.to_string(),
    }
}

pub fn disposition_name(d: i32) -> String {
    match Disposition::try_from(d) {
        Ok(Disposition::Inject) => "inject".into(),
        Ok(Disposition::Execute) => "execute".into(),
        Ok(Disposition::Placeholder) => "placeholder".into(),
        Ok(Disposition::AnonMap) => "anonmap".into(),
        Ok(Disposition::ExecuteInject) => "execute-inject".into(),
        Err(_) => format!("disposition {d}"),
    }
}

pub fn fd_kind_name(k: i32) -> String {
    match FdKind::try_from(k) {
        Ok(FdKind::External) => "external".into(),
        Ok(FdKind::Data) => "data".into(),
        Ok(FdKind::Verified) => "verified".into(),
        Ok(FdKind::Private) => "private".into(),
        Ok(FdKind::Stdio) => "stdio".into(),
        Ok(FdKind::Directory) => "directory".into(),
        Err(_) => format!("kind {k}"),
    }
}

pub fn class_name(c: Class) -> &'static str {
    match c {
        Class::Deterministic => "Deterministic",
        Class::Local => "Local",
        Class::Recorded => "Recorded",
        Class::Output => "Output",
        Class::Emulated(_) => "Emulated",
        Class::Refused(_) => "Refused",
    }
}

/// `write(1, "hello\n", 6) = 6 <inject>` and the like, without index and task.
pub fn text(ev: &Event) -> String {
    match &ev.kind {
        Some(Kind::Syscall(s)) => {
            let name = table::name(u64::from(s.nr));
            let mut line =
                format!("{name}({}) = {} <{}>", args(s).join(", "), result(s), disposition_name(s.disposition));
            if !s.new_fds.is_empty() {
                let fds: Vec<String> = s
                    .new_fds
                    .iter()
                    .map(|f| format!("{}: {}{}", f.fd, fd_kind_name(f.kind), if f.cloexec { ", cloexec" } else { "" }))
                    .collect();
                line.push_str(&format!(" [fd {}]", fds.join("; fd ")));
            }
            if !s.path.is_empty() {
                if paths(s).first() == Some(&&s.path[..]) {
                    line.push_str(" [verified file]");
                } else {
                    line.push_str(&format!(" [verified file {}]", escape(&s.path, 4096)));
                }
            }
            line
        }
        Some(Kind::Rdtsc(r)) if r.rdtscp => format!("rdtscp at {:#x} = {} aux={}", r.ip, r.tsc, r.aux),
        Some(Kind::Rdtsc(r)) => format!("rdtsc at {:#x} = {}", r.ip, r.tsc),
        Some(Kind::Signal(g)) => format!(
            "--- {} ({}) ---",
            signal_name(g.signo),
            if g.synchronous {
                "synchronous fault".to_string()
            } else if g.at_syscall && g.grouped {
                "asynchronous, caught, delivered before the next syscall with the previous".to_string()
            } else if g.at_syscall {
                "asynchronous, caught, delivered before the next syscall".to_string()
            } else if g.at_exit && g.grouped {
                "delivered right after the previous one, on its handler's frame".to_string()
            } else if g.at_exit {
                let which = if g.silent == 0 {
                    "the last logged syscall".to_string()
                } else {
                    format!("unlogged syscall {} after it", g.silent)
                };
                format!("delivered at the exit of {which}, nr {}, rax {}", g.orig_rax, g.rax)
            } else {
                "asynchronous".to_string()
            }
        ),
        Some(Kind::Run(_)) => "--- runs (switch) ---".into(),
        Some(Kind::Spawn(sp)) => {
            format!("+++ creates {} {} +++", if sp.thread { "thread" } else { "process" }, sp.child)
        }
        Some(Kind::Exec(ex)) => format!(
            "+++ executes {} (blake3 {}) +++",
            String::from_utf8_lossy(&ex.exe_path),
            hex_bytes(&ex.exe_hash, 8)
        ),
        Some(Kind::Start(st)) => format!("start: sp={:#x} at_random={}", st.sp, hex_bytes(&st.at_random, 16)),
        Some(Kind::Exit(e)) if e.signal != 0 => format!("+++ killed by {} +++", signal_name(e.signal)),
        Some(Kind::Exit(e)) => format!("+++ exited with {} +++", e.code),
        Some(Kind::Clocks(c)) => clock_reads_text(c),
        Some(Kind::Preempt(p)) => format!(
            "--- preempted spinning at {:#x} ({}-instruction loop, state {}), {} ---",
            p.ip,
            p.steps,
            hex_bytes(&p.digest, 16),
            ft_replay::describe::preempt_outcome(p)
        ),
        Some(Kind::Patch(p)) if p.page != 0 => {
            format!("--- trampoline page for the syscall buffer mapped at {:#x} ---", p.page)
        }
        Some(Kind::Patch(p)) => format!(
            "--- syscall at {:#x} rewritten: jumps to the syscall buffer's trampoline at {:#x} ---",
            p.site, p.tramp
        ),
        None => "(empty event)".into(),
    }
}

/// One output line: log index, task (`-` when the event records none), the decoded event.
pub fn line(index: u64, ev: &Event) -> String {
    let task = ev.task().map(|t| t.to_string()).unwrap_or_else(|| "-".into());
    format!("{index:>6} [{task}] {}", text(ev))
}

fn lossy(b: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(b).into_owned())
}

/// The event as a JSON object. Field names are stable: index, task, kind, text, and per kind
/// syscall/nr/class/args/decoded_args/ret/errno/disposition/path/path2/stdio/stdio_fd/new_fds/mem/
/// verified_file; tsc/aux/rdtscp/ip; signo/signal/synchronous; sp/at_random; code/signal/status.
pub fn json(index: u64, ev: &Event) -> Value {
    let mut v = json!({
        "index": index,
        "task": ev.task(),
        "kind": ev.kind_name(),
        "text": text(ev),
    });
    let extra = match &ev.kind {
        Some(Kind::Syscall(s)) => {
            let spec = table::lookup(u64::from(s.nr));
            let paths = paths(s);
            let errno = if (-4095..0).contains(&s.ret) { errno_name(-s.ret as i32) } else { None };
            json!({
                "syscall": table::name(u64::from(s.nr)),
                "nr": s.nr,
                "class": spec.map(|sp| class_name(sp.class)),
                "args": s.args,
                "decoded_args": args(s),
                "ret": s.ret,
                "errno": errno,
                "disposition": disposition_name(s.disposition),
                "path": paths.first().map(|p| lossy(p)),
                "path2": paths.get(1).map(|p| lossy(p)),
                "stdio": if s.stdio_fd != 0 { Some(lossy(&s.stdio)) } else { None },
                "stdio_fd": if s.stdio_fd != 0 { Some(s.stdio_fd) } else { None },
                "new_fds": s.new_fds.iter().map(|f| json!({
                    "fd": f.fd, "kind": fd_kind_name(f.kind), "cloexec": f.cloexec,
                })).collect::<Vec<_>>(),
                "mem": s.mem.iter().map(|m| json!({"addr": m.addr, "len": m.data.len()})).collect::<Vec<_>>(),
                "verified_file": if s.path.is_empty() { None } else { Some(lossy(&s.path)) },
                "holder_silent": s.holder_silent,
                "token_released": s.token_released,
                "token_free": s.token_free,
                "buffered": s.buffered,
                "state": s.state.as_ref().map(|st| json!({
                    "cwd": lossy(&st.cwd), "uids": st.uids, "gids": st.gids, "groups": st.groups,
                    "umask": format!("{:04o}", st.umask),
                })),
            })
        }
        Some(Kind::Rdtsc(r)) => json!({"tsc": r.tsc, "aux": r.aux, "rdtscp": r.rdtscp, "ip": r.ip}),
        Some(Kind::Signal(g)) => json!({
            "signo": g.signo,
            "signal": signal_name(g.signo),
            "synchronous": g.synchronous,
            "at_syscall": g.at_syscall,
            "at_exit": g.at_exit,
            "grouped": g.grouped,
            "silent": g.silent,
            "orig_rax": g.orig_rax,
            "rax": g.rax,
            // siginfo_t starts with si_signo, si_errno, si_code (ints).
            "si_code": g.siginfo.get(8..12).and_then(|b| b.try_into().ok()).map(i32::from_le_bytes),
        }),
        Some(Kind::Run(_)) => json!({}),
        Some(Kind::Spawn(sp)) => json!({"child": sp.child, "thread": sp.thread}),
        Some(Kind::Exec(ex)) => json!({
            "exe_path": String::from_utf8_lossy(&ex.exe_path),
            "exe_hash": hex_bytes(&ex.exe_hash, usize::MAX),
            "sp": ex.sp,
        }),
        Some(Kind::Start(st)) => json!({
            "sp": st.sp,
            "at_random": hex_bytes(&st.at_random, usize::MAX),
            "clock_page": st.clock_page,
        }),
        Some(Kind::Clocks(c)) => {
            let reads: Vec<Value> = clock::decode(&c.reads)
                .unwrap_or_default()
                .iter()
                .map(|r| json!({"call": r.name(), "clock": clock_id(r.arg as u64), "ret": r.ret, "ns": read_ns(r).map(|n| n.to_string())}))
                .collect();
            json!({ "reads": reads })
        }
        Some(Kind::Preempt(p)) => json!({
            "ip": p.ip,
            "steps": p.steps,
            "digest": hex_bytes(&p.digest, usize::MAX),
            "yielded": p.yielded,
            "signals": p.signals.iter().map(|s| signal_name(s.signo)).collect::<Vec<_>>(),
        }),
        Some(Kind::Patch(p)) => json!({"site": p.site, "tramp": p.tramp, "resume": p.resume, "page": p.page}),
        Some(Kind::Exit(e)) => json!({
            "code": e.code,
            "signal": if e.signal != 0 { Some(signal_name(e.signal)) } else { None },
            "status": e.status(),
        }),
        None => json!({}),
    };
    if let (Some(obj), Value::Object(more)) = (v.as_object_mut(), extra) {
        obj.extend(more);
    }
    v
}

/// The time (ns) a clock-page read returned (None for a failed read).
pub fn read_ns(r: &clock::Read) -> Option<i128> {
    if r.ret < 0 {
        return None;
    }
    match r.func {
        0 => Some(i128::from(r.a) * 1_000_000_000 + i128::from(r.b)),
        1 => Some(i128::from(r.a) * 1_000_000_000 + i128::from(r.b) * 1000),
        2 => Some(i128::from(r.ret) * 1_000_000_000),
        _ => None,
    }
}

/// The time readings of a clock-page event's reads, as [`time_reading`] gives them for syscalls.
pub fn clock_readings(reads: &[clock::Read]) -> Vec<(String, i128)> {
    reads
        .iter()
        .filter_map(|r| {
            let name = if r.func == 0 { clock_id(r.arg as u64) } else { "CLOCK_REALTIME".into() };
            Some((name, read_ns(r)?))
        })
        .collect()
}

/// `clock reads: clock_gettime(CLOCK_MONOTONIC) = {tv_sec=.., tv_nsec=..}, ...` (at most 8 shown).
fn clock_reads_text(c: &Clocks) -> String {
    let Some(reads) = clock::decode(&c.reads) else {
        return format!("clock reads: {} damaged bytes", c.reads.len());
    };
    let shown: Vec<String> = reads
        .iter()
        .take(8)
        .map(|r| {
            let value = match (r.func, r.ret) {
                (_, ret) if ret < 0 => format!("-1 {}", nix::Error::from_raw(-ret as i32)),
                (0, _) => format!("{{tv_sec={}, tv_nsec={}}}", r.a, r.b),
                (1, _) => format!("{{tv_sec={}, tv_usec={}}}", r.a, r.b),
                (_, ret) => ret.to_string(),
            };
            match r.func {
                0 => format!("clock_gettime({}) = {value}", clock_id(r.arg as u64)),
                _ => format!("{} = {value}", r.name()),
            }
        })
        .collect();
    let more = if reads.len() > 8 { format!(" (+{} more)", reads.len() - 8) } else { String::new() };
    format!("clock reads: {}{more}", shown.join(", "))
}

/// The time a syscall that reads a clock returned, where its table entry's `now` says it is:
/// (clock name, nanoseconds). None for other syscalls, failed reads and missing memory.
pub fn time_reading(s: &Syscall) -> Option<(String, i128)> {
    if s.ret < 0 {
        return None;
    }
    let spec = ft_libos::lookup(u64::from(s.nr))?;
    let reg = |i: u8| s.args.get(usize::from(i)).copied().unwrap_or(0);
    match spec.now? {
        Now::Ret => Some(("CLOCK_REALTIME".into(), i128::from(s.ret) * 1_000_000_000)),
        Now::At { at, clock } => {
            // The second field of a timespec counts nanoseconds, of a timeval microseconds.
            let unit = match spec.args.get(usize::from(at))? {
                Timespec => 1,
                Timeval => 1000,
                _ => return None,
            };
            let b = mem_at(s, reg(at))?;
            let ns = i128::from(le_u64(b, 0)? as i64) * 1_000_000_000 + i128::from(le_u64(b, 8)? as i64) * unit;
            let clock = clock.map_or_else(|| "CLOCK_REALTIME".into(), |c| clock_id(reg(c)));
            Some((clock, ns))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ft_libos::proto::{Exit, MemWrite, NewFd, Rdtsc, Signal};

    fn sys(s: Syscall) -> Event {
        Event { kind: Some(Kind::Syscall(s)) }
    }

    #[test]
    fn write_to_stdout_shows_the_bytes() {
        let ev = sys(Syscall {
            nr: 1,
            args: vec![1, 0x5000, 6, 0, 0, 0],
            ret: 6,
            stdio: b"hello\n".to_vec(),
            stdio_fd: 1,
            ..Default::default()
        });
        assert_eq!(line(7, &ev), "     7 [0] write(1, \"hello\\n\", 6) = 6 <inject>");
        let j = json(7, &ev);
        assert_eq!(j["syscall"], "write");
        assert_eq!(j["stdio"], "hello\n");
        assert_eq!(j["ret"], 6);
        assert_eq!(j["disposition"], "inject");
    }

    #[test]
    fn openat_error_and_flags() {
        let ev = sys(Syscall {
            nr: 257,
            args: vec![(-100i64) as u64, 0x1000, (libc::O_RDONLY | libc::O_CLOEXEC) as u64, 0, 0, 0],
            ret: -2,
            path_arg: b"/etc/nope".to_vec(),
            task: 3,
            ..Default::default()
        });
        assert_eq!(
            line(0, &ev),
            "     0 [3] openat(AT_FDCWD, \"/etc/nope\", O_RDONLY|O_CLOEXEC, 0) = -1 ENOENT (No such file or directory) <inject>"
        );
        assert_eq!(json(0, &ev)["errno"], "ENOENT");
        assert_eq!(json(0, &ev)["path"], "/etc/nope");
    }

    #[test]
    fn structs_from_memory() {
        let mut ts = 1_700_000_000u64.to_le_bytes().to_vec();
        ts.extend_from_slice(&123_456_789u64.to_le_bytes());
        let ev = sys(Syscall {
            nr: 228,
            args: vec![1, 0x7ff0, 0, 0, 0, 0],
            mem: vec![MemWrite { addr: 0x7ff0, data: ts }],
            ..Default::default()
        });
        assert_eq!(text(&ev), "clock_gettime(CLOCK_MONOTONIC, {tv_sec=1700000000, tv_nsec=123456789}) = 0 <inject>");
        let Some(Kind::Syscall(s)) = &ev.kind else { unreachable!() };
        assert_eq!(time_reading(s), Some(("CLOCK_MONOTONIC".into(), 1_700_000_000_123_456_789)));

        let ev = sys(Syscall {
            nr: 318,
            args: vec![0x1000, 4, 0, 0, 0, 0],
            ret: 4,
            mem: vec![MemWrite { addr: 0x1000, data: vec![0xde, 0xad, 0xbe, 0xef] }],
            ..Default::default()
        });
        assert_eq!(text(&ev), "getrandom(deadbeef, 4, 0x0) = 4 <inject>");

        // A memory write that is too short decodes as the pointer, not a panic.
        let ev = sys(Syscall {
            nr: 228,
            args: vec![0, 0x7ff0],
            mem: vec![MemWrite { addr: 0x7ff0, data: vec![1, 2, 3] }],
            ..Default::default()
        });
        assert_eq!(text(&ev), "clock_gettime(CLOCK_REALTIME, 0x7ff0) = 0 <inject>");
    }

    #[test]
    fn time_readings_follow_the_table() {
        let mut tv = 1_700_000_000u64.to_le_bytes().to_vec();
        tv.extend_from_slice(&5u64.to_le_bytes());
        let mem = vec![MemWrite { addr: 0x7ff0, data: tv }];
        let at = |nr: u32, args: Vec<u64>, ret: i64| {
            time_reading(&Syscall { nr, args, ret, mem: mem.clone(), ..Default::default() })
        };
        // gettimeofday: a timeval (microseconds) of the realtime clock.
        assert_eq!(at(96, vec![0x7ff0, 0], 0), Some(("CLOCK_REALTIME".into(), 1_700_000_000_000_005_000)));
        // time: the result, in seconds.
        assert_eq!(at(201, vec![0], 1_700_000_000), Some(("CLOCK_REALTIME".into(), 1_700_000_000_000_000_000)));
        // clock_getres writes a resolution, not the time; a failed read reads nothing.
        assert_eq!(at(229, vec![1, 0x7ff0], 0), None);
        assert_eq!(at(228, vec![1, 0x7ff0], -22), None);
    }

    #[test]
    fn mmap_and_new_fds() {
        let ev = sys(Syscall {
            nr: 9,
            args: vec![0, 4096, 5, 0x802, 3, 0],
            ret: 0x7f00_0000_0000,
            disposition: Disposition::AnonMap as i32,
            ..Default::default()
        });
        assert_eq!(
            text(&ev),
            "mmap(0x0, 4096, PROT_READ|PROT_EXEC, MAP_PRIVATE|MAP_DENYWRITE, 3, 0x0) = 0x7f0000000000 <anonmap>"
        );
        let ev = sys(Syscall {
            nr: 293,
            args: vec![0x2000, libc::O_CLOEXEC as u64],
            mem: vec![MemWrite { addr: 0x2000, data: vec![3, 0, 0, 0, 4, 0, 0, 0] }],
            disposition: Disposition::Placeholder as i32,
            new_fds: vec![
                NewFd { fd: 3, kind: FdKind::External as i32, cloexec: true },
                NewFd { fd: 4, kind: FdKind::External as i32, cloexec: true },
            ],
            ..Default::default()
        });
        assert_eq!(
            text(&ev),
            "pipe2([3, 4], O_RDONLY|O_CLOEXEC) = 0 <placeholder> [fd 3: external, cloexec; fd 4: external, cloexec]"
        );
    }

    #[test]
    fn other_events() {
        let ev = Event {
            kind: Some(Kind::Rdtsc(Rdtsc { tsc: 99, aux: 0, rdtscp: false, ip: 0x401000, ..Default::default() })),
        };
        assert_eq!(line(4, &ev), "     4 [0] rdtsc at 0x401000 = 99");
        let ev = Event { kind: Some(Kind::Signal(Signal { signo: 2, synchronous: false, ..Default::default() })) };
        assert_eq!(text(&ev), "--- SIGINT (asynchronous) ---");
        let ev = Event { kind: Some(Kind::Exit(Exit { code: 0, signal: 9, ..Default::default() })) };
        assert_eq!(text(&ev), "+++ killed by SIGKILL +++");
        assert_eq!(json(1, &ev)["status"], 137);
        // An unknown syscall number shows raw registers.
        let ev = sys(Syscall { nr: 1000, args: vec![1, 2, 3, 4, 5, 6], ret: -38, ..Default::default() });
        assert_eq!(
            text(&ev),
            "syscall #1000(0x1, 0x2, 0x3, 0x4, 0x5, 0x6) = -1 ENOSYS (Function not implemented) <inject>"
        );
    }

    #[test]
    fn escaping_cuts_long_strings() {
        assert_eq!(escape(b"a\"b\\\x01", 40), "\"a\\\"b\\\\\\x01\"");
        assert_eq!(escape(&[b'x'; 50], 40), format!("\"{}\"...", "x".repeat(40)));
    }
}
