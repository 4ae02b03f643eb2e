//! Delivery under faults, against the real broker and VictoriaMetrics. Each
//! test ends by comparing exact totals in VictoriaMetrics with what was
//! produced, and prints records produced / samples expected / samples found
//! / records read twice.

mod support;
#[path = "../benches/common/synth.rs"]
mod synth;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use support::{
    free_port, parse_counter, parse_labelled, wait_for, Broker, Host, PersistentBroker, Stack,
    Victoria,
};

const LONG: Duration = Duration::from_secs(120);
/// Replays repeat the same series and timestamps: with this VictoriaMetrics
/// keeps one sample of each, so totals stay exact after a crash.
const DEDUP: &str = "-dedup.minScrapeInterval=1ms";

fn records(tag: &str, range: std::ops::Range<u64>) -> Vec<String> {
    range
        .map(|i| {
            json!({"seq": i, "run": tag, "stamp_updated": "2026-11-25 10:01:02", "bytes": i + 1})
                .to_string()
        })
        .collect()
}

fn expected_sum(range: std::ops::Range<u64>) -> f64 {
    range.map(|i| (i + 1) as f64).sum()
}

fn report(name: &str, produced: u64, found: f64, read: f64) {
    eprintln!(
        "{name}: records produced {produced}, samples expected {produced}, samples found {found}, records read twice {}",
        read - produced as f64
    );
}

/// VictoriaMetrics stopped mid-stream, until the host has failed sends and
/// paused its consumer: nothing lost, nothing counted twice once it is back.
#[test]
fn victoriametrics_down_mid_stream() {
    let Stack {
        dir,
        broker,
        mut vm,
    } = Stack::with_vm_args(&[DEDUP]);
    let host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "vmdown",
        &[("VM_MAX_SAMPLES_PER_SEND", "200")],
    );
    broker.produce("vmdown", &records("a", 0..3000));
    vm.wait_samples(r#"{run="a"}"#, 3000, LONG);
    vm.stop();
    broker.produce("vmdown", &records("b", 3000..8000));
    wait_for("failed sends and a paused consumer", LONG, || {
        let failed = parse_labelled(&host.metrics(), "send_failures_total", "kind", "connect");
        (failed >= 3.0 && host.log_text().contains("fetching paused")).then_some(())
    });
    vm.restart();
    vm.wait_samples(r#"{run="b"}"#, 5000, LONG);
    let total = vm.query_value(r#"sum(sum_over_time(bytes[3650d]))"#);
    assert_eq!(total, expected_sum(0..8000));
    report(
        "vm down",
        8000,
        vm.query_value("count(count_over_time(bytes[3650d]))"),
        host.counter("records_consumed_total"),
    );
}

#[test]
fn sigkill_mid_stream_then_restart() {
    let Stack { dir, broker, vm } = Stack::with_vm_args(&[DEDUP]);
    let env = [
        ("VM_MAX_SAMPLES_PER_SEND", "250"),
        ("KAFKA_CONSUMER_GROUP_ID", "crash"),
    ];
    broker.produce("crash", &records("k", 0..20_000));
    let mut first = Host::start(dir.path(), &broker, &vm, "crash", &env);
    wait_for("samples mid-stream", LONG, || {
        (first.counter("samples_count_total") >= 3000.0).then_some(())
    });
    let read_first = first.counter("records_consumed_total");
    first.kill();
    let second = Host::start(dir.path(), &broker, &vm, "crash", &env);
    wait_for("every record", LONG, || {
        (vm.query_value("count(count_over_time(bytes[3650d]))") == 20_000.0).then_some(())
    });
    assert_eq!(
        vm.query_value("sum(sum_over_time(bytes[3650d]))"),
        expected_sum(0..20_000)
    );
    report(
        "SIGKILL + restart",
        20_000,
        vm.query_value("count(count_over_time(bytes[3650d]))"),
        read_first + second.counter("records_consumed_total"),
    );
}

/// SIGTERM sends the open batch, waits until VictoriaMetrics has had it for
/// VM_DURABLE_AFTER (a flush on request makes it searchable, not durable),
/// commits, and exits 0.
#[test]
fn sigterm_flushes_commits_and_exits_0() {
    let Stack { dir, broker, vm } = Stack::start();
    // A batch that neither fills nor times out by itself: only the shutdown sends it.
    let env = [
        ("VM_MAX_TIME_TO_SEND", "600"),
        ("KAFKA_CONSUMER_GROUP_ID", "term"),
        ("VM_DURABLE_AFTER", "4s"),
    ];
    broker.produce("term", &records("t", 0..300));
    let mut host = Host::start(dir.path(), &broker, &vm, "term", &env);
    wait_for("records read", LONG, || {
        (host.counter("records_consumed_total") == 300.0).then_some(())
    });
    assert_eq!(
        vm.sample_count(r#"{run="t"}"#),
        0,
        "nothing sent before the stop"
    );
    let read_first = host.counter("records_consumed_total");
    let started = std::time::Instant::now();
    let status = host.terminate(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", host.log_text());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(12),
        "took {took:?}: the window is 4 s"
    );
    assert!(host
        .log_text()
        .contains("waiting for the last accepted batches to be durable"));
    let found = vm.wait_samples(r#"{run="t"}"#, 300, Duration::from_secs(20));
    assert_eq!(
        found.iter().flat_map(|s| &s.values).sum::<f64>(),
        expected_sum(0..300)
    );
    // Restart: the offsets were committed, nothing is read again. Records
    // of a partition are read in order, so once a record produced now has
    // arrived, the only one read must be it.
    let again = Host::start(
        dir.path(),
        &broker,
        &vm,
        "term",
        &[("KAFKA_CONSUMER_GROUP_ID", "term")],
    );
    broker.produce("term", &records("after", 300..301));
    vm.wait_samples(r#"{run="after"}"#, 1, LONG);
    assert_eq!(
        again.counter("records_consumed_total"),
        1.0,
        "{}",
        again.log_text()
    );
    report(
        "SIGTERM",
        300,
        vm.sample_count(r#"{run="t"}"#) as f64,
        read_first + again.counter("records_consumed_total") - 1.0,
    );
}

/// With VictoriaMetrics down, a SIGTERM waits (up to SHUTDOWN_TIMEOUT) for
/// the batches in flight; a second signal exits at once, committing
/// nothing, and the next run delivers everything.
#[test]
fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    broker.produce("twice", &records("s", 0..500));
    let env = [
        ("VM_URL", url.as_str()),
        ("KAFKA_CONSUMER_GROUP_ID", "twice"),
        ("SHUTDOWN_TIMEOUT", "60"),
    ];
    let mut host = Host::start_without_vm(dir.path(), &broker, "twice", &env);
    wait_for("records read", LONG, || {
        (host.counter("records_consumed_total") == 500.0).then_some(())
    });
    host.signal_term();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        host.is_running(),
        "the first signal waits for VictoriaMetrics"
    );
    let started = std::time::Instant::now();
    let status = host.terminate(Duration::from_secs(5));
    assert_eq!(status.code(), Some(130));
    assert!(started.elapsed() < Duration::from_secs(2));

    let vm = Victoria::start_on(dir.path(), port);
    let again = Host::start(dir.path(), &broker, &vm, "twice", &env);
    let found = vm.wait_samples(r#"{run="s"}"#, 500, LONG);
    assert_eq!(
        found.iter().flat_map(|s| &s.values).sum::<f64>(),
        expected_sum(0..500)
    );
    report(
        "second signal",
        500,
        found.iter().map(|s| s.values.len()).sum::<usize>() as f64,
        500.0 + again.counter("records_consumed_total"),
    );
}

#[test]
fn two_hosts_on_three_partitions_one_killed() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    broker.create_topic("shared", 3);
    let vm = Victoria::start_with(dir.path(), free_port(), &[DEDUP]);
    let env = [
        ("VM_MAX_SAMPLES_PER_SEND", "200"),
        ("KAFKA_CONSUMER_GROUP_ID", "pair"),
    ];
    let mut a = Host::start(dir.path(), &broker, &vm, "shared", &env);
    let client = Broker::connect(&broker.addr);
    let round = |r: u64| client.produce_spread("shared", &records("p", r * 3000..(r + 1) * 3000));
    round(0);
    round(1);
    wait_for("A working", LONG, || {
        (a.counter("samples_count_total") > 0.0).then_some(())
    });
    // B joins while A works: A's partitions are revoked and shared out.
    let b = Host::start(dir.path(), &broker, &vm, "shared", &env);
    wait_for("B in the group", LONG, || {
        (parse_labelled(&b.metrics(), "kafka_rebalances_total", "event", "assign") >= 1.0)
            .then_some(())
    });
    for r in 2..6 {
        round(r);
    }
    wait_for("B working", LONG, || {
        (b.counter("samples_count_total") > 0.0).then_some(())
    });
    let read_a = a.counter("records_consumed_total");
    a.kill();
    for r in 6..10 {
        round(r);
    }
    wait_for("every record", LONG, || {
        (vm.query_value("count(count_over_time(bytes[3650d]))") == 30_000.0).then_some(())
    });
    assert_eq!(
        vm.query_value("sum(sum_over_time(bytes[3650d]))"),
        expected_sum(0..30_000)
    );
    report(
        "two hosts, one joining then killed",
        30_000,
        vm.query_value("count(count_over_time(bytes[3650d]))"),
        read_a + b.counter("records_consumed_total"),
    );
}

/// Every second record broken in one of five ways; with a dead-letter topic
/// it holds exactly the broken ones, unchanged, with their reason.
#[test]
fn malformed_records_go_to_the_dead_letter_topic() {
    let Stack { dir, broker, vm } = Stack::start();
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    let mut bad: BTreeSet<Vec<u8>> = BTreeSet::new();
    for i in 0..20_000u64 {
        if i % 2 == 1 {
            let broken = match (i / 2) % 5 {
                0 => format!("{{\"seq\": {i}, \"bytes\": "),
                1 => json!({"seq": i, "stamp_updated": "2026-11-25 10:01:02"}).to_string(),
                2 => json!({"seq": i, "bytes": "lots", "stamp_updated": "2026-11-25 10:01:02"})
                    .to_string(),
                3 => format!("[{i}]"),
                _ => json!({"seq": i, "bytes": 5, "stamp_updated": "yesterday"}).to_string(),
            };
            bad.insert(broken.clone().into_bytes());
            payloads.push(broken.into_bytes());
        } else {
            payloads.push(
                json!({"seq": i, "stamp_updated": "2026-11-25 10:01:02", "bytes": i + 1})
                    .to_string()
                    .into_bytes(),
            );
        }
    }
    broker.produce("dirty", &payloads);
    let host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "dirty",
        &[("KAFKA_DLQ_TOPIC", "dirty-dlq")],
    );
    vm.wait_samples(r#"{__name__="bytes"}"#, 10_000, LONG);
    let letters = broker.read_all("dirty-dlq", 10_001, Duration::from_secs(30));
    assert_eq!(letters.len(), 10_000, "exactly the bad ones");
    let got: BTreeSet<Vec<u8>> = letters.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(got, bad);
    for (_, headers) in &letters {
        assert_eq!(headers["x-source-topic"], "dirty");
        assert!(!headers["x-reason"].is_empty() && headers.contains_key("x-source-offset"));
    }
    let m = host.metrics();
    assert_eq!(parse_counter(&m, "dead_letters_total"), 10_000.0);
    assert_eq!(parse_counter(&m, "record_errors_total"), 10_000.0);
    report(
        "malformed with DLQ",
        10_000,
        vm.sample_count(r#"{__name__="bytes"}"#) as f64,
        parse_counter(&m, "records_consumed_total") - 10_000.0,
    );
}

/// An HTTP gate in front of the real VictoriaMetrics that answers 503 to
/// everything, or 400 to bodies holding a marker, as told. VictoriaMetrics
/// itself cannot be made to do either on demand, hence this fake.
mod proxy {
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::Arc;

    use super::support::{http_gate, Gate};

    pub const FORWARD: u8 = 0;
    pub const UNAVAILABLE: u8 = 1;
    pub const REFUSE_MARKED: u8 = 2;

    pub fn start(upstream: String, marker: &'static str) -> (u16, Arc<AtomicU8>) {
        let mode = Arc::new(AtomicU8::new(FORWARD));
        let m = mode.clone();
        let port = http_gate(upstream, move |req| {
            let marked = req.text().contains(marker);
            match m.load(Ordering::SeqCst) {
                UNAVAILABLE => Gate::Answer(503),
                REFUSE_MARKED if marked => Gate::Answer(400),
                _ => Gate::Forward(req.path.to_string()),
            }
        });
        (port, mode)
    }
}

#[test]
fn unavailable_then_refusing_victoriametrics() {
    use std::sync::atomic::Ordering;
    let Stack { dir, broker, vm } = Stack::start();
    let (port, mode) = proxy::start(vm.url.clone(), "poison");
    mode.store(proxy::UNAVAILABLE, Ordering::SeqCst);
    let url = format!("http://127.0.0.1:{port}");
    let host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "flaky",
        &[
            ("VM_URL", &url),
            ("VM_MAX_SAMPLES_PER_SEND", "100"),
            ("KAFKA_DLQ_TOPIC", "flaky-dlq"),
        ],
    );
    broker.produce("flaky", &records("a", 0..1000));
    wait_for("503s", LONG, || {
        (parse_labelled(&host.metrics(), "send_failures_total", "kind", "status") >= 3.0)
            .then_some(())
    });
    assert_eq!(host.counter("samples_count_total"), 0.0);

    // Now VictoriaMetrics "refuses" every body holding a poisoned record.
    // The records kept through the 503s arrive first: produced only then,
    // no poisoned record shares a batch with them.
    mode.store(proxy::REFUSE_MARKED, Ordering::SeqCst);
    vm.wait_samples(r#"{run="a"}"#, 1000, LONG);
    let poisoned: Vec<String> = (1000..2000u64)
        .map(|i| {
            let mut v = json!({"seq": i, "run": "b", "stamp_updated": "2026-11-25 10:01:02", "bytes": i + 1});
            if i % 100 == 0 {
                v["note"] = json!("poison");
            }
            v.to_string()
        })
        .collect();
    broker.produce("flaky", &poisoned);
    let seqs = |series: &[support::Series]| -> BTreeSet<u64> {
        series
            .iter()
            .map(|s| s.labels["seq"].parse().unwrap())
            .collect()
    };
    // Everything is dealt with: in VictoriaMetrics or in the dead-letter topic.
    let (in_vm, letters) = wait_for("every record dealt with", LONG, || {
        let m = host.metrics();
        let accepted = parse_counter(&m, "samples_count_total");
        let refused = parse_labelled(&m, "record_errors_total", "reason", "vm_rejected");
        (accepted + refused == 2000.0 && refused > 0.0).then_some((accepted, refused))
    });
    let series = vm.wait_samples(r#"{__name__="bytes"}"#, in_vm as usize, LONG);
    let dlq = broker.read_all("flaky-dlq", letters as usize, Duration::from_secs(30));
    assert_eq!(dlq.len(), letters as usize);
    let dead: BTreeSet<u64> = dlq
        .iter()
        .map(|(p, h)| {
            assert_eq!(h["x-reason"], "vm_rejected");
            serde_json::from_slice::<serde_json::Value>(p).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let alive = seqs(&series);
    assert!(
        alive.is_disjoint(&dead),
        "a record both written and dead-lettered"
    );
    assert_eq!(alive.len() + dead.len(), 2000, "nothing lost");
    assert!(
        (1000..2000).step_by(100).all(|i| dead.contains(&i)),
        "every poisoned record refused"
    );
    assert!(
        (0..1000).all(|i| alive.contains(&i)),
        "the 503 phase lost nothing"
    );
    report(
        "503 then 400",
        2000,
        alive.len() as f64,
        host.counter("records_consumed_total"),
    );
}

fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A long outage while the backlog grows in Kafka: the host pauses, its
/// memory stays within what librdkafka's queue (here 4 MiB) and a few
/// batches take, and everything drains afterwards.
#[test]
fn a_long_outage_keeps_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let env = [
        ("VM_URL", url.as_str()),
        ("KAFKA_PROPERTY_QUEUED_MAX_MESSAGES_KBYTES", "4096"),
    ];
    let host = Host::start_without_vm(dir.path(), &broker, "backlog", &env);
    let n = 150_000u64;
    let mut buf = Vec::new();
    for chunk in 0..15u64 {
        let batch: Vec<Vec<u8>> = (chunk * 10_000..(chunk + 1) * 10_000)
            .map(|i| {
                buf.clear();
                synth::record(i, &mut buf);
                buf.clone()
            })
            .collect();
        broker.produce("backlog", &batch);
        std::thread::sleep(Duration::from_secs(2));
    }
    let consumed = host.counter("records_consumed_total");
    assert!(
        consumed < n as f64,
        "the consumer paused ({consumed} of {n} read)"
    );
    assert!(host.log_text().contains("fetching paused"));
    let outage_peak = peak_rss_mb(host.pid());
    let vm = Victoria::start_on(dir.path(), port);
    wait_for("the backlog drained", Duration::from_secs(300), || {
        (host.counter("samples_count_total") == n as f64).then_some(())
    });
    assert_eq!(
        vm.query_value("count(count_over_time(bytes[3650d]))"),
        n as f64
    );
    let peak = peak_rss_mb(host.pid());
    eprintln!("long outage: {n} records backlogged, peak RSS during the outage {outage_peak:.1} MB, after draining {peak:.1} MB");
    assert!(
        outage_peak > 0.0 && outage_peak < 100.0,
        "RSS {outage_peak} MB"
    );
}

/// The broker stopped and started again (storage that survives it) while
/// the host runs: the host reconnects by itself and loses nothing.
#[test]
fn broker_restart_while_the_host_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = PersistentBroker::start(dir.path());
    broker.create_topic("durable", 2);
    let vm = Victoria::start_with(dir.path(), free_port(), &[DEDUP]);
    let host = Host::start_at(
        dir.path(),
        &broker.addr,
        &vm,
        "durable",
        &[("VM_MAX_SAMPLES_PER_SEND", "200")],
    );
    broker.produce("durable", &records("r", 0..3000));
    vm.wait_samples(r#"{run="r"}"#, 3000, LONG);
    broker.stop();
    std::thread::sleep(Duration::from_secs(5));
    broker.restart();
    broker.produce("durable", &records("r", 3000..6000));
    wait_for("every record", LONG, || {
        (vm.query_value("count(count_over_time(bytes[3650d]))") == 6000.0).then_some(())
    });
    assert_eq!(
        vm.query_value("sum(sum_over_time(bytes[3650d]))"),
        expected_sum(0..6000)
    );
    report(
        "broker restart",
        6000,
        vm.query_value("count(count_over_time(bytes[3650d]))"),
        host.counter("records_consumed_total"),
    );
}

/// The broker restarted right after the host started (a deploy of both at
/// once): once it is back, rejected records reach the dead-letter topic and
/// the good ones the store, within seconds. (Fault schedule 19 once saw the
/// dead-letter producer, then idempotent, wait for a producer id for the
/// rest of the run after such a restart; this order did not reproduce it
/// here, and guards the path.)
#[test]
fn dead_letters_flow_when_the_broker_comes_up_after_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = PersistentBroker::start(dir.path());
    broker.create_topic("late", 1);
    broker.create_topic("late-dlq", 1);
    let vm = Victoria::start_with(dir.path(), free_port(), &[DEDUP]);
    let host = Host::start_at(
        dir.path(),
        &broker.addr,
        &vm,
        "late",
        &[("KAFKA_DLQ_TOPIC", "late-dlq")],
    );
    std::thread::sleep(Duration::from_millis(300));
    broker.stop();
    std::thread::sleep(Duration::from_millis(1250));
    broker.restart();
    let mut payloads = records("l", 0..50);
    payloads.extend((0..50).map(|i| format!("not json {i}")));
    broker.produce("late", &payloads);
    wait_for("the dead letters", Duration::from_secs(60), || {
        (host.counter("dead_letters_total") == 50.0).then_some(())
    });
    vm.wait_samples(r#"{run="l"}"#, 50, LONG);
    assert_eq!(broker.read_all("late-dlq", 50, LONG).len(), 50);
}

/// With VM_MAX_RETRIES the operator trades completeness for progress: after
/// that many attempts a batch's records go to the dead-letter topic (never
/// silently away), and their offsets move on.
#[test]
fn bounded_retries_dead_letter_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let url = format!("http://127.0.0.1:{}", free_port());
    broker.produce("giveup", &records("g", 0..300));
    let host = Host::start_without_vm(
        dir.path(),
        &broker,
        "giveup",
        &[
            ("VM_URL", &url),
            ("VM_MAX_RETRIES", "2"),
            ("KAFKA_DLQ_TOPIC", "giveup-dlq"),
        ],
    );
    wait_for("counted", LONG, || {
        let m = host.metrics();
        (parse_labelled(&m, "record_errors_total", "reason", "vm_unavailable") == 300.0
            && parse_counter(&m, "dead_letters_total") == 300.0)
            .then_some(())
    });
    let letters = broker.read_all("giveup-dlq", 300, LONG);
    assert_eq!(letters.len(), 300);
    // VM_MAX_RETRIES counts attempts: two per batch given up, no third.
    let given_up = host.log_text().matches("VM_MAX_RETRIES reached").count() as f64;
    assert!(given_up >= 1.0);
    assert_eq!(
        parse_labelled(&host.metrics(), "send_failures_total", "kind", "connect"),
        2.0 * given_up
    );
    assert!(letters
        .iter()
        .all(|(_, h)| h["x-reason"] == "vm_unavailable"));
    eprintln!("bounded retries: records produced 300, dead-lettered 300 as vm_unavailable");
}

/// A 2xx is durable only once VictoriaMetrics flushed: SIGKILLed twice
/// mid-stream (no flush asked for first) and restarted on its storage, it
/// loses what it had accepted in its last seconds; the host sees each
/// restart and delivers that again from Kafka.
#[test]
fn victoriametrics_sigkilled_twice_loses_nothing() {
    let Stack {
        dir,
        broker,
        mut vm,
    } = Stack::with_vm_args(&[DEDUP]);
    let host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "crashy",
        &[
            ("VM_MAX_SAMPLES_PER_SEND", "200"),
            ("VM_DURABLE_AFTER", "15s"),
        ],
    );
    let total = 16_000u64;
    let producer = {
        let addr = broker.addr.clone();
        std::thread::spawn(move || {
            let b = Broker::connect(&addr);
            for round in 0..40 {
                b.produce("crashy", &records("c", round * 400..(round + 1) * 400));
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    for _ in 0..2 {
        std::thread::sleep(Duration::from_secs(6));
        let accepted = host.counter("samples_count_total");
        vm.kill();
        vm.restart();
        assert!(accepted > 0.0);
    }
    producer.join().unwrap();
    wait_for("every record", LONG, || {
        (vm.query_value("count(count_over_time(bytes[3650d]))") == total as f64).then_some(())
    });
    assert_eq!(
        vm.query_value("sum(sum_over_time(bytes[3650d]))"),
        expected_sum(0..total)
    );
    assert!(host.counter("store_restarts_total") >= 2.0);
    report(
        "VictoriaMetrics SIGKILLed twice",
        total,
        vm.query_value("count(count_over_time(bytes[3650d]))"),
        host.counter("records_consumed_total"),
    );
}
