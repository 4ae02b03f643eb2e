//! pmacct's timestamp forms, parsed without a date library: the format is
//! fixed, the parse runs once per record, and a general `strftime` parser
//! costs several times more than these few comparisons.

use crate::zone::{StampZone, UTC};

/// `YYYY-MM-DD HH:MM:SS[.frac]` (or with `T`), read as UTC unless it ends
/// in an offset, or a string holding epoch seconds. Milliseconds since the
/// epoch.
pub fn parse_timestamp_ms(s: &str) -> Option<i64> {
    parse_timestamp_in(s, &UTC)
}

/// The same, a stamp without an offset read in `zone`'s local time. An
/// offset (`Z`, `+01:00`, `-0500`: pmacct's `timestamps_rfc3339: true`)
/// says which instant the stamp is, whatever the zone.
pub fn parse_timestamp_in(s: &str, zone: &StampZone) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() >= 19 && b[4] == b'-' && b[7] == b'-' && (b[10] == b' ' || b[10] == b'T') {
        let year = digits(&b[0..4])?;
        let month = digits(&b[5..7])?;
        let day = digits(&b[8..10])?;
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        let (h, mi, sec) = (
            digits(&b[11..13])?,
            digits(&b[14..16])?,
            digits(&b[17..19])?,
        );
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || h > 23
            || mi > 59
            || sec > 60
        {
            return None;
        }
        let (millis, rest) = match &b[19..] {
            [] => (0, &b[19..]),
            [b'.', frac @ ..] => fraction_ms(frac)?,
            rest => (0, rest),
        };
        let days = days_from_civil(year, month, day);
        let wall = ((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + millis;
        return match rest {
            [] => Some(zone.utc_ms(wall)),
            offset => Some(wall - offset_ms(offset)?),
        };
    }
    parse_epoch_seconds_ms(s)
}

/// The milliseconds of a fraction's digits (the first three; the rest is
/// truncated) and what follows them.
#[inline(always)]
fn fraction_ms(frac: &[u8]) -> Option<(i64, &[u8])> {
    let n = frac.iter().take_while(|d| d.is_ascii_digit()).count();
    if n == 0 {
        return None;
    }
    let mut ms = 0;
    for i in 0..3 {
        ms = ms * 10 + frac[..n].get(i).map_or(0, |d| i64::from(d - b'0'));
    }
    Some((ms, &frac[n..]))
}

/// `Z`, `±HH:MM` or `±HHMM` east of UTC, in ms. `-00:00` (RFC 9557: the
/// local offset is unknown, the instant is UTC) is UTC. Out of line: rare.
#[cold]
#[inline(never)]
fn offset_ms(b: &[u8]) -> Option<i64> {
    let (sign, h, m) = match b {
        [b'Z' | b'z'] => return Some(0),
        [sign, h1, h2, b':', m1, m2] | [sign, h1, h2, m1, m2] => (*sign, [*h1, *h2], [*m1, *m2]),
        _ => return None,
    };
    let (h, m) = (digits(&h)?, digits(&m)?);
    if h > 23 || m > 59 {
        return None;
    }
    let ms = (h * 60 + m) * 60_000;
    match sign {
        b'+' => Some(ms),
        b'-' => Some(-ms),
        _ => None,
    }
}

/// Epoch seconds with an optional fraction (`1764064862`, `1764064862.25`).
pub fn parse_epoch_seconds_ms(s: &str) -> Option<i64> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || int.len() > 12 || !int.bytes().all(|d| d.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|d| d.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = int.parse().ok()?;
    let mut ms = 0;
    for i in 0..3 {
        ms = ms * 10 + frac.as_bytes().get(i).map_or(0, |d| i64::from(d - b'0'));
    }
    Some(secs * 1000 + ms)
}

// The helpers are inlined: in WASM a call is a stack check, a time check
// and callee-saved registers spilled, more than their arithmetic.
#[inline(always)]
fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |acc, d| {
        d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
    })
}

#[inline(always)]
fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
#[inline(always)]
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        // date -u -d '2026-11-25 10:01:02' +%s → 1795600862
        assert_eq!(
            parse_timestamp_ms("2026-11-25 10:01:02"),
            Some(1_795_600_862_000)
        );
        assert_eq!(parse_timestamp_ms("1970-01-01 00:00:00"), Some(0));
        // date -u -d '2024-02-29 23:59:59' +%s → 1709251199
        assert_eq!(
            parse_timestamp_ms("2024-02-29 23:59:59"),
            Some(1_709_251_199_000)
        );
        assert_eq!(
            parse_timestamp_ms("2024-02-29T23:59:59.1234"),
            Some(1_709_251_199_123)
        );
        assert_eq!(parse_timestamp_ms("1795600862"), Some(1_795_600_862_000));
        assert_eq!(
            parse_epoch_seconds_ms("1795600862.5"),
            Some(1_795_600_862_500)
        );
    }

    /// pmacct's `timestamps_rfc3339: true` (1.7: `Z` for UTC, else
    /// `+HH:MM`; 1.8: `+00:00`, `-00:00` for an unknown zone) and ISO
    /// 8601's `+HHMM`: the offset says the instant, whatever the zone.
    #[test]
    fn offsets_say_the_instant() {
        let paris = StampZone::fixed(3600);
        // date -u -d '2026-11-25 10:01:02' +%s → 1795600862
        for s in [
            "2026-11-25T10:01:02Z",
            "2026-11-25 10:01:02z",
            "2026-11-25T10:01:02+00:00",
            "2026-11-25T10:01:02-00:00",
            "2026-11-25T11:01:02+01:00",
            "2026-11-25T11:01:02+0100",
            "2026-11-25T15:31:02+05:30",
            "2026-11-25T05:01:02-05:00",
        ] {
            assert_eq!(
                parse_timestamp_in(s, &paris),
                Some(1_795_600_862_000),
                "{s}"
            );
        }
        assert_eq!(
            parse_timestamp_in("2026-11-25T11:01:02.250000+01:00", &UTC),
            Some(1_795_600_862_250)
        );
        // Without an offset the zone decides.
        assert_eq!(
            parse_timestamp_in("2026-11-25 11:01:02", &paris),
            Some(1_795_600_862_000)
        );
        assert_eq!(
            parse_timestamp_in("2026-11-25 11:01:02.5", &paris),
            Some(1_795_600_862_500)
        );
        // Epoch seconds are instants already.
        assert_eq!(
            parse_timestamp_in("1795600862", &paris),
            Some(1_795_600_862_000)
        );
    }

    #[test]
    fn every_day_follows_the_one_before() {
        let mut expected = 0;
        for y in 1970..=2400 {
            for m in 1..=12 {
                for d in 1..=days_in_month(y, m) {
                    assert_eq!(days_from_civil(y, m, d), expected, "{y}-{m}-{d}");
                    expected += 1;
                }
            }
        }
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "2023-02-29 00:00:00",
            "2026-13-01 00:00:00",
            "2026-11-25 24:00:00",
            "2026-11-25 10:01",
            "2026-11-25 10:01:02 Z",
            "2026-11-25 10:01:02+1",
            "2026-11-25 10:01:02+01:0",
            "2026-11-25 10:01:02+24:00",
            "2026-11-25 10:01:02+01:60",
            "2026-11-25 10:01:02*01:00",
            "2026-11-25 10:01:02.Z",
            "2026-11-25 10:01:02.5x",
            "2026/11/25 10:01:02",
            "-5",
            "1e9",
            "12.x",
        ] {
            assert_eq!(parse_timestamp_ms(s), None, "{s:?}");
        }
    }
}
