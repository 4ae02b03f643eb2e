//! Transforms written in Python (componentize-py) and JavaScript
//! (componentize-js) from the same WIT contract: the same samples as the
//! Rust example through the host's `transform test`, the same sandbox, and
//! a hot swap between languages in a running pipeline.
//!
//! The modules are built by scripts/build-polyglot.sh (scripts/test.sh runs
//! it and sets PMACCT_POLYGLOT_WASM_DIR).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pmacct_kafka_vm::transform::Limits;
use serde_json::{json, Value};
use support::{parse_labelled, wait_for, Host, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_pmacct-kafka-vm");

fn polyglot(name: &str) -> PathBuf {
    let dir = std::env::var("PMACCT_POLYGLOT_WASM_DIR").unwrap_or_else(|_| {
        panic!("PMACCT_POLYGLOT_WASM_DIR is not set: run scripts/test.sh, which builds the Python and JavaScript transforms (scripts/build-polyglot.sh)")
    });
    let p = Path::new(&dir).join(format!("{name}.wasm"));
    assert!(p.exists(), "{} was not built", p.display());
    p
}

fn rust(name: &str) -> PathBuf {
    Path::new(env!("PMACCT_GUEST_WASM_DIR")).join(format!("{name}.wasm"))
}

/// The subnets example as built for contract 1.0 (fixtures/contract-1.0).
fn rust_1_0() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/contract-1.0/example_subnets.wasm")
}

/// Records that exercise every branch of the subnets rules and every
/// rejection reason.
fn input() -> Vec<String> {
    let mut v: Vec<String> = vec![
        json!({"event_type": "purge", "ip_src": "10.0.0.1", "ip_dst": "10.0.0.2", "port_src": 443, "port_dst": 51000, "ip_proto": "tcp", "stamp_inserted": "2026-11-25 10:00:00", "stamp_updated": "2026-11-25 10:01:02", "packets": 12, "bytes": 9000}).to_string(),
        json!({"ip_src": "10.1.2.3", "ip_dst": "2001:db8::1", "port_src": 53, "port_dst": 51000, "ip_proto": "udp", "stamp_updated": "2026-11-25 10:01:02", "bytes": 9000}).to_string(),
        json!({"ip_src": "fe80::1:2:3:4", "ip_dst": "::ffff:10.1.2.3", "port_src": "80", "port_dst": 1023.0, "stamp_updated": 1795600921.5, "bytes": 1.5}).to_string(),
        json!({"ip_src": "2001:db8:0:0:1:0:0:1", "ip_dst": "192.168.200.7", "ip_proto": 6, "stamp_updated": "1795600921.250000", "bytes": "77"}).to_string(),
        json!({"ip_src": "10.1.2.3", "ip_dst": "nope", "stamp_updated": "2026-11-25 10:01:02", "bytes": 1}).to_string(),
        json!({"ip_src": "10.1.2.3", "ip_dst": "10.0.0.1", "stamp_updated": "2026-13-25 10:01:02", "bytes": 1}).to_string(),
        "not json".to_string(),
        "[1]".to_string(),
        json!({"ip_src": 5, "ip_dst": "10.0.0.1", "stamp_updated": "2026-11-25 10:01:02", "bytes": 1}).to_string(),
        json!({"ip_src": "10.0.0.1", "ip_dst": "10.0.0.1", "stamp_updated": "2026-11-25 10:01:02", "bytes": "lots"}).to_string(),
        json!({"ip_src": "10.0.0.1", "ip_dst": "10.0.0.1", "stamp_updated": "2026-11-25 10:01:02"}).to_string(),
    ];
    // And a realistic mix, through several chunks.
    for i in 0..3000u32 {
        let port_dst = [443, 53, 8080, 123][i as usize % 4];
        let proto = ["tcp", "udp"][i as usize % 2];
        v.push(
            json!({"event_type": "purge", "ip_src": format!("10.{}.{}.{}", i % 7, i % 251, i % 13),
                "ip_dst": if i % 5 == 0 { format!("2001:db8:{:x}::{:x}", i % 9, i) } else { format!("192.168.{}.{}", i % 3, i % 200) },
                "port_src": 1000 + i % 50000, "port_dst": port_dst,
                "ip_proto": proto, "tos": 0,
                "stamp_inserted": "2026-11-25 10:00:00", "stamp_updated": format!("2026-11-25 10:{:02}:{:02}", i / 60 % 60, i % 60),
                "packets": i % 90 + 1, "bytes": (i + 1) * 1500, "writer_id": "default_kafka/4242"})
            .to_string(),
        );
    }
    v
}

/// A sample as VictoriaMetrics reads it: labels, value, timestamp.
type Sample = (BTreeMap<String, String>, f64, i64);

/// `transform test` on `input`, which holds records it rejects.
fn transform_test_output(module: &Path, input: &Path) -> std::process::Output {
    let out = Command::new(BIN)
        .args(["transform", "test", "--module"])
        .arg(module)
        .arg("--input")
        .arg(input)
        .args(["--vm-metrics-names", "bytes"])
        .output()
        .expect("run transform test");
    assert!(
        out.status.code() == Some(1),
        "{}: rejections expected: {}",
        module.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `transform test` on `input`: the samples and (line, reason) of rejections.
fn transform_test(module: &Path, input: &Path) -> (Vec<Sample>, Vec<(u64, String)>) {
    let out = transform_test_output(module, input);
    let mut samples: Vec<Sample> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("an import line");
            let labels = v["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            (
                labels,
                v["values"][0].as_f64().unwrap(),
                v["timestamps"][0].as_i64().unwrap(),
            )
        })
        .collect();
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let rejected = String::from_utf8(out.stderr)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("line ")?;
            let (n, rest) = rest.split_once(": ")?;
            let (reason, _) = rest.split_once(": ")?;
            Some((n.parse().ok()?, reason.to_string()))
        })
        .collect();
    (samples, rejected)
}

#[test]
fn python_and_javascript_write_the_rust_examples_samples() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("records.jsonl");
    std::fs::write(&file, input().join("\n")).unwrap();

    let (want, want_rejected) = transform_test(&rust("example_subnets"), &file);
    assert_eq!(
        want.len(),
        input().len() - 7,
        "the Rust example's own output"
    );
    assert_eq!(
        want_rejected,
        [
            (5, "invalid_address".to_string()),
            (6, "invalid_timestamp".to_string()),
            (7, "invalid_json".to_string()),
            (8, "not_an_object".to_string()),
            (9, "wrong_type".to_string()),
            (10, "non_numeric_value".to_string()),
            (11, "missing_field".to_string()),
        ]
    );
    let modules = [
        ("python_subnets", polyglot("python_subnets")),
        ("js_subnets", polyglot("js_subnets")),
        ("rust_contract_1_0", rust_1_0()),
    ];
    for (name, module) in modules {
        let (got, rejected) = transform_test(&module, &file);
        assert_eq!(rejected, want_rejected, "{name}: rejections");
        assert_eq!(got.len(), want.len(), "{name}: sample count");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w, "{name}");
        }
    }
}

/// The subnets rules built for contract 1.0 (the module writes import
/// lines) and for 2.0 (it hands over structure, the host writes the
/// lines), in each language: the same lines, byte for byte and in order,
/// and the same rejections. The 1.0 builds are the examples and SDKs as
/// they were on 1.0 (fixtures/contract-1.0). `transform check` names each
/// one's contract.
#[test]
fn a_contract_1_0_module_writes_what_its_2_0_build_does() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("records.jsonl");
    std::fs::write(&file, input().join("\n")).unwrap();
    let pairs = [
        (rust_1_0(), rust("example_subnets")),
        (polyglot("python_subnets_1_0"), polyglot("python_subnets")),
        (polyglot("js_subnets_1_0"), polyglot("js_subnets")),
    ];
    for (v1, v2) in &pairs {
        let name = v2.display();
        let (old, new) = (
            transform_test_output(v1, &file),
            transform_test_output(v2, &file),
        );
        let (old_lines, new_lines) = (
            String::from_utf8_lossy(&old.stdout),
            String::from_utf8_lossy(&new.stdout),
        );
        assert_eq!(old_lines.lines().count(), input().len() - 7, "{name}");
        for (n, (o, w)) in old_lines.lines().zip(new_lines.lines()).enumerate() {
            assert_eq!(o, w, "{name}: line {}", n + 1);
        }
        assert_eq!(old_lines, new_lines, "{name}");
        assert_eq!(rejections(&old), rejections(&new), "{name}");
        for (module, contract) in [(v1, "1.0.0"), (v2, "2.0.0")] {
            let out = Command::new(BIN)
                .args(["transform", "check"])
                .arg(module)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{text}");
            assert!(
                text.contains(&format!("satisfies pmacct:transform@{contract}")),
                "{}: {text}",
                module.display()
            );
        }
    }
}

/// The "line N: reason ..." lines `transform test` printed.
fn rejections(o: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.starts_with("line "))
        .map(str::to_string)
        .collect()
}

/// The sandbox holds for a Python module as for a Rust one: an endless loop
/// and a memory hoard are cut off and rejected alone, a file stays out of
/// reach, and every other record keeps its sample.
/// Settings are read typed in each language (Rust's `Config::parse`,
/// Python's and JavaScript's `config.integer`): a bad one fails `init`
/// with a message naming the key, which `transform check` shows; a good one
/// is taken.
#[test]
fn a_bad_setting_is_named_in_every_language() {
    let modules = [
        rust("example_subnets"),
        polyglot("python_subnets"),
        polyglot("js_subnets"),
    ];
    for module in &modules {
        let check = |config: &str| {
            Command::new(BIN)
                .args(["transform", "check"])
                .arg(module)
                .env_clear()
                .env("TRANSFORM_CONFIG", config)
                .output()
                .expect("transform check")
        };
        let bad = check("prefix_v4=33");
        let said = String::from_utf8_lossy(&bad.stderr).to_string();
        assert_eq!(bad.status.code(), Some(1), "{}: {said}", module.display());
        assert!(
            said.contains("prefix_v4") && said.contains("33"),
            "{}: {said}",
            module.display()
        );
        let good = check("prefix_v4=16;prefix_v6=48");
        assert!(
            good.status.success(),
            "{}: {}",
            module.display(),
            String::from_utf8_lossy(&good.stderr)
        );
    }
}

#[test]
fn a_hostile_python_module_is_contained() {
    let limits = Limits {
        max_memory_bytes: 48 << 20,
        timeout: Some(Duration::from_millis(500)),
        ..Limits::default()
    };
    let flow = |i: u32, action: Option<&str>| {
        let mut v =
            json!({"tag": format!("r{i}"), "stamp_updated": "2026-11-25 10:01:02", "bytes": i});
        if let Some(a) = action {
            v["do"] = json!(a);
        }
        v.to_string()
    };
    let mut records: Vec<String> = (0..30).map(|i| flow(i, None)).collect();
    records[4] = flow(4, Some("loop"));
    records[12] = flow(12, Some("oom"));
    records[20] = flow(20, Some("read"));
    let started = Instant::now();
    let init = [("job".to_string(), "pmacct".to_string())];
    let out = support::run_chunk(&polyglot("python_probe"), limits, &init, &records);
    let errors: BTreeMap<u32, (String, String)> = out
        .errors
        .iter()
        .map(|e| {
            (
                e.index,
                (e.error.reason.to_string(), e.error.detail.clone()),
            )
        })
        .collect();
    assert_eq!(
        errors.keys().copied().collect::<Vec<_>>(),
        [4, 12, 20],
        "{errors:?}"
    );
    assert_eq!(errors[&4].0, "transform_timeout");
    // CPython turns a refused memory.grow into MemoryError, which the SDK
    // reports for the record; a trap in the allocator would be transform_oom.
    assert!(
        ["transform_oom", "transform_exception"].contains(&errors[&12].0.as_str()),
        "{:?}",
        errors[&12]
    );
    assert_eq!(errors[&20].0, "transform_exception");
    assert!(
        errors[&20].1.contains("Error"),
        "the file read failed: {:?}",
        errors[&20]
    );
    let tags: Vec<String> = out
        .samples
        .import_lines()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["metric"]["tag"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let expected: Vec<String> = (0..30)
        .filter(|i| ![4, 12, 20].contains(i))
        .map(|i| format!("r{i}"))
        .collect();
    assert_eq!(tags, expected);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

/// Samples the Python and JavaScript SDKs must refuse reject their record
/// alone, with the Rust SDK's reasons; the others keep their samples, non-ASCII
/// labels included (the SDKs count each string's UTF-8 bytes for the
/// structure's ends). A label value that is not a string is found by the
/// Python SDK only when the chunk's strings are joined, and a lone
/// surrogate by the JavaScript SDK only when it writes the chunk's UTF-8;
/// each runs the chunk again to find the record.
#[test]
fn the_sdks_refuse_bad_samples_record_by_record() {
    let bad = [
        (3, "label_int", "transform_exception"),
        (7, "bad_name", "bad_label_name"),
        (11, "text_value", "non_numeric_value"),
        (15, "ts_huge", "invalid_timestamp"),
        // No UTF-8: Python's SDK hands the bytes over and the host refuses
        // them, JavaScript's refuses them itself (TextEncoder would write
        // U+FFFD instead); a pair split across two strings is lone in each.
        (17, "surrogate", "transform_bad_output"),
        (18, "split_pair", "transform_bad_output"),
    ];
    let tag = |i: u32| format!("zürich ✓ 𝄞 r{i}");
    let records: Vec<String> = (0..20u32)
        .map(|i| {
            let mut v = json!({"tag": tag(i), "stamp_updated": "2026-11-25 10:01:02", "bytes": i});
            if let Some((_, action, _)) = bad.iter().find(|(at, _, _)| *at == i) {
                v["do"] = json!(action);
            }
            v.to_string()
        })
        .collect();
    let init = [("job".to_string(), "pmacct".to_string())];
    for name in ["python_probe", "js_probe"] {
        let out = support::run_chunk(&polyglot(name), Limits::default(), &init, &records);
        let errors: Vec<(u32, String)> = out
            .errors
            .iter()
            .map(|e| (e.index, e.error.reason.to_string()))
            .collect();
        let expected: Vec<(u32, String)> =
            bad.iter().map(|(i, _, r)| (*i, r.to_string())).collect();
        assert_eq!(errors, expected, "{name}: {:?}", out.errors);
        let samples: Vec<(String, f64)> = out
            .samples
            .import_lines()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                assert_eq!(v["metric"]["job"], "pmacct", "{name}: {l}");
                assert_eq!(v["timestamps"][0], 1_795_600_862_000i64, "{name}: {l}");
                (
                    v["metric"]["tag"].as_str().unwrap().to_string(),
                    v["values"][0].as_f64().unwrap(),
                )
            })
            .collect();
        let kept: Vec<(String, f64)> = (0..20u32)
            .filter(|i| !bad.iter().any(|(at, _, _)| at == i))
            .map(|i| (tag(i), f64::from(i)))
            .collect();
        assert_eq!(samples, kept, "{name}");
    }
}

/// A running pipeline swaps from the Python module to the JavaScript one
/// (file renamed over TRANSFORM_PATH); every record is written once, by
/// one or the other, with the subnets labels.
#[test]
fn the_pipeline_runs_python_then_javascript() {
    let Stack { dir, broker, vm } = Stack::start();
    let path = dir.path().join("transform.wasm");
    std::fs::copy(polyglot("python_subnets"), &path).unwrap();
    let record = |i: u32| {
        json!({"ip_src": format!("10.9.{}.{}", i % 4, i % 250), "ip_dst": "192.168.1.1", "port_src": 1000 + i,
            "port_dst": 443, "ip_proto": "tcp", "stamp_updated": format!("2026-11-25 11:{:02}:{:02}", i / 60, i % 60),
            "bytes": i + 1})
        .to_string()
    };
    broker.produce("py", &(0..200).map(record).collect::<Vec<_>>());
    let host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "py",
        &[("TRANSFORM_PATH", path.to_str().unwrap())],
    );
    vm.wait_samples(r#"{__name__="bytes"}"#, 200, Duration::from_secs(120));

    let tmp = dir.path().join("transform.tmp");
    std::fs::copy(polyglot("js_subnets"), &tmp).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    wait_for(
        "the reload to the JavaScript module",
        Duration::from_secs(60),
        || {
            (parse_labelled(&host.metrics(), "transform_reloads_total", "result", "ok") >= 1.0)
                .then_some(())
        },
    );
    broker.produce("py", &(200..400).map(record).collect::<Vec<_>>());
    let got = vm.wait_samples(r#"{__name__="bytes"}"#, 400, Duration::from_secs(120));
    let total: f64 = got.iter().flat_map(|s| s.values.iter()).sum();
    assert_eq!(total, (1..=400).sum::<u32>() as f64);
    for s in &got {
        assert!(s.labels["src_net"].starts_with("10.9.") && s.labels["src_net"].ends_with(".0/24"));
        assert_eq!(s.labels["dst_port"], "443");
        assert!(!s.labels.contains_key("ip_src"));
    }
}

/// A module that reports its record errors in reverse order and twice (the
/// contract asks for index order, once): every rejected record reaches the
/// dead-letter topic once, with its reason, and no good record does.
#[test]
fn errors_out_of_order_and_twice_dead_letter_each_rejected_record_once() {
    let Stack { dir, broker, vm } = Stack::start();
    let module = polyglot("python_probe");
    let host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "disorder",
        &[
            ("TRANSFORM_PATH", module.to_str().unwrap()),
            ("TRANSFORM_CONFIG", "errors=reversed_twice"),
            ("KAFKA_DLQ_TOPIC", "disorder-dlq"),
        ],
    );
    // Every third record has no `bytes`: missing_field.
    let records: Vec<String> = (0..300)
        .map(|i| {
            let mut v = json!({"tag": format!("r{i}"), "stamp_updated": "2026-11-25 10:01:02"});
            if i % 3 != 0 {
                v["bytes"] = json!(i);
            }
            v.to_string()
        })
        .collect();
    broker.produce("disorder", &records);
    vm.wait_samples(r#"{__name__="probe"}"#, 200, Duration::from_secs(120));
    let letters = broker.read_all("disorder-dlq", 100, Duration::from_secs(60));
    let mut lettered: Vec<String> = letters
        .iter()
        .map(|(payload, headers)| {
            assert_eq!(headers["x-reason"], "missing_field");
            String::from_utf8(payload.clone()).unwrap()
        })
        .collect();
    lettered.sort();
    let mut rejected: Vec<String> = records.iter().step_by(3).cloned().collect();
    rejected.sort();
    assert_eq!(lettered, rejected);
    // Nothing more arrives: each record was dead-lettered once.
    let again = broker.read_all("disorder-dlq", 101, Duration::from_secs(15));
    assert_eq!(again.len(), 100);
    assert_eq!(
        parse_labelled(
            &host.metrics(),
            "record_errors_total",
            "reason",
            "missing_field"
        ),
        100.0
    );
}
