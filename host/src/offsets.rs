//! Which Kafka offsets a batch covers, so they are stored for commit only
//! after VictoriaMetrics accepted the batch.
//!
//! A consumer reads each partition in order, and the sink acknowledges
//! batches in the order they were built, so storing "last offset + 1" per
//! partition on each acknowledgement never moves past a record whose batch
//! has not been accepted.

use crate::source::Slot;

/// Per partition (its [`Slot`]), the highest offset a batch holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOffsets {
    /// (slot, highest offset); few partitions per consumer, so a vector.
    last: Vec<(Slot, i64)>,
}

impl BatchOffsets {
    pub fn record(&mut self, partition: Slot, offset: i64) {
        match self.last.iter_mut().find(|(p, _)| *p == partition) {
            Some((_, o)) => *o = (*o).max(offset),
            None => self.last.push((partition, offset)),
        }
    }

    /// The offsets to commit: the next one to read, per partition.
    pub fn next_offsets(&self) -> impl Iterator<Item = (Slot, i64)> + '_ {
        self.last.iter().map(|&(p, o)| (p, o + 1))
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }

    pub fn clear(&mut self) {
        self.last.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_highest_offset_per_partition() {
        let mut o = BatchOffsets::default();
        for (p, off) in [(0, 5), (1, 7), (0, 6), (1, 3)] {
            o.record(p, off);
        }
        let mut next: Vec<_> = o.next_offsets().collect();
        next.sort();
        assert_eq!(next, [(0, 7), (1, 8)]);
    }
}
