//! pmacct's `kafka_output: avro`, both framings, against its JSON output.
//!
//! Debian's pmacct is built without Avro, so the real pmacctd writes JSON
//! (with `kafka_markers: true`), and this test encodes the very same
//! records with pmacct's own schema (`examples/pmacct/avro/acct_data.avsc`,
//! the fields `src/plugin_cmn_avro.c` defines for the example's aggregate;
//! markers with its `acct_init` / `acct_close` schemas) using the
//! `apache-avro` crate's writer. No schema registry can be had from the
//! package registries here (Confluent's is a Java service), so the
//! registry is a small HTTP server of this test's own that answers the one
//! call the host makes, `GET /schemas/ids/{id}`, as Confluent's does.
//!
//! Three hosts read the three topics (JSON, Avro with a schema file, Avro
//! in the registry's wire format) into one VictoriaMetrics, each with its
//! own `instance` label: every sample of the Avro paths must be one of
//! the JSON path's, and no more.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apache_avro::types::Value as Avro;
use apache_avro::{to_avro_datum, Schema};
use serde_json::Value as Json;
use support::{parse_counter, parse_labelled, Broker, Host, Series, Victoria};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

const INIT: &str = r#"{"type": "record", "name": "acct_init", "fields": [
    {"name": "event_type", "type": "string"}, {"name": "writer_id", "type": "string"}]}"#;
const CLOSE: &str = r#"{"type": "record", "name": "acct_close", "fields": [
    {"name": "event_type", "type": "string"}, {"name": "writer_id", "type": "string"},
    {"name": "purged_entries", "type": "long"}, {"name": "total_entries", "type": "long"},
    {"name": "duration", "type": "int"}]}"#;

fn data_schema_path() -> PathBuf {
    root().join("examples/pmacct/avro/acct_data.avsc")
}

/// The real pmacctd on the generated pcap, JSON with markers, into
/// `broker`'s topic `pmacct`; it exits once it has purged everything.
fn run_pmacctd(dir: &Path, broker: &Broker) {
    let pcap = dir.join("flows.pcap");
    support::run_ok(
        Command::new("python3")
            .arg(root().join("examples/pmacct/make_pcap.py"))
            .arg(&pcap),
        "python3 runs the pcap generator",
    );
    let conf = std::fs::read_to_string(root().join("examples/pmacct/pmacctd.conf"))
        .unwrap()
        .replace("PCAP_FILE", pcap.to_str().unwrap())
        .replace("KAFKA_PORT", broker.addr.rsplit(':').next().unwrap())
        + "kafka_markers: true\n";
    let conf_path = dir.join("pmacctd.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let pmacctd = std::env::var("PMACCTD_BIN").unwrap_or_else(|_| "/usr/sbin/pmacctd".into());
    let lib = std::env::var("KCAT_LD_LIBRARY_PATH")
        .expect("KCAT_LD_LIBRARY_PATH is not set: run the tests with scripts/test.sh");
    let status = Command::new(&pmacctd)
        .arg("-f")
        .arg(&conf_path)
        .env("LD_LIBRARY_PATH", lib)
        .stdout(std::fs::File::create(dir.join("pmacctd.log")).unwrap())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {pmacctd}: {e} (apt-get install pmacct)"));
    assert!(status.success(), "pmacctd: {status}");
}

/// A JSON record as an Avro value of `schema` (a record): pmacct's optional
/// fields (unions with null) null when the JSON leaves them out.
fn to_avro(schema: &Schema, record: &Json) -> Avro {
    let Schema::Record(r) = schema else {
        panic!("not a record schema")
    };
    let field = |name: &str, s: &Schema| -> Avro {
        let v = &record[name];
        match s {
            Schema::String => {
                Avro::String(v.as_str().unwrap_or_else(|| panic!("{name}: {v}")).into())
            }
            Schema::Long => Avro::Long(v.as_i64().unwrap_or_else(|| panic!("{name}: {v}"))),
            Schema::Int => Avro::Int(v.as_i64().unwrap() as i32),
            Schema::Union(u) if v.is_null() => {
                assert!(matches!(u.variants()[0], Schema::Null));
                Avro::Union(0, Box::new(Avro::Null))
            }
            Schema::Union(u) => {
                let inner = match &u.variants()[1] {
                    Schema::String => Avro::String(v.as_str().unwrap().into()),
                    Schema::Long => Avro::Long(v.as_i64().unwrap()),
                    other => panic!("{name}: {other:?}"),
                };
                Avro::Union(1, Box::new(inner))
            }
            other => panic!("{name}: {other:?}"),
        }
    };
    Avro::Record(
        r.fields
            .iter()
            .map(|f| (f.name.clone(), field(&f.name, &f.schema)))
            .collect(),
    )
}

/// The three schemas pmacct uses, as (registry id, schema text, parsed).
fn schemas() -> [(u32, String, Schema); 3] {
    let data = std::fs::read_to_string(data_schema_path()).unwrap();
    [(7, data), (8, INIT.to_string()), (9, CLOSE.to_string())].map(|(id, text)| {
        let parsed = Schema::parse_str(&text).unwrap();
        (id, text, parsed)
    })
}

/// The Avro datum of one pmacct JSON message, and its schema's id.
fn encode(message: &[u8]) -> (u32, Vec<u8>) {
    let json: Json = serde_json::from_slice(message).unwrap();
    let which = match json["event_type"].as_str() {
        Some("purge") => 0,
        Some("purge_init") => 1,
        Some("purge_close") => 2,
        other => panic!("event_type {other:?}"),
    };
    let [data, init, close] = schemas();
    let (id, _, schema) = [data, init, close].into_iter().nth(which).unwrap();
    (id, to_avro_datum(&schema, to_avro(&schema, &json)).unwrap())
}

/// A schema registry of this test's own: `GET /schemas/ids/{id}` answered
/// as Confluent's registry does (`{"schema": "..."}`, 404 for an unknown
/// id). Counts the requests per path.
fn registry(schemas: &[(u32, String, Schema)]) -> (String, Arc<Mutex<BTreeMap<String, usize>>>) {
    registry_on(TcpListener::bind("127.0.0.1:0").unwrap(), schemas)
}

fn registry_on(
    listener: TcpListener,
    schemas: &[(u32, String, Schema)],
) -> (String, Arc<Mutex<BTreeMap<String, usize>>>) {
    let url = format!("http://{}", listener.local_addr().unwrap());
    let by_path: BTreeMap<String, String> = schemas
        .iter()
        .map(|(id, text, _)| {
            let body = serde_json::json!({ "schema": text }).to_string();
            (format!("/schemas/ids/{id}"), body)
        })
        .collect();
    let asked = Arc::new(Mutex::new(BTreeMap::new()));
    let counts = asked.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
            *counts.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
            let (status, body) = match by_path.get(&path) {
                Some(body) => ("200 OK", body.clone()),
                None => (
                    "404 Not Found",
                    r#"{"error_code":40403,"message":"Schema not found"}"#.to_string(),
                ),
            };
            let _ = write!(
                &stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, asked)
}

/// Each sample of `instance`: (labels without `instance`, value, timestamp).
fn samples(vm: &Victoria, instance: &str) -> Vec<(BTreeMap<String, String>, f64, i64)> {
    let selector = format!(r#"{{__name__=~"bytes|packets",instance="{instance}"}}"#);
    let mut out: Vec<_> = vm
        .export(&selector)
        .into_iter()
        .flat_map(
            |Series {
                 mut labels,
                 values,
                 timestamps,
             }| {
                labels.remove("instance");
                values
                    .into_iter()
                    .zip(timestamps)
                    .map(move |(v, t)| (labels.clone(), v, t))
            },
        )
        .collect();
    out.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out
}

#[test]
fn avro_from_a_schema_file_and_a_registry_gives_the_json_paths_samples() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let vm = Victoria::start(dir.path());
    run_pmacctd(dir.path(), &broker);
    let metrics = [("VM_METRICS_NAMES", "bytes,packets")];
    // pmacctd has exited, so the topic holds all it wrote: read it to the
    // end (nothing tells the end but the reader's patience: 15 s, the
    // group join taking about 3).
    let json_messages: Vec<Vec<u8>> = broker
        .read_all("pmacct", usize::MAX, Duration::from_secs(15))
        .into_iter()
        .map(|(payload, _)| payload)
        .collect();
    let count = |event: &str| {
        json_messages
            .iter()
            .filter(|m| serde_json::from_slice::<Json>(m).unwrap()["event_type"] == event)
            .count() as f64
    };
    let (inits, closes) = (count("purge_init"), count("purge_close"));
    assert!(
        inits >= 1.0 && inits == closes,
        "{inits} purge_init, {closes} purge_close"
    );
    let _json_host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "pmacct",
        &[metrics[0], ("VM_INSTANCE", "json")],
    );
    let flows = json_messages.iter().filter(|m| encode(m).0 == 7).count();
    assert!(flows >= 10, "{flows} flow records");
    let json_selector = r#"{__name__=~"bytes|packets",instance="json"}"#;
    vm.wait_samples(json_selector, 2 * flows, Duration::from_secs(60));
    let want = samples(&vm, "json");

    // Schema file: datums back to back, up to three a message (as
    // kafka_multi_values packs them), markers alone; one message cut short.
    let mut file_messages: Vec<Vec<u8>> = Vec::new();
    let mut packed = Vec::new();
    for m in &json_messages {
        let (id, datum) = encode(m);
        if id == 7 {
            packed.extend_from_slice(&datum);
            if packed.len() > 150 {
                file_messages.push(std::mem::take(&mut packed));
            }
        } else {
            file_messages.push(datum);
        }
    }
    file_messages.push(packed);
    let (_, one) = encode(
        json_messages
            .iter()
            .find(|m| m.windows(7).any(|w| w == b"\"purge\""))
            .unwrap(),
    );
    let cut_short = one[..one.len() - 3].to_vec();
    file_messages.push(cut_short.clone());
    // Registry: a zero byte, the id, one datum; one message of an id the
    // registry does not know.
    let mut registry_messages: Vec<Vec<u8>> = json_messages
        .iter()
        .map(|m| {
            let (id, datum) = encode(m);
            [&[0u8][..], &id.to_be_bytes(), &datum].concat()
        })
        .collect();
    registry_messages.push([&[0u8, 0, 0, 0, 99][..], &one].concat());
    broker.produce("avro-file", &file_messages);
    broker.produce("avro-registry", &registry_messages);

    let (registry_url, asked) = registry(&schemas());
    let schema_file = data_schema_path();
    let file_host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "avro-file",
        &[
            metrics[0],
            ("VM_INSTANCE", "file"),
            ("AVRO_SCHEMA_FILE", schema_file.to_str().unwrap()),
            ("KAFKA_DLQ_TOPIC", "dead-file"),
        ],
    );
    let registry_host = Host::start(
        dir.path(),
        &broker,
        &vm,
        "avro-registry",
        &[
            metrics[0],
            ("VM_INSTANCE", "registry"),
            ("SCHEMA_REGISTRY_URL", &registry_url),
        ],
    );
    for (instance, host) in [("file", &file_host), ("registry", &registry_host)] {
        let selector = format!(r#"{{__name__=~"bytes|packets",instance="{instance}"}}"#);
        let got = vm.wait_samples(&selector, want.len(), Duration::from_secs(60));
        assert!(!got.is_empty());
        assert_eq!(samples(&vm, instance), want, "{instance}");
        let m = support::wait_for(
            "the invalid record counted",
            Duration::from_secs(30),
            || {
                let m = host.metrics();
                (parse_counter(&m, "record_errors_total") > 0.0).then_some(m)
            },
        );
        assert_eq!(
            parse_labelled(&m, "record_errors_total", "reason", "invalid_avro"),
            1.0,
            "{m}"
        );
        assert_eq!(parse_counter(&m, "record_errors_total"), 1.0, "{m}");
        for (marker, n) in [("purge_init", inits), ("purge_close", closes)] {
            let got = parse_labelled(&m, "pmacct_markers_total", "event_type", marker);
            assert_eq!(got, n, "{instance} {marker}");
        }
    }
    // Each schema asked once (kept by id), the unknown one once.
    let asked = asked.lock().unwrap().clone();
    let want_asked: BTreeMap<String, usize> = [7, 8, 9, 99]
        .map(|id| (format!("/schemas/ids/{id}"), 1))
        .into();
    assert_eq!(asked, want_asked);
    // The message cut short is dead-lettered as it came, with its reason.
    let letters = broker.read_all("dead-file", 1, Duration::from_secs(30));
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].0, cut_short);
    assert_eq!(letters[0].1["x-reason"], "invalid_avro");
}

/// A registry that does not answer holds reading: no record is rejected,
/// the failed lookups are counted, and a SIGTERM still stops the host at
/// once, with nothing committed. A host started once the registry listens
/// stores every record.
#[test]
fn a_registry_outage_holds_reading_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let vm = Victoria::start(dir.path());
    let record = |i: u32| {
        format!(
            r#"{{"event_type": "purge", "ip_src": "10.0.0.{i}", "ip_dst": "10.0.1.1", "port_src": 4000, "port_dst": 443, "ip_proto": "tcp", "stamp_inserted": "2026-11-25 10:00:00", "stamp_updated": "2026-11-25 10:01:00", "packets": {i}, "bytes": {}, "writer_id": "w/1"}}"#,
            100 * i
        )
    };
    let messages: Vec<Vec<u8>> = (1..=50)
        .map(|i| {
            let (id, datum) = encode(record(i).as_bytes());
            [&[0u8][..], &id.to_be_bytes(), &datum].concat()
        })
        .collect();
    broker.produce("avro", &messages);
    // A port nothing listens on yet.
    let port = support::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let env = [("SCHEMA_REGISTRY_URL", url.as_str())];
    let mut host = Host::start(dir.path(), &broker, &vm, "avro", &env);
    support::wait_for("failed registry lookups", Duration::from_secs(60), || {
        let m = host.metrics();
        (parse_labelled(&m, "schema_registry_requests_total", "result", "error") >= 3.0)
            .then_some(())
    });
    assert_eq!(parse_counter(&host.metrics(), "record_errors_total"), 0.0);
    let started = std::time::Instant::now();
    let status = host.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(vm.sample_count(r#"{__name__="bytes"}"#), 0);

    let (_, asked) = registry_on(TcpListener::bind(("127.0.0.1", port)).unwrap(), &schemas());
    let host = Host::start(dir.path(), &broker, &vm, "avro", &env);
    let got = vm.wait_samples(r#"{__name__="bytes"}"#, 50, Duration::from_secs(60));
    let total: f64 = got.iter().flat_map(|s| &s.values).sum();
    assert_eq!(total, 100.0 * (1..=50).sum::<u32>() as f64);
    assert_eq!(parse_counter(&host.metrics(), "record_errors_total"), 0.0);
    assert_eq!(asked.lock().unwrap()["/schemas/ids/7"], 1);
}
