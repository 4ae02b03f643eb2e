//! The `transform` subcommands: try a module on records from a file or
//! standard input, without Kafka or VictoriaMetrics.

use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;

use anyhow::Context;
use pmacct_guest_sdk::BatchOutput;

use crate::config::command_line::EXIT_CONFIG;
use crate::config::flags::{LimitsFlags, RulesFlags, TransformCheckArgs, TransformTestArgs};
use crate::metrics::Metrics;
use crate::transform::{EngineKind, Loader, Sandbox};

/// Records per transform call, as in the pipeline.
const CHUNK: usize = 1024;

/// `transform test`: records from `--input` (or stdin), samples to stdout;
/// returns the exit code (1 when any record was rejected).
pub fn test(args: &TransformTestArgs) -> u8 {
    let mut input: Box<dyn BufRead> = match &args.input {
        Some(p) if p.as_os_str() != "-" => match std::fs::File::open(p) {
            Ok(f) => Box::new(BufReader::new(f)),
            Err(e) => {
                eprintln!("error: --input {}: {e}", p.display());
                return EXIT_CONFIG;
            }
        },
        _ => Box::new(std::io::stdin().lock()),
    };
    let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
    match transform_test(args, &mut input, &mut stdout.lock(), &mut stderr.lock()) {
        Ok(0) => 0,
        Ok(n) => {
            eprintln!("{n} record(s) rejected");
            1
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// `transform check`: load, check and initialise a module; the exit code.
pub fn check(args: &TransformCheckArgs) -> u8 {
    match transform_check(args) {
        Ok(msg) => {
            println!("{msg}");
            0
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

fn handle_for(
    module: Option<&std::path::Path>,
    rules: &RulesFlags,
    limits: &LimitsFlags,
) -> anyhow::Result<Arc<Loader>> {
    let init = rules.transform_init()?;
    Ok(Loader::new(
        Sandbox::new(limits.limits())?,
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
