//! The batch loop every transform shares: split the batch buffer into records,
//! parse each once, call the author's function, and keep a record's samples
//! only if it succeeded.

use crate::record::Record;
use crate::sample::Samples;
use crate::{RecordError, StampZone, Transform};

/// A rejected record and where it stood in the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedError {
    pub index: u32,
    pub error: RecordError,
}

/// What one batch became.
#[derive(Debug, Default)]
pub struct BatchOutput {
    /// Import lines, ready to send.
    pub body: Vec<u8>,
    pub samples: u32,
    pub errors: Vec<IndexedError>,
}

impl BatchOutput {
    pub fn clear(&mut self) {
        self.body.clear();
        self.samples = 0;
        self.errors.clear();
    }
}

/// Run `t` over every record of a batch, appending to `out`. `ends[i]` is the
/// byte offset just past record `i` in `records`. Out-of-range ends reject
/// the records they describe rather than panic: the host is trusted, but the
/// SDK must not trap on a caller's mistake. Stamps without an offset are
/// read in `zone` ([`StampZone::from_config`]).
pub fn run_batch<T: Transform>(
    t: &mut T,
    zone: &StampZone,
    records: &[u8],
    ends: &[u32],
    out: &mut BatchOutput,
) {
    // One field vector for the whole batch: records borrow from `records`.
    let mut fields = Vec::with_capacity(16);
    let mut start = 0usize;
    for (index, &end) in ends.iter().enumerate() {
        let index = index as u32;
        let end = end as usize;
        let (Some(payload), Some(rest)) = (records.get(start..end), records.get(start..)) else {
            out.errors.push(IndexedError {
                index,
                error: RecordError::new("invalid_batch", "record bounds outside the batch"),
            });
            continue;
        };
        start = end;
        let record = match Record::parse_reusing(payload, rest, zone, fields) {
            Ok(r) => r,
            Err((error, f)) => {
                fields = f;
                out.errors.push(IndexedError { index, error });
                continue;
            }
        };
        let mark = out.body.len();
        let mut samples = Samples::new(&mut out.body);
        // Samples a store cannot take reject the record the transform
        // accepted.
        let result = t
            .transform(&record, &mut samples)
            .and_then(|()| samples.take_error().map_or(Ok(()), Err));
        let count = samples.count();
        match result {
            Ok(()) => out.samples += count,
            Err(error) => {
                out.body.truncate(mark);
                out.errors.push(IndexedError { index, error });
            }
        }
        fields = record.into_fields();
    }
}

/// Run `t` over a few records, as the host would: for transform authors'
/// unit tests, which run natively with plain `cargo test`. Stamps without
/// an offset are read as UTC.
pub fn run_records<T: Transform, R: AsRef<[u8]>>(t: &mut T, records: &[R]) -> BatchOutput {
    run_records_in(t, &StampZone::UTC, records)
}

/// [`run_records`] with stamps without an offset read in `zone`.
pub fn run_records_in<T: Transform, R: AsRef<[u8]>>(
    t: &mut T,
    zone: &StampZone,
    records: &[R],
) -> BatchOutput {
    let mut bytes = Vec::new();
    let mut ends = Vec::with_capacity(records.len());
    for r in records {
        bytes.extend_from_slice(r.as_ref());
        ends.push(bytes.len() as u32);
    }
    let mut out = BatchOutput::default();
    run_batch(t, zone, &bytes, &ends, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Samples};
    use serde_json::{Map, Value};

    /// Every field as a label.
    struct AllLabels;

    impl Transform for AllLabels {
        fn init(_: &Config) -> Result<Self, String> {
            Ok(AllLabels)
        }

        fn transform(&mut self, r: &Record<'_>, out: &mut Samples<'_>) -> Result<(), RecordError> {
            out.sample("m").labels_from(r, |_| false).finish(1.0, 0);
            Ok(())
        }
    }

    /// Label text is copied in 16-byte windows that may reach into the
    /// records after it in the batch, and the field vector is emptied
    /// without drops when no field owns its text. Values of every length
    /// up to 40, last in their record or not, between records whose
    /// escaped text serde_json unescapes (owned), come out as exactly
    /// their own record's fields.
    #[test]
    fn each_sample_has_its_own_records_labels() {
        let mut records = Vec::new();
        for v in 0..=40usize {
            let value: String = (0..v).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            records.push(format!(r#"{{"key":"{value}","n":{v}}}"#));
            records.push(format!(r#"{{"n": {v}, "last_{v}": "{value}"}}"#));
            records.push(format!(r#"{{"esc\u0061ped":"a\\b{value}","x":"{value}"}}"#));
        }
        let out = run_records(&mut AllLabels, &records);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let body = String::from_utf8(out.body).unwrap();
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(lines.len(), records.len());
        for (line, record) in lines.iter().zip(&records) {
            let mut want: Map<String, Value> = serde_json::from_str(record).unwrap();
            for v in want.values_mut() {
                if let Value::Number(n) = v {
                    *v = Value::String(n.to_string());
                }
            }
            want.insert("__name__".into(), Value::String("m".into()));
            let got: Value = serde_json::from_str(line).unwrap();
            assert_eq!(got["metric"], Value::Object(want), "{record}");
        }
    }
}
