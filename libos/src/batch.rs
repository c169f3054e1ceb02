//! The payload of a replicated log entry: one or more batches, each tagged.
//!
//! ```text
//! header batch:  1 | Header (protobuf)
//! events batch:  2 | { u32 len (LE) | Event (protobuf) }*
//! barrier batch: 3 | node id: u64 LE | term: u64 LE
//! part batch:    4 | more: u8 | bytes of one encoded Event
//! ```
//! An event too large for one entry (a 128 MiB file read) is proposed as parts, one entry each,
//! in order: the reader joins them (`more` = 1 until the last) and decodes the event. Parts
//! interrupted by any other batch (a new leader's barrier: the old one died in the middle) were
//! never whole in the log and are dropped.
//! A new leader proposes a barrier; when its own barrier comes back committed it has read the
//! whole committed log. `ftexec run` writes these batches, its followers and `ftdbg` read them.

use crate::proto::{Event, Header};
use prost::Message;

pub const TAG_HEADER: u8 = 1;
pub const TAG_EVENTS: u8 = 2;
pub const TAG_BARRIER: u8 = 3;
pub const TAG_PART: u8 = 4;
/// The largest part of an event in one entry (Raft entries are limited to 16 MiB).
pub const PART_BYTES: usize = 8 << 20;

/// One decoded batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Batch {
    Header(Box<Header>),
    Events(Vec<Event>),
    Barrier {
        node: u64,
        term: u64,
    },
    /// Bytes of one event's encoding; more follow unless `last`.
    Part {
        last: bool,
        bytes: Vec<u8>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("an undecodable header: {0}")]
    Header(prost::DecodeError),
    #[error("an undecodable event: {0}")]
    Event(prost::DecodeError),
    #[error("a truncated event batch")]
    Truncated,
    #[error("an unknown batch (tag {0:?})")]
    Unknown(Option<u8>),
}

/// A header batch.
pub fn header(h: &Header) -> Vec<u8> {
    let mut b = vec![TAG_HEADER];
    // Encoding into a Vec cannot run out of space.
    let _ = h.encode(&mut b);
    b
}

/// A barrier batch.
pub fn barrier(node: u64, term: u64) -> Vec<u8> {
    let mut b = vec![TAG_BARRIER];
    b.extend_from_slice(&node.to_le_bytes());
    b.extend_from_slice(&term.to_le_bytes());
    b
}

/// Appends `ev` to an events batch being built in `out` (starting it if `out` is empty).
pub fn push_event(ev: &Event, out: &mut Vec<u8>) {
    if out.is_empty() {
        out.push(TAG_EVENTS);
    }
    out.extend_from_slice(&(ev.encoded_len() as u32).to_le_bytes());
    let _ = ev.encode(out);
}

/// The part batches of an event whose encoding is larger than [`PART_BYTES`] (None for a
/// smaller one, which goes in an events batch).
pub fn parts(ev: &Event) -> Option<Vec<Vec<u8>>> {
    if ev.encoded_len() <= PART_BYTES {
        return None;
    }
    let bytes = ev.encode_to_vec();
    let n = bytes.len().div_ceil(PART_BYTES);
    Some(
        bytes
            .chunks(PART_BYTES)
            .enumerate()
            .map(|(i, c)| {
                let mut b = vec![TAG_PART, u8::from(i + 1 < n)];
                b.extend_from_slice(c);
                b
            })
            .collect(),
    )
}

/// The event whose parts' bytes are `joined`.
pub fn event_of_parts(joined: &[u8]) -> Result<Event, BatchError> {
    Event::decode(joined).map_err(BatchError::Event)
}

/// Decodes one batch.
pub fn decode(b: &[u8]) -> Result<Batch, BatchError> {
    match b.split_first() {
        Some((&TAG_HEADER, rest)) => {
            Header::decode(rest).map(|h| Batch::Header(Box::new(h))).map_err(BatchError::Header)
        }
        Some((&TAG_EVENTS, mut d)) => {
            let mut events = Vec::new();
            while !d.is_empty() {
                let len = d.get(..4).ok_or(BatchError::Truncated)?;
                let n = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
                let body = d.get(4..4 + n).ok_or(BatchError::Truncated)?;
                events.push(Event::decode(body).map_err(BatchError::Event)?);
                d = &d[4 + n..];
            }
            Ok(Batch::Events(events))
        }
        Some((&TAG_BARRIER, rest)) if rest.len() == 16 => {
            let word = |i: usize| u64::from_le_bytes(rest[i..i + 8].try_into().unwrap_or_default());
            Ok(Batch::Barrier { node: word(0), term: word(8) })
        }
        Some((&TAG_PART, rest)) if !rest.is_empty() => {
            Ok(Batch::Part { last: rest[0] == 0, bytes: rest[1..].to_vec() })
        }
        other => Err(BatchError::Unknown(other.map(|(t, _)| *t))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{event::Kind, Exit};

    #[test]
    fn batches_round_trip_and_damage_is_an_error() {
        let h = Header { argv: vec![b"prog".to_vec()], ..Default::default() };
        assert_eq!(decode(&header(&h)).expect("header"), Batch::Header(Box::new(h)));
        assert_eq!(decode(&barrier(3, 7)).expect("barrier"), Batch::Barrier { node: 3, term: 7 });
        let ev = Event { kind: Some(Kind::Exit(Exit { code: 4, signal: 0, task: 1 })) };
        let mut b = Vec::new();
        push_event(&ev, &mut b);
        push_event(&ev, &mut b);
        assert_eq!(decode(&b).expect("events"), Batch::Events(vec![ev.clone(), ev]));
        assert!(matches!(decode(&b[..b.len() - 1]), Err(BatchError::Truncated)));
        assert!(matches!(decode(&[9]), Err(BatchError::Unknown(Some(9)))));
        assert!(matches!(decode(&[]), Err(BatchError::Unknown(None))));
    }

    #[test]
    fn a_large_event_is_cut_into_parts_that_join_again() {
        use crate::proto::{MemWrite, Syscall};
        let small = Event { kind: Some(Kind::Exit(Exit::default())) };
        assert!(parts(&small).is_none());
        let data: Vec<u8> = (0..PART_BYTES * 2 + 100).map(|i| (i % 251) as u8).collect();
        let big = Event {
            kind: Some(Kind::Syscall(Syscall { mem: vec![MemWrite { addr: 1, data }], ..Default::default() })),
        };
        let ps = parts(&big).expect("parts");
        assert_eq!(ps.len(), 3);
        assert!(ps.iter().all(|p| p.len() <= PART_BYTES + 2));
        let mut joined = Vec::new();
        for (i, p) in ps.iter().enumerate() {
            match decode(p).expect("part") {
                Batch::Part { last, bytes } => {
                    assert_eq!(last, i == 2);
                    joined.extend(bytes);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(Event::decode(joined.as_slice()).expect("event"), big);
    }
}
