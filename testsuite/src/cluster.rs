//! A cluster of replicas on this machine, started by `ftexec up --replicas 3`, for end-to-end
//! tests: its status through `ftctl`, a kill -9 of its leader, its logs when a test fails.

use crate::ftexec;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn ftctl() -> PathBuf {
    ftexec().with_file_name("ftctl")
}

/// `ftexec up` running a program on 3 replicas; stopped (with its replicas) when dropped.
pub struct Up {
    up: Child,
    pub dir: PathBuf,
}

impl Up {
    /// `ftexec up --replicas 3 --fsync never --dir DIR ARGS -- COMMAND`, with `env` added to the
    /// environment of `up` and of its replicas; what it prints goes to DIR.up.log.
    pub fn start(dir: &Path, command: &[String], args: &[&str], env: &[(&str, &str)]) -> Up {
        let mut c = Command::new(ftexec());
        c.args(["up", "--replicas", "3", "--fsync", "never", "--dir"]).arg(dir).args(args).arg("--");
        c.args(command);
        c.envs(env.iter().copied());
        let log = std::fs::File::create(dir.with_extension("up.log")).expect("up log");
        c.stdin(Stdio::null()).stdout(log.try_clone().expect("log")).stderr(log).process_group(0);
        let up = c.spawn().expect("starting ftexec up");
        Up { up, dir: dir.to_path_buf() }
    }

    /// [`Up::start`] by `user` instead of root (through runuser): ftexec runs the replicas in a
    /// user namespace of that user's own. The user runs a copy of ftexec next to DIR (the build
    /// directory may be closed to it), and owns DIR.
    pub fn start_as(user: &str, dir: &Path, command: &[String], args: &[&str]) -> Up {
        let uid = crate::postgres::uid_of(user).unwrap_or_else(|| panic!("no user {user}"));
        let bin = dir.with_extension("bin");
        let exe = bin.join("ftexec");
        if !exe.exists() {
            std::fs::create_dir_all(&bin).expect("mkdir");
            std::fs::copy(ftexec(), &exe).expect("copying ftexec");
        }
        std::fs::create_dir_all(dir).expect("mkdir");
        std::os::unix::fs::chown(dir, Some(uid), None).expect("chown");
        let mut c = Command::new("runuser");
        c.args(["-u", user, "--"]).arg(&exe);
        c.args(["up", "--replicas", "3", "--fsync", "never", "--dir"]).arg(dir).args(args).arg("--");
        c.args(command);
        let log = std::fs::File::create(dir.with_extension("up.log")).expect("up log");
        c.stdin(Stdio::null()).stdout(log.try_clone().expect("log")).stderr(log).process_group(0);
        let up = c.spawn().expect("starting ftexec up");
        Up { up, dir: dir.to_path_buf() }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("cluster.toml")
    }

    /// `ftctl status --json`: one object per node.
    pub fn status(&self) -> Vec<serde_json::Value> {
        let out = Command::new(ftctl())
            .args(["status", "--json", "--timeout-ms", "500", "--config"])
            .arg(self.config())
            .output()
            .expect("running ftctl");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        doc["nodes"].as_array().cloned().unwrap_or_default()
    }

    /// `ftctl fault --node ID ACTION` (isolate / heal): whether it succeeded, and its stdout+stderr.
    pub fn fault(&self, id: u64, action: &str) -> (bool, String) {
        let out = Command::new(ftctl())
            .args(["fault", "--node", &id.to_string(), action, "--config"])
            .arg(self.config())
            .output()
            .expect("running ftctl");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// What `ftexec up` printed, and the last lines of each replica's ftexec.log.
    pub fn logs(&self) -> String {
        let mut out = format!("ftexec up said:\n{}", self.up_log());
        for n in 1..=3 {
            let log = std::fs::read_to_string(self.dir.join(format!("n{n}/ftexec.log"))).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            out +=
                &format!("\nreplica {n}'s ftexec.log (end):\n{}", lines[lines.len().saturating_sub(30)..].join("\n"));
        }
        out
    }

    /// What `ftexec up` has printed so far.
    pub fn up_log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("up.log")).unwrap_or_default()
    }

    /// The pid of the `ftexec run` that leads and records.
    pub fn leader_pid(&self) -> u32 {
        let t0 = Instant::now();
        loop {
            let st = self.status();
            if let Some(n) = st.iter().find(|n| n["role"] == "leader" && n["mode"] == "recording") {
                return n["pid"].as_u64().expect("pid") as u32;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "no recording leader after 30 s: {st:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// After one kill of the leader: at least two replicas live, and `up` saw one replica die
    /// (the killed one: a follower that diverged would die too).
    pub fn assert_only_the_killed_replica_died(&self) {
        let st = self.status();
        assert!(
            st.iter().filter(|n| n["live"] == true).count() >= 2 && self.up_log().matches("died").count() == 1,
            "only the killed replica may die: {st:?}\n{}",
            self.logs()
        );
    }

    /// kill -9 of the recording leader's ftexec process, as a machine death would; returns when
    /// the kill was.
    pub fn kill_leader(&self) -> Instant {
        let pid = self.leader_pid();
        // SAFETY: kill -9 of a process of this cluster.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        Instant::now()
    }

    /// The pids of the program's processes named `name` that run under this cluster's replicas
    /// (found through /proc: the children of each replica's `ftexec run`, recursively).
    pub fn program_pids(&self, name: &str) -> Vec<u32> {
        let runs: Vec<u32> = self.status().iter().filter_map(|n| n["pid"].as_u64()).map(|p| p as u32).collect();
        let mut out = Vec::new();
        let mut frontier = runs;
        while let Some(p) = frontier.pop() {
            for c in children(p) {
                let comm = std::fs::read_to_string(format!("/proc/{c}/comm")).unwrap_or_default();
                if comm.trim() == name {
                    out.push(c);
                }
                frontier.push(c);
            }
        }
        out.sort_unstable();
        out
    }

    /// Retries `f` every 50 ms until it gives Some, for at most `within`; panics with the
    /// cluster's logs, naming `what`.
    pub fn retry<T>(&self, within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let t0 = Instant::now();
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(t0.elapsed() < within, "{what} within {within:?}:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// kill -9 of `ftexec up` and every replica (one process group), as a power cut of the
    /// machine would; the programs die with their tracers.
    pub fn kill_all(mut self) {
        // SAFETY: signals our own child's process group.
        unsafe { libc::kill(-(self.up.id() as i32), libc::SIGKILL) };
        let _ = self.up.wait();
        let t0 = Instant::now();
        let me = self.dir.join("cluster.toml");
        // Until no replica of this cluster is left.
        while t0.elapsed() < Duration::from_secs(10) {
            let left = std::fs::read_dir("/proc").into_iter().flatten().flatten().any(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == me.as_os_str().as_encoded_bytes()))
            });
            if !left {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::mem::forget(self);
    }

    /// Stops `ftexec up` with SIGINT, as a terminal's Ctrl-C does (to its process group: `up`
    /// alone, the replicas have groups of their own), and waits for it; its exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.stop_within(libc::SIGINT, Duration::from_secs(8))
    }

    fn stop_within(&mut self, sig: i32, within: Duration) -> Option<std::process::ExitStatus> {
        // SAFETY: signals our own child's process group.
        unsafe { libc::kill(-(self.up.id() as i32), sig) };
        self.wait_within(within)
    }

    /// `up`'s exit status if it ends within `within`.
    fn wait_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if let Ok(Some(st)) = self.up.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Up {
    /// Ctrl-C, and a clean stop: `up` passes it to the program through the leader, every
    /// replica replays the program to its end, and `up` exits with the program's status, which
    /// it returns. Panics (with the logs) if `up` takes over 60 s or says that a replica did
    /// not reach the program's end.
    pub fn stop_cleanly(&mut self) -> std::process::ExitStatus {
        self.stop_cleanly_with(libc::SIGINT)
    }

    /// [`Up::stop_cleanly`] with another stop signal than Ctrl-C's (SIGTERM, as systemd stops a
    /// service: MariaDB ignores SIGINT).
    pub fn stop_cleanly_with(&mut self, sig: i32) -> std::process::ExitStatus {
        // A replica restarted after a kill must have caught up: one that is down at the stop
        // does not reach the program's end.
        self.wait_lockstep();
        // The program's processes as they are 10 s into the stop: where a slow stop waits.
        let runs: Vec<u32> = self.status().iter().filter_map(|n| n["pid"].as_u64()).map(|p| p as u32).collect();
        let mut states = String::new();
        let st = self.stop_within(sig, Duration::from_secs(10)).or_else(|| {
            states = process_states(&runs);
            self.wait_within(Duration::from_secs(50))
        });
        let st = st.unwrap_or_else(|| {
            panic!("ftexec up did not stop within 60 s of Ctrl-C; at 10 s:\n{states}\n{}", self.logs())
        });
        assert!(
            self.up_log().contains("every replica replayed the program to its end"),
            "not a clean stop ({st}); at 10 s:\n{states}\n{}",
            self.logs()
        );
        st
    }

    /// Waits (30 s at most, then panics) until the 3 replicas are live at the leader's event,
    /// with the same commit index.
    pub fn wait_lockstep(&self) {
        let t0 = Instant::now();
        loop {
            let st = self.status();
            let events: Vec<u64> = st.iter().filter_map(|n| n["events"].as_u64()).collect();
            let leader = st.iter().find(|n| n["role"] == "leader").and_then(|n| n["events"].as_u64());
            if let (3, 3, true, Some(l)) = (st.len(), events.len(), st.iter().all(|n| n["live"] == true), leader) {
                // The commit index reaches a follower with the next message after the leader's:
                // equal events and, within the wait, equal commit indexes.
                let commits: Vec<u64> = st.iter().filter_map(|n| n["commit"].as_u64()).collect();
                if events.iter().all(|e| *e == l) && commits.windows(2).all(|w| w[0] == w[1]) {
                    println!("lockstep: every replica at event {l}");
                    return;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "replicas did not reach the leader's position (events and commit index): {st:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// How the replicas' data directories (DIR/nN/data) differ from replica 1's, one line per
    /// difference (a file missing, or another kind, mode, owner, size or content); empty when
    /// they are identical.
    pub fn data_differences(&self) -> Vec<String> {
        let trees: Vec<_> = (1..=3).map(|n| tree(&self.dir.join(format!("n{n}/data")))).collect();
        let mut out = Vec::new();
        for (i, t) in trees.iter().enumerate().skip(1) {
            let keys: std::collections::BTreeSet<_> = trees[0].keys().chain(t.keys()).collect();
            for k in keys {
                if trees[0].get(k) != t.get(k) {
                    out.push(format!("{k}: replica 1 has {:?}, replica {} has {:?}", trees[0].get(k), i + 1, t.get(k)));
                }
            }
        }
        out
    }
}

/// Every entry under `root` by relative path: its kind, mode, owner, size and a hash of its
/// content (a symlink's target).
fn tree(root: &Path) -> std::collections::BTreeMap<String, (String, u32, u32, u32, u64, u64)> {
    use std::hash::{Hash, Hasher};
    use std::os::unix::fs::MetadataExt;
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let Ok(md) = std::fs::symlink_metadata(&p) else { continue };
            let mut h = std::collections::hash_map::DefaultHasher::new();
            let kind = if md.is_dir() {
                todo.push(p.clone());
                "dir"
            } else if md.file_type().is_symlink() {
                std::fs::read_link(&p).ok().hash(&mut h);
                "symlink"
            } else {
                std::fs::read(&p).ok().hash(&mut h);
                "file"
            };
            let size = if md.is_dir() { 0 } else { md.size() };
            let rel = p.strip_prefix(root).unwrap_or(&p).to_string_lossy().into_owned();
            out.insert(rel, (kind.to_string(), md.mode(), md.uid(), md.gid(), size, h.finish()));
        }
    }
    out
}

/// Each process under `roots` (recursively): pid, name, state, wait channel and syscall, one
/// per line.
fn process_states(roots: &[u32]) -> String {
    let mut out = String::new();
    let mut todo = roots.to_vec();
    while let Some(p) = todo.pop() {
        let read = |f: &str| std::fs::read_to_string(format!("/proc/{p}/{f}")).unwrap_or_default();
        let state = read("status").lines().find(|l| l.starts_with("State:")).unwrap_or("").to_string();
        out += &format!(
            "{p} {} {state} wchan={} syscall={}\n",
            read("comm").trim(),
            read("wchan"),
            read("syscall").trim()
        );
        todo.extend(children(p));
    }
    out
}

/// The children of process `pid` (/proc/PID/task/*/children).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| s.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>())
        .collect()
}

impl Drop for Up {
    fn drop(&mut self) {
        if self.stop().is_none() {
            // SAFETY: signals our own child's process group.
            unsafe { libc::kill(-(self.up.id() as i32), libc::SIGKILL) };
            let _ = self.up.wait();
        }
    }
}
