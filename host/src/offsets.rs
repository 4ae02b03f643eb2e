//! Which Kafka offsets may be committed.
//!
//! Work holds offsets: a batch holds the first record it took from each
//! partition until VictoriaMetrics accepted it, and a roll-up cell holds the
//! first record that fed it until its final sum was accepted. Holds are
//! released in any order. Per partition, the commit position is the
//! smallest offset still held, or one past the last record read when
//! nothing is held: a restart from there reads every record whose work is
//! unfinished, and so rebuilds every open cell from all of its records.

use std::collections::BTreeMap;

/// A (topic, partition) the consumer has read from, numbered in the order
/// first seen.
pub type Slot = u32;

/// One hold on an offset, to be given back to [`Tracker::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    pub slot: Slot,
    pub offset: i64,
    /// The partition's epoch when held: a hold from before a rebalance must
    /// not release the same offset held again after it.
    epoch: u32,
}

#[derive(Debug, Default)]
struct Partition {
    epoch: u32,
    /// Offset → how many holds on it.
    held: BTreeMap<i64, u32>,
    /// Finished work whose records must be read again all or not at all:
    /// first offset → last offset.
    fences: BTreeMap<i64, i64>,
    /// One past the highest offset read.
    read_to: i64,
    /// The position last reported by [`Tracker::advanced`].
    reported: i64,
}

impl Partition {
    fn position(&self) -> i64 {
        let mut p = self.held.keys().next().copied().unwrap_or(self.read_to);
        // A restart from inside a fence would rebuild that work from part of
        // its records: start at the fence instead.
        while let Some((&lo, _)) = self.fences.iter().find(|&(&lo, &hi)| lo < p && p <= hi) {
            p = lo;
        }
        p
    }
}

#[derive(Debug, Default)]
pub struct Tracker {
    partitions: Vec<Partition>,
}

impl Tracker {
    fn partition(&mut self, slot: Slot) -> &mut Partition {
        let i = slot as usize;
        if i >= self.partitions.len() {
            self.partitions.resize_with(i + 1, Partition::default);
        }
        &mut self.partitions[i]
    }

    /// Keep `offset`, and everything after it, uncommitted until released.
    /// Hold before [`read`](Self::read) moves past the offset, or the
    /// position may pass it in between.
    pub fn hold(&mut self, slot: Slot, offset: i64) -> Hold {
        let p = self.partition(slot);
        *p.held.entry(offset).or_default() += 1;
        Hold {
            slot,
            offset,
            epoch: p.epoch,
        }
    }

    /// Whether `hold` still counts: it was taken since its partition was
    /// last reset. A hold from before a rebalance keeps nothing back.
    pub fn is_live(&self, hold: Hold) -> bool {
        self.partitions
            .get(hold.slot as usize)
            .is_some_and(|p| p.epoch == hold.epoch)
    }

    /// Give a hold back. One from before its partition was reset (a
    /// rebalance) is ignored.
    pub fn release(&mut self, hold: Hold) {
        let p = self.partition(hold.slot);
        if p.epoch != hold.epoch {
            return;
        }
        if let Some(n) = p.held.get_mut(&hold.offset) {
            *n -= 1;
            if *n == 0 {
                p.held.remove(&hold.offset);
            }
        }
    }

    /// Give a hold back for work that covered the records up to `last` and
    /// whose result a partial replay would overwrite (a roll-up cell's sum):
    /// the commit position will not stop strictly inside `hold.offset..=last`.
    pub fn release_fenced(&mut self, hold: Hold, last: i64) {
        let p = self.partition(hold.slot);
        if p.epoch == hold.epoch && last > hold.offset {
            let hi = p.fences.entry(hold.offset).or_insert(last);
            *hi = (*hi).max(last);
        }
        self.release(hold);
    }

    /// Note that the record at `offset` was read.
    pub fn read(&mut self, slot: Slot, offset: i64) {
        let p = self.partition(slot);
        p.read_to = p.read_to.max(offset + 1);
    }

    /// Forget a partition (revoked): its new owner reads again from what was
    /// committed, and later releases of its holds are ignored.
    pub fn reset(&mut self, slot: Slot) {
        if let Some(p) = self.partitions.get_mut(slot as usize) {
            *p = Partition {
                epoch: p.epoch.wrapping_add(1),
                ..Partition::default()
            };
        }
    }

    /// Partitions whose commit position moved forward since the last call,
    /// with the new position (the next offset to read after a restart).
    pub fn advanced(&mut self, out: &mut Vec<(Slot, i64)>) {
        for (slot, p) in self.partitions.iter_mut().enumerate() {
            let position = p.position();
            // Fences the position has passed can no longer hold it back.
            p.fences.retain(|_, hi| *hi >= position);
            if position > p.reported {
                p.reported = position;
                out.push((slot as Slot, position));
            }
        }
    }

    /// Every partition read from, with its commit position now.
    pub fn positions(&self) -> Vec<(Slot, i64)> {
        self.partitions
            .iter()
            .enumerate()
            .filter(|(_, p)| p.read_to > 0)
            .map(|(slot, p)| (slot as Slot, p.position()))
            .collect()
    }

    /// Records read but not committable yet, over all partitions: how far
    /// the commit position runs behind what was read.
    pub fn uncommitted(&self) -> i64 {
        self.partitions
            .iter()
            .map(|p| p.read_to - p.position())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model: every record read is either finished or not; the position
    /// is the first unfinished offset (records are read in order from 0).
    struct Model {
        finished: Vec<bool>,
    }

    impl Model {
        fn position(&self) -> i64 {
            self.finished
                .iter()
                .position(|f| !f)
                .unwrap_or(self.finished.len()) as i64
        }
    }

    /// xorshift: the tests need no random crate, and a seed replays a failure.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// Records are read in order and grouped into units of work (a batch,
    /// a cell) that hold their first record; units finish in random order.
    /// The tracker's position must always equal the model's.
    #[test]
    fn matches_the_model_under_random_release_orders() {
        for seed in 1..=300u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut tracker = Tracker::default();
            let mut model = Model {
                finished: Vec::new(),
            };
            // Open units: their hold and the offsets they cover.
            let mut open: Vec<(Hold, Vec<i64>)> = Vec::new();
            let mut reported = 0;
            for _ in 0..400 {
                if rng.below(3) > 0 || open.is_empty() {
                    // Read a record into a new or an existing unit.
                    let offset = model.finished.len() as i64;
                    model.finished.push(false);
                    if open.is_empty() || rng.below(4) == 0 {
                        open.push((tracker.hold(0, offset), vec![offset]));
                    } else {
                        let i = rng.below(open.len());
                        open[i].1.push(offset);
                    }
                    tracker.read(0, offset);
                } else {
                    let (hold, unit) = open.swap_remove(rng.below(open.len()));
                    tracker.release(hold);
                    for o in unit {
                        model.finished[o as usize] = true;
                    }
                }
                let mut out = Vec::new();
                tracker.advanced(&mut out);
                let position = model.position();
                match out.as_slice() {
                    [] => assert_eq!(reported, position, "seed {seed}"),
                    [(0, p)] => {
                        assert_eq!(*p, position, "seed {seed}");
                        assert!(*p > reported, "only forward");
                        reported = *p;
                    }
                    other => panic!("seed {seed}: {other:?}"),
                }
                let read = model.finished.len() as i64;
                assert_eq!(tracker.uncommitted(), read - position);
            }
        }
    }

    #[test]
    fn partitions_are_apart_and_reset_forgets() {
        let mut t = Tracker::default();
        let old = t.hold(0, 5);
        t.read(0, 5);
        t.read(0, 6);
        let h = t.hold(1, 2);
        t.read(1, 2);
        let mut out = Vec::new();
        t.advanced(&mut out);
        assert_eq!(out, [(0, 5), (1, 2)]);
        t.release(h);
        out.clear();
        t.advanced(&mut out);
        assert_eq!(out, [(1, 3)]);
        t.reset(0);
        assert!(
            !t.is_live(old),
            "a hold from before the reset keeps nothing"
        );
        // Read again after the rebalance, from the committed offset: the
        // old hold's late release must not free the new hold on offset 5.
        let new = t.hold(0, 5);
        assert!(t.is_live(new));
        t.read(0, 5);
        t.release(old);
        out.clear();
        t.advanced(&mut out);
        assert_eq!(out, [(0, 5)]);
        assert_eq!(t.uncommitted(), 1);
        t.release(new);
        out.clear();
        t.advanced(&mut out);
        assert_eq!(out, [(0, 6)]);
    }

    /// pmacct's kafka_multi_values: the records of one message share its
    /// offset. A batch holds it once (its first offset of the partition),
    /// a roll-up cell fed by a later record of the same message holds it
    /// again; the position passes the message only once both let go.
    #[test]
    fn records_sharing_one_offset_are_committed_together() {
        let mut t = Tracker::default();
        // Message 4: one record; message 5: three records, read in order.
        let batch = t.hold(0, 4);
        t.read(0, 4);
        for _record in 0..3 {
            t.read(0, 5);
        }
        // The second record of message 5 opens a cell.
        let cell = t.hold(0, 5);
        let mut out = Vec::new();
        t.advanced(&mut out);
        assert_eq!(out, [(0, 4)]);
        assert_eq!(t.uncommitted(), 2, "two messages, whatever their records");
        t.release(batch);
        out.clear();
        t.advanced(&mut out);
        assert_eq!(out, [(0, 5)], "the cell still holds message 5");
        // A second hold on the same offset (another cell fed by message 5)
        // is counted: releasing one of the two does not free the offset.
        let other = t.hold(0, 5);
        t.release(cell);
        out.clear();
        t.advanced(&mut out);
        assert!(out.is_empty(), "{out:?}");
        // A cell's records all sit in message 5: no fence inside one offset.
        t.release_fenced(other, 5);
        t.advanced(&mut out);
        assert_eq!(out, [(0, 6)]);
        assert_eq!(t.uncommitted(), 0);
    }

    #[test]
    fn a_fence_is_replayed_whole_or_not_at_all() {
        let mut t = Tracker::default();
        // Cell A covers offsets 0..=5, cell B starts at 3 (interleaved).
        let a = t.hold(0, 0);
        let b = t.hold(0, 3);
        for o in 0..8 {
            t.read(0, o);
        }
        t.release_fenced(a, 5);
        let mut out = Vec::new();
        t.advanced(&mut out);
        // B holds 3, inside A's records: a restart there would rebuild A
        // from 3..=5 only, so the position stays at A's start.
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(t.uncommitted(), 8);
        t.release_fenced(b, 7);
        t.advanced(&mut out);
        assert_eq!(out, [(0, 8)]);
    }
}
