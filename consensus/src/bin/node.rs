//! `ft-consensus-node --config FILE --id N [--join] [--test-mode] [--log LEVEL]`: runs one Raft
//! node as a process. Used by the consensus tests; `ftctl serve` is the user-facing twin.

use std::path::PathBuf;
use std::process::ExitCode;

use ft_consensus::serve::{serve, ServeOptions};

fn main() -> ExitCode {
    let mut opts =
        ServeOptions { config: PathBuf::new(), id: 0, join: false, test_mode: false, log_level: slog::Level::Info };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" => opts.config = args.next().map(PathBuf::from).unwrap_or_default(),
            "--id" => opts.id = args.next().and_then(|s| s.parse().ok()).unwrap_or(0),
            "--join" => opts.join = true,
            "--test-mode" => opts.test_mode = true,
            "--log" => {
                opts.log_level = match args.next().as_deref() {
                    Some("debug") => slog::Level::Debug,
                    Some("warn") => slog::Level::Warning,
                    Some("error") => slog::Level::Error,
                    _ => slog::Level::Info,
                }
            }
            other => {
                eprintln!("ft-consensus-node: unknown argument `{other}`");
                return ExitCode::from(2);
            }
        }
    }
    if opts.id == 0 || opts.config.as_os_str().is_empty() {
        eprintln!("usage: ft-consensus-node --config FILE --id N [--join] [--test-mode]");
        return ExitCode::from(2);
    }
    match serve(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ft-consensus-node: error: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                eprintln!("  caused by: {s}");
                src = s.source();
            }
            ExitCode::FAILURE
        }
    }
}
