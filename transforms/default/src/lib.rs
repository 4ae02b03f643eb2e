//! The original kafka2vm rules, as a transform.
//!
//! For each metric field (`metric_fields`, default `bytes`): one sample named
//! after the field, valued by it, stamped with `stamp_updated` (UTC), labelled
//! with `job`, `instance` and every other field of the record except those in
//! `avoid_labels` and the metric fields. A record missing a metric field or
//! `stamp_updated`, or with a non-numeric metric, is rejected whole.
//!
//! With `renormalize=sampling_rate` (the host's `RENORMALIZE`), pmacct's
//! counters (`bytes`, `packets`, `flows`) are multiplied by the record's
//! `sampling_rate`, as pmacct's own `*_renormalize` would have: a rate of
//! 0 (pmacct: unknown) or 1 (already renormalised), or no such field,
//! leaves them as they are.
//!
//! The same code is compiled into the host as its native transform and into
//! `default_transform.wasm`, the module the host embeds.

use pmacct_guest_sdk::{
    export_transform, Config, FieldSet, Record, RecordError, SampleHead, SampleValue, Samples,
    Transform,
};

/// The field every sample takes its timestamp from.
pub const TIMESTAMP_FIELD: &str = "stamp_updated";

/// Labels the host sets itself; a record field of the same name is skipped.
const RESERVED: [&str; 3] = ["__name__", "job", "instance"];

/// The field holding the rate a record's counters were sampled at.
pub const SAMPLING_RATE_FIELD: &str = "sampling_rate";

/// pmacct's counters: what its `*_renormalize` multiplies by the rate.
const COUNTERS: [&str; 3] = ["bytes", "packets", "flows"];

pub struct DefaultRules {
    /// Each metric field, with its sample's name, `job` and `instance`,
    /// and whether it is a counter to renormalise.
    metrics: Vec<(String, SampleHead, bool)>,
    /// Fields never written as labels: `avoid_labels` ∪ metric fields ∪ reserved.
    skip: FieldSet,
    /// `renormalize=sampling_rate`.
    renormalize: bool,
}

impl Transform for DefaultRules {
    fn init(config: &Config) -> Result<Self, String> {
        let metric_fields = config.metric_fields();
        let avoid = match config.get("avoid_labels") {
            Some(_) => config.list("avoid_labels"),
            None => vec!["bytes", "stamp_updated"],
        };
        let mut skip = FieldSet::new(avoid);
        for name in metric_fields.iter().map(String::as_str).chain(RESERVED) {
            skip.insert(name);
        }
        let (job, instance) = (config.require("job")?, config.require("instance")?);
        let renormalize = match config.get("renormalize").map(str::trim) {
            None | Some("" | "none") => false,
            Some(SAMPLING_RATE_FIELD) => true,
            Some(other) => {
                return Err(format!(
                    "renormalize: {other:?} is neither \"none\" nor \"sampling_rate\""
                ))
            }
        };
        let metrics = metric_fields
            .into_iter()
            .map(|field| {
                let head = SampleHead::new(&field)
                    .label("job", job)
                    .label("instance", instance);
                let counter = COUNTERS.contains(&field.as_str());
                (field, head, counter)
            })
            .collect();
        Ok(DefaultRules {
            metrics,
            skip,
            renormalize,
        })
    }

    fn transform(&mut self, record: &Record<'_>, out: &mut Samples<'_>) -> Result<(), RecordError> {
        let ts = record.timestamp_ms(TIMESTAMP_FIELD)?;
        let rate = match self.renormalize {
            true => sampling_rate(record)?,
            false => None,
        };
        for (field, head, counter) in &self.metrics {
            let mut value = record.number_text(field)?;
            if let (Some(rate), true) = (rate, *counter) {
                value = scaled(value, rate, field)?;
            }
            out.sample_from(head)
                .labels_from(record, |name| self.skip.contains(name))
                .finish(value, ts);
        }
        Ok(())
    }
}

/// The rate to multiply counters by: `None` without `sampling_rate`, or
/// for pmacct's 0 (unknown) and 1 (renormalised already).
fn sampling_rate(record: &Record<'_>) -> Result<Option<f64>, RecordError> {
    let Some(v) = record.get(SAMPLING_RATE_FIELD) else {
        return Ok(None);
    };
    match v.as_f64() {
        Some(r) if r == 0.0 || r == 1.0 => Ok(None),
        Some(r) if r > 1.0 && r.fract() == 0.0 => Ok(Some(r)),
        _ => Err(RecordError::new(
            "invalid_sampling_rate",
            format!(
                "field {SAMPLING_RATE_FIELD:?} = {} is not a whole number of at least 0",
                v.as_label()
            ),
        )),
    }
}

/// A counter times the rate; exact below 2^53, as the store keeps it.
fn scaled<'v>(v: SampleValue<'v>, rate: f64, field: &str) -> Result<SampleValue<'v>, RecordError> {
    let n = match v {
        SampleValue::Text(t) => t.parse::<f64>().ok(),
        SampleValue::F64(f) => Some(f),
    };
    match n.map(|n| n * rate) {
        Some(product) if product.is_finite() => Ok(SampleValue::F64(product)),
        _ => Err(RecordError::new(
            "non_numeric_value",
            format!("field {field:?} times the sampling rate is not a finite number"),
        )),
    }
}

export_transform!(DefaultRules);

#[cfg(test)]
mod tests {
    use super::*;
    use pmacct_guest_sdk::{run_records, ChunkOutput};
    use serde_json::{json, Value};

    fn config(extra: &[(&str, &str)]) -> Config {
        let mut e = vec![
            ("job".to_string(), "pmacct".to_string()),
            ("instance".to_string(), "probe-1".to_string()),
        ];
        e.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Config::new(e)
    }

    fn run(cfg: &Config, records: &[&str]) -> (Vec<Value>, ChunkOutput) {
        let out = run_records(&mut DefaultRules::init(cfg).unwrap(), records);
        let lines = out
            .import_lines()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (lines, out)
    }

    const REC: &str = r#"{"event_type": "purge", "ip_src": "10.0.0.3", "ip_dst": "10.0.0.4", "port_src": 2222, "port_dst": 53, "ip_proto": "udp", "stamp_inserted": "2025-01-01 00:00:00", "stamp_updated": "2026-11-25 19:46:40", "packets": 5, "bytes": 1000, "writer_id": "default_kafka/7424"}"#;

    #[test]
    fn original_rules_on_a_pmacct_record() {
        let (lines, out) = run(&config(&[]), &[REC]);
        assert_eq!(out.samples.len(), 1);
        assert_eq!(
            lines[0],
            json!({"metric": {"__name__": "bytes", "job": "pmacct", "instance": "probe-1",
                "event_type": "purge", "ip_src": "10.0.0.3", "ip_dst": "10.0.0.4",
                "port_src": "2222", "port_dst": "53", "ip_proto": "udp",
                "stamp_inserted": "2025-01-01 00:00:00", "packets": "5",
                "writer_id": "default_kafka/7424"},
                "values": [1000], "timestamps": [1_795_636_000_000i64]})
        );
    }

    #[test]
    fn several_metric_fields_and_epoch_timestamps() {
        let rec = r#"{"ip_src":"10.0.0.1","stamp_updated":1795600862.25,"packets":12,"bytes":9000,"tos":0}"#;
        let (lines, _) = run(
            &config(&[("metric_fields", "bytes,packets"), ("avoid_labels", "tos")]),
            &[rec],
        );
        assert_eq!(lines.len(), 2);
        let labels = json!({"job": "pmacct", "instance": "probe-1", "ip_src": "10.0.0.1",
            "stamp_updated": "1795600862.25"});
        for (line, (name, v)) in lines.iter().zip([("bytes", 9000), ("packets", 12)]) {
            let mut m = labels.clone();
            m["__name__"] = json!(name);
            assert_eq!(line["metric"], m);
            assert_eq!(line["values"], json!([v]));
            assert_eq!(line["timestamps"], json!([1_795_600_862_250i64]));
        }
    }

    #[test]
    fn bad_records_fail_alone_with_a_reason() {
        let records = [
            REC,
            "not json",
            "[1]",
            r#"{"stamp_updated":"2026-11-25 19:46:40"}"#,
            r#"{"bytes":1}"#,
            r#"{"bytes":"many","stamp_updated":"2026-11-25 19:46:40"}"#,
            r#"{"bytes":1,"stamp_updated":"yesterday"}"#,
            REC,
        ];
        let (lines, out) = run(&config(&[]), &records);
        assert_eq!(lines.len(), 2);
        let got: Vec<(u32, &str)> = out
            .errors
            .iter()
            .map(|e| (e.index, e.error.reason.as_ref()))
            .collect();
        assert_eq!(
            got,
            [
                (1, "invalid_json"),
                (2, "not_an_object"),
                (3, "missing_field"),
                (4, "missing_field"),
                (5, "non_numeric_value"),
                (6, "invalid_timestamp"),
            ]
        );
    }

    #[test]
    fn a_record_missing_its_second_metric_leaves_no_half() {
        let rec = r#"{"bytes":1,"stamp_updated":"2026-11-25 19:46:40"}"#;
        let (lines, out) = run(&config(&[("metric_fields", "bytes,packets")]), &[rec]);
        assert!(lines.is_empty());
        assert_eq!(out.errors.len(), 1);
    }

    #[test]
    fn record_fields_cannot_override_job_and_instance() {
        let rec =
            r#"{"bytes":1,"stamp_updated":"2026-11-25 19:46:40","job":"evil","__name__":"x"}"#;
        let (lines, _) = run(&config(&[]), &[rec]);
        assert_eq!(lines[0]["metric"]["job"], "pmacct");
        assert_eq!(lines[0]["metric"]["__name__"], "bytes");
    }

    /// A record key a store cannot take as a label name, or a number a
    /// float cannot hold, rejects its record alone; a key in
    /// `avoid_labels` is never a label, so it is not checked. A negative
    /// number is a number.
    #[test]
    fn bad_label_names_and_numbers_reject_their_record() {
        let stamp = r#""stamp_updated": "2026-11-25 19:46:40""#;
        let records = [
            format!(r#"{{"": "evil", {stamp}, "bytes": 1}}"#),
            format!(r#"{{"ip-src": "10.0.0.1", {stamp}, "bytes": 1}}"#),
            format!(r#"{{"__meta": "x", {stamp}, "bytes": 1}}"#),
            format!(r#"{{"9lives": "x", {stamp}, "bytes": 1}}"#),
            format!(r#"{{"a_very_long_field_name_past_16": "x", "b-c": 1, {stamp}, "bytes": 1}}"#),
            format!(r#"{{"q\"uote": "x", {stamp}, "bytes": 1}}"#),
            format!(r#"{{{stamp}, "bytes": 1e309}}"#),
            format!(r#"{{{stamp}, "bytes": -2.5E+400}}"#),
            format!(r#"{{"ok_field": "x", "avoided-key": "y", {stamp}, "bytes": -5}}"#),
            format!(r#"{{{stamp}, "bytes": 1e300}}"#),
        ];
        let cfg = config(&[("avoid_labels", "avoided-key,stamp_updated")]);
        let refs: Vec<&str> = records.iter().map(String::as_str).collect();
        let (lines, out) = run(&cfg, &refs);
        let got: Vec<(u32, &str)> = out
            .errors
            .iter()
            .map(|e| (e.index, e.error.reason.as_ref()))
            .collect();
        assert_eq!(
            got,
            [
                (0, "bad_label_name"),
                (1, "bad_label_name"),
                (2, "bad_label_name"),
                (3, "bad_label_name"),
                (4, "bad_label_name"),
                (5, "bad_label_name"),
                (6, "bad_number"),
                (7, "bad_number"),
            ]
        );
        assert!(
            out.errors[1].error.detail.contains("ip-src"),
            "{:?}",
            out.errors[1]
        );
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["values"], json!([-5]));
        assert_eq!(lines[0]["metric"]["ok_field"], "x");
        assert_eq!(lines[1]["values"], json!([1e300]));
    }

    /// nfacctd (NetFlow/IPFIX) and sfacctd (sFlow) write the same JSON with
    /// their own primitives (exporter, interfaces, ASNs, sampling rate,
    /// flow start/end): all become labels, the rules need nothing else.
    #[test]
    fn nfacctd_and_sfacctd_records() {
        let nf = r#"{"event_type": "purge", "peer_ip_src": "192.0.2.10", "iface_in": 2, "iface_out": 3, "ip_src": "198.51.100.7", "ip_dst": "203.0.113.9", "port_src": 51234, "port_dst": 443, "ip_proto": "tcp", "tos": 0, "timestamp_start": "2026-11-25 10:00:12.250000", "timestamp_end": "2026-11-25 10:04:59.000000", "stamp_inserted": "2026-11-25 10:00:00", "stamp_updated": "2026-11-25 10:05:01", "packets": 120, "bytes": 98000, "writer_id": "default_kafka/2211"}"#;
        let sf = r#"{"event_type": "purge", "peer_ip_src": "192.0.2.20", "as_src": 64500, "as_dst": 64501, "mac_src": "02:00:00:00:00:01", "vlan": 10, "ip_src": "198.51.100.8", "ip_dst": "203.0.113.10", "port_src": 53, "port_dst": 40000, "ip_proto": "udp", "sampling_rate": 1024, "stamp_inserted": "2026-11-25 10:00:00", "stamp_updated": "2026-11-25 10:05:01", "packets": 2048, "bytes": 1843200, "writer_id": "default_kafka/2212"}"#;
        let (lines, out) = run(&config(&[("metric_fields", "bytes,packets")]), &[nf, sf]);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["metric"]["peer_ip_src"], "192.0.2.10");
        assert_eq!(lines[0]["metric"]["iface_out"], "3");
        assert_eq!(
            lines[0]["metric"]["timestamp_start"],
            "2026-11-25 10:00:12.250000"
        );
        assert_eq!(lines[0]["values"], json!([98000]));
        assert_eq!(lines[1]["metric"]["__name__"], "packets");
        assert_eq!(lines[2]["metric"]["as_src"], "64500");
        assert_eq!(lines[2]["metric"]["sampling_rate"], "1024");
        assert_eq!(lines[3]["values"], json!([2048]));
        assert_eq!(lines[3]["timestamps"], json!([1_795_601_101_000i64]));
    }

    /// `renormalize=sampling_rate`: pmacct's counters times the record's
    /// rate; other metric fields, rates of 0 (unknown) and 1 (pmacct
    /// renormalised already) and records without a rate as they are; a
    /// rate that is no whole number rejects the record.
    #[test]
    fn renormalize_multiplies_counters_by_the_sampling_rate() {
        let cfg = config(&[
            ("metric_fields", "bytes,packets,flows,tos"),
            ("renormalize", "sampling_rate"),
        ]);
        let rec = |rate: &str| {
            format!(
                r#"{{"ip_src": "10.0.0.1", {rate}"stamp_updated": "2026-11-25 10:05:01", "packets": 3, "flows": 1, "bytes": 1500, "tos": 8}}"#
            )
        };
        let records = [
            rec(r#""sampling_rate": 1024, "#),
            rec(r#""sampling_rate": "10", "#),
            rec(r#""sampling_rate": 0, "#),
            rec(r#""sampling_rate": 1, "#),
            rec(""),
            rec(r#""sampling_rate": 2.5, "#),
            rec(r#""sampling_rate": -4, "#),
            rec(r#""sampling_rate": "many", "#),
        ];
        let out = run_records(&mut DefaultRules::init(&cfg).unwrap(), &records);
        let values: Vec<Value> = out
            .import_lines()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["values"][0].clone())
            .collect();
        let mut want = vec![json!(1_536_000), json!(3072), json!(1024), json!(8)];
        want.extend([json!(15_000), json!(30), json!(10), json!(8)]);
        for _ in 0..3 {
            want.extend([json!(1500), json!(3), json!(1), json!(8)]);
        }
        assert_eq!(values, want);
        let errors: Vec<_> = out
            .errors
            .iter()
            .map(|e| (e.index, e.error.reason.as_ref()))
            .collect();
        assert_eq!(
            errors,
            [
                (5, "invalid_sampling_rate"),
                (6, "invalid_sampling_rate"),
                (7, "invalid_sampling_rate")
            ]
        );
        // Off by default and with "none": the rate is only a label.
        for cfg in [config(&[]), config(&[("renormalize", "none")])] {
            let (lines, _) = run(&cfg, &[records[0].as_str()]);
            assert_eq!(lines[0]["values"], json!([1500]));
            assert_eq!(lines[0]["metric"]["sampling_rate"], "1024");
        }
        let e = DefaultRules::init(&config(&[("renormalize", "yes")]))
            .err()
            .unwrap();
        assert!(e.contains("renormalize"), "{e}");
    }

    #[test]
    fn init_requires_job_and_instance() {
        let err = DefaultRules::init(&Config::new(vec![])).err().unwrap();
        assert!(err.contains("job"), "{err}");
    }
}
