//! The outputs beyond the plain import, against real receivers: gzip
//! imports into VictoriaMetrics, and remote write into Prometheus (Debian's
//! package) and into VictoriaMetrics' `/api/v1/write`. Each checks the
//! exact samples that arrive and the counters a user would look at.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use support::{parse_counter, parse_labelled, wait_for, Broker, Host, Prometheus, Series, Stack};

const ARRIVAL: Duration = Duration::from_secs(90);

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// One series per record (`seq`), value `seq + 1`, at `stamp` (seconds).
fn records(run: &str, seqs: std::ops::Range<u64>, stamp: u64) -> Vec<String> {
    seqs.map(|i| json!({"seq": i, "run": run, "stamp_updated": stamp, "bytes": i + 1}).to_string())
        .collect()
}

/// The samples as (seq, value, timestamp), checking the labels every
/// sample must carry.
fn by_seq(series: &[Series], extra: &[(&str, &str)]) -> BTreeMap<u64, (f64, i64)> {
    let mut out = BTreeMap::new();
    for s in series {
        assert_eq!(s.labels["__name__"], "bytes", "{:?}", s.labels);
        assert_eq!(s.labels["job"], "pmacct", "{:?}", s.labels);
        assert_eq!(s.labels["instance"], "probe-1", "{:?}", s.labels);
        for (k, v) in extra {
            assert_eq!(
                s.labels.get(*k).map(String::as_str),
                Some(*v),
                "{:?}",
                s.labels
            );
        }
        assert!(!s.labels.contains_key("stamp_updated"), "{:?}", s.labels);
        let seq: u64 = s.labels["seq"].parse().expect("seq");
        for (v, t) in s.values.iter().zip(&s.timestamps) {
            assert!(out.insert(seq, (*v, *t)).is_none(), "seq {seq} twice");
        }
    }
    out
}

/// The host writing through remote write to `url`, with `env` besides.
fn remote_write_host(
    dir: &std::path::Path,
    broker: &Broker,
    url: &str,
    env: &[(&str, &str)],
) -> Host {
    let mut all = vec![("OUTPUT", "remote-write"), ("REMOTE_WRITE_URL", url)];
    all.extend_from_slice(env);
    Host::start_without_vm(dir, broker, "flows", &all)
}

fn expect_exact(got: &BTreeMap<u64, (f64, i64)>, seqs: std::ops::Range<u64>, stamp: u64) {
    let want: BTreeMap<u64, (f64, i64)> = seqs
        .map(|i| (i, ((i + 1) as f64, stamp as i64 * 1000)))
        .collect();
    assert_eq!(*got, want);
}

#[test]
fn gzip_and_plain_imports_arrive_exactly_in_victoriametrics() {
    let Stack { dir, broker, vm } = Stack::start();
    let stamp = now_s() - 600;
    let mut bytes = BTreeMap::new();
    for compression in ["gzip", "none"] {
        let topic = format!("flows-{compression}");
        broker.produce(&topic, &records(compression, 0..2000, stamp));
        let env = [
            ("VM_COMPRESSION", compression),
            ("VM_MAX_SAMPLES_PER_SEND", "500"),
        ];
        let host = Host::start(dir.path(), &broker, &vm, &topic, &env);
        let selector = format!(r#"{{run="{compression}"}}"#);
        let got = vm.wait_samples(&selector, 2000, ARRIVAL);
        expect_exact(&by_seq(&got, &[]), 0..2000, stamp);
        let metrics = host.metrics();
        assert_eq!(parse_counter(&metrics, "samples_written_total"), 2000.0);
        let sent = parse_counter(&metrics, "import_body_bytes_total");
        let raw = parse_counter(&metrics, "import_body_raw_bytes_total");
        eprintln!("VM_COMPRESSION={compression}: {sent} bytes sent for {raw} bytes of import lines, {:.1} bytes/sample", sent / 2000.0);
        bytes.insert(compression, (sent, raw));
    }
    let (gz_sent, gz_raw) = bytes["gzip"];
    let (plain_sent, plain_raw) = bytes["none"];
    assert_eq!(plain_sent, plain_raw, "uncompressed bodies go as they are");
    assert!(gz_sent * 5.0 < gz_raw, "gzip: {gz_sent} sent of {gz_raw}");
}

#[test]
fn remote_write_into_prometheus_arrives_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let prom = Prometheus::start(dir.path(), Some("1d"));
    let stamp = now_s() - 120;
    broker.produce("flows", &records("rw", 0..1500, stamp));
    let host = remote_write_host(
        dir.path(),
        &broker,
        &prom.write_url(),
        &[
            ("VM_EXTRA_LABELS", "site=lab,job=flows"),
            ("VM_MAX_SAMPLES_PER_SEND", "400"),
        ],
    );
    let got = prom.wait_samples(r#"{run="rw"}"#, "1h", 1500, ARRIVAL);
    // An extra label replaces the transform's label of the same name.
    let mut extra_job = got.clone();
    for s in &mut extra_job {
        assert_eq!(
            s.labels.insert("job".into(), "pmacct".into()).as_deref(),
            Some("flows")
        );
    }
    expect_exact(&by_seq(&extra_job, &[("site", "lab")]), 0..1500, stamp);
    let metrics = host.metrics();
    assert_eq!(parse_counter(&metrics, "samples_written_total"), 1500.0);
    assert_eq!(parse_counter(&metrics, "record_errors_total"), 0.0);
    let sent = parse_counter(&metrics, "import_body_bytes_total");
    let raw = parse_counter(&metrics, "import_body_raw_bytes_total");
    eprintln!(
        "remote write: {sent} bytes sent for {raw} bytes of import lines, {:.1} bytes/sample",
        sent / 1500.0
    );
    assert!(sent * 4.0 < raw, "snappy protobuf: {sent} sent of {raw}");
}

#[test]
fn remote_write_into_victoriametrics_arrives_exactly() {
    let Stack { dir, broker, vm } = Stack::start();
    let stamp = now_s() - 3600;
    broker.produce("flows", &records("vmrw", 0..1200, stamp));
    let url = format!("{}/api/v1/write", vm.url);
    let host = remote_write_host(
        dir.path(),
        &broker,
        &url,
        &[("VM_EXTRA_LABELS", "site=lab")],
    );
    let got = vm.wait_samples(r#"{run="vmrw"}"#, 1200, ARRIVAL);
    expect_exact(&by_seq(&got, &[("site", "lab")]), 0..1200, stamp);
    assert_eq!(host.counter("samples_written_total"), 1200.0);
}

/// Prometheus without an out-of-order window refuses a sample older than
/// its series' last with 400 "out of order sample". The refused batch is
/// counted and dead-lettered under `out_of_order`, and what comes after it
/// still arrives.
#[test]
fn an_out_of_order_refusal_is_dead_lettered_and_the_pipeline_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let prom = Prometheus::start(dir.path(), None);
    let now = now_s();
    broker.produce("flows", &records("ooo", 0..10, now - 60));
    let host = remote_write_host(
        dir.path(),
        &broker,
        &prom.write_url(),
        &[("KAFKA_DLQ_TOPIC", "flows-dlq")],
    );
    prom.wait_samples(r#"{run="ooo"}"#, "1h", 10, ARRIVAL);
    // Older samples of the same series, and with them, likely in the same
    // request, five new series that on their own would be taken.
    let mut late = records("ooo", 0..10, now - 600);
    late.extend(records("beside", 100..105, now - 20));
    broker.produce("flows", &late);
    let refused = wait_for("the out_of_order rejections", ARRIVAL, || {
        let m = host.metrics();
        let n = parse_labelled(&m, "record_errors_total", "reason", "out_of_order");
        (n >= 10.0).then_some(n as usize)
    });
    broker.produce("flows", &records("ooo", 0..10, now - 30));
    let got = prom.wait_samples(r#"{run="ooo"}"#, "1h", 20, ARRIVAL);
    assert_eq!(got.len(), 10);
    let stamps: Vec<i64> = got[0].timestamps.clone();
    assert_eq!(stamps, [(now as i64 - 60) * 1000, (now as i64 - 30) * 1000]);
    let letters = broker.read_all("flows-dlq", refused, ARRIVAL);
    assert_eq!(letters.len(), refused);
    let mut lettered_beside = Vec::new();
    for (payload, headers) in &letters {
        assert_eq!(headers["x-reason"], "out_of_order", "{headers:?}");
        assert!(headers["x-detail"].contains("out of order"), "{headers:?}");
        let record: serde_json::Value = serde_json::from_slice(payload).expect("the record");
        match record["run"].as_str() {
            Some("ooo") => assert_eq!(record["stamp_updated"], now - 600),
            _ => lettered_beside.push(record["seq"].as_u64().expect("seq")),
        }
    }
    // Prometheus refuses a request whole: each new series is either stored
    // (its request was another one) or dead-lettered with the refused
    // ones, never both, never neither.
    let stored: Vec<u64> = by_seq(&prom.samples(r#"{run="beside"}"#, "1h"), &[])
        .into_keys()
        .collect();
    let mut all: Vec<u64> = stored.iter().chain(&lettered_beside).copied().collect();
    all.sort();
    assert_eq!(
        all,
        (100..105).collect::<Vec<_>>(),
        "stored {stored:?}, dead-lettered {lettered_beside:?}"
    );
    assert_eq!(
        host.counter("samples_written_total"),
        20.0 + stored.len() as f64
    );
    // The refused records are dealt with: committed once the accepted
    // batches around them are past VM_DURABLE_AFTER.
    wait_for("every record committable", ARRIVAL, || {
        (host.counter("kafka_uncommitted_records") == 0.0).then_some(())
    });
}

#[test]
fn prometheus_stopped_mid_stream_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let mut prom = Prometheus::start(dir.path(), Some("1d"));
    let stamp = now_s() - 300;
    broker.produce("flows", &records("a", 0..1000, stamp));
    let host = remote_write_host(
        dir.path(),
        &broker,
        &prom.write_url(),
        &[("VM_MAX_SAMPLES_PER_SEND", "200")],
    );
    prom.wait_samples(r#"{run="a"}"#, "1h", 1000, ARRIVAL);
    prom.stop();
    broker.produce("flows", &records("b", 1000..3000, stamp));
    wait_for("a failed send while Prometheus is down", ARRIVAL, || {
        let m = host.metrics();
        (parse_labelled(&m, "send_failures_total", "kind", "connect") >= 1.0).then_some(())
    });
    prom.restart();
    let b = prom.wait_samples(r#"{run="b"}"#, "1h", 2000, ARRIVAL);
    expect_exact(&by_seq(&b, &[]), 1000..3000, stamp);
    let a = prom.samples(r#"{run="a"}"#, "1h");
    expect_exact(&by_seq(&a, &[]), 0..1000, stamp);
    assert_eq!(host.counter("record_errors_total"), 0.0);
}
