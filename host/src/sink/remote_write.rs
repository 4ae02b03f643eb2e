//! Samples to a Prometheus remote-write 1.0 `WriteRequest` (protobuf,
//! before snappy), written from their structure.
//!
//! The message is written with prost's wire primitives straight from the
//! samples' strings: building prost's owned structs would allocate a
//! `String` per label per sample, where this allocates per batch only.
//! The tests decode what is written with prost's derived structs of the
//! same schema (`prometheus/prompb/types.proto`).
//!
//! The spec's order is kept: labels sorted by name within a series, and
//! a series' samples in timestamp order, all of them in one `TimeSeries`.
//! The spec orders nothing across series, so series are grouped by a hash
//! of their labels: sorting them by their labels instead took 40 % of the
//! encoder's time (label after equal label compared, for every pair).

use std::hash::{Hash, Hasher};

use pmacct_guest_sdk::SampleSet;
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};

/// What became of a batch's samples.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Samples in the request.
    pub samples: u64,
    /// Samples replaced by a later one of the same series and timestamp in
    /// the same batch: a receiver takes one value per series and
    /// timestamp, and refuses the whole request for a second one.
    pub merged: u64,
}

type Label<'a> = (&'a [u8], &'a [u8]);

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

/// Append the `WriteRequest` for `samples` to `out`, with `extra` labels on
/// every series (replacing labels of the same name).
pub fn write_request<'a>(
    samples: &'a SampleSet,
    extra: &'a [(String, String)],
    out: &mut Vec<u8>,
) -> Counts {
    let mut labels: Vec<Label<'a>> = Vec::new();
    // Each series' labels, normalised once, and their hash.
    let mut series_labels = Vec::with_capacity(samples.series_ends.len());
    for s in 0..samples.series_ends.len() as u32 {
        let range = read_series(samples, s, extra, &mut labels);
        series_labels.push((range, hash(&labels[range.0 as usize..range.1 as usize])));
    }
    let mut entries: Vec<Entry> = (0..samples.len())
        .map(|p| {
            let (labels, hash) = series_labels[samples.point_series[p] as usize];
            Entry {
                hash,
                labels,
                ts: samples.timestamps[p],
                seq: p as u32,
                value: samples.values[p],
            }
        })
        .collect();
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
    let counts = Counts {
        merged: (before - entries.len()) as u64,
        samples: entries.len() as u64,
    };
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

/// Series `s`' labels, the name as `__name__`, onto the end of `labels`,
/// normalised: where they are.
fn read_series<'a>(
    samples: &'a SampleSet,
    s: u32,
    extra: &'a [(String, String)],
    labels: &mut Vec<Label<'a>>,
) -> (u32, u32) {
    let start = labels.len();
    let (name, pairs) = samples.series(s);
    labels.push((b"__name__", name));
    labels.extend(pairs);
    normalise(labels, start, extra)
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
/// a repeated name kept once.
fn normalise<'a>(
    labels: &mut Vec<Label<'a>>,
    start: usize,
    extra: &'a [(String, String)],
) -> (u32, u32) {
    let mut i = start;
    while i < labels.len() {
        let (name, value) = labels[i];
        if value.is_empty() || extra.iter().any(|(n, _)| n.as_bytes() == name) {
            labels.swap_remove(i);
        } else {
            i += 1;
        }
    }
    labels.extend(extra.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
    labels[start..].sort_by(|a, b| a.0.cmp(b.0));
    let mut kept = start;
    for i in start..labels.len() {
        if i == start || labels[i].0 != labels[kept - 1].0 {
            labels.swap(kept, i);
            kept += 1;
        }
    }
    labels.truncate(kept);
    (start as u32, kept as u32)
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
        write_text(1, label.0, out);
        write_text(2, label.1, out);
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

fn write_text(tag: u32, text: &[u8], out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(text.len() as u64, out);
    out.extend_from_slice(text);
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

    /// The request for `lines`, read as a 1.0 module's output is.
    fn decode(lines: &str, extra: &[(String, String)]) -> (WriteRequest, Counts) {
        let mut samples = SampleSet::default();
        crate::transform::read_import_lines(lines.as_bytes(), &mut samples).unwrap();
        let mut out = Vec::new();
        let counts = write_request(&samples, extra, &mut out);
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
            }
        );
        assert_eq!(req.timeseries[0].samples[0].value, 3.0);
    }

    #[test]
    fn an_empty_batch_is_an_empty_request() {
        let (req, counts) = decode("", &[]);
        assert!(req.timeseries.is_empty());
        assert_eq!(counts, Counts::default());
    }
}
