//! What arrives from Kafka, in every shape a producer may give it, against
//! the real broker and VictoriaMetrics: each compression codec Kafka
//! defines; records the client cannot decode; a rejected record too large
//! to dead-letter; pmacct's multi-value messages and purge markers; and a
//! wrong broker address, which must neither flood the log nor leave
//! readiness silent.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;
use support::{parse_counter, parse_labelled, wait_for, Broker, Host, Stack, Victoria};

const ARRIVAL: Duration = Duration::from_secs(60);

/// A flow record: `bytes` = `value`, one series per (`tag`, `seq`).
fn record(tag: &str, seq: usize, value: usize) -> String {
    format!(
        r#"{{"event_type": "purge", "tag": "{tag}", "seq": {seq}, "ip_proto": "udp", "stamp_inserted": "2026-11-25 10:00:00", "stamp_updated": "2026-11-25 10:01:02", "packets": 1, "bytes": {value}}}"#
    )
}

/// Produce through a producer of our own, with `config` on top of the
/// usual (compression, sizes), to `partition` when given; wait until the
/// broker acknowledged all.
fn produce(
    addr: &str,
    topic: &str,
    partition: Option<i32>,
    payloads: &[Vec<u8>],
    config: &[(&str, &str)],
) {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", addr).set("linger.ms", "5");
    for (k, v) in config {
        c.set(*k, *v);
    }
    let producer: BaseProducer = c.create().expect("producer");
    for p in payloads {
        let mut r = BaseRecord::<(), [u8]>::to(topic).payload(p.as_slice());
        if let Some(partition) = partition {
            r = r.partition(partition);
        }
        support::send_retrying(&producer, r);
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("all records acknowledged by the broker");
}

fn text(records: &[String]) -> Vec<Vec<u8>> {
    records.iter().map(|r| r.clone().into_bytes()).collect()
}

fn get_json(url: &str) -> (u16, Value) {
    let r = reqwest::blocking::get(url).expect("GET");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// Each `compression.codec` Kafka defines, produced by a real librdkafka
/// producer, is read: every record arrives, none is unreadable.
#[test]
fn every_compression_codec_is_read() {
    let Stack { dir, broker, vm } = Stack::start();
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    let n = 300;
    for codec in codecs {
        let records: Vec<String> = (0..n).map(|i| record(codec, i, i + 1)).collect();
        produce(
            &broker.addr,
            &format!("codec-{codec}"),
            None,
            &text(&records),
            &[("compression.codec", codec)],
        );
    }
    let host = Host::start(dir.path(), &broker, &vm, "^codec-.*", &[]);
    for codec in codecs {
        let series = vm.wait_samples(
            &format!(r#"{{__name__="bytes",tag="{codec}"}}"#),
            n,
            ARRIVAL,
        );
        let sum: f64 = series.iter().flat_map(|s| &s.values).sum();
        assert_eq!(sum, (n * (n + 1) / 2) as f64, "{codec}");
    }
    let m = host.metrics();
    assert_eq!(parse_counter(&m, "kafka_unreadable_fetches_total"), 0.0);
    assert_eq!(parse_counter(&m, "record_errors_total"), 0.0);
    assert_eq!(
        parse_counter(&m, "records_consumed_total"),
        (n * codecs.len()) as f64
    );
}

/// CRC-32C (Castagnoli), which a Kafka record batch carries.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A record batch (format v2) of one record marked gzip-compressed whose
/// data is not gzip: what a corrupt or foreign producer leaves in a topic.
fn corrupt_gzip_batch() -> Vec<u8> {
    let mut tail = Vec::new(); // attributes .. records: what the CRC covers
    tail.extend(1i16.to_be_bytes()); // attributes: gzip
    tail.extend(0i32.to_be_bytes()); // last offset delta
    tail.extend(1_795_600_000_000i64.to_be_bytes()); // base timestamp
    tail.extend(1_795_600_000_000i64.to_be_bytes()); // max timestamp
    tail.extend((-1i64).to_be_bytes()); // producer id
    tail.extend((-1i16).to_be_bytes()); // producer epoch
    tail.extend((-1i32).to_be_bytes()); // base sequence
    tail.extend(1i32.to_be_bytes()); // record count
    tail.extend(b"these bytes are not gzip data, whatever the attributes say");
    let mut batch = Vec::new();
    batch.extend(0i64.to_be_bytes()); // base offset
    batch.extend(((4 + 1 + 4 + tail.len()) as i32).to_be_bytes()); // length
    batch.extend(0i32.to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend(crc32c(&tail).to_be_bytes());
    batch.extend(tail);
    batch
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as i16).to_be_bytes());
    out.extend(s.as_bytes());
}

/// Produce `batch` as it is (no client would send it) with one Produce
/// request (version 3) on a plain socket; returns the partition's error code.
fn produce_raw(addr: &str, topic: &str, partition: i32, batch: &[u8]) -> i16 {
    let mut req = Vec::new();
    req.extend(0i16.to_be_bytes()); // Produce
    req.extend(3i16.to_be_bytes()); // version
    req.extend(7i32.to_be_bytes()); // correlation id
    put_str(&mut req, "inputs-test");
    req.extend((-1i16).to_be_bytes()); // no transactional id
    req.extend(1i16.to_be_bytes()); // acks
    req.extend(10_000i32.to_be_bytes()); // timeout
    req.extend(1i32.to_be_bytes()); // one topic
    put_str(&mut req, topic);
    req.extend(1i32.to_be_bytes()); // one partition
    req.extend(partition.to_be_bytes());
    req.extend((batch.len() as i32).to_be_bytes());
    req.extend(batch);
    let mut s = TcpStream::connect(addr).expect("connect to the broker");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&(req.len() as i32).to_be_bytes()).unwrap();
    s.write_all(&req).unwrap();
    let mut size = [0u8; 4];
    s.read_exact(&mut size).expect("a Produce response");
    let mut resp = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut resp).unwrap();
    // correlation id, 1 topic (name), 1 partition (index), then its error code.
    let name_len = i16::from_be_bytes([resp[8], resp[9]]) as usize;
    let at = 4 + 4 + 2 + name_len + 4 + 4;
    i16::from_be_bytes([resp[at], resp[at + 1]])
}

/// Records the client cannot decode are not a silent stall: counted,
/// named in /health and /health/ready, logged a few times, not per fetch;
/// the other partitions go on.
#[test]
fn undecodable_records_are_reported() {
    let Stack { dir, broker, vm } = Stack::start();
    broker.create_topic("corrupt", 2);
    assert_eq!(
        produce_raw(&broker.addr, "corrupt", 0, &corrupt_gzip_batch()),
        0
    );
    let good: Vec<String> = (0..50).map(|i| record("good", i, 1)).collect();
    produce(&broker.addr, "corrupt", Some(1), &text(&good), &[]);
    let host = Host::start(dir.path(), &broker, &vm, "corrupt", &[]);
    vm.wait_samples(r#"{__name__="bytes",tag="good"}"#, 50, ARRIVAL);
    wait_for("unreadable fetches counted", ARRIVAL, || {
        (host.counter("kafka_unreadable_fetches_total") >= 3.0).then_some(())
    });
    let (status, health) = get_json(&format!("{}/health", host.admin));
    assert_eq!(status, 200);
    assert_eq!(health["status"], "degraded", "{health}");
    let kafka = health["kafka"].as_str().unwrap_or_default();
    assert!(kafka.contains("cannot be decoded"), "{health}");
    let (status, ready) = get_json(&format!("{}/health/ready", host.admin));
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot be decoded"),
        "{ready}"
    );
    let fetches = host.counter("kafka_unreadable_fetches_total");
    let lines = host.log_text().matches("cannot decode").count();
    assert!(
        lines >= 1 && (lines as f64) < fetches,
        "{lines} lines for {fetches} fetches"
    );
}

/// A rejected record of about 1 MB, with a dead-letter topic: its dead
/// letter is too large for the producer, so it goes out cut short (headers
/// say so) instead of being retried forever; the 1 000 records behind it
/// are all stored.
#[test]
fn a_huge_rejected_record_does_not_stall_dead_letters() {
    let Stack { dir, broker, vm } = Stack::start();
    let huge = format!(r#"{{"junk": "{}"}}"#, "x".repeat(1 << 20)).into_bytes();
    produce(
        &broker.addr,
        "huge",
        Some(0),
        std::slice::from_ref(&huge),
        &[("message.max.bytes", "4000000")],
    );
    let good: Vec<String> = (0..1000).map(|i| record("after", i, 2)).collect();
    produce(&broker.addr, "huge", Some(0), &text(&good), &[]);
    let host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "huge",
        // Batches of 100: a stalled one soon holds back everything behind.
        &[
            ("KAFKA_DLQ_TOPIC", "huge-dlq"),
            ("VM_MAX_SAMPLES_PER_SEND", "100"),
        ],
    );
    vm.wait_samples(r#"{__name__="bytes",tag="after"}"#, 1000, ARRIVAL);
    let letters = broker.read_all("huge-dlq", 1, ARRIVAL);
    assert_eq!(letters.len(), 1);
    let (payload, headers) = &letters[0];
    assert_eq!(headers["x-reason"], "missing_field");
    assert_eq!(headers["x-truncated"], "true");
    assert_eq!(headers["x-original-size"], huge.len().to_string());
    assert_eq!(headers["x-source-offset"], "0");
    assert!(payload.len() < huge.len() && huge.starts_with(payload));
    wait_for("the dead letter counted", ARRIVAL, || {
        let m = host.metrics();
        (parse_counter(&m, "dead_letters_total") == 1.0).then_some(m)
    });
    let m = host.metrics();
    assert_eq!(parse_counter(&m, "dead_letters_truncated_total"), 1.0);
    assert_eq!(parse_counter(&m, "dead_letters_unsent_total"), 0.0);
    wait_for("everything committed", ARRIVAL, || {
        (host.counter("kafka_uncommitted_records") == 0.0).then_some(())
    });
}

/// pmacct's `kafka_multi_values`: 100 messages of 10 newline-separated
/// records each (the last line ended by a newline, as pmacct writes). Each
/// record is transformed, counted and dead-lettered on its own; the dead
/// letter names the message's offset and the record's line; a restart
/// reads nothing again.
#[test]
fn multi_value_messages_are_several_records() {
    let Stack { dir, broker, vm } = Stack::start();
    let mut bad = BTreeSet::new();
    let messages: Vec<Vec<u8>> = (0..100)
        .map(|m| {
            let mut msg = String::new();
            for line in 0..10 {
                let seq = m * 10 + line;
                if m % 10 == 3 && line == 7 {
                    bad.insert((m.to_string(), line.to_string()));
                    msg.push_str(&format!(r#"{{"seq": {seq}, "broken": true}}"#));
                } else {
                    msg.push_str(&record("multi", seq, seq + 1));
                }
                msg.push('\n');
            }
            msg.into_bytes()
        })
        .collect();
    produce(&broker.addr, "multi", Some(0), &messages, &[]);
    let mut host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "multi",
        &[("KAFKA_DLQ_TOPIC", "multi-dlq")],
    );
    let series = vm.wait_samples(r#"{__name__="bytes",tag="multi"}"#, 990, ARRIVAL);
    let sum: f64 = series.iter().flat_map(|s| &s.values).sum();
    let bad_sum: usize = (0..100)
        .filter(|m| m % 10 == 3)
        .map(|m| m * 10 + 7 + 1)
        .sum();
    assert_eq!(sum, (1000 * 1001 / 2 - bad_sum) as f64);
    let letters = broker.read_all("multi-dlq", 11, Duration::from_secs(20));
    let got: BTreeSet<(String, String)> = letters
        .iter()
        .map(|(payload, h)| {
            assert!(!payload.contains(&b'\n'), "one record, not the message");
            (h["x-source-offset"].clone(), h["x-record-index"].clone())
        })
        .collect();
    assert_eq!(got, bad);
    let m = host.metrics();
    assert_eq!(parse_counter(&m, "records_consumed_total"), 1000.0);
    assert_eq!(parse_counter(&m, "kafka_messages_total"), 100.0);
    assert_eq!(parse_counter(&m, "record_errors_total"), 10.0);
    assert!(host.terminate(Duration::from_secs(30)).success());
    // Committed whole: a new host reads only the message produced now.
    produce(
        &broker.addr,
        "multi",
        Some(0),
        &[format!("{}\n{}\n", record("later", 0, 5), record("later", 1, 6)).into_bytes()],
        &[],
    );
    let host = Host::start(dir.path(), &broker, &vm, "multi", &[]);
    vm.wait_samples(r#"{__name__="bytes",tag="later"}"#, 2, ARRIVAL);
    assert_eq!(host.counter("records_consumed_total"), 2.0);
    assert_eq!(vm.sample_count(r#"{__name__="bytes",tag="multi"}"#), 990);
}

/// pmacct's `kafka_markers`: purge_init and purge_close around each purge,
/// alone or inside a multi-value message. Counted by event type, never an
/// error, never a dead letter, and committed.
#[test]
fn purge_markers_are_counted_not_errors() {
    let Stack { dir, broker, vm } = Stack::start();
    let init = r#"{"event_type": "purge_init", "writer_id": "default_kafka/7424"}"#;
    let close = r#"{"event_type": "purge_close", "writer_id": "default_kafka/7424", "purged_entries": 3, "total_entries": 3, "duration": 0}"#;
    let mut messages: Vec<Vec<u8>> = Vec::new();
    for purge in 0..5 {
        messages.push(init.as_bytes().to_vec());
        for i in 0..3 {
            messages.push(record("marked", purge * 3 + i, 10).into_bytes());
        }
        messages.push(close.as_bytes().to_vec());
    }
    // And in one multi-value message: init, two records, close.
    let packed = format!(
        "{init}\n{}\n{}\n{close}\n",
        record("marked", 15, 10),
        record("marked", 16, 10)
    );
    messages.push(packed.into_bytes());
    produce(&broker.addr, "marked", Some(0), &messages, &[]);
    let host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "marked",
        &[("KAFKA_DLQ_TOPIC", "marked-dlq")],
    );
    vm.wait_samples(r#"{__name__="bytes",tag="marked"}"#, 17, ARRIVAL);
    wait_for("every offset committed", ARRIVAL, || {
        (host.counter("kafka_uncommitted_records") == 0.0).then_some(())
    });
    let m = host.metrics();
    assert_eq!(
        parse_labelled(&m, "pmacct_markers_total", "event_type", "purge_init"),
        6.0
    );
    assert_eq!(
        parse_labelled(&m, "pmacct_markers_total", "event_type", "purge_close"),
        6.0
    );
    assert_eq!(parse_counter(&m, "record_errors_total"), 0.0);
    assert_eq!(parse_counter(&m, "records_consumed_total"), 17.0);
    assert_eq!(parse_counter(&m, "dead_letters_total"), 0.0);
    assert!(broker
        .read_all("marked-dlq", 1, Duration::from_secs(8))
        .is_empty());
    assert!(!host.log_text().contains("record rejected"));
}

/// A wrong KAFKA_BOOTSTRAP_SERVERS: librdkafka's complaints go through the
/// throttle (a few lines, with how many were held back, instead of ~20 a
/// second), /health/ready says why the host is not ready, and once a broker
/// listens there the host is ready and reads.
#[test]
fn a_wrong_broker_address_neither_floods_the_log_nor_stays_silent() {
    let dir = tempfile::tempdir().unwrap();
    let vm = Victoria::start(dir.path());
    let port = support::free_port();
    let host = Host::start_at(dir.path(), &format!("127.0.0.1:{port}"), &vm, "late", &[]);
    let ready = format!("{}/health/ready", host.admin);
    let (_, body) = wait_for("not ready, with the reason", ARRIVAL, || {
        let (status, body) = get_json(&ready);
        (status == 503 && body["reason"] == "kafka: all brokers down").then_some((status, body))
    });
    assert_eq!(body["kafka"], "kafka: all brokers down");
    let before = host.log_text().lines().count();
    // The scenario is time: what the log gets over 12 s of the outage.
    std::thread::sleep(Duration::from_secs(12));
    let log = host.log_text();
    let lines = log.lines().count() - before;
    assert!(lines <= 8, "{lines} lines in 12 s:\n{log}");
    let held_back: u64 = log
        .split("held_back=")
        .skip(1)
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(
        held_back > 0,
        "the lines say how many were held back:\n{log}"
    );
    let errors = host.counter("kafka_errors_total");
    assert!(errors > lines as f64, "every error still counted: {errors}");

    let broker = Broker::start_with(dir.path(), port, &format!("localhost:{port}"), &[]);
    broker.produce("late", &[record("late", 0, 1)]);
    vm.wait_samples(r#"{__name__="bytes",tag="late"}"#, 1, ARRIVAL);
    wait_for("ready once the broker answers", ARRIVAL, || {
        (get_json(&ready).0 == 200).then_some(())
    });
}

/// Multi-value messages through `ROLLUP=sum`: the records of one message
/// feed the roll-up like any others; totals per series and minute exact
/// (VictoriaMetrics deduplicating, as the roll-up needs).
#[test]
fn multi_value_messages_roll_up_exactly() {
    let Stack { dir, broker, vm } = Stack::with_vm_args(&["-dedup.minScrapeInterval=1ms"]);
    let protos = ["tcp", "udp", "icmp"];
    let mut want: BTreeMap<(String, i64), f64> = BTreeMap::new();
    let messages: Vec<Vec<u8>> = (0..200u64)
        .map(|m| {
            let mut msg = String::new();
            for line in 0..10u64 {
                let (flow, minute) = (m * 10 + line, m / 40);
                let proto = protos[(flow % 3) as usize];
                let bytes = 100 + flow;
                msg.push_str(&format!(
                    r#"{{"event_type": "purge", "ip_src": "10.0.{}.{}", "ip_proto": "{proto}", "stamp_updated": "2026-11-25 10:{minute:02}:{:02}", "packets": 1, "bytes": {bytes}}}"#,
                    flow / 250,
                    flow % 250,
                    flow % 60
                ));
                msg.push('\n');
                let minute_ms = 1_795_600_800_000 + minute as i64 * 60_000;
                *want.entry((proto.to_string(), minute_ms)).or_default() += bytes as f64;
            }
            msg.into_bytes()
        })
        .collect();
    produce(&broker.addr, "rolled", None, &messages, &[]);
    let host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "rolled",
        &[
            ("ROLLUP", "sum"),
            ("ROLLUP_STEP", "60s"),
            // The last minutes are written once the topic is quiet this long.
            ("ROLLUP_IDLE_AFTER", "3s"),
            ("VM_AVOID_LABELS", "ip_src,stamp_updated,packets,bytes"),
        ],
    );
    let stored = || {
        let mut got: BTreeMap<(String, i64), f64> = BTreeMap::new();
        for s in vm.export(r#"{__name__="bytes"}"#) {
            for (v, ts) in s.values.iter().zip(&s.timestamps) {
                // Each partition writes its cell a millisecond apart.
                let minute = ts - ts.rem_euclid(60_000);
                *got.entry((s.labels["ip_proto"].clone(), minute))
                    .or_default() += v;
            }
        }
        got
    };
    let started = std::time::Instant::now();
    let got = loop {
        let got = stored();
        if got == want || started.elapsed() > ARRIVAL {
            break got;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(got, want, "totals per protocol and minute");
    assert_eq!(got.len(), 15);
    let m = host.metrics();
    assert_eq!(parse_counter(&m, "records_consumed_total"), 2000.0);
    assert_eq!(parse_counter(&m, "record_errors_total"), 0.0);
}
