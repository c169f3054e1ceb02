//! Compiles every `c/*.c` test program into OUT_DIR with
//! `gcc -O1 -g -Wall -Wextra -Werror`. A file whose name starts with `static_` is linked
//! with `-static`; a file that includes `<pthread.h>` gets `-pthread`. The
//! directory is exported to the library as `FT_TESTSUITE_BIN_DIR`.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let c_dir = Path::new("c");
    println!("cargo:rerun-if-changed=c");
    println!("cargo:rustc-env=FT_TESTSUITE_BIN_DIR={}", out_dir.display());

    let mut sources: Vec<PathBuf> = fs::read_dir(c_dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", c_dir.display()))
        .map(|entry| entry.expect("read_dir entry").path())
        .collect();
    sources.sort();

    let mut failures = Vec::new();
    for src in &sources {
        // Headers (c/*.h) are included by the programs; rerun-if-changed on the
        // directory already covers them.
        println!("cargo:rerun-if-changed={}", src.display());
        if src.extension() != Some(OsStr::new("c")) {
            continue;
        }
        let name =
            src.file_stem().and_then(|s| s.to_str()).unwrap_or_else(|| panic!("non-UTF-8 file name {}", src.display()));
        let text = fs::read_to_string(src).unwrap_or_else(|e| panic!("cannot read {}: {e}", src.display()));

        let mut cmd = Command::new("gcc");
        cmd.args(["-O1", "-g", "-Wall", "-Wextra", "-Werror"]);
        if name.starts_with("static_") {
            cmd.arg("-static");
        }
        if text.contains("<pthread.h>") {
            cmd.arg("-pthread");
        }
        cmd.arg("-o").arg(out_dir.join(name)).arg(src);

        let output = cmd.output().unwrap_or_else(|e| panic!("cannot run gcc (is it installed?): {e}"));
        if !output.status.success() {
            failures.push(format!(
                "{cmd:?} failed with {}:\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    if !failures.is_empty() {
        panic!("compiling the C test programs failed:\n{}", failures.join("\n"));
    }
}
