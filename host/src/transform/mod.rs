//! The transform stage: records in, import lines and per-record errors out.
//!
//! A [`Transformer`] owns the running engine (WASM module or the native
//! default rules). Reloads build a new engine off the hot path and leave it
//! in a slot; the pipeline swaps it in between batches, so a batch runs on
//! one module from its first record to its last.

mod native;
mod reload;
mod wasm;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use pmacct_guest_sdk::{BatchOutput, IndexedError, RecordError};
use sha2::{Digest, Sha256};

use crate::config::EngineKind;
use crate::metrics::Metrics;
pub use native::{CountOnly, NativeDefault};
pub use reload::{watch, Watcher};
pub use wasm::{Limits, WasmInstance, WasmModule, WasmRuntime};

/// The default transform, built from `transforms/default` for wasm32-wasip2
/// by this crate's build script.
pub static DEFAULT_WASM: &[u8] = include_bytes!(env!("DEFAULT_TRANSFORM_WASM"));

/// Why a module could not be loaded; the running one stays.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a valid transform component: {0}")]
    Compile(String),
    #[error("does not satisfy the contract pmacct:transform@{version}: {0}", version = pmacct_guest_sdk::CONTRACT_VERSION)]
    Contract(String),
    #[error("init rejected the configuration: {0}")]
    Init(String),
}

/// A fault of the engine itself (not of one record): the instance is
/// unusable afterwards and must be reset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error("transform trapped: {0}")]
    Trap(String),
    #[error("transform ran past its time limit")]
    Timeout,
    #[error("transform exceeded its memory limit")]
    Oom,
}

impl Fault {
    pub fn reason(&self) -> &'static str {
        match self {
            Fault::Trap(_) => "transform_trap",
            Fault::Timeout => "transform_timeout",
            Fault::Oom => "transform_oom",
        }
    }
}

/// What the pipeline needs from a transform.
pub trait Engine: Send {
    /// Transform a chunk, appending samples to `out.body` and errors (with
    /// `base_index` added to their indices) to `out.errors`. On a fault
    /// nothing is appended.
    fn run(
        &mut self,
        records: &[u8],
        ends: &[u32],
        base_index: u32,
        out: &mut BatchOutput,
    ) -> Result<(), Fault>;

    /// Replace a faulted instance with a fresh, initialised one.
    fn reset(&mut self) -> Result<(), LoadError>;
}

/// Identity of a loaded module, for logs, `/metrics` and `/reload` answers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModuleInfo {
    pub source: String,
    pub sha256: String,
    pub loaded_unix: i64,
}

struct Loaded {
    engine: Box<dyn Engine>,
    info: ModuleInfo,
}

/// Shared between the pipeline thread (which runs transforms) and whoever
/// asks for a reload (admin HTTP, the file watcher).
pub struct TransformHandle {
    runtime: WasmRuntime,
    path: Option<PathBuf>,
    init: Vec<(String, String)>,
    metrics: Arc<Metrics>,
    pending: Mutex<Option<Loaded>>,
    has_pending: AtomicBool,
    /// SHA-256 of the module loaded last (running or waiting to swap in);
    /// held under the lock that makes reloads one at a time.
    latest: Mutex<String>,
}

impl TransformHandle {
    pub fn new(
        runtime: WasmRuntime,
        path: Option<PathBuf>,
        init: Vec<(String, String)>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(TransformHandle {
            runtime,
            path,
            init,
            metrics,
            pending: Mutex::new(None),
            has_pending: AtomicBool::new(false),
            latest: Mutex::new(String::new()),
        })
    }

    /// Load the configured module (or the embedded default) for start-up.
    pub fn load_initial(&self, kind: EngineKind) -> Result<Transformer, LoadError> {
        let native = |engine: Box<dyn Engine>, source: &str| Loaded {
            engine,
            info: ModuleInfo {
                source: source.into(),
                sha256: String::new(),
                loaded_unix: unix_now(),
            },
        };
        let loaded = match kind {
            EngineKind::Wasm => {
                let (bytes, source) = self.read()?;
                self.build(&bytes, source)?
            }
            EngineKind::Native => {
                native(Box::new(NativeDefault::new(&self.init)?), "native:default")
            }
            EngineKind::CountOnly => native(Box::new(CountOnly), "native:count-only"),
        };
        self.publish(&loaded.info);
        *lock(&self.latest) = loaded.info.sha256.clone();
        Ok(Transformer::from_engine(
            loaded.engine,
            loaded.info,
            self.metrics.clone(),
        ))
    }

    /// Build the module at `TRANSFORM_PATH` and queue it for the pipeline to
    /// swap in at its next batch boundary, even when it is the module already
    /// loaded (`POST /reload`: an operator asking for a fresh instance). The
    /// running module is untouched on error.
    pub fn reload(&self) -> Result<ModuleInfo, LoadError> {
        let mut latest = lock(&self.latest);
        let loaded = self
            .read()
            .and_then(|(bytes, source)| self.build(&bytes, source));
        self.stage(loaded, &mut latest)
    }

    /// Like [`reload`](Self::reload), but `Ok(None)` without loading when
    /// the file holds the module loaded last: a file event is not a change
    /// of the module (a `touch`, a copy of the same build, a second event of
    /// one deploy).
    pub fn reload_if_changed(&self) -> Result<Option<ModuleInfo>, LoadError> {
        let mut latest = lock(&self.latest);
        let (bytes, source) = match self.read() {
            Ok(read) => read,
            Err(e) => return self.stage(Err(e), &mut latest).map(Some),
        };
        if hex::encode(Sha256::digest(&bytes)) == *latest {
            self.count_reload("unchanged");
            tracing::info!(source = %source, sha256 = %*latest, "TRANSFORM_PATH holds the module already loaded; not reloading");
            return Ok(None);
        }
        self.stage(self.build(&bytes, source), &mut latest)
            .map(Some)
    }

    /// Count a reload's result and queue the module it loaded.
    fn stage(
        &self,
        loaded: Result<Loaded, LoadError>,
        latest: &mut String,
    ) -> Result<ModuleInfo, LoadError> {
        self.count_reload(if loaded.is_ok() { "ok" } else { "error" });
        match loaded {
            Ok(loaded) => {
                let info = loaded.info.clone();
                tracing::info!(source = %info.source, sha256 = %info.sha256, "transform loaded; swapping in at the next batch");
                latest.clone_from(&info.sha256);
                *lock(&self.pending) = Some(loaded);
                self.has_pending.store(true, Ordering::Release);
                Ok(info)
            }
            Err(e) => {
                tracing::error!(error = %e, "transform reload rejected; the running module stays");
                Err(e)
            }
        }
    }

    fn count_reload(&self, result: &str) {
        self.metrics
            .transform_reloads
            .with_label_values(&[result])
            .inc();
    }

    fn read(&self) -> Result<(Cow<'static, [u8]>, String), LoadError> {
        match &self.path {
            Some(p) => {
                let bytes = std::fs::read(p).map_err(|source| LoadError::Read {
                    path: p.clone(),
                    source,
                })?;
                Ok((Cow::Owned(bytes), p.display().to_string()))
            }
            None => Ok((Cow::Borrowed(DEFAULT_WASM), "embedded:default".to_string())),
        }
    }

    fn build(&self, bytes: &[u8], source: String) -> Result<Loaded, LoadError> {
        let module = self.runtime.compile(bytes, source)?;
        let info = ModuleInfo {
            source: module.source().to_string(),
            sha256: module.sha256().to_string(),
            loaded_unix: unix_now(),
        };
        let engine = module.instantiate(&self.init)?;
        Ok(Loaded {
            engine: Box::new(engine),
            info,
        })
    }

    fn publish(&self, info: &ModuleInfo) {
        self.metrics
            .set_transform(&info.source, &info.sha256, info.loaded_unix);
    }

    fn take_pending(&self) -> Option<Loaded> {
        if !self.has_pending.load(Ordering::Acquire) {
            return None;
        }
        self.has_pending.store(false, Ordering::Release);
        lock(&self.pending).take()
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

/// The pipeline's side: runs chunks on the current engine.
pub struct Transformer {
    engine: Box<dyn Engine>,
    info: ModuleInfo,
    metrics: Arc<Metrics>,
    scratch_ends: Vec<u32>,
    /// Faults since the start, and the last one, for the log.
    faults: u64,
    last_fault: String,
}

impl Transformer {
    /// A transformer over a given engine, for tests and the CLI.
    pub fn from_engine(engine: Box<dyn Engine>, info: ModuleInfo, metrics: Arc<Metrics>) -> Self {
        Transformer {
            engine,
            info,
            metrics,
            scratch_ends: Vec::new(),
            faults: 0,
            last_fault: String::new(),
        }
    }

    /// Swap in a reloaded module, if one is waiting. Call only between batches.
    pub fn swap_if_pending(&mut self, handle: &TransformHandle) {
        if let Some(loaded) = handle.take_pending() {
            tracing::info!(from = %self.info.sha256, to = %loaded.info.sha256, source = %loaded.info.source, "transform swapped");
            handle.publish(&loaded.info);
            self.engine = loaded.engine;
            self.info = loaded.info;
        }
    }

    pub fn info(&self) -> &ModuleInfo {
        &self.info
    }

    /// Transform one chunk. An engine fault does not lose the chunk: the
    /// instance is replaced and the chunk bisected until the records that
    /// fault are isolated; those become errors with the fault's reason and
    /// every other record still yields its samples.
    pub fn run(&mut self, records: &[u8], ends: &[u32], out: &mut BatchOutput) {
        let started = Instant::now();
        let cpu_started = thread_cpu_seconds();
        let faults_before = self.faults;
        self.run_isolating(records, ends, 0, 0, out);
        self.metrics
            .transform_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .transform_cpu
            .inc_by((thread_cpu_seconds() - cpu_started).max(0.0));
        if self.faults > faults_before {
            // Faults resolved by splitting lose nothing, but a module that
            // faults on whole chunks (a leak, a limit too tight) is slow and
            // must be visible.
            tracing::warn!(
                faults = self.faults - faults_before,
                last = %self.last_fault,
                records = ends.len(),
                source = %self.info.source,
                "transform faulted on this chunk; instance replaced and chunk split"
            );
        }
    }

    fn run_isolating(
        &mut self,
        records: &[u8],
        ends: &[u32],
        byte_base: u32,
        base_index: u32,
        out: &mut BatchOutput,
    ) {
        if ends.is_empty() {
            return;
        }
        let result = if byte_base == 0 {
            self.engine.run(records, ends, base_index, out)
        } else {
            // A sub-range: its ends must count from its own first byte.
            let mut rebased = std::mem::take(&mut self.scratch_ends);
            rebased.clear();
            rebased.extend(ends.iter().map(|e| e - byte_base));
            let r = self.engine.run(records, &rebased, base_index, out);
            self.scratch_ends = rebased;
            r
        };
        let Err(fault) = result else { return };
        self.faults += 1;
        self.last_fault = fault.to_string();
        self.metrics
            .transform_faults
            .with_label_values(&[fault.reason()])
            .inc();
        if let Err(e) = self.engine.reset() {
            // The module initialised before with the same configuration, so
            // this is unexpected; reject the chunk rather than loop.
            tracing::error!(error = %e, "transform could not be re-instantiated after a fault");
            for i in 0..ends.len() as u32 {
                out.errors.push(IndexedError {
                    index: base_index + i,
                    error: RecordError::new(fault.reason(), format!("{fault}; reset failed: {e}")),
                });
            }
            return;
        }
        if ends.len() == 1 {
            out.errors.push(IndexedError {
                index: base_index,
                error: RecordError::new(fault.reason(), fault.to_string()),
            });
            return;
        }
        let mid = ends.len() / 2;
        let split = ends[mid - 1];
        let (left, right) = (&ends[..mid], &ends[mid..]);
        let left_bytes = &records[..(split - byte_base) as usize];
        let right_bytes = &records[(split - byte_base) as usize..];
        self.run_isolating(left_bytes, left, byte_base, base_index, out);
        self.run_isolating(right_bytes, right, split, base_index + mid as u32, out);
    }
}

/// A poisoned lock only means a reload panicked; the data is still whole.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// CPU time of the calling thread: a call's wall time also counts time the
/// OS gave to VictoriaMetrics or the broker on a busy machine. One system
/// call, taken twice per chunk, not per record. Through the C library, not
/// rustix: rustix parses the vDSO itself and crashes under valgrind
/// (bytecodealliance/rustix#1559), which profiles transforms here.
fn thread_cpu_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write to, and the clock id is a
    // constant the kernel knows; on failure `t` stays zero.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init() -> Vec<(String, String)> {
        [
            ("metric_fields", "bytes,packets"),
            ("avoid_labels", "bytes,stamp_updated"),
            ("job", "j"),
            ("instance", "i"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn batch<R: AsRef<[u8]>>(records: &[R]) -> (Vec<u8>, Vec<u32>) {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for r in records {
            bytes.extend_from_slice(r.as_ref());
            ends.push(bytes.len() as u32);
        }
        (bytes, ends)
    }

    /// The embedded module and the native build of the same rules.
    fn both_engines() -> (WasmInstance, NativeDefault) {
        let wasm = WasmRuntime::new(Limits::default())
            .unwrap()
            .compile(DEFAULT_WASM, "embedded".into())
            .unwrap()
            .instantiate(&init())
            .unwrap();
        (wasm, NativeDefault::new(&init()).unwrap())
    }

    const RECORDS: [&str; 6] = [
        r#"{"event_type": "purge", "ip_src": "10.0.0.3", "port_src": 2222, "ip_proto": "udp", "stamp_updated": "2026-11-25 19:46:40", "packets": 5, "bytes": 1000}"#,
        r#"{"ip_src": "10.0.0.1", "stamp_updated": 1795600862.25, "packets": 1.5e1, "bytes": 9000, "flag": true, "q": "a\"b"}"#,
        "garbage",
        r#"{"bytes": 1}"#,
        r#"{"bytes": 1, "packets": "x", "stamp_updated": "2026-11-25 19:46:40"}"#,
        "",
    ];

    /// The embedded module and the native build of the same rules must agree
    /// byte for byte, errors included.
    #[test]
    fn wasm_and_native_default_rules_agree() {
        let (bytes, ends) = batch(&RECORDS);
        let (mut wasm, mut native) = both_engines();
        let (mut a, mut b) = (BatchOutput::default(), BatchOutput::default());
        wasm.run(&bytes, &ends, 10, &mut a).unwrap();
        native.run(&bytes, &ends, 10, &mut b).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&a.body),
            String::from_utf8_lossy(&b.body)
        );
        assert_eq!(a.samples, 4);
        assert_eq!(a.samples, b.samples);
        assert_eq!(a.errors, b.errors);
        let reasons: Vec<_> = a
            .errors
            .iter()
            .map(|e| (e.index, e.error.reason.as_ref()))
            .collect();
        assert_eq!(
            reasons,
            [
                (12, "invalid_json"),
                (13, "missing_field"),
                (14, "non_numeric_value"),
                (15, "invalid_json")
            ]
        );
    }

    /// The module's string scanner is WASM SIMD (four steps of 16 bytes,
    /// no loop, declining strings it does not see the end of), the native
    /// one is not: they must agree with a special byte at every position
    /// around and past those steps, in keys and values, valid or not, and on
    /// numbers of every length (the parser reads 24 digits at most). (A
    /// scanner that wrongly declines a string only costs time: the record
    /// takes the exact serde_json path. One that wrongly accepts fails
    /// here.)
    #[test]
    fn wasm_and_native_agree_on_special_bytes_at_every_position() {
        let specials: [&[u8]; 7] = [
            br#"\""#,
            br"\\",
            b"\xc3\xa9",
            b"\x01",
            b"\xff",
            b"\"",
            b"\x7f",
        ];
        let mut records: Vec<Vec<u8>> = Vec::new();
        for pos in 0..72 {
            for special in specials {
                let mut text = vec![b'a'; pos];
                text.extend_from_slice(special);
                text.extend_from_slice(b"bcdefghij");
                for in_key in [false, true] {
                    let mut r = br#"{"event_type": "purge", "#.to_vec();
                    if in_key {
                        r.push(b'"');
                        r.extend_from_slice(&text);
                        r.extend_from_slice(br#"": "x""#);
                    } else {
                        r.extend_from_slice(br#""ip_src": ""#);
                        r.extend_from_slice(&text);
                        r.push(b'"');
                    }
                    r.extend_from_slice(
                        br#", "stamp_updated": "2026-11-25 19:46:40", "packets": 5, "bytes": 1000}"#,
                    );
                    records.push(r);
                }
            }
            let digits: String = (0..=pos)
                .map(|d| char::from(b'1' + (d % 9) as u8))
                .collect();
            records.push(
                format!(r#"{{"port": {digits}, "stamp_updated": "2026-11-25 19:46:40", "packets": 1, "bytes": {digits}.5}}"#)
                    .into_bytes(),
            );
        }
        let (bytes, ends) = batch(&records);
        let (mut wasm, mut native) = both_engines();
        let (mut a, mut b) = (BatchOutput::default(), BatchOutput::default());
        // Chunks of the pipeline's size, so the module sees several calls.
        for (i, chunk) in ends.chunks(100).enumerate() {
            let start = if i == 0 { 0 } else { ends[i * 100 - 1] };
            let rel: Vec<u32> = chunk.iter().map(|e| e - start).collect();
            let slice = &bytes[start as usize..*chunk.last().unwrap() as usize];
            wasm.run(slice, &rel, (i * 100) as u32, &mut a).unwrap();
            native.run(slice, &rel, (i * 100) as u32, &mut b).unwrap();
        }
        assert_eq!(
            String::from_utf8_lossy(&a.body),
            String::from_utf8_lossy(&b.body)
        );
        assert_eq!(a.samples, b.samples);
        assert_eq!(a.errors, b.errors);
        // Both outcomes happen: valid specials become labels, broken ones
        // reject their record.
        assert!(
            a.samples > 1_100 && a.errors.len() > 250,
            "{} {}",
            a.samples,
            a.errors.len()
        );
        // Two metric fields: two samples a record.
        assert_eq!(a.samples as usize / 2 + a.errors.len(), records.len());
    }

    #[test]
    fn a_module_that_is_not_a_component_is_rejected() {
        let runtime = WasmRuntime::new(Limits::default()).unwrap();
        let err = runtime.compile(b"not wasm", "x".into()).err().unwrap();
        assert!(matches!(err, LoadError::Compile(_)), "{err}");
    }

    #[test]
    fn init_errors_reject_the_module() {
        let runtime = WasmRuntime::new(Limits::default()).unwrap();
        let module = runtime.compile(DEFAULT_WASM, "embedded".into()).unwrap();
        // The default rules require `job`.
        let err = module.instantiate(&[]).err().unwrap();
        assert!(
            matches!(&err, LoadError::Init(m) if m.contains("job")),
            "{err}"
        );
    }

    /// A fake engine that faults whenever its chunk holds a record starting
    /// with `!`. Real hostile modules are exercised in the integration tests;
    /// this checks the bisection's bookkeeping (indices, sample counts) on
    /// every split shape, which a real module makes slow to enumerate.
    struct Faulty {
        resets: usize,
    }

    impl Engine for Faulty {
        fn run(
            &mut self,
            records: &[u8],
            ends: &[u32],
            base: u32,
            out: &mut BatchOutput,
        ) -> Result<(), Fault> {
            let mut start = 0;
            let mut lines = Vec::new();
            for &end in ends {
                let r = &records[start..end as usize];
                if r.starts_with(b"!") {
                    return Err(Fault::Trap("boom".into()));
                }
                lines.extend_from_slice(r);
                lines.push(b'\n');
                start = end as usize;
            }
            let _ = base;
            out.body.extend_from_slice(&lines);
            out.samples += ends.len() as u32;
            Ok(())
        }

        fn reset(&mut self) -> Result<(), LoadError> {
            self.resets += 1;
            Ok(())
        }
    }

    #[test]
    fn a_fault_is_isolated_to_its_records() {
        for n in 1..=12usize {
            for bad in [
                vec![0],
                vec![n - 1],
                vec![n / 2],
                (0..n).step_by(3).collect::<Vec<_>>(),
            ] {
                let records: Vec<String> = (0..n)
                    .map(|i| {
                        if bad.contains(&i) {
                            format!("!{i}")
                        } else {
                            format!("r{i}")
                        }
                    })
                    .collect();
                let refs: Vec<&str> = records.iter().map(String::as_str).collect();
                let (bytes, ends) = batch(&refs);
                let mut t = Transformer::from_engine(
                    Box::new(Faulty { resets: 0 }),
                    ModuleInfo {
                        source: "fake".into(),
                        sha256: String::new(),
                        loaded_unix: 0,
                    },
                    Arc::new(Metrics::new()),
                );
                let mut out = BatchOutput::default();
                t.run(&bytes, &ends, &mut out);
                let good: Vec<String> = (0..n)
                    .filter(|i| !bad.contains(i))
                    .map(|i| format!("r{i}\n"))
                    .collect();
                assert_eq!(
                    String::from_utf8(out.body).unwrap(),
                    good.concat(),
                    "n={n} bad={bad:?}"
                );
                assert_eq!(out.samples as usize, n - bad.len());
                let errs: Vec<u32> = out.errors.iter().map(|e| e.index).collect();
                assert_eq!(errs, bad.iter().map(|&i| i as u32).collect::<Vec<_>>());
                assert!(out
                    .errors
                    .iter()
                    .all(|e| e.error.reason == "transform_trap"));
            }
        }
    }
}
