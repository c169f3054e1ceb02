//! Real servers from Debian under `ftexec up --replicas 3`, with a kill -9 of the leader (issue
//! 16): they run on every replica, and after a failover, exactly as natively, including the
//! process state they set up at start (a dropped uid, a working directory outside the data
//! directory) and the initial data given with `--initial-data`.

use ft_testsuite::cluster::Up;
use ft_testsuite::postgres::{uid_of, Postgres};
use ft_testsuite::{find_program, free_port, temp_dir};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

/// One memcached text command and its reply up to `end`; None if the server does not answer.
fn memcached(port: u16, cmd: &str, end: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(cmd.as_bytes()).ok()?;
    let mut r = BufReader::new(s);
    let mut out = String::new();
    while !out.ends_with(end) {
        if r.read_line(&mut out).ok()? == 0 {
            return None;
        }
    }
    Some(out)
}

/// One HTTP/1.0 request (`body` sent with its length): the status line and the reply's body.
fn request(port: u16, method: &str, path: &str, body: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!("{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.lines().next()?.to_string();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// GET `path`: the status line and the body.
fn http_get(port: u16, path: &str) -> Option<(String, String)> {
    request(port, "GET", path, "")
}

/// `busybox httpd -f` serving `root` on `port`, or None (with a note) when busybox is missing.
fn busybox_httpd(port: u16, root: &Path) -> Option<Vec<String>> {
    let Some(busybox) = find_program("busybox") else {
        println!("SKIPPED: busybox is not installed (scripts/deps.sh installs busybox-static)");
        return None;
    };
    let args = ["httpd", "-f", "-p", &format!("127.0.0.1:{port}"), "-h", &root.to_string_lossy()].map(String::from);
    Some([vec![busybox.to_string_lossy().into_owned()], args.to_vec()].concat())
}

/// The real, effective, saved and fs uid of a process (the Uid: line of /proc/PID/status).
fn uids(pid: u32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .map(|v| v.split_whitespace().filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default()
}

/// Waits until each of the 3 replicas runs a `name` process, all as `uid`; returns their pids.
fn all_run_as(up: &Up, name: &str, uid: u32) -> Vec<u32> {
    let mut last = Vec::new();
    up.retry(Duration::from_secs(30), &format!("3 {name} processes running as uid {uid}"), || {
        let pids = up.program_pids(name);
        last = pids.iter().map(|p| uids(*p)).collect::<Vec<_>>();
        (pids.len() == 3 && last.iter().all(|u| u == &vec![uid; 4])).then_some(pids)
    })
}

/// `memcached -u memcache -t 4`: it drops to the memcache user after binding its port. Every
/// replica's memcached runs as that uid (before, followers and a new leader ran it as root:
/// setuid ran at record only); 300 connections, one per command, leave every replica live; keys
/// written before a kill -9 of the leader are read after it, and the restarted replica's
/// memcached runs as memcache too.
#[test]
fn memcached_runs_as_its_user_on_every_replica_and_after_failover() {
    let (Some(memcached_bin), Some(uid)) = (find_program("memcached"), uid_of("memcache")) else {
        println!("SKIPPED: memcached or its user is not installed (scripts/deps.sh installs it)");
        return;
    };
    let tmp = temp_dir("srv-memcached");
    let port = free_port();
    let cmd: Vec<String> = vec![
        memcached_bin.to_string_lossy().into_owned(),
        "-u".into(),
        "memcache".into(),
        "-t".into(),
        "4".into(),
        "-p".into(),
        port.to_string(),
        "-l".into(),
        "127.0.0.1".into(),
    ];
    let mut up = Up::start(&tmp.path().join("cluster"), &cmd, &[], &[]);
    up.retry(Duration::from_secs(30), "memcached answering", || memcached(port, "version\r\n", "\r\n"));
    let before = all_run_as(&up, "memcached", uid);
    // A connection per command: the main thread accepts while the workers close connections,
    // so fds are freed and taken again across threads (before, a follower diverged within a
    // few hundred: "the recording has new fd(s) [23], but the program now does [24]").
    for i in 0..300 {
        let r = memcached(port, &format!("set k{i} 0 0 {}\r\nv{i}\r\n", format!("v{i}").len()), "\r\n");
        assert_eq!(r.as_deref(), Some("STORED\r\n"), "set k{i}:\n{}", up.logs());
    }
    let st = up.status();
    assert!(
        st.len() == 3 && st.iter().all(|n| n["live"] == true) && !up.up_log().contains("died"),
        "a replica failed under 300 connections: {st:?}\n{}",
        up.logs()
    );
    up.kill_leader();
    let got = up.retry(Duration::from_secs(30), "memcached answering after the failover", || {
        memcached(port, "get k0 k7 k299\r\n", "END\r\n")
    });
    assert_eq!(got, "VALUE k0 0 2\r\nv0\r\nVALUE k7 0 2\r\nv7\r\nVALUE k299 0 4\r\nv299\r\nEND\r\n");
    let after = all_run_as(&up, "memcached", uid);
    assert_ne!(before, after, "the killed replica's memcached is replaced by a restarted one");
    println!("memcached pids {before:?} then {after:?}, all as uid {uid}");
    // Ctrl-C: memcached exits on SIGINT, on every replica.
    assert_eq!(up.stop_cleanly().code(), Some(0), "{}", up.logs());
}

/// `busybox httpd -f -h SITE`, SITE outside the data directory: httpd chdirs there at start and
/// serves relative paths. Before, chdir ran at record only: after a failover every file was
/// 404. The same files and the same 404 before and after a kill -9 of the leader.
#[test]
fn busybox_httpd_serves_the_same_files_after_failover() {
    let tmp = temp_dir("srv-httpd");
    let site = tmp.path().join("site");
    std::fs::create_dir_all(site.join("docs")).unwrap();
    std::fs::write(site.join("index.html"), "<h1>ftexec</h1>\n").unwrap();
    std::fs::write(site.join("docs/a.txt"), "replicated, not copied\n").unwrap();
    let port = free_port();
    let Some(cmd) = busybox_httpd(port, &site) else { return };
    let mut up = Up::start(&tmp.path().join("cluster"), &cmd, &[], &[]);
    let pages = |up: &Up| {
        ["/index.html", "/docs/a.txt", "/missing.html"]
            .map(|p| up.retry(Duration::from_secs(30), &format!("httpd answering {p}"), || http_get(port, p)))
    };
    let before = pages(&up);
    assert!(before[0].0.contains("200") && before[0].1 == "<h1>ftexec</h1>\n", "{before:?}");
    assert!(before[1].0.contains("200") && before[1].1 == "replicated, not copied\n", "{before:?}");
    assert!(before[2].0.contains("404"), "{before:?}");
    up.kill_leader();
    std::thread::sleep(Duration::from_millis(200));
    let after = pages(&up);
    assert_eq!(
        after.map(|(s, b)| (s.split_whitespace().nth(1).map(String::from), b)),
        before.map(|(s, b)| (s.split_whitespace().nth(1).map(String::from), b)),
        "the pages after the failover"
    );
    // Ctrl-C: httpd dies of the SIGINT on every replica, and `up` says so (128 + 2).
    assert_eq!(up.stop_cleanly().code(), Some(130), "{}", up.logs());
}

/// `ftexec up --initial-data SRC`: every replica's data directory starts as a copy of SRC
/// (owners and modes kept), so a program that serves its data directory finds the files there
/// (before, `up` had no way to give it files: DIR/data is only the mount point, and files put
/// there are hidden by each replica's mount). Served the same after a kill -9 of the leader.
#[test]
fn up_with_initial_data_starts_every_replica_from_it() {
    let tmp = temp_dir("srv-initial");
    let src = tmp.path().join("initial");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("page.txt"), "from --initial-data\n").unwrap();
    std::fs::set_permissions(src.join("page.txt"), std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    let dir = tmp.path().join("cluster");
    let port = free_port();
    let Some(cmd) = busybox_httpd(port, &dir.join("data")) else { return };
    let mut up = Up::start(&dir, &cmd, &["--initial-data", src.to_str().unwrap()], &[]);
    let get = |up: &Up| up.retry(Duration::from_secs(30), "httpd answering", || http_get(port, "/page.txt"));
    assert_eq!(get(&up).1, "from --initial-data\n");
    let config = std::fs::read_to_string(up.config()).unwrap();
    assert!(config.contains("initial_data"), "{config}");
    for n in 1..=3 {
        let copy = dir.join(format!("n{n}/data/page.txt"));
        let md = std::fs::metadata(&copy).unwrap_or_else(|e| panic!("{}: {e}", copy.display()));
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o777, 0o640, "{}", copy.display());
    }
    up.kill_leader();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(get(&up).1, "from --initial-data\n");
    up.stop_cleanly();
    assert_eq!(up.data_differences(), Vec::<String>::new(), "the replicas' data directories after Ctrl-C");
    drop(up);
    // The same cluster directory with other initial data is refused, naming --fresh.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let r = std::process::Command::new(ft_testsuite::ftexec())
        .args(["up", "--dir"])
        .arg(&dir)
        .args(["--initial-data", other.to_str().unwrap(), "--"])
        .args(&cmd)
        .output()
        .unwrap();
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("--fresh"), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(Path::new(&dir).join("cluster.toml").exists());
}

/// nginx with its default process model: a master (root) and 4 workers (dropped to nobody) that
/// share the listening socket; the master passes each worker the others' channel sockets with
/// SCM_RIGHTS. Before, a follower diverged at the first recvmsg that carried an fd ("the
/// recording has new fd(s) [8], but the program now does a placeholder at 4") and the cluster
/// lost its quorum; going live could not share the listening socket with a worker that had
/// dropped its privileges (pidfd_getfd EPERM), and its error log, opened as /dev/stderr, went
/// to /dev/null. 100 requests, a kill -9 of the leader, 100 more; with Debian's `sendfile on`,
/// a 300 KB file every 10th request.
#[test]
fn nginx_with_4_workers_serves_across_a_failover() {
    let Some(nginx) =
        find_program("nginx").or_else(|| Some(Path::new("/usr/sbin/nginx").to_path_buf()).filter(|p| p.exists()))
    else {
        println!("SKIPPED: nginx is not installed (scripts/deps.sh installs nginx-light)");
        return;
    };
    let tmp = temp_dir("srv-nginx");
    let prefix = tmp.path().join("nginx");
    for d in ["conf", "html", "logs"] {
        std::fs::create_dir_all(prefix.join(d)).unwrap();
    }
    // The workers run as nobody: they must reach the site.
    for d in [tmp.path(), prefix.as_path(), prefix.join("html").as_path()] {
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    std::fs::write(prefix.join("html/index.html"), "<h1>nginx under ftexec</h1>\n").unwrap();
    // Larger than a socket's buffer: nginx sends it with several sendfile calls (Debian's
    // default `sendfile on`; sendfile was refused with ENOSYS and nginx failed every request).
    let big: String = (0..300_000u32).map(|i| char::from(b'a' + (i * 7 % 26) as u8)).collect();
    std::fs::write(prefix.join("html/big.txt"), &big).unwrap();
    let port = free_port();
    std::fs::write(
        prefix.join("conf/nginx.conf"),
        format!(
            "daemon off;\nmaster_process on;\nworker_processes 4;\nerror_log /dev/stderr notice;\npid {}/logs/nginx.pid;\n\
             events {{ worker_connections 64; }}\nhttp {{ access_log off; sendfile on; server {{ listen 127.0.0.1:{port}; root {}/html; }} }}\n",
            prefix.display(),
            prefix.display()
        ),
    )
    .unwrap();
    let cmd: Vec<String> = vec![
        nginx.to_string_lossy().into_owned(),
        "-p".into(),
        prefix.to_string_lossy().into_owned(),
        "-c".into(),
        "conf/nginx.conf".into(),
    ];
    let mut up = Up::start(&tmp.path().join("cluster"), &cmd, &[], &[]);
    let serve = |up: &Up, what: &str| {
        for i in 0..100 {
            let (status, body) =
                up.retry(Duration::from_secs(30), &format!("nginx answering request {i} {what}"), || {
                    http_get(port, "/")
                });
            assert!(
                status.contains("200") && body == "<h1>nginx under ftexec</h1>\n",
                "{what}, request {i}: {status} {body:?}"
            );
            if i % 10 == 0 {
                let (status, body) =
                    up.retry(Duration::from_secs(30), &format!("big.txt {i} {what}"), || http_get(port, "/big.txt"));
                assert!(status.contains("200") && body == big, "{what}, big.txt {i}: {status}, {} bytes", body.len());
            }
        }
    };
    serve(&up, "before the failover");
    let workers = up.retry(Duration::from_secs(30), "3 x (master + 4 workers)", || {
        let p = up.program_pids("nginx");
        (p.len() == 15).then_some(p)
    });
    let nobody = uid_of("nobody").unwrap_or(65534);
    let as_nobody = workers.iter().filter(|p| uids(**p) == vec![nobody; 4]).count();
    assert_eq!(as_nobody, 12, "every replica's 4 workers run as nobody");
    up.kill_leader();
    std::thread::sleep(Duration::from_millis(200));
    serve(&up, "after the failover");
    up.assert_only_the_killed_replica_died();
    // The error log opened as /dev/stderr is the new leader's own stderr, not /dev/null.
    assert!(!up.logs().contains("cannot be opened again"), "{}", up.logs());
    // Ctrl-C: the master's fast shutdown (it stops its workers, then exits 0) on every replica.
    assert_eq!(up.stop_cleanly().code(), Some(0), "{}", up.logs());
}

/// apache2 with its event MPM (a master and worker processes of many threads, dropped to
/// www-data), 8 clients at once: each worker thread maps the file it serves (EnableMMAP) and
/// unmaps it after the reply. At record the kernel chose a mapping's address while another
/// thread ran on to its munmap (no stop), and every follower diverged at "mmap ... at another
/// address" under load. 8 x 25 requests, a kill -9 of the leader, 8 x 25 more; no replica but
/// the killed one may die.
#[test]
fn apache2_event_mpm_serves_concurrent_clients_across_a_failover() {
    let apache = Path::new("/usr/sbin/apache2");
    let (true, Some(www)) = (apache.exists(), uid_of("www-data")) else {
        println!("SKIPPED: apache2 is not installed (scripts/deps.sh installs it)");
        return;
    };
    let tmp = temp_dir("srv-apache2");
    let root = tmp.path().join("www");
    std::fs::create_dir_all(&root).unwrap();
    for d in [tmp.path(), root.as_path()] {
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let page = "<h1>apache2 under ftexec</h1>\n";
    std::fs::write(root.join("index.html"), page).unwrap();
    let port = free_port();
    let modules = "/usr/lib/apache2/modules";
    let conf = tmp.path().join("apache2.conf");
    std::fs::write(
        &conf,
        format!(
            "ServerRoot /etc/apache2\n\
             LoadModule mpm_event_module {modules}/mod_mpm_event.so\n\
             LoadModule authz_core_module {modules}/mod_authz_core.so\n\
             LoadModule dir_module {modules}/mod_dir.so\n\
             LoadModule mime_module {modules}/mod_mime.so\n\
             Listen 127.0.0.1:{port}\nServerName localhost\nUser www-data\nGroup www-data\n\
             PidFile {dir}/apache2.pid\nMutex file:{dir} default\nErrorLog /dev/stderr\n\
             TypesConfig /etc/mime.types\nDocumentRoot {root}\n\
             <Directory {root}>\n  Require all granted\n</Directory>\nDirectoryIndex index.html\n",
            dir = tmp.path().display(),
            root = root.display()
        ),
    )
    .unwrap();
    let cmd: Vec<String> = vec![
        apache.to_string_lossy().into_owned(),
        "-f".into(),
        conf.to_string_lossy().into_owned(),
        "-DFOREGROUND".into(),
    ];
    let mut up = Up::start(&tmp.path().join("cluster"), &cmd, &[], &[]);
    up.retry(Duration::from_secs(60), "apache2 answering", || http_get(port, "/index.html"));
    let serve = |up: &Up, what: &str| {
        std::thread::scope(|s| {
            for c in 0..8 {
                s.spawn(move || {
                    for i in 0..25 {
                        let (status, body) = up.retry(
                            Duration::from_secs(30),
                            &format!("apache2 answering client {c}, request {i} {what}"),
                            || http_get(port, "/index.html"),
                        );
                        assert!(
                            status.contains("200") && body == page,
                            "{what}, client {c} request {i}: {status} {body:?}"
                        );
                    }
                });
            }
        });
    };
    serve(&up, "before the failover");
    let workers = up.program_pids("apache2");
    assert!(workers.iter().any(|p| uids(*p).first() == Some(&www)), "no apache2 process runs as www-data: {workers:?}");
    up.kill_leader();
    std::thread::sleep(Duration::from_millis(200));
    serve(&up, "after the failover");
    up.assert_only_the_killed_replica_died();
    assert!(!up.logs().contains("divergence"), "{}", up.logs());
    assert_eq!(up.stop_cleanly().code(), Some(0), "{}", up.logs());
}

/// A UDP key-value server (python3) that also logs each write to a unix datagram socket it
/// connected to (as a program logs to /dev/log). Going live made every socket that was not
/// listening a socket whose peer had gone: after a failover the UDP socket read EOF (the
/// server died on an empty datagram) and the log socket would have given EPIPE. Now datagram
/// sockets are made again with their address and peer: the keys set before the failover are
/// read after it, and the log receives the new leader's writes.
#[test]
fn a_udp_server_and_its_log_socket_work_across_a_failover() {
    use std::net::UdpSocket;
    use std::os::unix::net::UnixDatagram;
    let tmp = temp_dir("srv-udp");
    let sink_path = tmp.path().join("log.sock");
    let sink = UnixDatagram::bind(&sink_path).unwrap();
    sink.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let port = free_port();
    let script = tmp.path().join("udp_kv.py");
    std::fs::write(
        &script,
        format!(
            "import socket\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             s.bind(('127.0.0.1', {port}))\n\
             log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
             log.connect('{}')\n\
             kv = {{}}\n\
             while True:\n\
             \x20   data, addr = s.recvfrom(65536)\n\
             \x20   op, key, *val = data.decode().split()\n\
             \x20   if op == 'set':\n\
             \x20       kv[key] = val[0]\n\
             \x20       log.send(('set ' + key).encode())\n\
             \x20       s.sendto(b'ok', addr)\n\
             \x20   else:\n\
             \x20       s.sendto(kv.get(key, '-').encode(), addr)\n",
            sink_path.display()
        ),
    )
    .unwrap();
    let Some(python) = find_program("python3") else {
        println!("SKIPPED: python3 is not installed");
        return;
    };
    let cmd = vec![python.to_string_lossy().into_owned(), script.to_string_lossy().into_owned()];
    let mut up = Up::start(&tmp.path().join("cluster"), &cmd, &[], &[]);
    let ask = |line: &str| -> Option<String> {
        let c = UdpSocket::bind("127.0.0.1:0").ok()?;
        c.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
        c.send_to(line.as_bytes(), ("127.0.0.1", port)).ok()?;
        let mut buf = [0u8; 512];
        let n = c.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let logged = |want: &str| {
        let mut buf = [0u8; 512];
        loop {
            let n =
                sink.recv(&mut buf).unwrap_or_else(|e| panic!("the log socket got no {want:?}: {e}\n{}", up.logs()));
            if &buf[..n] == want.as_bytes() {
                return;
            }
        }
    };
    for i in 0..10 {
        let r = up.retry(Duration::from_secs(60), "the UDP server answering a set", || ask(&format!("set k{i} v{i}")));
        assert_eq!(r, "ok");
        logged(&format!("set k{i}"));
    }
    up.kill_leader();
    for i in 0..10 {
        let r = up.retry(Duration::from_secs(30), "the UDP server answering after the failover", || {
            ask(&format!("get k{i}"))
        });
        assert_eq!(r, format!("v{i}"), "key k{i} after the failover\n{}", up.logs());
    }
    let r = up.retry(Duration::from_secs(30), "a set after the failover", || ask("set after yes"));
    assert_eq!(r, "ok");
    logged("set after");
    up.assert_only_the_killed_replica_died();
    up.stop_cleanly();
}

/// PostgreSQL 15 under `up`: initdb's output as `--initial-data`, `postgres -D` started by root
/// through `runuser -u postgres` (it drops to postgres; it refused to start while getuid said
/// root). It uses System V shared memory and semaphores (in the program's own IPC namespace) and
/// POSIX shared memory (its own /dev/shm). `pgbench -i`, a parallel index build, then `pgbench
/// -c 4` with the leader killed mid-run: every transaction pgbench saw committed is in
/// pgbench_history afterwards, and the new leader takes more.
#[test]
fn postgresql_keeps_every_committed_pgbench_transaction_across_a_failover() {
    let tmp = temp_dir("srv-postgres");
    let dir = tmp.path().join("cluster");
    let Some(pg) = Postgres::prepare(tmp.path(), &dir) else { return };
    let mut up = Up::start(&dir, &pg.cmd, &["--initial-data", pg.init.to_str().unwrap()], &[]);
    let sql = |q: &str| pg.sql(q);
    up.retry(Duration::from_secs(60), "postgres answering", || sql("select 1"));
    let i = pg.pgbench(&["-i", "-s", "1"]);
    assert!(i.status.success(), "pgbench -i: {}\n{}", String::from_utf8_lossy(&i.stderr), up.logs());
    // A parallel index build with the default settings: the leader waits for its workers to
    // attach in a 200-instruction loop without a syscall, preempted at its fixpoint (the
    // probe's limit was 128 instructions, and the build failed after 10 s).
    assert_eq!(
        sql("create table big as select g as id, md5(g::text) as v from generate_series(1, 300000) g").as_deref(),
        Some("SELECT 300000")
    );
    assert_eq!(sql("create index big_v on big (v)").as_deref(), Some("CREATE INDEX"), "{}", up.logs());
    let out = std::thread::scope(|s| {
        let t = s.spawn(|| pg.pgbench(&["-c", "4", "-T", "8"]));
        std::thread::sleep(Duration::from_secs(3));
        up.kill_leader();
        t.join().expect("pgbench")
    });
    let done = Postgres::processed(&out);
    assert!(done > 0, "no transaction before the kill: {}", String::from_utf8_lossy(&out.stdout));
    let history: u64 = up.retry(Duration::from_secs(60), "postgres answering after the failover", || {
        sql("select count(*) from pgbench_history")?.parse().ok()
    });
    println!("pgbench saw {done} transactions committed; pgbench_history has {history}");
    assert!(history >= done, "pgbench saw {done} committed, pgbench_history has {history}");
    assert_eq!(
        sql("insert into pgbench_history (tid, bid, aid, delta) values (1, 1, 1, 1)").as_deref(),
        Some("INSERT 0 1")
    );
    assert_eq!(sql("select count(*) from pgbench_history").and_then(|v| v.parse::<u64>().ok()), Some(history + 1));
    // Ctrl-C: a fast shutdown (its shutdown checkpoint written) on every replica, the killed
    // one included, and the same cluster files on each.
    assert_eq!(up.stop_cleanly().code(), Some(0), "{}", up.logs());
    assert_eq!(up.data_differences(), Vec::<String>::new(), "the replicas' data directories after Ctrl-C");
}

/// One event larger than a Raft entry may be (16 MiB): a server that reads a 20 MiB file
/// outside the data directory with one read at start (python's `read()`), so the recorded
/// result is one 20 MiB event. It is proposed in parts and joined by the followers (before, the
/// proposal was refused and the cluster elected leaders forever without starting); the answer
/// is the same after a kill -9 of the leader.
#[test]
fn an_event_larger_than_a_raft_entry_is_replicated_in_parts() {
    let Some(python) = find_program("python3") else {
        println!("SKIPPED: python3 is not installed (scripts/deps.sh installs it)");
        return;
    };
    let tmp = temp_dir("srv-large-event");
    let big = tmp.path().join("big.bin");
    let data: Vec<u8> = (0..20u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(&big, &data).unwrap();
    let port = free_port();
    let script = format!(
        "import socket\nd = open({:?}, 'rb').read()\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', {port}))\ns.listen()\nwhile True:\n    c, _ = s.accept()\n    c.recv(100)\n    \
         c.sendall(b'%d %d\\n' % (len(d), sum(d[::4096])))\n    c.close()\n",
        big.to_string_lossy()
    );
    let cmd = vec![python.to_string_lossy().into_owned(), "-c".into(), script];
    let up = Up::start(&tmp.path().join("cluster"), &cmd, &[], &[]);
    let ask = |up: &Up| {
        up.retry(Duration::from_secs(60), "the server answering", || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            s.write_all(b"?\n").ok()?;
            let mut out = String::new();
            s.read_to_string(&mut out).ok()?;
            (!out.is_empty()).then_some(out)
        })
    };
    let want = format!("{} {}\n", data.len(), data.iter().step_by(4096).map(|&b| u64::from(b)).sum::<u64>());
    assert_eq!(ask(&up), want);
    // Every replica replayed the 20 MiB event.
    up.retry(Duration::from_secs(60), "3 replicas live at the same event", || {
        let st = up.status();
        let ev: Vec<u64> = st.iter().filter_map(|n| n["events"].as_u64()).collect();
        (ev.len() == 3 && ev.windows(2).all(|w| w[0] == w[1]) && st.iter().all(|n| n["live"] == true)).then_some(())
    });
    up.kill_leader();
    assert_eq!(ask(&up), want, "after the failover");
}

/// MariaDB 10.11 under `up`, started by root and dropping to mysql (`--user`), from
/// mariadb-install-db's output as initial data. It reads its MAC address with SIOCGIFCONF and
/// SIOCGIFHWADDR (ioctls whose number does not say that they write: replay gave it nothing and
/// the followers diverged at start), and binds its unix socket in the data directory, which it
/// removes at shutdown (the followers, which bind nothing, diverged at that unlink). 30 rows
/// before and 30 after a kill -9 of the leader are all there; SIGTERM stops it cleanly on every
/// replica, and the replicas' data directories are identical.
#[test]
fn mariadb_keeps_every_row_across_a_failover_and_stops_cleanly() {
    // mariadbd is in /usr/sbin; mariadb-install-db is a shell script.
    let (server, install) = (Path::new("/usr/sbin/mariadbd"), Path::new("/usr/bin/mariadb-install-db"));
    let (true, true, Some(client)) = (server.exists(), install.exists(), find_program("mariadb")) else {
        println!("SKIPPED: MariaDB is not installed (scripts/deps.sh installs mariadb-server)");
        return;
    };
    let Some(mysql) = uid_of("mysql") else {
        println!("SKIPPED: no mysql user (scripts/deps.sh installs mariadb-server, which makes it)");
        return;
    };
    let tmp = temp_dir("srv-mariadb");
    let dir = tmp.path().join("cluster");
    let init = tmp.path().join("init");
    let made = std::process::Command::new(install)
        .args(["--no-defaults", "--user=mysql", "--auth-root-authentication-method=normal"])
        .arg(format!("--datadir={}", init.display()))
        .output()
        .expect("mariadb-install-db");
    assert!(made.status.success(), "mariadb-install-db: {}", String::from_utf8_lossy(&made.stderr));
    assert_eq!(
        std::fs::metadata(init.join("mysql")).map(|m| std::os::unix::fs::MetadataExt::uid(&m)).ok(),
        Some(mysql)
    );
    let port = free_port().to_string();
    let data = dir.join("data");
    let cmd: Vec<String> = vec![
        server.to_string_lossy().into_owned(),
        "--no-defaults".into(),
        format!("--datadir={}", data.display()),
        "--user=mysql".into(),
        format!("--port={port}"),
        "--bind-address=127.0.0.1".into(),
        format!("--socket={}", data.join("mysqld.sock").display()),
        "--skip-grant-tables".into(),
        "--innodb-buffer-pool-size=16M".into(),
    ];
    let mut up = Up::start(&dir, &cmd, &["--initial-data", init.to_str().unwrap()], &[]);
    let sql = |q: &str| -> Option<String> {
        let out = std::process::Command::new(&client)
            .args(["-h", "127.0.0.1", "-P", &port, "-u", "root", "--connect-timeout=5", "-N", "-B", "-e", q])
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    up.retry(Duration::from_secs(90), "mariadb answering", || sql("select 1"));
    assert_eq!(sql("create database t; create table t.kv (k int primary key, v varchar(20))").as_deref(), Some(""));
    let insert = |rows: std::ops::RangeInclusive<u32>| {
        for i in rows {
            let q = format!("insert into t.kv values ({i}, 'v{i}')");
            assert_eq!(sql(&q).as_deref(), Some(""), "row {i}\n{}", up.logs());
        }
    };
    insert(1..=30);
    up.kill_leader();
    up.retry(Duration::from_secs(60), "mariadb answering after the failover", || sql("select count(*) from t.kv"));
    insert(31..=60);
    assert_eq!(sql("select count(*), sum(k) from t.kv").as_deref(), Some("60\t1830"), "{}", up.logs());
    assert_eq!(up.stop_cleanly_with(libc::SIGTERM).code(), Some(0), "{}", up.logs());
    assert_eq!(up.data_differences(), Vec::<String>::new(), "the replicas' data directories after SIGTERM");
}

/// gunicorn (a master and 2 prefork workers, a WSGI app that appends to a file of its data
/// directory): every write acknowledged before a kill -9 of the leader is read back after it,
/// by the same workers. Each worker tells the master it lives by fchmod of an unlinked file
/// in /tmp, which the master fstats; going live gave the program /dev/null for that file (it is
/// gone): the workers' fchmod then set the machine's /dev/null to mode 0 or 1, and where that
/// failed the master, seeing /dev/null's old ctime, killed both workers as timed out ("WORKER
/// TIMEOUT") within a second of the failover.
#[test]
fn gunicorn_workers_live_on_across_a_failover() {
    // A Python script, not an ELF file: found on PATH as it is.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let Some(gunicorn) = std::env::split_paths(&path).map(|d| d.join("gunicorn")).find(|p| p.is_file()) else {
        println!("SKIPPED: gunicorn is not installed (scripts/deps.sh installs it)");
        return;
    };
    let Some(python) = find_program("python3") else { return };
    let tmp = temp_dir("srv-gunicorn");
    let src = tmp.path().join("app");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("app.py"),
        r#"import os
def app(environ, start):
    key = environ["PATH_INFO"].strip("/")
    if environ["REQUEST_METHOD"] == "PUT":
        value = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)).decode()
        with open("kv.txt", "a") as f:
            f.write(key + " " + value + "\n")
            f.flush()
            os.fsync(f.fileno())
        body = "stored"
    else:
        kv = dict(l.split(" ", 1) for l in open("kv.txt").read().splitlines()) if os.path.exists("kv.txt") else {}
        body = kv.get(key, "(none)")
    body = ("%s by %d\n" % (body, os.getpid())).encode()
    start("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"#,
    )
    .unwrap();
    let port = free_port();
    let cmd: Vec<String> = [
        python.to_string_lossy().as_ref(),
        gunicorn.to_string_lossy().as_ref(),
        "-w",
        "2",
        "-b",
        &format!("127.0.0.1:{port}"),
        "app:app",
    ]
    .map(String::from)
    .to_vec();
    let mut up = Up::start(&tmp.path().join("cluster"), &cmd, &["--initial-data", src.to_str().unwrap()], &[]);
    // "VALUE by PID": the value, and the worker that answered.
    let split = |(status, body): (String, String)| {
        assert!(status.contains("200"), "{status} {body}");
        let (v, pid) = body.trim_end().rsplit_once(" by ").unwrap_or_else(|| panic!("{body}"));
        (v.to_string(), pid.parse::<u32>().unwrap_or_else(|_| panic!("{body}")))
    };
    let mut answered = std::collections::BTreeSet::new();
    for i in 0..20 {
        let r = up.retry(Duration::from_secs(30), "gunicorn storing", || {
            request(port, "PUT", &format!("/k{i}"), &format!("v{i}"))
        });
        assert_eq!(split(r).0, "stored");
    }
    up.kill_leader();
    std::thread::sleep(Duration::from_millis(200));
    for i in 0..20 {
        let r = up.retry(Duration::from_secs(30), "gunicorn reading", || http_get(port, &format!("/k{i}")));
        let (v, pid) = split(r);
        assert_eq!(v, format!("v{i}"), "k{i} after the failover");
        answered.insert(pid);
    }
    // Past the master's checks of its workers (every second), they still answer.
    std::thread::sleep(Duration::from_secs(3));
    let (v, pid) = split(up.retry(Duration::from_secs(30), "gunicorn reading", || http_get(port, "/k7")));
    assert_eq!(v, "v7");
    answered.insert(pid);
    // The program's stderr, as the leader of each moment printed it (the replicas' logs): its
    // master booted two workers, once, and they answered every request.
    let dir = up.config().parent().expect("cluster dir").to_path_buf();
    let log: String =
        (1..=3).map(|n| std::fs::read_to_string(dir.join(format!("n{n}/ftexec.log"))).unwrap_or_default()).collect();
    let booted: std::collections::BTreeSet<u32> =
        log.lines().filter_map(|l| l.split_once("Booting worker with pid: ")?.1.trim().parse().ok()).collect();
    // A stand-in for the gone file that is not the program's own lets the workers' fchmod
    // change the machine's /dev/null (it did: to mode 0 and 1, which breaks every program that
    // opens it). Put back before the assertion, so that a failure does not break the machine.
    let null_mode =
        std::fs::metadata("/dev/null").map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777);
    if null_mode.as_ref().is_ok_and(|m| *m != 0o666) {
        let _ = std::fs::set_permissions("/dev/null", std::os::unix::fs::PermissionsExt::from_mode(0o666));
    }
    assert_eq!(null_mode.ok(), Some(0o666), "the program changed /dev/null's mode");
    assert!(!log.contains("WORKER TIMEOUT"), "the master timed its workers out after the failover:\n{log}");
    assert_eq!(booted.len(), 2, "workers booted: {booted:?}\n{log}");
    assert!(answered.is_subset(&booted), "{answered:?} answered, {booted:?} were booted");
    up.stop_cleanly();
    assert_eq!(up.data_differences(), Vec::<String>::new(), "the replicas' data directories after Ctrl-C");
}

/// varnish 7 (a manager, and a child that compiles its VCL with cc at start) in front of a
/// backend, across a kill -9 of the leader: it starts replicated, serves cached and new pages
/// after the failover, and its child lives on. Each was broken: its 80 MiB shared log made a Raft
/// frame over the limit (followers refused it for ever), the compiler's object file in /tmp was
/// verified as a library (replay refused: missing), the socket the manager bound and the child
/// listens on was not made again (the child accepted on a dead socket), and a session's
/// connection became a unix socket (the child asserted on its address and died).
#[test]
fn varnish_serves_across_a_failover_with_its_child_alive() {
    let Some(varnishd) = ["/usr/sbin/varnishd"].into_iter().map(std::path::PathBuf::from).find(|p| p.is_file()) else {
        println!("SKIPPED: varnish is not installed (scripts/deps.sh installs it)");
        return;
    };
    let Some(python) = find_program("python3") else { return };
    let tmp = temp_dir("srv-varnish");
    let www = tmp.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("a.txt"), "page a\n").unwrap();
    let backend_port = free_port();
    let mut backend = std::process::Command::new(&python)
        .args(["-m", "http.server", &backend_port.to_string(), "--bind", "127.0.0.1", "--directory"])
        .arg(&www)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let port = free_port();
    // Its working directory under /var/lib/varnish (the child, as user vcache, must reach it).
    let name = format!("ftexec-test-{port}");
    let cmd: Vec<String> = [
        varnishd.to_string_lossy().as_ref(),
        "-F",
        "-a",
        &format!("127.0.0.1:{port}"),
        "-b",
        &format!("127.0.0.1:{backend_port}"),
        "-n",
        &name,
        "-s",
        "malloc,16m",
    ]
    .map(String::from)
    .to_vec();
    let mut up = Up::start(&tmp.path().join("cluster"), &cmd, &[], &[]);
    let get = |up: &Up, path: &str| {
        up.retry(Duration::from_secs(60), &format!("varnish serving {path}"), || {
            http_get(port, path).filter(|(status, _)| status.contains("200"))
        })
    };
    assert_eq!(get(&up, "/a.txt").1, "page a\n");
    up.kill_leader();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(get(&up, "/a.txt").1, "page a\n", "after the failover");
    std::fs::write(www.join("b.txt"), "page b\n").unwrap();
    assert_eq!(get(&up, "/b.txt").1, "page b\n", "a page first asked for after the failover");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(get(&up, "/b.txt").1, "page b\n");
    // The program's stderr, as each leader printed it: one child, started once, never died.
    let dir = up.config().parent().expect("cluster dir").to_path_buf();
    let log: String =
        (1..=3).map(|n| std::fs::read_to_string(dir.join(format!("n{n}/ftexec.log"))).unwrap_or_default()).collect();
    let started = log.lines().filter(|l| l.contains("Child (") && l.contains(") Started")).count();
    let _ = backend.kill();
    let _ = backend.wait();
    up.stop();
    let _ = std::fs::remove_dir_all(format!("/var/lib/varnish/{name}"));
    assert!(!log.contains("died"), "varnish's child died:\n{log}");
    // Its manager keeps its pid file, made as root, open while it runs as user varnish: the
    // new leader's manager has it again, not /dev/null.
    assert!(!log.contains("cannot be opened again"), "a file varnish had open was lost:\n{log}");
    assert_eq!(started, 1, "children started:\n{log}");
}
