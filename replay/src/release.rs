//! Output commit without stopping the program. A socket write of the leader is answered at its
//! seccomp stop (the program sees every byte written) and its bytes are queued here with a
//! [`Ticket`] for the events logged before it; a thread sends them once the ticket is durable
//! (committed in Raft). The program computes on while its replies wait, as DESIGN.md's output
//! commit asks: outputs wait, not inputs.
//!
//! Each socket (by inode) has its own queue, flushed with MSG_DONTWAIT so that a client that
//! does not read holds back only its own replies. Bytes that never become durable are never
//! sent: a ticket that fails (leadership lost) drops every queue and the recorder stops.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Events that become durable; outputs that depend on them wait for [`Commit::wait`].
pub trait Commit: Send + Sync {
    /// Blocks until durable. Err(why) if they never will be (this replica lost its leadership,
    /// its Raft node stopped).
    fn wait(&self) -> std::result::Result<(), String>;
}

/// What an output waits for. Outputs with no new event between them share one ticket.
pub type Ticket = Arc<dyn Commit>;

/// A ticket for nothing: the events before the output are durable already.
pub struct Durable;

impl Commit for Durable {
    fn wait(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// Queued bytes of one socket above which a write takes the slow path (it waits for the queue
/// to be sent, then runs in the program), so that memory stays bounded for a client that does
/// not read.
pub const SOCKET_QUEUE_LIMIT: usize = 4 << 20;

struct Item {
    key: u64,
    fd: OwnedFd,
    bytes: Vec<u8>,
    ticket: Ticket,
}

#[derive(Default)]
struct State {
    queued: HashMap<u64, usize>,
    total: usize,
    failed: Option<String>,
    sent: u64,
    dropped: u64,
    /// Sockets whose queue the recorder gave up waiting for (None: all of them).
    abandon: Vec<Option<u64>>,
}

type Shared = Arc<(Mutex<State>, Condvar)>;

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.0.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How a drain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drained {
    /// Every byte was sent (or dropped with a socket the client had closed).
    Sent,
    /// The client did not take them in time: its connection was reset (see [`Releaser::drain`]).
    Abandoned,
}

/// The queues and the thread that sends them.
pub struct Releaser {
    tx: Option<Sender<Item>>,
    shared: Shared,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Releaser {
    pub fn new() -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Item>();
        let shared: Shared = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (shared.clone(), stop.clone());
        let thread = std::thread::Builder::new().name("ftexec-release".into()).spawn(move || {
            let mut w = Worker { out: HashMap::new(), shared: s, last_ok: None };
            loop {
                let got = if w.out.is_empty() {
                    rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
                } else {
                    rx.recv_timeout(POLL)
                };
                if st.load(Ordering::Relaxed) {
                    break;
                }
                match got {
                    Ok(item) => w.take(item),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(_) => break,
                }
                w.flush();
                w.abandon_requested();
            }
            // The session ends with replies unsent (it failed, or clients did not read): reset
            // those connections rather than end them cleanly with a reply cut short.
            w.abandon(None);
        })?;
        Ok(Releaser { tx: Some(tx), shared, stop, thread: Some(thread) })
    }

    /// Queues `bytes` for the socket `key` (its inode), to send on `fd` once `ticket` is durable.
    pub fn push(&self, key: u64, fd: OwnedFd, bytes: Vec<u8>, ticket: Ticket) {
        if bytes.is_empty() {
            return;
        }
        {
            let mut s = lock(&self.shared);
            *s.queued.entry(key).or_default() += bytes.len();
            s.total += bytes.len();
        }
        if let Some(tx) = &self.tx {
            // The thread only ends when we drop `tx`.
            let _ = tx.send(Item { key, fd, bytes, ticket });
        }
    }

    /// Bytes queued and not sent yet for socket `key`.
    pub fn queued(&self, key: u64) -> usize {
        lock(&self.shared).queued.get(&key).copied().unwrap_or(0)
    }

    /// Bytes queued and not sent yet, all sockets.
    pub fn total(&self) -> usize {
        lock(&self.shared).total
    }

    /// Why outputs can no longer be released, if so.
    pub fn failed(&self) -> Option<String> {
        lock(&self.shared).failed.clone()
    }

    /// (bytes sent, bytes dropped because their socket failed or was given up).
    pub fn totals(&self) -> (u64, u64) {
        let s = lock(&self.shared);
        (s.sent, s.dropped)
    }

    /// Waits until the queued bytes of socket `key` (None: of all) are sent; the thread's copies
    /// of those sockets are closed by then. Bytes a client has not taken after `timeout` are
    /// given up: the connection is reset (the program's next write to it fails, and the client
    /// sees a reset, not a clean end). Err(why) if they can never be sent (not durable).
    pub fn drain(&self, key: Option<u64>, timeout: Duration) -> std::result::Result<Drained, String> {
        let left = |s: &State| match key {
            Some(k) => s.queued.get(&k).copied().unwrap_or(0),
            None => s.total,
        };
        let t0 = Instant::now();
        let mut s = lock(&self.shared);
        let mut abandoned = false;
        loop {
            if let Some(why) = &s.failed {
                return Err(why.clone());
            }
            if left(&s) == 0 {
                return Ok(if abandoned { Drained::Abandoned } else { Drained::Sent });
            }
            let limit = if abandoned { timeout + ABANDON_GRACE } else { timeout };
            let rest = limit.saturating_sub(t0.elapsed());
            if rest.is_zero() {
                if abandoned {
                    // The thread is stuck on a commit that has its own patience: report that.
                    return Err(format!("{} bytes of output could not be sent or given up", left(&s)));
                }
                abandoned = true;
                s.abandon.push(key);
                continue;
            }
            s = self.shared.1.wait_timeout(s, rest).unwrap_or_else(PoisonError::into_inner).0;
        }
    }
}

impl Drop for Releaser {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How often a queue blocked on a full socket buffer is retried.
const POLL: Duration = Duration::from_millis(1);
/// How long the thread gets to reset the connections a drain gave up on.
const ABANDON_GRACE: Duration = Duration::from_secs(2);

struct Outbox {
    fd: OwnedFd,
    chunks: VecDeque<(Vec<u8>, usize)>,
}

impl Outbox {
    fn left(&self) -> usize {
        self.chunks.iter().map(|(b, o)| b.len() - o).sum()
    }
}

struct Worker {
    out: HashMap<u64, Outbox>,
    shared: Shared,
    last_ok: Option<Ticket>,
}

/// Ends a connection whose replies were given up: SO_LINGER 0, then a TCP disconnect (RST);
/// sockets that cannot disconnect (AF_UNIX) are shut down both ways.
fn reset(fd: &OwnedFd) {
    ft_interposer::fdcopy::reset_on_close(fd);
    let sa = libc::sockaddr { sa_family: libc::AF_UNSPEC as libc::sa_family_t, sa_data: [0; 14] };
    // SAFETY: a sockaddr of ours and its size; AF_UNSPEC asks TCP to disconnect.
    let r = unsafe { libc::connect(fd.as_raw_fd(), &sa, std::mem::size_of::<libc::sockaddr>() as libc::socklen_t) };
    if r != 0 {
        // SAFETY: plain shutdown of a socket we hold.
        unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
    }
}

impl Worker {
    fn take(&mut self, item: Item) {
        if lock(&self.shared).failed.is_some() {
            account(&self.shared, item.key, item.bytes.len(), false);
            return;
        }
        let known = self.last_ok.as_ref().is_some_and(|t| Arc::ptr_eq(t, &item.ticket));
        if !known {
            if let Err(why) = item.ticket.wait() {
                // Never send what is not durable; the recorder sees `failed` and stops.
                lock(&self.shared).failed = Some(why);
                self.abandon(None);
                account(&self.shared, item.key, item.bytes.len(), false);
                return;
            }
            self.last_ok = Some(item.ticket);
        }
        let ob = self.out.entry(item.key).or_insert_with(|| Outbox { fd: item.fd, chunks: VecDeque::new() });
        ob.chunks.push_back((item.bytes, 0));
    }

    /// Resets the connections the recorder gave up on.
    fn abandon_requested(&mut self) {
        let asked = std::mem::take(&mut lock(&self.shared).abandon);
        for key in asked {
            self.abandon(key);
        }
    }

    /// Drops the queue of socket `key` (None: every queue), resetting its connection.
    fn abandon(&mut self, key: Option<u64>) {
        let keys: Vec<u64> = match key {
            Some(k) => vec![k],
            None => self.out.keys().copied().collect(),
        };
        for k in keys {
            if let Some(ob) = self.out.remove(&k) {
                reset(&ob.fd);
                let left = ob.left();
                drop(ob);
                account(&self.shared, k, left, false);
            }
        }
    }

    /// Sends what each socket takes now. The bytes are counted as gone only after the copy of a
    /// socket whose queue emptied is closed (see [`Releaser::drain`]).
    fn flush(&mut self) {
        let mut done = Vec::new();
        let mut counts: Vec<(u64, usize, bool)> = Vec::new();
        for (&key, ob) in self.out.iter_mut() {
            let mut broken = false;
            while let Some((bytes, off)) = ob.chunks.front_mut() {
                let rest = &bytes[*off..];
                // SAFETY: `rest` is a live slice of ours.
                let r = unsafe {
                    libc::send(
                        ob.fd.as_raw_fd(),
                        rest.as_ptr().cast(),
                        rest.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                if r < 0 {
                    let e = nix::errno::Errno::last();
                    if e == nix::errno::Errno::EAGAIN || e == nix::errno::Errno::EINTR {
                        break;
                    }
                    // The client is gone (EPIPE, ECONNRESET): its replies go nowhere, as they
                    // would natively; the program learns it from its next read or write.
                    broken = true;
                    break;
                }
                let n = r as usize;
                *off += n;
                let whole = *off >= bytes.len();
                counts.push((key, n, true));
                if whole {
                    ob.chunks.pop_front();
                }
            }
            if broken {
                counts.push((key, ob.left(), false));
                ob.chunks.clear();
            }
            if ob.chunks.is_empty() {
                done.push(key);
            }
        }
        for k in done {
            // Dropping our copy of the fd may close the socket (the program closed its own).
            self.out.remove(&k);
        }
        for (key, n, sent) in counts {
            account(&self.shared, key, n, sent);
        }
    }
}

/// Counts `n` bytes of socket `key` as sent or dropped, and wakes whoever drains.
fn account(shared: &Shared, key: u64, n: usize, sent: bool) {
    if n == 0 {
        return;
    }
    {
        let mut s = lock(shared);
        if let Some(q) = s.queued.get_mut(&key) {
            *q = q.saturating_sub(n);
            if *q == 0 {
                s.queued.remove(&key);
            }
        }
        s.total = s.total.saturating_sub(n);
        if sent {
            s.sent += n as u64;
        } else {
            s.dropped += n as u64;
        }
    }
    shared.1.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::AtomicBool;

    struct Gate {
        open: AtomicBool,
        fail: bool,
    }
    impl Commit for Gate {
        fn wait(&self) -> std::result::Result<(), String> {
            if self.fail {
                return Err("lost leadership".into());
            }
            while !self.open.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(())
        }
    }

    fn copy(s: &UnixStream) -> OwnedFd {
        s.try_clone().expect("dup").into()
    }

    #[test]
    fn bytes_wait_for_their_ticket_and_keep_their_order() {
        let (a, mut b) = UnixStream::pair().expect("socketpair");
        b.set_nonblocking(true).expect("nonblocking");
        let r = Releaser::new().expect("thread");
        let gate = Arc::new(Gate { open: AtomicBool::new(false), fail: false });
        r.push(7, copy(&a), b"one ".to_vec(), gate.clone());
        r.push(7, copy(&a), b"two".to_vec(), gate.clone());
        std::thread::sleep(Duration::from_millis(30));
        let mut buf = [0u8; 16];
        assert!(b.read(&mut buf).is_err(), "nothing may be sent before the commit");
        assert_eq!(r.queued(7), 7);
        gate.open.store(true, Ordering::Relaxed);
        assert_eq!(r.drain(None, Duration::from_secs(5)), Ok(Drained::Sent));
        b.set_nonblocking(false).expect("blocking");
        let mut got = [0u8; 7];
        b.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"one two");
        assert_eq!(r.totals(), (7, 0));
        assert_eq!(r.queued(7), 0);
    }

    #[test]
    fn a_drained_socket_is_no_longer_held_open() {
        let (a, mut b) = UnixStream::pair().expect("socketpair");
        let r = Releaser::new().expect("thread");
        let ok: Ticket = Arc::new(Gate { open: AtomicBool::new(true), fail: false });
        r.push(3, copy(&a), b"bye".to_vec(), ok);
        assert_eq!(r.drain(Some(3), Duration::from_secs(5)), Ok(Drained::Sent));
        // The program closes its fd: the peer must see the end of the stream at once, so our
        // copy is closed by the time drain returns.
        drop(a);
        b.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        let mut got = Vec::new();
        b.read_to_end(&mut got).expect("EOF, not a timeout");
        assert_eq!(got, b"bye");
    }

    #[test]
    fn a_failed_ticket_sends_nothing_and_says_why() {
        let (a, mut b) = UnixStream::pair().expect("socketpair");
        b.set_nonblocking(true).expect("nonblocking");
        let r = Releaser::new().expect("thread");
        r.push(1, copy(&a), b"secret".to_vec(), Arc::new(Gate { open: AtomicBool::new(true), fail: true }));
        let e = r.drain(None, Duration::from_secs(5)).expect_err("not durable");
        assert!(e.contains("lost leadership"), "{e}");
        let mut buf = [0u8; 8];
        assert!(b.read(&mut buf).is_err());
        assert_eq!(r.failed().as_deref(), Some("lost leadership"));
    }

    #[test]
    fn a_client_that_does_not_read_holds_back_only_its_own_socket() {
        let (slow, _slow_peer) = UnixStream::pair().expect("socketpair");
        let (fast, mut fast_peer) = UnixStream::pair().expect("socketpair");
        let r = Releaser::new().expect("thread");
        let ok: Ticket = Arc::new(Gate { open: AtomicBool::new(true), fail: false });
        // Far more than a socket buffer holds.
        r.push(1, copy(&slow), vec![b'x'; 8 << 20], ok.clone());
        r.push(2, copy(&fast), b"hello".to_vec(), ok);
        let mut got = [0u8; 5];
        fast_peer.read_exact(&mut got).expect("the fast client gets its reply");
        assert_eq!(&got, b"hello");
        assert!(r.queued(1) > 0);
        assert_eq!(r.drain(None, Duration::from_millis(100)), Ok(Drained::Abandoned));
        assert_eq!(r.queued(1), 0);
        // The slow client's connection was shut down, not left with a hole in its stream.
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0;
        loop {
            match (&_slow_peer).read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        assert!(n < 8 << 20, "only part of the reply could have been sent");
        let (sent, dropped) = r.totals();
        assert_eq!(sent + dropped, (8 << 20) + 5);
    }
}
