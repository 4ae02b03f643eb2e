//! The output stage's CPU per batch: 1 000 samples of the default rules
//! (from realistic pmacct records) put in each wire format, and the bytes
//! each sends per sample (printed once).
//!
//! `cargo bench -p pmacct-kafka-vm --bench encode`

#[path = "common/synth.rs"]
mod synth;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pmacct_guest_sdk::SampleSet;
use pmacct_kafka_vm::sink::Format;
use pmacct_kafka_vm::transform::Output;
use pmacct_kafka_vm::transform::Records;

// Only the native engine is used here.
#[allow(dead_code)]
#[path = "common/engines.rs"]
mod engines;

const SAMPLES: usize = 1000;

fn samples() -> SampleSet {
    let (bytes, ends) = synth::batch(0, SAMPLES);
    let mut out = Output::default();
    engines::native()
        .run(Records::new(&bytes, &ends).expect("valid ends"), &mut out)
        .expect("no fault");
    assert_eq!(out.samples.len(), SAMPLES);
    out.samples
}

fn formats() -> Vec<(&'static str, Format)> {
    vec![
        ("import", Format::Import { gzip: false }),
        ("gzip", Format::Import { gzip: true }),
        (
            "remote_write",
            Format::RemoteWrite {
                extra_labels: vec![("site".into(), "lab".into())],
            },
        ),
    ]
}

fn encode(c: &mut Criterion) {
    let samples = samples();
    let mut lines = Vec::new();
    samples.write_import_lines(&mut lines);
    eprintln!(
        "import lines: {:.1} bytes/sample; the same as the module hands them over: {:.1}",
        lines.len() as f64 / SAMPLES as f64,
        samples.bytes() as f64 / SAMPLES as f64
    );
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(SAMPLES as u64));
    for (name, format) in formats() {
        let sent = format.encode(&samples).expect("encodes").body.len();
        eprintln!(
            "{name}: {:.1} bytes/sample on the wire",
            sent as f64 / SAMPLES as f64
        );
        g.bench_function(name, |b| {
            b.iter(|| format.encode(black_box(&samples)).expect("encodes"))
        });
    }
    g.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
