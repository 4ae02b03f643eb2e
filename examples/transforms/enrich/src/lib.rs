//! Enrichment from a table the host serves: the customer (or ASN, country,
//! site, ...) of each address, found by the host's longest-prefix match.
//!
//! The operator declares the table, for example
//! `ENRICH_TABLES="customers=csv:/etc/pmacct/customers.csv"` (a header row
//! `prefix,customer`, then a prefix and its customer a row; or a MaxMind
//! DB). The host loads it, reloads it when the file changes, and answers
//! `lookup` calls from the module; the module has no filesystem.
//!
//! Configuration (`TRANSFORM_CONFIG`): `table` (default `customers`),
//! `field`, the column or MaxMind DB path to read (default `customer`),
//! `default`, the label of addresses in no prefix (default `unknown`).
//!
//! Writes one sample per metric field (default `bytes`) labelled `job`,
//! `instance`, `src_customer`, `dst_customer`, `ip_proto`. Many flows share
//! such a series and a timestamp: run the host with `ROLLUP=sum` so their
//! sum is written (see the README's Roll-up section). (`ENRICH_LABELS`
//! adds such labels to the default rules without a module; this example
//! shows a module doing it, choosing its own labels and default.)

use pmacct_guest_sdk::{export_transform, lookup, Config, Record, RecordError, Samples, Transform};

pub struct Enrich {
    table: String,
    field: String,
    default: String,
    metrics: Vec<String>,
    job: String,
    instance: String,
}

impl Transform for Enrich {
    fn init(c: &Config) -> Result<Self, String> {
        Ok(Enrich {
            table: c.get("table").unwrap_or("customers").into(),
            field: c.get("field").unwrap_or("customer").into(),
            default: c.get("default").unwrap_or("unknown").into(),
            metrics: c.metric_fields(),
            job: c.job().into(),
            instance: c.instance().into(),
        })
    }

    fn transform(&mut self, r: &Record<'_>, out: &mut Samples<'_>) -> Result<(), RecordError> {
        let ts = r.timestamp_ms("stamp_updated")?;
        let src = self.customer(r, "ip_src")?;
        let dst = self.customer(r, "ip_dst")?;
        let proto = r.get("ip_proto").map_or("", |v| v.as_label());
        for metric in &self.metrics {
            out.sample(metric)
                .label("job", &self.job)
                .label("instance", &self.instance)
                .label("src_customer", src.as_deref().unwrap_or(&self.default))
                .label("dst_customer", dst.as_deref().unwrap_or(&self.default))
                .label("ip_proto", proto)
                .finish(r.number_text(metric)?, ts);
        }
        Ok(())
    }
}

impl Enrich {
    /// The customer of the address in `field`; `None` when the table has
    /// none for it.
    fn customer(&self, r: &Record<'_>, field: &str) -> Result<Option<String>, RecordError> {
        let text = r.str(field)?;
        if text.parse::<std::net::IpAddr>().is_err() {
            return Err(RecordError::new(
                "invalid_address",
                format!("{field} = {text:?}"),
            ));
        }
        Ok(lookup(&self.table, text, &self.field))
    }
}

export_transform!(Enrich);

#[cfg(test)]
mod tests {
    use super::*;
    use pmacct_guest_sdk::run_records;

    /// Natively there are no tables: every address gets the default, and a
    /// record without an address is rejected. The host's test
    /// (host/tests/transforms.rs) runs the module against a served table.
    #[test]
    fn without_a_table_every_address_is_the_default() {
        let c = Config::new(vec![("default".into(), "nobody".into())]);
        let mut t = Enrich::init(&c).unwrap();
        let rec = r#"{"ip_src":"10.1.2.3","ip_dst":"2001:db8::9","stamp_updated":"2026-11-25 10:01:02","bytes":1}"#;
        let bad = r#"{"ip_src":"nope","ip_dst":"8.8.8.8","stamp_updated":"2026-11-25 10:01:02","bytes":1}"#;
        let out = run_records(&mut t, &[rec, bad]);
        let text = out.import_lines();
        assert!(
            text.contains(r#""src_customer":"nobody","dst_customer":"nobody""#),
            "{text}"
        );
        assert_eq!(out.errors.len(), 1);
        assert_eq!(&*out.errors[0].error.reason, "invalid_address");
    }
}
