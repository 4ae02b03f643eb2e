//! Bytes and packets as Prometheus counters.
//!
//! pmacct writes deltas: each record holds what a flow did since the last
//! purge. Dashboards built on `rate()`/`increase()` want cumulative counters,
//! so this transform keeps a running total per flow and writes
//! `pmacct_bytes_total` and `pmacct_packets_total`.
//!
//! Totals live in the module instance: a reload or restart starts them from
//! zero again, which PromQL's `rate()`/`increase()` treat as a counter reset.
//!
//! Configuration: `key_fields` (default `ip_src,ip_dst,port_src,port_dst,ip_proto`),
//! `max_flows` (default 100000; records of further new flows are rejected
//! with `too_many_flows`), plus the host's `job` and `instance`.

use std::collections::HashMap;

use pmacct_guest_sdk::{export_transform, Config, Record, RecordError, Samples, Transform};

pub struct Counters {
    key_fields: Vec<String>,
    job: String,
    instance: String,
    max_flows: usize,
    totals: HashMap<Vec<String>, (f64, f64)>,
}

impl Transform for Counters {
    fn init(c: &Config) -> Result<Self, String> {
        let mut key_fields: Vec<String> =
            c.list("key_fields").into_iter().map(String::from).collect();
        if key_fields.is_empty() {
            key_fields = ["ip_src", "ip_dst", "port_src", "port_dst", "ip_proto"]
                .map(String::from)
                .to_vec();
        }
        let max_flows = match c.get("max_flows") {
            Some(v) => v
                .parse()
                .map_err(|_| format!("max_flows: {v:?} is not a number"))?,
            None => 100_000,
        };
        Ok(Counters {
            key_fields,
            job: c.job().into(),
            instance: c.instance().into(),
            max_flows,
            totals: HashMap::new(),
        })
    }

    fn transform(&mut self, r: &Record<'_>, out: &mut Samples<'_>) -> Result<(), RecordError> {
        let ts = r.timestamp_ms("stamp_updated")?;
        let (bytes, packets) = (r.number("bytes")?, r.number("packets")?);
        let key: Vec<String> = self
            .key_fields
            .iter()
            .map(|f| r.get(f).map_or(String::new(), |v| v.as_label().to_string()))
            .collect();
        if !self.totals.contains_key(&key) && self.totals.len() >= self.max_flows {
            return Err(RecordError::new(
                "too_many_flows",
                format!("more than {} flows", self.max_flows),
            ));
        }
        let (b, p) = self.totals.entry(key.clone()).or_default();
        *b += bytes;
        *p += packets;
        let (b, p) = (*b, *p);
        for (name, value) in [("pmacct_bytes_total", b), ("pmacct_packets_total", p)] {
            let mut s = out
                .sample(name)
                .label("job", &self.job)
                .label("instance", &self.instance);
            for (field, v) in self.key_fields.iter().zip(&key) {
                s = s.label(field, v);
            }
            s.finish(value, ts);
        }
        Ok(())
    }
}

export_transform!(Counters);

#[cfg(test)]
mod tests {
    use super::*;
    use pmacct_guest_sdk::run_records;

    #[test]
    fn totals_accumulate_per_flow() {
        let mut t = Counters::init(&Config::new(vec![("job".into(), "j".into())])).unwrap();
        let recs = [
            r#"{"ip_src":"10.0.0.1","ip_dst":"10.0.0.2","port_src":1,"port_dst":2,"ip_proto":"tcp","stamp_updated":"2026-11-25 10:01:00","packets":1,"bytes":100}"#,
            r#"{"ip_src":"10.0.0.1","ip_dst":"10.0.0.2","port_src":1,"port_dst":2,"ip_proto":"tcp","stamp_updated":"2026-11-25 10:02:00","packets":2,"bytes":50}"#,
        ];
        let out = run_records(&mut t, &recs);
        let text = out.import_lines();
        let bytes: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("pmacct_bytes_total"))
            .collect();
        assert!(bytes[0].contains(r#""values":[100]"#), "{text}");
        assert!(bytes[1].contains(r#""values":[150]"#), "{text}");
        assert!(text.contains(r#""values":[3]"#));
    }
}
