//! Enrichment from a table handed in at init: the customer (or ASN name,
//! site, ...) of each address, by longest prefix match.
//!
//! Configuration: `prefixes`, lines of `prefix,name` (or `prefix=name`),
//! separated by newlines or `|`; usually a file the operator names,
//! `TRANSFORM_CONFIG="prefixes=@/etc/pmacct/customers.csv"` (the host reads
//! the file: the module itself has no filesystem). `default` names
//! addresses in no prefix (default `unknown`).
//!
//! Writes one sample per metric field (default `bytes`) labelled `job`,
//! `instance`, `src_customer`, `dst_customer`, `ip_proto`. Many flows share
//! such a series and a timestamp: run the host with `ROLLUP=sum` so their
//! sum is written (see the README's Roll-up section).

use std::net::IpAddr;

use pmacct_guest_sdk::{export_transform, Config, Record, RecordError, Samples, Transform};

struct Prefix {
    bits: u128,
    len: u8,
    v6: bool,
    name: String,
}

pub struct Enrich {
    /// Longest prefixes first, so the first match is the longest.
    table: Vec<Prefix>,
    default: String,
    metrics: Vec<String>,
    job: String,
    instance: String,
}

/// The address as 128 bits, its width, and whether it is IPv6.
fn bits_of(ip: IpAddr) -> (u128, u8, bool) {
    match ip {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32, false),
        IpAddr::V6(a) => (u128::from(a), 128, true),
    }
}

/// The top `len` bits of a `width`-bit address.
fn mask(len: u8, width: u8) -> u128 {
    let ones = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    ones >> (128 - u32::from(width))
}

fn parse_table(text: &str) -> Result<Vec<Prefix>, String> {
    let mut table = Vec::new();
    for (n, line) in text.split(['\n', '|']).enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |what: &str| format!("prefixes line {}: {what}: {line:?}", n + 1);
        let (prefix, name) = line
            .split_once([',', '='])
            .ok_or_else(|| bad("not prefix,name"))?;
        let (addr, len) = prefix.trim().split_once('/').unwrap_or((prefix.trim(), ""));
        let ip: IpAddr = addr.parse().map_err(|_| bad("bad address"))?;
        let (bits, width, v6) = bits_of(ip);
        let len = match len {
            "" => width,
            l => l
                .parse()
                .ok()
                .filter(|l| *l <= width)
                .ok_or_else(|| bad("bad length"))?,
        };
        table.push(Prefix {
            bits: bits & mask(len, width),
            len,
            v6,
            name: name.trim().to_string(),
        });
    }
    table.sort_by_key(|p| std::cmp::Reverse(p.len));
    Ok(table)
}

impl Transform for Enrich {
    fn init(c: &Config) -> Result<Self, String> {
        Ok(Enrich {
            table: parse_table(c.require("prefixes")?)?,
            default: c.get("default").unwrap_or("unknown").into(),
            metrics: c.metric_fields(),
            job: c.job().into(),
            instance: c.instance().into(),
        })
    }

    fn transform(&mut self, r: &Record<'_>, out: &mut Samples<'_>) -> Result<(), RecordError> {
        let ts = r.timestamp_ms("stamp_updated")?;
        let src = self.lookup(r, "ip_src")?;
        let dst = self.lookup(r, "ip_dst")?;
        let proto = r.get("ip_proto").map_or("", |v| v.as_label());
        for metric in &self.metrics {
            out.sample(metric)
                .label("job", &self.job)
                .label("instance", &self.instance)
                .label("src_customer", src)
                .label("dst_customer", dst)
                .label("ip_proto", proto)
                .finish(r.number_text(metric)?, ts);
        }
        Ok(())
    }
}

impl Enrich {
    fn lookup(&self, r: &Record<'_>, field: &str) -> Result<&str, RecordError> {
        let text = r.str(field)?;
        let ip: IpAddr = text
            .parse()
            .map_err(|_| RecordError::new("invalid_address", format!("{field} = {text:?}")))?;
        let (bits, width, v6) = bits_of(ip);
        Ok(self
            .table
            .iter()
            .find(|p| p.v6 == v6 && bits & mask(p.len, width) == p.bits)
            .map_or(self.default.as_str(), |p| p.name.as_str()))
    }
}

export_transform!(Enrich);

#[cfg(test)]
mod tests {
    use super::*;
    use pmacct_guest_sdk::run_records;

    #[test]
    fn longest_prefix_wins() {
        let c = Config::new(vec![(
            "prefixes".into(),
            "10.0.0.0/8,big\n10.1.0.0/16,acme\n2001:db8::/32=v6corp".into(),
        )]);
        let mut t = Enrich::init(&c).unwrap();
        let rec = r#"{"ip_src":"10.1.2.3","ip_dst":"2001:db8::9","stamp_updated":"2026-11-25 10:01:02","bytes":1}"#;
        let rec2 = r#"{"ip_src":"10.9.2.3","ip_dst":"8.8.8.8","stamp_updated":"2026-11-25 10:01:02","bytes":1}"#;
        let out = run_records(&mut t, &[rec, rec2]);
        let text = out.import_lines();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains(r#""src_customer":"acme","dst_customer":"v6corp""#),
            "{text}"
        );
        assert!(
            lines[1].contains(r#""src_customer":"big","dst_customer":"unknown""#),
            "{text}"
        );
    }

    #[test]
    fn a_bad_table_fails_init() {
        let c = Config::new(vec![("prefixes".into(), "10.0.0.0/40,x".into())]);
        assert!(Enrich::init(&c).is_err());
    }
}
