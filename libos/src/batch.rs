//! The payload of a replicated log entry: one or more batches, each tagged.
//!
//! ```text
//! header batch:  1 | Header (protobuf)
//! events batch:  2 | { u32 len (LE) | Event (protobuf) }*
//! barrier batch: 3 | node id: u64 LE | term: u64 LE
//! ```
//! A new leader proposes a barrier; when its own barrier comes back committed it has read the
//! whole committed log. `ftexec run` writes these batches, its followers and `ftdbg` read them.

use crate::proto::{Event, Header};
use prost::Message;

pub const TAG_HEADER: u8 = 1;
pub const TAG_EVENTS: u8 = 2;
pub const TAG_BARRIER: u8 = 3;

/// One decoded batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Batch {
    Header(Box<Header>),
    Events(Vec<Event>),
    Barrier { node: u64, term: u64 },
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
}
