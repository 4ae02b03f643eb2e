//! The admin port against the callers it may meet on `0.0.0.0:9003`, with
//! the real binary, broker and VictoriaMetrics: `POST /reload` refused
//! without `ADMIN_TOKEN`, a reload of the module already running changes
//! nothing, a client that never finishes its headers is cut off, and idle
//! connections past the cap neither lock `/metrics` out nor exhaust the
//! host's file descriptors.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{parse_labelled, wait_for, Host, Stack};

const LONG: Duration = Duration::from_secs(60);
/// The host's header-read timeout is 5 s; a connection still open well
/// after it was not cut.
const CUT_WITHIN: Duration = Duration::from_secs(12);

fn probe() -> PathBuf {
    let p = Path::new(env!("PMACCT_GUEST_WASM_DIR")).join("probe_transform.wasm");
    assert!(p.exists(), "{} was not built", p.display());
    p
}

fn flow(seq: u64) -> String {
    json!({"seq": seq, "stamp_updated": "2026-11-25 10:01:02", "bytes": 100 + seq}).to_string()
}

fn reloads(host: &Host, result: &str) -> f64 {
    parse_labelled(&host.metrics(), "transform_reloads_total", "result", result)
}

fn post_reload(host: &Host, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = reqwest::blocking::Client::new().post(format!("{}/reload", host.admin));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().expect("POST /reload");
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or_default())
}

/// A GET of `/metrics` that must answer within `limit`.
fn metrics_within(host: &Host, limit: Duration) -> Result<u16, String> {
    reqwest::blocking::Client::builder()
        .timeout(limit)
        .build()
        .expect("client")
        .get(format!("{}/metrics", host.admin))
        .send()
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

fn admin_addr(host: &Host) -> SocketAddr {
    host.admin
        .trim_start_matches("http://")
        .parse()
        .expect("the admin address")
}

/// Without ADMIN_TOKEN, `POST /reload` is refused (403, saying how to
/// enable it) and reloads nothing. With it, a reload of the module already
/// running is a no-op: counted as `unchanged`, no swap, and the open batch
/// is not sent early. (Before: anyone reaching the port reloaded, and each
/// reload recompiled the module and sent the open batch at once.)
#[test]
fn reload_needs_a_token_and_an_unchanged_module_is_left_alone() {
    let stack = Stack::start();
    let module = stack.dir.path().join("module.wasm");
    std::fs::copy(probe(), &module).unwrap();
    let path = module.to_str().unwrap();

    let open = stack.host("open", &[("TRANSFORM_PATH", path)]);
    let (status, body) = post_reload(&open, None);
    assert_eq!(status, 403, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("ADMIN_TOKEN"), "{body}");
    let (status, _) = post_reload(&open, Some("guess"));
    assert_eq!(status, 403);
    assert_eq!(reloads(&open, "ok") + reloads(&open, "unchanged"), 0.0);
    assert!(!open.log_text().contains("transform swapped"));
    drop(open);

    let host = stack.host(
        "guarded",
        &[
            ("TRANSFORM_PATH", path),
            ("ADMIN_TOKEN", "s3cret-token"),
            ("VM_MAX_TIME_TO_SEND", "60"),
        ],
    );
    stack
        .broker
        .produce("guarded", &(0..3).map(flow).collect::<Vec<_>>());
    wait_for("3 records read", LONG, || {
        (host.counter("records_consumed_total") == 3.0).then_some(())
    });
    assert_eq!(post_reload(&host, None).0, 401);
    let (status, body) = post_reload(&host, Some("s3cret-token"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "unchanged", "{body}");
    assert_eq!(reloads(&host, "unchanged"), 1.0);
    assert_eq!(reloads(&host, "ok"), 0.0);
    // The scenario is that nothing happens: the batch waits for its age.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !host.log_text().contains("transform swapped"),
        "{}",
        host.log_text()
    );
    assert_eq!(stack.vm.sample_count(r#"{module="probe"}"#), 0);
    assert!(!host.log_text().contains("s3cret-token"));
}

/// Whether the server closed `stream` (EOF or reset), reading for `wait`.
fn closed(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).expect("read timeout");
    let mut buf = [0u8; 512];
    match stream.read(&mut buf) {
        Ok(0) => true,
        // A 408 or any answer: read on until the close.
        Ok(_) => closed(stream, wait),
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// A client sending its headers a byte every 300 ms, never finishing them
/// (slowloris): the host cuts it off after its header-read timeout, and
/// `/metrics` answers others meanwhile. (Before: the connection stayed
/// open for as long as the client trickled.)
#[test]
fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let stack = Stack::start();
    let host = stack.host("slow", &[]);
    let mut slow = TcpStream::connect(admin_addr(&host)).expect("connect");
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .expect("the request line");
    let started = Instant::now();
    let mut cut = false;
    while started.elapsed() < CUT_WITHIN + Duration::from_secs(8) {
        if slow.write_all(b"a").is_err() || closed(&mut slow, Duration::from_millis(300)) {
            cut = true;
            break;
        }
        assert_eq!(
            metrics_within(&host, Duration::from_secs(5)),
            Ok(200),
            "/metrics while a slow client trickles"
        );
    }
    let took = started.elapsed();
    assert!(cut, "the slow client was still connected after {took:?}");
    assert!(took < CUT_WITHIN, "cut off only after {took:?}");
    eprintln!("slow client cut off after {took:?}");
}

/// Lower the host's soft limit of open files (as a service manager's
/// default of 1 024 would, smaller so that the test stays quick).
fn limit_open_files(pid: u32, soft: u64) {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let new = libc::rlimit {
        rlim_cur: soft,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: prlimit(2) on our own child with valid pointers.
    let rc = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) };
    assert_eq!(rc, 0, "read the host's limit");
    let new = libc::rlimit {
        rlim_max: old.rlim_max,
        ..new
    };
    // SAFETY: as above.
    let rc = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "lower the host's limit");
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// 400 connections that send nothing, against a host allowed 256 open
/// files: past the cap the longest idle ones are closed to make room, so
/// `/metrics` answers at once, the host's descriptors stay bounded and
/// records still arrive. (Before: every connection was kept, the host ran
/// out of descriptors and `/metrics` no longer answered.)
#[test]
fn idle_connections_past_the_cap_do_not_lock_out_metrics() {
    let stack = Stack::start();
    let host = stack.host("idle", &[]);
    stack.broker.produce("idle", &[flow(0)]);
    stack.vm.wait_samples(r#"{__name__="bytes"}"#, 1, LONG);
    let baseline = open_files(host.pid());
    limit_open_files(host.pid(), 256);
    let addr = admin_addr(&host);
    let mut idle = Vec::new();
    for _ in 0..400 {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            idle.push(s);
        }
    }
    // Let the host take (or fail to take) what is queued.
    std::thread::sleep(Duration::from_secs(1));
    let status = metrics_within(&host, Duration::from_secs(3));
    let files = open_files(host.pid());
    eprintln!(
        "{} idle connections opened; host files: {baseline} before, {files} with them; /metrics: {status:?}",
        idle.len()
    );
    assert_eq!(status, Ok(200));
    assert!(files < baseline + 100, "{files} files open");
    stack
        .broker
        .produce("idle", &(1..11).map(flow).collect::<Vec<_>>());
    stack.vm.wait_samples(r#"{__name__="bytes"}"#, 11, LONG);
    // The host closed the connections it evicted.
    let evicted = idle
        .iter_mut()
        .map(|s| closed(s, Duration::from_millis(20)))
        .filter(|&c| c)
        .count();
    assert!(
        evicted >= idle.len() - 64,
        "{evicted} of {} closed",
        idle.len()
    );
}

/// `GET /tap` with the token, as a user would read it.
fn tap_lines(host: &Host, token: Option<&str>, limit: usize) -> (u16, Vec<serde_json::Value>) {
    let mut req = reqwest::blocking::Client::builder()
        .timeout(LONG)
        .build()
        .expect("client")
        .get(format!("{}/tap?limit={limit}", host.admin));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().expect("GET /tap");
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("an NDJSON line"))
        .collect();
    (status, lines)
}

/// The tap shows records with the samples each produced, and rejected
/// records with their reason, while what reaches VictoriaMetrics stays
/// exact (a tapped record runs by itself, not twice). It is refused
/// without the token and disabled without ADMIN_TOKEN.
#[test]
fn the_tap_shows_records_and_their_samples_and_the_totals_stay_exact() {
    let stack = Stack::start();
    let open = stack.host("tap-open", &[]);
    assert_eq!(tap_lines(&open, None, 1).0, 403);
    drop(open);
    let token = "t4p-token";
    let host = stack.host("tap", &[("ADMIN_TOKEN", token)]);
    assert_eq!(tap_lines(&host, None, 1).0, 401);
    assert_eq!(tap_lines(&host, Some("guess"), 1).0, 401);

    let producer = {
        let broker = support::Broker::connect(&stack.broker.addr);
        std::thread::spawn(move || {
            for wave in 0..40u64 {
                let good: Vec<String> = (wave * 50..wave * 50 + 50).map(flow).collect();
                broker.produce("tap", &good);
                broker.produce("tap", &["not json"]);
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };
    let (status, events) = tap_lines(&host, Some(token), 12);
    assert_eq!(status, 200);
    assert_eq!(events.len(), 12, "{events:?}");
    producer.join().unwrap();
    let mut shown = 0;
    for e in &events {
        assert_eq!(e["module"].as_str().map(str::len), Some(12), "{e}");
        if e["record"] == "not json" {
            assert_eq!(e["rejected"]["reason"], "invalid_json", "{e}");
            assert_eq!(e["samples"], json!([]), "{e}");
            continue;
        }
        let seq = e["record"]["seq"].as_u64().expect("a record as it was");
        assert_eq!(e["rejected"], serde_json::Value::Null, "{e}");
        assert_eq!(e["samples"].as_array().map(Vec::len), Some(1), "{e}");
        let sample = &e["samples"][0];
        assert_eq!(sample["metric"]["seq"], seq.to_string(), "{e}");
        assert_eq!(sample["values"], json!([100 + seq]), "{e}");
        shown += 1;
    }
    assert!(shown > 0, "{events:?}");

    let found = stack.vm.wait_samples(r#"{__name__="bytes"}"#, 2000, LONG);
    let sum: f64 = found.iter().flat_map(|s| &s.values).sum();
    assert_eq!(sum, (0..2000u64).map(|s| (100 + s) as f64).sum::<f64>());
    wait_for("every record counted", LONG, || {
        let m = host.metrics();
        (parse_labelled(&m, "record_errors_total", "reason", "invalid_json") == 40.0
            && host.counter("records_consumed_total") == 2040.0)
            .then_some(())
    });
    assert!(!host.log_text().contains(token));

    // The binary's own client: one line and exit 0; a wrong token, exit 1.
    let broker = support::Broker::connect(&stack.broker.addr);
    let feeder = std::thread::spawn(move || {
        for seq in 5000..5040 {
            broker.produce("tap", &[flow(seq)]);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let tap = |t: &str| {
        std::process::Command::new(support::host_bin())
            .args(["tap", "--admin", &host.admin, "--limit", "1"])
            .env_clear()
            .env("ADMIN_TOKEN", t)
            .output()
            .expect("pmacct-kafka-vm tap")
    };
    let out = tap(token);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.lines().count(), 1, "{text}");
    let line: serde_json::Value = serde_json::from_str(text.trim()).expect("a JSON line");
    assert!(
        line["record"]["seq"].as_u64().is_some_and(|s| s >= 5000),
        "{line}"
    );
    let out = tap("guess");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    feeder.join().unwrap();
}

/// `pmacct-kafka-vm health` (the image's HEALTHCHECK, no shell or curl):
/// exit 0 while the host on that port answers, 1 when none does.
#[test]
fn the_health_subcommand_answers_for_a_container_healthcheck() {
    let stack = Stack::start();
    let host = stack.host("health", &[]);
    let port = host.admin.rsplit(':').next().expect("a port").to_string();
    let health = |port: &str| {
        std::process::Command::new(support::host_bin())
            .arg("health")
            .env_clear()
            .env("PROMETHEUS_CLIENT_PORT", port)
            .env("ADMIN_BIND", "127.0.0.1")
            .output()
            .expect("pmacct-kafka-vm health")
    };
    let up = health(&port);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    drop(host);
    let down = health(&port);
    assert_eq!(down.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&down.stderr).contains("unhealthy"));
}
