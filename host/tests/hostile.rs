//! Hostile modules and secrets, against the real broker and
//! VictoriaMetrics: a module that sleeps, polls, hoards handles, grows
//! memories and tables past the limits, returns huge or malformed output
//! or floods reasons must leave the pipeline running, the good records
//! exact in VictoriaMetrics, the counters right, and SIGTERM effective
//! within SHUTDOWN_TIMEOUT (exit 0). A password in VM_URL appears nowhere.

#[path = "hostile/hog.rs"]
mod hog;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hog::Hog;
use serde_json::json;
use support::{http_gate, parse_labelled, wait_for, Broker, Gate, Host, Stack, Victoria};

const BIN: &str = env!("CARGO_BIN_EXE_pmacct-kafka-vm");
const LONG: Duration = Duration::from_secs(90);
/// What the hosts here are given, and the most a SIGTERM may take.
const SHUTDOWN: &str = "5";
const STOPPED_WITHIN: Duration = Duration::from_secs(10);
/// Replays after a store restart repeat series and timestamps: keep one.
const DEDUP: &str = "-dedup.minScrapeInterval=1ms";

fn wasm(name: &str) -> PathBuf {
    let p = Path::new(env!("PMACCT_GUEST_WASM_DIR")).join(format!("{name}.wasm"));
    assert!(p.exists(), "{} was not built", p.display());
    p
}

fn flow(seq: u64, extra: serde_json::Value) -> String {
    let mut v = json!({"seq": seq, "stamp_updated": "2026-11-25 10:01:02", "bytes": 100 + seq});
    if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    v.to_string()
}

fn good(n: u64) -> Vec<String> {
    (0..n).map(|i| flow(i, json!({}))).collect()
}

/// A host running `module` (copied into the test folder) on `topic`.
fn host_with(stack: &Stack, module: &Path, topic: &str, env: &[(&str, &str)]) -> Host {
    let path = stack.dir.path().join(format!("{topic}.wasm"));
    std::fs::copy(module, &path).expect("copy the module");
    let mut all = vec![
        ("TRANSFORM_PATH", path.to_str().expect("a UTF-8 path")),
        ("TRANSFORM_TIMEOUT_MS", "200"),
        ("SHUTDOWN_TIMEOUT", SHUTDOWN),
    ];
    all.extend_from_slice(env);
    stack.host(topic, &all)
}

/// Wait until `/metrics` counts `n` rejected records under each reason.
fn wait_rejected(host: &Host, want: &[(&str, f64)]) -> String {
    wait_for(&format!("record_errors_total {want:?}"), LONG, || {
        let m = host.metrics();
        want.iter()
            .all(|(reason, n)| parse_labelled(&m, "record_errors_total", "reason", reason) == *n)
            .then_some(m)
    })
}

/// SIGTERM stops the host within SHUTDOWN_TIMEOUT, with exit code 0.
fn stops_cleanly(host: &mut Host) {
    assert!(host.is_running(), "{}", host.log_text());
    let started = Instant::now();
    let status = host.terminate(STOPPED_WITHIN + Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", host.log_text());
    assert!(
        started.elapsed() < STOPPED_WITHIN,
        "SIGTERM took {:?}",
        started.elapsed()
    );
}

/// `std::thread::sleep` and `wasi:io/poll` for an hour each, with a time
/// limit of 200 ms: the module's clock is frozen, so its waits end at once
/// and both records yield their samples; nothing stalls, nothing faults.
/// A module logging on every record is held to 20 lines a second.
/// (Before: 0 records stored, and SIGTERM did not stop the host.)
#[test]
fn a_module_that_sleeps_or_polls_does_not_stall_the_pipeline() {
    let stack = Stack::start();
    let mut host = host_with(&stack, &wasm("probe_transform"), "sleepy", &[]);
    let mut records = good(200);
    records.insert(50, flow(1000, json!({"do": "sleep"})));
    records.insert(150, flow(1001, json!({"do": "poll"})));
    // And a module logging on every record: rate-limited to 20 lines/s.
    records.extend((2000..2100).map(|i| flow(i, json!({"do": "log"}))));
    let started = Instant::now();
    stack.broker.produce("sleepy", &records);
    stack
        .vm
        .wait_samples(r#"{module="probe"}"#, 302, Duration::from_secs(60));
    eprintln!("302 records stored in {:?}", started.elapsed());
    let logged = host.log_text().matches("probe says hello").count();
    let seconds = started.elapsed().as_secs_f64().ceil();
    assert!(
        logged >= 1 && logged as f64 <= 20.0 * (seconds + 1.0),
        "{logged} module log lines in {seconds} s"
    );
    let m = host.metrics();
    assert_eq!(
        support::parse_counter(&m, "transform_faults_total"),
        0.0,
        "{m}"
    );
    assert_eq!(
        support::parse_counter(&m, "record_errors_total"),
        0.0,
        "{m}"
    );
    stops_cleanly(&mut host);
}

/// Run the host binary to its end, killing it (and failing) after `limit`.
fn run_within(cmd: &mut Command, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the host binary");
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "still running after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (child.wait_with_output().expect("output"), started.elapsed())
}

/// `init` runs under the same time limit as a call, and its waits end at
/// once too: `transform check` and `transform test` cannot hang on a
/// module. (Before: both hung on a sleep.)
#[test]
fn init_and_the_transform_cli_are_bounded_in_time() {
    let probe = wasm("probe_transform");
    let check = |config: &str| {
        run_within(
            Command::new(BIN)
                .args(["transform", "check"])
                .arg(&probe)
                .env("TRANSFORM_CONFIG", config)
                .env("TRANSFORM_TIMEOUT_MS", "300"),
            Duration::from_secs(30),
        )
    };
    let (out, took) = check("sleep_init=1");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let (out, took) = check("loop_init=1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("time limit"), "{stderr}");
    assert!(took < Duration::from_secs(10), "{took:?}");

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("records.jsonl");
    let records = [
        flow(1, json!({"do": "sleep"})),
        flow(2, json!({"do": "poll"})),
        flow(3, json!({})),
    ];
    std::fs::write(&input, records.join("\n") + "\n").unwrap();
    let (out, took) = run_within(
        Command::new(BIN)
            .args(["transform", "test", "--module"])
            .arg(&probe)
            .arg("--input")
            .arg(&input)
            .env("TRANSFORM_TIMEOUT_MS", "300"),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// Handles hoarded past the cap, a call's output past
/// TRANSFORM_MAX_OUTPUT_MB, and lines a store would drop: each is the
/// fault of its records alone, rejected with its own reason; every other
/// record is stored exactly once. (Before: the flood's 30 000 samples and
/// the silently dropped lines went to the store.)
#[test]
fn limits_and_malformed_output_reject_only_their_records() {
    let stack = Stack::start();
    let mut host = host_with(
        &stack,
        &wasm("probe_transform"),
        "limits",
        &[("TRANSFORM_MAX_OUTPUT_MB", "1")],
    );
    let raw = |seq, line: &str| flow(seq, json!({"do": "raw", "line": line}));
    let mut records = good(200);
    records.insert(10, flow(1000, json!({"do": "handles"})));
    records.insert(15, flow(1006, json!({"do": "connect"})));
    records.insert(20, flow(1001, json!({"do": "flood", "n": 30000})));
    records.insert(30, raw(1002, r#"{"metric":{}}"#));
    records.insert(
        40,
        raw(1003, r#"{"metric":{"__name__":"bytes","seq":"x"},"values":[1,2],"timestamps":[1795600862000]}"#),
    );
    records.insert(
        50,
        raw(
            1004,
            r#"{"metric":{"seq":"y"},"values":[1],"timestamps":[1795600862000]}"#,
        ),
    );
    records.insert(
        60,
        raw(
            1005,
            r#"{"metric":{"__name__":"bytes","seq":"z"},"values":[1],"timestamps":[1795600862000]"#,
        ),
    );
    stack.broker.produce("limits", &records);
    let m = wait_rejected(
        &host,
        &[
            ("transform_limit", 1.0),
            ("transform_output_too_large", 1.0),
            ("transform_bad_output", 4.0),
            ("net_denied", 1.0),
        ],
    );
    assert_eq!(
        support::parse_counter(&m, "record_errors_total"),
        7.0,
        "{m}"
    );
    let stored = stack
        .vm
        .wait_samples(r#"{__name__=~"bytes|flood"}"#, 200, LONG);
    assert!(
        stored
            .iter()
            .all(|s| s.labels.get("module").is_some_and(|m| m == "probe")),
        "{stored:?}"
    );
    let seqs: Vec<u64> = stored
        .iter()
        .map(|s| s.labels["seq"].parse().unwrap())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(seqs, (0..200).collect::<Vec<_>>());
    // Nothing the store dropped: VictoriaMetrics saw no invalid line.
    stops_cleanly(&mut host);
}

/// A module inventing a reason per record: the reasons become labels of
/// both counters that carry them, capped alike (32, then `other`).
/// (Before: dead_letters_total grew a series per reason.)
#[test]
fn invented_reasons_are_capped_on_every_counter() {
    let stack = Stack::start();
    let mut host = host_with(
        &stack,
        &wasm("probe_transform"),
        "reasons",
        &[("KAFKA_DLQ_TOPIC", "reasons-dlq")],
    );
    let mut records = good(50);
    records.extend((0..100).map(|i| {
        flow(
            2000 + i,
            json!({"do": "reason", "reason": format!("made_up_{i}")}),
        )
    }));
    stack.broker.produce("reasons", &records);
    stack.vm.wait_samples(r#"{module="probe"}"#, 50, LONG);
    let m = wait_for("100 dead letters", LONG, || {
        let m = host.metrics();
        (support::parse_counter(&m, "dead_letters_total") == 100.0).then_some(m)
    });
    for counter in ["record_errors_total", "dead_letters_total"] {
        let series = m
            .lines()
            .filter(|l| l.starts_with(&format!("{counter}{{")))
            .count();
        assert!(series <= 33, "{counter}: {series} series\n{m}");
        assert_eq!(support::parse_counter(&m, counter), 100.0, "{m}");
        assert!(
            parse_labelled(&m, counter, "reason", "other") >= 68.0,
            "{m}"
        );
    }
    stops_cleanly(&mut host);
}

/// Memory is limited for the instance, not for each memory: four extra
/// memories of 16 MiB pass a per-memory limit of 32 MiB but not an instance
/// limit of 32 MiB. Tables' elements are limited together, too. Each
/// record that crosses a limit is rejected alone; the rest are stored.
/// (Before: both records went through, holding 64 MiB and 2 M elements.)
#[test]
fn memory_and_tables_are_limited_per_instance() {
    let stack = Stack::start();
    let module = stack.dir.path().join("hog-source.wasm");
    let hog = Hog {
        memories: 4,
        pages: 256,
        tables: 8,
        elements: 250_000,
        ..Hog::default()
    };
    std::fs::write(&module, hog.wasm()).unwrap();
    let mut host = host_with(&stack, &module, "hog", &[("TRANSFORM_MAX_MEMORY_MB", "32")]);
    let mut records: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    records.insert(30, "!m".into());
    records.insert(60, "!t".into());
    stack.broker.produce("hog", &records);
    wait_rejected(&host, &[("transform_oom", 1.0), ("transform_limit", 1.0)]);
    let stored = stack.vm.wait_samples(r#"{__name__="wat"}"#, 100, LONG);
    assert!(
        stored.iter().all(|s| !s.labels["seq"].starts_with('!')),
        "{stored:?}"
    );
    stops_cleanly(&mut host);
}

/// What an instance may create is counted at load: a module with more
/// memories, tables or core instances than the sandbox allows, or a table
/// larger than it allows, is refused by `transform check` (and so by the
/// host at start-up and on reload).
#[test]
fn modules_past_the_count_limits_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "memories",
            Hog {
                memories: 20,
                ..Hog::default()
            },
        ),
        (
            "tables",
            Hog {
                tables: 100,
                ..Hog::default()
            },
        ),
        (
            "instances",
            Hog {
                instances: 100,
                ..Hog::default()
            },
        ),
        (
            "elements",
            Hog {
                tables: 1,
                initial_elements: 5_000_000,
                ..Hog::default()
            },
        ),
    ];
    let fine = dir.path().join("fine.wasm");
    std::fs::write(
        &fine,
        Hog {
            memories: 2,
            tables: 2,
            instances: 2,
            ..Hog::default()
        }
        .wasm(),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["transform", "check"])
        .arg(&fine)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    for (what, hog) in cases {
        let path = dir.path().join(format!("{what}.wasm"));
        std::fs::write(&path, hog.wasm()).unwrap();
        let out = Command::new(BIN)
            .args(["transform", "check"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(stderr.contains("instantiation failed"), "{what}: {stderr}");
    }
}

/// A password in VM_URL (VictoriaMetrics with basic auth) through success,
/// retries while the store is down and its restart; then, through a gate
/// that refuses a marked batch (VictoriaMetrics answers 204 to what it
/// cannot read), a refusal that is dead-lettered. The password is in no
/// log line, no dead letter's header, neither /health nor /metrics, and
/// not in clap's error for a bad URL. (Before: four log lines and
/// `x-detail` carried it.)
#[test]
fn a_password_in_vm_url_appears_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let mut vm = Victoria::start_with_basic_auth_args(dir.path(), "ops", "s3cret", &[DEDUP]);
    assert!(vm.url.contains("ops:s3cret@"));
    let env = [
        ("KAFKA_DLQ_TOPIC", "secret-dlq"),
        ("SHUTDOWN_TIMEOUT", SHUTDOWN),
    ];
    let mut host = Host::start(dir.path(), &broker, &vm, "secret", &env);
    let records = |from: u64| {
        (from..from + 10)
            .map(|i| flow(i, json!({})))
            .collect::<Vec<_>>()
    };
    broker.produce("secret", &records(0));
    vm.wait_samples(r#"{__name__="bytes"}"#, 10, LONG);
    vm.stop();
    broker.produce("secret", &records(10));
    wait_for("a retry warning", LONG, || {
        host.log_text().contains("retrying").then_some(())
    });
    let mut pages = vec![get(&host, "/health"), get(&host, "/metrics")];
    vm.restart();
    vm.wait_samples(r#"{__name__="bytes"}"#, 20, LONG);
    wait_for("the restart noticed", LONG, || {
        host.log_text().contains("restarted").then_some(())
    });
    pages.extend([get(&host, "/health"), get(&host, "/metrics")]);
    stops_cleanly(&mut host);
    let log = host.log_text();
    for line in [
        "the store accepts writes",
        "pipeline running",
        "retrying",
        "restarted",
    ] {
        assert!(log.contains(line), "no {line:?} in the log:\n{log}");
    }
    assert!(log.contains("ops:***@127.0.0.1"), "{log}");
    assert!(
        !log.contains("s3cret"),
        "the password leaked into the log:\n{log}"
    );

    let plain = Victoria::start(dir.path());
    let gate = http_gate(plain.url.clone(), |req| {
        if req.text().contains("refuse-me") {
            Gate::Answer(400)
        } else {
            Gate::Forward(req.path.to_string())
        }
    });
    let url = format!("http://ops:s3cret@127.0.0.1:{gate}");
    // The gate serves no /metrics: the durability window reads the store's.
    let status = format!("{}/metrics", plain.url);
    broker.produce("refused", &[flow(99, json!({"tag": "refuse-me"}))]);
    let own = [
        ("VM_URL", url.as_str()),
        ("VM_STATUS_URL", status.as_str()),
        ("KAFKA_CONSUMER_GROUP_ID", "refused"),
    ];
    let mut refused = Host::start(
        dir.path(),
        &broker,
        &plain,
        "refused",
        &[&env[..], &own].concat(),
    );
    let letters = broker.read_all("secret-dlq", 1, LONG);
    assert_eq!(
        letters.len(),
        1,
        "the refused record is dead-lettered\n{}",
        refused.log_text()
    );
    let headers = &letters[0].1;
    assert!(headers["x-detail"].contains("answered 400"), "{headers:?}");
    assert!(headers["x-detail"].contains("ops:***@"), "{headers:?}");
    pages.extend([get(&refused, "/health"), get(&refused, "/metrics")]);
    stops_cleanly(&mut refused);

    let log = refused.log_text();
    assert!(log.contains("refused"), "{log}");
    assert!(
        !log.contains("s3cret"),
        "the password leaked into the log:\n{log}"
    );
    for (k, v) in headers {
        assert!(!v.contains("s3cret"), "header {k}: {v}");
    }
    for page in pages {
        assert!(!page.contains("s3cret"), "{page}");
    }
    // clap quotes a value it refuses.
    let out = Command::new(BIN)
        .env_clear()
        .env("VM_URL", "http://ops:s3cret@127.0.0.1:99999/")
        .env("KAFKA_BOOTSTRAP_SERVERS", &broker.addr)
        .env("KAFKA_TOPIC", "x")
        .env("VM_JOB", "j")
        .env("VM_INSTANCE", "i")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("VM_URL") && !stderr.contains("s3cret"),
        "{stderr}"
    );
}

fn get(host: &Host, path: &str) -> String {
    reqwest::blocking::get(format!("{}{path}", host.admin))
        .and_then(|r| r.text())
        .expect("GET the admin port")
}

/// A pmacct-like record with `extra` fields (and the default rules' own).
fn keyed(seq: u64, extra: serde_json::Value) -> String {
    let mut v = json!({"seq": seq, "ip_src": "10.0.0.1", "stamp_updated": "2026-11-25 10:01:02", "bytes": 100 + seq});
    if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    v.to_string()
}

/// Record keys the default rules would write as label names a store
/// cannot take, and numbers it cannot take, among good records: each
/// such record is rejected alone (`bad_label_name`, `bad_number`), the rest
/// stored exactly. An empty key matters most: VictoriaMetrics reads a label
/// named "" as the metric's name, so the record renamed its sample. A
/// negative value is a number like any other. (Before: the samples named
/// `evil` and +Inf, and `ip-src`, `__meta`, `9lives` labels, were stored.)
#[test]
fn record_keys_and_numbers_a_store_cannot_take_are_rejected() {
    let stack = Stack::start();
    let mut host = stack.host("keys", &[("SHUTDOWN_TIMEOUT", SHUTDOWN)]);
    let mut records: Vec<String> = (0..100).map(|i| keyed(i, json!({}))).collect();
    let bad = [
        (json!({"": "evil"}), "bad_label_name"),
        (json!({"ip-src": "10.0.0.9"}), "bad_label_name"),
        (json!({"__meta": "x"}), "bad_label_name"),
        (json!({"9lives": "x"}), "bad_label_name"),
        (json!({"é": "x"}), "bad_label_name"),
    ];
    for (i, (extra, _)) in bad.iter().enumerate() {
        records.insert(10 + i * 10, keyed(1000 + i as u64, extra.clone()));
    }
    // Raw text: serde_json would not write these numbers as they are.
    let raw = |seq: u64, bytes: &str| {
        format!(r#"{{"seq": {seq}, "stamp_updated": "2026-11-25 10:01:02", "bytes": {bytes}}}"#)
    };
    records.insert(70, raw(2000, "1e309"));
    records.insert(75, raw(2001, "-1E+400"));
    records.insert(80, raw(2002, "-5"));
    records.insert(85, raw(2003, r#""NaN""#));
    stack.broker.produce("keys", &records);
    let m = wait_rejected(
        &host,
        &[
            ("bad_label_name", 5.0),
            ("bad_number", 2.0),
            ("non_numeric_value", 1.0),
        ],
    );
    assert_eq!(
        support::parse_counter(&m, "record_errors_total"),
        8.0,
        "{m}"
    );
    let stored = stack.vm.wait_samples(r#"{job="pmacct"}"#, 101, LONG);
    let mut seqs: Vec<u64> = stored
        .iter()
        .map(|s| s.labels["seq"].parse().unwrap())
        .collect();
    seqs.sort_unstable();
    let want: Vec<u64> = (0..100).chain([2002]).collect();
    assert_eq!(seqs, want, "{stored:?}");
    for s in &stored {
        assert_eq!(s.labels["__name__"], "bytes", "{s:?}");
        assert!(s.values.iter().all(|v| v.is_finite()), "{s:?}");
    }
    let negative = stored.iter().find(|s| s.labels["seq"] == "2002").unwrap();
    assert_eq!(negative.values, [-5.0]);
    stops_cleanly(&mut host);
}

/// The same keys through remote write into Prometheus, which refuses a
/// whole request for one label name it cannot take: only the records that
/// carry one are rejected, and the 200 others arrive. (Before: the batch
/// holding them was refused.)
#[test]
fn a_bad_label_name_does_not_cost_a_remote_write_request() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let prom = support::Prometheus::start(dir.path(), Some("1d"));
    let mut records: Vec<String> = (0..200)
        .map(|i| {
            json!({"seq": i, "run": "rw", "stamp_updated": now_stamp(), "bytes": 1}).to_string()
        })
        .collect();
    let stamp = now_stamp();
    records.insert(
        50,
        keyed(
            1000,
            json!({"ip-src": "x", "run": "rw", "stamp_updated": stamp}),
        ),
    );
    records.insert(
        150,
        keyed(1001, json!({"": "x", "run": "rw", "stamp_updated": stamp})),
    );
    broker.produce("rw", &records);
    let url = prom.write_url();
    let env = [
        ("OUTPUT", "remote-write"),
        ("REMOTE_WRITE_URL", url.as_str()),
        ("SHUTDOWN_TIMEOUT", SHUTDOWN),
    ];
    let mut host = Host::start_without_vm(dir.path(), &broker, "rw", &env);
    prom.wait_samples(r#"{run="rw"}"#, "1h", 200, LONG);
    let m = wait_rejected(&host, &[("bad_label_name", 2.0)]);
    assert_eq!(
        support::parse_counter(&m, "record_errors_total"),
        2.0,
        "{m}"
    );
    assert_eq!(
        support::parse_counter(&m, "samples_written_total"),
        200.0,
        "{m}"
    );
    stops_cleanly(&mut host);
}

/// `stamp_updated` a minute ago (epoch seconds), for a receiver that
/// takes recent samples only.
fn now_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 60;
    secs.to_string()
}

/// Long samples fill a batch before its sample count does: 400 samples of
/// 48 KB (19 MB) under a 1 000-sample batch size and a 15 s send time go
/// out in requests of at most 8 MiB plus one call's output (2 MiB here),
/// all accepted, none rejected. (Before: one 20 MB request; a module writing
/// longer lines could build one past what a store takes.)
#[test]
fn long_samples_close_batches_on_bytes() {
    let stack = Stack::start();
    let module = wasm("probe_transform");
    let mut host = stack.host(
        "long",
        &[
            ("TRANSFORM_PATH", module.to_str().unwrap()),
            ("TRANSFORM_MAX_OUTPUT_MB", "2"),
            ("VM_MAX_SAMPLES_PER_SEND", "1000"),
            ("VM_MAX_TIME_TO_SEND", "15"),
            ("SHUTDOWN_TIMEOUT", SHUTDOWN),
        ],
    );
    // 12 labels of 4 000 bytes: VictoriaMetrics drops a series with a
    // label value over 4 KiB (-maxLabelValueLen).
    let pads: String = (0..12)
        .map(|k| format!(r#","p{k}":"{}""#, "x".repeat(4000)))
        .collect();
    let records: Vec<String> = (0..400)
        .map(|i| {
            let line = format!(
                r#"{{"metric":{{"__name__":"long","seq":"{i}"{pads}}},"values":[1],"timestamps":[1795600862000]}}"#
            );
            json!({"do": "raw", "line": line}).to_string()
        })
        .collect();
    stack.broker.produce("long", &records);
    // What the store keeps of 48 KB series is its own business
    // (VictoriaMetrics 1.112 answers 204 and keeps fewer): the host's
    // accepted batches are what is tested.
    wait_for("400 samples accepted", LONG, || {
        (host.counter("samples_written_total") == 400.0).then_some(())
    });
    let m = host.metrics();
    let batches = support::parse_counter(&m, "batches_sent_total");
    let raw = support::parse_counter(&m, "import_body_raw_bytes_total");
    assert!(raw > 19e6, "{m}");
    assert!(
        batches >= 2.0 && raw / batches <= 10.0 * 1048576.0,
        "{batches} batches, {raw} bytes"
    );
    assert_eq!(
        support::parse_counter(&m, "record_errors_total"),
        0.0,
        "{m}"
    );
    stops_cleanly(&mut host);
}
