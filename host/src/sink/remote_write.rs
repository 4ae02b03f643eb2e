//! Import lines to a Prometheus remote-write 1.0 `WriteRequest`
//! (protobuf, before snappy).
//!
//! The message is written with prost's wire primitives straight from the
//! text of the lines: building prost's owned structs would allocate a
//! `String` per label per sample, where this allocates per batch only.
//! The tests decode what is written with prost's derived structs of the
//! same schema (`prometheus/prompb/types.proto`).
//!
//! The spec's order is kept: labels sorted by name within a series, and
//! a series' samples in timestamp order, all of them in one `TimeSeries`.
//! The spec orders nothing across series, so series are grouped by a hash
//! of their labels: sorting them by their labels instead took 40 % of the
//! encoder's time (label after equal label compared, for every pair).

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::import_line;

/// What became of a batch's samples.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Samples in the request.
    pub samples: u64,
    /// Samples replaced by a later one of the same series and timestamp in
    /// the same batch: a receiver takes one value per series and
    /// timestamp, and refuses the whole request for a second one.
    pub merged: u64,
    /// Lines that are not import lines, skipped (VictoriaMetrics' import
    /// skips them too).
    pub invalid: u64,
}

type Label<'a> = (Cow<'a, str>, Cow<'a, str>);

#[derive(Clone, Copy)]
struct Entry {
    /// Of the series' labels: groups a series, and orders series.
    hash: u64,
    labels: (u32, u32),
    ts: i64,
    /// Arrival order: of equal series and timestamp, the last one stays.
    seq: u32,
    value: f64,
}

/// Append the `WriteRequest` for `lines` to `out`, with `extra` labels on
/// every series (replacing labels of the same name).
pub fn write_request<'a>(
    lines: &'a [u8],
    extra: &'a [(String, String)],
    out: &mut Vec<u8>,
) -> Counts {
    let mut labels: Vec<Label<'a>> = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    let mut counts = Counts::default();
    for (_, line) in import_line::lines(lines) {
        if read_line(line, extra, &mut labels, &mut entries).is_none() {
            counts.invalid += 1;
        }
    }
    let series = |e: &Entry| &labels[e.labels.0 as usize..e.labels.1 as usize];
    entries.sort_unstable_by(|a, b| {
        a.hash
            .cmp(&b.hash)
            .then_with(|| series(a).cmp(series(b)))
            .then(a.ts.cmp(&b.ts))
            .then(a.seq.cmp(&b.seq))
    });
    let before = entries.len();
    entries.dedup_by(|later, kept| {
        let same = later.ts == kept.ts && later.hash == kept.hash && series(later) == series(kept);
        if same {
            kept.value = later.value;
        }
        same
    });
    counts.merged = (before - entries.len()) as u64;
    counts.samples = entries.len() as u64;
    let mut rest = &entries[..];
    while let Some(first) = rest.first() {
        let n = rest
            .iter()
            .position(|e| e.hash != first.hash || series(e) != series(first))
            .unwrap_or(rest.len());
        write_series(series(first), &rest[..n], out);
        rest = &rest[n..];
    }
    counts
}

/// One line's labels and samples; `None` (and nothing kept) if it is not
/// an import line. One pass over the line: the `metric` object is read
/// into `labels` as the parser meets it.
fn read_line<'a>(
    line: &'a [u8],
    extra: &'a [(String, String)],
    labels: &mut Vec<Label<'a>>,
    entries: &mut Vec<Entry>,
) -> Option<()> {
    let (label_start, entry_start) = (labels.len(), entries.len());
    let read = (|| {
        let mut de = serde_json::Deserializer::from_slice(line);
        let arrays = LineInto(labels).deserialize(&mut de).ok()?;
        de.end().ok()?;
        let (values, timestamps) = (arrays.values?, arrays.timestamps?);
        let series = normalise(labels, label_start, extra)?;
        let hash = hash(&labels[series.0 as usize..series.1 as usize]);
        for pair in import_line::pairs(values, timestamps)? {
            let (v, t) = pair.ok()?;
            entries.push(Entry {
                hash,
                labels: series,
                ts: t.parse().ok()?,
                seq: entries.len() as u32,
                value: v.parse().ok()?,
            });
        }
        Some(())
    })();
    if read.is_none() {
        labels.truncate(label_start);
        entries.truncate(entry_start);
    }
    read
}

fn hash(labels: &[Label<'_>]) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    for (name, value) in labels {
        name.hash(&mut h);
        value.hash(&mut h);
    }
    h.finish()
}

/// The labels from `start` on: empty values dropped (Prometheus treats
/// them as absent), `extra` replacing labels of its names, sorted by name,
/// a repeated name kept once. `None` without a metric name.
fn normalise<'a>(
    labels: &mut Vec<Label<'a>>,
    start: usize,
    extra: &'a [(String, String)],
) -> Option<(u32, u32)> {
    let mut i = start;
    while i < labels.len() {
        let (name, value) = &labels[i];
        if value.is_empty() || extra.iter().any(|(n, _)| n == name) {
            labels.swap_remove(i);
        } else {
            i += 1;
        }
    }
    labels.extend(
        extra
            .iter()
            .map(|(n, v)| (Cow::Borrowed(n.as_str()), Cow::Borrowed(v.as_str()))),
    );
    labels[start..].sort_by(|a, b| a.0.cmp(&b.0));
    let mut kept = start;
    for i in start..labels.len() {
        if i == start || labels[i].0 != labels[kept - 1].0 {
            labels.swap(kept, i);
            kept += 1;
        }
    }
    labels.truncate(kept);
    labels[start..]
        .iter()
        .any(|(n, _)| n == "__name__")
        .then_some((start as u32, kept as u32))
}

fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

fn label_len((name, value): &Label<'_>) -> usize {
    field_len(name.len()) + field_len(value.len())
}

fn sample_len(ts: i64) -> usize {
    (1 + 8) + (1 + encoded_len_varint(ts as u64))
}

/// `WriteRequest.timeseries` (field 1): one `TimeSeries` with its labels
/// (field 1) and samples (field 2).
fn write_series(labels: &[Label<'_>], samples: &[Entry], out: &mut Vec<u8>) {
    let len: usize = labels
        .iter()
        .map(|l| field_len(label_len(l)))
        .sum::<usize>()
        + samples
            .iter()
            .map(|s| field_len(sample_len(s.ts)))
            .sum::<usize>();
    encode_key(1, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
    for label in labels {
        encode_key(1, WireType::LengthDelimited, out);
        encode_varint(label_len(label) as u64, out);
        write_text(1, &label.0, out);
        write_text(2, &label.1, out);
    }
    for s in samples {
        encode_key(2, WireType::LengthDelimited, out);
        encode_varint(sample_len(s.ts) as u64, out);
        encode_key(1, WireType::SixtyFourBit, out);
        out.extend_from_slice(&s.value.to_le_bytes());
        encode_key(2, WireType::Varint, out);
        encode_varint(s.ts as u64, out);
    }
}

fn write_text(tag: u32, text: &str, out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(text.len() as u64, out);
    out.extend_from_slice(text.as_bytes());
}

/// A JSON string, borrowed from the line unless it has escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// An import line's arrays, left as text; its `metric` goes to the labels.
struct Arrays<'a> {
    values: Option<&'a RawValue>,
    timestamps: Option<&'a RawValue>,
}

/// Reads an import line: `metric` onto the end of a label list, the
/// arrays as text, other keys skipped.
struct LineInto<'v, 'a>(&'v mut Vec<Label<'a>>);

impl<'de> DeserializeSeed<'de> for LineInto<'_, 'de> {
    type Value = Arrays<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Arrays<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LineInto<'_, 'de> {
    type Value = Arrays<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an import line")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Arrays<'de>, M::Error> {
        let mut arrays = Arrays {
            values: None,
            timestamps: None,
        };
        let mut metric = false;
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match &*key.0 {
                "metric" if !metric => {
                    map.next_value_seed(LabelsInto(&mut *self.0))?;
                    metric = true;
                }
                "values" => arrays.values = Some(map.next_value()?),
                "timestamps" => arrays.timestamps = Some(map.next_value()?),
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        if !metric {
            return Err(serde::de::Error::missing_field("metric"));
        }
        Ok(arrays)
    }
}

/// Reads a `metric` object's entries onto the end of a label list.
struct LabelsInto<'v, 'a>(&'v mut Vec<Label<'a>>);

impl<'de> DeserializeSeed<'de> for LabelsInto<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LabelsInto<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of label names and values")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while let Some((name, value)) = map.next_entry::<Text<'de>, Text<'de>>()? {
            self.0.push((name.0, value.0));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod schema {
    //! `prometheus/prompb` `WriteRequest`, for decoding in tests.

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }
}

#[cfg(test)]
mod tests {
    use super::schema::*;
    use super::*;
    use prost::Message;

    fn decode(lines: &str, extra: &[(String, String)]) -> (WriteRequest, Counts) {
        let mut out = Vec::new();
        let counts = write_request(lines.as_bytes(), extra, &mut out);
        (
            WriteRequest::decode(&out[..]).expect("a WriteRequest"),
            counts,
        )
    }

    fn names(ts: &TimeSeries) -> Vec<(&str, &str)> {
        ts.labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect()
    }

    #[test]
    fn series_are_grouped_with_sorted_labels_and_samples() {
        let lines = concat!(
            r#"{"metric":{"__name__":"bytes","ip_src":"10.0.0.2","job":"j"},"values":[5],"timestamps":[2000]}"#,
            "\n",
            r#"{"metric":{"job":"j","ip_src":"10.0.0.1","__name__":"bytes"},"values":[7],"timestamps":[3000]}"#,
            "\n\n",
            r#"{"metric":{"__name__":"bytes","ip_src":"10.0.0.1","job":"j"},"values":[1.5,2],"timestamps":[1000,4000]}"#,
            "\n",
        );
        let extra = [("site".to_string(), "a\"b".to_string())];
        let (mut req, counts) = decode(lines, &extra);
        assert_eq!(
            counts,
            Counts {
                samples: 4,
                merged: 0,
                invalid: 0
            }
        );
        assert_eq!(req.timeseries.len(), 2, "one TimeSeries a series");
        req.timeseries
            .sort_by(|a, b| a.labels[1].value.cmp(&b.labels[1].value));
        let first = &req.timeseries[0];
        assert_eq!(
            names(first),
            [
                ("__name__", "bytes"),
                ("ip_src", "10.0.0.1"),
                ("job", "j"),
                ("site", "a\"b")
            ]
        );
        let samples: Vec<(f64, i64)> = first
            .samples
            .iter()
            .map(|s| (s.value, s.timestamp))
            .collect();
        assert_eq!(samples, [(1.5, 1000), (7.0, 3000), (2.0, 4000)]);
        assert_eq!(names(&req.timeseries[1])[1], ("ip_src", "10.0.0.2"));
    }

    #[test]
    fn extra_labels_replace_and_empty_values_drop() {
        let lines = r#"{"metric":{"__name__":"m","site":"x","empty":"","esc":"a\nb"},"values":[1],"timestamps":[-5]}"#;
        let extra = [("site".to_string(), "y".to_string())];
        let (req, _) = decode(lines, &extra);
        assert_eq!(
            names(&req.timeseries[0]),
            [("__name__", "m"), ("esc", "a\nb"), ("site", "y")]
        );
        assert_eq!(req.timeseries[0].samples[0].timestamp, -5);
    }

    #[test]
    fn one_value_per_series_and_timestamp_the_last_one() {
        let line = |v: u32| {
            format!(r#"{{"metric":{{"__name__":"m","a":"1"}},"values":[{v}],"timestamps":[1000]}}"#)
        };
        let lines = [line(1), line(2), line(3)].join("\n");
        let (req, counts) = decode(&lines, &[]);
        assert_eq!(
            counts,
            Counts {
                samples: 1,
                merged: 2,
                invalid: 0
            }
        );
        assert_eq!(req.timeseries[0].samples[0].value, 3.0);
    }

    #[test]
    fn lines_that_are_not_import_lines_are_skipped_whole() {
        let lines = [
            r#"{"metric":{"__name__":"m"},"values":[1,2],"timestamps":[1]}"#,
            r#"{"metric":{"a":"no name"},"values":[1],"timestamps":[1]}"#,
            r#"{"metric":{"__name__":"m","n":3},"values":[1],"timestamps":[1]}"#,
            r#"{"metric":{"__name__":"m"},"values":["x"],"timestamps":[1]}"#,
            "not json",
            r#"{"metric":{"__name__":"ok"},"values":[1],"timestamps":[1]}"#,
        ]
        .join("\n");
        let (req, counts) = decode(&lines, &[]);
        assert_eq!(
            counts,
            Counts {
                samples: 1,
                merged: 0,
                invalid: 5
            }
        );
        assert_eq!(names(&req.timeseries[0]), [("__name__", "ok")]);
    }

    #[test]
    fn an_empty_batch_is_an_empty_request() {
        let (req, counts) = decode("", &[]);
        assert!(req.timeseries.is_empty());
        assert_eq!(counts, Counts::default());
    }
}
