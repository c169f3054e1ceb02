//! ft-libos: ftexec's model of the outside world.
//!
//! - [`table`]: one declarative entry per x86-64 syscall (class, checked arguments, memory written),
//!   with its effects on the modelled process state grouped in [`effect`] and the types of its
//!   arguments and result, for showing them, in [`arg`];
//! - [`policy`]: the decision at each stop, from the table, the [`fd`] model and path facts;
//! - [`proto`]: the event and header types (protobuf), and [`log`]: the log file format;
//! - [`event`]: an event's task and kind name ([`Event::task`], [`Event::kind_name`]);
//! - [`digest`]: content digests of buffers, files and the data directory;
//! - [`clock`]: the layout of the clock page (vDSO clock reads without a ptrace stop);
//! - [`sysbuf`]: the layout of the syscall buffer (socket syscalls without a ptrace stop);
//! - [`signal`]: signal numbers 1..=64 ([`Sig`]), real-time signals included;
//! - [`ioctl`]: what an ioctl request writes and changes (the requests before `_IOC` too);
//! - [`wait`]: which child a logged wait4/waitid reaped, and a child's SIGCHLD siginfo.
//!
//! This crate never touches ptrace, sockets or Raft.

pub mod arg;
pub mod batch;
pub mod clock;
pub mod digest;
pub mod effect;
pub mod event;
pub mod fd;
pub mod ioctl;
pub mod log;
pub mod policy;
pub mod process;
pub mod proto;
pub mod signal;
pub mod snapshot;
pub mod sysbuf;
pub mod table;
pub mod wait;

pub use fd::FdTable;
pub use proto::{event::Kind as EventKind, Disposition, Event, FdKind, Header};
pub use signal::Sig;
pub use table::{lookup, Arg, Class, Spec};
