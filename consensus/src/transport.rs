//! TCP transport of `eraftpb::Message`s between nodes.
//!
//! Frames are `len: u32 LE | protobuf Message`. Each peer has one outgoing connection, owned
//! by a sender thread fed by a bounded queue: when the queue is full the message is dropped
//! (Raft retransmits), so a slow or dead peer never blocks the ready loop nor grows memory.
//! The sender reconnects with exponential backoff (10 ms .. 1 s); while it is disconnected,
//! queued messages are discarded. Incoming connections get one reader thread each, which
//! pushes decoded messages into the node's bounded inbox (also dropping when full).
//!
//! Fault injection ([`Faults`]) drops traffic to/from chosen peers, for partition tests.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::{Mutex, RwLock};
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use slog::{debug, info, warn, Logger};

/// Largest accepted frame.
pub const MAX_FRAME: usize = 64 << 20;
/// Messages queued per peer before new ones are dropped.
pub const PEER_QUEUE: usize = 4096;
/// Entry bytes above which an append is sent as several (see [`split_append`]).
const APPEND_PART: usize = 8 << 20;

/// An append whose entries hold more than `max` bytes, as consecutive appends of at most `max`
/// bytes each (or one entry): raft-rs merges the appends to one follower within a ready without
/// a bound (`batch_append`), and the parts of one 80 MiB event (varnish maps its 80 MiB shared
/// log) made an 84 MiB frame, over [`MAX_FRAME`], which the follower refused by closing the
/// connection, at every retry. Each part names the entry before it (index and term), as raft
/// does, and carries the commit index; a follower applies them in order.
fn split_append(mut m: Message, max: usize) -> Vec<Message> {
    let bytes = |e: &raft::prelude::Entry| e.data.len() + e.context.len() + 32;
    if m.get_msg_type() != MessageType::MsgAppend
        || m.entries.len() < 2
        || m.entries.iter().map(bytes).sum::<usize>() <= max
    {
        return vec![m];
    }
    let entries: Vec<raft::prelude::Entry> = m.take_entries().into();
    let mut out = Vec::new();
    let (mut index, mut log_term) = (m.index, m.log_term);
    let mut part: Vec<raft::prelude::Entry> = Vec::new();
    let mut size = 0;
    let mut flush = |part: &mut Vec<raft::prelude::Entry>, index: &mut u64, log_term: &mut u64| {
        let mut p = m.clone();
        p.index = *index;
        p.log_term = *log_term;
        if let Some(last) = part.last() {
            (*index, *log_term) = (last.index, last.term);
        }
        p.set_entries(std::mem::take(part).into());
        out.push(p);
    };
    for e in entries {
        if !part.is_empty() && size + bytes(&e) > max {
            flush(&mut part, &mut index, &mut log_term);
            size = 0;
        }
        size += bytes(&e);
        part.push(e);
    }
    flush(&mut part, &mut index, &mut log_term);
    out
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot listen on raft address {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start transport thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Transport-level fault injection: drop every message to or from the listed peers.
#[derive(Default)]
pub struct Faults {
    isolated: AtomicBool,
    blocked: RwLock<HashSet<u64>>,
    lose_snapshots: AtomicBool,
    snapshots_lost: AtomicU64,
}

impl Faults {
    /// Drops all traffic to and from every peer.
    pub fn set_isolated(&self, on: bool) {
        self.isolated.store(on, Ordering::SeqCst);
    }
    pub fn is_isolated(&self) -> bool {
        self.isolated.load(Ordering::SeqCst)
    }
    /// Drops traffic to and from one peer.
    pub fn block(&self, peer: u64, on: bool) {
        let mut b = self.blocked.write();
        if on {
            b.insert(peer);
        } else {
            b.remove(&peer);
        }
    }
    fn drops(&self, peer: u64) -> bool {
        self.is_isolated() || self.blocked.read().contains(&peer)
    }
    /// Loses every snapshot this node sends (as a peer restarting or a dropped connection
    /// loses one), and nothing else.
    pub fn lose_snapshots(&self, on: bool) {
        self.lose_snapshots.store(on, Ordering::SeqCst);
    }
    /// How many snapshots [`Faults::lose_snapshots`] lost.
    pub fn snapshots_lost(&self) -> u64 {
        self.snapshots_lost.load(Ordering::SeqCst)
    }
    fn loses(&self, m: &Message) -> bool {
        let lost = m.get_msg_type() == MessageType::MsgSnapshot && self.lose_snapshots.load(Ordering::SeqCst);
        if lost {
            self.snapshots_lost.fetch_add(1, Ordering::SeqCst);
        }
        lost
    }
}

/// Counters, for status output.
#[derive(Default, Debug)]
pub struct TransportStats {
    pub sent: AtomicU64,
    pub dropped_full: AtomicU64,
    pub dropped_fault: AtomicU64,
    pub received: AtomicU64,
}

struct Peer {
    addr: String,
    tx: Sender<Message>,
}

pub struct Transport {
    logger: Logger,
    peers: Mutex<HashMap<u64, Peer>>,
    faults: Arc<Faults>,
    stats: Arc<TransportStats>,
    stop: Arc<AtomicBool>,
    local_addr: SocketAddr,
    accept: Mutex<Option<thread::JoinHandle<()>>>,
}

fn write_frame(buf: &mut Vec<u8>, m: &Message) {
    let bytes = m.write_to_bytes().unwrap_or_default();
    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(&bytes);
}

impl Transport {
    /// Listens on `listen` and delivers incoming messages to `inbox`.
    pub fn start(listen: &str, inbox: Sender<Message>, logger: Logger) -> Result<Arc<Transport>, TransportError> {
        let listener =
            TcpListener::bind(listen).map_err(|source| TransportError::Bind { addr: listen.to_string(), source })?;
        let local_addr =
            listener.local_addr().map_err(|source| TransportError::Bind { addr: listen.to_string(), source })?;
        let t = Arc::new(Transport {
            logger: logger.clone(),
            peers: Mutex::new(HashMap::new()),
            faults: Arc::new(Faults::default()),
            stats: Arc::new(TransportStats::default()),
            stop: Arc::new(AtomicBool::new(false)),
            local_addr,
            accept: Mutex::new(None),
        });
        let faults = t.faults.clone();
        let stats = t.stats.clone();
        let stop = t.stop.clone();
        listener.set_nonblocking(true).map_err(|source| TransportError::Bind { addr: listen.to_string(), source })?;
        let handle = thread::Builder::new()
            .name("raft-accept".into())
            .spawn(move || {
                // Polls so that `shutdown` can stop it and release the port promptly.
                while !stop.load(Ordering::SeqCst) {
                    let conn = match listener.accept() {
                        Ok((c, _)) => c,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(10));
                            continue;
                        }
                        Err(_) => {
                            thread::sleep(Duration::from_millis(10));
                            continue;
                        }
                    };
                    let _ = conn.set_nonblocking(false);
                    let (inbox, faults, stats, stop, logger) =
                        (inbox.clone(), faults.clone(), stats.clone(), stop.clone(), logger.clone());
                    let _ = thread::Builder::new()
                        .name("raft-recv".into())
                        .spawn(move || read_loop(conn, inbox, faults, stats, stop, logger));
                }
            })
            .map_err(TransportError::Spawn)?;
        *t.accept.lock() = Some(handle);
        Ok(t)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }
    pub fn stats(&self) -> &TransportStats {
        &self.stats
    }

    /// Adds (or re-addresses) a peer.
    pub fn add_peer(&self, id: u64, addr: &str) {
        let mut peers = self.peers.lock();
        if peers.get(&id).is_some_and(|p| p.addr == addr) {
            return;
        }
        let (tx, rx) = bounded(PEER_QUEUE);
        let (a, logger, stop, stats) = (addr.to_string(), self.logger.clone(), self.stop.clone(), self.stats.clone());
        let spawned = thread::Builder::new()
            .name(format!("raft-send-{id}"))
            .spawn(move || send_loop(id, a, rx, stop, stats, logger));
        match spawned {
            Ok(_) => {
                info!(self.logger, "raft peer added"; "peer" => id, "addr" => addr);
                peers.insert(id, Peer { addr: addr.to_string(), tx });
            }
            Err(e) => warn!(self.logger, "cannot spawn sender thread"; "peer" => id, "err" => %e),
        }
    }

    pub fn has_peer(&self, id: u64) -> bool {
        self.peers.lock().contains_key(&id)
    }

    /// Queues messages; never blocks.
    pub fn send(&self, msgs: Vec<Message>) {
        if msgs.is_empty() {
            return;
        }
        let peers = self.peers.lock();
        for m in msgs.into_iter().flat_map(|m| split_append(m, APPEND_PART)) {
            if self.faults.drops(m.to) || self.faults.loses(&m) {
                self.stats.dropped_fault.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let Some(p) = peers.get(&m.to) else {
                debug!(self.logger, "message to unknown peer dropped"; "to" => m.to);
                continue;
            };
            match p.tx.try_send(m) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.stats.dropped_full.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Stops the threads and closes the listening socket before returning (readers and
    /// senders notice within ~0.5 s; their connections then close).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.peers.lock().clear();
        if let Some(h) = self.accept.lock().take() {
            let _ = h.join();
        }
    }
}

fn read_loop(
    conn: TcpStream,
    inbox: Sender<Message>,
    faults: Arc<Faults>,
    stats: Arc<TransportStats>,
    stop: Arc<AtomicBool>,
    logger: Logger,
) {
    let _ = conn.set_nodelay(true);
    let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
    let mut r = BufReader::with_capacity(256 << 10, conn);
    let mut len = [0u8; 4];
    let mut body = Vec::new();
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match read_full(&mut r, &mut len, &stop) {
            Ok(true) => {}
            Ok(false) | Err(_) => return,
        }
        let n = u32::from_le_bytes(len) as usize;
        if n > MAX_FRAME {
            warn!(logger, "oversized raft frame; closing connection"; "len" => n);
            return;
        }
        body.resize(n, 0);
        match read_full(&mut r, &mut body, &stop) {
            Ok(true) => {}
            _ => return,
        }
        let m = match Message::parse_from_bytes(&body) {
            Ok(m) => m,
            Err(e) => {
                warn!(logger, "undecodable raft frame; closing connection"; "err" => %e);
                return;
            }
        };
        if faults.drops(m.from) {
            stats.dropped_fault.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        stats.received.fetch_add(1, Ordering::Relaxed);
        match inbox.try_send(m) {
            Ok(()) | Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` on a clean EOF before the first byte.
fn read_full(r: &mut impl Read, buf: &mut [u8], stop: &AtomicBool) -> std::io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => {
                if got == 0 {
                    return Ok(false);
                }
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            Ok(n) => got += n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut
                    || e.kind() == std::io::ErrorKind::Interrupted =>
            {
                if stop.load(Ordering::SeqCst) {
                    return Ok(false);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn send_loop(
    peer: u64,
    addr: String,
    rx: Receiver<Message>,
    stop: Arc<AtomicBool>,
    stats: Arc<TransportStats>,
    logger: Logger,
) {
    let mut conn: Option<TcpStream> = None;
    let mut backoff = Duration::from_millis(10);
    let mut buf = Vec::with_capacity(64 << 10);
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let first = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if conn.is_none() {
            let target: Option<SocketAddr> = addr.parse().ok();
            let res = match target {
                Some(sa) => TcpStream::connect_timeout(&sa, Duration::from_millis(500)),
                None => TcpStream::connect(addr.as_str()),
            };
            match res {
                Ok(c) => {
                    let _ = c.set_nodelay(true);
                    let _ = c.set_write_timeout(Some(Duration::from_secs(2)));
                    debug!(logger, "connected to peer"; "peer" => peer, "addr" => &addr);
                    backoff = Duration::from_millis(10);
                    conn = Some(c);
                }
                Err(e) => {
                    debug!(logger, "cannot connect to peer; backing off"; "peer" => peer,
                        "addr" => &addr, "err" => %e, "backoff_ms" => backoff.as_millis() as u64);
                    thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    // Whatever queued meanwhile is stale; Raft will resend.
                    while rx.try_recv().is_ok() {}
                    continue;
                }
            }
        }
        buf.clear();
        write_frame(&mut buf, &first);
        let mut n = 1u64;
        while buf.len() < (1 << 20) {
            match rx.try_recv() {
                Ok(m) => {
                    write_frame(&mut buf, &m);
                    n += 1;
                }
                Err(_) => break,
            }
        }
        let ok = match conn.as_mut() {
            Some(c) => c.write_all(&buf).is_ok(),
            None => false,
        };
        if ok {
            stats.sent.fetch_add(n, Ordering::Relaxed);
        } else {
            debug!(logger, "send to peer failed; reconnecting"; "peer" => peer);
            conn = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn logger() -> Logger {
        Logger::root(slog::Discard, slog::o!())
    }

    fn msg(to: u64, bytes: usize) -> Message {
        let mut m = Message { to, from: 1, ..Default::default() };
        m.context = vec![7u8; bytes].into();
        m
    }

    /// An append of five 5 MiB entries goes as five appends, each naming the entry before it;
    /// a small one goes whole.
    #[test]
    fn large_appends_are_sent_in_parts() {
        let entry = |index: u64, len: usize| raft::prelude::Entry {
            index,
            term: 3,
            data: vec![index as u8; len].into(),
            ..Default::default()
        };
        let mut m = Message { to: 2, from: 1, index: 10, log_term: 2, commit: 12, ..Default::default() };
        m.set_msg_type(MessageType::MsgAppend);
        m.set_entries((11..=15).map(|i| entry(i, 5 << 20)).collect::<Vec<_>>().into());
        let parts = split_append(m.clone(), APPEND_PART);
        assert_eq!(parts.len(), 5);
        let mut prev = (10, 2);
        for (p, i) in parts.iter().zip(11..) {
            assert_eq!((p.index, p.log_term, p.commit, p.to), (prev.0, prev.1, 12, 2));
            assert_eq!(p.entries.iter().map(|e| e.index).collect::<Vec<_>>(), vec![i]);
            assert_eq!(p.entries[0].data.len(), 5 << 20);
            prev = (i, 3);
        }
        // Small entries share parts; none is lost or reordered.
        m.set_entries((11..=60).map(|i| entry(i, 1 << 20)).collect::<Vec<_>>().into());
        let parts = split_append(m.clone(), APPEND_PART);
        let all: Vec<u64> = parts.iter().flat_map(|p| p.entries.iter().map(|e| e.index)).collect();
        assert_eq!(all, (11..=60).collect::<Vec<_>>());
        assert!(parts.iter().all(|p| write_len(p) < MAX_FRAME && p.entries.len() <= 8), "{}", parts.len());
        m.set_entries(vec![entry(11, 100), entry(12, 100)].into());
        assert_eq!(split_append(m.clone(), APPEND_PART), vec![m]);
    }

    fn write_len(m: &Message) -> usize {
        let mut b = Vec::new();
        write_frame(&mut b, m);
        b.len()
    }

    /// A dead peer and a peer that accepts but never reads: `send` never blocks, the excess is
    /// dropped and counted, and memory stays bounded by the queue.
    #[test]
    fn slow_or_dead_peers_never_block_send() {
        let (tx, _rx) = bounded(16);
        let t = Transport::start("127.0.0.1:0", tx, logger()).expect("start");
        // Dead: a port nobody listens on.
        let dead = TcpListener::bind("127.0.0.1:0").expect("bind");
        let dead_addr = dead.local_addr().expect("addr").to_string();
        drop(dead);
        t.add_peer(2, &dead_addr);
        // Slow: accepts, never reads.
        let slow = TcpListener::bind("127.0.0.1:0").expect("bind");
        t.add_peer(3, &slow.local_addr().expect("addr").to_string());
        let t0 = Instant::now();
        for _ in 0..(PEER_QUEUE * 4) {
            t.send(vec![msg(2, 16 << 10), msg(3, 16 << 10)]);
        }
        let took = t0.elapsed();
        let dropped = t.stats().dropped_full.load(Ordering::Relaxed);
        assert!(dropped > 0, "nothing dropped");
        // Informational: 32k sends of 16 KiB each.
        eprintln!("send loop took {took:?}, dropped {dropped}");
        t.shutdown();
        drop(slow);
    }

    /// Messages arrive in order over a real connection; isolation drops them.
    #[test]
    fn delivers_in_order_and_isolation_drops() {
        let (tx_a, _rx_a) = bounded(1024);
        let (tx_b, rx_b) = bounded(1024);
        let a = Transport::start("127.0.0.1:0", tx_a, logger()).expect("a");
        let b = Transport::start("127.0.0.1:0", tx_b, logger()).expect("b");
        a.add_peer(2, &b.local_addr().to_string());
        for i in 0..100u64 {
            let mut m = msg(2, 8);
            m.index = i;
            a.send(vec![m]);
        }
        for i in 0..100u64 {
            let m = rx_b.recv_timeout(Duration::from_secs(10)).expect("message");
            assert_eq!(m.index, i);
        }
        b.faults().set_isolated(true);
        a.send(vec![msg(2, 8)]);
        assert!(rx_b.recv_timeout(Duration::from_millis(300)).is_err(), "isolated node received");
        b.faults().set_isolated(false);
        a.send(vec![msg(2, 8)]);
        assert!(rx_b.recv_timeout(Duration::from_secs(10)).is_ok());
        a.shutdown();
        b.shutdown();
    }
}
