//! Samples stamped in the future. A store drops them (VictoriaMetrics'
//! "too big timestamp", Prometheus' "out of bounds" refuses the whole
//! request) and under `ROLLUP=sum` one such record would move its
//! partition's event time far ahead and close every slot. So a sample
//! stamped more than `MAX_FUTURE_SKEW` ahead of the host's clock rejects
//! its record (`future_timestamp`: counted, logged, dead-lettered), and
//! the host's clock caps how far event time moves.
//!
//! The clock is read once per chunk, never per record.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pmacct_guest_sdk::{IndexedError, RecordError, Records};

use crate::transform::{Output, Transformer};

pub const FUTURE_REASON: &str = "future_timestamp";
pub const FUTURE_DETAIL: &str =
    "a sample is stamped further ahead of the host's clock than MAX_FUTURE_SKEW";

/// The host's clock when a chunk is transformed.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    /// Now, unix milliseconds.
    pub now_ms: i64,
    /// The newest sample timestamp accepted: now plus the skew.
    pub newest_allowed_ms: i64,
    pub at: Instant,
}

impl WallClock {
    pub fn read(skew: Duration) -> Self {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        WallClock {
            now_ms,
            newest_allowed_ms: now_ms.saturating_add(skew.as_millis() as i64),
            at: Instant::now(),
        }
    }
}

/// Transform a chunk into `out`, rejecting the records that yield a sample
/// stamped after `clock.newest_allowed_ms`. The common case costs one look
/// at the new points' timestamps; only a chunk holding such a sample is
/// transformed again record by record to find them. (A module that keeps
/// state across calls sees that chunk's records twice.)
pub fn run_checked(
    transformer: &mut Transformer,
    records: Records<'_>,
    out: &mut Output,
    clock: WallClock,
) {
    let mark = (out.samples.mark(), out.errors.len());
    transformer.run(records, out);
    if !any_after(
        &out.samples.timestamps[mark.0.points()..],
        clock.newest_allowed_ms,
    ) {
        return;
    }
    out.samples.truncate(mark.0);
    out.errors.truncate(mark.1);
    for i in 0..records.len() {
        let one = (out.samples.mark(), out.errors.len());
        let record = records.range(i..i + 1);
        transformer.run(record, out);
        if any_after(
            &out.samples.timestamps[one.0.points()..],
            clock.newest_allowed_ms,
        ) {
            out.samples.truncate(one.0);
            out.errors.truncate(one.1);
            out.errors.push(IndexedError {
                index: record.first(),
                error: RecordError::new(FUTURE_REASON, FUTURE_DETAIL),
            });
        }
    }
}

/// Whether any of these timestamps is after `limit_ms`.
pub fn any_after(timestamps: &[i64], limit_ms: i64) -> bool {
    timestamps.iter().any(|&t| t > limit_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_samples_after_the_limit() {
        assert!(!any_after(&[1000, 2000, 3000], 3000));
        assert!(any_after(&[1000, 2000, 3000], 2999));
        assert!(!any_after(&[], 0));
        let clock = WallClock::read(Duration::from_secs(60));
        assert_eq!(clock.newest_allowed_ms - clock.now_ms, 60_000);
    }
}
