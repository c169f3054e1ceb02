//! PostgreSQL 15 for the replicated tests: an initdb output to start replicas from, the
//! `postgres -D` command line that `ftexec up` runs (root through `runuser -u postgres`), and
//! psql and pgbench as the postgres user.

use crate::free_port;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A user's uid from /etc/passwd.
pub fn uid_of(user: &str) -> Option<u32> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&user)).then(|| f.get(2)?.parse().ok()).flatten()
    })
}

/// Runs `prog args` as the postgres user (runuser); its output.
pub fn as_postgres(prog: &Path, args: &[&str]) -> Output {
    Command::new("runuser").args(["-u", "postgres", "--"]).arg(prog).args(args).output().expect("runuser")
}

pub struct Postgres {
    pub bin: PathBuf,
    /// initdb's output: the replicas' `--initial-data`.
    pub init: PathBuf,
    pub port: String,
    /// `runuser -u postgres -- postgres -D CLUSTER/data ...`.
    pub cmd: Vec<String>,
}

impl Postgres {
    /// Runs initdb under `tmp` for a cluster in `cluster` (its data directory `cluster/data`).
    /// None (the test says it skips) where PostgreSQL 15 is not installed.
    pub fn prepare(tmp: &Path, cluster: &Path) -> Option<Postgres> {
        let bin = PathBuf::from("/usr/lib/postgresql/15/bin");
        if !bin.join("postgres").exists() || !bin.join("pgbench").exists() || uid_of("postgres").is_none() {
            println!("SKIPPED: PostgreSQL 15 is not installed (scripts/deps.sh installs postgresql)");
            return None;
        }
        std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let init = tmp.join("initdb");
        let sockets = tmp.join("sockets");
        std::fs::create_dir_all(&sockets).expect("mkdir");
        std::fs::set_permissions(&sockets, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        std::fs::create_dir_all(&init).expect("mkdir");
        std::os::unix::fs::chown(&init, uid_of("postgres"), None).expect("chown");
        std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let initdb = as_postgres(&bin.join("initdb"), &["-D", &init.to_string_lossy(), "-A", "trust"]);
        assert!(initdb.status.success(), "initdb: {}", String::from_utf8_lossy(&initdb.stderr));
        let port = free_port().to_string();
        let postgres = bin.join("postgres").to_string_lossy().into_owned();
        let data = cluster.join("data").to_string_lossy().into_owned();
        let sockets = sockets.to_string_lossy().into_owned();
        let cmd: Vec<String> = [
            "runuser",
            "-u",
            "postgres",
            "--",
            &postgres,
            "-D",
            &data,
            "-p",
            &port,
            "-k",
            &sockets,
            "-c",
            "listen_addresses=127.0.0.1",
        ]
        .map(String::from)
        .to_vec();
        Some(Postgres { bin, init, port, cmd })
    }

    /// The server's command line without runuser, for an `ftexec up` run by the postgres user.
    pub fn direct_cmd(&self) -> Vec<String> {
        let at = self.cmd.iter().position(|a| a == "--").map_or(0, |i| i + 1);
        self.cmd[at..].to_vec()
    }

    /// `psql -tAc q`: its output, or None when it failed (the server does not answer yet).
    pub fn sql(&self, q: &str) -> Option<String> {
        let o = as_postgres(&self.bin.join("psql"), &["-h", "127.0.0.1", "-p", &self.port, "-tAc", q, "postgres"]);
        o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    /// `pgbench ARGS postgres` against this server.
    pub fn pgbench(&self, args: &[&str]) -> Output {
        let mut all = vec!["-h", "127.0.0.1", "-p", &self.port];
        all.extend_from_slice(args);
        all.push("postgres");
        as_postgres(&self.bin.join("pgbench"), &all)
    }

    /// The transactions a pgbench run reports as processed (panics with its output if none).
    pub fn processed(out: &Output) -> u64 {
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
            .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
            .unwrap_or_else(|| panic!("pgbench said: {text}{}", String::from_utf8_lossy(&out.stderr)))
    }
}
