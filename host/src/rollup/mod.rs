//! Roll-up (`ROLLUP=sum`): samples that share a series and a time slot are
//! summed on the host and written as one sample, so a transform that reduces
//! cardinality keeps exact totals in VictoriaMetrics.
//!
//! State is a set of *buckets*, one per (time slot, partition), each a map
//! from series to *cell* (the sum so far). Why it stays exact:
//!
//! - A bucket holds the offset of the first record that fed it in the
//!   [`Tracker`] until its final sum is accepted, so a restart reads every
//!   record of every unfinished bucket again and rebuilds it whole.
//! - A cell's sample is its cumulative sum at a fixed timestamp. Writing it
//!   again (a late record, a replay) writes a larger or equal value, and
//!   VictoriaMetrics' deduplication keeps the largest: the complete sum.
//! - Partitions never share a sample: the timestamp's milliseconds are the
//!   partition number, so hosts of one group never overwrite each other.
//!
//! A bucket is final once its partition's event time has passed its end by
//! `ROLLUP_LATENESS`; it is written and forgotten. Before that it is written
//! (and kept) when the topic goes quiet, or written early and forgotten when
//! there are more than `ROLLUP_MAX_CELLS` cells. A sample for a bucket
//! already forgotten is *too late*: it cannot be added exactly, so its
//! record is rejected with that reason (counted, logged, dead-lettered).

mod stage;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::import_line::{self, Line};
use crate::offsets::{Hold, Slot, Tracker};
pub use stage::Stage;

/// What `ROLLUP_*` configure, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Timestamps are floored to this (at least 1 s: the milliseconds carry
    /// the partition).
    pub step: Duration,
    pub lateness: Duration,
    pub max_cells: usize,
}

impl Settings {
    fn step_ms(&self) -> i64 {
        (self.step.as_millis() as i64).max(1000)
    }
}

/// Why a sample cannot be rolled up; its record is rejected with this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooLate,
    /// Negative or not a number: a sum of such values can shrink, and the
    /// largest-wins deduplication that makes replays exact would be wrong.
    NotACount,
    /// Not a VictoriaMetrics import line.
    Unreadable,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::TooLate => "rollup_too_late",
            Refusal::NotACount => "rollup_not_a_count",
            Refusal::Unreadable => "rollup_unreadable_sample",
        }
    }

    pub fn detail(self) -> &'static str {
        match self {
            Refusal::TooLate => "its time slot was already written for good (older than ROLLUP_LATENESS behind the partition's newest record, or written early at ROLLUP_MAX_CELLS)",
            Refusal::NotACount => "ROLLUP=sum adds non-negative counts; this value is negative or not a number",
            Refusal::Unreadable => "the transform wrote a line that is not a VictoriaMetrics import line",
        }
    }
}

/// Counts of what one call did, for `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Samples added to a cell that had already been written once.
    pub late: u64,
    pub written: u64,
    /// Cells written and forgotten early, at `ROLLUP_MAX_CELLS`.
    pub early: u64,
}

#[derive(Default)]
struct Cell {
    sum: f64,
    /// The sum changed since it was last written.
    dirty: bool,
}

struct Bucket {
    cells: FxHashMap<Box<str>, Cell>,
    /// The offset this bucket holds in the tracker, and the last offset of
    /// the records that fed it.
    held: Hold,
    last: i64,
    /// Written at least once.
    written: bool,
}

/// One parsed sample: the series' bytes in the body, the value, the slot.
struct Sample {
    series: (usize, usize),
    value: f64,
    ts: i64,
    slot_ts: i64,
}

pub struct Rollup {
    settings: Settings,
    /// By (slot start, partition slot): ordered so the oldest come first.
    buckets: BTreeMap<(i64, Slot), Bucket>,
    /// Per slot: the newest event time seen (ms), and the timestamp offset.
    newest: Vec<i64>,
    millis: Vec<i64>,
    /// Buckets written early (at `ROLLUP_MAX_CELLS`) and not final yet:
    /// their later samples are too late. Two words per bucket, not per cell.
    evicted: BTreeSet<(i64, Slot)>,
    cells: usize,
    /// A cell changed since the last [`write_open`](Self::write_open).
    changed: bool,
    parsed: Vec<Sample>,
    due: Vec<(i64, Slot)>,
}

impl Rollup {
    pub fn new(settings: Settings) -> Self {
        Rollup {
            settings,
            buckets: BTreeMap::new(),
            newest: Vec::new(),
            millis: Vec::new(),
            evicted: BTreeSet::new(),
            cells: 0,
            changed: false,
            parsed: Vec::new(),
            due: Vec::new(),
        }
    }

    pub fn open_cells(&self) -> usize {
        self.cells
    }

    /// Note the partition number behind a slot.
    fn set_partition(&mut self, slot: Slot, partition: i32) {
        let i = slot as usize;
        if i >= self.millis.len() {
            self.millis.resize(i + 1, 0);
            self.newest.resize(i + 1, i64::MIN);
        }
        self.millis[i] = i64::from(partition.rem_euclid(1000));
    }

    /// Add the samples a run of records of one partition produced (`body`,
    /// import lines), holding `first_offset` for any bucket they open. All
    /// or nothing: on a refusal nothing is added, and the caller finds the
    /// records to reject by feeding them one at a time.
    pub fn feed(
        &mut self,
        (slot, partition): (Slot, i32),
        (first_offset, last_offset): (i64, i64),
        body: &[u8],
        tracker: &mut Tracker,
    ) -> Result<Counts, Refusal> {
        self.set_partition(slot, partition);
        self.parse(slot, body)?;
        let mut counts = Counts::default();
        let mut parsed = std::mem::take(&mut self.parsed);
        for s in &parsed {
            let series = std::str::from_utf8(&body[s.series.0..s.series.1])
                .map_err(|_| Refusal::Unreadable)?;
            let bucket = self
                .buckets
                .entry((s.slot_ts, slot))
                .or_insert_with(|| Bucket {
                    cells: FxHashMap::default(),
                    held: tracker.hold(slot, first_offset),
                    last: last_offset,
                    written: false,
                });
            bucket.last = bucket.last.max(last_offset);
            let cell = match bucket.cells.get_mut(series) {
                Some(cell) => cell,
                None => {
                    self.cells += 1;
                    bucket.cells.entry(series.into()).or_default()
                }
            };
            if bucket.written {
                counts.late += 1;
            }
            cell.sum += s.value;
            cell.dirty = true;
            self.changed = true;
            let newest = &mut self.newest[slot as usize];
            *newest = (*newest).max(s.ts);
        }
        parsed.clear();
        self.parsed = parsed;
        Ok(counts)
    }

    /// Parse `body` into `self.parsed`, refusing it whole if any sample
    /// cannot be added.
    fn parse(&mut self, slot: Slot, body: &[u8]) -> Result<(), Refusal> {
        self.parsed.clear();
        let step = self.settings.step_ms();
        for (line_start, line) in import_line::lines(body) {
            let l = Line::parse(line).ok_or(Refusal::Unreadable)?;
            let raw = l.metric.get();
            // RawValue borrows from `line`: its place in the body.
            let offset = raw.as_ptr() as usize - line.as_ptr() as usize + line_start;
            for pair in import_line::pairs(l.values, l.timestamps).ok_or(Refusal::Unreadable)? {
                let (v, t) = pair.map_err(|()| Refusal::Unreadable)?;
                let value = v.parse::<f64>().map_err(|_| Refusal::NotACount)?;
                let ts = t.parse::<i64>().map_err(|_| Refusal::Unreadable)?;
                if !(value.is_finite() && value >= 0.0) {
                    return Err(Refusal::NotACount);
                }
                let slot_ts = ts - ts.rem_euclid(step);
                if self.too_late(slot, slot_ts) {
                    return Err(Refusal::TooLate);
                }
                self.parsed.push(Sample {
                    series: (offset, offset + raw.len()),
                    value,
                    ts,
                    slot_ts,
                });
            }
        }
        Ok(())
    }

    /// The bucket was written for good already (or never could be kept).
    fn too_late(&self, slot: Slot, slot_ts: i64) -> bool {
        let key = (slot_ts, slot);
        self.evicted.contains(&key)
            || (!self.buckets.contains_key(&key) && self.is_final(slot, slot_ts))
    }

    fn is_final(&self, slot: Slot, slot_ts: i64) -> bool {
        let end = slot_ts + self.settings.step_ms() + self.settings.lateness.as_millis() as i64;
        self.newest
            .get(slot as usize)
            .is_some_and(|&newest| newest >= end)
    }

    /// Write final buckets, and the oldest early while there are too many
    /// cells, into `body` (import lines); the offsets they held go to
    /// `release` for when that body is accepted.
    pub fn write_due(&mut self, body: &mut Vec<u8>, release: &mut Vec<(Hold, i64)>) -> Counts {
        let mut counts = Counts::default();
        let mut due = std::mem::take(&mut self.due);
        due.extend(
            self.buckets
                .keys()
                .filter(|&&(slot_ts, slot)| self.is_final(slot, slot_ts)),
        );
        for key in due.drain(..) {
            counts.written += self.finish(key, body, release);
        }
        self.due = due;
        while self.cells > self.settings.max_cells {
            let Some(&key) = self.buckets.keys().next() else {
                break;
            };
            let n = self.finish(key, body, release);
            self.evicted.insert(key);
            counts.written += n;
            counts.early += n;
        }
        // An evicted bucket's samples are too late by the ordinary rule
        // once it would have been final.
        let newest = &self.newest;
        let end = self.settings.step_ms() + self.settings.lateness.as_millis() as i64;
        self.evicted.retain(|&(slot_ts, slot)| {
            newest.get(slot as usize).is_none_or(|&n| n < slot_ts + end)
        });
        counts
    }

    /// Write every changed cell and keep it (a quiet topic, a shutdown): the
    /// sums arrive, the buckets stay open and their records uncommitted.
    pub fn write_open(&mut self, body: &mut Vec<u8>) -> u64 {
        let mut written = 0;
        for (&(slot_ts, slot), bucket) in &mut self.buckets {
            let ts = slot_ts + self.millis[slot as usize];
            written += write_cells(&mut bucket.cells, ts, body);
            bucket.written = true;
        }
        self.changed = false;
        written
    }

    /// Forget a revoked partition's buckets: its new owner rebuilds them
    /// from the committed offsets.
    pub fn forget(&mut self, slot: Slot) {
        let before = self.buckets.len();
        self.buckets.retain(|&(_, s), b| {
            if s == slot {
                self.cells -= b.cells.len();
            }
            s != slot
        });
        self.evicted.retain(|&(_, s)| s != slot);
        if let Some(newest) = self.newest.get_mut(slot as usize) {
            *newest = i64::MIN;
        }
        tracing::debug!(
            slot,
            buckets = before - self.buckets.len(),
            "roll-up state of a revoked partition dropped"
        );
    }

    fn finish(
        &mut self,
        key: (i64, Slot),
        body: &mut Vec<u8>,
        release: &mut Vec<(Hold, i64)>,
    ) -> u64 {
        let Some(mut bucket) = self.buckets.remove(&key) else {
            return 0;
        };
        self.cells -= bucket.cells.len();
        release.push((bucket.held, bucket.last));
        write_cells(&mut bucket.cells, key.0 + self.millis[key.1 as usize], body)
    }

    /// Whether a cell changed since the last [`write_open`](Self::write_open).
    pub fn has_changes(&self) -> bool {
        self.changed
    }
}

fn write_cells(cells: &mut FxHashMap<Box<str>, Cell>, ts: i64, body: &mut Vec<u8>) -> u64 {
    let mut written = 0;
    let mut num = ryu::Buffer::new();
    let mut int = itoa::Buffer::new();
    for (series, cell) in cells.iter_mut().filter(|(_, c)| c.dirty) {
        body.extend_from_slice(b"{\"metric\":");
        body.extend_from_slice(series.as_bytes());
        body.extend_from_slice(b",\"values\":[");
        if cell.sum.fract() == 0.0 && cell.sum.abs() < 9e15 {
            body.extend_from_slice(int.format(cell.sum as i64).as_bytes());
        } else {
            body.extend_from_slice(num.format_finite(cell.sum).as_bytes());
        }
        body.extend_from_slice(b"],\"timestamps\":[");
        body.extend_from_slice(int.format(ts).as_bytes());
        body.extend_from_slice(b"]}\n");
        cell.dirty = false;
        written += 1;
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(step_s: u64, lateness_s: u64, max_cells: usize) -> Settings {
        Settings {
            step: Duration::from_secs(step_s),
            lateness: Duration::from_secs(lateness_s),
            max_cells,
        }
    }

    fn line(series: &str, value: f64, ts: i64) -> String {
        format!("{{\"metric\":{{\"__name__\":\"bytes\",\"net\":\"{series}\"}},\"values\":[{value}],\"timestamps\":[{ts}]}}\n")
    }

    /// (series, value, timestamp) of every line written.
    fn written(body: &[u8]) -> Vec<(String, f64, i64)> {
        let mut out: Vec<_> = std::str::from_utf8(body)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["metric"]["net"].as_str().unwrap().to_string(),
                    v["values"][0].as_f64().unwrap(),
                    v["timestamps"][0].as_i64().unwrap(),
                )
            })
            .collect();
        out.sort_by(|a, b| a.partial_cmp(b).unwrap());
        out
    }

    #[test]
    fn sums_one_series_and_slot_and_writes_it_once_final() {
        let mut r = Rollup::new(settings(60, 60, 1000));
        let mut t = Tracker::default();
        let body = [
            line("a", 100.0, 60_000),
            line("a", 200.0, 61_000),
            line("b", 5.0, 119_000),
        ]
        .concat();
        r.feed((0, 3), (10, 10), body.as_bytes(), &mut t).unwrap();
        t.read(0, 12);
        let (mut out, mut release) = (Vec::new(), Vec::new());
        assert_eq!(r.write_due(&mut out, &mut release), Counts::default());
        // Event time 2 min past the slot's end closes it.
        r.feed((0, 3), (13, 13), line("c", 1.0, 240_000).as_bytes(), &mut t)
            .unwrap();
        let counts = r.write_due(&mut out, &mut release);
        assert_eq!(counts.written, 2);
        // Milliseconds carry the partition.
        assert_eq!(
            written(&out),
            [("a".into(), 300.0, 60_003), ("b".into(), 5.0, 60_003)]
        );
        assert_eq!(
            release
                .iter()
                .map(|(h, _)| (h.slot, h.offset))
                .collect::<Vec<_>>(),
            [(0, 10)]
        );
        assert_eq!(r.open_cells(), 1);
        // The bucket held offset 10 until released.
        let mut pos = Vec::new();
        t.advanced(&mut pos);
        assert_eq!(pos, [(0, 10)]);
    }

    #[test]
    fn a_late_sample_rewrites_the_cumulative_sum_and_a_too_late_one_is_refused() {
        let mut r = Rollup::new(settings(60, 30, 1000));
        let mut t = Tracker::default();
        r.feed((0, 0), (0, 0), line("a", 10.0, 0).as_bytes(), &mut t)
            .unwrap();
        let mut out = Vec::new();
        assert_eq!(r.write_open(&mut out), 1);
        let c = r
            .feed((0, 0), (1, 1), line("a", 5.0, 1_000).as_bytes(), &mut t)
            .unwrap();
        assert_eq!(c.late, 1);
        out.clear();
        r.write_open(&mut out);
        assert_eq!(written(&out), [("a".into(), 15.0, 0)]);
        // Past the slot's end plus lateness: final, then refused.
        r.feed((0, 0), (2, 2), line("b", 1.0, 90_000).as_bytes(), &mut t)
            .unwrap();
        out.clear();
        r.write_due(&mut out, &mut Vec::new());
        assert!(written(&out).is_empty(), "nothing changed in slot 0");
        assert_eq!(
            r.feed((0, 0), (3, 3), line("a", 1.0, 2_000).as_bytes(), &mut t),
            Err(Refusal::TooLate)
        );
    }

    #[test]
    fn a_refused_body_adds_nothing() {
        let mut r = Rollup::new(settings(60, 30, 1000));
        let mut t = Tracker::default();
        let body = [line("a", 1.0, 0), line("a", -1.0, 0)].concat();
        assert_eq!(
            r.feed((0, 0), (0, 0), body.as_bytes(), &mut t),
            Err(Refusal::NotACount)
        );
        assert_eq!(
            r.feed((0, 0), (0, 0), b"{\"metric\":1}\n", &mut t),
            Err(Refusal::Unreadable)
        );
        assert_eq!(r.open_cells(), 0);
        assert!(!r.has_changes());
    }

    #[test]
    fn too_many_cells_write_the_oldest_early_and_then_refuse_them() {
        let mut r = Rollup::new(settings(60, 600, 2));
        let mut t = Tracker::default();
        for (i, series) in ["a", "b", "c"].iter().enumerate() {
            let ts = i as i64 * 60_000;
            r.feed(
                (0, 0),
                (i as i64, i as i64),
                line(series, 1.0, ts).as_bytes(),
                &mut t,
            )
            .unwrap();
        }
        let (mut out, mut release) = (Vec::new(), Vec::new());
        let counts = r.write_due(&mut out, &mut release);
        assert_eq!((counts.written, counts.early), (1, 1));
        assert_eq!(written(&out), [("a".into(), 1.0, 0)]);
        assert_eq!(
            release
                .iter()
                .map(|(h, _)| (h.slot, h.offset))
                .collect::<Vec<_>>(),
            [(0, 0)]
        );
        assert_eq!(r.open_cells(), 2);
        assert_eq!(
            r.feed((0, 0), (9, 9), line("a", 1.0, 0).as_bytes(), &mut t),
            Err(Refusal::TooLate)
        );
    }

    #[test]
    fn partitions_never_share_a_sample() {
        let mut r = Rollup::new(settings(0, 0, 1000));
        let mut t = Tracker::default();
        r.feed((0, 0), (0, 0), line("a", 1.0, 5_500).as_bytes(), &mut t)
            .unwrap();
        r.feed((1, 7), (0, 0), line("a", 2.0, 5_000).as_bytes(), &mut t)
            .unwrap();
        let mut out = Vec::new();
        r.write_open(&mut out);
        // Step 0 floors to the second.
        assert_eq!(
            written(&out),
            [("a".into(), 1.0, 5_000), ("a".into(), 2.0, 5_007)]
        );
        r.forget(1);
        assert_eq!(r.open_cells(), 1);
    }
}
