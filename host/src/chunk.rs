//! Records read in one go from Kafka, payloads back to back: what the
//! source fills and the transform reads.

use pmacct_guest_sdk::{RecordBuf, Records};

use crate::markers::{marker, Marker};
use crate::offsets::Slot;

/// Records read in one go, payloads back to back (the transform's input).
///
/// A Kafka message is one record, or several: each line of a message is a
/// record (pmacct's `kafka_multi_values` packs newline-separated records
/// into one message). They share the message's (slot, offset), so its
/// offset is committed once every one of them is done; a message is never
/// split across two chunks, so its records go into one batch.
#[derive(Default)]
pub struct Chunk {
    pub records: RecordBuf,
    /// (slot, offset) of each record's message, for offsets and error logs.
    pub positions: Vec<(Slot, i64)>,
    /// Each record's line within its message (0 for a one-record message),
    /// for dead letters (`x-record-index`) and error logs.
    pub indices: Vec<u32>,
    /// (slot, offset) of every marker read (`markers.rs`): nothing to
    /// transform, but read, so their offsets are committed.
    pub markers: Vec<(Slot, i64)>,
    /// Records the source could not read (Avro that does not decode): their
    /// index in the chunk and why. They hold their raw bytes, for the dead
    /// letter; whatever the transform makes of them, they are rejected as
    /// `invalid_avro`.
    pub undecodable: Vec<(u32, String)>,
}

impl Chunk {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// No record (markers may still wait to be noted as read).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Every record, numbered from 0.
    pub fn all(&self) -> Records<'_> {
        self.records.all()
    }

    pub fn clear(&mut self) {
        self.records.clear();
        self.positions.clear();
        self.indices.clear();
        self.markers.clear();
        self.undecodable.clear();
    }

    /// Keep only the records whose slot passes `keep` (a rare path: rebalances).
    pub(crate) fn retain(&mut self, keep: impl Fn(Slot) -> bool) {
        let mut old = std::mem::take(self);
        let mut undecodable = old.undecodable.drain(..).peekable();
        for (i, (record, (&(slot, offset), &index))) in old
            .records
            .all()
            .iter()
            .zip(old.positions.iter().zip(&old.indices))
            .enumerate()
        {
            let why = undecodable.next_if(|(at, _)| *at as usize == i);
            if keep(slot) {
                if let Some((_, why)) = why {
                    self.undecodable.push((self.len() as u32, why));
                }
                self.push(record, slot, offset, index);
            }
        }
        self.markers = old.markers;
        self.markers.retain(|&(slot, _)| keep(slot));
    }

    /// End the record written in place into `records` (a decoded Avro
    /// record): a marker is noted apart, anything else is a record.
    pub(crate) fn end_record(&mut self, slot: Slot, offset: i64, index: u32) -> Option<Marker> {
        let found = marker(self.records.unended_bytes());
        if found.is_some() {
            self.records.discard();
            self.markers.push((slot, offset));
        } else {
            self.records.end();
            self.positions.push((slot, offset));
            self.indices.push(index);
        }
        found
    }

    /// A record that could not be read, as its raw bytes, rejected with
    /// `why` whatever the transform makes of it.
    pub(crate) fn push_undecodable(
        &mut self,
        raw: &[u8],
        slot: Slot,
        offset: i64,
        index: u32,
        why: String,
    ) {
        self.undecodable.push((self.len() as u32, why));
        self.push(raw, slot, offset, index);
    }

    pub(crate) fn push(&mut self, payload: &[u8], slot: Slot, offset: i64, index: u32) {
        self.records.push(payload);
        self.positions.push((slot, offset));
        self.indices.push(index);
    }

    /// Add one Kafka message: each line a record, a trailing newline ending
    /// the last one, markers noted apart. Copies the records' bytes once,
    /// as for a one-record message, and allocates nothing per record.
    /// Returns how many of each marker kind it held ([`Marker::ALL`] order).
    pub(crate) fn push_message(&mut self, payload: &[u8], slot: Slot, offset: i64) -> [u64; 2] {
        let mut markers = [0; 2];
        let body = payload.strip_suffix(b"\n").unwrap_or(payload);
        let mut start = 0;
        // An empty payload (a tombstone) is one empty record, which the
        // transform rejects with a reason: nothing vanishes.
        let ends = memchr::memchr_iter(b'\n', body).chain(std::iter::once(body.len()));
        for (index, end) in ends.enumerate() {
            let line = &body[start..end];
            start = end + 1;
            match marker(line) {
                Some(m) => {
                    markers[m as usize] += 1;
                    self.markers.push((slot, offset));
                }
                None => self.push(line, slot, offset, index as u32),
            }
        }
        markers
    }
}
