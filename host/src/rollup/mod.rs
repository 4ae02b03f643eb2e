//! Roll-up (`ROLLUP=sum`): samples that share a series and an interval are
//! summed on the host and written as one sample, so a transform that reduces
//! cardinality keeps exact totals in VictoriaMetrics.
//!
//! State is a set of *buckets*, one per (interval, partition), each a map
//! from series to *cell* (the sum so far). Why it stays exact:
//!
//! - A bucket holds the offset of the first record that fed it in the
//!   [`Tracker`] until its final sum is accepted, so a restart reads every
//!   record of every unfinished bucket again and rebuilds it whole.
//! - A cell is written once, with its final sum, at a fixed timestamp. A
//!   replay rebuilds the same bucket from the same records and writes the
//!   same value again, which deduplication on any store merges. (With
//!   `ROLLUP_INTERIM_WRITES` a growing sum is also written before it is
//!   final; only a store that keeps the largest of equal-timestamp samples,
//!   as current VictoriaMetrics does, then ends with the complete one.)
//! - Partitions never share a sample: the timestamp's milliseconds are the
//!   partition number, so hosts of one group never overwrite each other.
//!
//! A bucket is final once its partition's event time has passed its end by
//! `ROLLUP_LATENESS`, or once its partition had no record for
//! `ROLLUP_IDLE_AFTER`, or early when there are more than
//! `ROLLUP_MAX_CELLS` cells; it is then written and forgotten. A sample for
//! a bucket already written is *too late*: it cannot be added exactly, so
//! its record is rejected with that reason (counted, logged,
//! dead-lettered). A partition's event time is the newest timestamp of its
//! samples, but never ahead of the host's clock, and a sample further ahead
//! than `MAX_FUTURE_SKEW` is rejected (`future_timestamp`): one record
//! stamped in 2099 can neither close every interval nor be stored.

mod feeder;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use pmacct_guest_sdk::SampleSet;
use rustc_hash::FxHashMap;

pub use crate::event_time::WallClock;
use crate::offsets::{Hold, Slot, Tracker};
pub use feeder::{Feeder, Located};

/// What `ROLLUP_*` configure, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Timestamps are floored to this (at least 1 s: the milliseconds carry
    /// the partition).
    pub step: Duration,
    pub lateness: Duration,
    pub max_cells: usize,
    /// A partition with no record for this long has its buckets written.
    pub idle_after: Duration,
    /// Write growing sums before they are final (a quiet topic, a stop).
    pub interim: bool,
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
    /// Stamped further ahead of the host's clock than `MAX_FUTURE_SKEW`.
    Future,
    /// Negative or not a number: a sum of such values can shrink, and the
    /// largest-wins deduplication that makes replays exact would be wrong.
    NotACount,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::TooLate => "rollup_too_late",
            Refusal::Future => crate::event_time::FUTURE_REASON,
            Refusal::NotACount => "rollup_not_a_count",
        }
    }

    pub fn detail(self) -> &'static str {
        match self {
            Refusal::TooLate => "its interval was already written for good (older than ROLLUP_LATENESS behind the partition's newest record, written after ROLLUP_IDLE_AFTER without records, or early at ROLLUP_MAX_CELLS)",
            Refusal::Future => crate::event_time::FUTURE_DETAIL,
            Refusal::NotACount => "ROLLUP=sum adds non-negative counts; this value is negative or not a number",
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

/// A series' identity, whatever the order its labels were written in: its
/// name and labels as (name, value) pairs sorted by name, `__name__` among
/// them, each string preceded by its length (4 bytes).
type SeriesKey = Box<[u8]>;

struct Bucket {
    cells: FxHashMap<SeriesKey, Cell>,
    /// The offset this bucket holds in the tracker, and the last offset of
    /// the records that fed it.
    held: Hold,
    last: i64,
    /// Written at least once.
    written: bool,
}

/// One sample read: its series' key (in `Rollup::keys`), the value, the
/// interval's start.
struct Sample {
    key: (usize, usize),
    value: f64,
    start: i64,
}

pub struct Rollup {
    settings: Settings,
    /// By (slot start, partition slot): ordered so the oldest come first.
    buckets: BTreeMap<(i64, Slot), Bucket>,
    /// Per slot: the newest event time seen (ms, never ahead of the host's
    /// clock), the timestamp offset, and when it was last fed.
    newest: Vec<i64>,
    millis: Vec<i64>,
    fed_at: Vec<Option<Instant>>,
    /// Buckets written before they were final (idle partition,
    /// `ROLLUP_MAX_CELLS`): their later samples are too late. Two words per
    /// bucket, not per cell.
    evicted: BTreeSet<(i64, Slot)>,
    cells: usize,
    /// A cell changed since the last [`write_open`](Self::write_open).
    changed: bool,
    parsed: Vec<Sample>,
    /// The partition's event time after the samples in `parsed`.
    parsed_newest: i64,
    /// The keys of one feed's series, back to back, and where each series
    /// index's is (reused).
    keys: Vec<u8>,
    key_of: Vec<Option<(usize, usize)>>,
    due: Vec<(i64, Slot)>,
}

impl Rollup {
    pub fn new(settings: Settings) -> Self {
        Rollup {
            settings,
            buckets: BTreeMap::new(),
            newest: Vec::new(),
            millis: Vec::new(),
            fed_at: Vec::new(),
            evicted: BTreeSet::new(),
            cells: 0,
            changed: false,
            parsed: Vec::new(),
            parsed_newest: i64::MIN,
            keys: Vec::new(),
            key_of: Vec::new(),
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
            self.fed_at.resize(i + 1, None);
        }
        self.millis[i] = i64::from(partition.rem_euclid(1000));
    }

    /// Add the samples a run of records of one partition produced,
    /// holding `first_offset` for any bucket they open. All or nothing: on
    /// a refusal nothing is added, and the caller finds the records to
    /// reject by feeding them one at a time.
    pub fn feed(
        &mut self,
        (slot, partition): (Slot, i32),
        (first_offset, last_offset): (i64, i64),
        samples: &SampleSet,
        tracker: &mut Tracker,
        clock: WallClock,
    ) -> Result<Counts, Refusal> {
        self.set_partition(slot, partition);
        self.parse(slot, samples, clock)?;
        self.fed_at[slot as usize] = Some(clock.at);
        let mut counts = Counts::default();
        let parsed = std::mem::take(&mut self.parsed);
        for s in &parsed {
            let key = &self.keys[s.key.0..s.key.1];
            let bucket = self
                .buckets
                .entry((s.start, slot))
                .or_insert_with(|| Bucket {
                    cells: FxHashMap::default(),
                    held: tracker.hold(slot, first_offset),
                    last: last_offset,
                    written: false,
                });
            bucket.last = bucket.last.max(last_offset);
            let cell = match bucket.cells.get_mut(key) {
                Some(cell) => cell,
                None => {
                    self.cells += 1;
                    bucket.cells.entry(key.into()).or_default()
                }
            };
            if bucket.written {
                counts.late += 1;
            }
            cell.sum += s.value;
            cell.dirty = true;
            self.changed = true;
        }
        self.newest[slot as usize] = self.parsed_newest;
        self.parsed = parsed;
        self.parsed.clear();
        Ok(counts)
    }

    /// Read `samples` into `self.parsed`, refusing them whole if any cannot
    /// be added. Event time moves sample by sample, in the order the module
    /// wrote them (record by record, as every SDK does), so whether a
    /// sample is too late does not depend on how records were cut into
    /// chunks: a replay decides the same.
    fn parse(&mut self, slot: Slot, samples: &SampleSet, clock: WallClock) -> Result<(), Refusal> {
        self.parsed.clear();
        self.keys.clear();
        self.key_of.clear();
        self.key_of.resize(samples.series_ends.len(), None);
        let mut newest = self.newest[slot as usize];
        let step = self.settings.step_ms();
        let mut pairs = Vec::new();
        for p in 0..samples.len() {
            let (value, ts) = (samples.values[p], samples.timestamps[p]);
            if !(value.is_finite() && value >= 0.0) {
                return Err(Refusal::NotACount);
            }
            if ts > clock.newest_allowed_ms {
                return Err(Refusal::Future);
            }
            let start = ts - ts.rem_euclid(step);
            if self.evicted.contains(&(start, slot)) || self.final_at(start, newest) {
                return Err(Refusal::TooLate);
            }
            // A record stamped ahead of the host's clock (within the
            // skew) moves event time only as far as the clock.
            newest = newest.max(ts.min(clock.now_ms));
            let series = samples.point_series[p];
            let key = match self.key_of[series as usize] {
                Some(key) => key,
                None => {
                    let at = self.keys.len();
                    write_key(samples, series, &mut pairs, &mut self.keys);
                    self.key_of[series as usize] = Some((at, self.keys.len()));
                    (at, self.keys.len())
                }
            };
            self.parsed.push(Sample { key, value, start });
        }
        self.parsed_newest = newest;
        Ok(())
    }

    /// The partition had no record for `ROLLUP_IDLE_AFTER`.
    fn is_idle(&self, slot: Slot, now: Instant) -> bool {
        self.fed_at
            .get(slot as usize)
            .copied()
            .flatten()
            .is_some_and(|at| now.saturating_duration_since(at) >= self.settings.idle_after)
    }

    fn is_final(&self, slot: Slot, start: i64) -> bool {
        self.newest
            .get(slot as usize)
            .is_some_and(|&newest| self.final_at(start, newest))
    }

    /// An interval is final once event time is `ROLLUP_LATENESS` past its end;
    /// from then on its samples are too late, written or not.
    fn final_at(&self, start: i64, newest: i64) -> bool {
        let end = start + self.settings.step_ms() + self.settings.lateness.as_millis() as i64;
        newest >= end
    }

    /// Write final buckets, and the oldest early while there are too many
    /// cells, into `body`; the offsets they held go to `release` for when
    /// that body is accepted.
    pub fn write_due(
        &mut self,
        body: &mut SampleSet,
        release: &mut Vec<(Hold, i64)>,
        now: Instant,
    ) -> Counts {
        let mut counts = Counts::default();
        let mut due = std::mem::take(&mut self.due);
        due.extend(
            self.buckets
                .keys()
                .filter(|&&(start, slot)| self.is_final(slot, start)),
        );
        for key in due.drain(..) {
            counts.written += self.finish(key, body, release);
        }
        if !self.settings.interim {
            due.extend(
                self.buckets
                    .keys()
                    .filter(|&&(_, slot)| self.is_idle(slot, now)),
            );
            for key in due.drain(..) {
                counts.written += self.finish(key, body, release);
                self.evicted.insert(key);
            }
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
        self.evicted
            .retain(|&(start, slot)| newest.get(slot as usize).is_none_or(|&n| n < start + end));
        counts
    }

    /// Write every changed cell and keep it (a quiet topic, a shutdown): the
    /// sums arrive, the buckets stay open and their records uncommitted.
    pub fn write_open(&mut self, body: &mut SampleSet) -> u64 {
        let mut written = 0;
        for (&(start, slot), bucket) in &mut self.buckets {
            let ts = start + self.millis[slot as usize];
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
        if let Some(fed_at) = self.fed_at.get_mut(slot as usize) {
            *fed_at = None;
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
        body: &mut SampleSet,
        release: &mut Vec<(Hold, i64)>,
    ) -> u64 {
        let Some(mut bucket) = self.buckets.remove(&key) else {
            return 0;
        };
        self.cells -= bucket.cells.len();
        release.push((bucket.held, bucket.last));
        write_cells(&mut bucket.cells, key.0 + self.millis[key.1 as usize], body)
    }

    /// Whether growing sums are written before they are final.
    pub fn interim(&self) -> bool {
        self.settings.interim
    }

    /// Whether a cell changed since the last [`write_open`](Self::write_open).
    pub fn has_changes(&self) -> bool {
        self.changed
    }
}

/// `series`' key: its name and labels sorted by name, `__name__` among
/// them, each string after its length.
fn write_key<'a>(
    samples: &'a SampleSet,
    series: u32,
    pairs: &mut Vec<(&'a [u8], &'a [u8])>,
    key: &mut Vec<u8>,
) {
    let (name, labels) = samples.series(series);
    pairs.clear();
    pairs.push((b"__name__", name));
    pairs.extend(labels);
    pairs.sort_unstable();
    for (name, value) in pairs.iter() {
        for s in [name, value] {
            key.extend_from_slice(&(s.len() as u32).to_le_bytes());
            key.extend_from_slice(s);
        }
    }
}

/// A key's strings, in order.
fn key_strings(mut key: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (len, rest) = key.split_first_chunk::<4>()?;
        let (s, rest) = rest.split_at(u32::from_le_bytes(*len) as usize);
        key = rest;
        Some(s)
    })
}

/// A key's (name, value) pairs.
fn key_pairs(key: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut strings = key_strings(key);
    std::iter::from_fn(move || Some((strings.next()?, strings.next()?)))
}

/// Add a cell's series to `body`: the name first, then its labels in the
/// key's order.
fn push_series(key: &[u8], body: &mut SampleSet) {
    let name = key_pairs(key).find(|(n, _)| *n == b"__name__");
    body.push_string(name.map_or(&b""[..], |(_, v)| v));
    for (n, v) in key_pairs(key).filter(|(n, _)| *n != b"__name__") {
        body.push_string(n);
        body.push_string(v);
    }
}

fn write_cells(cells: &mut FxHashMap<SeriesKey, Cell>, ts: i64, body: &mut SampleSet) -> u64 {
    let mut written = 0;
    for (key, cell) in cells.iter_mut().filter(|(_, c)| c.dirty) {
        push_series(key, body);
        body.push_point(cell.sum, ts);
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
            idle_after: Duration::from_secs(3600),
            interim: false,
        }
    }

    /// A host clock far ahead of the tests' timestamps.
    fn clock() -> WallClock {
        WallClock {
            now_ms: i64::MAX,
            newest_allowed_ms: i64::MAX,
            at: Instant::now(),
        }
    }

    fn line(series: &str, value: f64, ts: i64) -> String {
        format!("{{\"metric\":{{\"__name__\":\"bytes\",\"net\":\"{series}\"}},\"values\":[{value}],\"timestamps\":[{ts}]}}\n")
    }

    /// Import lines as a module's structure.
    fn set(lines: &str) -> SampleSet {
        let mut set = SampleSet::default();
        crate::transform::read_import_lines(lines.as_bytes(), &mut set).unwrap();
        set
    }

    /// (series, value, timestamp) of every sample written.
    fn written(body: &SampleSet) -> Vec<(String, f64, i64)> {
        let mut out: Vec<_> = body
            .import_lines()
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
    fn sums_one_series_and_interval_and_writes_it_once_final() {
        let mut r = Rollup::new(settings(60, 60, 1000));
        let mut t = Tracker::default();
        let body = [
            line("a", 100.0, 60_000),
            line("a", 200.0, 61_000),
            line("b", 5.0, 119_000),
        ]
        .concat();
        r.feed((0, 3), (10, 10), &set(&body), &mut t, clock())
            .unwrap();
        t.read(0, 12);
        let (mut out, mut release) = (SampleSet::default(), Vec::new());
        assert_eq!(
            r.write_due(&mut out, &mut release, Instant::now()),
            Counts::default()
        );
        // Event time 2 min past the interval's end closes it.
        r.feed(
            (0, 3),
            (13, 13),
            &set(&line("c", 1.0, 240_000)),
            &mut t,
            clock(),
        )
        .unwrap();
        let counts = r.write_due(&mut out, &mut release, Instant::now());
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
        r.feed((0, 0), (0, 0), &set(&line("a", 10.0, 0)), &mut t, clock())
            .unwrap();
        let mut out = SampleSet::default();
        assert_eq!(r.write_open(&mut out), 1);
        let c = r
            .feed(
                (0, 0),
                (1, 1),
                &set(&line("a", 5.0, 1_000)),
                &mut t,
                clock(),
            )
            .unwrap();
        assert_eq!(c.late, 1);
        out.clear();
        r.write_open(&mut out);
        assert_eq!(written(&out), [("a".into(), 15.0, 0)]);
        // Past the interval's end plus lateness: final, then refused.
        r.feed(
            (0, 0),
            (2, 2),
            &set(&line("b", 1.0, 90_000)),
            &mut t,
            clock(),
        )
        .unwrap();
        out.clear();
        r.write_due(&mut out, &mut Vec::new(), Instant::now());
        assert!(written(&out).is_empty(), "nothing changed in interval 0");
        assert_eq!(
            r.feed(
                (0, 0),
                (3, 3),
                &set(&line("a", 1.0, 2_000)),
                &mut t,
                clock()
            ),
            Err(Refusal::TooLate)
        );
    }

    #[test]
    fn a_refused_body_adds_nothing() {
        let mut r = Rollup::new(settings(60, 30, 1000));
        let mut t = Tracker::default();
        let body = [line("a", 1.0, 0), line("a", -1.0, 0)].concat();
        assert_eq!(
            r.feed((0, 0), (0, 0), &set(&body), &mut t, clock()),
            Err(Refusal::NotACount)
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
                &set(&line(series, 1.0, ts)),
                &mut t,
                clock(),
            )
            .unwrap();
        }
        let (mut out, mut release) = (SampleSet::default(), Vec::new());
        let counts = r.write_due(&mut out, &mut release, Instant::now());
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
            r.feed((0, 0), (9, 9), &set(&line("a", 1.0, 0)), &mut t, clock()),
            Err(Refusal::TooLate)
        );
    }

    #[test]
    fn partitions_never_share_a_sample() {
        let mut r = Rollup::new(settings(0, 0, 1000));
        let mut t = Tracker::default();
        r.feed(
            (0, 0),
            (0, 0),
            &set(&line("a", 1.0, 5_500)),
            &mut t,
            clock(),
        )
        .unwrap();
        r.feed(
            (1, 7),
            (0, 0),
            &set(&line("a", 2.0, 5_000)),
            &mut t,
            clock(),
        )
        .unwrap();
        let mut out = SampleSet::default();
        r.write_open(&mut out);
        // Step 0 floors to the second.
        assert_eq!(
            written(&out),
            [("a".into(), 1.0, 5_000), ("a".into(), 2.0, 5_007)]
        );
        r.forget(1);
        assert_eq!(r.open_cells(), 1);
    }

    #[test]
    fn a_future_sample_is_refused_and_moves_no_clock() {
        let mut r = Rollup::new(settings(60, 60, 1000));
        let mut t = Tracker::default();
        let now = WallClock {
            now_ms: 600_000,
            newest_allowed_ms: 660_000,
            at: Instant::now(),
        };
        r.feed((0, 0), (0, 0), &set(&line("a", 1.0, 0)), &mut t, now)
            .unwrap();
        // 2099: refused, and interval 0 stays open.
        assert_eq!(
            r.feed(
                (0, 0),
                (1, 1),
                &set(&line("b", 1.0, 4_070_908_800_000)),
                &mut t,
                now
            ),
            Err(Refusal::Future)
        );
        // Ahead of the clock but within the skew: taken, but event time
        // moves only to the clock (600 s), so interval 0 (ends at 60 s, +60 s
        // lateness) closes, while interval 540 s does not.
        r.feed((0, 0), (2, 2), &set(&line("c", 1.0, 540_000)), &mut t, now)
            .unwrap();
        r.feed((0, 0), (3, 3), &set(&line("d", 1.0, 650_000)), &mut t, now)
            .unwrap();
        let mut out = SampleSet::default();
        r.write_due(&mut out, &mut Vec::new(), Instant::now());
        assert_eq!(written(&out), [("a".into(), 1.0, 0)]);
        r.feed((0, 0), (4, 4), &set(&line("c", 2.0, 541_000)), &mut t, now)
            .unwrap();
    }

    #[test]
    fn an_idle_partition_writes_its_intervals_once_and_then_refuses_them() {
        let mut s = settings(60, 600, 1000);
        s.idle_after = Duration::from_millis(20);
        let mut r = Rollup::new(s);
        let mut t = Tracker::default();
        r.feed((0, 0), (0, 0), &set(&line("a", 3.0, 0)), &mut t, clock())
            .unwrap();
        let (mut out, mut release) = (SampleSet::default(), Vec::new());
        r.write_due(&mut out, &mut release, Instant::now());
        assert!(out.is_empty(), "not idle yet");
        let later = Instant::now() + Duration::from_millis(30);
        assert_eq!(r.write_due(&mut out, &mut release, later).written, 1);
        assert_eq!(written(&out), [("a".into(), 3.0, 0)]);
        assert_eq!(release.len(), 1);
        assert_eq!(
            r.feed(
                (0, 0),
                (1, 1),
                &set(&line("a", 1.0, 1_000)),
                &mut t,
                clock()
            ),
            Err(Refusal::TooLate)
        );
    }

    #[test]
    fn labels_in_another_order_are_the_same_cell() {
        let mut r = Rollup::new(settings(60, 60, 1000));
        let mut t = Tracker::default();
        let one = "{\"metric\":{\"__name__\":\"bytes\",\"net\":\"a\"},\"values\":[1],\"timestamps\":[0]}\n";
        let other = "{\"metric\":{\"net\":\"a\",\"__name__\":\"bytes\"},\"values\":[2],\"timestamps\":[0]}\n";
        r.feed((0, 0), (0, 0), &set(one), &mut t, clock()).unwrap();
        r.feed((0, 0), (1, 1), &set(other), &mut t, clock())
            .unwrap();
        assert_eq!(r.open_cells(), 1);
        let mut out = SampleSet::default();
        r.write_open(&mut out);
        assert_eq!(written(&out), [("a".into(), 3.0, 0)]);
    }

    /// Feed `lines` (one record each) in chunks of the given sizes as the
    /// stage does (a chunk whole, else record by record skipping refused
    /// ones), writing due intervals after each chunk: (what was written, what
    /// was refused).
    fn run_in_chunks(
        lines: &[String],
        sizes: &mut impl Iterator<Item = usize>,
    ) -> (Vec<(String, f64, i64)>, Vec<usize>) {
        let mut r = Rollup::new(settings(60, 60, 1_000_000));
        let mut t = Tracker::default();
        let (mut out, mut refused) = (SampleSet::default(), Vec::new());
        let mut start = 0;
        while start < lines.len() {
            let end = (start + sizes.next().unwrap_or(1).max(1)).min(lines.len());
            let body = lines[start..end].concat();
            let whole = r.feed(
                (0, 0),
                (start as i64, end as i64 - 1),
                &set(&body),
                &mut t,
                clock(),
            );
            if whole.is_err() {
                for (i, line) in lines.iter().enumerate().take(end).skip(start) {
                    let o = i as i64;
                    if r.feed((0, 0), (o, o), &set(line), &mut t, clock()).is_err() {
                        refused.push(i);
                    }
                }
            }
            r.write_due(&mut out, &mut Vec::new(), Instant::now());
            start = end;
        }
        r.write_open(&mut out);
        (written(&out), refused)
    }

    /// Whether a record is too late must not depend on how records were
    /// cut into chunks: a replay cuts them differently and must write the
    /// same sums.
    #[test]
    fn chunking_never_changes_what_is_written() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..50 {
            // Mostly advancing event time, with late and too-late records.
            let mut minute = 0i64;
            let lines: Vec<String> = (0..120)
                .map(|_| {
                    minute += (next() % 3) as i64;
                    let back = if next() % 5 == 0 {
                        (next() % 6) as i64
                    } else {
                        0
                    };
                    let ts = (minute - back).max(0) * 60_000 + (next() % 60_000) as i64;
                    let series = ["a", "b", "c"][(next() % 3) as usize];
                    line(series, (next() % 100) as f64, ts)
                })
                .collect();
            let one_go = run_in_chunks(&lines, &mut std::iter::repeat(lines.len()));
            let singles = run_in_chunks(&lines, &mut std::iter::repeat(1));
            let sizes: Vec<usize> = (0..200).map(|_| 1 + (next() % 17) as usize).collect();
            let random = run_in_chunks(&lines, &mut sizes.into_iter());
            assert_eq!(one_go, singles);
            assert_eq!(one_go, random);
        }
    }
}
