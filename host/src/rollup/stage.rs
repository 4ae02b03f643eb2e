//! Running a chunk through the transform into the roll-up: one transform
//! call per run of records from one partition (so every sample is known to
//! belong to its partition), and, only when a run holds a sample that
//! cannot be added, one call per record to find the records to reject.

use pmacct_guest_sdk::{BatchOutput, IndexedError, RecordError};

use super::{Counts, Rollup, WallClock};
use crate::chunk::Chunk;
use crate::offsets::{Slot, Tracker};
use crate::transform::Transformer;

pub struct Stage {
    pub rollup: Rollup,
    run_out: BatchOutput,
    one_out: BatchOutput,
    ends: Vec<u32>,
}

impl Stage {
    pub fn new(rollup: Rollup) -> Self {
        Stage {
            rollup,
            run_out: BatchOutput::default(),
            one_out: BatchOutput::default(),
            ends: Vec::new(),
        }
    }

    /// Transform `chunk` and add its samples to the roll-up; records the
    /// transform or the roll-up rejects go to `errors` (indices within the
    /// chunk). `partition` gives a slot's partition number.
    pub fn add_chunk(
        &mut self,
        transformer: &mut Transformer,
        chunk: &Chunk,
        partition: impl Fn(Slot) -> i32,
        tracker: &mut Tracker,
        errors: &mut Vec<IndexedError>,
        clock: WallClock,
    ) -> Counts {
        let mut counts = Counts::default();
        let mut start = 0;
        while start < chunk.len() {
            let slot = chunk.positions[start].0;
            let len = chunk.positions[start..]
                .iter()
                .take_while(|(s, _)| *s == slot)
                .count();
            let place = (slot, partition(slot));
            let c = self.add_run(
                transformer,
                chunk,
                (start..start + len, place),
                tracker,
                errors,
                clock,
            );
            counts.late += c.late;
            start += len;
        }
        counts
    }

    fn add_run(
        &mut self,
        transformer: &mut Transformer,
        chunk: &Chunk,
        (run, place): (std::ops::Range<usize>, (Slot, i32)),
        tracker: &mut Tracker,
        errors: &mut Vec<IndexedError>,
        clock: WallClock,
    ) -> Counts {
        let base = if run.start == 0 {
            0
        } else {
            chunk.ends[run.start - 1]
        };
        self.ends.clear();
        self.ends
            .extend(chunk.ends[run.clone()].iter().map(|e| e - base));
        let bytes = &chunk.bytes[base as usize..chunk.ends[run.end - 1] as usize];
        self.run_out.clear();
        transformer.run(bytes, &self.ends, &mut self.run_out);
        let offsets = (chunk.positions[run.start].1, chunk.positions[run.end - 1].1);
        match self
            .rollup
            .feed(place, offsets, &self.run_out.body, tracker, clock)
        {
            Ok(counts) => {
                errors.extend(self.run_out.errors.drain(..).map(|mut e| {
                    e.index += run.start as u32;
                    e
                }));
                counts
            }
            Err(_) => self.add_one_by_one(transformer, chunk, (run, place), tracker, errors, clock),
        }
    }

    /// The slow path: each record of the run on its own, so only the records
    /// whose samples cannot be added are rejected. (A transform that keeps
    /// state across calls sees these records twice.)
    fn add_one_by_one(
        &mut self,
        transformer: &mut Transformer,
        chunk: &Chunk,
        (run, place): (std::ops::Range<usize>, (Slot, i32)),
        tracker: &mut Tracker,
        errors: &mut Vec<IndexedError>,
        clock: WallClock,
    ) -> Counts {
        let mut counts = Counts::default();
        for i in run {
            let start = if i == 0 {
                0
            } else {
                chunk.ends[i - 1] as usize
            };
            let record = &chunk.bytes[start..chunk.ends[i] as usize];
            self.one_out.clear();
            transformer.run(record, &[record.len() as u32], &mut self.one_out);
            if let Some(mut e) = self.one_out.errors.pop() {
                e.index = i as u32;
                errors.push(e);
                continue;
            }
            let offset = chunk.positions[i].1;
            match self
                .rollup
                .feed(place, (offset, offset), &self.one_out.body, tracker, clock)
            {
                Ok(c) => counts.late += c.late,
                Err(refusal) => errors.push(IndexedError {
                    index: i as u32,
                    error: RecordError::new(refusal.reason(), refusal.detail()),
                }),
            }
        }
        counts
    }
}
