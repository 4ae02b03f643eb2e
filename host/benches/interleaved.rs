//! The WASM/native ratio of the transform stage, measured so that the
//! machine's noise falls on every engine alike: in each round every engine
//! in turn runs the same calls (1 000 records each, over 20 different
//! batches), and the ratio is taken within the round. Criterion runs one
//! engine after the other, so on a shared virtual machine a burst of noise
//! can land on one engine only and move the ratio by 10 % either way.
//!
//! `cargo bench -p pmacct-kafka-vm --bench interleaved` (ROUNDS, default 30;
//! CALLS per engine and round, default 50; CALL_RECORDS, default 1 000:
//! each batch of 1 000 records given in calls of this many, appended to one
//! output as the pipeline does; EVICT_MB, default 0: before each call, untimed,
//! write this many MB elsewhere, so that the call starts with the caches
//! as cold as in the pipeline, where the broker, VictoriaMetrics and the
//! host's other threads run between two calls: 64 evicts this machine's
//! 32 MB L3).

#[path = "common/synth.rs"]
mod synth;
use std::time::{Duration, Instant};

use pmacct_kafka_vm::transform::Output;
use pmacct_kafka_vm::transform::{Limits, Records};

#[path = "common/engines.rs"]
mod engines;

#[path = "common/cold.rs"]
mod cold;
#[path = "common/knobs.rs"]
mod knobs;
use knobs::env_or;

/// A batch cut into calls: each call's byte range, its record ends relative
/// to that range, and the index of its first record.
type Calls = Vec<(std::ops::Range<usize>, Vec<u32>, u32)>;

fn calls_of(ends: &[u32], per_call: usize) -> Calls {
    let mut start = 0;
    ends.chunks(per_call)
        .enumerate()
        .map(|(k, part)| {
            let rel = part.iter().map(|&e| e - start as u32).collect();
            let end = *part.last().expect("chunks are not empty") as usize;
            let call = (start..end, rel, (k * per_call) as u32);
            start = end;
            call
        })
        .collect()
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds = env_or("ROUNDS", 30).max(1);
    let calls = env_or("CALLS", 50).max(1);
    let per_call = env_or("CALL_RECORDS", 1_000).clamp(1, 1_000);
    let evict_mb = env_or("EVICT_MB", 0);
    let mut elsewhere = cold::Elsewhere::new(evict_mb);
    let batches: Vec<_> = (0..20)
        .map(|b| {
            let (bytes, ends) = synth::batch(b * 1_000, 1_000);
            let calls = calls_of(&ends, per_call);
            (bytes, calls)
        })
        .collect();
    let mut engines = [
        ("native", engines::native()),
        ("wasm", engines::wasm(Limits::default().timeout)),
        ("wasm_no_time_limit", engines::wasm(None)),
    ];
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); engines.len()];
    let mut out = Output::default();
    // Round 0 warms caches and the allocator and is not counted.
    for round in 0..=rounds {
        for (i, (_, engine)) in engines.iter_mut().enumerate() {
            let mut spent = Duration::ZERO;
            for call in 0..calls {
                let (bytes, parts) = &batches[call % batches.len()];
                elsewhere.evict();
                let started = Instant::now();
                out.clear();
                for (range, ends, first) in parts {
                    engine
                        .run(
                            Records::new(&bytes[range.clone()], ends)
                                .expect("valid ends")
                                .numbered_from(*first),
                            &mut out,
                        )
                        .expect("no fault");
                }
                spent += started.elapsed();
                assert_eq!(out.samples.len(), 1_000, "every record a sample");
            }
            if round > 0 {
                ns[i].push(spent.as_nanos() as f64 / (calls * 1_000) as f64);
            }
        }
    }
    println!(
        "{rounds} rounds of {calls} batches of 1 000 records (calls of {per_call}, {evict_mb} MB evicted before each) per engine, ns per record:"
    );
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
