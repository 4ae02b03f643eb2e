//! A batch: the import body built from transformed chunks, the Kafka
//! offsets it covers, and when it must be sent.
//!
//! It is full at `VM_MAX_SAMPLES_PER_SEND` samples and due `VM_MAX_TIME_TO_SEND`
//! after its first record, whether or not more records arrive. A record's
//! samples are never split across two batches, so a record with several
//! metric fields can take a batch a little past the limit.

use std::time::{Duration, Instant};

use pmacct_guest_sdk::BatchOutput;

use crate::offsets::BatchOffsets;

pub struct Batch {
    /// Import lines, sample count and the errors of the chunk last added.
    pub out: BatchOutput,
    pub offsets: BatchOffsets,
    /// Records the batch covers, including those that yielded no sample.
    pub records: u64,
    /// Of those, the ones the transform rejected.
    pub rejected: u64,
    pub opened: Option<Instant>,
    /// The records themselves, kept only when there is a dead-letter topic.
    pub letters: Option<Letters>,
}

/// What dead-lettering a batch needs: every record as it came from Kafka,
/// and which the transform rejected.
#[derive(Default)]
pub struct Letters {
    pub payloads: Vec<u8>,
    pub ends: Vec<u32>,
    pub positions: Vec<(crate::source::Slot, i64)>,
    /// (record index in the batch, reason, detail).
    pub rejected: Vec<(u32, String, String)>,
}

impl Letters {
    pub fn payload(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.payloads[start..self.ends[i] as usize]
    }

    fn clear(&mut self) {
        self.payloads.clear();
        self.ends.clear();
        self.positions.clear();
        self.rejected.clear();
    }
}

impl Batch {
    pub fn new(capacity_bytes: usize, keep_letters: bool) -> Self {
        Batch {
            out: BatchOutput {
                body: Vec::with_capacity(capacity_bytes),
                ..BatchOutput::default()
            },
            offsets: BatchOffsets::default(),
            records: 0,
            rejected: 0,
            opened: None,
            letters: keep_letters.then(Letters::default),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Note that records were added (starts the clock on the first).
    pub fn add_records(&mut self, n: usize) {
        if n > 0 && self.opened.is_none() {
            self.opened = Some(Instant::now());
        }
        self.records += n as u64;
    }

    pub fn is_full(&self, max_samples: u32) -> bool {
        self.out.samples >= max_samples
    }

    /// When the batch must be sent, if it holds anything.
    pub fn due_at(&self, max_age: Duration) -> Option<Instant> {
        self.opened.map(|t| t + max_age)
    }

    pub fn clear(&mut self) {
        self.out.clear();
        self.offsets.clear();
        self.records = 0;
        self.rejected = 0;
        self.opened = None;
        if let Some(l) = &mut self.letters {
            l.clear();
        }
    }
}

/// How many more records the open batch should take before it is checked
/// again: at least one sample per record is the common case, so never more
/// than the room left; at most `max_chunk` so a call into the transform
/// stays short.
pub fn chunk_room(batch: &Batch, max_samples: u32, max_chunk: usize) -> usize {
    let room = max_samples.saturating_sub(batch.out.samples) as usize;
    room.clamp(1, max_chunk)
}
