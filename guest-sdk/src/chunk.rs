//! The loop every transform shares: split a call's chunk into records,
//! parse each once, call the author's function, and keep a record's samples
//! only if it succeeded.

use crate::record::Record;
use crate::records::{RecordBuf, Records};
use crate::sample::Samples;
use crate::{RecordError, SampleSet, StampZone, Transform};

/// A rejected record and where it stood in the chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedError {
    pub index: u32,
    pub error: RecordError,
}

/// What one call made of its chunk (the contract's `chunk-output`).
#[derive(Debug, Default)]
pub struct ChunkOutput {
    pub samples: SampleSet,
    pub errors: Vec<IndexedError>,
}

impl ChunkOutput {
    pub fn clear(&mut self) {
        self.samples.clear();
        self.errors.clear();
    }

    /// The samples as VictoriaMetrics import lines: for tests.
    pub fn import_lines(&self) -> String {
        self.samples.import_lines()
    }
}

/// Run `t` over every record of a run, appending to `out`; errors are
/// numbered from the run's [`first`](Records::first). Stamps without an
/// offset are read in `zone` ([`StampZone::from_config`]).
pub fn run_chunk<T: Transform>(
    t: &mut T,
    zone: &StampZone,
    records: Records<'_>,
    out: &mut ChunkOutput,
) {
    // One field vector for the whole chunk: records borrow from the buffer.
    let mut fields = Vec::with_capacity(16);
    for i in 0..records.len() {
        let index = records.first() + i as u32;
        let (payload, rest) = records.get_with_rest(i);
        let record = match Record::parse_reusing(payload, rest, zone, fields) {
            Ok(r) => r,
            Err((error, f)) => {
                fields = f;
                out.errors.push(IndexedError { index, error });
                continue;
            }
        };
        let mark = out.samples.mark();
        let mut samples = Samples::new(&mut out.samples);
        // Samples a store cannot take reject the record the transform
        // accepted.
        let result = t
            .transform(&record, &mut samples)
            .and_then(|()| samples.take_error().map_or(Ok(()), Err));
        if let Err(error) = result {
            out.samples.truncate(mark);
            out.errors.push(IndexedError { index, error });
        }
        fields = record.into_fields();
    }
}

/// Run `t` over a few records, as the host would: for transform authors'
/// unit tests, which run natively with plain `cargo test`. Stamps without
/// an offset are read as UTC.
pub fn run_records<T: Transform, R: AsRef<[u8]>>(t: &mut T, records: &[R]) -> ChunkOutput {
    run_records_in(t, &StampZone::UTC, records)
}

/// [`run_records`] with stamps without an offset read in `zone`.
pub fn run_records_in<T: Transform, R: AsRef<[u8]>>(
    t: &mut T,
    zone: &StampZone,
    records: &[R],
) -> ChunkOutput {
    let records: RecordBuf = records.iter().collect();
    let mut out = ChunkOutput::default();
    run_chunk(t, zone, records.all(), &mut out);
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
    /// records after it in the chunk, and the field vector is emptied
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
        let body = out.import_lines();
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
