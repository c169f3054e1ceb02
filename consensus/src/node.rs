//! The node driver: one thread owns the `RawNode` and runs raft-rs's ready loop.
//!
//! Order inside one ready (raft-rs documentation, "Processing the Ready state"):
//! 1. send `messages` (leader's appends can go out before its own disk write),
//! 2. apply a received snapshot to storage,
//! 3. apply committed entries (deliver to the committed stream, apply conf changes),
//! 4. append `entries` and persist the `HardState` (one write, fdatasync per policy),
//! 5. only then send `persisted_messages` (votes and append responses),
//! 6. `advance`, record the new commit index, send the light ready's messages, apply its
//!    committed entries, `advance_apply`.
//!
//! Proposals that are waiting in the command channel when the driver comes round are merged
//! into one Raft entry (group commit); every proposer learns that entry's index.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender};
use parking_lot::Mutex;
use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeType, Entry, EntryType, Message};
use raft::{RawNode, StateRole};
use serde::Serialize;
use slog::{error, info, o, warn, Logger};

use crate::config::{ClusterConfig, ConfigError};
use crate::storage::{DiskStorage, StoreError, WriteBatch};
use crate::transport::{Faults, Transport, TransportError};

/// Errors returned by [`Node`].
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("data directory of this node (config field `{field}`): {source}")]
    Storage {
        field: String,
        #[source]
        source: StoreError,
    },
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("this node is not the leader (leader: {})", .leader.map_or("unknown".to_string(), |l| l.to_string()))]
    NotLeader { leader: Option<u64> },
    #[error("the proposal at index {index} was superseded by another leader's entry; propose again")]
    Dropped { index: u64 },
    #[error("timed out waiting for index {index} to commit")]
    Timeout { index: u64 },
    #[error("the node has stopped: {0}")]
    Stopped(String),
    #[error("proposal of {size} bytes is larger than the maximum of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("node {id} is not a voter of the cluster (voters: {voters:?})")]
    NotVoter { id: u64, voters: Vec<u64> },
    #[error("cannot start node thread: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("cannot record the isolation of this node in {path}: {source}")]
    IsolationMarker {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = NodeError> = std::result::Result<T, E>;

/// Largest single proposal: well under the transport's 64 MiB frame limit, so an entry always
/// fits in one message.
pub const MAX_PROPOSAL: usize = 16 << 20;

/// A node's Raft role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    PreCandidate,
}

impl From<StateRole> for Role {
    fn from(r: StateRole) -> Self {
        match r {
            StateRole::Leader => Role::Leader,
            StateRole::Follower => Role::Follower,
            StateRole::Candidate => Role::Candidate,
            StateRole::PreCandidate => Role::PreCandidate,
        }
    }
}

/// A point-in-time view of the node.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub id: u64,
    pub role: Role,
    pub term: u64,
    pub leader: Option<u64>,
    pub commit: u64,
    pub applied: u64,
    pub last_index: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub isolated: bool,
    /// On the leader: the highest index every voter is known to hold (the least `matched`);
    /// 0 on other nodes.
    pub held_by_all: u64,
    /// The first index of the log on disk (entries before it are compacted away).
    pub first_index: u64,
    /// Bytes of the log file.
    pub log_bytes: u64,
}

/// One committed Raft entry carrying proposals (group commit: several batches per entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedEntry {
    pub index: u64,
    pub term: u64,
    /// The proposed batches, in proposal order.
    pub batches: Vec<Vec<u8>>,
    /// Not an entry: the log up to `index` was replaced by a snapshot from the leader (this
    /// node was behind the leader's compacted log). The entries before are not delivered.
    pub snapshot: bool,
}

/// Sent to subscribers whenever the known leader or the term changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderChange {
    pub leader: Option<u64>,
    pub term: u64,
    pub is_self: bool,
}

/// Knobs not in the cluster file.
#[derive(Clone)]
pub struct NodeOptions {
    /// Start as a new member with an empty configuration, waiting to be added by a conf
    /// change (`ftctl add-node`), instead of bootstrapping the initial cluster.
    pub join: bool,
    /// Upper bound for one group-committed entry.
    pub max_entry_bytes: usize,
    /// Fault injection outlives the process, as a network partition outlives a restart of the
    /// program on the partitioned machine: [`Node::isolate`] keeps the marker file
    /// `<data_dir>/isolated`, and a node started while it exists starts isolated.
    pub persist_isolation: bool,
    /// Entries up to this index are already applied (a checkpoint of the program holds them):
    /// the committed stream starts after it. Clamped to the log's commit index.
    pub applied: u64,
    pub logger: Logger,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            join: false,
            max_entry_bytes: 1 << 20,
            persist_isolation: false,
            applied: 0,
            logger: Logger::root(slog::Discard, o!()),
        }
    }
}

/// The marker of a persisted isolation (see [`NodeOptions::persist_isolation`]).
pub const ISOLATION_MARKER: &str = "isolated";

/// The exact identity of a proposed entry: its index and the term it was proposed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct EntryId {
    pub index: u64,
    pub term: u64,
}

enum Cmd {
    Propose(Vec<u8>, Sender<Result<EntryId>>),
    ConfChange(ConfChange, Sender<Result<EntryId>>),
    Campaign,
    TransferLeader(u64, Sender<Result<()>>),
    Compact(u64, Sender<Result<bool>>),
    Stop,
}

/// What was applied at an index.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    /// Term of the entry committed at this index.
    term: u64,
    /// Term in which this node last proposed at this index, if it did.
    mine: Option<u64>,
}

struct Shared {
    status: Status,
    /// Threads waiting for an index to be applied.
    waiters: BTreeMap<u64, Vec<Sender<Option<Outcome>>>>,
    /// The last 65,536 applied indexes.
    outcomes: BTreeMap<u64, Outcome>,
    stopped: Option<String>,
}

struct Inner {
    shared: Mutex<Shared>,
    subscribers: Mutex<Vec<Sender<LeaderChange>>>,
}

/// A running Raft member.
pub struct Node {
    id: u64,
    cmd_tx: Sender<Cmd>,
    inner: Arc<Inner>,
    transport: Arc<Transport>,
    /// Fault injection: makes the storage's writes fail (the store itself stays with the driver,
    /// so its file lock is released when the driver stops).
    disk_fault: Arc<std::sync::atomic::AtomicBool>,
    committed_rx: Mutex<Option<Receiver<CommittedEntry>>>,
    driver: Mutex<Option<JoinHandle<()>>>,
    /// Where [`Node::isolate`] persists the isolation, if it does.
    isolation_marker: Option<std::path::PathBuf>,
}

/// A proposal handed to the driver; `wait` returns its log index (not its commit).
pub struct PendingProposal(Receiver<Result<EntryId>>);

impl PendingProposal {
    /// The index of the entry carrying the proposal.
    pub fn wait(self) -> Result<u64> {
        self.wait_entry().map(|e| e.index)
    }
    /// Index and term of the entry carrying the proposal (for [`Node::await_entry`]).
    pub fn wait_entry(self) -> Result<EntryId> {
        self.0.recv().unwrap_or_else(|_| Err(NodeError::Stopped("driver exited".into())))
    }
}

/// Encodes batches as `len: u32 LE | bytes` repeated.
fn encode_batches(batches: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(batches.iter().map(|b| b.len() + 4).sum());
    for b in batches {
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
    }
    out
}

/// Splits an entry's data into its batches (None: not framed as batches).
pub fn decode_batches(mut d: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    while !d.is_empty() {
        if d.len() < 4 {
            return None;
        }
        let n = u32::from_le_bytes([d[0], d[1], d[2], d[3]]) as usize;
        if d.len() < 4 + n {
            return None;
        }
        out.push(d[4..4 + n].to_vec());
        d = &d[4 + n..];
    }
    Some(out)
}

impl Node {
    /// Opens the node's storage, starts its transport and its driver thread.
    pub fn start(cfg: &ClusterConfig, id: u64, opts: NodeOptions) -> Result<Node> {
        cfg.validate()?;
        let me = cfg.node(id)?.clone();
        let logger = opts.logger.new(o!("node" => id));
        let field = cfg.node_field(id, "data_dir");
        let (store, _rec) = DiskStorage::open(&me.data_dir, cfg.fsync, &logger)
            .map_err(|source| NodeError::Storage { field: field.clone(), source })?;
        if store.is_empty() && !opts.join && me.initial {
            let voters: Vec<u64> = cfg.nodes.iter().filter(|n| n.initial).map(|n| n.id).collect();
            store.bootstrap(&voters).map_err(|source| NodeError::Storage { field, source })?;
        }
        // raft-rs refuses an applied index outside [first index - 1, commit].
        let hs = store.hard_state();
        let floor = raft::Storage::first_index(&store).unwrap_or(1).saturating_sub(1);
        let applied = opts.applied.min(hs.commit).max(if opts.applied > 0 { floor } else { 0 });
        let rc = raft::Config {
            id,
            applied,
            election_tick: cfg.election_ticks,
            heartbeat_tick: cfg.heartbeat_ticks,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            // Merge consecutive appends to the same follower into one message.
            batch_append: true,
            // A restarted node re-applies its log from the start: in bounded slices.
            max_committed_size_per_ready: 16 << 20,
            max_uncommitted_size: 256 << 20,
            ..Default::default()
        };
        rc.validate()?;
        let raw = RawNode::new(&rc, store.clone(), &logger)?;

        let (msg_tx, msg_rx) = bounded::<Message>(16 * 1024);
        let transport = Transport::start(&me.raft_addr, msg_tx, logger.clone())?;
        let isolation_marker = opts.persist_isolation.then(|| me.data_dir.join(ISOLATION_MARKER));
        // Before the first peer is known and the driver runs: not one message gets through.
        if isolation_marker.as_ref().is_some_and(|m| m.exists()) {
            transport.faults().set_isolated(true);
            warn!(logger, "fault injection: this node starts isolated (its raft traffic is dropped)";
                "marker" => %me.data_dir.join(ISOLATION_MARKER).display());
        }
        for n in &cfg.nodes {
            if n.id != id {
                transport.add_peer(n.id, &n.raft_addr);
            }
        }
        let status = status_of(&raw, 0, false);
        let inner = Arc::new(Inner {
            shared: Mutex::new(Shared { status, waiters: BTreeMap::new(), outcomes: BTreeMap::new(), stopped: None }),
            subscribers: Mutex::new(Vec::new()),
        });
        let (cmd_tx, cmd_rx) = unbounded();
        let (committed_tx, committed_rx) = unbounded();
        let conf_applied = store.conf_state().1;
        let disk_fault = store.write_fault_switch();
        let mut driver = Driver {
            raw,
            store,
            data_dir_field: cfg.node_field(id, "data_dir"),
            transport: transport.clone(),
            inner: inner.clone(),
            logger: logger.clone(),
            committed_tx,
            proposed: HashMap::new(),
            conf_applied,
            applied,
            tick: Duration::from_millis(cfg.tick_ms),
            max_entry_bytes: opts.max_entry_bytes.max(1),
            last_leader: (None, 0),
        };
        let handle = std::thread::Builder::new()
            .name(format!("raft-driver-{id}"))
            .spawn(move || {
                // raft-rs panics on broken invariants (e.g. unreadable storage); turn that
                // into a stopped node instead of hanging its API.
                let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| driver.run(cmd_rx, msg_rx)));
                let why = match res {
                    Ok(Ok(())) => "stopped".to_string(),
                    Ok(Err(e)) => {
                        error!(driver.logger, "raft driver failed"; "err" => %e);
                        e.to_string()
                    }
                    Err(p) => {
                        let msg = p
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "panic".into());
                        error!(driver.logger, "raft driver panicked"; "panic" => &msg);
                        format!("raft driver panicked: {msg}")
                    }
                };
                {
                    let mut s = driver.inner.shared.lock();
                    s.stopped = Some(why);
                    // Dropping the senders wakes every waiter with "stopped".
                    s.waiters.clear();
                }
                driver.transport.shutdown();
            })
            .map_err(NodeError::Spawn)?;
        Ok(Node {
            id,
            cmd_tx,
            inner,
            transport,
            disk_fault,
            committed_rx: Mutex::new(Some(committed_rx)),
            driver: Mutex::new(Some(handle)),
            isolation_marker,
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    fn send(&self, c: Cmd) -> Result<()> {
        self.cmd_tx.send(c).map_err(|_| NodeError::Stopped(self.stopped_reason()))
    }

    fn stopped_reason(&self) -> String {
        self.inner.shared.lock().stopped.clone().unwrap_or_else(|| "driver exited".into())
    }

    /// Hands a batch to the driver without waiting for anything.
    pub fn submit(&self, batch: Vec<u8>) -> Result<PendingProposal> {
        if batch.len() > MAX_PROPOSAL {
            return Err(NodeError::TooLarge { size: batch.len(), max: MAX_PROPOSAL });
        }
        let (tx, rx) = bounded(1);
        self.send(Cmd::Propose(batch, tx))?;
        Ok(PendingProposal(rx))
    }

    /// Proposes a batch; returns the index of the Raft entry that carries it as soon as the
    /// leader has appended it (not when it commits: see [`Node::await_commit`]).
    pub fn propose(&self, batch: Vec<u8>) -> Result<u64> {
        self.submit(batch)?.wait()
    }

    /// Like [`Node::propose`], returning index and term, for the exact [`Node::await_entry`].
    pub fn propose_entry(&self, batch: Vec<u8>) -> Result<EntryId> {
        self.submit(batch)?.wait_entry()
    }

    /// Waits until the entry at `index` is committed and applied on this node. Fails with
    /// `Dropped` if this node proposed at `index` but another leader's entry won there. (If this
    /// node proposed at `index` twice, in two terms, the latest proposal is the one checked;
    /// [`Node::await_entry`] is exact.)
    pub fn await_commit(&self, index: u64, timeout: Option<Duration>) -> Result<()> {
        match self.wait_applied(index, timeout)? {
            Some(Outcome { term, mine: Some(m) }) if m != term => Err(NodeError::Dropped { index }),
            _ => Ok(()),
        }
    }

    /// Waits until the entry `id` is committed and applied here; `Dropped` if a different entry
    /// (another term) committed at its index. Indexes more than 65,536 entries behind the
    /// applied index are no longer checked and return Ok.
    pub fn await_entry(&self, id: EntryId, timeout: Option<Duration>) -> Result<()> {
        match self.wait_applied(id.index, timeout)? {
            Some(o) if o.term != id.term => Err(NodeError::Dropped { index: id.index }),
            _ => Ok(()),
        }
    }

    fn wait_applied(&self, index: u64, timeout: Option<Duration>) -> Result<Option<Outcome>> {
        let rx = {
            let mut s = self.inner.shared.lock();
            if s.status.applied >= index {
                return Ok(s.outcomes.get(&index).copied());
            }
            if let Some(why) = &s.stopped {
                return Err(NodeError::Stopped(why.clone()));
            }
            let (tx, rx) = bounded(1);
            s.waiters.entry(index).or_default().push(tx);
            rx
        };
        // Only this waiter is woken, when `index` is applied (no thundering herd).
        match timeout {
            Some(t) => rx.recv_timeout(t).map_err(|e| {
                if e.is_timeout() {
                    NodeError::Timeout { index }
                } else {
                    NodeError::Stopped(self.stopped_reason())
                }
            }),
            None => rx.recv().map_err(|_| NodeError::Stopped(self.stopped_reason())),
        }
    }

    /// The stream of committed entries, in log order, from the start of the log (a restarted
    /// node delivers everything again). Can be taken once.
    pub fn take_committed(&self) -> Option<Receiver<CommittedEntry>> {
        self.committed_rx.lock().take()
    }

    /// Leadership changes from now on.
    pub fn subscribe_leadership(&self) -> Receiver<LeaderChange> {
        let (tx, rx) = unbounded();
        self.inner.subscribers.lock().push(tx);
        rx
    }

    pub fn status(&self) -> Status {
        self.inner.shared.lock().status.clone()
    }
    pub fn leader(&self) -> Option<u64> {
        self.inner.shared.lock().status.leader
    }
    pub fn term(&self) -> u64 {
        self.inner.shared.lock().status.term
    }
    pub fn is_leader(&self) -> bool {
        self.inner.shared.lock().status.role == Role::Leader
    }
    /// Why the driver stopped, if it did.
    pub fn stopped(&self) -> Option<String> {
        self.inner.shared.lock().stopped.clone()
    }

    /// Proposes adding `id` (reachable at `raft_addr`) as a voter. Must run on the leader.
    pub fn add_node(&self, id: u64, raft_addr: &str) -> Result<u64> {
        let mut cc = ConfChange::default();
        cc.set_change_type(ConfChangeType::AddNode);
        cc.node_id = id;
        cc.context = raft_addr.as_bytes().to_vec().into();
        self.conf_change(cc)
    }

    /// Proposes removing `id`. Must run on the leader.
    pub fn remove_node(&self, id: u64) -> Result<u64> {
        let mut cc = ConfChange::default();
        cc.set_change_type(ConfChangeType::RemoveNode);
        cc.node_id = id;
        self.conf_change(cc)
    }

    fn conf_change(&self, cc: ConfChange) -> Result<u64> {
        let (tx, rx) = bounded(1);
        self.send(Cmd::ConfChange(cc, tx))?;
        PendingProposal(rx).wait()
    }

    /// Drops the log's entries through `index` (clamped to what this node applied): a
    /// checkpoint of the program holds them. A node that later needs them gets a snapshot
    /// (see [`CommittedEntry::snapshot`]). Returns whether anything was dropped.
    pub fn compact(&self, index: u64) -> Result<bool> {
        let (tx, rx) = bounded(1);
        self.send(Cmd::Compact(index, tx))?;
        rx.recv().map_err(|_| NodeError::Stopped("the raft driver stopped".into()))?
    }

    /// The first index of this node's log (entries before it are compacted away).
    pub fn first_index(&self) -> u64 {
        self.inner.shared.lock().status.first_index
    }

    /// Starts an election on this node.
    pub fn campaign(&self) -> Result<()> {
        self.send(Cmd::Campaign)
    }

    /// Hands leadership to voter `to` (raft-rs's leader transfer: the leader stops taking
    /// proposals, brings `to` up to date and tells it to campaign at once). Must run on the
    /// leader; returns when the transfer has started, not when `to` has won.
    pub fn transfer_leader(&self, to: u64) -> Result<()> {
        let (tx, rx) = bounded(1);
        self.send(Cmd::TransferLeader(to, tx))?;
        rx.recv().map_err(|_| NodeError::Stopped("the raft driver stopped".into()))?
    }

    /// Disk fault injection: every later log write fails (as on a dead disk), which stops the
    /// node with a storage error.
    pub fn inject_disk_failure(&self, on: bool) {
        self.disk_fault.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Fault injection: drops (`on`) or restores every Raft message to and from this node; with
    /// [`NodeOptions::persist_isolation`] also creates or removes the marker that makes a
    /// restarted node start isolated.
    pub fn isolate(&self, on: bool) -> Result<()> {
        if let Some(path) = &self.isolation_marker {
            let r = if on {
                std::fs::write(path, b"raft traffic of this node is dropped (ftctl fault ... heal ends it)\n")
            } else {
                std::fs::remove_file(path).or_else(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
            };
            r.map_err(|source| NodeError::IsolationMarker { path: path.clone(), source })?;
        }
        self.transport.faults().set_isolated(on);
        Ok(())
    }

    /// Transport fault injection.
    pub fn faults(&self) -> &Arc<Faults> {
        self.transport.faults()
    }

    pub fn raft_addr(&self) -> std::net::SocketAddr {
        self.transport.local_addr()
    }

    /// Stops the driver and the transport.
    pub fn shutdown(&self) {
        let _ = self.cmd_tx.send(Cmd::Stop);
        if let Some(h) = self.driver.lock().take() {
            let _ = h.join();
        }
        self.transport.shutdown();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn status_of(raw: &RawNode<DiskStorage>, applied: u64, isolated: bool) -> Status {
    let r = &raw.raft;
    let mut cs = r.prs().conf().to_conf_state();
    cs.voters.sort_unstable();
    cs.learners.sort_unstable();
    Status {
        id: r.id,
        role: r.state.into(),
        term: r.term,
        leader: (r.leader_id != raft::INVALID_ID).then_some(r.leader_id),
        commit: r.raft_log.committed,
        applied,
        last_index: r.raft_log.last_index(),
        first_index: raft::Storage::first_index(r.raft_log.store()).unwrap_or(0),
        log_bytes: r.raft_log.store().file_len(),
        held_by_all: if r.state == StateRole::Leader {
            cs.voters.iter().map(|v| r.prs().get(*v).map_or(0, |p| p.matched)).min().unwrap_or(0)
        } else {
            0
        },
        voters: cs.voters.clone(),
        learners: cs.learners.clone(),
        isolated,
    }
}

struct Driver {
    raw: RawNode<DiskStorage>,
    store: DiskStorage,
    transport: Arc<Transport>,
    inner: Arc<Inner>,
    logger: Logger,
    data_dir_field: String,
    committed_tx: Sender<CommittedEntry>,
    /// index -> term of entries this node proposed, until they are applied.
    proposed: HashMap<u64, u64>,
    /// Conf changes at or below this index are already reflected in the stored conf state.
    conf_applied: u64,
    applied: u64,
    tick: Duration,
    max_entry_bytes: usize,
    last_leader: (Option<u64>, u64),
}

impl Driver {
    fn run(&mut self, cmd_rx: Receiver<Cmd>, msg_rx: Receiver<Message>) -> Result<()> {
        let mut next_tick = Instant::now() + self.tick;
        let mut props: Vec<(Vec<u8>, Sender<Result<EntryId>>)> = Vec::new();
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            let mut stop = false;
            select! {
                recv(cmd_rx) -> c => match c {
                    Ok(c) => stop |= self.on_cmd(c, &mut props),
                    Err(_) => stop = true,
                },
                recv(msg_rx) -> m => if let Ok(m) = m { self.step(m) },
                default(wait) => {}
            }
            // Drain whatever else is waiting (bounded, so ticks are not starved).
            for _ in 0..4096 {
                let mut any = false;
                if let Ok(c) = cmd_rx.try_recv() {
                    stop |= self.on_cmd(c, &mut props);
                    any = true;
                }
                if let Ok(m) = msg_rx.try_recv() {
                    self.step(m);
                    any = true;
                }
                if !any {
                    break;
                }
            }
            self.flush_proposals(&mut props);
            let now = Instant::now();
            if now >= next_tick {
                self.raw.tick();
                self.hand_over_if_removed();
                next_tick += self.tick;
                if next_tick < now {
                    next_tick = now + self.tick;
                }
            }
            self.on_ready()?;
            self.publish();
            if stop {
                return Ok(());
            }
        }
    }

    /// A leader that applied its own removal keeps leading in raft-rs but refuses proposals,
    /// which would stall the cluster: hand leadership to the most up-to-date voter.
    fn hand_over_if_removed(&mut self) {
        let r = &self.raw.raft;
        if r.state != StateRole::Leader || r.lead_transferee.is_some() {
            return;
        }
        let cs = r.prs().conf().to_conf_state();
        if cs.voters.contains(&r.id) {
            return;
        }
        let best = cs.voters.iter().filter_map(|v| r.prs().get(*v).map(|p| (p.matched, *v))).max();
        if let Some((_, to)) = best {
            info!(self.logger, "removed from the cluster while leader; transferring leadership";
                "to" => to);
            self.raw.transfer_leader(to);
        }
    }

    fn step(&mut self, m: Message) {
        if let Err(e) = self.raw.step(m) {
            slog::debug!(self.logger, "step failed"; "err" => %e);
        }
    }

    fn on_cmd(&mut self, c: Cmd, props: &mut Vec<(Vec<u8>, Sender<Result<EntryId>>)>) -> bool {
        match c {
            Cmd::Propose(b, tx) => props.push((b, tx)),
            Cmd::ConfChange(cc, tx) => {
                let r = if self.raw.raft.state != StateRole::Leader {
                    Err(self.not_leader())
                } else {
                    match self.raw.propose_conf_change(vec![], cc) {
                        Ok(()) => Ok(self.proposed_now()),
                        Err(e) => Err(NodeError::Raft(e)),
                    }
                };
                let _ = tx.send(r);
            }
            Cmd::Campaign => {
                if let Err(e) = self.raw.campaign() {
                    warn!(self.logger, "campaign failed"; "err" => %e);
                }
            }
            Cmd::TransferLeader(to, tx) => {
                let r = &self.raw.raft;
                let voters: Vec<u64> = r.prs().conf().to_conf_state().voters;
                let res = if r.state != StateRole::Leader {
                    Err(NodeError::NotLeader { leader: Some(r.leader_id).filter(|l| *l != 0) })
                } else if !voters.contains(&to) {
                    Err(NodeError::NotVoter { id: to, voters })
                } else {
                    if to != r.id {
                        info!(self.logger, "transferring leadership"; "to" => to);
                        self.raw.transfer_leader(to);
                    }
                    Ok(())
                };
                let _ = tx.send(res);
            }
            Cmd::Compact(index, tx) => {
                let to = index.min(self.applied);
                let before = self.store.file_len();
                let r = self.store.compact(to).map_err(|e| self.store_err(e));
                if let Ok(true) = r {
                    info!(self.logger, "compacted the log"; "through" => to,
                        "bytes_before" => before, "bytes_after" => self.store.file_len());
                }
                let _ = tx.send(r);
            }
            Cmd::Stop => return true,
        }
        false
    }

    /// Records that the entry just appended to our log is our proposal.
    fn proposed_now(&mut self) -> EntryId {
        let id = EntryId { index: self.raw.raft.raft_log.last_index(), term: self.raw.raft.term };
        self.proposed.insert(id.index, id.term);
        id
    }

    fn not_leader(&self) -> NodeError {
        let l = self.raw.raft.leader_id;
        NodeError::NotLeader { leader: (l != raft::INVALID_ID).then_some(l) }
    }

    fn flush_proposals(&mut self, props: &mut Vec<(Vec<u8>, Sender<Result<EntryId>>)>) {
        if props.is_empty() {
            return;
        }
        if self.raw.raft.state != StateRole::Leader {
            for (_, tx) in props.drain(..) {
                let _ = tx.send(Err(self.not_leader()));
            }
            return;
        }
        let mut all = std::mem::take(props).into_iter().peekable();
        while all.peek().is_some() {
            let mut batches = Vec::new();
            let mut waiters = Vec::new();
            let mut size = 0;
            while let Some((b, _)) = all.peek() {
                if !batches.is_empty() && size + b.len() + 4 > self.max_entry_bytes {
                    break;
                }
                size += b.len() + 4;
                let Some((b, tx)) = all.next() else { break };
                batches.push(b);
                waiters.push(tx);
            }
            let r = match self.raw.propose(vec![], encode_batches(&batches)) {
                Ok(()) => Ok(self.proposed_now()),
                Err(raft::Error::ProposalDropped) => Err(self.not_leader()),
                Err(e) => Err(NodeError::Raft(e)),
            };
            for tx in waiters {
                let _ = tx.send(match &r {
                    Ok(i) => Ok(*i),
                    Err(NodeError::NotLeader { leader }) => Err(NodeError::NotLeader { leader: *leader }),
                    Err(e) => Err(NodeError::Stopped(e.to_string())),
                });
            }
        }
    }

    fn on_ready(&mut self) -> Result<()> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut rd = self.raw.ready();
        // 1. Messages that do not depend on our own persistence (leader appends).
        let mut snapshots_sent = Vec::new();
        self.send(rd.take_messages(), &mut snapshots_sent);
        // 2. Snapshot (only ever the bootstrap snapshot for a joining node).
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            let ci = DiskStorage::snapshot_conf_index(&snap);
            let mut b = WriteBatch::default();
            b.apply_snapshot(snap.get_metadata(), ci);
            self.store.write(b).map_err(|e| self.store_err(e))?;
            self.conf_applied = ci;
            let index = snap.get_metadata().index;
            if index > 1 {
                let _ = self.committed_tx.send(CommittedEntry {
                    index,
                    term: snap.get_metadata().term,
                    batches: Vec::new(),
                    snapshot: true,
                });
            }
            self.applied = self.applied.max(index);
            info!(self.logger, "applied snapshot"; "index" => index, "conf_index" => ci);
        }
        // 3. Committed entries.
        self.apply(rd.take_committed_entries())?;
        // 4. Append entries and hard state, durably.
        let mut b = WriteBatch::default();
        if !rd.entries().is_empty() {
            b.append(rd.entries());
        }
        if let Some(hs) = rd.hs() {
            b.set_hard_state(hs);
        }
        b.set_must_sync(rd.must_sync());
        self.store.write(b).map_err(|e| self.store_err(e))?;
        // 5. Messages that must wait for persistence.
        self.send(rd.take_persisted_messages(), &mut snapshots_sent);
        // 6. Advance.
        let mut light = self.raw.advance(rd);
        if let Some(c) = light.commit_index() {
            self.store.set_commit(c);
        }
        self.send(light.take_messages(), &mut snapshots_sent);
        self.apply(light.take_committed_entries())?;
        self.raw.advance_apply();
        // 7. A leader keeps a peer it sent a snapshot to paused until told how the sending went;
        // a snapshot lost on the way (the peer restarting, a dropped connection or a full queue)
        // would leave that peer waiting for entries forever. Reported as sent: the leader then
        // probes the peer, and one that did not get it answers with its old index, which makes
        // the leader send a snapshot again.
        for to in snapshots_sent {
            self.raw.report_snapshot(to, raft::SnapshotStatus::Finish);
        }
        Ok(())
    }

    /// Hands `msgs` to the transport, noting the peers that get a snapshot.
    fn send(&self, msgs: Vec<Message>, snapshots_sent: &mut Vec<u64>) {
        snapshots_sent
            .extend(msgs.iter().filter(|m| m.get_msg_type() == raft::prelude::MessageType::MsgSnapshot).map(|m| m.to));
        self.transport.send(msgs);
    }

    fn store_err(&self, source: StoreError) -> NodeError {
        NodeError::Storage { field: self.data_dir_field.clone(), source }
    }

    fn apply(&mut self, ents: Vec<Entry>) -> Result<()> {
        if ents.is_empty() {
            return Ok(());
        }
        let mut outcomes = Vec::with_capacity(ents.len());
        for e in ents {
            outcomes.push((e.index, Outcome { term: e.term, mine: self.proposed.remove(&e.index) }));
            match e.get_entry_type() {
                EntryType::EntryNormal => {
                    if !e.data.is_empty() {
                        let batches = decode_batches(&e.data).unwrap_or_else(|| {
                            warn!(self.logger, "entry without batch framing"; "index" => e.index);
                            vec![e.data.to_vec()]
                        });
                        let _ = self.committed_tx.send(CommittedEntry {
                            index: e.index,
                            term: e.term,
                            batches,
                            snapshot: false,
                        });
                    }
                }
                EntryType::EntryConfChange => {
                    let cc = ConfChange::parse_from_bytes(&e.data)
                        .map_err(|err| NodeError::Stopped(format!("undecodable conf change at {}: {err}", e.index)))?;
                    self.apply_conf_change(e.index, &cc)?;
                }
                EntryType::EntryConfChangeV2 => {
                    warn!(self.logger, "ignoring ConfChangeV2 entry (never proposed by ftexec)";
                        "index" => e.index);
                }
            }
            self.applied = e.index;
        }
        // Keep the outcome table bounded.
        let mut s = self.inner.shared.lock();
        for (i, o) in outcomes {
            s.outcomes.insert(i, o);
        }
        let floor = self.applied.saturating_sub(1 << 16);
        while let Some((&k, _)) = s.outcomes.first_key_value() {
            if k >= floor {
                break;
            }
            s.outcomes.remove(&k);
        }
        Ok(())
    }

    fn apply_conf_change(&mut self, index: u64, cc: &ConfChange) -> Result<()> {
        let t = cc.get_change_type();
        if matches!(t, ConfChangeType::AddNode | ConfChangeType::AddLearnerNode)
            && cc.node_id != self.raw.raft.id
            && !cc.context.is_empty()
        {
            if let Ok(addr) = std::str::from_utf8(&cc.context) {
                self.transport.add_peer(cc.node_id, addr);
            }
        }
        if index <= self.conf_applied {
            return Ok(());
        }
        let cs = self.raw.apply_conf_change(cc)?;
        let mut b = WriteBatch::default();
        b.set_conf_state(&cs, index);
        self.store.write(b).map_err(|e| self.store_err(e))?;
        self.conf_applied = index;
        info!(self.logger, "applied conf change"; "index" => index, "change" => ?t,
            "node" => cc.node_id, "voters" => ?cs.voters);
        Ok(())
    }

    fn publish(&mut self) {
        let st = status_of(&self.raw, self.applied, self.transport.faults().is_isolated());
        let key = (st.leader, st.term);
        {
            let mut s = self.inner.shared.lock();
            let applied = st.applied;
            s.status = st;
            if s.waiters.first_key_value().is_some_and(|(&k, _)| k <= applied) {
                let later = s.waiters.split_off(&(applied + 1));
                let done = std::mem::replace(&mut s.waiters, later);
                for (idx, txs) in done {
                    let o = s.outcomes.get(&idx).copied();
                    for tx in txs {
                        let _ = tx.send(o);
                    }
                }
            }
        }
        if key != self.last_leader {
            self.last_leader = key;
            let ch = LeaderChange { leader: key.0, term: key.1, is_self: key.0 == Some(self.raw.raft.id) };
            info!(self.logger, "leadership"; "leader" => ?ch.leader, "term" => ch.term);
            self.inner.subscribers.lock().retain(|tx| tx.send(ch.clone()).is_ok());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_framing_roundtrip() {
        let b = vec![b"one".to_vec(), vec![], b"three".to_vec()];
        assert_eq!(decode_batches(&encode_batches(&b)), Some(b));
        assert_eq!(decode_batches(&[1, 0, 0]), None);
        assert_eq!(decode_batches(&[9, 0, 0, 0, 1]), None);
    }
}
