//! The time zone of pmacct's timestamps without an offset.
//!
//! pmacct writes `stamp_updated` in the collector's local time unless
//! `timestamps_utc: true`, and the text says nothing of the zone. A module
//! has no time-zone database and no clock, so the host hands it the zone's
//! UTC offsets at `init` (its `STAMP_TIMEZONE`, read from the host's tz
//! database): the entry `stamp_timezone_table`, which this type reads.
//! Without it stamps are read as UTC.
//!
//! The table is keyed by *local* time: from each boundary on, local times
//! take that boundary's offset. A boundary sits at the later of the two
//! local readings of its transition, which settles the two cases where
//! local time does not name one instant, as RFC 5545, Python's `fold=0`
//! and jiff's `Compatible` do:
//! - **the autumn fold** (clocks go back: 02:00–03:00 happens twice): the
//!   *earlier* instant, the offset before the change, is chosen;
//! - **the spring gap** (clocks go forward: 02:00–03:00 never happens):
//!   the offset before the change too, so 02:30 reads as 03:30 after it.

use crate::Config;

/// Offsets of one zone, by local time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StampZone {
    /// The offset (ms) before the first boundary.
    first_offset_ms: i64,
    /// (local time in ms from which `offset` applies, offset in ms),
    /// ascending.
    bounds: Vec<(i64, i64)>,
}

/// UTC: what a stamp without an offset is read as by default.
pub static UTC: StampZone = StampZone::UTC;

/// The `init` entry holding the table: `OFFSET,BOUND=OFFSET,...` in
/// seconds, the first offset applying before the first boundary.
pub const TABLE_KEY: &str = "stamp_timezone_table";

impl StampZone {
    pub const UTC: StampZone = StampZone {
        first_offset_ms: 0,
        bounds: Vec::new(),
    };

    /// A fixed offset east of UTC, in seconds.
    pub fn fixed(offset_secs: i32) -> Self {
        StampZone {
            first_offset_ms: i64::from(offset_secs) * 1000,
            bounds: Vec::new(),
        }
    }

    /// The zone the host configured (`stamp_timezone_table`), or UTC.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        match config.get(TABLE_KEY) {
            None => Ok(StampZone::UTC),
            Some(table) => Self::parse(table)
                .ok_or_else(|| format!("configuration key {TABLE_KEY:?} is not a zone table")),
        }
    }

    /// The table's text form (see [`TABLE_KEY`]). Boundaries must ascend.
    pub fn parse(table: &str) -> Option<Self> {
        let mut items = table.split(',');
        let first = secs(items.next()?)?;
        let mut bounds = Vec::new();
        for item in items {
            let (at, offset) = item.split_once('=')?;
            let (at, offset) = (secs(at)?, secs(offset)?);
            if bounds.last().is_some_and(|&(last, _)| last >= at) {
                return None;
            }
            bounds.push((at, offset));
        }
        Some(StampZone {
            first_offset_ms: first,
            bounds,
        })
    }

    /// The text form [`parse`](Self::parse) reads: the first offset, then
    /// `local boundary=offset`, all in seconds.
    pub fn table_text(first_offset_secs: i64, bounds: &[(i64, i64)]) -> String {
        let mut s = first_offset_secs.to_string();
        for (at, offset) in bounds {
            s.push_str(&format!(",{at}={offset}"));
        }
        s
    }

    pub fn is_utc(&self) -> bool {
        self.first_offset_ms == 0 && self.bounds.is_empty()
    }

    /// The instant (ms since the epoch) of a local time given as ms since
    /// 1970-01-01 00:00 of the same wall clock.
    #[inline(always)]
    pub fn utc_ms(&self, local_ms: i64) -> i64 {
        local_ms - self.offset_ms(local_ms)
    }

    #[inline(always)]
    fn offset_ms(&self, local_ms: i64) -> i64 {
        if self.bounds.is_empty() {
            return self.first_offset_ms;
        }
        match self.bounds.partition_point(|&(at, _)| at <= local_ms) {
            0 => self.first_offset_ms,
            i => self.bounds[i - 1].1,
        }
    }
}

/// Seconds as text, in ms.
fn secs(s: &str) -> Option<i64> {
    s.trim().parse::<i64>().ok()?.checked_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Europe/Paris in 2026: CET (+1) → CEST (+2) on 29 March at 01:00
    /// UTC, back on 25 October at 01:00 UTC. Boundaries at the later local
    /// reading: 03:00 local in March, 03:00 local (CEST) in October.
    fn paris_2026() -> StampZone {
        // date -u -d '2026-03-29 03:00' +%s → 1774753200; '2026-10-25 03:00' → 1792897200
        StampZone::parse("3600,1774753200=7200,1792897200=3600").unwrap()
    }

    fn local(s: &str) -> i64 {
        crate::time::parse_timestamp_ms(s).unwrap()
    }

    #[test]
    fn summer_winter_the_gap_and_the_fold() {
        let z = paris_2026();
        let utc = |s: &str| z.utc_ms(local(s)) / 1000;
        // date -u -d '2026-01-15 11:00' +%s
        assert_eq!(utc("2026-01-15 12:00:00"), 1_768_474_800);
        // date -u -d '2026-07-01 10:00' +%s
        assert_eq!(utc("2026-07-01 12:00:00"), 1_782_900_000);
        // The gap: 02:30 does not exist; read with the winter offset it is
        // 01:30 UTC, which is 03:30 CEST.
        assert_eq!(utc("2026-03-29 02:30:00"), 1_774_747_800);
        assert_eq!(utc("2026-03-29 03:00:00"), 1_774_746_000);
        // The fold: 02:30 happens at 00:30 UTC (CEST) and at 01:30 UTC
        // (CET); the earlier is chosen.
        assert_eq!(utc("2026-10-25 01:59:59"), 1_792_886_399);
        assert_eq!(utc("2026-10-25 02:30:00"), 1_792_888_200);
        assert_eq!(utc("2026-10-25 02:59:59"), 1_792_889_999);
        // 03:00 local is after the fold: CET.
        assert_eq!(utc("2026-10-25 03:00:00"), 1_792_893_600);
    }

    #[test]
    fn the_table_round_trips_and_bad_ones_are_refused() {
        let text = StampZone::table_text(3600, &[(1_774_753_200, 7200), (1_792_897_200, 3600)]);
        assert_eq!(StampZone::parse(&text), Some(paris_2026()));
        for bad in [
            "",
            "x",
            "3600,5",
            "3600,5=1,5=2",
            "3600,6=1,5=2",
            "3600,a=1",
        ] {
            assert_eq!(StampZone::parse(bad), None, "{bad:?}");
        }
        assert!(StampZone::parse("0").unwrap().is_utc());
        assert_eq!(
            StampZone::from_config(&Config::new(vec![])).unwrap(),
            StampZone::UTC
        );
        let e = StampZone::from_config(&Config::new(vec![(TABLE_KEY.into(), "y".into())]));
        assert!(e.unwrap_err().contains(TABLE_KEY));
    }

    #[test]
    fn fixed_offsets() {
        let kolkata = StampZone::fixed(19_800);
        // date -u -d '2026-11-25 10:00' +%s → 1795600800
        assert_eq!(
            kolkata.utc_ms(local("2026-11-25 15:30:00")),
            1_795_600_800_000
        );
    }
}
