//! Running a chunk through the transform into the roll-up: one transform
//! call per run of records from one partition (so every sample is known to
//! belong to its partition), and, only when a run holds a sample that
//! cannot be added, one call per record to find the records to reject.

use pmacct_guest_sdk::{IndexedError, RecordError, Records};

use crate::transform::Output;

use super::{Counts, Rollup, WallClock};
use crate::offsets::{Slot, Tracker};
use crate::transform::Transformer;

/// A chunk's records as the transform takes them (enriched, or as read),
/// and each one's partition slot and offset.
#[derive(Clone, Copy)]
pub struct Located<'a> {
    pub records: Records<'a>,
    pub positions: &'a [(Slot, i64)],
}

pub struct Feeder {
    pub rollup: Rollup,
    run_out: Output,
    one_out: Output,
}

impl Feeder {
    pub fn new(rollup: Rollup) -> Self {
        Feeder {
            rollup,
            run_out: Output::default(),
            one_out: Output::default(),
        }
    }

    /// Transform `chunk`'s records and add their samples to the roll-up; records the
    /// transform or the roll-up rejects go to `errors` (indices within the
    /// chunk). `partition` gives a slot's partition number.
    pub fn add_chunk(
        &mut self,
        transformer: &mut Transformer,
        chunk: Located<'_>,
        partition: impl Fn(Slot) -> i32,
        tracker: &mut Tracker,
        errors: &mut Vec<IndexedError>,
        clock: WallClock,
    ) -> Counts {
        let mut counts = Counts::default();
        let mut start = 0;
        while start < chunk.records.len() {
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
        chunk: Located<'_>,
        (run, place): (std::ops::Range<usize>, (Slot, i32)),
        tracker: &mut Tracker,
        errors: &mut Vec<IndexedError>,
        clock: WallClock,
    ) -> Counts {
        self.run_out.clear();
        transformer.run(chunk.records.range(run.clone()), &mut self.run_out);
        let offsets = (chunk.positions[run.start].1, chunk.positions[run.end - 1].1);
        match self
            .rollup
            .feed(place, offsets, &self.run_out.samples, tracker, clock)
        {
            Ok(counts) => {
                errors.append(&mut self.run_out.errors);
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
        chunk: Located<'_>,
        (run, place): (std::ops::Range<usize>, (Slot, i32)),
        tracker: &mut Tracker,
        errors: &mut Vec<IndexedError>,
        clock: WallClock,
    ) -> Counts {
        let mut counts = Counts::default();
        for i in run {
            self.one_out.clear();
            transformer.run(chunk.records.range(i..i + 1), &mut self.one_out);
            if let Some(e) = self.one_out.errors.pop() {
                errors.push(e);
                continue;
            }
            let offset = chunk.positions[i].1;
            match self.rollup.feed(
                place,
                (offset, offset),
                &self.one_out.samples,
                tracker,
                clock,
            ) {
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
