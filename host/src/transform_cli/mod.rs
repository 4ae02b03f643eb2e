//! The `transform` subcommands: try a module on records from a file or
//! standard input, without Kafka or VictoriaMetrics; write, build and time
//! a module of one's own without a checkout of this repository.

mod bench;
mod build;
mod new;
mod templates;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use pmacct_guest_sdk::RecordBuf;

use crate::transform::Output;

use crate::config::command_line::EXIT_CONFIG;
use crate::config::flags::{
    EnrichFlags, LimitsFlags, RulesFlags, TransformBenchArgs, TransformBuildArgs,
    TransformCheckArgs, TransformNewArgs, TransformTestArgs,
};
use crate::enrich::{EnrichSettings, Enricher};
use crate::metrics::Metrics;
use crate::transform::{EngineKind, Loader, Sandbox};

pub use bench::transform_bench;
pub use build::transform_build;
pub use new::transform_new;

/// Records per transform call, as in the pipeline.
const CHUNK: usize = 1024;

/// `transform test`: records from `--input` (or stdin), samples to stdout
/// (or compared with `--expect`); returns the exit code (1 when any record
/// was rejected, or with `--expect` when the samples differ).
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
    if let Some(expected) = &args.expect {
        return report(expect(args, expected, &mut input, &mut stderr.lock()));
    }
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

/// The samples compared with the file's: the first difference is the error.
fn expect(
    args: &TransformTestArgs,
    expected: &Path,
    input: &mut dyn BufRead,
    err: &mut dyn Write,
) -> anyhow::Result<String> {
    let want = std::fs::read_to_string(expected)
        .with_context(|| format!("--expect {}", expected.display()))?;
    let mut got = Vec::new();
    let rejected = transform_test(args, input, &mut got, err)?;
    let got = String::from_utf8_lossy(&got);
    let (mut want_lines, mut got_lines) = (want.lines(), got.lines());
    for n in 1.. {
        match (want_lines.next(), got_lines.next()) {
            (None, None) => break,
            (w, g) if w == g => {}
            (w, g) => anyhow::bail!(
                "sample {n} differs from {}:\n  expected: {}\n  got:      {}",
                expected.display(),
                w.unwrap_or("(nothing)"),
                g.unwrap_or("(nothing)")
            ),
        }
    }
    Ok(format!(
        "ok: {} sample(s) as in {} ({rejected} record(s) rejected)",
        got.lines().count(),
        expected.display()
    ))
}

/// Prints a subcommand's result; its exit code.
fn report(result: anyhow::Result<String>) -> u8 {
    match result {
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

/// `transform check`: load, check and initialise a module; the exit code.
pub fn check(args: &TransformCheckArgs) -> u8 {
    report(transform_check(args))
}

pub fn new(args: &TransformNewArgs) -> u8 {
    report(transform_new(args))
}

pub fn build(args: &TransformBuildArgs) -> u8 {
    report(transform_build(args))
}

pub fn bench(args: &TransformBenchArgs) -> u8 {
    report(transform_bench(args))
}

fn loader_for(
    module: Option<&Path>,
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
    samples_of(
        args.module.as_deref(),
        &args.rules,
        &args.limits,
        Some(&args.enrich),
        input,
        out,
        err,
    )
}

/// `module`'s (else the embedded default's) samples of the JSON lines of
/// `input` to `out`, its rejections (by line) to `err`; how many it rejected.
/// With `enrich`, records are enriched and tables served as in the pipeline.
fn samples_of(
    module: Option<&Path>,
    rules: &RulesFlags,
    limits: &LimitsFlags,
    enrich: Option<&EnrichFlags>,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<u64> {
    let loader = loader_for(module, rules, limits)?;
    let mut transformer = loader.load_initial(EngineKind::Wasm)?;
    let mut enricher = match enrich {
        Some(f) => {
            let settings = EnrichSettings::parse(&f.enrich_tables, &f.enrich_labels)
                .map_err(anyhow::Error::msg)?;
            Enricher::start(settings, Arc::new(Metrics::new()))?
        }
        None => None,
    };
    let mut lines = Lines::default();
    let mut result = Output::default();
    let mut text = Vec::new();
    let mut rejected = 0;
    loop {
        let eof = lines.read(input)?;
        if lines.records.len() >= CHUNK || (eof && !lines.records.is_empty()) {
            result.clear();
            let records = match &mut enricher {
                Some(e) => {
                    transformer.serve(e.refresh());
                    e.enrich(lines.records.all())
                }
                None => lines.records.all(),
            };
            transformer.run(records, &mut result);
            text.clear();
            result.samples.write_import_lines(&mut text);
            out.write_all(&text)?;
            for e in &result.errors {
                rejected += 1;
                let line = lines.numbers[e.index as usize];
                writeln!(err, "line {line}: {}: {}", e.error.reason, e.error.detail)?;
            }
            lines.clear();
        }
        if eof {
            break;
        }
    }
    out.flush()?;
    Ok(rejected)
}

/// Records read from JSON lines, back to back, with their line numbers.
#[derive(Default)]
struct Lines {
    records: RecordBuf,
    numbers: Vec<u64>,
    line: Vec<u8>,
    read: u64,
}

impl Lines {
    /// Reads one line (a blank one adds no record); true at the end.
    fn read(&mut self, input: &mut dyn BufRead) -> anyhow::Result<bool> {
        self.line.clear();
        if input
            .read_until(b'\n', &mut self.line)
            .context("reading input")?
            == 0
        {
            return Ok(true);
        }
        self.read += 1;
        let record = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
        let record = record.strip_suffix(b"\r").unwrap_or(record);
        if !record.iter().all(u8::is_ascii_whitespace) {
            self.records.push(record);
            self.numbers.push(self.read);
        }
        Ok(false)
    }

    fn clear(&mut self) {
        self.records.clear();
        self.numbers.clear();
    }
}

pub fn transform_check(args: &TransformCheckArgs) -> anyhow::Result<String> {
    check_module(&args.module, &args.rules, &args.limits)
}

/// Loads, checks and initialises `module`: what to print.
fn check_module(module: &Path, rules: &RulesFlags, limits: &LimitsFlags) -> anyhow::Result<String> {
    let loader = loader_for(Some(module), rules, limits)?;
    let t = loader.load_initial(EngineKind::Wasm)?;
    Ok(format!(
        "ok: {} (sha256 {}) satisfies pmacct:transform@{}.0 and initialised",
        t.info().source,
        t.info().sha256,
        t.info().contract
    ))
}
