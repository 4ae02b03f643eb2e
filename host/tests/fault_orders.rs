//! Faults in the orders the single-fault tests never tried, against the
//! real broker, VictoriaMetrics and the real binary: a store crash followed
//! by an outage longer than the durability window, a rebalance while a
//! batch is open, a status page that cannot be read, and records stamped
//! far in the future. Each test failed on the code before its fix.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{free_port, parse_labelled, wait_for, Host, Stack};

const LONG: Duration = Duration::from_secs(120);
const DEDUP: &str = "-dedup.minScrapeInterval=1ms";

fn records(tag: &str, range: std::ops::Range<u64>) -> Vec<String> {
    range
        .map(|i| {
            json!({"seq": i, "run": tag, "stamp_updated": "2026-11-25 10:01:02", "bytes": i + 1})
                .to_string()
        })
        .collect()
}

fn sum(range: std::ops::Range<u64>) -> f64 {
    range.map(|i| (i + 1) as f64).sum()
}

/// VictoriaMetrics SIGKILLed right after it answered 2xx (nothing flushed
/// yet), down for 4x VM_DURABLE_AFTER, then back on the same storage: the
/// window must not release on time alone, and the restart must make the
/// host deliver everything again.
#[test]
fn a_store_crash_then_an_outage_longer_than_the_window_loses_nothing() {
    let Stack {
        dir,
        broker,
        mut vm,
    } = Stack::with_vm_args(&[DEDUP]);
    let host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "longout",
        &[
            ("VM_DURABLE_AFTER", "5s"),
            ("VM_MAX_SAMPLES_PER_SEND", "100"),
        ],
    );
    broker.produce("longout", &records("a", 0..500));
    let started = Instant::now();
    while host.counter("samples_written_total") < 500.0 {
        assert!(started.elapsed() < LONG, "the store never accepted 500");
        std::thread::sleep(Duration::from_millis(20));
    }
    vm.kill();
    let held = host.counter("kafka_uncommitted_records");
    assert!(
        held > 0.0,
        "offsets held while VictoriaMetrics may lose them"
    );
    // The outage itself: four times the window.
    std::thread::sleep(Duration::from_secs(20));
    assert_eq!(
        host.counter("kafka_uncommitted_records"),
        held,
        "nothing may be released while the store cannot be read"
    );
    assert_eq!(host.counter("store_status_up"), 0.0);
    assert!(host.counter("store_status_failures_total") >= 10.0);
    vm.restart();
    let found = vm.wait_samples(r#"{run="a"}"#, 500, LONG);
    let total: f64 = found.iter().flat_map(|s| &s.values).sum();
    assert_eq!(total, sum(0..500));
    wait_for("a restart seen and every offset released", LONG, || {
        let m = host.metrics();
        (support::parse_counter(&m, "store_restarts_total") >= 1.0
            && support::parse_counter(&m, "kafka_uncommitted_records") == 0.0)
            .then_some(())
    });
}

/// A second consumer joins while the first has records in its open batch
/// (VM_MAX_TIME_TO_SEND=60) and another batch in the durability window:
/// the partitions it keeps are read again into the open batch, and their
/// records must stay uncommitted until that batch is sent. Then every host
/// is SIGKILLed, and a last one must still find every record.
#[test]
fn a_rebalance_while_a_batch_is_open_commits_nothing_unsent() {
    let Stack { dir, broker, vm } = Stack::with_vm_args(&[DEDUP]);
    broker.create_topic("reb", 3);
    let env = [
        ("KAFKA_CONSUMER_GROUP_ID", "reb"),
        ("VM_MAX_TIME_TO_SEND", "60"),
        ("VM_MAX_SAMPLES_PER_SEND", "90"),
        ("VM_DURABLE_AFTER", "3s"),
    ];
    let mut a = Host::start(dir.path(), &broker, &vm, "reb", &env);
    wait_for("A joined", LONG, || {
        (parse_labelled(&a.metrics(), "kafka_rebalances_total", "event", "assign") >= 1.0)
            .then_some(())
    });
    // 90 records fill one batch (sent, then in the window); 15 more, five
    // a partition, wait in the open batch.
    let full = records("full", 0..90);
    broker.produce_to("reb", 2, &full);
    wait_for("the full batch accepted", LONG, || {
        (a.counter("samples_written_total") >= 90.0).then_some(())
    });
    let open = records("open", 90..105);
    for (p, part) in open.chunks(5).enumerate() {
        broker.produce_to("reb", p as i32, part);
    }
    wait_for("the open batch filled", LONG, || {
        (a.counter("records_consumed_total") >= 105.0).then_some(())
    });
    let mut b = Host::start(dir.path(), &broker, &vm, "reb", &env);
    wait_for("the rebalance done and records read again", LONG, || {
        let m = a.metrics();
        let assigns = parse_labelled(&m, "kafka_rebalances_total", "event", "assign");
        let read = support::parse_counter(&m, "records_consumed_total");
        (assigns >= 2.0 && read > 105.0).then_some(())
    });
    // Past the window and a status read: what was accepted is released;
    // records of the open batch must stay uncommitted.
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        a.counter("kafka_uncommitted_records") > 0.0,
        "records sitting in an unsent batch were counted as committed\n{}",
        a.log_text()
    );
    let committed_wait = Instant::now();
    // librdkafka commits stored offsets every second.
    std::thread::sleep(Duration::from_secs(2));
    a.kill();
    b.kill();
    eprintln!(
        "killed both {:?} after the window",
        committed_wait.elapsed()
    );
    let c = Host::start(
        dir.path(),
        &broker,
        &vm,
        "reb",
        &[
            ("KAFKA_CONSUMER_GROUP_ID", "reb"),
            ("VM_MAX_TIME_TO_SEND", "1"),
        ],
    );
    let found = vm.wait_samples(r#"{run="open"}"#, 15, LONG);
    assert_eq!(
        found.iter().flat_map(|s| &s.values).sum::<f64>(),
        sum(90..105)
    );
    vm.wait_samples(r#"{run="full"}"#, 90, LONG);
    drop(c);
}

/// A status page that cannot be read (a wrong VM_STATUS_URL, a proxy that
/// hides it) keeps every accepted batch's offsets uncommitted, says so on
/// /metrics and in the log; one that answers 4xx at start-up is a
/// configuration error (exit 2).
#[test]
fn an_unreadable_status_page_holds_every_offset() {
    let Stack { dir, broker, vm } = Stack::with_vm_args(&[DEDUP]);
    let nowhere = format!("http://127.0.0.1:{}/metrics", free_port());
    let host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "nostatus",
        &[("VM_DURABLE_AFTER", "1s"), ("VM_STATUS_URL", &nowhere)],
    );
    broker.produce("nostatus", &records("n", 0..200));
    vm.wait_samples(r#"{run="n"}"#, 200, LONG);
    std::thread::sleep(Duration::from_secs(4));
    let m = host.metrics();
    assert_eq!(
        support::parse_counter(&m, "kafka_uncommitted_records"),
        200.0
    );
    assert_eq!(support::parse_counter(&m, "store_status_up"), 0.0);
    assert!(host.log_text().contains("cannot read the store's status"));

    let wrong = format!("{}/no-such-page", vm.url);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pmacct-kafka-vm"))
        .current_dir(dir.path())
        .env_clear()
        .envs([
            ("KAFKA_BOOTSTRAP_SERVERS", broker.addr.as_str()),
            ("KAFKA_TOPIC", "nostatus"),
            ("VM_URL", vm.url.as_str()),
            ("VM_STATUS_URL", &wrong),
            ("VM_JOB", "j"),
            ("VM_INSTANCE", "i"),
            ("PROMETHEUS_CLIENT_PORT", &free_port().to_string()),
        ])
        .output()
        .expect("run the host");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("VM_STATUS_URL"), "{stderr}");
}

/// One record stamped in 2099: rejected as `future_timestamp` (a store
/// would drop its sample, and under ROLLUP=sum it moved the partition's
/// event time to 2099 and made every later record too late), while every
/// other record arrives and every offset is committed.
#[test]
fn a_record_stamped_in_2099_is_rejected_and_poisons_nothing() {
    let Stack { dir, broker, vm } = Stack::with_vm_args(&[DEDUP]);
    let future =
        json!({"seq": 9999, "run": "f", "stamp_updated": "2099-01-01 00:00:00", "bytes": 5})
            .to_string();
    // Plain: a sample per record. Roll-up: one cell, the sum of all.
    for (topic, rollup, avoid) in [
        ("future-plain", "none", "bytes,stamp_updated"),
        ("future-rollup", "sum", "seq,stamp_updated,bytes"),
    ] {
        broker.create_topic(topic, 1);
        let mut batch = vec![future.clone()];
        batch.extend(records(topic, 0..300));
        broker.produce(topic, &batch);
        broker.produce(topic, &records(topic, 300..600));
        let host = Host::start(
            dir.path(),
            &broker,
            &vm,
            topic,
            &[
                ("ROLLUP", rollup),
                ("ROLLUP_IDLE_AFTER", "2s"),
                ("VM_AVOID_LABELS", avoid),
            ],
        );
        let selector = format!(r#"{{run="{topic}"}}"#);
        wait_for(&format!("every sample of {topic}"), LONG, || {
            let found: f64 = vm.export(&selector).iter().flat_map(|s| &s.values).sum();
            (found == sum(0..600)).then_some(())
        });
        wait_for(
            "the future record rejected and every offset committed",
            LONG,
            || {
                let m = host.metrics();
                let future =
                    parse_labelled(&m, "record_errors_total", "reason", "future_timestamp");
                let uncommitted = support::parse_counter(&m, "kafka_uncommitted_records");
                (future == 1.0 && uncommitted == 0.0).then_some(())
            },
        );
        let m = host.metrics();
        assert_eq!(
            support::parse_counter(&m, "record_errors_total"),
            1.0,
            "{topic}"
        );
        assert_eq!(vm.sample_count(r#"{run="f"}"#), 0);
    }
}

/// Under ROLLUP=sum a batch carries sums. Given up (VM_MAX_RETRIES) or
/// refused for good, its sums are dead-lettered as the import lines that
/// were sent, and counted; its records are not (their values sit in cells
/// written later: dead-lettering them too would count them twice).
#[test]
fn refused_rollup_sums_are_dead_lettered_as_sums() {
    let Stack {
        dir,
        broker,
        mut vm,
    } = Stack::with_vm_args(&[DEDUP]);
    broker.create_topic("sums", 1);
    let host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "sums",
        &[
            ("ROLLUP", "sum"),
            ("ROLLUP_STEP", "60s"),
            ("ROLLUP_IDLE_AFTER", "2s"),
            ("VM_AVOID_LABELS", "seq,stamp_updated,bytes"),
            ("KAFKA_DLQ_TOPIC", "sums-dlq"),
            ("VM_MAX_RETRIES", "2"),
        ],
    );
    vm.stop();
    broker.produce("sums", &records("lost", 0..100));
    let letters = broker.read_all("sums-dlq", 1, LONG);
    assert_eq!(letters.len(), 1);
    let (payload, headers) = &letters[0];
    assert_eq!(headers["x-reason"], "vm_unavailable");
    assert_eq!(headers["x-content"], "rollup-sum-import-line");
    let line: serde_json::Value = serde_json::from_slice(payload).unwrap();
    assert_eq!(line["metric"]["run"], "lost");
    assert_eq!(line["values"][0].as_f64(), Some(sum(0..100)));
    vm.restart();
    // Another slot: the lost one is closed, its later records too late.
    let kept: Vec<String> = records("kept", 0..50)
        .iter()
        .map(|r| r.replace("10:01:02", "10:05:02"))
        .collect();
    broker.produce("sums", &kept);
    let kept = vm.wait_samples(r#"{run="kept"}"#, 1, LONG);
    assert_eq!(kept[0].values, [sum(0..50)]);
    wait_for("every offset committed", LONG, || {
        (host.counter("kafka_uncommitted_records") == 0.0).then_some(())
    });
    let m = host.metrics();
    assert_eq!(support::parse_counter(&m, "record_errors_total"), 0.0);
    assert_eq!(
        parse_labelled(&m, "rollup_sums_refused_total", "reason", "vm_unavailable"),
        1.0
    );
    // Nothing else in the dead-letter topic: no record of the batch.
    assert_eq!(
        broker.read_all("sums-dlq", 2, Duration::from_secs(5)).len(),
        1
    );
}
