//! Samples added to a [`SampleSet`] as a transform writes them: no
//! intermediate sample struct, no per-sample allocation, no escaping.

use crate::bytes::{append_strings, label_name_ok};
use crate::error::RecordError;
use crate::record::{Record, Value};
use crate::sample_set::{Mark, SampleSet};

/// A sample value: a JSON number's own text (read as a float when the
/// sample is finished) or a float.
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
    set: &'o mut SampleSet,
    /// Why the record's samples cannot be stored whatever the transform
    /// returns: a label name a store cannot take, a value that is no number.
    error: Option<RecordError>,
}

impl<'o> Samples<'o> {
    pub(crate) fn new(set: &'o mut SampleSet) -> Self {
        Samples { set, error: None }
    }

    /// A writer adding to `set` (benchmarks, tools); transforms are
    /// handed theirs by the chunk loop.
    pub fn for_set(set: &'o mut SampleSet) -> Self {
        Self::new(set)
    }

    /// Why the record must be rejected although the transform wrote its
    /// samples (the chunk loop rejects it; tools writing with
    /// [`for_set`](Self::for_set) check it themselves).
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

    #[cold]
    #[inline(never)]
    fn not_a_number(&mut self, text: &str) {
        self.error.get_or_insert_with(|| {
            RecordError::new(
                "non_numeric_value",
                format!("{text:?} is not a number (a sample's value)"),
            )
        });
    }

    /// Start a sample named `name`; add labels, then `finish` it. A builder
    /// dropped without `finish` leaves nothing behind.
    pub fn sample(&mut self, name: &str) -> SampleBuilder<'_, 'o> {
        let start = self.set.mark();
        self.set.push_string(name.as_bytes());
        SampleBuilder {
            samples: self,
            start,
            done: false,
        }
    }

    /// Start a sample from a [`SampleHead`] made once in `init`: the same
    /// as `sample(name)` followed by its labels, in one copy.
    pub fn sample_from(&mut self, head: &SampleHead) -> SampleBuilder<'_, 'o> {
        let start = self.set.mark();
        let base = self.set.text.len() as u32;
        self.set.text.extend_from_slice(&head.text);
        let ends = &mut self.set.string_ends;
        ends.extend(head.ends.iter().map(|&end| base + end));
        SampleBuilder {
            samples: self,
            start,
            done: false,
        }
    }
}

/// A sample's name and constant labels (`job`, `instance`, …), kept
/// together: build it in `init`, start each sample with
/// [`Samples::sample_from`].
#[derive(Debug, Clone)]
pub struct SampleHead {
    /// The name and the labels' strings back to back.
    text: Vec<u8>,
    /// Where each string ends in `text`.
    ends: Vec<u32>,
}

impl SampleHead {
    pub fn new(name: &str) -> Self {
        SampleHead {
            text: name.as_bytes().to_vec(),
            ends: vec![name.len() as u32],
        }
    }

    pub fn label(mut self, name: &str, value: &str) -> Self {
        for s in [name, value] {
            self.text.extend_from_slice(s.as_bytes());
            self.ends.push(self.text.len() as u32);
        }
        self
    }
}

/// One sample being written. Labels are kept in the order given; a label
/// repeated is the caller's bug (VictoriaMetrics keeps the last). A label
/// name a store cannot take (see `label`) rejects the record with
/// `bad_label_name`.
pub struct SampleBuilder<'s, 'o> {
    samples: &'s mut Samples<'o>,
    start: Mark,
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
        let set = &mut *self.samples.set;
        set.push_string(name.as_bytes());
        set.push_string(value.as_bytes());
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
    /// as they were in the input are copied in 16-byte moves and names of
    /// up to 16 bytes checked 16 bytes at once.
    pub fn labels_from(self, record: &Record<'_>, mut skip: impl FnMut(&str) -> bool) -> Self {
        let set = &mut *self.samples.set;
        let readable = record.readable();
        // Whether some name is one a store cannot take: an `or`, no branch.
        let mut bad = false;
        for (name, value, plain) in record.labels() {
            if skip(name) {
                continue;
            }
            let value = plain.unwrap_or(value.as_label());
            let (ok, ends) =
                append_strings(&mut set.text, readable, name.as_bytes(), value.as_bytes());
            bad |= !ok;
            set.end_strings(&ends);
        }
        if bad {
            self.samples.bad_label_in(record, skip);
        }
        self
    }

    /// Close the sample with its value and timestamp (ms since the epoch).
    pub fn finish<'v>(mut self, value: impl Into<SampleValue<'v>>, timestamp_ms: i64) {
        let value = match value.into() {
            SampleValue::F64(f) => f,
            SampleValue::Text(t) => match number(t) {
                Some(f) => f,
                None => {
                    // Dropped unfinished: the record is rejected.
                    self.samples.not_a_number(t);
                    return;
                }
            },
        };
        self.samples.set.push_point(value, timestamp_ms);
        self.done = true;
    }
}

/// A JSON number's text as a float: whole numbers of up to 15 digits (the
/// counters of flow records) without the float parser, which in a module
/// costs more than the rest of the sample; the rest through it.
#[inline]
fn number(text: &str) -> Option<f64> {
    let (negative, digits) = match text.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        b => (false, b),
    };
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_digit) {
        return text.parse::<f64>().ok().filter(|f| f.is_finite());
    }
    let n = digits
        .iter()
        .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')) as f64;
    Some(if negative { -n } else { n })
}

impl Drop for SampleBuilder<'_, '_> {
    fn drop(&mut self) {
        if !self.done {
            self.samples.set.truncate(self.start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(set: &SampleSet) -> Vec<String> {
        set.import_lines().lines().map(str::to_string).collect()
    }

    #[test]
    fn writes_one_import_line() {
        let mut set = SampleSet::default();
        let mut s = Samples::new(&mut set);
        s.sample("bytes")
            .label("ip", "10.0.0.1")
            .label("q", "a\"b\\c\n\u{1}")
            .finish(SampleValue::Text("9000"), 1_795_600_862_000);
        s.sample("rate").finish(0.25, 5);
        s.sample("big").finish(3.0, 5);
        assert_eq!(s.set.len(), 3);
        let lines = lines(&set);
        assert_eq!(
            lines[0],
            r#"{"metric":{"__name__":"bytes","ip":"10.0.0.1","q":"a\"b\\c\n\u0001"},"values":[9000],"timestamps":[1795600862000]}"#
        );
        for l in &lines {
            serde_json::from_str::<serde_json::Value>(l).unwrap();
        }
        assert!(lines[1].contains("[0.25]"));
        assert!(lines[2].contains("\"values\":[3]"));
        assert_eq!(set.series_strings(1), 5..6);
        assert_eq!(set.string(5), b"rate");
    }

    #[test]
    fn labels_from_a_record_match_label_value() {
        let r = Record::parse(
            br#"{"a": "x\"y", "b": 12, "c\n": "plain", "d": {"n": [1]}, "e": null, "skip": 1}"#,
        )
        .unwrap();
        let (mut fast, mut slow) = (SampleSet::default(), SampleSet::default());
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
        assert_eq!(fast, slow);
    }

    #[test]
    fn a_sample_head_writes_what_its_labels_would() {
        let head = SampleHead::new("bytes")
            .label("job", "pmacct")
            .label("q\"", "a\\b");
        let (mut from_head, mut by_hand) = (SampleSet::default(), SampleSet::default());
        for set in [&mut from_head, &mut by_hand] {
            Samples::new(set).sample("first").finish(1.0, 1);
        }
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
        let before = from_head.clone();
        drop(Samples::new(&mut from_head).sample_from(&head));
        assert_eq!(from_head, before, "an unfinished sample leaves nothing");
    }

    #[test]
    fn unfinished_sample_leaves_nothing() {
        let mut set = SampleSet::default();
        let mut s = Samples::new(&mut set);
        s.sample("kept").finish(1.0, 1);
        let before = s.set.clone();
        drop(s.sample("x").label("a", "b"));
        assert_eq!(s.set.len(), 1);
        assert_eq!(*s.set, before);
    }

    #[test]
    fn number_text_reads_as_the_float_parser_reads_it() {
        for t in [
            "0",
            "-0",
            "7",
            "1000",
            "123456789012345",
            "1234567890123456",
            "-42",
            "1.5",
            "1e3",
            "-2.5E-3",
            "99999999999999999999",
        ] {
            let want = t.parse::<f64>().unwrap();
            assert_eq!(number(t).map(f64::to_bits), Some(want.to_bits()), "{t}");
        }
        for t in ["", "-", "1e999", "abc", "1.2.3", "--1"] {
            assert_eq!(number(t), None, "{t}");
        }
    }

    #[test]
    fn a_value_that_is_no_number_rejects_the_record() {
        let mut set = SampleSet::default();
        let mut s = Samples::new(&mut set);
        s.sample("x")
            .label("a", "b")
            .finish(SampleValue::Text("12abc"), 1);
        assert_eq!(s.set.len(), 0);
        assert_eq!(s.error().map(|e| &*e.reason), Some("non_numeric_value"));
        assert_eq!(set, SampleSet::default());
    }
}
