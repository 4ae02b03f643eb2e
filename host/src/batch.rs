//! A batch: the samples of transformed chunks, the Kafka offsets it holds,
//! and when it must be sent.
//!
//! It is full at `VM_MAX_SAMPLES_PER_SEND` samples and due `VM_MAX_TIME_TO_SEND`
//! after its first record, whether or not more records arrive. A record's
//! samples are never split across two batches, so a record with several
//! metric fields can take a batch a little past the limit.

use std::time::{Duration, Instant};

use pmacct_guest_sdk::RecordBuf;

use crate::transform::Output;

use crate::offsets::{Hold, Slot, Tracker};

/// Bytes of import lines that make a batch full. One more call may add up
/// to TRANSFORM_MAX_OUTPUT_MB (16 MiB by default), so a request stays under
/// VictoriaMetrics' `-maxInsertRequestSize` (32 MB by default).
pub const FULL_BYTES: usize = 8 << 20;

/// About the bytes of the import lines of `samples`: their strings (as
/// they are: escapes add more), a label's punctuation, a line's own with a
/// short value and a 13-digit timestamp.
fn lines_bytes(samples: &pmacct_guest_sdk::SampleSet) -> usize {
    samples.text.len() + 3 * samples.string_ends.len() + 80 * samples.len()
}

/// When the open batch is flushed, and which samples it refuses.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    pub max_samples: u32,
    /// Flush this long after its first record.
    pub max_age: Duration,
    /// Records with a sample stamped further ahead of the host's clock are
    /// rejected (`future_timestamp`).
    pub max_future_skew: Duration,
}

pub struct Batch {
    /// The samples, and the errors of the chunk last added.
    pub out: Output,
    /// Offsets held in the tracker until the batch is accepted: the first
    /// record of each partition in the batch.
    pub holds: Vec<Hold>,
    /// Offsets that roll-up buckets held (with the last offset that fed
    /// each), released when the batch carrying their final sums is accepted.
    pub releases: Vec<(Hold, i64)>,
    /// Records the batch covers, including those that yielded no sample.
    pub records: u64,
    /// Of those, the ones the transform rejected.
    pub rejected: u64,
    pub opened: Option<Instant>,
    /// The records themselves, kept only when there is a dead-letter topic.
    pub letters: Option<Letters>,
    /// Its samples are roll-up sums (`ROLLUP=sum`), not its records' own.
    pub sums: bool,
}

/// What dead-lettering a batch needs: every record as it came from Kafka,
/// and which the transform rejected.
#[derive(Default)]
pub struct Letters {
    pub records: RecordBuf,
    pub positions: Vec<(Slot, i64)>,
    /// Each record's line within its Kafka message.
    pub indices: Vec<u32>,
    /// (record index in the batch, reason, detail).
    pub rejected: Vec<(u32, String, String)>,
}

impl Letters {
    fn clear(&mut self) {
        self.records.clear();
        self.positions.clear();
        self.indices.clear();
        self.rejected.clear();
    }
}

impl Batch {
    pub fn new(capacity_bytes: usize, keep_letters: bool) -> Self {
        Batch {
            out: Output {
                samples: pmacct_guest_sdk::SampleSet {
                    text: Vec::with_capacity(capacity_bytes),
                    ..Default::default()
                },
                ..Output::default()
            },
            holds: Vec::new(),
            releases: Vec::new(),
            records: 0,
            rejected: 0,
            opened: None,
            letters: keep_letters.then(Letters::default),
            sums: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0 && self.out.samples.is_empty()
    }

    /// Whether the batch already holds an offset of this partition's
    /// records that still counts: after a rebalance the partition's records
    /// are read again into the same open batch, and the hold taken before
    /// it no longer keeps them uncommitted.
    pub fn holds_partition(&self, slot: Slot, tracker: &Tracker) -> bool {
        self.holds
            .iter()
            .any(|&h| h.slot == slot && tracker.is_live(h))
    }

    /// Note that records were added (starts the clock on the first).
    pub fn add_records(&mut self, n: usize) {
        if n > 0 && self.opened.is_none() {
            self.opened = Some(Instant::now());
        }
        self.records += n as u64;
    }

    /// Start the clock if it is not running (samples without records).
    pub fn start_clock(&mut self) {
        self.opened.get_or_insert_with(Instant::now);
    }

    /// Make the batch due at once.
    pub fn make_due(&mut self, max_age: Duration) {
        let now = Instant::now();
        self.opened = Some(now.checked_sub(max_age).unwrap_or(now));
    }

    /// Full at `max_samples`, or at [`FULL_BYTES`] of samples whatever
    /// their count: a module writing long labels must not make a request a
    /// store refuses for its size.
    pub fn is_full(&self, max_samples: u32) -> bool {
        self.out.samples.len() >= max_samples as usize
            || lines_bytes(&self.out.samples) >= FULL_BYTES
    }

    /// When the batch must be sent, if it holds anything.
    pub fn due_at(&self, max_age: Duration) -> Option<Instant> {
        self.opened.map(|t| t + max_age)
    }

    pub fn clear(&mut self) {
        self.out.clear();
        self.holds.clear();
        self.releases.clear();
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
    let room = (max_samples as usize).saturating_sub(batch.out.samples.len());
    room.clamp(1, max_chunk)
}
