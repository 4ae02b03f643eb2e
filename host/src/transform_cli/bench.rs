//! `transform bench`: a module timed as the pipeline runs it (its limits,
//! calls of up to 1 024 records), loaded with and without a module cache.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use pmacct_guest_sdk::RecordBuf;

use crate::transform::Output;

use super::templates::RECORDS;
use super::{Lines, CHUNK};
use crate::config::flags::TransformBenchArgs;
use crate::transform::{Backend, Compiled, Sandbox, DEFAULT_WASM};

/// Times the module; what to print. A fault or a rejected module is the
/// error (exit 1).
pub fn transform_bench(args: &TransformBenchArgs) -> anyhow::Result<String> {
    let (wasm, source) = match &args.module {
        Some(p) => (
            std::fs::read(p).with_context(|| format!("--module {}", p.display()))?,
            p.display().to_string(),
        ),
        None => (DEFAULT_WASM.to_vec(), "the embedded default".to_string()),
    };
    let init = args.rules.transform_init()?;
    let limits = args.limits.limits();
    let chunk = chunk_of(args.input.as_deref())?;
    let sandbox = Sandbox::new(limits)?;
    let (compiled, compile) = timed(|| sandbox.compile(&wasm, source.clone()));
    let compiled = compiled.map_err(|e| anyhow!("{source}: {e}"))?;
    let sha = compiled.sha256()[..16].to_string();
    let load = match args.module {
        Some(_) => {
            let (first, read) = cache_timings(limits, &wasm, &source)?;
            format!(
                "{} ms compiled; with a module cache {} ms the first time (compiled and written), {} ms after (read)",
                ms(compile),
                ms(first),
                ms(read)
            )
        }
        None => format!(
            "{} ms (code precompiled when the host was built)",
            ms(compile)
        ),
    };
    let (instance, instantiate) = timed(|| compiled.instantiate(&init));
    let mut instance = instance.map_err(|e| anyhow!("{source}: {e}"))?;
    let run = run(&mut instance, &chunk, args.records.max(1))?;
    Ok(format!(
        "module: {source} ({} bytes, sha256 {sha}…)\n\
         load: {load}\n\
         instantiate and init: {} ms\n\
         transform: {} records in {} calls: {:.0} records/s, {:.2} µs/record, {} samples, {} rejected\n\
         instance memory: {:.1} MiB (limit {} MiB)",
        wasm.len(),
        ms(instantiate),
        run.records,
        run.calls,
        run.records as f64 / run.took.as_secs_f64(),
        run.took.as_secs_f64() * 1e6 / run.records as f64,
        run.samples,
        run.rejected,
        instance.memory_bytes() as f64 / f64::from(1 << 20),
        limits.max_memory_bytes >> 20,
    ))
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let value = f();
    (value, started.elapsed())
}

/// One call's worth of records: the input's lines, repeated up to 1 024.
fn chunk_of(input: Option<&Path>) -> anyhow::Result<RecordBuf> {
    let text = match input {
        Some(p) => std::fs::read(p).with_context(|| format!("--input {}", p.display()))?,
        None => RECORDS.as_bytes().to_vec(),
    };
    let mut all = Lines::default();
    let mut reader = text.as_slice();
    while !all.read(&mut reader)? {}
    if all.records.is_empty() {
        anyhow::bail!("no records in the input");
    }
    Ok(all.records.all().iter().cycle().take(CHUNK).collect())
}

/// Load times through a module cache in a fresh folder: the first load
/// (compiled and written), the second (read).
fn cache_timings(
    limits: crate::transform::Limits,
    wasm: &[u8],
    source: &str,
) -> anyhow::Result<(Duration, Duration)> {
    let dir = std::env::temp_dir().join(format!("pmacct-kafka-vm-bench-{}", std::process::id()));
    // An earlier run's leftover would make the first load a hit.
    let _ = std::fs::remove_dir_all(&dir);
    let counter = prometheus::IntCounterVec::new(
        prometheus::Opts::new("bench_cache", "module cache lookups"),
        &["result"],
    )?;
    let sandbox = Sandbox::new(limits)?.with_cache(&dir, counter)?;
    let load = || -> anyhow::Result<(Compiled, Duration)> {
        let (compiled, took) = timed(|| sandbox.compile(wasm, source.to_string()));
        Ok((compiled.map_err(|e| anyhow!("{source}: {e}"))?, took))
    };
    let first = load();
    let second = load();
    let _ = std::fs::remove_dir_all(&dir);
    Ok((first?.1, second?.1))
}

struct Run {
    records: usize,
    calls: usize,
    samples: u64,
    rejected: usize,
    took: Duration,
}

/// `total` records through the instance in calls of the chunk (a partial
/// one last), after one call to warm up.
fn run(instance: &mut impl Backend, chunk: &RecordBuf, total: usize) -> anyhow::Result<Run> {
    let mut out = Output::default();
    let mut call = |n: usize, out: &mut Output| {
        out.clear();
        instance
            .run(chunk.all().range(0..n), out)
            .map_err(|fault| anyhow!("the module faulted: {fault}"))
    };
    call(chunk.len().min(total), &mut out)?;
    let mut r = Run {
        records: 0,
        calls: 0,
        samples: 0,
        rejected: 0,
        took: Duration::ZERO,
    };
    let started = Instant::now();
    while r.records < total {
        let n = chunk.len().min(total - r.records);
        call(n, &mut out)?;
        r.records += n;
        r.calls += 1;
        r.samples += out.samples.len() as u64;
        r.rejected += out.errors.len();
    }
    r.took = started.elapsed();
    Ok(r)
}
