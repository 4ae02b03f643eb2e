//! What the store must hold after a schedule, decided from the records
//! produced alone, by the rules the README states:
//!
//! - without roll-up, every record's sample exactly once (deduplication
//!   removes the replays), with its own value and timestamp;
//! - with `ROLLUP=sum`, per partition an event-time clock, the newest time
//!   among the records it accepted. A slot is final once the clock is at
//!   least the slot's end plus `ROLLUP_LATENESS`; a record for a final slot
//!   is rejected as `rollup_too_late`; a record stamped in the future is
//!   rejected as `future_timestamp` and moves nothing. The store holds each
//!   final slot's exact sum, per series and partition, at the slot's start
//!   plus the partition number in milliseconds; an open slot's sum may be
//!   absent (not written yet) but never wrong.

use std::collections::BTreeMap;

use super::draw::{Kind, Mode, Rec, Schedule, FUTURE_S, LATENESS_S, STEP_S};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Stored,
    Rejected(&'static str),
}

/// A sample the store must hold: its series (the label that tells series
/// of one run apart) and timestamp in ms.
pub type Cell = (String, i64);

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Want {
    pub value: f64,
    /// Final: must be there. Open (roll-up): absent or exact.
    pub final_: bool,
}

pub struct Model {
    pub mode: Mode,
    /// Per record (by seq): its fate.
    pub fates: BTreeMap<u64, Fate>,
    pub cells: BTreeMap<Cell, Want>,
    /// Per partition: the offset the group must have committed at the end
    /// (without roll-up), or must not have passed (with roll-up: the host
    /// holds a slot from the first offset of the chunk that opened it,
    /// which may be earlier, so only this bound is exact).
    pub commit: Vec<i64>,
}

/// Offsets of a roll-up bucket's first and last record.
struct Bucket {
    first: i64,
    last: i64,
}

impl Model {
    pub fn new(s: &Schedule, base_s: i64, partitions: i32) -> Model {
        Model::of(s.mode, s.records(), base_s, partitions)
    }

    /// The model of `records` (in the order produced) alone.
    pub fn of<'a>(
        mode: Mode,
        records: impl Iterator<Item = &'a Rec>,
        base_s: i64,
        partitions: i32,
    ) -> Model {
        let records: Vec<&Rec> = records.collect();
        let mut m = Model {
            mode,
            fates: BTreeMap::new(),
            cells: BTreeMap::new(),
            commit: Vec::new(),
        };
        for p in 0..partitions {
            let lane: Vec<&Rec> = records
                .iter()
                .copied()
                .filter(|r| r.partition == p)
                .collect();
            let end = lane.len() as i64;
            let commit = match mode {
                Mode::Plain => {
                    m.plain(&lane, base_s);
                    end
                }
                Mode::Rollup => m.rollup(p, &lane, base_s).unwrap_or(end),
            };
            m.commit.push(commit);
        }
        m
    }

    fn plain(&mut self, lane: &[&Rec], base_s: i64) {
        for r in lane {
            self.fates.insert(r.seq, Fate::Stored);
            let want = Want {
                value: r.value as f64,
                final_: true,
            };
            self.cells
                .insert((r.seq.to_string(), (base_s + r.time_s) * 1000), want);
        }
    }

    /// One partition's records in offset order; returns how far the commit
    /// may go: the first record of the oldest open slot, moved back to the
    /// start of a final slot whose records span it (the host never commits
    /// inside a written slot's records), or None when all is final.
    fn rollup(&mut self, p: i32, lane: &[&Rec], base_s: i64) -> Option<i64> {
        let (step, lateness) = (STEP_S * 1000, LATENESS_S * 1000);
        let mut clock = i64::MIN;
        let mut buckets: BTreeMap<i64, Bucket> = BTreeMap::new();
        let mut sums: BTreeMap<(&str, i64), f64> = BTreeMap::new();
        for (offset, r) in lane.iter().enumerate() {
            let offset = offset as i64;
            let t = if r.time_s >= FUTURE_S {
                r.time_s * 1000
            } else {
                (base_s + r.time_s) * 1000
            };
            let slot = t - t.rem_euclid(step);
            let fate = if r.time_s >= FUTURE_S {
                Fate::Rejected("future_timestamp")
            } else if clock >= slot + step + lateness {
                Fate::Rejected("rollup_too_late")
            } else {
                clock = clock.max(t);
                let b = buckets.entry(slot).or_insert(Bucket {
                    first: offset,
                    last: offset,
                });
                b.last = offset;
                *sums.entry((r.key, slot)).or_default() += r.value as f64;
                Fate::Stored
            };
            self.check_intent(r, fate);
            self.fates.insert(r.seq, fate);
        }
        let is_final = |slot: i64| clock >= slot + step + lateness;
        for ((key, slot), sum) in sums {
            let want = Want {
                value: sum,
                final_: is_final(slot),
            };
            self.cells
                .insert((key.to_string(), slot + i64::from(p)), want);
        }
        let mut at = buckets
            .iter()
            .filter(|(slot, _)| !is_final(**slot))
            .map(|(_, b)| b.first)
            .min()?;
        while let Some(b) = buckets
            .iter()
            .find(|(slot, b)| is_final(**slot) && b.first < at && at <= b.last)
            .map(|(_, b)| b)
        {
            at = b.first;
        }
        Some(at)
    }

    /// The generator's intent must be the model's verdict: a mismatch is a
    /// bug of the harness, not of the host.
    fn check_intent(&self, r: &Rec, fate: Fate) {
        let intended = match r.kind {
            Kind::Normal | Kind::Late => Fate::Stored,
            Kind::TooLate => Fate::Rejected("rollup_too_late"),
            Kind::Future => Fate::Rejected("future_timestamp"),
        };
        assert_eq!(
            intended, fate,
            "harness bug: record {r:?} was drawn as {:?} but the model says {fate:?}",
            r.kind
        );
    }

    /// How many records the model rejects for each reason.
    pub fn rejected(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for fate in self.fates.values() {
            if let Fate::Rejected(reason) = fate {
                *out.entry(*reason).or_default() += 1;
            }
        }
        out
    }
}
