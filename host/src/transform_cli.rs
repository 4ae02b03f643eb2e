//! The `transform` subcommands: try a module on records from a file or
//! standard input, without Kafka or VictoriaMetrics.

use std::io::{BufRead, Write};
use std::sync::Arc;

use anyhow::Context;
use pmacct_guest_sdk::BatchOutput;

use crate::config::{LimitsConfig, RulesConfig, TransformCheckArgs, TransformTestArgs};
use crate::metrics::Metrics;
use crate::transform::{EngineKind, TransformHandle, WasmRuntime};

/// Records per transform call, as in the pipeline.
const CHUNK: usize = 1024;

fn handle_for(
    module: Option<&std::path::Path>,
    rules: &RulesConfig,
    limits: &LimitsConfig,
) -> anyhow::Result<Arc<TransformHandle>> {
    let init = rules.transform_init().map_err(anyhow::Error::msg)?;
    Ok(TransformHandle::new(
        WasmRuntime::new(limits.limits())?,
        module.map(Into::into),
        init,
        Arc::new(Metrics::new()),
    ))
}

/// Prints samples to `out` and rejected records to `err`; returns how many
/// records were rejected.
pub fn transform_test(
    args: &TransformTestArgs,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<u64> {
    let handle = handle_for(args.module.as_deref(), &args.rules, &args.limits)?;
    let mut transformer = handle.load_initial(EngineKind::Wasm)?;
    let mut bytes = Vec::new();
    let mut ends = Vec::new();
    let mut line_numbers = Vec::new();
    let mut result = BatchOutput::default();
    let mut rejected = 0;
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let eof = input
            .read_until(b'\n', &mut line)
            .context("reading input")?
            == 0;
        if !eof {
            number += 1;
            let record = line.strip_suffix(b"\n").unwrap_or(&line);
            let record = record.strip_suffix(b"\r").unwrap_or(record);
            if !record.iter().all(u8::is_ascii_whitespace) {
                bytes.extend_from_slice(record);
                ends.push(bytes.len() as u32);
                line_numbers.push(number);
            }
        }
        if ends.len() >= CHUNK || (eof && !ends.is_empty()) {
            result.clear();
            transformer.run(&bytes, &ends, &mut result);
            out.write_all(&result.body)?;
            for e in &result.errors {
                rejected += 1;
                writeln!(
                    err,
                    "line {}: {}: {}",
                    line_numbers[e.index as usize], e.error.reason, e.error.detail
                )?;
            }
            bytes.clear();
            ends.clear();
            line_numbers.clear();
        }
        if eof {
            break;
        }
    }
    out.flush()?;
    Ok(rejected)
}

pub fn transform_check(args: &TransformCheckArgs) -> anyhow::Result<String> {
    let handle = handle_for(Some(&args.module), &args.rules, &args.limits)?;
    let t = handle.load_initial(EngineKind::Wasm)?;
    Ok(format!(
        "ok: {} (sha256 {}) satisfies pmacct:transform@{} and initialised",
        t.info().source,
        t.info().sha256,
        pmacct_guest_sdk::CONTRACT_VERSION
    ))
}
