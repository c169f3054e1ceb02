//! Helpers shared by ftdbg's integration tests.

use std::path::{Path, PathBuf};

/// A fresh directory for one test, under the system temp dir.
pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ftdbg-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

/// The ftexec binary next to this test's directory (build it first: `cargo build -p ftexec`).
pub fn ftexec() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let p = exe.parent().and_then(Path::parent).expect("target dir").join("ftexec");
    assert!(p.exists(), "{} is missing: run `cargo build -p ftexec` with the same CARGO_TARGET_DIR", p.display());
    p
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
