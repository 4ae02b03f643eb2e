//! Cardinality reduction: subnets instead of host addresses, ports dropped
//! or bucketed, so a busy network makes hundreds of series, not millions.
//!
//! Writes one sample per metric field (the host's `metric_fields`, default
//! `bytes`) labelled `job`, `instance`, `src_net`, `dst_net`, `ip_proto` and,
//! unless `ports=drop`, `src_port`/`dst_port`: the port itself when below
//! 1024 (well-known), `other` above (`ports=bucket`, the default).
//! Configuration: `prefix_v4` (default 24), `prefix_v6` (default 64), `ports`.
//!
//! Many flows now share a series and a timestamp. Run the host with
//! `ROLLUP=sum` so it writes their sum: without it VictoriaMetrics keeps
//! each colliding sample (and counts replays twice), and with
//! `-dedup.minScrapeInterval` on it would keep only one of them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pmacct_guest_sdk::{export_transform, Config, Record, RecordError, Samples, Transform};
use serde::Deserialize;

#[derive(Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Ports {
    Drop,
    Bucket,
}

/// What `TRANSFORM_CONFIG` may set, read by `Config::parse`.
#[derive(Deserialize)]
#[serde(default)]
struct Settings {
    prefix_v4: u8,
    prefix_v6: u8,
    ports: Ports,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            prefix_v4: 24,
            prefix_v6: 64,
            ports: Ports::Bucket,
        }
    }
}

pub struct Subnets {
    metrics: Vec<String>,
    job: String,
    instance: String,
    v4: u8,
    v6: u8,
    ports: Ports,
}

fn at_most(key: &str, v: u8, max: u8) -> Result<u8, String> {
    match v <= max {
        true => Ok(v),
        false => Err(format!("{key}: {v} is not 0..={max}")),
    }
}

impl Transform for Subnets {
    fn init(c: &Config) -> Result<Self, String> {
        let s: Settings = c.parse()?;
        Ok(Subnets {
            metrics: c.metric_fields(),
            job: c.job().into(),
            instance: c.instance().into(),
            v4: at_most("prefix_v4", s.prefix_v4, 32)?,
            v6: at_most("prefix_v6", s.prefix_v6, 128)?,
            ports: s.ports,
        })
    }

    fn transform(&mut self, r: &Record<'_>, out: &mut Samples<'_>) -> Result<(), RecordError> {
        let ts = r.timestamp_ms("stamp_updated")?;
        let src = self.network(r, "ip_src")?;
        let dst = self.network(r, "ip_dst")?;
        let proto = r.get("ip_proto").map_or("", |v| v.as_label());
        for metric in &self.metrics {
            let value = r.number_text(metric)?;
            let mut s = out
                .sample(metric)
                .label("job", &self.job)
                .label("instance", &self.instance)
                .label("src_net", &src)
                .label("dst_net", &dst)
                .label("ip_proto", proto);
            if self.ports == Ports::Bucket {
                s = s
                    .label("src_port", &bucket(r, "port_src"))
                    .label("dst_port", &bucket(r, "port_dst"));
            }
            s.finish(value, ts);
        }
        Ok(())
    }
}

impl Subnets {
    fn network(&self, r: &Record<'_>, field: &str) -> Result<String, RecordError> {
        let text = r.str(field)?;
        let ip: IpAddr = text
            .parse()
            .map_err(|_| RecordError::new("invalid_address", format!("{field} = {text:?}")))?;
        Ok(match ip {
            IpAddr::V4(a) => {
                let bits = u32::from(a) & mask32(self.v4);
                format!("{}/{}", Ipv4Addr::from(bits), self.v4)
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a) & mask128(self.v6);
                format!("{}/{}", Ipv6Addr::from(bits), self.v6)
            }
        })
    }
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

fn bucket(r: &Record<'_>, field: &str) -> String {
    match r.get(field).and_then(|v| v.as_f64()) {
        Some(p) if p < 1024.0 => format!("{p}"),
        Some(_) => "other".into(),
        None => String::new(),
    }
}

export_transform!(Subnets);

#[cfg(test)]
mod tests {
    use super::*;
    use pmacct_guest_sdk::run_records;

    fn run(cfg: &[(&str, &str)], rec: &str) -> String {
        let c = Config::new(
            cfg.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let mut t = Subnets::init(&c).unwrap();
        let out = run_records(&mut t, &[rec]);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        out.import_lines()
    }

    const REC: &str = r#"{"ip_src":"10.1.2.3","ip_dst":"2001:db8::1","port_src":443,"port_dst":51000,"ip_proto":"tcp","stamp_updated":"2026-11-25 10:01:02","bytes":9000}"#;

    #[test]
    fn subnets_and_buckets() {
        let line = run(&[], REC);
        assert!(
            line.contains(r#""src_net":"10.1.2.0/24","dst_net":"2001:db8::/64""#),
            "{line}"
        );
        assert!(
            line.contains(r#""src_port":"443","dst_port":"other""#),
            "{line}"
        );
        let dropped = run(&[("ports", "drop"), ("prefix_v4", "16")], REC);
        assert!(
            dropped.contains("10.1.0.0/16") && !dropped.contains("port"),
            "{dropped}"
        );
        let all = run(&[("prefix_v4", "0")], REC);
        assert!(all.contains("0.0.0.0/0"), "{all}");
    }

    /// Settings are typed: a bad one fails init with its key named.
    #[test]
    fn bad_settings_name_their_key() {
        let init = |k: &str, v: &str| {
            Subnets::init(&Config::new(vec![(k.into(), v.into())]))
                .err()
                .unwrap_or_default()
        };
        assert!(init("prefix_v4", "33").contains("prefix_v4"));
        assert!(init("prefix_v4", "x").contains("prefix_v4"));
        assert!(init("prefix_v6", "129").contains("prefix_v6"));
        assert!(init("ports", "some").contains("ports"));
        assert_eq!(init("unrelated", "x"), "");
    }
}
