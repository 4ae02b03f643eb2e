//! VictoriaMetrics import lines written from a [`SampleSet`]: one line a
//! point, `{"metric":{"__name__":NAME,labels},"values":[v],"timestamps":[ms]}`.
//! The host writes them for `OUTPUT=vm-import` and for contract 1.0's
//! check of equal output; authors' tests read them.

use crate::bytes::{append_all, is_plain};
use crate::SampleSet;

/// Append the lines of the points in `points` to `out`. `set` must be
/// valid (built by the SDK, or checked by the host).
pub fn write(set: &SampleSet, points: std::ops::Range<usize>, out: &mut Vec<u8>) {
    if points.len() == set.len() {
        out.reserve(set.text.len() + set.string_ends.len() * 3 + set.len() * 48);
    }
    for p in points {
        let (name, labels) = set.series(set.point_series[p]);
        out.extend_from_slice(br#"{"metric":{"__name__":"#);
        write_json_bytes(out, name);
        for (name, value) in labels {
            if is_plain(name) && is_plain(value) {
                append_all(out, [b",\"", name, b"\":\"", value, b"\""]);
            } else {
                out.push(b',');
                write_json_bytes(out, name);
                out.push(b':');
                write_json_bytes(out, value);
            }
        }
        out.extend_from_slice(br#"},"values":["#);
        write_f64(out, set.values[p]);
        out.extend_from_slice(br#"],"timestamps":["#);
        write_timestamp(out, set.timestamps[p]);
        out.extend_from_slice(b"]}\n");
    }
}

fn write_timestamp(out: &mut Vec<u8>, ms: i64) {
    let mut thirteen = [0u8; 13];
    match thirteen_digits(ms, &mut thirteen) {
        Some(t) => out.extend_from_slice(t),
        None => out.extend_from_slice(itoa::Buffer::new().format(ms).as_bytes()),
    }
}

/// A timestamp of 13 digits (every millisecond from September 2001 to
/// November 2286) written without a loop or a call.
#[inline(always)]
pub(crate) fn thirteen_digits(ms: i64, out: &mut [u8; 13]) -> Option<&[u8]> {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    if !(1_000_000_000_000..10_000_000_000_000).contains(&ms) {
        return None;
    }
    let ms = ms as u64;
    let (high, low) = ((ms / 100_000_000) as u32, (ms % 100_000_000) as u32);
    out[0] = b'0' + (high / 10_000) as u8;
    let groups = [high % 10_000, low / 10_000, low % 10_000];
    for (g, group) in groups.into_iter().enumerate() {
        let (a, b) = ((group / 100) as usize * 2, (group % 100) as usize * 2);
        let at = 1 + g * 4;
        out[at..at + 2].copy_from_slice(&PAIRS[a..a + 2]);
        out[at + 2..at + 4].copy_from_slice(&PAIRS[b..b + 2]);
    }
    Some(out)
}

/// A value as VictoriaMetrics reads it: whole numbers below 2^53 without a
/// fraction, others in the shortest form that reads back the same, and
/// `"NaN"`, `"Inf"`, `"-Inf"` (JSON has no such numbers).
pub(crate) fn write_f64(out: &mut Vec<u8>, f: f64) {
    if f.is_finite() {
        if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
            out.extend_from_slice(itoa::Buffer::new().format(f as i64).as_bytes());
        } else {
            out.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes());
        }
    } else {
        let word: &[u8] = if f.is_nan() {
            b"\"NaN\""
        } else if f > 0.0 {
            b"\"Inf\""
        } else {
            b"\"-Inf\""
        };
        out.extend_from_slice(word);
    }
}

/// Append `s` as a JSON string literal.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    write_json_bytes(out, s.as_bytes());
}

/// Append UTF-8 `bytes` as a JSON string literal. Label values are mostly
/// plain ASCII, so check first and copy in one piece when nothing needs
/// escaping.
fn write_json_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    if is_plain(bytes) {
        append_all(out, [b"\"", bytes, b"\""]);
        return;
    }
    out.push(b'"');
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&bytes[from..i]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
                from = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[from..i]);
        out.extend_from_slice(esc);
        from = i + 1;
    }
    out.extend_from_slice(&bytes[from..]);
    out.push(b'"');
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixed 13-digit writer against itoa: the range's ends, every
    /// power-of-ten boundary's neighbours and a sweep of a million values
    /// spread over the range; outside it, itoa's path.
    #[test]
    fn thirteen_digit_timestamps_match_itoa() {
        let mut values = vec![
            i64::MIN,
            -1,
            0,
            999_999_999_999,
            1_000_000_000_000,
            1_795_636_000_000,
            9_999_999_999_999,
            10_000_000_000_000,
            i64::MAX,
        ];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..1_000_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(1_000_000_000_000 + (x % 9_000_000_000_000) as i64);
        }
        for p in 1..=12 {
            let b = 10i64.pow(p);
            values.extend([
                1_000_000_000_000 + b - 1,
                1_000_000_000_000 + b,
                9_000_000_000_000 + b - 1,
            ]);
        }
        for ms in values {
            let mut out = [0u8; 13];
            let want = itoa::Buffer::new().format(ms).as_bytes().to_vec();
            match thirteen_digits(ms, &mut out) {
                Some(got) => assert_eq!(got, &want[..], "{ms}"),
                None => assert_ne!(want.len(), 13, "{ms} has 13 digits"),
            }
        }
    }

    #[test]
    fn values_are_written_as_the_store_reads_them() {
        for (v, want) in [
            (9000.0, "9000"),
            (0.25, "0.25"),
            (-3.0, "-3"),
            (1e300, "1e300"),
            (f64::NAN, "\"NaN\""),
            (f64::INFINITY, "\"Inf\""),
            (f64::NEG_INFINITY, "\"-Inf\""),
        ] {
            let mut out = Vec::new();
            write_f64(&mut out, v);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }
}
