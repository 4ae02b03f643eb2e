//! Samples written straight into the VictoriaMetrics import body: no
//! intermediate sample struct, no per-sample allocation.

use crate::record::Value;

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

/// Append `s` as a JSON string literal. Label values are mostly plain ASCII,
/// so scan first and copy in one piece when nothing needs escaping.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
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
    fn unfinished_sample_leaves_nothing() {
        let mut body = b"before".to_vec();
        let mut s = Samples::new(&mut body);
        drop(s.sample("x").label("a", "b"));
        assert_eq!(s.count(), 0);
        assert_eq!(body, b"before");
    }
}
