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

use memchr::memrchr;
use pmacct_guest_sdk::{IndexedError, RecordError, Records};

use crate::transform::Output;

use crate::transform::Transformer;

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
/// stamped after `clock.newest_allowed_ms`. The common case costs one scan
/// of the new lines; only a chunk holding such a sample is transformed
/// again record by record to find them. (A module that keeps state across
/// calls sees that chunk's records twice.)
pub fn run_checked(
    transformer: &mut Transformer,
    records: Records<'_>,
    out: &mut Output,
    clock: WallClock,
) {
    let mark = (out.body.len(), out.samples, out.errors.len());
    transformer.run(records, out);
    if !any_after(&out.body[mark.0..], clock.newest_allowed_ms) {
        return;
    }
    out.body.truncate(mark.0);
    out.samples = mark.1;
    out.errors.truncate(mark.2);
    for i in 0..records.len() {
        let one = (out.body.len(), out.samples, out.errors.len());
        let record = records.range(i..i + 1);
        transformer.run(record, out);
        if any_after(&out.body[one.0..], clock.newest_allowed_ms) {
            out.body.truncate(one.0);
            out.samples = one.1;
            out.errors.truncate(one.2);
            out.errors.push(IndexedError {
                index: record.first(),
                error: RecordError::new(FUTURE_REASON, FUTURE_DETAIL),
            });
        }
    }
}

/// Whether any sample of these import lines is stamped after `limit_ms`.
/// A scan, not a parse: each line's last array (`"timestamps":[...]` as
/// every SDK writes it last) is read from the line's end; a line laid out
/// otherwise is read whole.
pub fn any_after(body: &[u8], limit_ms: i64) -> bool {
    body.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .any(|line| latest(line).is_some_and(|t| t > limit_ms))
}

/// The largest timestamp of one import line, if it can be found.
fn latest(line: &[u8]) -> Option<i64> {
    const KEY: &[u8] = b"\"timestamps\":[";
    let open = memrchr(b'[', line)?;
    let start = if line[..open + 1].ends_with(KEY) {
        open + 1
    } else {
        memchr::memmem::find(line, KEY)? + KEY.len()
    };
    let end = start + memchr::memchr(b']', &line[start..])?;
    std::str::from_utf8(&line[start..end])
        .ok()?
        .split(',')
        .filter_map(|t| t.trim().parse::<i64>().ok())
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_samples_after_the_limit() {
        let line = |ts: &str| {
            format!("{{\"metric\":{{\"__name__\":\"bytes\"}},\"values\":[1,2],\"timestamps\":[{ts}]}}\n")
        };
        let body = [line("1000,2000"), line("3000")].concat();
        assert!(!any_after(body.as_bytes(), 3000));
        assert!(any_after(body.as_bytes(), 2999));
        let reordered =
            "{\"timestamps\":[4102444800000],\"metric\":{\"a\":\"[x]\"},\"values\":[1]}\n";
        assert!(any_after(reordered.as_bytes(), 4_000_000_000_000));
        assert!(!any_after(b"", 0));
        let clock = WallClock::read(Duration::from_secs(60));
        assert_eq!(clock.newest_allowed_ms - clock.now_ms, 60_000);
    }
}
