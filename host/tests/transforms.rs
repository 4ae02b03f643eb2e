//! Custom transforms: the examples and hostile modules through the host's
//! loader, the `transform` CLI, and a broken module meeting a running host
//! (reloads themselves: tests/reload.rs).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pmacct_kafka_vm::transform::Output;
use pmacct_kafka_vm::transform::{Limits, LoadError, Sandbox};
use serde_json::json;
use support::{deploy, parse_counter, parse_labelled, running_sha, wait_for, Host, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_pmacct-kafka-vm");

/// A guest module built by the host's build script (once per build).
fn wasm(name: &str) -> PathBuf {
    let p = Path::new(env!("PMACCT_GUEST_WASM_DIR")).join(format!("{name}.wasm"));
    assert!(p.exists(), "{} was not built", p.display());
    p
}

fn config(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    // Later entries win in `Config::get`, as with the host's TRANSFORM_CONFIG.
    [("job", "pmacct"), ("instance", "probe-1")]
        .iter()
        .chain(pairs)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Load a module as the pipeline does and run one chunk through it.
fn run_module(name: &str, limits: Limits, cfg: &[(&str, &str)], records: &[String]) -> Output {
    support::run_chunk(&wasm(name), limits, &config(cfg), records)
}

fn lines(out: &Output) -> Vec<serde_json::Value> {
    out.samples
        .import_lines()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn flow(seq: u64, extra: serde_json::Value) -> String {
    let mut v = json!({"seq": seq, "ip_src": "10.1.2.3", "ip_dst": "192.168.7.9", "port_src": 443,
        "port_dst": 51000, "ip_proto": "tcp", "stamp_updated": "2026-11-25 10:01:02",
        "packets": 2, "bytes": 100 + seq});
    if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    v.to_string()
}

#[test]
fn hostile_records_are_isolated_with_their_reason() {
    let limits = Limits {
        max_memory_bytes: 32 << 20,
        timeout: Some(Duration::from_millis(200)),
        ..Limits::default()
    };
    let mut records: Vec<String> = (0..40).map(|i| flow(i, json!({}))).collect();
    records[3] = flow(3, json!({"do": "loop"}));
    records[17] = flow(17, json!({"do": "oom"}));
    records[25] = flow(25, json!({"do": "trap"}));
    records[31] = flow(31, json!({"do": "read", "path": "/etc/passwd"}));
    let started = Instant::now();
    let out = run_module("probe_transform", limits, &[], &records);
    let reasons: Vec<(u32, String)> = out
        .errors
        .iter()
        .map(|e| (e.index, e.error.reason.to_string()))
        .collect();
    assert_eq!(
        reasons,
        [
            (3, "transform_timeout".to_string()),
            (17, "transform_oom".to_string()),
            (25, "transform_trap".to_string()),
            (31, "fs_denied".to_string()),
        ]
    );
    let seqs: Vec<String> = lines(&out)
        .iter()
        .map(|l| l["metric"]["seq"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (0..40u64)
        .filter(|i| ![3, 17, 25, 31].contains(i))
        .map(|i| i.to_string())
        .collect();
    assert_eq!(seqs, expected, "every other record keeps its sample");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "isolation took {:?}",
        started.elapsed()
    );
}

/// A contract 2.0 module that hands over a structure the host cannot
/// trust (a string or series index past its table, a label name a store
/// refuses, text that is not UTF-8, lists of two lengths, an empty name):
/// each call holding such a record is a fault, split until the record is
/// alone, which is rejected as `transform_bad_output`; every other record
/// keeps its sample, written from the structure.
#[test]
fn a_modules_bad_structure_is_isolated_to_its_records() {
    let defects = [
        "string_index",
        "label_name",
        "utf8",
        "point_series",
        "lengths",
        "empty_name",
    ];
    let mut records: Vec<String> = (0..30).map(|i| flow(i, json!({}))).collect();
    let bad: Vec<usize> = (0..defects.len()).map(|k| 2 + 4 * k).collect();
    for (&at, defect) in bad.iter().zip(defects) {
        records[at] = flow(at as u64, json!({"do": defect}));
    }
    let out = run_module("structure_probe", Limits::default(), &[], &records);
    let rejected: Vec<(u32, &str)> = out
        .errors
        .iter()
        .map(|e| (e.index, e.error.reason.as_ref()))
        .collect();
    let want: Vec<(u32, &str)> = bad
        .iter()
        .map(|&i| (i as u32, "transform_bad_output"))
        .collect();
    assert_eq!(rejected, want);
    let seqs: Vec<String> = lines(&out)
        .iter()
        .map(|l| l["metric"]["seq"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (0..30)
        .filter(|i| !bad.contains(i))
        .map(|i| i.to_string())
        .collect();
    assert_eq!(seqs, expected, "every other record keeps its sample");
}

/// A contract 2.0 module handing over more than TRANSFORM_MAX_OUTPUT_MB
/// in one call: the call is a fault, split until the record that wrote
/// the 2 MiB label is alone; it is rejected as
/// `transform_output_too_large`, and every other record keeps its sample.
#[test]
fn a_2_0_output_over_the_limit_is_isolated_to_its_record() {
    let mut records: Vec<String> = (0..20).map(|i| flow(i, json!({}))).collect();
    records[13] = flow(13, json!({"do": "huge"}));
    let limits = Limits {
        max_output_bytes: 1 << 20,
        ..Limits::default()
    };
    let out = run_module("structure_probe", limits, &[], &records);
    let rejected: Vec<(u32, &str)> = out
        .errors
        .iter()
        .map(|e| (e.index, e.error.reason.as_ref()))
        .collect();
    assert_eq!(rejected, [(13, "transform_output_too_large")]);
    let seqs: Vec<String> = lines(&out)
        .iter()
        .map(|l| l["metric"]["seq"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (0..20)
        .filter(|&i| i != 13)
        .map(|i| i.to_string())
        .collect();
    assert_eq!(seqs, expected);
}

#[test]
fn the_examples_run_through_the_host_loader() {
    let records = vec![flow(1, json!({})), flow(2, json!({"bytes": 50}))];

    let counters = lines(&run_module(
        "example_counters",
        Limits::default(),
        &[],
        &records,
    ));
    let totals: Vec<f64> = counters
        .iter()
        .filter(|l| l["metric"]["__name__"] == "pmacct_bytes_total")
        .map(|l| l["values"][0].as_f64().unwrap())
        .collect();
    assert_eq!(totals, [101.0, 151.0], "one flow, a running total");

    let subnets = lines(&run_module(
        "example_subnets",
        Limits::default(),
        &[],
        &records,
    ));
    assert_eq!(subnets[0]["metric"]["src_net"], "10.1.2.0/24");
    assert_eq!(subnets[0]["metric"]["dst_port"], "other");
    assert!(subnets[0]["metric"].get("ip_src").is_none());

    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("customers.csv");
    std::fs::write(
        &table,
        "prefix,customer\n10.1.0.0/16,acme\n192.168.0.0/16,home\n",
    )
    .unwrap();
    // The table reaches the module the way an operator gives it: declared in
    // ENRICH_TABLES, loaded by the host, looked up through the contract.
    let out = Command::new(BIN)
        .args(["transform", "test", "--module"])
        .arg(wasm("example_enrich"))
        .env(
            "ENRICH_TABLES",
            format!("customers=csv:{}", table.display()),
        )
        .stdin(std::fs::File::open(write_lines(dir.path(), &records)).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 2);
    assert!(
        text.contains(r#""src_customer":"acme","dst_customer":"home""#),
        "{text}"
    );
    // Without ENRICH_TABLES every lookup answers nothing: the example's
    // default, and one warning for all of them (not one a record).
    let out = Command::new(BIN)
        .args(["transform", "test", "--module"])
        .arg(wasm("example_enrich"))
        .stdin(std::fs::File::open(write_lines(dir.path(), &records)).unwrap())
        .output()
        .unwrap();
    let (text, said) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{said}");
    assert_eq!(
        text.matches(r#""src_customer":"unknown","dst_customer":"unknown""#)
            .count(),
        2,
        "{text}"
    );
    assert_eq!(
        said.matches("ENRICH_TABLES does not declare").count(),
        1,
        "{said}"
    );
}

/// The host runs under valgrind, as docs/performance.md has users profile
/// their transforms with callgrind: the embedded module through `transform
/// test`, the samples out, exit code 0. (It crashed on the thread CPU clock
/// while that went through rustix's own vDSO reader.)
#[test]
fn transform_test_runs_under_valgrind() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<String> = (0..3)
        .map(|i| {
            format!(
                r#"{{"ip_src": "10.0.0.{i}", "stamp_updated": "2026-11-25 10:01:02", "packets": 1, "bytes": {}}}"#,
                100 + i
            )
        })
        .collect();
    let out = Command::new("valgrind")
        .args(["--tool=none", "--"])
        .args([BIN, "transform", "test", "--input"])
        .arg(write_lines(dir.path(), &records))
        .output()
        .expect("valgrind is installed by scripts/setup.sh");
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(samples.len(), 3);
    assert_eq!(samples[2]["values"][0], 102);
    assert_eq!(samples[2]["metric"]["ip_src"], "10.0.0.2");
}

fn write_lines(dir: &Path, records: &[String]) -> PathBuf {
    let p = dir.join("records.jsonl");
    std::fs::write(&p, records.join("\n") + "\n").unwrap();
    p
}

#[test]
fn transform_cli_checks_and_tests_modules() {
    let dir = tempfile::tempdir().unwrap();
    let check = |module: &Path, env: &[(&str, &str)]| {
        let out = Command::new(BIN)
            .args(["transform", "check"])
            .arg(module)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, text) = check(&wasm("probe_transform"), &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("pmacct:transform@1.0.0"), "{text}");
    let (code, text) = check(&wasm("example_subnets"), &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("pmacct:transform@2.0.0"), "{text}");

    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm but not really").unwrap();
    let (code, text) = check(&garbage, &[]);
    assert_eq!(code, Some(1));
    assert!(text.contains("not a valid transform component"), "{text}");

    let (code, text) = check(
        &wasm("probe_transform"),
        &[("TRANSFORM_CONFIG", "fail_init=on purpose")],
    );
    assert_eq!(code, Some(1));
    assert!(
        text.contains("init rejected the configuration") && text.contains("on purpose"),
        "{text}"
    );

    let records = vec![
        flow(1, json!({})),
        "not json".to_string(),
        flow(2, json!({"do": "trap"})),
    ];
    let out = Command::new(BIN)
        .args(["transform", "test", "--module"])
        .arg(wasm("probe_transform"))
        .arg("--input")
        .arg(write_lines(dir.path(), &records))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stderr.contains("line 2: invalid_json") && stderr.contains("line 3: transform_trap"),
        "{stderr}"
    );

    // TRANSFORM_PERF_MAP: `perf` finds the module's functions by name in
    // /tmp/perf-<pid>.map, the file it reads for code it has no binary of.
    let child = Command::new(BIN)
        .args(["transform", "test", "--module"])
        .arg(wasm("example_subnets"))
        .arg("--input")
        .arg(write_lines(dir.path(), &[flow(1, json!({}))]))
        .env("TRANSFORM_PERF_MAP", "YES")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let map = PathBuf::from(format!("/tmp/perf-{}.map", child.id()));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = std::fs::read_to_string(&map).unwrap_or_default();
    let _ = std::fs::remove_file(&map);
    assert!(
        text.lines()
            .any(|l| l.ends_with("pmacct:transform/guest@2.0.0#transform")),
        "no named transform function in {}: {} lines",
        map.display(),
        text.lines().count()
    );
}

#[test]
fn a_component_without_the_contract_is_rejected() {
    // The smallest valid component: header only, no exports.
    let empty_component = b"\0asm\x0d\x00\x01\x00";
    let sandbox = Sandbox::new(Limits::default()).unwrap();
    match sandbox.compile(empty_component, "empty".into()) {
        Err(LoadError::Contract(msg)) => {
            assert!(msg.contains("pmacct:transform/guest@2.0.0"), "{msg}")
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("an empty component was accepted"),
    }
}

#[test]
fn a_broken_module_leaves_the_running_one_in_place() {
    let Stack { dir, broker, vm } = Stack::start();
    let path = dir.path().join("transform.wasm");
    deploy(&wasm("probe_transform"), &path);
    let mut host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "broken",
        &[
            ("TRANSFORM_PATH", path.to_str().unwrap()),
            ("TRANSFORM_TIMEOUT_MS", "300"),
            ("TRANSFORM_MAX_MEMORY_MB", "32"),
            ("ADMIN_TOKEN", "t"),
        ],
    );
    let sha = running_sha(&host);
    std::fs::write(dir.path().join("junk"), b"this is not wasm").unwrap();
    deploy(&dir.path().join("junk"), &path);
    wait_for(
        "the failed reload to be counted",
        Duration::from_secs(20),
        || {
            (parse_labelled(
                &host.metrics(),
                "transform_reloads_total",
                "result",
                "error",
            ) >= 1.0)
                .then_some(())
        },
    );
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/reload", host.admin))
        .bearer_auth("t")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    let body: serde_json::Value = resp.json().unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not a valid transform component"),
        "{body}"
    );
    assert_eq!(running_sha(&host), sha, "the old module still runs");

    // Hostile records meet the sandbox in the real pipeline.
    let mut records: Vec<String> = (0..200).map(|i| flow(i, json!({}))).collect();
    records.push(flow(1000, json!({"do": "loop"})));
    records.push(flow(1001, json!({"do": "oom"})));
    records.push(flow(1002, json!({"do": "trap"})));
    records.push(flow(1003, json!({"do": "read", "path": "/etc/hostname"})));
    broker.produce("broken", &records);
    vm.wait_samples(r#"{module="probe"}"#, 200, Duration::from_secs(60));
    let m = wait_for("all records counted", Duration::from_secs(30), || {
        let m = host.metrics();
        (parse_counter(&m, "record_errors_total") == 4.0).then_some(m)
    });
    for reason in [
        "transform_timeout",
        "transform_oom",
        "transform_trap",
        "fs_denied",
    ] {
        assert_eq!(
            parse_labelled(&m, "record_errors_total", "reason", reason),
            1.0,
            "{reason}\n{m}"
        );
    }
    assert!(host.is_running());
    // The looping record spun for a whole time limit (300 ms) at least once:
    // the stage's CPU counter shows it, and the thread's CPU time cannot
    // exceed the calls' wall time.
    let cpu = parse_counter(&m, "transform_cpu_seconds_total");
    let wall = parse_counter(&m, "transform_duration_seconds_sum");
    assert!(cpu >= 0.25, "transform CPU {cpu} s\n{m}");
    assert!(cpu <= wall + 0.01, "CPU {cpu} s > wall {wall} s");

    // A good module through POST /reload.
    deploy(&wasm("default_transform"), &path);
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/reload", host.admin))
        .bearer_auth("t")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}
