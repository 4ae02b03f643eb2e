//! Hot reload against the real binary, broker and VictoriaMetrics: every
//! way a module is replaced gives exactly one reload and then rest, and
//! swaps under load lose and repeat no record.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};
use support::{deploy, parse_counter, parse_labelled, running_sha, wait_for, Broker, Host, Stack};

fn wasm(name: &str) -> PathBuf {
    let p = Path::new(env!("PMACCT_GUEST_WASM_DIR")).join(format!("{name}.wasm"));
    assert!(p.exists(), "{} was not built", p.display());
    p
}

fn sha(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("read module")))
}

fn flow(seq: u64) -> String {
    json!({"seq": seq, "ip_src": "10.1.2.3", "ip_dst": "192.168.7.9", "port_src": 443,
        "port_dst": 51000, "ip_proto": "tcp", "stamp_updated": "2026-11-25 10:01:02",
        "packets": 2, "bytes": 100 + seq})
    .to_string()
}

fn reloads(host: &Host, result: &str) -> f64 {
    parse_labelled(&host.metrics(), "transform_reloads_total", "result", result)
}

/// User plus system CPU time of a process so far, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/pid/stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // SAFETY: sysconf only reads a constant.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Reload counters by result, and the running module, must stay as they are
/// for `quiet`; returns the host's CPU seconds in that time.
fn rests(host: &Host, quiet: Duration, ok: f64, unchanged: f64, module: &str) -> f64 {
    let cpu = cpu_seconds(host.pid());
    std::thread::sleep(quiet);
    let cpu = cpu_seconds(host.pid()) - cpu;
    assert_eq!(reloads(host, "ok"), ok, "reloads after the change settled");
    assert_eq!(reloads(host, "unchanged"), unchanged);
    assert_eq!(reloads(host, "error"), 0.0);
    assert_eq!(running_sha(host), module, "the module running");
    cpu
}

fn wait_reloads(host: &Host, result: &str, n: f64) {
    wait_for(
        &format!("transform_reloads_total{{result=\"{result}\"}} = {n}"),
        Duration::from_secs(20),
        || (reloads(host, result) >= n).then_some(()),
    );
    wait_for("the swap", Duration::from_secs(20), || {
        let log = host.log_text();
        (log.matches("transform swapped").count() as f64 >= n || result != "ok").then_some(())
    });
}

/// A ConfigMap-style folder: `module.wasm -> ..data/module.wasm`,
/// `..data -> ..<version>`, swapped the way the kubelet does it (a new
/// versioned folder, a temporary symlink renamed onto `..data`).
fn kubernetes_swap(folder: &Path, version: &str, module: &Path) {
    let versioned = folder.join(format!("..{version}"));
    std::fs::create_dir(&versioned).unwrap();
    std::fs::copy(module, versioned.join("module.wasm")).unwrap();
    let tmp = folder.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, folder.join("..data")).unwrap();
}

#[test]
fn each_kind_of_change_reloads_once_and_then_rests() {
    let Stack { dir, broker, vm } = Stack::start();
    let (default, probe) = (wasm("default_transform"), wasm("probe_transform"));
    let (default_sha, probe_sha) = (sha(&default), sha(&probe));
    let folder = dir.path().join("mounted");
    std::fs::create_dir(&folder).unwrap();
    kubernetes_swap(&folder, "v1", &default);
    let path = folder.join("module.wasm");
    std::os::unix::fs::symlink("..data/module.wasm", &path).unwrap();
    let host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "rests",
        &[
            ("TRANSFORM_PATH", path.to_str().unwrap()),
            ("ADMIN_TOKEN", "t"),
        ],
    );
    assert_eq!(running_sha(&host), default_sha);
    assert_eq!(support::transform_info(&host, "contract"), "2.0");
    let quiet = Duration::from_secs(10);
    let mut cpu = Vec::new();

    kubernetes_swap(&folder, "v2", &probe);
    wait_reloads(&host, "ok", 1.0);
    cpu.push(rests(&host, quiet, 1.0, 0.0, &probe_sha));
    // The probe is built for contract 1.0: `transform_info` says so.
    assert_eq!(support::transform_info(&host, "contract"), "1.0");

    // A deploy tool: a file beside the path, renamed onto it (this replaces
    // the symlink with a file).
    deploy(&default, &path);
    wait_reloads(&host, "ok", 2.0);
    cpu.push(rests(&host, quiet, 2.0, 0.0, &default_sha));

    // `cp` over the file: truncated and written in place.
    std::fs::copy(&probe, &path).unwrap();
    wait_reloads(&host, "ok", 3.0);
    cpu.push(rests(&host, quiet, 3.0, 0.0, &probe_sha));

    // An operator's POST /reload of the file unchanged loads nothing.
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/reload", host.admin))
        .bearer_auth("t")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    wait_reloads(&host, "unchanged", 1.0);
    cpu.push(rests(&host, quiet, 3.0, 1.0, &probe_sha));

    // The same build deployed again is a file event, not a change.
    deploy(&probe, &path);
    wait_reloads(&host, "unchanged", 2.0);
    rests(&host, Duration::from_secs(2), 3.0, 2.0, &probe_sha);
    // `touch` opens the file for writing: a closed write, the same module.
    support::run_ok(std::process::Command::new("touch").arg(&path), "touch");
    wait_reloads(&host, "unchanged", 3.0);
    rests(&host, Duration::from_secs(2), 3.0, 3.0, &probe_sha);
    // Reads and attribute changes are not events that count at all.
    std::fs::read(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions();
    std::fs::set_permissions(&path, mode).unwrap();
    rests(&host, Duration::from_secs(2), 3.0, 3.0, &probe_sha);

    // An idle host: librdkafka's timers and the batch clock, ~10 ms a second.
    for (what, seconds) in ["symlink swap", "rename", "cp in place", "POST /reload"]
        .iter()
        .zip(&cpu)
    {
        assert!(
            *seconds < 0.5,
            "{seconds:.2} s of CPU in the 10 s after the {what}"
        );
    }
    eprintln!("host CPU in the 10 s after each change (symlink swap, rename, cp, POST /reload): {cpu:.2?} s");
}

#[test]
fn swapping_modules_under_load_loses_and_repeats_nothing() {
    let Stack { dir, broker, vm } = Stack::start();
    let path = dir.path().join("transform.wasm");
    let modules = [wasm("default_transform"), wasm("probe_transform")];
    deploy(&modules[0], &path);
    let mut host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "swap",
        &[
            ("TRANSFORM_PATH", path.to_str().unwrap()),
            ("VM_MAX_SAMPLES_PER_SEND", "200"),
        ],
    );

    let done = Arc::new(AtomicBool::new(false));
    let total = 45_000u64;
    let producer = {
        let done = done.clone();
        let addr = broker.addr.clone();
        std::thread::spawn(move || {
            let b = Broker::connect(&addr);
            for round in 0..150u64 {
                let batch: Vec<String> = (0..300).map(|i| flow(round * 300 + i)).collect();
                b.produce("swap", &batch);
                std::thread::sleep(Duration::from_millis(100));
            }
            done.store(true, Ordering::Release);
        })
    };

    let swaps = 20;
    let mut latencies = Vec::new();
    for swap in 0..swaps {
        let swapped = host.log_text().matches("transform swapped").count();
        let renamed = Instant::now();
        deploy(&modules[(swap + 1) % 2], &path);
        // The host's log says when the new module took its first batch.
        while host.log_text().matches("transform swapped").count() == swapped {
            assert!(renamed.elapsed() < Duration::from_secs(20), "no swap");
            std::thread::sleep(Duration::from_millis(2));
        }
        latencies.push(renamed.elapsed());
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(
        !done.load(Ordering::Acquire),
        "the swaps were not all under load"
    );
    producer.join().unwrap();

    let series = vm.wait_samples(
        r#"{__name__="bytes"}"#,
        total as usize,
        Duration::from_secs(90),
    );
    let mut seen = vec![0u32; total as usize];
    let (mut from_default, mut from_probe, mut sum) = (0, 0, 0.0);
    for s in &series {
        let seq: usize = s.labels["seq"].parse().unwrap();
        seen[seq] += s.values.len() as u32;
        sum += s.values.iter().sum::<f64>();
        match s.labels.get("module").map(String::as_str) {
            Some("probe") => from_probe += 1,
            None if s.labels.contains_key("ip_src") => from_default += 1,
            other => panic!("sample from neither module: {other:?} {s:?}"),
        }
    }
    assert!(seen.iter().all(|&n| n == 1), "every record exactly once");
    assert_eq!(sum as u64, (0..total).map(|s| 100 + s).sum::<u64>());
    assert!(
        from_default > 0 && from_probe > 0,
        "{from_default} / {from_probe}"
    );
    // One reload a swap, and none after.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(reloads(&host, "ok"), swaps as f64);
    assert_eq!(reloads(&host, "unchanged") + reloads(&host, "error"), 0.0);
    assert!(host.is_running());
    latencies.sort();
    eprintln!(
        "reload latency under load (rename onto TRANSFORM_PATH → first batch on the new module), {} swaps: median {:?}, max {:?}",
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
}

/// The `seq` of every record a DLQ topic holds (duplicates merged).
fn dead_lettered(broker: &Broker, topic: &str) -> std::collections::BTreeSet<u64> {
    broker
        // Everything there: a new reader's group join alone takes seconds.
        .read_all(topic, usize::MAX, Duration::from_secs(12))
        .iter()
        .map(|(payload, _)| {
            let v: serde_json::Value = serde_json::from_slice(payload).expect("a record");
            v["seq"].as_u64().expect("seq")
        })
        .collect()
}

/// A module that spins on every record: the host rejects records at a
/// bounded rate and stays in its group far past `max.poll.interval.ms`;
/// one SIGTERM stops it within SHUTDOWN_TIMEOUT; after a restart a fixed
/// module dropped in takes over within seconds; every record ends up
/// either in VictoriaMetrics or in the dead-letter topic.
#[test]
fn a_module_that_loops_on_every_record_cannot_stall_the_host() {
    let Stack { dir, broker, vm } = Stack::start();
    broker.create_topic("spin", 1);
    let path = dir.path().join("transform.wasm");
    deploy(&wasm("probe_transform"), &path);
    let env = [
        ("TRANSFORM_PATH", path.to_str().unwrap()),
        ("TRANSFORM_CONFIG", "always=loop"),
        ("TRANSFORM_TIMEOUT_MS", "200"),
        ("TRANSFORM_FAULT_BUDGET_MS", "1000"),
        ("KAFKA_PROPERTY_MAX_POLL_INTERVAL_MS", "6000"),
        ("KAFKA_DLQ_TOPIC", "spin-dlq"),
        ("SHUTDOWN_TIMEOUT", "10"),
    ];
    let total = 20_000u64;
    let records: Vec<String> = (0..total).map(flow).collect();
    broker.produce("spin", &records);
    let timeouts = |h: &Host| {
        parse_labelled(
            &h.metrics(),
            "record_errors_total",
            "reason",
            "transform_timeout",
        )
    };

    let mut host = Host::start(dir.path(), &broker, &vm, "spin", &env);
    let started = Instant::now();
    wait_for("the first rejections", Duration::from_secs(30), || {
        (timeouts(&host) > 0.0).then_some(())
    });
    std::thread::sleep(Duration::from_secs(8));
    let rejected = timeouts(&host);
    let spun = started.elapsed().as_secs_f64();
    assert!(
        rejected >= 2048.0,
        "{rejected} records rejected in {spun:.1} s"
    );
    let log = host.log_text();
    assert!(
        !log.contains("revoked") && !log.contains("maximum poll interval"),
        "the host left its group:\n{log}"
    );
    let asked = Instant::now();
    host.signal_term();
    let status = host.wait_exit(Duration::from_secs(10));
    let stopped = asked.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(host.log_text().contains("stopped"), "{}", host.log_text());

    let host = Host::start(dir.path(), &broker, &vm, "spin", &env);
    wait_for(
        "rejections after the restart",
        Duration::from_secs(30),
        || (timeouts(&host) > 0.0).then_some(()),
    );
    let fixed = wasm("default_transform");
    let deployed = Instant::now();
    deploy(&fixed, &path);
    wait_for("the fixed module", Duration::from_secs(10), || {
        (running_sha(&host) == sha(&fixed)).then_some(())
    });
    let took_over = deployed.elapsed();
    let all: std::collections::BTreeSet<u64> = (0..total).collect();
    let (stored, lettered) = wait_for(
        "every record stored or dead-lettered",
        Duration::from_secs(120),
        || {
            let series = vm.export(r#"{__name__="bytes"}"#);
            let stored: Vec<u64> = series
                .iter()
                .map(|s| s.labels["seq"].parse().unwrap())
                .collect();
            let lettered = dead_lettered(&broker, "spin-dlq");
            let seen: std::collections::BTreeSet<u64> =
                stored.iter().chain(&lettered).copied().collect();
            (seen == all).then_some((series, lettered))
        },
    );
    // Nothing before the fixed module yielded samples, so none is twice.
    assert!(stored.iter().all(|s| s.values.len() == 1));
    assert!(stored.len() as u64 + lettered.len() as u64 >= total);
    assert!(host.log_text().matches("transform swapped").count() == 1);
    eprintln!(
        "looping module: {rejected} records rejected in {spun:.1} s, SIGTERM to exit {stopped:?}, \
         fixed module running {took_over:?} after the rename; {} stored, {} dead-lettered",
        stored.len(),
        lettered.len()
    );
}

/// A reload to a module that traps on every record is rolled back to the
/// module it replaced, with a log line, the counter and a /health message,
/// and nothing is lost: the records it failed are transformed by the
/// module rolled back to.
#[test]
fn a_reload_to_a_module_that_traps_is_rolled_back_losing_nothing() {
    rolled_back_losing_nothing("trap");
}

/// A module that writes nothing and reports nothing loses every record
/// without a fault; on probation it is found by running its predecessor on
/// what it wrote nothing for, and rolled back the same way.
#[test]
fn a_reload_to_a_module_that_writes_nothing_is_rolled_back_losing_nothing() {
    rolled_back_losing_nothing("silent");
}

/// The default rules, then the probe misbehaving as `always` says on every
/// record: rolled back, every record's sample exactly once, none of the
/// probe's, no record error.
fn rolled_back_losing_nothing(always: &str) {
    let Stack { dir, broker, vm } = Stack::start();
    let path = dir.path().join("transform.wasm");
    let good = wasm("default_transform");
    deploy(&good, &path);
    let host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "rollback",
        &[
            ("TRANSFORM_PATH", path.to_str().unwrap()),
            // The probe reads it; the default rules ignore it.
            ("TRANSFORM_CONFIG", &format!("always={always}")),
        ],
    );
    let first: Vec<String> = (0..1000).map(flow).collect();
    broker.produce("rollback", &first);
    vm.wait_samples(r#"{__name__="bytes"}"#, 1000, Duration::from_secs(60));

    deploy(&wasm("probe_transform"), &path);
    wait_reloads(&host, "ok", 1.0);
    let second: Vec<String> = (1000..2000).map(flow).collect();
    broker.produce("rollback", &second);
    wait_for("the rollback", Duration::from_secs(30), || {
        (reloads(&host, "rolled_back") == 1.0).then_some(())
    });
    let series = vm.wait_samples(r#"{__name__="bytes"}"#, 2000, Duration::from_secs(60));
    let mut seen = vec![0u32; 2000];
    for s in &series {
        assert!(
            !s.labels.contains_key("module"),
            "a sample of the bad module: {s:?}"
        );
        seen[s.labels["seq"].parse::<usize>().unwrap()] += s.values.len() as u32;
    }
    assert!(seen.iter().all(|&n| n == 1), "every record exactly once");
    let m = host.metrics();
    assert_eq!(parse_counter(&m, "record_errors_total"), 0.0, "{m}");
    assert_eq!(running_sha(&host), sha(&good));
    let health: serde_json::Value = reqwest::blocking::get(format!("{}/health", host.admin))
        .unwrap()
        .json()
        .unwrap();
    let notice = health["transform"].as_str().unwrap_or_default();
    assert!(notice.contains("rolled back"), "{health}");
    assert!(host.log_text().contains("rolled back"));
    // The file still holds the bad module, and nothing reloads it again.
    rests(&host, Duration::from_secs(3), 1.0, 0.0, &sha(&good));
}
