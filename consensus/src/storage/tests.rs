//! The log file's format, recovery and compaction, on real files.

use super::*;
use raft::Storage;

fn logger() -> Logger {
    Logger::root(slog::Discard, slog::o!())
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ftstore-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn ent(index: u64, term: u64, data: &str) -> Entry {
    Entry { index, term, data: data.as_bytes().to_vec().into(), ..Default::default() }
}

fn fill(dir: &Path) {
    let (s, _) = DiskStorage::open(dir, FsyncPolicy::Always, &logger()).expect("open");
    s.bootstrap(&[1, 2, 3]).expect("bootstrap");
    let mut b = WriteBatch::default();
    b.append(&[ent(2, 2, "a"), ent(3, 2, "b"), ent(4, 2, "c")]);
    b.set_hard_state(&HardState { term: 2, vote: 1, commit: 3, ..Default::default() });
    s.write(b).expect("write");
    // Conflicting suffix from a new term replaces index 4.
    let mut b = WriteBatch::default();
    b.append(&[ent(4, 3, "c2"), ent(5, 3, "d")]);
    s.write(b).expect("write");
}

#[test]
fn roundtrip_and_conflict_truncation() {
    let d = tmp("rt");
    fill(&d);
    let (s, rec) = DiskStorage::open(&d, FsyncPolicy::Always, &logger()).expect("reopen");
    assert_eq!(rec.truncated_bytes, 0);
    assert_eq!(s.first_index().expect("fi"), 2);
    assert_eq!(s.last_index().expect("li"), 5);
    assert_eq!(s.term(4).expect("t"), 3);
    assert_eq!(s.term(1).expect("t"), 1);
    let es = s.entries(2, 6, None, GetEntriesContext::empty(false)).expect("ents");
    let data: Vec<&[u8]> = es.iter().map(|e| &e.data[..]).collect();
    assert_eq!(data, vec![&b"a"[..], b"b", b"c2", b"d"]);
    let st = s.initial_state().expect("state");
    assert_eq!(st.hard_state.commit, 3);
    assert_eq!(st.hard_state.vote, 1);
    assert_eq!(st.conf_state.voters, vec![1, 2, 3]);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn read_committed_sees_committed_entries_only_and_never_while_a_node_runs() {
    let d = tmp("committed");
    fill(&d);
    let before = std::fs::read(d.join(LOG_FILE)).expect("read");
    let c = read_committed(&d).expect("read committed");
    let data: Vec<&[u8]> = c.entries.iter().map(|e| &e.data[..]).collect();
    assert_eq!(data, vec![&b"a"[..], b"b"], "commit is 3: entries 2 and 3");
    assert_eq!((c.first_index, c.commit, c.term), (2, 3, 2));
    assert!(c.damaged.is_none());
    assert_eq!(std::fs::read(d.join(LOG_FILE)).expect("read"), before, "read-only");
    // A torn tail is reported, not repaired.
    let p = d.join(LOG_FILE);
    std::fs::write(&p, &before[..before.len() - 3]).expect("cut");
    let c = read_committed(&p).expect("read a torn log");
    assert!(c.damaged.is_some_and(|(_, why)| why.contains("torn")));
    assert_eq!(std::fs::metadata(&p).expect("meta").len(), before.len() as u64 - 3);
    let (_open, _) = DiskStorage::open(&d, FsyncPolicy::Never, &logger()).expect("open");
    assert!(matches!(read_committed(&d), Err(StoreError::Locked { .. })));
    std::fs::write(d.join("junk"), b"not a log at all").expect("write");
    assert!(matches!(read_committed(&d.join("junk")), Err(StoreError::BadHeader { .. })));
}

#[test]
fn old_entries_are_read_back_from_disk() {
    let d = tmp("evict");
    let (s, _) = DiskStorage::open(&d, FsyncPolicy::Never, &logger()).expect("open");
    s.set_cache_limit(1000);
    s.bootstrap(&[1]).expect("bootstrap");
    let big = "x".repeat(300);
    for i in 2..52u64 {
        let mut b = WriteBatch::default();
        b.append(&[ent(i, 2, &format!("{i}{big}"))]);
        s.write(b).expect("write");
    }
    // Overwrite a suffix, as a new leader would.
    let mut b = WriteBatch::default();
    b.append(&[ent(40, 3, "new40"), ent(41, 3, "new41")]);
    s.write(b).expect("write");
    let check = |s: &DiskStorage| {
        assert_eq!(s.last_index().expect("li"), 41);
        let es = s.entries(2, 42, None, GetEntriesContext::empty(false)).expect("ents");
        assert_eq!(es.len(), 40);
        for e in &es[..38] {
            assert_eq!(e.data.to_vec(), format!("{}{big}", e.index).into_bytes());
        }
        assert_eq!(&es[38].data[..], b"new40");
        assert_eq!(s.term(39).expect("t"), 2);
        assert_eq!(s.term(41).expect("t"), 3);
        // max_size limits the batch but always returns at least one entry.
        let few = s.entries(2, 42, Some(700), GetEntriesContext::empty(false)).expect("ents");
        assert!(!few.is_empty() && few.len() < 5, "{}", few.len());
    };
    check(&s);
    assert!(s.core.read().cache.len() < 10, "cache bounded");
    drop(s);
    let (s, _) = DiskStorage::open(&d, FsyncPolicy::Never, &logger()).expect("reopen");
    s.set_cache_limit(1000);
    check(&s);
    let _ = std::fs::remove_dir_all(&d);
}

/// Recovery after a crash at any byte: every truncation point and a flipped byte at every
/// position of the last records open without panic and yield a prefix of the log.
#[test]
fn any_cut_or_flip_recovers_a_prefix() {
    let d = tmp("cuts");
    fill(&d);
    let p = d.join(LOG_FILE);
    let full = std::fs::read(&p).expect("read");
    let (orig, _) = DiskStorage::open(&d, FsyncPolicy::Never, &logger()).expect("open");
    let want = orig.entries(2, 6, None, GetEntriesContext::empty(false)).expect("ents");
    drop(orig);
    let check = |bytes: &[u8], what: &str| {
        std::fs::write(&p, bytes).expect("write");
        let (s, rec) =
            DiskStorage::open(&d, FsyncPolicy::Never, &logger()).unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
        let last = s.last_index().expect("li");
        assert!(last <= 5, "{what}");
        if last >= 2 {
            let got = s.entries(2, last + 1, None, GetEntriesContext::empty(false)).expect("ents");
            // Either a prefix of the final log, or of the log before the new term's
            // entries overwrote index 4 (a crash before that write).
            let before = [ent(2, 2, "a"), ent(3, 2, "b"), ent(4, 2, "c")];
            let ok = got[..] == want[..got.len().min(want.len())]
                || (got.len() <= before.len() && got[..] == before[..got.len()]);
            assert!(ok, "{what}: not a state the log went through: {got:?}");
        }
        assert_eq!(std::fs::metadata(&p).expect("meta").len(), rec.valid_bytes, "{what}");
    };
    for cut in 0..full.len() {
        check(&full[..cut], &format!("cut at {cut}"));
    }
    for pos in MAGIC.len()..full.len() {
        let mut b = full.clone();
        b[pos] ^= 0x01;
        check(&b, &format!("flip at {pos}"));
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn compaction_keeps_the_tail_and_survives_reopen() {
    let d = tmp("compact");
    {
        let (s, _) = DiskStorage::open(&d, FsyncPolicy::Always, &logger()).expect("open");
        s.bootstrap(&[1, 2, 3]).expect("bootstrap");
        let mut b = WriteBatch::default();
        let ents: Vec<Entry> = (2..=40).map(|i| ent(i, 2, &"x".repeat(1000))).collect();
        b.append(&ents);
        b.set_hard_state(&HardState { term: 2, vote: 1, commit: 30, ..Default::default() });
        s.write(b).expect("write");
        let before = s.file_len();
        // Not beyond the commit index.
        assert!(s.compact(35).is_err());
        // Not yet worth it: far more would be copied than dropped.
        assert!(!s.compact(5).expect("amortized"));
        assert_eq!(s.first_index().expect("fi"), 2);
        assert!(s.compact(25).expect("compact"));
        assert!(!s.compact(20).expect("an older point is a no-op"));
        assert!(s.file_len() < before / 2, "{} vs {before}", s.file_len());
        assert_eq!(s.first_index().expect("fi"), 26);
        assert_eq!(s.term(25).expect("snapshot term"), 2);
        assert!(matches!(s.term(24), Err(raft::Error::Store(RaftStorageError::Compacted))));
        let got = s.entries(26, 41, None, GetEntriesContext::empty(false)).expect("entries");
        assert_eq!(got.iter().map(|e| e.index).collect::<Vec<_>>(), (26..=40).collect::<Vec<_>>());
        // Appends go on after the rewrite, and the snapshot is the compaction point.
        let mut b = WriteBatch::default();
        b.append(&[ent(41, 3, "y")]);
        s.write(b).expect("write");
        assert_eq!(s.snapshot(0, 2).expect("snapshot").get_metadata().index, 25);
    }
    let (s, rec) = DiskStorage::open(&d, FsyncPolicy::Always, &logger()).expect("reopen");
    assert_eq!(rec.truncated_bytes, 0);
    assert_eq!((s.first_index().expect("fi"), s.last_index().expect("li")), (26, 41));
    assert_eq!(s.entries(40, 42, None, GetEntriesContext::empty(false)).expect("entries")[1].data.as_ref(), b"y");
    assert_eq!(s.hard_state().commit, 30);
    // A second process still finds the log locked.
    assert!(matches!(DiskStorage::open(&d, FsyncPolicy::Always, &logger()), Err(StoreError::Locked { .. })));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn torn_tail_is_truncated() {
    let d = tmp("torn");
    fill(&d);
    let p = d.join(LOG_FILE);
    let len = std::fs::metadata(&p).expect("meta").len();
    // Cut the last record in half.
    let f = OpenOptions::new().write(true).open(&p).expect("open");
    f.set_len(len - 3).expect("truncate");
    drop(f);
    let (s, rec) = DiskStorage::open(&d, FsyncPolicy::Always, &logger()).expect("reopen");
    assert!(rec.truncated_bytes > 0, "{rec:?}");
    assert_eq!(rec.truncate_reason.as_deref(), Some("torn record (shorter than its length)"));
    assert_eq!(s.last_index().expect("li"), 4, "the torn record was entry 5");
    assert_eq!(s.term(4).expect("t"), 3);
    assert_eq!(std::fs::metadata(&p).expect("meta").len(), rec.valid_bytes);
    // And it can be appended to again.
    let mut b = WriteBatch::default();
    b.append(&[ent(5, 3, "e")]);
    s.write(b).expect("write");
    drop(s);
    let (s, rec) = DiskStorage::open(&d, FsyncPolicy::Always, &logger()).expect("reopen2");
    assert_eq!(rec.truncated_bytes, 0);
    assert_eq!(s.last_index().expect("li"), 5);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn corrupt_last_record_is_truncated() {
    let d = tmp("corrupt");
    fill(&d);
    let p = d.join(LOG_FILE);
    let mut bytes = std::fs::read(&p).expect("read");
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    std::fs::write(&p, &bytes).expect("write");
    let (_s, rec) = DiskStorage::open(&d, FsyncPolicy::Always, &logger()).expect("reopen");
    assert_eq!(rec.truncate_reason.as_deref(), Some("checksum mismatch"));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn header_is_magic_then_version() {
    // The bytes on disk must not change with how the constants are spelled.
    assert_eq!(MAGIC, b"FTRAFT\0\x01");
    assert!(MAGIC.starts_with(LOG_MAGIC));
}

#[test]
fn foreign_file_and_lock_are_errors() {
    let d = tmp("foreign");
    std::fs::create_dir_all(&d).expect("mkdir");
    std::fs::write(d.join(LOG_FILE), b"hello world, not a log").expect("write");
    let e = DiskStorage::open(&d, FsyncPolicy::Always, &logger()).err();
    assert!(matches!(e, Some(StoreError::BadHeader { .. })), "{e:?}");
    let d2 = tmp("lock");
    let (_a, _) = DiskStorage::open(&d2, FsyncPolicy::Never, &logger()).expect("open");
    let e = DiskStorage::open(&d2, FsyncPolicy::Never, &logger()).err();
    assert!(matches!(e, Some(StoreError::Locked { .. })), "{e:?}");
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::remove_dir_all(&d2);
}
