//! Per-syscall knowledge lives in the libos table (libos/src/table.rs, libos/src/effect.rs) and its
//! policy: record, replay, go-live and the tools read the table's fields. This test fails when
//! their code decides something by comparing a syscall number (or name) itself. Making a
//! syscall (`libc::syscall(libc::SYS_x, ..)`, a register rewrite to `SYS_x`) is not deciding.

use std::path::{Path, PathBuf};

/// The source files of the sessions and the tools.
fn sources() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut dirs = vec![root.join("replay/src")];
    for tool in ["ftexec", "ftdbg", "ftctl"] {
        dirs.push(root.join("tools").join(tool).join("src"));
    }
    let mut files = Vec::new();
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    assert!(files.len() > 10, "found only {} source files", files.len());
    files
}

/// Why `line` compares a syscall number, or None.
fn compares_a_number(line: &str) -> Option<&'static str> {
    let code = line.split("//").next().unwrap_or("");
    let words: Vec<&str> = code.split_whitespace().collect();
    let joined = words.join(" ");
    for (i, w) in words.iter().enumerate() {
        if !w.contains("SYS_") {
            continue;
        }
        let next = words.get(i + 1).copied().unwrap_or("");
        let prev = if i > 0 { words[i - 1] } else { "" };
        if matches!(next, "=>" | "|" | "==" | "!=" | "if") || w.ends_with(',') && joined.contains("matches!") {
            return Some("a syscall number as a match pattern");
        }
        if matches!(prev, "==" | "!=" | "|") {
            return Some("a comparison with a syscall number");
        }
        if joined.contains("matches!(") && joined.contains("nr") {
            return Some("matches! of a syscall number");
        }
    }
    // `match nr {`, `match i64::from(spec.nr) {`, `match spec.nr as i64 {`: a match on the number.
    if let Some(rest) = joined.split("match ").nth(1) {
        let scrutinee = rest.split('{').next().unwrap_or("").trim();
        let bare = scrutinee.trim_start_matches("i64::from(").trim_end_matches(')');
        let bare = bare.split(" as ").next().unwrap_or("");
        let path = bare.trim_end_matches("()");
        if !path.contains('(') && (path == "nr" || path.ends_with(".nr")) {
            return Some("a match on a syscall number");
        }
        if scrutinee.contains("name(") && scrutinee.contains(".as_str()") {
            return Some("a match on a syscall name");
        }
    }
    for op in ["==", "!="] {
        for side in joined.split(op).skip(1) {
            let rhs = side.trim_start();
            if rhs.starts_with("libc::SYS_") || rhs.starts_with("i64::from(libc::SYS_") {
                return Some("a comparison with a syscall number");
            }
        }
    }
    None
}

#[test]
fn no_session_or_tool_compares_syscall_numbers() {
    let mut found = Vec::new();
    for file in sources() {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        for (n, line) in text.lines().enumerate() {
            if let Some(why) = compares_a_number(line) {
                found.push(format!("{}:{}: {why}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "declare the effect in the libos table instead (see docs/ARCHITECTURE.md, \"Adding a syscall\"):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_sees_the_shapes_it_forbids() {
    for bad in [
        "            libc::SYS_open => args[1],",
        "        if nr == libc::SYS_recvfrom || nr == libc::SYS_sendto {",
        "        libc::SYS_dup2 | libc::SYS_dup3 => args[1],",
        "        if matches!(i64::from(spec.nr), libc::SYS_pipe | libc::SYS_pipe2) && s.ret == 0 {",
        "        let flags = match spec.nr as i64 {",
        "        match i64::from(spec.nr) {",
        "    match table::name(u64::from(s.nr)).as_str() {",
        "        } else if i64::from(spec.nr) != libc::SYS_restart_syscall {",
    ] {
        assert!(compares_a_number(bad).is_some(), "not caught: {bad}");
    }
    for fine in [
        "                    (_, true) => libc::syscall(libc::SYS_tgkill, tgid.as_raw(), t.tid.as_raw(), s.sig),",
        "        regs.rewrite(libc::SYS_clone as u64, &[0, 0, 0, 0, 0, 0]);",
        "            let call = match lookup(u64::from(s.nr)) {",
        "        let unmapped = r.call(libc::SYS_munmap, [scratch, 4096, 0, 0, 0, 0]);",
    ] {
        assert!(compares_a_number(fine).is_none(), "wrongly caught: {fine}");
    }
}
