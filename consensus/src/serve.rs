//! Running one node as a process: used by `ftctl serve` and the `ft-consensus-node` test binary.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use slog::{info, o, Drain, Logger};

use crate::config::ClusterConfig;
use crate::control;
use crate::node::{Node, NodeError, NodeOptions};

/// Options of a served node.
pub struct ServeOptions {
    pub config: PathBuf,
    pub id: u64,
    pub join: bool,
    /// Enables the test-only control commands (proposals from outside, fault injection) and
    /// writes every committed batch as a line `index term text` to `<data_dir>/applied.txt`.
    pub test_mode: bool,
    pub log_level: slog::Level,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    #[error(transparent)]
    Control(#[from] control::ControlError),
    #[error("cannot write {path}: {source}")]
    Applied {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A stderr logger at `level`.
pub fn stderr_logger(level: slog::Level) -> Logger {
    let dec = slog_term::PlainSyncDecorator::new(std::io::stderr());
    let drain = slog_term::FullFormat::new(dec).build().fuse();
    let drain = slog::LevelFilter::new(drain, level).fuse();
    Logger::root(drain, o!())
}

/// Runs a node until its driver stops (e.g. storage failure). Never returns Ok under normal
/// operation; the process is expected to be killed.
pub fn serve(opts: ServeOptions) -> Result<(), ServeError> {
    let cfg = ClusterConfig::load(&opts.config)?;
    let me = cfg.node(opts.id)?.clone();
    let logger = stderr_logger(opts.log_level);
    let node = Arc::new(Node::start(
        &cfg,
        opts.id,
        NodeOptions { join: opts.join, logger: logger.clone(), ..Default::default() },
    )?);
    if let Some(ca) = &me.control_addr {
        let a = control::serve(node.clone(), ca, opts.test_mode, logger.clone())?;
        info!(logger, "control endpoint"; "addr" => %a);
    }
    let rx = node.take_committed();
    if opts.test_mode {
        let path = me.data_dir.join("applied.txt");
        let ioe = |source| ServeError::Applied { path: path.clone(), source };
        let f = std::fs::File::create(&path).map_err(ioe)?;
        let mut w = std::io::BufWriter::new(f);
        if let Some(rx) = rx {
            while let Ok(e) = rx.recv() {
                for b in std::iter::once(e).chain(rx.try_iter()) {
                    for batch in &b.batches {
                        let text = String::from_utf8_lossy(batch).replace('\n', "\\n");
                        writeln!(w, "{} {} {}", b.index, b.term, text).map_err(ioe)?;
                    }
                }
                w.flush().map_err(ioe)?;
            }
        }
    } else if let Some(rx) = rx {
        // Nobody consumes entries in a plain `serve`; drain so memory stays flat.
        while rx.recv().is_ok() {}
    }
    // The stream ends only when the driver stops.
    let why = node.stopped().unwrap_or_else(|| "stopped".into());
    Err(ServeError::Node(NodeError::Stopped(why)))
}
