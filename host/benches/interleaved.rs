//! The WASM/native ratio of the transform stage, measured so that the
//! machine's noise falls on every engine alike: in each round every engine
//! in turn runs the same calls (1 000 records each, over 20 different
//! batches), and the ratio is taken within the round. Criterion runs one
//! engine after the other, so on a shared virtual machine a burst of noise
//! can land on one engine only and move the ratio by 10 % either way.
//!
//! `cargo bench -p pmacct-kafka-vm --bench interleaved` (ROUNDS, default 30;
//! CALLS per engine and round, default 50).

use std::time::Instant;

use pmacct_guest_sdk::BatchOutput;
use pmacct_kafka_vm::synth;
use pmacct_kafka_vm::transform::Limits;

#[path = "common/engines.rs"]
mod engines;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds = env_or("ROUNDS", 30).max(1);
    let calls = env_or("CALLS", 50).max(1);
    let batches: Vec<_> = (0..20).map(|b| synth::batch(b * 1_000, 1_000)).collect();
    let mut engines = [
        ("native", engines::native()),
        ("wasm", engines::wasm(Limits::default().timeout)),
        ("wasm_no_time_limit", engines::wasm(None)),
    ];
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); engines.len()];
    let mut out = BatchOutput::default();
    // Round 0 warms caches and the allocator and is not counted.
    for round in 0..=rounds {
        for (i, (_, engine)) in engines.iter_mut().enumerate() {
            let started = Instant::now();
            for call in 0..calls {
                let (bytes, ends) = &batches[call % batches.len()];
                out.clear();
                engine.run(bytes, ends, 0, &mut out).expect("no fault");
                assert_eq!(out.samples as usize, ends.len(), "every record a sample");
            }
            if round > 0 {
                ns[i].push(started.elapsed().as_nanos() as f64 / (calls * 1_000) as f64);
            }
        }
    }
    println!("{rounds} rounds of {calls} calls of 1 000 records per engine, ns per record:");
    println!(
        "{:<20} {:>8} {:>8} {:>8}   ratio to native: median (min-max over rounds)",
        "engine", "min", "median", "max"
    );
    for (i, (name, _)) in engines.iter().enumerate() {
        let t = &ns[i];
        let ratios: Vec<f64> = t.iter().zip(&ns[0]).map(|(a, b)| a / b).collect();
        println!(
            "{name:<20} {:>8.1} {:>8.1} {:>8.1}   {:.2}x ({:.2}-{:.2})",
            t.iter().copied().fold(f64::INFINITY, f64::min),
            median(t),
            t.iter().copied().fold(0.0, f64::max),
            median(&ratios),
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratios.iter().copied().fold(0.0, f64::max),
        );
    }
}
