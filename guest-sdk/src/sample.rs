//! Samples written straight into the VictoriaMetrics import body: no
//! intermediate sample struct, no per-sample allocation.

use crate::bytes::{
    append_all, append_block, append_label, append_plain_label, is_plain, label_name_ok,
};
use crate::error::RecordError;
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
    /// Why the record's samples cannot be stored whatever the transform
    /// returns: a label name a store cannot take.
    error: Option<RecordError>,
}

impl<'o> Samples<'o> {
    pub(crate) fn new(body: &'o mut Vec<u8>) -> Self {
        Samples {
            body,
            count: 0,
            error: None,
        }
    }

    /// A writer appending to `body` (benchmarks, tools); transforms are
    /// handed theirs by the chunk loop.
    pub fn for_body(body: &'o mut Vec<u8>) -> Self {
        Self::new(body)
    }

    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    /// Why the record must be rejected although the transform wrote its
    /// samples (the chunk loop rejects it; tools writing with
    /// [`for_body`](Self::for_body) check it themselves).
    pub fn error(&self) -> Option<&RecordError> {
        self.error.as_ref()
    }

    pub(crate) fn take_error(&mut self) -> Option<RecordError> {
        self.error.take()
    }

    /// The record has a label name a store cannot take: find which, out
    /// of the labels loop (in a module, code there costs registers).
    #[cold]
    #[inline(never)]
    fn bad_label_in(&mut self, record: &Record<'_>, mut skip: impl FnMut(&str) -> bool) {
        let name = record
            .labels()
            .map(|(name, _, _)| name)
            .find(|name| !skip(name) && !label_name_ok(name.as_bytes()));
        self.bad_label_name(name.unwrap_or_default());
    }

    #[cold]
    #[inline(never)]
    fn bad_label_name(&mut self, name: &str) {
        self.error.get_or_insert_with(|| {
            RecordError::new(
                "bad_label_name",
                format!("{name:?} cannot be a label name: a label name is [a-zA-Z_][a-zA-Z0-9_]* and does not start with __"),
            )
        });
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

    /// Start a sample from a [`SampleHead`] made once in `init`: the same
    /// as `sample(name)` followed by its labels, without encoding them again
    /// for every record.
    pub fn sample_from(&mut self, head: &SampleHead) -> SampleBuilder<'_, 'o> {
        let start = self.body.len();
        head.append_to(self.body);
        SampleBuilder {
            samples: self,
            start,
            done: false,
        }
    }
}

/// A sample's name and constant labels (`job`, `instance`, …), encoded
/// once: build it in `init`, start each sample with
/// [`Samples::sample_from`].
#[derive(Debug, Clone)]
pub struct SampleHead {
    /// The encoded head, padded with zeros to 64 or 128 bytes when it fits.
    padded: Vec<u8>,
    len: usize,
}

impl SampleHead {
    pub fn new(name: &str) -> Self {
        let mut encoded = br#"{"metric":{"__name__":"#.to_vec();
        write_json_str(&mut encoded, name);
        Self::from_encoded(encoded)
    }

    pub fn label(mut self, name: &str, value: &str) -> Self {
        self.padded.truncate(self.len);
        write_label(&mut self.padded, name, value);
        Self::from_encoded(self.padded)
    }

    fn from_encoded(mut padded: Vec<u8>) -> Self {
        let len = padded.len();
        if len <= 128 {
            padded.resize(if len <= 64 { 64 } else { 128 }, 0);
        }
        SampleHead { padded, len }
    }

    /// Append the head: a 64- or 128-byte block as fixed 16-byte moves,
    /// the padding then cut off again. `extend_from_slice` is a `memcpy`
    /// (even of a 64-byte array), in WASM a call out of the sandbox
    /// (`memory.copy`) that cost more than the moves.
    #[inline(always)]
    fn append_to(&self, out: &mut Vec<u8>) {
        let end = out.len() + self.len;
        if let Ok(block) = <&[u8; 64]>::try_from(self.padded.as_slice()) {
            append_block(out, block);
        } else if let Ok(block) = <&[u8; 128]>::try_from(self.padded.as_slice()) {
            append_block(out, block);
        } else {
            out.extend_from_slice(&self.padded);
        }
        out.truncate(end);
    }
}

/// One sample being written. Labels are written in the order given; a label
/// repeated is the caller's bug (VictoriaMetrics keeps the last). A label
/// name a store cannot take (see `label`) rejects the record with
/// `bad_label_name`.
pub struct SampleBuilder<'s, 'o> {
    samples: &'s mut Samples<'o>,
    start: usize,
    done: bool,
}

impl SampleBuilder<'_, '_> {
    /// A label. Its name must be `[a-zA-Z_][a-zA-Z0-9_]*` and not start
    /// with `__`; any other rejects the record with `bad_label_name` (a
    /// store would rename the sample, or refuse the whole request).
    pub fn label(self, name: &str, value: &str) -> Self {
        if !label_name_ok(name.as_bytes()) {
            self.samples.bad_label_name(name);
        }
        write_label(self.samples.body, name, value);
        self
    }

    /// A label whose value is a record's value (strings as they are, the rest
    /// as JSON text).
    pub fn label_value(self, name: &str, value: &Value<'_>) -> Self {
        self.label(name, value.as_label())
    }

    /// Every field of `record` whose name `skip` does not reject, as a label
    /// (values as `label_value` writes them, names checked as `label`'s).
    /// Faster than `label_value` in a loop: names and values the parser left
    /// as they were in the input are copied without being scanned for
    /// escapes again, and names of up to 16 bytes are checked 16 bytes at
    /// once.
    pub fn labels_from(self, record: &Record<'_>, mut skip: impl FnMut(&str) -> bool) -> Self {
        let body = &mut *self.samples.body;
        let readable = record.readable();
        // Whether some name is one a store cannot take: an `or`, no branch.
        let mut bad = false;
        for (name, value, plain) in record.labels() {
            if skip(name) {
                continue;
            }
            match plain {
                Some(text) => {
                    bad |= !append_label(body, readable, name.as_bytes(), text.as_bytes());
                }
                None => {
                    bad |= !label_name_ok(name.as_bytes());
                    write_label(body, name, value.as_label());
                }
            }
        }
        if bad {
            self.samples.bad_label_in(record, skip);
        }
        self
    }

    /// Close the sample with its value and timestamp (ms since the epoch).
    pub fn finish<'v>(mut self, value: impl Into<SampleValue<'v>>, timestamp_ms: i64) {
        let body = &mut *self.samples.body;
        let (mut thirteen, mut other) = ([0u8; 13], itoa::Buffer::new());
        let ts = match thirteen_digits(timestamp_ms, &mut thirteen) {
            Some(t) => t,
            None => other.format(timestamp_ms).as_bytes(),
        };
        match value.into() {
            SampleValue::Text(t) => append_all(
                body,
                [
                    br#"},"values":["#,
                    t.as_bytes(),
                    br#"],"timestamps":["#,
                    ts,
                    b"]}\n",
                ],
            ),
            SampleValue::F64(f) => {
                body.extend_from_slice(br#"},"values":["#);
                write_f64(body, f);
                append_all(body, [br#"],"timestamps":["#, ts, b"]}\n"]);
            }
        }
        self.samples.count += 1;
        self.done = true;
    }
}

/// A timestamp of 13 digits (every millisecond from September 2001 to
/// November 2286) written without a loop or a call: in a WASM module each is
/// a time check, and `itoa` takes one of each and three turns for it.
#[inline(always)]
fn thirteen_digits(ms: i64, out: &mut [u8; 13]) -> Option<&[u8]> {
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

/// `,"name":"value"`, escaping what needs it.
#[inline(always)]
fn write_label(out: &mut Vec<u8>, name: &str, value: &str) {
    if is_plain(name.as_bytes()) && is_plain(value.as_bytes()) {
        append_plain_label(out, name.as_bytes(), value.as_bytes());
        return;
    }
    out.push(b',');
    write_json_str(out, name);
    out.push(b':');
    write_json_str(out, value);
}

/// Append `s` as a JSON string literal. Label values are mostly plain ASCII,
/// so check first and copy in one piece when nothing needs escaping.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
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
    fn a_sample_head_writes_what_its_labels_would() {
        let head = SampleHead::new("bytes")
            .label("job", "pmacct")
            .label("q\"", "a\\b");
        let (mut from_head, mut by_hand) = (Vec::new(), Vec::new());
        Samples::new(&mut from_head)
            .sample_from(&head)
            .label("x", "1")
            .finish(2.0, 3);
        Samples::new(&mut by_hand)
            .sample("bytes")
            .label("job", "pmacct")
            .label("q\"", "a\\b")
            .label("x", "1")
            .finish(2.0, 3);
        assert_eq!(from_head, by_hand);
        // Heads shorter and longer than the 64- and 128-byte blocks they
        // are copied in, after text already in the body.
        for len in 0..=120 {
            let instance = "i".repeat(len);
            let head = SampleHead::new("bytes").label("instance", &instance);
            let (mut from_head, mut by_hand) = (b"{}\n".to_vec(), b"{}\n".to_vec());
            Samples::new(&mut from_head)
                .sample_from(&head)
                .finish(2.0, 3);
            Samples::new(&mut by_hand)
                .sample("bytes")
                .label("instance", &instance)
                .finish(2.0, 3);
            assert_eq!(from_head, by_hand, "instance of {len} bytes");
        }
        let mut body = b"before".to_vec();
        drop(Samples::new(&mut body).sample_from(&head));
        assert_eq!(body, b"before", "an unfinished sample leaves nothing");
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
