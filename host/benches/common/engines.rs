//! The engines the transform benchmarks compare, built the same way for
//! each: the default rules natively, and through the embedded WASM module
//! with and without the time limit.

use std::time::Duration;

use pmacct_kafka_vm::transform::{Backend, Limits, NativeDefault, Sandbox, DEFAULT_WASM};

pub fn init() -> Vec<(String, String)> {
    [
        ("metric_fields", "bytes"),
        ("avoid_labels", "bytes,stamp_updated"),
        ("job", "pmacct"),
        ("instance", "bench"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub fn native() -> Box<dyn Backend> {
    Box::new(NativeDefault::new(&init()).expect("native"))
}

/// The embedded module; `timeout: None` turns epoch interruption off.
/// TRANSFORM_PERF_MAP=YES names its functions for `perf`, as in the host.
pub fn wasm(timeout: Option<Duration>) -> Box<dyn Backend> {
    let sandbox = Sandbox::new(Limits {
        timeout,
        perf_map: std::env::var("TRANSFORM_PERF_MAP").is_ok_and(|v| v.eq_ignore_ascii_case("yes")),
        ..Limits::default()
    })
    .expect("sandbox");
    let module = sandbox
        .compile(DEFAULT_WASM, "embedded".into())
        .expect("compile");
    Box::new(module.instantiate(&init()).expect("instantiate"))
}
