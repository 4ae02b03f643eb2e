//! The transform stage in isolation: the default rules through WASM (with
//! and without the time limit) and natively, at several batch sizes, and at
//! 1 000 over 20 different batches in turn (`*_distinct`); and the pieces
//! inside it, parsing a record and encoding a sample.
//!
//! The `languages` group runs one rule set (the subnets example) written
//! in Rust, Python and JavaScript, and times instantiating each module; the
//! Python and JavaScript modules come from scripts/build-polyglot.sh
//! (PMACCT_POLYGLOT_WASM_DIR; without it only the Rust one runs).
//!
//! `cargo bench -p pmacct-kafka-vm --bench transform`

#[path = "common/synth.rs"]
mod synth;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pmacct_guest_sdk::{Record, SampleValue};
use pmacct_kafka_vm::transform::Output;
use pmacct_kafka_vm::transform::{Backend, Limits, Records, Sandbox};

#[path = "common/engines.rs"]
mod engines;

/// One chunk through `engine` per iteration; every record must yield a sample.
fn bench_chunks(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    engine: &mut dyn Backend,
    bytes: &[u8],
    ends: &[u32],
) {
    let mut out = Output::default();
    g.bench_function(id, |b| {
        b.iter(|| {
            out.clear();
            engine
                .run(
                    Records::new(black_box(bytes), ends).expect("valid ends"),
                    &mut out,
                )
                .expect("no fault");
            assert_eq!(out.samples.len(), ends.len());
        })
    });
}

/// Like `bench_chunks`, over `batches` in turn: fresh records every call, as
/// in the pipeline, where the same 1 000 records never come twice (caches
/// and branch history flatter a benchmark that repeats one batch).
fn bench_distinct(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    engine: &mut dyn Backend,
    batches: &[(Vec<u8>, Vec<u32>)],
) {
    let mut out = Output::default();
    let mut next = 0;
    g.bench_function(id, |b| {
        b.iter(|| {
            let (bytes, ends) = &batches[next % batches.len()];
            next += 1;
            out.clear();
            engine
                .run(
                    Records::new(black_box(bytes), ends).expect("valid ends"),
                    &mut out,
                )
                .expect("no fault");
            assert_eq!(out.samples.len(), ends.len());
        })
    });
}

fn transform(c: &mut Criterion) {
    let mut g = c.benchmark_group("transform");
    g.measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    type Make = Box<dyn Fn() -> Box<dyn Backend>>;
    let engines: [(&str, Make); 3] = [
        ("native", Box::new(engines::native)),
        (
            "wasm",
            Box::new(|| engines::wasm(Limits::default().timeout)),
        ),
        ("wasm_no_time_limit", Box::new(|| engines::wasm(None))),
    ];
    for n in [1usize, 100, 1_000, 10_000] {
        let (bytes, ends) = synth::batch(0, n);
        g.throughput(Throughput::Elements(n as u64));
        for (name, make) in &engines {
            if *name == "wasm_no_time_limit" && n != 1_000 {
                continue;
            }
            let mut engine = make();
            bench_chunks(
                &mut g,
                BenchmarkId::new(*name, n),
                engine.as_mut(),
                &bytes,
                &ends,
            );
        }
    }
    // 20 different batches of 1 000 (5.7 MB of records) in turn.
    let batches: Vec<_> = (0..20).map(|b| synth::batch(b * 1_000, 1_000)).collect();
    g.throughput(Throughput::Elements(1_000));
    for (name, make) in &engines {
        if *name == "wasm_no_time_limit" {
            continue;
        }
        let mut engine = make();
        bench_distinct(
            &mut g,
            BenchmarkId::new(format!("{name}_distinct"), 1_000),
            engine.as_mut(),
            &batches,
        );
    }
    g.finish();
}

fn pieces(c: &mut Criterion) {
    let mut g = c.benchmark_group("pieces");
    let mut one = Vec::new();
    synth::record(42, &mut one);
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_record", |b| {
        b.iter(|| {
            Record::parse(black_box(&one))
                .expect("parses")
                .fields()
                .count()
        })
    });
    let record = Record::parse(&one).expect("parses");
    let mut set = pmacct_guest_sdk::SampleSet::default();
    let mut lines = Vec::with_capacity(1 << 20);
    g.bench_function("encode_sample", |b| {
        b.iter(|| {
            set.clear();
            let mut samples = pmacct_guest_sdk::Samples::for_set(&mut set);
            let mut s = samples
                .sample("bytes")
                .label("job", "pmacct")
                .label("instance", "bench");
            for (k, v) in record.fields() {
                s = s.label_value(k, v);
            }
            s.finish(SampleValue::Text("9000"), 1_795_600_862_000);
            black_box(set.len())
        })
    });
    // The host's part for a 2.0 module: the sample as an import line.
    g.bench_function("import_line_of_sample", |b| {
        b.iter(|| {
            lines.clear();
            black_box(&set).write_import_lines(&mut lines);
            black_box(lines.len())
        })
    });
    // Avro input: one record's datum to pmacct's JSON (the source stage's
    // work per record), against apache-avro's own decoding into a value tree.
    let schema = apache_avro::Schema::parse_str(synth::AVRO_SCHEMA).expect("schema");
    let program = pmacct_kafka_vm::avro::to_json::Program::compile(&schema).expect("compiles");
    let datum = synth::avro_record(42, &schema);
    let mut json = Vec::with_capacity(1 << 10);
    g.bench_function("avro_to_json", |b| {
        b.iter(|| {
            json.clear();
            let mut input = black_box(&datum[..]);
            program.write(&mut input, &mut json).expect("decodes");
            black_box(json.len())
        })
    });
    g.bench_function("avro_generic_decode", |b| {
        b.iter(|| {
            let mut input = black_box(&datum[..]);
            black_box(apache_avro::from_avro_datum(&schema, &mut input, None).expect("decodes"))
        })
    });
    g.finish();
}

fn languages(c: &mut Criterion) {
    let mut modules = vec![(
        "rust",
        std::path::Path::new(env!("PMACCT_GUEST_WASM_DIR")).join("example_subnets.wasm"),
    )];
    match std::env::var("PMACCT_POLYGLOT_WASM_DIR") {
        Ok(dir) => {
            let dir = std::path::Path::new(&dir);
            modules.push(("python", dir.join("python_subnets.wasm")));
            modules.push(("javascript", dir.join("js_subnets.wasm")));
        }
        Err(_) => eprintln!(
            "PMACCT_POLYGLOT_WASM_DIR is not set: only the Rust module runs (scripts/build-polyglot.sh builds the others)"
        ),
    }
    // NO_TIME_LIMIT=1: compiled without epoch checks, to measure what the
    // time limit costs an interpreter (a check at every loop back-edge).
    let mut limits = Limits::default();
    if std::env::var("NO_TIME_LIMIT").is_ok_and(|v| v == "1") {
        limits.timeout = None;
    }
    let sandbox = Sandbox::new(limits).expect("sandbox");
    let n = 1_000;
    let (bytes, ends) = synth::batch(0, n);
    let mut g = c.benchmark_group("languages");
    g.measurement_time(Duration::from_secs(6))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);
    for (lang, path) in &modules {
        let wasm = std::fs::read(path).expect("module built");
        let started = std::time::Instant::now();
        let module = sandbox.compile(&wasm, (*lang).into()).expect("compile");
        eprintln!(
            "{lang}: module {:.1} MB, compiled by wasmtime in {:.2} s",
            wasm.len() as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
        let mut engine = module.instantiate(&engines::init()).expect("instantiate");
        // A fresh instance plus `init`: what start-up, a reload after the
        // compile, and the recovery from a trap each cost.
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("instantiate", lang), |b| {
            b.iter(|| engine.reset().expect("instantiate"))
        });
        g.throughput(Throughput::Elements(n as u64));
        bench_chunks(
            &mut g,
            BenchmarkId::new("subnets", lang),
            &mut engine,
            &bytes,
            &ends,
        );
    }
    g.finish();
}

/// What a lookup in a table the host serves costs a record: the structure
/// probe looking `ip_src` up 0, 1 and 4 times a record (contract 2.0's
/// `host.lookup`, one call each) in a CSV table of 10 000 prefixes, against
/// ENRICH_LABELS adding the same value to every record before the
/// transform (the host's batched path, no call at all).
fn lookups(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let table = dir.path().join("t.csv");
    let mut csv = String::from("prefix,customer\n");
    for i in 0..10_000u32 {
        csv.push_str(&format!("10.{}.{}.0/24,customer{i}\n", i / 250, i % 250));
    }
    std::fs::write(&table, csv).expect("table");
    let tables = format!("t=csv:{}", table.display());
    let (mut served, mut labelling) = enrichers(&tables, "customer=t:ip_src.customer");
    let sandbox = Sandbox::new(Limits::default()).expect("sandbox");
    let wasm = std::fs::read(
        std::path::Path::new(env!("PMACCT_GUEST_WASM_DIR")).join("structure_probe.wasm"),
    )
    .expect("structure probe built");
    // An instance takes its module: one compile each.
    let module = || {
        sandbox
            .compile(&wasm, "structure-probe".into())
            .expect("compile")
    };
    let (bytes, ends) = synth::batch(0, 1_000);
    let mut g = c.benchmark_group("lookups");
    g.measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(1_000));
    for n in [0, 1, 4] {
        let init = vec![("lookups".to_string(), n.to_string())];
        let mut engine = module().instantiate(&init).expect("instantiate");
        engine.serve(served.refresh());
        let mut out = Output::default();
        engine
            .run(Records::new(&bytes, &ends).expect("valid ends"), &mut out)
            .expect("no fault");
        let lines = out.samples.import_lines();
        assert!(
            n == 0 || !lines.contains(r#""customer":"none""#),
            "every address found"
        );
        bench_chunks(
            &mut g,
            BenchmarkId::new("module", n),
            &mut engine,
            &bytes,
            &ends,
        );
    }
    // The crossing alone: a call that finds no table answers at once.
    let init = vec![("lookups".to_string(), "4".to_string())];
    let mut bare = module().instantiate(&init).expect("instantiate");
    bench_chunks(
        &mut g,
        BenchmarkId::new("module_no_table", 4),
        &mut bare,
        &bytes,
        &ends,
    );
    g.bench_function(BenchmarkId::new("enrich_labels", 1), |b| {
        b.iter(|| {
            let records = Records::new(black_box(&bytes), &ends).expect("valid ends");
            black_box(labelling.enrich(records).len())
        })
    });
    if let Ok(mmdb) = std::env::var("LOOKUP_MMDB") {
        real_mmdb(&mut g, module(), &mmdb);
    } else {
        eprintln!("LOOKUP_MMDB is not set: no lookups in a real database (scripts/ip-location-db.sh fetches one)");
    }
    g.finish();
}

/// Two enrichers of `tables`: one only serving them (to a module's
/// lookups), one adding `labels` to records.
fn enrichers(
    tables: &str,
    labels: &str,
) -> (
    pmacct_kafka_vm::enrich::Enricher,
    pmacct_kafka_vm::enrich::Enricher,
) {
    use pmacct_kafka_vm::enrich::{EnrichSettings, Enricher};
    let metrics = std::sync::Arc::new(pmacct_kafka_vm::metrics::Metrics::new());
    let start = |labels: &str| {
        let settings = EnrichSettings::parse(tables, labels).expect("settings");
        Enricher::start(settings, metrics.clone())
            .expect("the tables load")
            .expect("tables declared")
    };
    (start(""), start(labels))
}

/// The same, in a real MaxMind DB (LOOKUP_MMDB: ip-location-db's
/// geo-whois-asn-country, its `country_code`), of public addresses spread
/// over the whole IPv4 space.
fn real_mmdb(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    module: pmacct_kafka_vm::transform::Compiled,
    mmdb: &str,
) {
    let tables = format!("t=mmdb:{mmdb}");
    let (mut served, mut labelling) = enrichers(&tables, "country=t:ip_src.country_code");
    let mut bytes = Vec::new();
    let mut ends = Vec::new();
    for i in 0..1_000u64 {
        let mut one = Vec::new();
        synth::record(i, &mut one);
        let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        let public = format!(
            "{}.{}.{}.{}",
            1 + h % 222,
            (h >> 8) % 256,
            (h >> 16) % 256,
            1 + (h >> 24) % 254
        );
        let text = String::from_utf8(one).expect("utf-8");
        let at = text.find("\"ip_src\": \"").expect("ip_src") + 11;
        let end = at + text[at..].find('"').expect("closing quote");
        bytes.extend_from_slice(format!("{}{public}{}", &text[..at], &text[end..]).as_bytes());
        ends.push(bytes.len() as u32);
    }
    let init = vec![
        ("lookups".to_string(), "1".to_string()),
        ("lookup_path".to_string(), "country_code".to_string()),
    ];
    let mut engine = module.instantiate(&init).expect("instantiate");
    engine.serve(served.refresh());
    let mut out = Output::default();
    engine
        .run(Records::new(&bytes, &ends).expect("valid ends"), &mut out)
        .expect("no fault");
    let found = 1_000
        - out
            .samples
            .import_lines()
            .matches(r#""customer":"none""#)
            .count();
    eprintln!("{mmdb}: {found} of 1000 public addresses found");
    bench_chunks(
        g,
        BenchmarkId::new("module_mmdb", 1),
        &mut engine,
        &bytes,
        &ends,
    );
    g.bench_function(BenchmarkId::new("enrich_labels_mmdb", 1), |b| {
        b.iter(|| {
            let records = Records::new(black_box(&bytes), &ends).expect("valid ends");
            black_box(labelling.enrich(records).len())
        })
    });
}

criterion_group!(benches, transform, pieces, languages, lookups);
criterion_main!(benches);
