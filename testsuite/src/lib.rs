//! Test harness for `ftexec` record/replay.
//!
//! The C programs in `testsuite/c/` are compiled by `build.rs` (one per
//! source of nondeterminism); [`c_program`] finds them. The harness runs a
//! program natively ([`native`]), under `ftexec record` ([`record`]) and
//! `ftexec replay` ([`replay`]), and compares the results
//! ([`assert_replays`], [`assert_same_output`]).
//!
//! Every process it starts runs in its own process group with stdin closed
//! and is killed (with its whole group) after [`TIMEOUT`], failing the test
//! with the output gathered so far, so a hung tracer never blocks CI.

use std::fmt;
use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub mod cluster;
pub mod postgres;

pub use tempfile::TempDir;

/// How long any process started by the harness may run before it is killed
/// and the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Path of the compiled C test program `name` (the stem of `c/NAME.c`).
///
/// Panics if `build.rs` did not produce it.
pub fn c_program(name: &str) -> PathBuf {
    let path = Path::new(env!("FT_TESTSUITE_BIN_DIR")).join(name);
    assert!(path.is_file(), "C test program {name} not found at {}: is there a testsuite/c/{name}.c?", path.display());
    path
}

/// Path of the `ftexec` binary under test.
///
/// It is looked for next to the test executable's directory, i.e.
/// `target/debug/ftexec` for a test in `target/debug/deps/`, unless the
/// `FTEXEC` environment variable names it. Panics with a hint if missing.
pub fn ftexec() -> PathBuf {
    if let Some(path) = std::env::var_os("FTEXEC") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("cannot find the test executable's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("test executable {} has no grandparent", exe.display()));
    let path = dir.join("ftexec");
    assert!(
        path.is_file(),
        "ftexec binary not found at {}: build it with cargo build -p ftexec \
         (with the same CARGO_TARGET_DIR as the tests), or set FTEXEC=/path/to/ftexec",
        path.display()
    );
    path
}

/// Outcome of one finished process.
#[derive(Clone, PartialEq, Eq)]
pub struct Run {
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
    /// Its exit code, or 128+N when it was killed by signal N.
    pub status: i32,
}

impl Run {
    /// stdout as text (invalid UTF-8 replaced).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as text (invalid UTF-8 replaced).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Whether a line is one of ftexec's own log lines (slog: "Dec 07 06:58:25.303 WARN ..."),
/// not the program's.
pub fn is_ftexec_log_line(line: &str) -> bool {
    let b = line.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    b.len() > 25
        && b[..3].iter().all(u8::is_ascii_alphabetic)
        && digits(4..6)
        && digits(7..9)
        && digits(10..12)
        && digits(13..15)
        && digits(16..19)
        && ["TRCE ", "DEBG ", "INFO ", "WARN ", "ERRO ", "CRIT "].iter().any(|l| line[20..].starts_with(l))
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "status: {}", self.status)?;
        writeln!(f, "--- stdout ({} bytes) ---", self.stdout.len())?;
        writeln!(f, "{}", self.stdout_text())?;
        writeln!(f, "--- stderr ({} bytes) ---", self.stderr.len())?;
        write!(f, "{}", self.stderr_text())
    }
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Exit code of a finished process, or 128+N when signal N killed it.
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => panic!("exit status {status:?} has neither code nor signal"),
    }
}

/// A `Command` for `prog args…` with stdin from /dev/null.
pub fn command(prog: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(prog);
    cmd.args(args).stdin(Stdio::null());
    cmd
}

/// A `Command` for `ftexec record -o LOG [--data-dir DIR] -- PROG ARGS…`.
pub fn record_command(log: &Path, data_dir: Option<&Path>, prog: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(ftexec());
    cmd.arg("record").arg("-o").arg(log);
    if let Some(dir) = data_dir {
        cmd.arg("--data-dir").arg(dir);
    }
    cmd.arg("--").arg(prog).args(args).stdin(Stdio::null());
    cmd
}

/// A `Command` for `ftexec replay LOG [--data-dir DIR]`.
pub fn replay_command(log: &Path, data_dir: Option<&Path>) -> Command {
    let mut cmd = Command::new(ftexec());
    cmd.arg("replay").arg(log);
    if let Some(dir) = data_dir {
        cmd.arg("--data-dir").arg(dir);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// A process started by [`spawn`]. Dropping it without [`Running::wait`]
/// kills its process group.
pub struct Running {
    what: String,
    child: Option<Child>,
    started: Instant,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// One message per output pipe when it reaches end of file.
    eof: mpsc::Receiver<()>,
}

/// Starts `cmd` in its own process group with stdout and stderr captured.
pub fn spawn(mut cmd: Command) -> Running {
    let what = format!("{cmd:?}");
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let (tx, eof) = mpsc::channel();
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let out_pipe = child.stdout.take().expect("stdout is piped");
    let err_pipe = child.stderr.take().expect("stderr is piped");
    collect(out_pipe, Arc::clone(&stdout), tx.clone());
    collect(err_pipe, Arc::clone(&stderr), tx);
    Running { what, child: Some(child), started: Instant::now(), stdout, stderr, eof }
}

/// Copies `pipe` into `buf` on a thread, then signals `done`.
fn collect(mut pipe: impl Read + Send + 'static, buf: Arc<Mutex<Vec<u8>>>, done: mpsc::Sender<()>) {
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            lock(&buf).extend_from_slice(&chunk[..n]);
        }
        let _ = done.send(());
    });
}

fn lock(buf: &Mutex<Vec<u8>>) -> std::sync::MutexGuard<'_, Vec<u8>> {
    buf.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Running {
    /// The stdout collected so far.
    pub fn stdout_so_far(&self) -> Vec<u8> {
        lock(&self.stdout).clone()
    }

    /// The process id (None once waited for).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits for the process to exit and its output pipes to close. Panics
    /// (after killing its process group) if that takes longer than
    /// [`TIMEOUT`] from the start.
    pub fn wait(mut self) -> Run {
        let deadline = self.started + TIMEOUT;
        let mut child = self.child.take().expect("wait is called once");
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    kill_group(&mut child);
                    self.timed_out("exit");
                }
                Ok(None) => thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("waiting for {}: {e}", self.what),
            }
        };
        // A descendant that escaped may still hold a pipe open.
        for _ in 0..2 {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.eof.recv_timeout(left).is_err() {
                kill_group(&mut child);
                self.timed_out("close its stdout and stderr");
            }
        }
        let stdout = std::mem::take(&mut *lock(&self.stdout));
        let stderr = std::mem::take(&mut *lock(&self.stderr));
        Run { stdout, stderr, status: exit_code(status) }
    }

    fn timed_out(&self, what_not_done: &str) -> ! {
        panic!(
            "TIMEOUT: {} did not {what_not_done} within {} s; killed its process group.\n\
             --- stdout so far ---\n{}\n--- stderr so far ---\n{}",
            self.what,
            TIMEOUT.as_secs(),
            String::from_utf8_lossy(&lock(&self.stdout)),
            String::from_utf8_lossy(&lock(&self.stderr)),
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
        }
    }
}

/// Kills the process group led by `child` (see [`spawn`]) and reaps `child`.
fn kill_group(child: &mut Child) {
    if let Ok(pgid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) takes plain integers and touches no memory of ours;
        // the group was created for this child by process_group(0).
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `cmd` to completion (see [`spawn`] and [`Running::wait`]).
pub fn run(cmd: Command) -> Run {
    spawn(cmd).wait()
}

/// Runs `prog args…` natively.
pub fn native(prog: &Path, args: &[&str]) -> Run {
    run(command(prog, args))
}

/// Runs `ftexec record -o LOG [--data-dir DIR] -- PROG ARGS…`.
pub fn record(log: &Path, data_dir: Option<&Path>, prog: &Path, args: &[&str]) -> Run {
    run(record_command(log, data_dir, prog, args))
}

/// Runs `ftexec replay LOG [--data-dir DIR]`.
pub fn replay(log: &Path, data_dir: Option<&Path>) -> Run {
    run(replay_command(log, data_dir))
}

/// A fresh temporary directory for one test, removed when dropped. Its name
/// starts with `ft-NAME-` to help find leftovers.
/// FT_KEEP_TEMP=1 keeps it after the test (to read a failed cluster's logs).
pub fn temp_dir(name: &str) -> TempDir {
    let mut d = tempfile::Builder::new()
        .prefix(&format!("ft-{name}-"))
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temp dir for {name}: {e}"));
    if std::env::var_os("FT_KEEP_TEMP").is_some() {
        d.disable_cleanup(true);
    }
    d
}

/// Asserts that `replayed` has exactly the stdout bytes and status of
/// `recorded`, printing both in full otherwise.
pub fn assert_same_output(recorded: &Run, replayed: &Run, what: &str) {
    if recorded.stdout == replayed.stdout && recorded.status == replayed.status {
        return;
    }
    let first_diff = recorded
        .stdout
        .iter()
        .zip(&replayed.stdout)
        .position(|(a, b)| a != b)
        .unwrap_or(recorded.stdout.len().min(replayed.stdout.len()));
    panic!(
        "{what}: replay differs from the recording (status {} vs {}, stdout first differs at byte {first_diff})\n\
         ===== recorded =====\n{recorded}\n===== replayed =====\n{replayed}",
        recorded.status, replayed.status
    );
}

/// Asserts that a recording went well: `ftexec record` exited 0 and wrote a
/// non-empty log, and the program printed something.
pub fn assert_recorded_ok(log: &Path, recorded: &Run, what: &str) {
    assert_eq!(recorded.status, 0, "{what}: recording failed\n{recorded}");
    assert!(!recorded.stdout.is_empty(), "{what}: recording printed nothing\n{recorded}");
    let len = fs::metadata(log)
        .unwrap_or_else(|e| panic!("{what}: no log at {} after recording: {e}\n{recorded}", log.display()))
        .len();
    assert!(len > 0, "{what}: log {} is empty\n{recorded}", log.display());
}

/// Replays `log` twice and asserts that each replay reproduces `recorded`
/// (stdout bytes and status).
pub fn assert_replays_log(log: &Path, data_dir: Option<&Path>, recorded: &Run, what: &str) {
    for round in 1..=2 {
        let replayed = replay(log, data_dir);
        assert_same_output(recorded, &replayed, &format!("{what} (replay {round})"));
    }
}

/// Records the C program `name` with `args` (without a data dir), checks
/// that the recording succeeded ([`assert_recorded_ok`]), replays it twice
/// and asserts that each replay prints the same stdout bytes and exits with
/// the same status. Returns the recorded run for further checks.
pub fn assert_replays(name: &str, args: &[&str]) -> Run {
    assert_program_replays(&c_program(name), args, name)
}

/// Records the C program `name` with `args` once (without a data dir), checks
/// that the recording succeeded ([`assert_recorded_ok`]), then replays it
/// `times` times and asserts that every replay prints the same stdout bytes
/// and exits with the same status. Returns the recorded run.
pub fn assert_replays_times(name: &str, args: &[&str], times: usize) -> Run {
    let what = if args.is_empty() { name.to_string() } else { format!("{name}-{}", args.join("-")) };
    let dir = temp_dir(&what);
    let log = dir.path().join("run.ftlog");
    let recorded = record(&log, None, &c_program(name), args);
    assert_recorded_ok(&log, &recorded, &what);
    for round in 1..=times {
        let replayed = replay(&log, None);
        assert_same_output(&recorded, &replayed, &format!("{what} (replay {round} of {times})"));
    }
    recorded
}

/// Like [`assert_replays`] for any program `prog`; `what` names it in
/// messages and in the temp dir.
pub fn assert_program_replays(prog: &Path, args: &[&str], what: &str) -> Run {
    let dir = temp_dir(what);
    let log = dir.path().join("run.ftlog");
    let recorded = record(&log, None, prog, args);
    assert_recorded_ok(&log, &recorded, what);
    assert_replays_log(&log, None, &recorded, what);
    recorded
}

/// The output with every number-like word replaced by `#`: a word made only
/// of hex digits and `.:x+-`, with at least one decimal digit. Two runs of the
/// same program have the same shape even when their values differ.
pub fn shape(stdout: &[u8]) -> String {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| {
            line.split_whitespace()
                .map(|word| {
                    let numeric = word.chars().any(|c| c.is_ascii_digit())
                        && word.chars().all(|c| c.is_ascii_hexdigit() || ".:x+-".contains(c));
                    if numeric {
                        "#"
                    } else {
                        word
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts that the recorded run printed the same kind of output as a native
/// run: same status and same [`shape`].
pub fn assert_like_native(recorded: &Run, native_run: &Run, what: &str) {
    assert_eq!(native_run.status, 0, "{what}: the native run failed\n{native_run}");
    assert_eq!(
        recorded.status, native_run.status,
        "{what}: recorded status differs from native\n===== recorded =====\n{recorded}\n===== native =====\n{native_run}"
    );
    assert_eq!(
        shape(&recorded.stdout),
        shape(&native_run.stdout),
        "{what}: recorded output does not look like the native output\n\
         ===== recorded =====\n{recorded}\n===== native =====\n{native_run}"
    );
}

/// Asserts that two native runs of `prog args…` succeed and print different
/// stdout: the source of nondeterminism is real, so replaying it means
/// something. Returns the first run.
pub fn assert_native_differs(prog: &Path, args: &[&str]) -> Run {
    let first = native(prog, args);
    let second = native(prog, args);
    assert_native_pair_differs(&first, &second, &prog.display().to_string());
    first
}

/// Asserts that two native runs both succeeded and printed different stdout.
pub fn assert_native_pair_differs(first: &Run, second: &Run, what: &str) {
    assert_eq!(first.status, 0, "{what}: native run failed\n{first}");
    assert_eq!(second.status, 0, "{what}: native run failed\n{second}");
    assert_ne!(
        first.stdout, second.stdout,
        "{what}: two native runs printed the same stdout, so this source is not nondeterministic here\n{first}"
    );
}

/// Rewrites a log: every event is replaced by the events `edit` returns for it (checksums stay
/// valid: this is a log that says something else, not a damaged one).
pub fn rewrite_log(log: &Path, out: &Path, mut edit: impl FnMut(ft_libos::Event) -> Vec<ft_libos::Event>) {
    let mut r = ft_libos::log::LogReader::open(log).expect("open log");
    let mut w = ft_libos::log::LogWriter::create(out, &r.header().clone()).expect("create log");
    while let Some(ev) = r.next_event().expect("read event") {
        for ev in edit(ev) {
            w.append(&ev).expect("append");
        }
    }
    w.finish().expect("finish");
}

/// `ftdbg stats --json LOG`, parsed (ftdbg sits next to ftexec).
pub fn ftdbg_stats(log: &Path) -> serde_json::Value {
    let ftdbg = ftexec().with_file_name("ftdbg");
    let out = Command::new(&ftdbg).args(["stats", "--json"]).arg(log).output().expect("ftdbg stats");
    assert!(out.status.success(), "ftdbg stats: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("stats json")
}

/// A TCP port on 127.0.0.1 that was free a moment ago, taken below the kernel's ephemeral
/// range. A port from `bind(:0)` is released when this returns, and the kernel may hand the same
/// number to the next `bind(:0)`: to an `ftexec up` cluster's Raft or control port in another
/// test, whose transport then answers this test's client with a reset (CI saw that). Below the
/// ephemeral range only these tests choose ports, and each process walks its own sequence.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    const FIRST: u32 = 10_000;
    let ephemeral_start = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse::<u32>().ok()))
        .unwrap_or(32_768);
    if ephemeral_start > FIRST + 1_000 {
        let span = ephemeral_start - FIRST;
        let start = std::process::id().wrapping_mul(2_654_435_761) % span;
        for _ in 0..span {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let port = (FIRST + (start + n) % span) as u16;
            if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return port;
            }
        }
    }
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("cannot bind 127.0.0.1:0 to find a free port");
    listener.local_addr().expect("local_addr of a bound listener").port()
}

/// Connects to 127.0.0.1:`port`, retrying until a server listens there;
/// panics after `timeout`.
pub fn connect_retry(port: u16, timeout: Duration) -> TcpStream {
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
            Ok(stream) => {
                stream.set_read_timeout(Some(TIMEOUT)).expect("set_read_timeout");
                return stream;
            }
            Err(e) if Instant::now() >= deadline => {
                panic!("nothing listened on 127.0.0.1:{port} within {timeout:?}: {e}")
            }
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The first executable named `name` on PATH that is an ELF binary (not a
/// script or a shim such as pyenv's, which would fork), if any.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| is_elf(candidate))
}

fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == *b"\x7fELF"
}

/// `path` as `&str`; the harness only makes UTF-8 paths.
pub fn path_str(path: &Path) -> &str {
    path.to_str().unwrap_or_else(|| panic!("path {} is not UTF-8", path.display()))
}

/// Every file under `dir` (relative path → content), for comparing data dirs.
pub fn dir_contents(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<PathBuf, Vec<u8>>) {
        let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("read_dir entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let content = fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                let rel = path.strip_prefix(root).expect("under root").to_path_buf();
                out.insert(rel, content);
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// redis-server (if installed) started under `ftexec record` into `DIR/redis.ftlog` on a free
/// port of 127.0.0.1, with `env` for ftexec, and a connection to it: (temp dir, log, the
/// recording, the connection). None (said on stderr) when redis-server is not installed.
pub fn record_redis(name: &str, env: &[(&str, &str)]) -> Option<(TempDir, PathBuf, Running, TcpStream)> {
    let Some(redis) = find_program("redis-server") else {
        eprintln!("SKIP: redis-server is not installed (scripts/deps.sh installs it)");
        return None;
    };
    let dir = temp_dir(name);
    let log = dir.path().join("redis.ftlog");
    let port = free_port();
    let port_s = port.to_string();
    let args = ["--port", &port_s, "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"];
    let mut cmd = record_command(&log, None, &redis, &args);
    cmd.envs(env.iter().copied());
    let server = spawn(cmd);
    let conn = connect_retry(port, Duration::from_secs(20));
    Some((dir, log, server, conn))
}

/// Sends one redis command line and returns the reply (one read).
pub fn redis_reply(conn: &mut TcpStream, cmd: &str) -> String {
    use std::io::{Read, Write};
    conn.write_all(cmd.as_bytes()).expect("send");
    let mut buf = [0u8; 256];
    let n = conn.read(&mut buf).expect("reply");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}
