//! The transform stage's work per record by engine, counted in
//! instructions rather than time: run under callgrind by
//! `scripts/instructions.sh`, the count is the same for the same binary
//! whatever the machine's neighbours do, so a change of a few percent can
//! be seen in one run (time on this shared machine varies by ±30 %).
//!
//! One engine per run (ENGINE: `native`, `wasm`, `wasm_no_time_limit`),
//! CALLS (default 10) calls of 1 000 records after a first one, different
//! batches; EVICT_MB (default 0) written elsewhere before each call, so that
//! a call starts with cold caches as in the pipeline. Without callgrind it
//! only checks that it runs.

#[path = "common/synth.rs"]
mod synth;
use pmacct_kafka_vm::transform::Output;
use pmacct_kafka_vm::transform::{Limits, Records};

#[path = "common/engines.rs"]
mod engines;

#[path = "common/cold.rs"]
mod cold;
#[path = "common/knobs.rs"]
mod knobs;
use knobs::env_or;

fn main() {
    let calls = env_or("CALLS", 10);
    let engine_name = std::env::var("ENGINE").unwrap_or_else(|_| "wasm".into());
    let mut engine = match engine_name.as_str() {
        "native" => engines::native(),
        "wasm" => engines::wasm(Limits::default().timeout),
        "wasm_no_time_limit" => engines::wasm(None),
        other => panic!("ENGINE={other}: native, wasm or wasm_no_time_limit"),
    };
    let mut elsewhere = cold::Elsewhere::new(env_or("EVICT_MB", 0));
    let batches: Vec<_> = (0..10).map(|b| synth::batch(b * 1_000, 1_000)).collect();
    let mut out = Output::default();
    for call in 0..=calls {
        elsewhere.evict();
        let (bytes, ends) = &batches[call % batches.len()];
        out.clear();
        engine
            .run(Records::new(bytes, ends).expect("valid ends"), &mut out)
            .expect("no fault");
        assert_eq!(out.samples.len(), 1_000, "every record a sample");
    }
    println!(
        "{engine_name}: {} records in {} calls",
        (calls + 1) * 1_000,
        calls + 1
    );
}
