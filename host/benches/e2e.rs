//! End-to-end benchmark: N realistic pmacct records in a real local broker,
//! the host (release build) reading them from the earliest offset until
//! VictoriaMetrics has inserted every sample; once per transform engine.
//!
//! `cargo bench -p pmacct-kafka-vm --bench e2e` (E2E_RECORDS, default 1 000 000;
//! E2E_MODES, default `wasm,native,count-only`, and `rollup`: the WASM default
//! rules with `ROLLUP=sum` onto at most 900 series a minute, `plain`: the WASM
//! default rules with uncompressed imports, `remote-write`: into
//! VictoriaMetrics' /api/v1/write, `avro`: the same records as pmacct's
//! Avro (`AVRO_SCHEMA_FILE`) through the WASM default rules, `avro-count-only`:
//! those without a transform or a sink, `enrich`: the WASM default rules
//! with two ENRICH_LABELS (an ASN from a MaxMind DB of 65 536 networks, a
//! customer from a CSV of 256 prefixes), `enrich-count-only`: the same
//! lookups without a transform or a sink; E2E_ROUNDS,
//! default 1: the modes run in turn that many times, and medians are
//! printed; E2E_DATA=flows: 10 000 flows purged once a minute, in time
//! order, instead of the default records, whose minutes wrap). Needs TANSU_BIN,
//! VICTORIA_METRICS_BIN and kcat (`source "$(scripts/setup.sh)"`).
//! Prints a table and writes `target/e2e-bench.json`.

#[path = "common/knobs.rs"]
mod knobs;
#[path = "../tests/support/mod.rs"]
mod support;
#[path = "common/synth.rs"]
mod synth;
use knobs::env_or;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{json, Value};
use support::{parse_counter, wait_for, Broker, Host, Victoria};

const TOPIC: &str = "pmacct";
/// The same records as Avro datums (`synth::AVRO_SCHEMA`), for the `avro` modes.
const AVRO_TOPIC: &str = "pmacct-avro";

/// 10 000 flows, each purged once a minute from 2026-11-25 00:00 on: record
/// `i` is flow `i % 10 000` in minute `i / 10 000`. Without the addresses
/// and ports as labels (the `rollup` mode) a minute has 900 series.
fn flow_record(i: u64, out: &mut Vec<u8>) {
    use std::io::Write;
    let (flow, minute) = (i % 10_000, i / 10_000);
    let h = flow.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16;
    let packets = 1 + (h + minute) % 500;
    let _ = write!(
        out,
        "{{\"event_type\": \"purge\", \"ip_src\": \"10.{}.{}.{}\", \"ip_dst\": \"192.168.0.{}\", \
         \"port_src\": {}, \"port_dst\": {}, \"ip_proto\": \"{}\", \
         \"stamp_inserted\": \"2026-11-25 {:02}:{:02}:00\", \"stamp_updated\": \"2026-11-25 {:02}:{:02}:{:02}\", \
         \"packets\": {}, \"bytes\": {}}}",
        flow / 2500,
        (flow / 10) % 250,
        flow % 10,
        flow % 50,
        1024 + (h >> 3) % 60000,
        [443, 80, 53, 123, 22, 8080][(h % 6) as usize],
        ["tcp", "udp", "icmp"][(flow % 3) as usize],
        minute / 60 % 24,
        minute % 60,
        minute / 60 % 24,
        minute % 60,
        flow % 60,
        packets,
        packets * (40 + (h >> 9) % 1460),
    );
}

/// The synth records as Avro into [`AVRO_TOPIC`]; their bytes.
fn produce_avro(broker: &Broker, n: u64) -> u64 {
    let schema = apache_avro::Schema::parse_str(synth::AVRO_SCHEMA).expect("schema");
    let producer = producer(broker);
    let mut total = 0;
    for i in 0..n {
        let datum = synth::avro_record(i, &schema);
        total += datum.len() as u64;
        send(&producer, AVRO_TOPIC, &datum);
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    total
}

fn producer(broker: &Broker) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "2000000")
        .create()
        .expect("producer")
}

fn send(producer: &BaseProducer, topic: &str, payload: &[u8]) {
    while let Err((e, _)) = producer.send(BaseRecord::<(), [u8]>::to(topic).payload(payload)) {
        assert!(e.to_string().contains("Queue full"), "produce: {e}");
        producer.poll(Duration::from_millis(5));
    }
}

fn produce(broker: &Broker, n: u64) -> u64 {
    let flows = std::env::var("E2E_DATA").is_ok_and(|d| d == "flows");
    let producer = producer(broker);
    let mut buf = Vec::with_capacity(400);
    let mut total = 0;
    for i in 0..n {
        buf.clear();
        if flows {
            flow_record(i, &mut buf);
        } else {
            synth::record(i, &mut buf);
        }
        total += buf.len() as u64;
        send(&producer, TOPIC, &buf);
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    total
}

/// user+sys CPU seconds, peak RSS (bytes) and minor page faults of a
/// process, from /proc.
fn process_stats(pid: u32) -> (f64, u64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(") ")
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // After the command name: state is field 3, minflt 10, utime 14 and
    // stime 15 (1-based).
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let hz = 100.0; // sysconf(_SC_CLK_TCK) is 100 on Linux x86_64
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kb = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    ((ticks(14) + ticks(15)) / hz, hwm_kb * 1024, ticks(10))
}

/// Labels the `rollup` mode leaves out: a minute of `E2E_DATA=flows` is
/// then 900 series (protocol × destination port × destination host).
const ROLLUP_AVOID: &str =
    "ip_src,port_src,stamp_inserted,stamp_updated,packets,bytes,tos,writer_id,event_type";

/// With roll-up the number of samples is not known beforehand: done when
/// every record was read and the samples written stopped changing (the
/// last minute's sums go out once the topic is quiet for a second). Returns
/// when the last of them was accepted.
fn wait_rolled_up(host: &Host, n: u64) -> Instant {
    let mut last = (0.0, Instant::now());
    wait_for("every record rolled up", Duration::from_secs(1800), || {
        let m = host.metrics();
        let written = parse_counter(&m, "samples_written_total");
        if written != last.0 {
            last = (written, Instant::now());
        }
        let read = parse_counter(&m, "records_consumed_total") as u64 >= n;
        let idle = parse_counter(&m, "batches_in_flight") == 0.0;
        (read && idle && last.1.elapsed() > Duration::from_secs(3)).then_some(last.1)
    })
}

/// What a mode sets: the engine, and for the output modes the wire format
/// (`wasm` imports gzip-compressed, the default; `plain` uncompressed;
/// `remote-write` to VictoriaMetrics' /api/v1/write).
fn mode_env<'a>(
    mode: &'a str,
    write_url: &'a str,
    (avro_schema, tables): (&'a str, &'a str),
) -> Vec<(&'static str, &'a str)> {
    match mode {
        "enrich" | "enrich-count-only" => vec![
            (
                "TRANSFORM_ENGINE",
                if mode == "enrich" {
                    "wasm"
                } else {
                    "count-only"
                },
            ),
            ("ENRICH_TABLES", tables),
            ("ENRICH_LABELS", ENRICH_LABELS),
        ],
        "avro" => vec![
            ("TRANSFORM_ENGINE", "wasm"),
            ("AVRO_SCHEMA_FILE", avro_schema),
        ],
        "avro-count-only" => vec![
            ("TRANSFORM_ENGINE", "count-only"),
            ("AVRO_SCHEMA_FILE", avro_schema),
        ],
        "rollup" => vec![
            ("TRANSFORM_ENGINE", "wasm"),
            ("ROLLUP", "sum"),
            ("ROLLUP_STEP", "60s"),
            ("VM_MAX_TIME_TO_SEND", "1"),
            ("VM_AVOID_LABELS", ROLLUP_AVOID),
        ],
        "plain" => vec![("TRANSFORM_ENGINE", "wasm"), ("VM_COMPRESSION", "none")],
        "remote-write" => vec![
            ("TRANSFORM_ENGINE", "wasm"),
            ("OUTPUT", "remote-write"),
            ("REMOTE_WRITE_URL", write_url),
        ],
        engine => vec![("TRANSFORM_ENGINE", engine)],
    }
}

const ENRICH_LABELS: &str =
    "src_asn=asn:ip_src.autonomous_system_number,customer=cust:ip_dst.customer";

/// The `enrich` modes' tables, in `dir`: every /24 of 10.0.0.0/8 in a
/// MaxMind DB (the records' sources), every /24 of 192.168.0.0/16 in a CSV
/// (their destinations). Returns ENRICH_TABLES.
fn enrich_tables(dir: &std::path::Path) -> String {
    #[derive(serde::Serialize)]
    struct Asn {
        autonomous_system_number: u32,
    }
    let mut w = mmdb_writer::Writer::new("bench-asn");
    let mut csv = String::from("prefix,customer\n");
    for a in 0..=255u32 {
        for b in 0..=255u32 {
            let net: ipnet::IpNet = format!("10.{a}.{b}.0/24").parse().expect("prefix");
            let asn = Asn {
                autonomous_system_number: 64_512 + (a * 256 + b) % 1000,
            };
            w.insert(net, &asn).expect("insert");
        }
        csv.push_str(&format!("192.168.{a}.0/24,customer-{a}\n"));
    }
    let (mmdb, cust) = (dir.join("asn.mmdb"), dir.join("customers.csv"));
    std::fs::write(&mmdb, w.to_bytes().expect("mmdb")).expect("write mmdb");
    std::fs::write(&cust, csv).expect("write csv");
    format!("asn=mmdb:{};cust=csv:{}", mmdb.display(), cust.display())
}

/// Rows VictoriaMetrics inserted, through either API.
fn vm_rows_inserted(vm: &Victoria) -> f64 {
    let text = reqwest::blocking::get(format!("{}/metrics", vm.url))
        .and_then(|r| r.text())
        .unwrap_or_default();
    support::parse_labelled(&text, "vm_rows_inserted_total", "type", "vmimport")
        + support::parse_labelled(&text, "vm_rows_inserted_total", "type", "promremotewrite")
}

fn kcat_baseline(broker: &Broker, n: u64) -> Option<f64> {
    let lib = std::env::var("KCAT_LD_LIBRARY_PATH").ok()?;
    let start = Instant::now();
    let out = Command::new("kcat")
        .env("LD_LIBRARY_PATH", lib)
        .args([
            "-b",
            &broker.addr,
            "-t",
            TOPIC,
            "-C",
            "-e",
            "-q",
            "-o",
            "beginning",
            "-f",
            "%o\n",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let secs = start.elapsed().as_secs_f64();
    let lines = out.stdout.iter().filter(|&&b| b == b'\n').count() as u64;
    (lines == n).then_some(n as f64 / secs)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let n = env_or("E2E_RECORDS", 1_000_000) as u64;
    let modes = std::env::var("E2E_MODES").unwrap_or_else(|_| "wasm,native,count-only".into());
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Broker::start(dir.path());
    let started = Instant::now();
    let payload_bytes = produce(&broker, n);
    eprintln!(
        "produced {n} records ({:.0} B average) in {:.1} s",
        payload_bytes as f64 / n as f64,
        started.elapsed().as_secs_f64()
    );
    let avro_schema = dir.path().join("acct_data.avsc");
    std::fs::write(&avro_schema, synth::AVRO_SCHEMA).expect("schema file");
    let avro_schema = avro_schema.to_str().expect("UTF-8 path");
    if modes.split(',').any(|m| m.trim().starts_with("avro")) {
        let started = Instant::now();
        let bytes = produce_avro(&broker, n);
        eprintln!(
            "produced the same {n} records as Avro ({:.0} B average) in {:.1} s",
            bytes as f64 / n as f64,
            started.elapsed().as_secs_f64()
        );
    }
    let tables = enrich_tables(dir.path());
    let kcat = kcat_baseline(&broker, n);
    eprintln!(
        "kcat -C -e: {}",
        kcat.map_or("n/a".into(), |r| format!("{r:.0} records/s"))
    );

    // Rounds run the modes in turn, so a burst of load from a neighbour on
    // this shared machine lands on one run, not on one mode.
    let rounds = env_or("E2E_ROUNDS", 1);
    let runs: Vec<(usize, &str)> = (0..rounds)
        .flat_map(|round| modes.split(',').map(move |m| (round, m.trim())))
        .collect();
    let mut results = Vec::new();
    for (round, mode) in runs {
        let vm = Victoria::start(dir.path());
        let group = format!("bench-{mode}-{round}");
        let rollup = mode == "rollup";
        let write_url = format!("{}/api/v1/write", vm.url);
        let mut env = vec![
            ("KAFKA_CONSUMER_GROUP_ID", group.as_str()),
            ("RUST_LOG", "warn"),
        ];
        env.extend(mode_env(mode, &write_url, (avro_schema, &tables)));
        let topic = if mode.starts_with("avro") {
            AVRO_TOPIC
        } else {
            TOPIC
        };
        let mut host = Host::start(dir.path(), &broker, &vm, topic, &env);
        let pid = host.pid();
        // Time from the first record consumed: the group join is a fixed
        // wait that says nothing about throughput.
        let (t0, (cpu0, _, faults0)) =
            wait_for("the first record", Duration::from_secs(60), || {
                (host.counter("records_consumed_total") > 0.0)
                    .then(|| (Instant::now(), process_stats(pid)))
            });
        let done = if rollup {
            wait_rolled_up(&host, n)
        } else {
            let expect_samples = if mode.ends_with("count-only") {
                0.0
            } else {
                n as f64
            };
            wait_for("every record through", Duration::from_secs(1800), || {
                let m = host.metrics();
                let consumed = parse_counter(&m, "records_consumed_total") as u64;
                let accepted = parse_counter(&m, "samples_count_total");
                (consumed >= n
                    && accepted >= expect_samples
                    && vm_rows_inserted(&vm) >= expect_samples)
                    .then(Instant::now)
            })
        };
        let secs = done.duration_since(t0).as_secs_f64();
        let (cpu1, rss, faults1) = process_stats(pid);
        let m = host.metrics();
        let transform_seconds = parse_counter(&m, "transform_duration_seconds_sum");
        let transform_cpu_seconds = parse_counter(&m, "transform_cpu_seconds_total");
        let result = json!({
            "mode": mode,
            "round": round,
            "records": n,
            "seconds": secs,
            "records_per_second": n as f64 / secs,
            "cpu_seconds": cpu1 - cpu0,
            "cpu_us_per_record": (cpu1 - cpu0) * 1e6 / n as f64,
            "peak_rss_mb": rss as f64 / (1 << 20) as f64,
            "minor_faults_per_record": (faults1 - faults0) / n as f64,
            "body_bytes_sent": parse_counter(&m, "import_body_bytes_total"),
            "body_bytes_per_sample": parse_counter(&m, "import_body_bytes_total") / n as f64,
            "body_raw_bytes": parse_counter(&m, "import_body_raw_bytes_total"),
            "samples_in_victoriametrics": vm_rows_inserted(&vm),
            "transform_seconds": transform_seconds,
            "transform_us_per_record": transform_seconds * 1e6 / n as f64,
            "transform_cpu_seconds": transform_cpu_seconds,
            "transform_cpu_us_per_record": transform_cpu_seconds * 1e6 / n as f64,
            "transform_calls": parse_counter(&m, "transform_duration_seconds_count"),
            "send_seconds": parse_counter(&m, "send_duration_seconds_sum"),
            "batches": parse_counter(&m, "batches_sent_total"),
            "samples_written": parse_counter(&m, "samples_written_total"),
            "rollup_open_cells": parse_counter(&m, "rollup_open_cells"),
            "record_errors": parse_counter(&m, "record_errors_total"),
        });
        eprintln!("{result}");
        results.push(result);
        let status = host.terminate(Duration::from_secs(60));
        assert!(status.success(), "host exit: {status}");
    }

    println!(
        "\n{:<12} {:>5} {:>10} {:>12} {:>10} {:>9} {:>11} {:>9} {:>8} {:>10} {:>13} {:>16} {:>9} {:>8}",
        "mode",
        "round",
        "records",
        "records/s",
        "CPU µs/rec",
        "RSS MB",
        "faults/rec",
        "body MB",
        "B/sample",
        "VM rows",
        "xform µs/rec",
        "xform CPU µs/rec",
        "rec/call",
        "send s"
    );
    let f = |r: &Value, k: &str| r[k].as_f64().unwrap_or(0.0);
    for r in &results {
        println!(
            "{:<12} {:>5} {:>10} {:>12.0} {:>10.2} {:>9.1} {:>11.3} {:>9.1} {:>8.1} {:>10} {:>13.3} {:>16.3} {:>9.0} {:>8.2}",
            r["mode"].as_str().unwrap_or(""),
            r["round"],
            r["records"],
            f(r, "records_per_second"),
            f(r, "cpu_us_per_record"),
            f(r, "peak_rss_mb"),
            f(r, "minor_faults_per_record"),
            f(r, "body_bytes_sent") / 1e6,
            f(r, "body_bytes_sent") / f(r, "samples_written").max(1.0),
            r["samples_in_victoriametrics"],
            f(r, "transform_us_per_record"),
            f(r, "transform_cpu_us_per_record"),
            f(r, "records") / f(r, "transform_calls").max(1.0),
            f(r, "send_seconds"),
        );
    }
    if rounds > 1 {
        print_medians(&results);
    }
    if let Some(k) = kcat {
        println!("kcat -C -e on the same topic: {k:.0} records/s");
    }
    let report = json!({
        "records": n,
        "payload_bytes": payload_bytes,
        "kcat_records_per_second": kcat,
        "machine": format!("{} cores", std::thread::available_parallelism().map_or(0, |n| n.get())),
        "results": results,
    });
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-bench.json");
    if let Err(e) = std::fs::write(
        &out,
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    ) {
        eprintln!("cannot write {}: {e}", out.display());
    } else {
        eprintln!("wrote {}", out.display());
    }
}

/// Per mode, the median over rounds of host CPU and of the transform
/// stage's wall and CPU time per record; and, where both ran, the median and
/// range of the wasm/native ratio of stage CPU, taken within each round.
fn print_medians(results: &[Value]) {
    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    }
    let of = |mode: &str, key: &str| -> Vec<f64> {
        results
            .iter()
            .filter(|r| r["mode"] == mode)
            .map(|r| r[key].as_f64().unwrap_or(f64::NAN))
            .collect()
    };
    let mut modes: Vec<&str> = Vec::new();
    for mode in results.iter().filter_map(|r| r["mode"].as_str()) {
        if !modes.contains(&mode) {
            modes.push(mode);
        }
    }
    println!(
        "\nmedians over rounds: mode, records/s, host CPU µs/rec, stage µs/rec, stage CPU µs/rec"
    );
    for mode in &modes {
        println!(
            "{mode:<12} {:>9.0} {:>8.3} {:>8.3} {:>8.3}",
            median(of(mode, "records_per_second")),
            median(of(mode, "cpu_us_per_record")),
            median(of(mode, "transform_us_per_record")),
            median(of(mode, "transform_cpu_us_per_record")),
        );
    }
    let (wasm, native) = (
        of("wasm", "transform_cpu_us_per_record"),
        of("native", "transform_cpu_us_per_record"),
    );
    if !wasm.is_empty() && wasm.len() == native.len() {
        let ratios: Vec<f64> = wasm.iter().zip(&native).map(|(w, n)| w / n).collect();
        let (lo, hi) = ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        println!(
            "stage CPU wasm/native, within each round: median {:.2}x ({lo:.2}-{hi:.2})",
            median(ratios.clone())
        );
    }
}
