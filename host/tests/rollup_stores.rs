//! `ROLLUP=sum` is exact by default on every store the README names, with
//! deduplication on: Debian bookworm's VictoriaMetrics 1.79.5 (which keeps
//! an arbitrary one of a series' equal-timestamp samples), a current
//! VictoriaMetrics (1.112, which keeps the largest) and Prometheus (which
//! keeps the first and refuses the others). The same intervals are fed in three
//! waves 5 s apart, the scenario that made interim rewrites come out wrong
//! on 1.79.5 and refused on Prometheus: each (series, timestamp) must be
//! written once, with the final sum.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use support::{free_port, parse_counter, parse_labelled, wait_for, Host, Prometheus, Series};
use support::{Broker, Version, Victoria};

const DEDUP: &str = "-dedup.minScrapeInterval=1ms";
const LONG: Duration = Duration::from_secs(120);
const AVOID: &str = "ip_src,ip_dst,port_src,port_dst,stamp_inserted,stamp_updated,packets,bytes";
const PROTOS: [&str; 3] = ["tcp", "udp", "icmp"];
const MINUTES: u64 = 4;

/// The purge of `flow` in `minute` after `base` (unix seconds, a minute's
/// start), stamped as pmacct's `timestamps_since_epoch: true` writes.
fn purge(base: u64, flow: u64, minute: u64) -> String {
    let at = base + minute * 60;
    json!({"event_type": "purge", "ip_src": format!("10.1.{}.{}", flow / 250, flow % 250),
        "ip_dst": "192.168.1.9", "port_src": 1024 + flow, "port_dst": 443,
        "ip_proto": PROTOS[(flow % 3) as usize],
        "stamp_inserted": at.to_string(), "stamp_updated": (at + flow % 60).to_string(),
        "packets": 1, "bytes": 100 + flow * 7 + minute})
    .to_string()
}

/// (protocol, interval start in ms) → bytes.
type Totals = BTreeMap<(String, i64), f64>;

fn totals(series: &[Series]) -> Totals {
    let mut t = Totals::new();
    for s in series {
        for (v, ts) in s.values.iter().zip(&s.timestamps) {
            let key = (s.labels["ip_proto"].clone(), ts - ts.rem_euclid(60_000));
            *t.entry(key).or_default() += v;
        }
    }
    t
}

/// Recent whole minutes: Prometheus refuses samples far in the past.
fn base() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    now - now % 60 - 10 * 60
}

/// Three waves of the same intervals, 5 s apart; returns what was expected.
fn feed_in_waves(broker: &Broker, topic: &str, base: u64) -> Totals {
    let mut want = Totals::new();
    for wave in 0..3 {
        let records: Vec<String> = (0..MINUTES)
            .flat_map(|m| (wave * 90..(wave + 1) * 90).map(move |f| (f, m)))
            .map(|(flow, minute)| {
                let key = (
                    PROTOS[(flow % 3) as usize].to_string(),
                    ((base + minute * 60) * 1000) as i64,
                );
                *want.entry(key).or_default() += (100 + flow * 7 + minute) as f64;
                purge(base, flow, minute)
            })
            .collect();
        broker.produce(topic, &records);
        std::thread::sleep(Duration::from_secs(5));
    }
    want
}

fn rollup_env(output: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut env: Vec<(&'static str, String)> = [
        ("ROLLUP", "sum"),
        ("ROLLUP_STEP", "60s"),
        ("ROLLUP_LATENESS", "1h"),
        // Longer than the waves' gaps: one write per interval, once quiet.
        ("ROLLUP_IDLE_AFTER", "8s"),
        ("VM_AVOID_LABELS", AVOID),
        ("KAFKA_DLQ_TOPIC", "waves-dlq"),
    ]
    .iter()
    .map(|&(k, v)| (k, v.to_string()))
    .collect();
    env.extend_from_slice(output);
    env
}

fn start_host(
    dir: &std::path::Path,
    broker: &Broker,
    vm: Option<&Victoria>,
    env: &[(&'static str, String)],
) -> Host {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    match vm {
        Some(vm) => Host::start(dir, broker, vm, "waves", &env),
        None => Host::start_without_vm(dir, broker, "waves", &env),
    }
}

/// Every cell written once (no rewrite, no refusal) and the totals exact.
fn check(host: &Host, stored: Totals, want: &Totals) {
    assert_eq!(&stored, want);
    let m = host.metrics();
    let cells = (PROTOS.len() as u64 * MINUTES) as f64;
    assert_eq!(parse_counter(&m, "samples_written_total"), cells);
    assert_eq!(parse_counter(&m, "rollup_cells_written_total"), cells);
    assert_eq!(parse_counter(&m, "record_errors_total"), 0.0);
    assert_eq!(
        parse_labelled(&m, "send_failures_total", "kind", "status"),
        0.0
    );
}

fn exact_on_victoriametrics(version: Version) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    broker.create_topic("waves", 1);
    let vm = Victoria::start_version(dir.path(), free_port(), &[DEDUP], version);
    let host = start_host(dir.path(), &broker, Some(&vm), &rollup_env(&[]));
    let want = feed_in_waves(&broker, "waves", base());
    wait_for("exact totals", LONG, || {
        let series = vm.export(r#"{__name__="bytes"}"#);
        (totals(&series) == want).then_some(series)
    });
    check(&host, totals(&vm.export(r#"{__name__="bytes"}"#)), &want);
}

#[test]
fn exact_on_debian_bookworms_victoriametrics_1_79() {
    exact_on_victoriametrics(Version::V1_79);
}

#[test]
fn exact_on_current_victoriametrics() {
    exact_on_victoriametrics(Version::Current);
}

#[test]
fn exact_on_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    broker.create_topic("waves", 1);
    // The window only lets the recent test timestamps in; no rewrite needs it.
    let prom = Prometheus::start(dir.path(), Some("1h"));
    let env = rollup_env(&[
        ("OUTPUT", "remote-write".to_string()),
        ("REMOTE_WRITE_URL", prom.write_url()),
        ("VM_DURABLE_AFTER", "0".to_string()),
    ]);
    let host = start_host(dir.path(), &broker, None, &env);
    let want = feed_in_waves(&broker, "waves", base());
    wait_for("exact totals", LONG, || {
        let series = prom.samples(r#"{__name__="bytes"}"#, "1h");
        (totals(&series) == want).then_some(())
    });
    check(
        &host,
        totals(&prom.samples(r#"{__name__="bytes"}"#, "1h")),
        &want,
    );
}
