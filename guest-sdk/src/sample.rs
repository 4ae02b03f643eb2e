//! Samples written straight into the VictoriaMetrics import body: no
//! intermediate sample struct, no per-sample allocation.

use crate::record::{Record, Value};

/// A sample value: a JSON number's own text (written as is) or a float.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SampleValue<'a> {
    Text(&'a str),
    F64(f64),
}

impl From<f64> for SampleValue<'_> {
    fn from(v: f64) -> Self {
        SampleValue::F64(v)
    }
}

impl From<u64> for SampleValue<'_> {
    fn from(v: u64) -> Self {
        SampleValue::F64(v as f64)
    }
}

impl From<i64> for SampleValue<'_> {
    fn from(v: i64) -> Self {
        SampleValue::F64(v as f64)
    }
}

/// Where a transform puts the samples of one record.
pub struct Samples<'o> {
    body: &'o mut Vec<u8>,
    count: u32,
}

impl<'o> Samples<'o> {
    pub(crate) fn new(body: &'o mut Vec<u8>) -> Self {
        Samples { body, count: 0 }
    }

    /// A writer appending to `body` (benchmarks, tools); transforms are
    /// handed theirs by the batch loop.
    pub fn for_body(body: &'o mut Vec<u8>) -> Self {
        Self::new(body)
    }

    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    /// Start a sample named `name`; add labels, then `finish` it. A builder
    /// dropped without `finish` leaves nothing behind.
    pub fn sample(&mut self, name: &str) -> SampleBuilder<'_, 'o> {
        let start = self.body.len();
        self.body.extend_from_slice(br#"{"metric":{"__name__":"#);
        write_json_str(self.body, name);
        SampleBuilder {
            samples: self,
            start,
            done: false,
        }
    }
}

/// One sample being written. Labels are written in the order given; a label
/// repeated is the caller's bug (VictoriaMetrics keeps the last).
pub struct SampleBuilder<'s, 'o> {
    samples: &'s mut Samples<'o>,
    start: usize,
    done: bool,
}

impl SampleBuilder<'_, '_> {
    pub fn label(self, name: &str, value: &str) -> Self {
        let body = &mut *self.samples.body;
        body.push(b',');
        write_json_str(body, name);
        body.push(b':');
        write_json_str(body, value);
        self
    }

    /// A label whose value is a record's value (strings as they are, the rest
    /// as JSON text).
    pub fn label_value(self, name: &str, value: &Value<'_>) -> Self {
        self.label(name, value.as_label())
    }

    /// Every field of `record` whose name `skip` does not reject, as a label
    /// (values as `label_value` writes them). Faster than `label_value` in a
    /// loop: names and values the parser left as they were in the input are
    /// copied without being scanned for escapes again.
    pub fn labels_from(self, record: &Record<'_>, mut skip: impl FnMut(&str) -> bool) -> Self {
        let body = &mut *self.samples.body;
        for (name, name_safe, value, value_safe) in record.fields_json() {
            if skip(name) {
                continue;
            }
            body.push(b',');
            write_str(body, name, name_safe);
            body.push(b':');
            write_str(body, value, value_safe);
        }
        self
    }

    /// Close the sample with its value and timestamp (ms since the epoch).
    pub fn finish<'v>(mut self, value: impl Into<SampleValue<'v>>, timestamp_ms: i64) {
        let body = &mut *self.samples.body;
        body.extend_from_slice(br#"},"values":["#);
        match value.into() {
            SampleValue::Text(t) => body.extend_from_slice(t.as_bytes()),
            SampleValue::F64(f) => write_f64(body, f),
        }
        body.extend_from_slice(br#"],"timestamps":["#);
        body.extend_from_slice(itoa::Buffer::new().format(timestamp_ms).as_bytes());
        body.extend_from_slice(b"]}\n");
        self.samples.count += 1;
        self.done = true;
    }
}

impl Drop for SampleBuilder<'_, '_> {
    fn drop(&mut self) {
        if !self.done {
            self.samples.body.truncate(self.start);
        }
    }
}

fn write_f64(body: &mut Vec<u8>, f: f64) {
    if f.is_finite() {
        if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
            body.extend_from_slice(itoa::Buffer::new().format(f as i64).as_bytes());
        } else {
            body.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes());
        }
    } else {
        // JSON has no NaN/Inf; VictoriaMetrics reads these as bare words in strings.
        let word: &[u8] = if f.is_nan() {
            b"\"NaN\""
        } else if f > 0.0 {
            b"\"Inf\""
        } else {
            b"\"-Inf\""
        };
        body.extend_from_slice(word);
    }
}

fn write_str(out: &mut Vec<u8>, s: &str, safe: bool) {
    if safe {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        write_json_str(out, s);
    }
}

/// True when no byte of the word is `"`, `\\` or below 0x20 (exact: the
/// classic "has zero byte / has byte less than" bit tricks).
#[inline]
fn word_is_plain(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    let q = w ^ (ONES * b'"' as u64);
    let quote = q.wrapping_sub(ONES) & !q & HIGH;
    let b = w ^ (ONES * b'\\' as u64);
    let backslash = b.wrapping_sub(ONES) & !b & HIGH;
    (control | quote | backslash) == 0
}

/// The index of the first `"`, `\\` or control byte, eight bytes a step.
/// In the word test a borrow can only flag bytes above a real hit, so the
/// lowest flagged byte is the first one.
pub(crate) fn first_special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    let mut base = 0;
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let w = u64::from_le_bytes(w);
        let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        let q = w ^ (ONES * b'"' as u64);
        let quote = q.wrapping_sub(ONES) & !q & HIGH;
        let bs = w ^ (ONES * b'\\' as u64);
        let backslash = bs.wrapping_sub(ONES) & !bs & HIGH;
        let hits = control | quote | backslash;
        if hits != 0 {
            return Some(base + (hits.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
        .map(|p| base + p)
}

/// Whether `bytes` needs no escaping, eight bytes at a time: in WASM every
/// loop iteration also pays the time-limit check, so fewer iterations count.
fn is_plain(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        if !word_is_plain(u64::from_le_bytes(w)) {
            return false;
        }
    }
    chunks
        .remainder()
        .iter()
        .all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
}

/// Append `s` as a JSON string literal. Label values are mostly plain ASCII,
/// so check first and copy in one piece when nothing needs escaping.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if is_plain(bytes) {
        write_str(out, s, true);
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

    #[test]
    fn writes_one_import_line() {
        let mut body = Vec::new();
        let mut s = Samples::new(&mut body);
        s.sample("bytes")
            .label("ip", "10.0.0.1")
            .label("q", "a\"b\\c\n\u{1}")
            .finish(SampleValue::Text("9000"), 1_795_600_862_000);
        s.sample("rate").finish(0.25, 5);
        s.sample("big").finish(3.0, 5);
        let text = String::from_utf8(body).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(
            lines[0],
            r#"{"metric":{"__name__":"bytes","ip":"10.0.0.1","q":"a\"b\\c\n\u0001"},"values":[9000],"timestamps":[1795600862000]}"#
        );
        for l in &lines {
            serde_json::from_str::<serde_json::Value>(l).unwrap();
        }
        assert!(lines[1].contains("[0.25]"));
        assert!(lines[2].contains("\"values\":[3]"));
    }

    #[test]
    fn plain_check_is_exact() {
        for b in 0u8..=255 {
            for pos in 0..11 {
                let mut v = vec![b'a'; 11];
                v[pos] = b;
                let expect = b >= 0x20 && b != b'"' && b != b'\\';
                assert_eq!(is_plain(&v), expect, "byte {b:#x} at {pos}");
            }
        }
    }

    #[test]
    fn labels_from_a_record_match_label_value() {
        let r = Record::parse(
            br#"{"a": "x\"y", "b": 12, "c\n": "plain", "d": {"n": [1]}, "e": null, "skip": 1}"#,
        )
        .unwrap();
        let (mut fast, mut slow) = (Vec::new(), Vec::new());
        Samples::new(&mut fast)
            .sample("m")
            .labels_from(&r, |n| n == "skip")
            .finish(1.0, 1);
        let mut s = Samples::new(&mut slow);
        let mut b = s.sample("m");
        for (k, v) in r.fields().filter(|(k, _)| *k != "skip") {
            b = b.label_value(k, v);
        }
        b.finish(1.0, 1);
        assert_eq!(
            String::from_utf8(fast).unwrap(),
            String::from_utf8(slow).unwrap()
        );
    }

    #[test]
    fn unfinished_sample_leaves_nothing() {
        let mut body = b"before".to_vec();
        let mut s = Samples::new(&mut body);
        drop(s.sample("x").label("a", "b"));
        assert_eq!(s.count(), 0);
        assert_eq!(body, b"before");
    }
}
