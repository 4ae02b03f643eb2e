//! pmacct's timestamp forms, parsed without a date library: the format is
//! fixed, the parse runs once per record, and a general `strftime` parser
//! costs several times more than these few comparisons.

/// `YYYY-MM-DD HH:MM:SS[.frac]` (or with `T`), read as UTC, or a string
/// holding epoch seconds. Milliseconds since the epoch.
pub fn parse_timestamp_ms(s: &str) -> Option<i64> {
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
        let millis = match &b[19..] {
            [] => 0,
            [b'.', frac @ ..] if !frac.is_empty() && frac.iter().all(u8::is_ascii_digit) => {
                // First three digits are milliseconds; the rest is truncated.
                let mut ms = 0;
                for i in 0..3 {
                    ms = ms * 10 + frac.get(i).map_or(0, |d| i64::from(d - b'0'));
                }
                ms
            }
            _ => return None,
        };
        let days = days_from_civil(year, month, day);
        return Some(((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + millis);
    }
    parse_epoch_seconds_ms(s)
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
            "2026-11-25 10:01:02Z",
            "2026/11/25 10:01:02",
            "-5",
            "1e9",
            "12.x",
        ] {
            assert_eq!(parse_timestamp_ms(s), None, "{s:?}");
        }
    }
}
