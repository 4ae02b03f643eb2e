//! `ROLLUP=sum` against the real broker, a real VictoriaMetrics with
//! deduplication on, and the real binary: flows that collapse onto a few
//! series keep exact totals, through a SIGKILL, a second host and a
//! rebalance, late records, a cap on memory, and a Python module replaced
//! mid-stream during an outage of VictoriaMetrics.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{parse_counter, parse_labelled, wait_for, Broker, Host, Stack, Victoria};

const DEDUP: &str = "-dedup.minScrapeInterval=1ms";
const LONG: Duration = Duration::from_secs(90);
/// Every field but the protocol (and event_type) is left out of the labels:
/// 3 000 flows become 3 series.
const AVOID: &str = "ip_src,ip_dst,port_src,port_dst,stamp_inserted,stamp_updated,packets,bytes";
/// 2026-11-25 10:00:00 UTC, in ms.
const HOUR_MS: i64 = 1_795_600_800_000;

const PROTOS: [&str; 3] = ["tcp", "udp", "icmp"];

/// The purge of `flow` in `minute` (10:MM:SS, the second varying by flow).
fn purge(flow: u64, minute: u64) -> String {
    json!({"event_type": "purge", "ip_src": format!("10.0.{}.{}", flow / 250, flow % 250),
        "ip_dst": "192.168.1.9", "port_src": 1024 + flow, "port_dst": 443,
        "ip_proto": PROTOS[(flow % 3) as usize],
        "stamp_inserted": format!("2026-11-25 10:{minute:02}:00"),
        "stamp_updated": format!("2026-11-25 10:{minute:02}:{:02}", flow % 60),
        "packets": 1, "bytes": 100 + flow * 7 + minute})
    .to_string()
}

/// (label value, minute start in ms) → bytes.
type Totals = BTreeMap<(String, i64), f64>;

fn expected(records: &[String], label: &str) -> Totals {
    let mut t = Totals::new();
    for r in records {
        let v: serde_json::Value = serde_json::from_str(r).unwrap();
        let minute: i64 = v["stamp_updated"].as_str().unwrap()[14..16]
            .parse()
            .unwrap();
        let key = (
            v[label].as_str().unwrap().to_string(),
            HOUR_MS + minute * 60_000,
        );
        *t.entry(key).or_default() += v["bytes"].as_f64().unwrap();
    }
    t
}

/// What VictoriaMetrics holds (deduplicated by its export), by label and
/// minute: each partition's sample of a cell counts once.
fn stored(vm: &Victoria, label: &str) -> Totals {
    let mut t = Totals::new();
    for s in vm.export(r#"{__name__="bytes"}"#) {
        for (v, ts) in s.values.iter().zip(&s.timestamps) {
            let key = (
                s.labels.get(label).cloned().unwrap_or_default(),
                ts - ts.rem_euclid(60_000),
            );
            *t.entry(key).or_default() += v;
        }
    }
    t
}

fn wait_totals(vm: &Victoria, label: &str, want: &Totals) -> Totals {
    let started = Instant::now();
    loop {
        let got = stored(vm, label);
        if &got == want {
            return got;
        }
        if started.elapsed() > LONG {
            assert_eq!(&got, want, "totals by {label} and minute");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn rollup_env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("ROLLUP", "sum"),
        ("ROLLUP_STEP", "60s"),
        ("ROLLUP_LATENESS", "60s"),
        // The last intervals of a quiet topic are written this long after its
        // last record.
        ("ROLLUP_IDLE_AFTER", "3s"),
        ("VM_AVOID_LABELS", AVOID),
    ];
    env.extend_from_slice(extra);
    env
}

fn start_vm(dir: &Path) -> Victoria {
    Victoria::start_with(dir, support::free_port(), &[DEDUP])
}

#[test]
fn collapsed_flows_sum_exactly_in_few_samples() {
    let Stack { dir, broker, vm } = Stack::with_vm_args(&[DEDUP]);
    let records: Vec<String> = (0..20)
        .flat_map(|minute| (0..3000).map(move |flow| purge(flow, minute)))
        .collect();
    broker.produce("collapse", &records);
    let host = Host::start(dir.path(), &broker, &vm, "collapse", &rollup_env(&[]));
    let want = expected(&records, "ip_proto");
    assert_eq!(want.len(), 60);
    wait_totals(&vm, "ip_proto", &want);
    let m = host.metrics();
    let written = parse_counter(&m, "samples_written_total");
    // 3 series × 20 minutes, a sample per partition that read them.
    assert!(
        (60.0..=240.0).contains(&written),
        "{written} samples for 60 000 records"
    );
    // Each cell written once, with its final sum: as many samples were
    // sent as the store holds after deduplication.
    assert_eq!(vm.sample_count(r#"{__name__="bytes"}"#) as f64, written);
    assert_eq!(parse_counter(&m, "rollup_cells_written_total"), written);
    assert_eq!(parse_counter(&m, "records_consumed_total"), 60_000.0);
    assert_eq!(parse_counter(&m, "record_errors_total"), 0.0);
    eprintln!("60 000 records → {written} samples written");
}

#[test]
fn the_subnets_module_rolls_up_exactly() {
    let Stack { dir, broker, vm } = Stack::with_vm_args(&[DEDUP]);
    let module = Path::new(env!("PMACCT_GUEST_WASM_DIR")).join("example_subnets.wasm");
    let records: Vec<String> = (0..10)
        .flat_map(|minute| (0..2000).map(move |flow| purge(flow, minute)))
        .collect();
    broker.produce("subnets", &records);
    let _host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "subnets",
        &[
            ("ROLLUP", "sum"),
            ("ROLLUP_STEP", "60s"),
            ("ROLLUP_IDLE_AFTER", "3s"),
            ("TRANSFORM_PATH", module.to_str().unwrap()),
        ],
    );
    // src_net is the /24 of ip_src: 10.0.0.0/24 ... 10.0.7.0/24.
    let mut want = Totals::new();
    for ((_, minute), bytes) in expected(&records, "ip_proto") {
        *want.entry((String::new(), minute)).or_default() += bytes;
    }
    let by_minute = |vm: &Victoria| {
        let mut t = Totals::new();
        for ((_, minute), bytes) in stored(vm, "no-such-label") {
            *t.entry((String::new(), minute)).or_default() += bytes;
        }
        t
    };
    wait_for("the subnets' totals", LONG, || {
        (by_minute(&vm) == want).then_some(())
    });
    let series = vm.export(r#"{__name__="bytes"}"#).len();
    assert!(series < 100, "{series} series for 2 000 flows");
}

#[test]
fn a_sigkill_a_second_host_and_a_rebalance_keep_totals_exact() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    broker.create_topic("shared", 4);
    let vm = start_vm(dir.path());
    let env = rollup_env(&[
        ("KAFKA_CONSUMER_GROUP_ID", "rollers"),
        ("VM_MAX_SAMPLES_PER_SEND", "50"),
    ]);
    let client = Broker::connect(&broker.addr);
    let mut all = Vec::new();
    let mut round = |minute: u64| {
        let records: Vec<String> = (0..900).map(|flow| purge(flow, minute)).collect();
        client.produce_spread("shared", &records);
        all.extend(records);
    };
    let mut a = Host::start(dir.path(), &broker, &vm, "shared", &env);
    for minute in 0..4 {
        round(minute);
    }
    wait_for("A working", LONG, || {
        (a.counter("samples_written_total") > 0.0).then_some(())
    });
    // B joins: a rebalance shares the partitions out.
    let b = Host::start(dir.path(), &broker, &vm, "shared", &env);
    std::thread::sleep(Duration::from_secs(8));
    for minute in 4..7 {
        round(minute);
    }
    wait_for("B working", LONG, || {
        (b.counter("records_consumed_total") > 0.0).then_some(())
    });
    a.kill();
    for minute in 7..10 {
        round(minute);
    }
    // A third host after the kill: another rebalance.
    let c = Host::start(dir.path(), &broker, &vm, "shared", &env);
    for minute in 10..12 {
        round(minute);
    }
    let want = expected(&all, "ip_proto");
    wait_totals(&vm, "ip_proto", &want);
    let read = b.counter("records_consumed_total") + c.counter("records_consumed_total");
    eprintln!(
        "{} records, exact; B and C read {read} (A's unfinished ones again)",
        all.len()
    );
}

/// By default a cell is written once, final: records within
/// ROLLUP_LATENESS of their partition's newest one are added before it is
/// written, later ones are rejected and dead-lettered, and nothing is
/// rewritten (so a store without largest-wins deduplication, or
/// Prometheus, ends with the same totals).
#[test]
fn late_records_add_up_and_too_late_ones_are_dead_lettered() {
    let Stack { dir, broker, vm } = Stack::with_vm_args(&[DEDUP]);
    let env = [
        ("ROLLUP", "sum"),
        ("ROLLUP_STEP", "60s"),
        ("ROLLUP_LATENESS", "120s"),
        ("ROLLUP_IDLE_AFTER", "5s"),
        ("VM_AVOID_LABELS", AVOID),
        ("KAFKA_DLQ_TOPIC", "late-dlq"),
    ];
    // One partition: lateness is measured per partition.
    broker.create_topic("late", 1);
    let mut sent: Vec<String> = (0..5)
        .flat_map(|minute| (0..100).map(move |flow| purge(flow, minute)))
        .collect();
    // Minute 3 again, within ROLLUP_LATENESS of minute 4: added.
    sent.extend((100..150).map(|flow| purge(flow, 3)));
    // Minute 10 closes minutes 0..7; then minute 1 is too late.
    sent.extend((0..30).map(|flow| purge(flow, 10)));
    let too_late: Vec<String> = (200..220).map(|flow| purge(flow, 1)).collect();
    broker.produce("late", &sent);
    broker.produce("late", &too_late);
    let host = Host::start(dir.path(), &broker, &vm, "late", &env);
    let letters = broker.read_all("late-dlq", 20, LONG);
    assert_eq!(letters.len(), 20);
    for (payload, headers) in &letters {
        assert_eq!(headers["x-reason"], "rollup_too_late");
        assert!(too_late.iter().any(|r| r.as_bytes() == payload.as_slice()));
    }
    wait_totals(&vm, "ip_proto", &expected(&sent, "ip_proto"));
    wait_for("every offset committed", LONG, || {
        (host.counter("kafka_uncommitted_records") == 0.0).then_some(())
    });
    let m = host.metrics();
    assert_eq!(parse_counter(&m, "rollup_late_samples_total"), 0.0);
    let written = parse_counter(&m, "samples_written_total");
    assert_eq!(vm.sample_count(r#"{__name__="bytes"}"#) as f64, written);
    assert_eq!(
        parse_labelled(&m, "record_errors_total", "reason", "rollup_too_late"),
        20.0
    );
}

/// ROLLUP_INTERIM_WRITES=YES: a quiet topic gets its growing sums at once,
/// and a late record's sum is written again, larger. The store must keep
/// the largest of one series' equal-timestamp samples: current
/// VictoriaMetrics with deduplication does (the tests' VICTORIA_METRICS_BIN).
#[test]
fn interim_writes_rewrite_growing_sums_which_current_victoriametrics_keeps() {
    let Stack { dir, broker, vm } = Stack::with_vm_args(&[DEDUP]);
    let env = [
        ("ROLLUP", "sum"),
        ("ROLLUP_STEP", "60s"),
        ("ROLLUP_LATENESS", "120s"),
        ("ROLLUP_INTERIM_WRITES", "YES"),
        ("VM_AVOID_LABELS", AVOID),
    ];
    broker.create_topic("interim", 1);
    let host = Host::start(dir.path(), &broker, &vm, "interim", &env);
    let mut sent: Vec<String> = (0..5)
        .flat_map(|minute| (0..100).map(move |flow| purge(flow, minute)))
        .collect();
    broker.produce("interim", &sent);
    // The topic goes quiet: every sum so far is written, not final.
    wait_totals(&vm, "ip_proto", &expected(&sent, "ip_proto"));
    let late: Vec<String> = (100..150).map(|flow| purge(flow, 3)).collect();
    broker.produce("interim", &late);
    sent.extend(late);
    wait_totals(&vm, "ip_proto", &expected(&sent, "ip_proto"));
    assert_eq!(host.counter("rollup_late_samples_total"), 50.0);
}

#[test]
fn a_small_max_cells_bounds_memory_and_stays_exact() {
    let Stack { dir, broker, vm } = Stack::with_vm_args(&[DEDUP]);
    // ip_src stays a label: 200 series a minute; room for two minutes.
    let avoid = "ip_dst,port_src,port_dst,stamp_inserted,stamp_updated,packets,bytes,ip_proto";
    let env = [
        ("ROLLUP", "sum"),
        ("ROLLUP_STEP", "60s"),
        ("ROLLUP_LATENESS", "1h"),
        ("ROLLUP_IDLE_AFTER", "3s"),
        ("ROLLUP_MAX_CELLS", "450"),
        ("VM_AVOID_LABELS", avoid),
    ];
    let records: Vec<String> = (0..12)
        .flat_map(|minute| (0..200).map(move |flow| purge(flow, minute)))
        .collect();
    // One partition, so a minute's 200 cells are all in one bucket.
    broker.create_topic("capped", 1);
    let host = Host::start(dir.path(), &broker, &vm, "capped", &env);
    let producer = {
        let addr = broker.addr.clone();
        let records = records.clone();
        std::thread::spawn(move || {
            let b = Broker::connect(&addr);
            for minute in records.chunks(200) {
                b.produce("capped", minute);
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let mut most = 0.0f64;
    while !producer.is_finished() {
        most = most.max(host.counter("rollup_open_cells"));
        std::thread::sleep(Duration::from_millis(50));
    }
    producer.join().unwrap();
    wait_totals(&vm, "ip_src", &expected(&records, "ip_src"));
    let m = host.metrics();
    assert!(most <= 450.0, "{most} open cells");
    assert!(parse_counter(&m, "rollup_early_writes_total") >= 200.0 * 9.0);
    assert_eq!(parse_counter(&m, "record_errors_total"), 0.0);
}

/// A Python module built for contract 1.0 (it writes import lines),
/// replaced mid-stream by the Rust build of the same rules for 2.0, and
/// VictoriaMetrics stopped for a while: totals stay exact, and
/// once the topic goes quiet the last purge arrives within
/// VM_MAX_TIME_TO_SEND + ROLLUP_LATENESS.
#[test]
fn a_python_module_a_reload_and_an_outage_keep_totals_exact() {
    let polyglot = std::env::var("PMACCT_POLYGLOT_WASM_DIR")
        .expect("PMACCT_POLYGLOT_WASM_DIR is not set: run scripts/test.sh");
    let python = Path::new(&polyglot).join("python_subnets_1_0.wasm");
    let rust = Path::new(env!("PMACCT_GUEST_WASM_DIR")).join("example_subnets.wasm");
    let Stack {
        dir,
        broker,
        mut vm,
    } = Stack::with_vm_args(&[DEDUP]);
    let path = dir.path().join("transform.wasm");
    support::deploy(&python, &path);
    let host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "poly",
        &[
            ("ROLLUP", "sum"),
            ("ROLLUP_STEP", "60s"),
            ("ROLLUP_IDLE_AFTER", "20s"),
            ("TRANSFORM_PATH", path.to_str().unwrap()),
        ],
    );
    let mut sent = Vec::new();
    let mut produce = |minutes: std::ops::Range<u64>| {
        let records: Vec<String> = minutes
            .flat_map(|minute| (0..1000).map(move |flow| purge(flow, minute)))
            .collect();
        broker.produce("poly", &records);
        sent.extend(records);
    };
    produce(0..3);
    wait_for("the Python module at work", LONG, || {
        (host.counter("records_consumed_total") >= 3000.0).then_some(())
    });
    support::deploy(&rust, &path);
    let rust_sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(&rust).unwrap()))
    };
    wait_for("the Rust module", LONG, || {
        (support::running_sha(&host) == rust_sha).then_some(())
    });
    produce(3..6);
    vm.stop();
    produce(6..9);
    std::thread::sleep(Duration::from_secs(5));
    vm.restart();
    produce(9..10);
    let quiet = Instant::now();
    let mut want = Totals::new();
    for ((_, minute), bytes) in expected(&sent, "ip_proto") {
        *want.entry((String::new(), minute)).or_default() += bytes;
    }
    wait_for("exact totals per minute", LONG, || {
        let mut t = Totals::new();
        for ((_, minute), bytes) in stored(&vm, "no-such-label") {
            *t.entry((String::new(), minute)).or_default() += bytes;
        }
        (t == want).then_some(())
    });
    let tail = quiet.elapsed();
    // ROLLUP_IDLE_AFTER 20 s, VM_MAX_TIME_TO_SEND 1 s, and the store's
    // few seconds before a sample shows in queries.
    assert!(tail < Duration::from_secs(40), "{tail:?}");
    assert_eq!(host.counter("record_errors_total"), 0.0);
    eprintln!("10 000 records through Python, a reload and an outage: exact; the last purge {tail:?} after the last record");
}
