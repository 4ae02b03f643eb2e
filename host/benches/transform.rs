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
    let sandbox = Sandbox::new(Limits::default()).expect("sandbox");
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

criterion_group!(benches, transform, pieces, languages);
criterion_main!(benches);
