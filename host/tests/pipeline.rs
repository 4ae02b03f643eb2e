//! The whole pipeline against a real broker (Tansu) and a real
//! VictoriaMetrics, checked the way a user would: the samples that arrive,
//! the counters on /metrics, the exit codes.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::{parse_counter, parse_labelled, Broker, Host, Stack, Victoria};

const ARRIVAL: Duration = Duration::from_secs(60);

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// pmacct records as its Kafka plugin writes them: several flows, protocols,
/// both timestamp forms (`timestamps_since_epoch: false` and `true`).
fn pmacct_records() -> Vec<String> {
    vec![
        r#"{"event_type": "purge", "ip_src": "10.0.0.1", "ip_dst": "10.0.0.2", "port_src": 443, "port_dst": 51000, "ip_proto": "tcp", "stamp_inserted": "2026-11-25 10:00:00", "stamp_updated": "2026-11-25 10:01:02", "packets": 12, "bytes": 9000, "writer_id": "default_kafka/7424"}"#.into(),
        r#"{"event_type": "purge", "ip_src": "10.0.0.3", "ip_dst": "10.0.0.4", "port_src": 2222, "port_dst": 53, "ip_proto": "udp", "stamp_inserted": "2026-11-25 10:00:00", "stamp_updated": "2026-11-25 10:01:02", "packets": 5, "bytes": 1000, "writer_id": "default_kafka/7424"}"#.into(),
        r#"{"event_type": "purge", "ip_src": "192.168.1.7", "ip_dst": "10.0.0.1", "port_src": 0, "port_dst": 0, "ip_proto": "icmp", "stamp_inserted": "2026-11-25 10:05:00", "stamp_updated": "2026-11-25 10:06:30", "packets": 3, "bytes": 252, "writer_id": "default_kafka/7424"}"#.into(),
        r#"{"event_type": "purge", "ip_src": "10.0.0.5", "ip_dst": "10.0.0.6", "port_src": 80, "port_dst": 40000, "ip_proto": "tcp", "stamp_inserted": 1795600800, "stamp_updated": 1795600862, "packets": 40, "bytes": 52000, "writer_id": "default_kafka/7424"}"#.into(),
        r#"{"event_type": "purge", "ip_src": "10.0.0.7", "ip_dst": "10.0.0.8", "port_src": 123, "port_dst": 123, "ip_proto": "udp", "stamp_inserted": "1795600800.000000", "stamp_updated": "1795600921.500000", "packets": 2, "bytes": 152, "writer_id": "default_kafka/7424"}"#.into(),
    ]
}

#[test]
fn default_rules_reach_victoriametrics_exactly() {
    let s = Stack::start();
    s.broker.produce("flows", &pmacct_records());
    let mut host = s.host("flows", &[]);
    let got = s.vm.wait_samples(r#"{__name__="bytes"}"#, 5, ARRIVAL);

    let common = [
        ("__name__", "bytes"),
        ("job", "pmacct"),
        ("instance", "probe-1"),
        ("event_type", "purge"),
        ("writer_id", "default_kafka/7424"),
    ];
    let expect = |extra: &[(&str, &str)], value: f64, ts: i64| {
        let mut l = labels(&common);
        l.extend(labels(extra));
        (l, vec![value], vec![ts])
    };
    let mut expected = vec![
        expect(
            &[
                ("ip_src", "10.0.0.1"),
                ("ip_dst", "10.0.0.2"),
                ("port_src", "443"),
                ("port_dst", "51000"),
                ("ip_proto", "tcp"),
                ("stamp_inserted", "2026-11-25 10:00:00"),
                ("packets", "12"),
            ],
            9000.0,
            1_795_600_862_000,
        ),
        expect(
            &[
                ("ip_src", "10.0.0.3"),
                ("ip_dst", "10.0.0.4"),
                ("port_src", "2222"),
                ("port_dst", "53"),
                ("ip_proto", "udp"),
                ("stamp_inserted", "2026-11-25 10:00:00"),
                ("packets", "5"),
            ],
            1000.0,
            1_795_600_862_000,
        ),
        expect(
            &[
                ("ip_src", "192.168.1.7"),
                ("ip_dst", "10.0.0.1"),
                ("port_src", "0"),
                ("port_dst", "0"),
                ("ip_proto", "icmp"),
                ("stamp_inserted", "2026-11-25 10:05:00"),
                ("packets", "3"),
            ],
            252.0,
            1_795_600_862_000 + 328_000,
        ),
        expect(
            &[
                ("ip_src", "10.0.0.5"),
                ("ip_dst", "10.0.0.6"),
                ("port_src", "80"),
                ("port_dst", "40000"),
                ("ip_proto", "tcp"),
                ("stamp_inserted", "1795600800"),
                ("packets", "40"),
            ],
            52000.0,
            1_795_600_862_000,
        ),
        expect(
            &[
                ("ip_src", "10.0.0.7"),
                ("ip_dst", "10.0.0.8"),
                ("port_src", "123"),
                ("port_dst", "123"),
                ("ip_proto", "udp"),
                ("stamp_inserted", "1795600800.000000"),
                ("packets", "2"),
            ],
            152.0,
            1_795_600_921_500,
        ),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    let got: Vec<_> = got
        .into_iter()
        .map(|s| (s.labels, s.values, s.timestamps))
        .collect();
    assert_eq!(got, expected);

    let m = host.metrics();
    assert_eq!(parse_counter(&m, "samples_count_total"), 5.0, "{m}");
    assert_eq!(parse_counter(&m, "records_consumed_total"), 5.0);
    assert_eq!(parse_counter(&m, "record_errors_total"), 0.0);
    assert!(host.is_running());
}

#[test]
fn metrics_names_gives_one_sample_per_field() {
    let s = Stack::start();
    s.broker.produce("flows", &pmacct_records()[..2]);
    let _host = s.host("flows", &[("VM_METRICS_NAMES", "bytes,packets")]);
    let bytes = s.vm.wait_samples(r#"{__name__="bytes"}"#, 2, ARRIVAL);
    let packets = s.vm.wait_samples(r#"{__name__="packets"}"#, 2, ARRIVAL);
    let values = |series: &[support::Series]| -> Vec<f64> {
        series.iter().flat_map(|s| s.values.clone()).collect()
    };
    assert_eq!(values(&bytes), [9000.0, 1000.0]);
    assert_eq!(values(&packets), [12.0, 5.0]);
    for s in bytes.iter().chain(&packets) {
        // Neither metric field is a label of either sample.
        assert!(
            !s.labels.contains_key("bytes") && !s.labels.contains_key("packets"),
            "{s:?}"
        );
        assert_eq!(
            s.labels["port_src"],
            if s.values[0] > 1000.0 || s.values[0] == 12.0 {
                "443"
            } else {
                "2222"
            }
        );
    }
}

#[test]
fn a_quiet_topic_still_gets_its_tail_sent() {
    let s = Stack::start();
    let mut host = s.host(
        "quiet",
        &[
            ("VM_MAX_SAMPLES_PER_SEND", "1000"),
            ("VM_MAX_TIME_TO_SEND", "2"),
        ],
    );
    // Far fewer than a full batch, then nothing more.
    s.broker.produce("quiet", &pmacct_records()[..3]);
    s.vm.wait_samples(r#"{__name__="bytes"}"#, 3, Duration::from_secs(30));
    assert!(
        host.is_running(),
        "the tail was sent by the timer, not at exit"
    );
    assert_eq!(host.counter("batches_sent_total"), 1.0);
    assert_eq!(host.counter("samples_count_total"), 3.0);
}

#[test]
fn malformed_records_are_counted_and_the_rest_arrive() {
    let s = Stack::start();
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    let mut bad = 0;
    let mut good_bytes = 0u64;
    for i in 0..10_000u64 {
        let bytes = 100 + i;
        good_bytes += bytes;
        payloads.push(
            json!({"ip_src": "10.1.2.3", "port_src": i, "ip_proto": "tcp",
                   "stamp_updated": "2026-11-25 10:01:02", "packets": 1, "bytes": bytes})
            .to_string()
            .into_bytes(),
        );
        if i % 10 == 9 {
            let broken: &[u8] = match bad % 5 {
                0 => b"{\"ip_src\": \"10.1.2.3\", \"bytes\": ",
                1 => br#"{"ip_src": "10.1.2.3", "stamp_updated": "2026-11-25 10:01:02"}"#,
                2 => br#"{"bytes": "lots", "stamp_updated": "2026-11-25 10:01:02"}"#,
                3 => br#"["not", "an", "object"]"#,
                _ => br#"{"bytes": 5, "stamp_updated": "yesterday"}"#,
            };
            payloads.push(broken.to_vec());
            bad += 1;
        }
    }
    assert_eq!(bad, 1000);
    s.broker.produce("mixed", &payloads);
    let mut host = s.host("mixed", &[]);
    let series = s.vm.wait_samples(r#"{__name__="bytes"}"#, 10_000, ARRIVAL);
    let sum: f64 = series.iter().flat_map(|s| &s.values).sum();
    assert_eq!(sum as u64, good_bytes);

    let m = support::wait_for("all records counted", ARRIVAL, || {
        let m = host.metrics();
        (parse_counter(&m, "records_consumed_total") == 11_000.0).then_some(m)
    });
    assert_eq!(parse_counter(&m, "record_errors_total"), 1000.0, "{m}");
    for reason in [
        "invalid_json",
        "missing_field",
        "non_numeric_value",
        "not_an_object",
        "invalid_timestamp",
    ] {
        assert_eq!(
            parse_labelled(&m, "record_errors_total", "reason", reason),
            200.0,
            "{reason}\n{m}"
        );
    }
    assert_eq!(parse_counter(&m, "samples_count_total"), 10_000.0);
    assert!(host.is_running());
    let log = host.log_text();
    let lines = log
        .lines()
        .filter(|l| l.contains("record rejected"))
        .count();
    assert!(
        (5..=20).contains(&lines),
        "one line per reason (rate-limited), got {lines}:\n{log}"
    );
}

#[test]
fn a_restart_after_a_clean_stop_reads_nothing_twice() {
    let s = Stack::start();
    let first: Vec<String> = (0..500)
        .map(|i| json!({"port_src": i, "stamp_updated": "2026-11-25 10:01:02", "bytes": 1, "run": "first"}).to_string())
        .collect();
    s.broker.produce("restart", &first);
    let mut host = s.host("restart", &[("KAFKA_CONSUMER_GROUP_ID", "restart-group")]);
    s.vm.wait_samples(r#"{run="first"}"#, 500, ARRIVAL);
    let status = host.terminate(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", host.log_text());

    let second: Vec<String> = (0..300)
        .map(|i| json!({"port_src": i, "stamp_updated": "2026-11-25 10:01:02", "bytes": 1, "run": "second"}).to_string())
        .collect();
    s.broker.produce("restart", &second);
    let host = s.host("restart", &[("KAFKA_CONSUMER_GROUP_ID", "restart-group")]);
    s.vm.wait_samples(r#"{run="second"}"#, 300, ARRIVAL);
    // Anything re-read would come before the new records of its partition or
    // at once in a partition with nothing new; give it time to show.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        host.counter("records_consumed_total"),
        300.0,
        "{}",
        host.log_text()
    );
    assert_eq!(s.vm.sample_count(r#"{run="first"}"#), 500);
}

#[test]
fn a_bad_configuration_exits_2_naming_the_variable() {
    let bin = env!("CARGO_BIN_EXE_pmacct-kafka-vm");
    let dir = tempfile::tempdir().expect("temp dir");
    let base = [
        ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1"),
        ("KAFKA_TOPIC", "t"),
        ("VM_URL", "http://127.0.0.1:1"),
        ("VM_JOB", "j"),
        ("VM_INSTANCE", "i"),
    ];
    let cases: [(&str, Option<&str>); 5] = [
        ("VM_URL", None),
        ("KAFKA_TOPIC", None),
        ("VM_JOB", None),
        ("VM_SSL_VERIFY", Some("maybe")),
        ("VM_MAX_SAMPLES_PER_SEND", Some("many")),
    ];
    for (var, value) in cases {
        let mut cmd = Command::new(bin);
        cmd.current_dir(dir.path()).env_clear();
        for (k, v) in base {
            if k != var {
                cmd.env(k, v);
            }
        }
        if let Some(v) = value {
            cmd.env(var, v);
        }
        let out = cmd.output().expect("run the host");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}: {stderr}");
        assert!(stderr.contains(var), "{var} not named in: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }

    // librdkafka properties pass through, and a wrong one is named.
    let mut cmd = Command::new(bin);
    cmd.current_dir(dir.path())
        .env_clear()
        .envs(base)
        .env("KAFKA_PROPERTY_NO_SUCH_THING", "1")
        .env("PROMETHEUS_CLIENT_PORT", support::free_port().to_string());
    let out = cmd.output().expect("run the host");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("KAFKA_PROPERTY_NO_SUCH_THING"), "{stderr}");

    // A wrong import path: VictoriaMetrics answers 400 "unsupported path";
    // the host says so at start instead of retrying forever.
    let vm = Victoria::start(dir.path());
    let mut cmd = Command::new(bin);
    cmd.current_dir(dir.path())
        .env_clear()
        .envs(base)
        .env("VM_URL", &vm.url)
        .env("VM_IMPORT_PATH", "/api/v1/imprt")
        .env("PROMETHEUS_CLIENT_PORT", support::free_port().to_string());
    let out = cmd.output().expect("run the host");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("VM_IMPORT_PATH") && stderr.contains("unsupported path"),
        "{stderr}"
    );

    // A .env file in the working directory is read; the environment wins.
    std::fs::write(dir.path().join(".env"), "VM_MAX_SAMPLES_PER_SEND=zero\n").unwrap();
    let mut cmd = Command::new(bin);
    cmd.current_dir(dir.path()).env_clear().envs(base);
    let out = cmd.output().expect("run the host");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("VM_MAX_SAMPLES_PER_SEND"));
}

/// VM_SSL_VERIFY against VictoriaMetrics behind TLS with a certificate from
/// a private CA (socat terminates TLS in front of the real server): NO
/// sends, YES refuses and retries without losing the batch, YES with
/// VM_CA_FILE naming that CA sends.
#[test]
fn vm_ssl_verify_is_honoured() {
    let s = Stack::start();
    let dir = s.dir.path();
    let port = support::free_port();
    let vm_port: u16 = s.vm.url.rsplit(':').next().unwrap().parse().unwrap();
    let _tls = support::TlsProxy::start(dir, port, vm_port);
    let https = format!("https://127.0.0.1:{port}");

    s.broker.produce("tls-no", &pmacct_records()[..2]);
    s.broker.produce("tls-yes", &pmacct_records()[2..4]);
    let _trusting = Host::start(
        dir,
        &s.broker,
        &s.vm,
        "tls-no",
        &[
            ("VM_URL", &https),
            ("VM_SSL_VERIFY", "NO"),
            ("KAFKA_CONSUMER_GROUP_ID", "no"),
        ],
    );
    let verifying = Host::start(
        dir,
        &s.broker,
        &s.vm,
        "tls-yes",
        &[
            ("VM_URL", &https),
            ("VM_SSL_VERIFY", "yes"),
            ("KAFKA_CONSUMER_GROUP_ID", "yes"),
        ],
    );
    let got = s.vm.wait_samples(r#"{__name__="bytes"}"#, 2, ARRIVAL);
    assert!(got
        .iter()
        .all(|x| x.labels["ip_src"] == "10.0.0.1" || x.labels["ip_src"] == "10.0.0.3"));
    support::wait_for(
        "the verifying host to refuse the certificate",
        ARRIVAL,
        || {
            (parse_labelled(
                &verifying.metrics(),
                "send_failures_total",
                "kind",
                "connect",
            ) >= 2.0)
                .then_some(())
        },
    );
    assert_eq!(verifying.counter("samples_count_total"), 0.0);
    assert_eq!(
        verifying.counter("batches_in_flight"),
        1.0,
        "the batch is kept for retry"
    );
    assert!(
        verifying.log_text().contains("certificate"),
        "{}",
        verifying.log_text()
    );

    // YES with VM_CA_FILE naming the private CA that signed the certificate.
    s.broker.produce("tls-ca", &pmacct_records()[4..5]);
    let (ca, _, _) = support::self_signed(dir);
    let _with_ca = Host::start(
        dir,
        &s.broker,
        &s.vm,
        "tls-ca",
        &[
            ("VM_URL", &https),
            ("VM_SSL_VERIFY", "YES"),
            ("VM_CA_FILE", ca.to_str().unwrap()),
            ("KAFKA_CONSUMER_GROUP_ID", "ca"),
        ],
    );
    let got = s.vm.wait_samples(r#"{__name__="bytes"}"#, 3, ARRIVAL);
    assert!(got.iter().any(|x| x.labels["ip_src"] == "10.0.0.7"));
}

/// VictoriaMetrics unreachable while records keep coming: batches queue up,
/// the consumer pauses, nothing is committed or dropped; when it comes up,
/// every record arrives exactly once.
#[test]
fn an_unreachable_victoriametrics_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Broker::start(dir.path());
    let vm_port = support::free_port();
    let url = format!("http://127.0.0.1:{vm_port}");
    let records: Vec<String> = (0..5000)
        .map(|i| json!({"seq": i, "stamp_updated": "2026-11-25 10:01:02", "bytes": i}).to_string())
        .collect();
    broker.produce("outage", &records);
    let mut host = Host::start_without_vm(
        dir.path(),
        &broker,
        "outage",
        &[("VM_URL", &url), ("VM_MAX_SAMPLES_PER_SEND", "100")],
    );
    support::wait_for("failed sends", ARRIVAL, || {
        (parse_labelled(&host.metrics(), "send_failures_total", "kind", "connect") >= 3.0)
            .then_some(())
    });
    let m = host.metrics();
    assert_eq!(parse_counter(&m, "samples_count_total"), 0.0);
    // Batches wait for retry, and no record read is committable.
    assert!(parse_counter(&m, "batches_in_flight") >= 1.0, "{m}");
    assert_eq!(
        parse_counter(&m, "kafka_uncommitted_records"),
        parse_counter(&m, "records_consumed_total"),
        "{m}"
    );
    let health: serde_json::Value = reqwest::blocking::get(format!("{}/health", host.admin))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(health["status"], "degraded");
    assert!(
        health["samples_in_flight"].as_i64().unwrap_or(0) >= 100,
        "{health}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(host.is_running());

    let vm = Victoria::start_on(dir.path(), vm_port);
    let series = vm.wait_samples(r#"{__name__="bytes"}"#, 5000, Duration::from_secs(120));
    let sum: f64 = series.iter().flat_map(|s| &s.values).sum();
    assert_eq!(sum as u64, (0..5000u64).sum::<u64>());
    assert_eq!(host.counter("samples_count_total"), 5000.0);
    assert!(
        host.log_text().contains("fetching paused"),
        "{}",
        host.log_text()
    );
}
