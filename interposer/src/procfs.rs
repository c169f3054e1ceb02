//! What the tracer reads of a tracee's fds in /proc: epoll registrations, status flags, the
//! kind of object behind an fd (a pipe's inode, an eventfd's id).

/// (epoll fd, target fd, events, data) of every registration in the process.
pub fn epoll_registrations(pid: i32) -> Vec<(i32, i32, u32, u64)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return out };
    for e in dir.flatten() {
        let Some(epfd) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if std::fs::read_link(e.path()).ok().and_then(|l| l.to_str().map(str::to_owned)).as_deref()
            != Some("anon_inode:[eventpoll]")
        {
            continue;
        }
        let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{epfd}")) else { continue };
        for line in info.lines().filter(|l| l.starts_with("tfd:")) {
            let w: Vec<&str> = line.split_whitespace().collect();
            // tfd: N events: HEX data: HEX pos:...
            let tfd = w.get(1).and_then(|v| v.parse::<i32>().ok());
            let events = w.get(3).and_then(|v| u32::from_str_radix(v, 16).ok());
            let data = w.get(5).and_then(|v| u64::from_str_radix(v, 16).ok());
            if let (Some(tfd), Some(events), Some(data)) = (tfd, events, data) {
                out.push((epfd, tfd, events, data));
            }
        }
    }
    out
}

/// The fd's status flags (O_NONBLOCK, O_CLOEXEC...) from fdinfo.
pub fn fd_flags(pid: i32, fd: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("flags:").and_then(|v| i32::from_str_radix(v.trim(), 8).ok()))
        })
        .unwrap_or(0)
}

pub fn is_stand_in(pid: i32, fd: i32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok().and_then(|l| l.to_str().map(str::to_owned)).as_deref()
        == Some("anon_inode:[eventfd]")
}

/// The kernel's id of the eventfd at `fd` (fdinfo `eventfd-id`): the same for every process
/// that shares the stand-in.
pub fn eventfd_id(pid: i32, fd: i32) -> Option<u64> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    info.lines().find_map(|l| l.strip_prefix("eventfd-id:")).and_then(|v| v.trim().parse().ok())
}

/// The pipe (its inode) at `fd` of `pid`, and whether that fd may write.
pub fn pipe_of(pid: i32, fd: i32) -> Option<(u64, bool)> {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let ino = link.to_str()?.strip_prefix("pipe:[")?.strip_suffix(']')?.parse().ok()?;
    Some((ino, fd_flags(pid, fd) & libc::O_ACCMODE != libc::O_RDONLY))
}

/// The inode of the socket at `fd` of process `pid`, if it is one.
pub fn socket_of(pid: i32, fd: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// The directory a path argument of task `pid` is relative to: "/" for an absolute path, else
/// what `dirfd` names (its target) or the task's cwd. None if /proc cannot tell.
pub fn path_base(pid: i32, dirfd: Option<i32>, path: &std::path::Path) -> Option<std::path::PathBuf> {
    match dirfd {
        _ if path.is_absolute() => Some(std::path::PathBuf::from("/")),
        Some(fd) if fd != libc::AT_FDCWD => std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok(),
        _ => std::fs::read_link(format!("/proc/{pid}/cwd")).ok(),
    }
}

/// The process state of `pid` outside memory and fds (see [`ft_libos::proto::ProcState`]):
/// /proc/PID/status, cwd and limits. Err names what could not
/// be read (the process is gone, or /proc cannot tell).
pub fn proc_state(pid: i32) -> Result<ft_libos::proto::ProcState, String> {
    use std::os::unix::ffi::OsStringExt;
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    let numbers = |name: &str| -> Result<Vec<u32>, String> {
        field(name)
            .unwrap_or_default()
            .split_whitespace()
            .map(|v| v.parse().map_err(|_| format!("{name} {v:?} in /proc/{pid}/status")))
            .collect()
    };
    let hex = |name: &str| {
        field(name)
            .and_then(|v| u64::from_str_radix(v, 16).ok())
            .ok_or_else(|| format!("no {name} in /proc/{pid}/status"))
    };
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).map_err(|e| format!("/proc/{pid}/cwd: {e}"))?;
    let limits = limits(pid)?;
    Ok(ft_libos::proto::ProcState {
        cwd: cwd.into_os_string().into_vec(),
        uids: numbers("Uid:")?,
        gids: numbers("Gid:")?,
        groups: numbers("Groups:")?,
        umask: field("Umask:")
            .and_then(|v| u32::from_str_radix(v, 8).ok())
            .ok_or_else(|| format!("no Umask in /proc/{pid}/status"))?,
        caps: ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"]
            .iter()
            .map(|n| hex(n))
            .collect::<Result<_, _>>()?,
        limits,
    })
}

/// The soft and hard limit of each resource, RLIMIT_CPU to RLIMIT_RTTIME, from /proc/PID/limits
/// (readable without CAP_SYS_RESOURCE, which prlimit on another user's process needs): rows in
/// resource order, the name in 26 columns, then the soft and hard limit in 21 each.
fn limits(pid: i32) -> Result<Vec<u64>, String> {
    let text =
        std::fs::read_to_string(format!("/proc/{pid}/limits")).map_err(|e| format!("/proc/{pid}/limits: {e}"))?;
    let value = |v: &str| match v.trim() {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    };
    let mut out = Vec::with_capacity(2 * ft_libos::process::RESOURCES as usize);
    for line in text.lines().skip(1).take(ft_libos::process::RESOURCES as usize) {
        let (soft, hard) = (line.get(26..47).and_then(value), line.get(47..68).and_then(value));
        let (Some(soft), Some(hard)) = (soft, hard) else {
            return Err(format!("an unexpected line in /proc/{pid}/limits: {line:?}"));
        };
        out.extend([soft, hard]);
    }
    if out.len() != 2 * ft_libos::process::RESOURCES as usize {
        return Err(format!("/proc/{pid}/limits has fewer than {} resources", ft_libos::process::RESOURCES));
    }
    Ok(out)
}

/// The pid, as the tracer sees it, of the process that is `ns_pid` in the PID namespace of
/// process `peer` (found by the last field of each process's NSpid line). None if there is none.
pub fn host_pid(ns_pid: i32, peer: i32) -> Option<i32> {
    let ns = std::fs::read_link(format!("/proc/{peer}/ns/pid")).ok()?;
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
        let last = status.lines().find_map(|l| l.strip_prefix("NSpid:")).and_then(|v| v.split_whitespace().last());
        if last.and_then(|v| v.parse::<i32>().ok()) == Some(ns_pid)
            && std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok().as_ref() == Some(&ns)
        {
            return Some(pid);
        }
    }
    None
}

/// Whether process `pid` has a /dev/shm of its own (the tmpfs its launch mounted; see
/// `launch::PRIVATE_SHM`), not the tracer's.
pub fn private_shm(pid: i32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let dir = crate::launch::PRIVATE_SHM.to_string_lossy();
    match (std::fs::metadata(format!("/proc/{pid}/root{dir}")), std::fs::metadata(&*dir)) {
        (Ok(theirs), Ok(ours)) => theirs.dev() != ours.dev(),
        _ => false,
    }
}

/// The address ranges (start, end) mapped in process `pid`, from /proc/PID/maps.
pub fn mapped_ranges(pid: i32) -> std::io::Result<Vec<(u64, u64)>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let (range, _) = l.split_once(' ')?;
            let (a, b) = range.split_once('-')?;
            Some((u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?))
        })
        .collect())
}
