//! `STAMP_TIMEZONE`: the zone pmacct's stamps without an offset are in,
//! turned into the offset table a module reads at `init`
//! (`pmacct_guest_sdk::StampZone`).
//!
//! A module has no tz database and no clock, so the host reads the zone
//! from its own (the system's `/usr/share/zoneinfo`, through jiff) once,
//! at start-up, and hands over every UTC offset change from 1970 to 2100
//! keyed by local time. Beyond 2100 the last offset holds; before 1970 the
//! first.

use jiff::tz::TimeZone;
use jiff::Timestamp;
use pmacct_guest_sdk::{StampZone, STAMP_TIMEZONE_TABLE_KEY};

/// The `init` entry naming the zone, for a module's messages.
pub const NAME_KEY: &str = "stamp_timezone";

/// 2100-01-01T00:00:00Z: the table's end.
const TABLE_END_SECS: i64 = 4_102_444_800;

/// The zone `setting` names: `UTC` (the default, also with no tz database),
/// `local` (the host's own: `TZ`, else `/etc/localtime`), or an IANA name.
/// `None` for UTC, which needs no table.
pub fn lookup(setting: &str) -> Result<Option<(String, TimeZone)>, String> {
    let setting = setting.trim();
    if setting.eq_ignore_ascii_case("utc") || setting.is_empty() {
        return Ok(None);
    }
    let tz = if setting.eq_ignore_ascii_case("local") {
        TimeZone::try_system().map_err(|e| format!("the host's local zone: {e}"))?
    } else {
        TimeZone::get(setting).map_err(|e| format!("{setting:?}: {e}"))?
    };
    let name = tz.iana_name().unwrap_or(setting).to_string();
    Ok(Some((name, tz)))
}

/// The `init` entries for `setting`: none for UTC, else the zone's name
/// and its offset table.
pub fn init_entries(setting: &str) -> Result<Vec<(String, String)>, String> {
    let Some((name, tz)) = lookup(setting)? else {
        return Ok(Vec::new());
    };
    let (first, bounds) = table(&tz);
    Ok(vec![
        (NAME_KEY.to_string(), name),
        (
            STAMP_TIMEZONE_TABLE_KEY.to_string(),
            StampZone::table_text(first, &bounds),
        ),
    ])
}

/// The offset at 1970 and, for each change of offset until 2100, the
/// local time (seconds, as if UTC) from which the new offset applies: the
/// later of the two local readings of the change, so that local times in
/// an autumn fold take the earlier instant and those in a spring gap are
/// read with the offset before it (jiff's `Compatible`, Python's `fold=0`).
pub fn table(tz: &TimeZone) -> (i64, Vec<(i64, i64)>) {
    let start = Timestamp::UNIX_EPOCH;
    let first = i64::from(tz.to_offset(start).seconds());
    let mut before = first;
    let mut bounds = Vec::new();
    for t in tz.following(start) {
        let at = t.timestamp().as_second();
        if at >= TABLE_END_SECS {
            break;
        }
        let after = i64::from(t.offset().seconds());
        if after == before {
            // Only the abbreviation or the DST flag changed.
            continue;
        }
        bounds.push((at + before.max(after), after));
        before = after;
    }
    (first, bounds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::DateTime;
    use jiff::tz::Disambiguation;
    use jiff::{SignedDuration, ToSpan};

    /// The table read by the module gives, for every local time near each
    /// change (minute by minute, three hours either side) and every day at
    /// noon and 02:30 from 1970 to 2099, the instant jiff gives with its
    /// `Compatible` disambiguation: the earlier one in a fold.
    #[test]
    fn the_modules_table_agrees_with_the_tz_database() {
        for name in [
            "Europe/Paris",
            "America/New_York",
            "Australia/Lord_Howe",
            "America/Sao_Paulo",
            "Pacific/Apia",
            "Asia/Kolkata",
            "Africa/Casablanca",
        ] {
            let tz = TimeZone::get(name).unwrap();
            let (first, bounds) = table(&tz);
            let zone = StampZone::parse(&StampZone::table_text(first, &bounds)).unwrap();
            let check = |local: DateTime| {
                let want = tz
                    .to_ambiguous_timestamp(local)
                    .disambiguate(Disambiguation::Compatible)
                    .unwrap()
                    .as_millisecond();
                let wall = TimeZone::UTC
                    .to_ambiguous_timestamp(local)
                    .unambiguous()
                    .unwrap();
                assert_eq!(zone.utc_ms(wall.as_millisecond()), want, "{name} {local}");
            };
            for t in tz
                .following(Timestamp::UNIX_EPOCH)
                .take_while(|t| t.timestamp().as_second() < TABLE_END_SECS)
            {
                let local = tz.to_datetime(t.timestamp());
                for m in -180..=180 {
                    check(local.checked_add(SignedDuration::from_mins(m)).unwrap());
                }
            }
            let mut day = DateTime::constant(1970, 1, 2, 12, 0, 0, 0);
            while day.year() < 2100 {
                check(day);
                check(day.checked_sub(9.hours().minutes(30)).unwrap());
                day = day.checked_add(1.day()).unwrap();
            }
        }
    }

    #[test]
    fn utc_needs_no_table_and_names_are_checked() {
        assert!(init_entries("UTC").unwrap().is_empty());
        assert!(init_entries("utc").unwrap().is_empty());
        let e = init_entries("Europe/Pariss").unwrap_err();
        assert!(e.contains("Europe/Pariss"), "{e}");
        let entries = init_entries("Europe/Paris").unwrap();
        assert_eq!(entries[0], (NAME_KEY.into(), "Europe/Paris".into()));
        assert_eq!(entries[1].0, STAMP_TIMEZONE_TABLE_KEY);
        // Two changes a year since 1976.
        assert!(entries[1].1.split(',').count() > 240, "{}", entries[1].1);
    }
}
