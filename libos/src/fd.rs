//! The fd model: what each tracee fd number refers to. Replay keeps fd numbers identical to the
//! recording (placeholders stand in for external fds), so one model serves both modes.

use crate::proto::FdKind;
use std::collections::HashMap;

#[derive(Clone, Debug)]
pub struct FdTable {
    kinds: HashMap<i32, FdKind>,
}

impl Default for FdTable {
    fn default() -> Self {
        Self::new()
    }
}

impl FdTable {
    /// A fresh process: 0, 1 and 2 are the inherited stdio.
    pub fn new() -> Self {
        let kinds = (0..3).map(|fd| (fd, FdKind::Stdio)).collect();
        FdTable { kinds }
    }

    /// What `fd` refers to. Unknown fds (closed, or never seen) count as External: treating an
    /// fd as the outside world is always safe, since its syscalls are then recorded.
    pub fn kind(&self, fd: i64) -> FdKind {
        i32::try_from(fd).ok().and_then(|fd| self.kinds.get(&fd).copied()).unwrap_or(FdKind::External)
    }

    pub fn set(&mut self, fd: i32, kind: FdKind) {
        self.kinds.insert(fd, kind);
    }

    /// Every known fd and its kind, in fd order (a checkpoint keeps them).
    pub fn entries(&self) -> Vec<(i32, FdKind)> {
        let mut v: Vec<(i32, FdKind)> = self.kinds.iter().map(|(&f, &k)| (f, k)).collect();
        v.sort_unstable_by_key(|e| e.0);
        v
    }

    /// A table of exactly these fds.
    pub fn from_entries(entries: impl IntoIterator<Item = (i32, FdKind)>) -> Self {
        FdTable { kinds: entries.into_iter().collect() }
    }

    /// Whether syscalls on `fd` act on replicated state and so run for real at replay.
    pub fn is_replicated(&self, fd: i64) -> bool {
        matches!(self.kind(fd), FdKind::Data | FdKind::Verified | FdKind::Private)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdio_and_unknown() {
        let mut t = FdTable::new();
        assert_eq!(t.kind(1), FdKind::Stdio);
        assert_eq!(t.kind(7), FdKind::External);
        assert_eq!(t.kind(-1), FdKind::External);
        assert_eq!(t.kind(i64::MAX), FdKind::External);
        t.set(7, FdKind::Data);
        assert!(t.is_replicated(7));
        assert!(!t.is_replicated(1));
    }
}
