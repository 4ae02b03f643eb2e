//! The transform stage: records in, import lines and per-record errors out.
//!
//! A [`Transformer`] owns the running backend (WASM module or the native
//! default rules). Reloads build a new backend off the hot path and leave it
//! in a slot; the pipeline swaps it in between batches, so a batch runs on
//! one module from its first record to its last.

mod cache;
mod embedded;
mod engine_config;
mod epoch;
mod function_cache;
mod limits;
mod lines;
mod native;
mod output;
mod reload;
mod transformer;
mod wasi;
mod wasm;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use pmacct_guest_sdk::ChunkOutput;
pub use pmacct_guest_sdk::Records;
use sha2::{Digest, Sha256};

use crate::enrich::Tables;
use crate::metrics::Metrics;
pub use cache::{CacheDir, DirError};
pub use embedded::DEFAULT_WASM;
pub use lines::read as read_import_lines;
pub use native::{CountOnly, NativeDefault};
pub use reload::watch;
pub use transformer::{Rollback, Transformer};
pub use wasm::{Compiled, Instance, Limits, Sandbox};

/// What the pipeline's transform is loaded from and how it runs.
pub struct TransformSettings {
    /// A module; `None` runs the embedded default rules.
    pub path: Option<PathBuf>,
    pub engine: EngineKind,
    pub limits: Limits,
    /// The entries the module's `init` receives.
    pub init: Vec<(String, String)>,
    /// Where compiled modules are kept.
    pub cache: CacheDir,
}

/// Which engine runs the transform (`TRANSFORM_ENGINE`'s values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    Wasm,
    Native,
    CountOnly,
}

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
    /// A limit of the sandbox other than memory: table elements, handles.
    #[error("transform exceeded its limit of {0}")]
    Limit(&'static str),
    #[error("transform returned {bytes} bytes of samples from one call, past TRANSFORM_MAX_OUTPUT_MB ({limit} bytes)")]
    OutputTooLarge { bytes: usize, limit: usize },
    /// Output a store would drop or the contract forbids.
    #[error("transform returned malformed output: {0}")]
    BadOutput(String),
}

impl Fault {
    /// Every reason, for counters that show them from the start.
    pub const REASONS: [&'static str; 6] = [
        "transform_trap",
        "transform_timeout",
        "transform_oom",
        "transform_limit",
        "transform_output_too_large",
        "transform_bad_output",
    ];

    pub fn reason(&self) -> &'static str {
        match self {
            Fault::Trap(_) => "transform_trap",
            Fault::Timeout => "transform_timeout",
            Fault::Oom => "transform_oom",
            Fault::Limit(_) => "transform_limit",
            Fault::OutputTooLarge { .. } => "transform_output_too_large",
            Fault::BadOutput(_) => "transform_bad_output",
        }
    }
}

/// What the transform made of one or more chunks: their samples as
/// structure, and the records it rejected.
pub type Output = ChunkOutput;

/// What the pipeline needs from a transform.
pub trait Backend: Send {
    /// Transform a chunk, appending samples to `out.samples` and errors
    /// (numbered from `chunk.first()`) to `out.errors`. On a fault
    /// nothing is appended.
    fn run(&mut self, chunk: Records<'_>, out: &mut Output) -> Result<(), Fault>;

    /// Replace a faulted instance with a fresh, initialised one.
    fn reset(&mut self) -> Result<(), LoadError>;

    /// The enrichment tables a module's `host.lookup` reads from the next
    /// call on. Only modules have lookups.
    fn serve(&mut self, _tables: &Arc<Tables>) {}

    /// Add the hits and misses of the lookups made since the last call to
    /// `counts` (one per table), and forget them.
    fn take_lookups(&mut self, _counts: &mut [[u64; 2]]) {}
}

/// The current contract's version, as [`ModuleInfo::contract`] names it.
const CONTRACT: &str = "2.0";

/// Identity of a loaded module, for logs, `/metrics` and `/reload` answers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModuleInfo {
    pub source: String,
    pub sha256: String,
    pub loaded_unix: i64,
    /// The contract a module was built against (`"2.0"`, `"1.0"`); the
    /// current one for the rules built into the host.
    pub contract: &'static str,
}

/// What a reload did.
#[derive(Debug, Clone)]
pub enum Reloaded {
    /// A new module, waiting for the next batch boundary.
    Loaded(ModuleInfo),
    /// The file holds the module loaded last; nothing was loaded.
    Unchanged { sha256: String },
}

struct Loaded {
    backend: Box<dyn Backend>,
    info: ModuleInfo,
}

/// Shared between the pipeline thread (which runs transforms) and whoever
/// asks for a reload (admin HTTP, the file watcher).
pub struct Loader {
    sandbox: Sandbox,
    path: Option<PathBuf>,
    init: Vec<(String, String)>,
    metrics: Arc<Metrics>,
    pending: Mutex<Option<Loaded>>,
    has_pending: AtomicBool,
    /// SHA-256 of the module loaded last (running or waiting to swap in);
    /// held under the lock that makes reloads one at a time.
    latest: Mutex<String>,
    /// Why the running module is not the one loaded last (a rollback), for
    /// `/health`; cleared by the next load.
    notice: Mutex<Option<String>>,
}

impl Loader {
    pub fn new(
        sandbox: Sandbox,
        path: Option<PathBuf>,
        init: Vec<(String, String)>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Loader {
            sandbox,
            path,
            init,
            metrics,
            pending: Mutex::new(None),
            has_pending: AtomicBool::new(false),
            latest: Mutex::new(String::new()),
            notice: Mutex::new(None),
        })
    }

    /// Load the configured module (or the embedded default) for start-up.
    pub fn load_initial(&self, kind: EngineKind) -> Result<Transformer, LoadError> {
        let native = |backend: Box<dyn Backend>, source: &str| Loaded {
            backend,
            info: ModuleInfo {
                source: source.into(),
                sha256: String::new(),
                loaded_unix: unix_now(),
                contract: CONTRACT,
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
        Ok(
            Transformer::from_backend(loaded.backend, loaded.info, self.metrics.clone())
                .with_budget(self.sandbox.limits().fault_budget),
        )
    }

    /// Build the module at `TRANSFORM_PATH` and queue it for the pipeline to
    /// swap in at its next batch boundary; the running module is untouched
    /// on error. A file that holds the module loaded last is not loaded
    /// again: a file event is not a change of the module (a `touch`, a copy
    /// of the same build, a second event of one deploy), and neither is a
    /// `POST /reload` with nothing new, which would otherwise recompile it
    /// and send the open batch early.
    pub fn reload_if_changed(&self) -> Result<Reloaded, LoadError> {
        let mut latest = lock(&self.latest);
        let (bytes, source) = match self.read() {
            Ok(read) => read,
            Err(e) => return self.queue(Err(e), &mut latest).map(Reloaded::Loaded),
        };
        if hex::encode(Sha256::digest(&bytes)) == *latest {
            self.count_reload("unchanged");
            tracing::info!(source = %source, sha256 = %*latest, "TRANSFORM_PATH holds the module already loaded; not reloading");
            return Ok(Reloaded::Unchanged {
                sha256: latest.clone(),
            });
        }
        self.queue(self.build(&bytes, source), &mut latest)
            .map(Reloaded::Loaded)
    }

    /// Count a reload's result and queue the module it loaded.
    fn queue(
        &self,
        loaded: Result<Loaded, LoadError>,
        latest: &mut String,
    ) -> Result<ModuleInfo, LoadError> {
        self.count_reload(if loaded.is_ok() { "ok" } else { "error" });
        match loaded {
            Ok(loaded) => {
                let info = loaded.info.clone();
                tracing::info!(source = %info.source, sha256 = %info.sha256, contract = info.contract, "transform loaded; swapping in at the next batch");
                latest.clone_from(&info.sha256);
                *lock(&self.notice) = None;
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
            .transform
            .reloads
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
        let module = self.sandbox.compile(bytes, source)?;
        let info = ModuleInfo {
            source: module.source().to_string(),
            sha256: module.sha256().to_string(),
            loaded_unix: unix_now(),
            contract: module.contract(),
        };
        if info.contract != CONTRACT {
            tracing::info!(source = %info.source, sha256 = %info.sha256, contract = info.contract, "the module uses contract {}: its import lines are checked and read into structure; rebuild it with a current SDK to hand samples over as structure", info.contract);
        }
        let backend = module.instantiate(&self.init)?;
        Ok(Loaded {
            backend: Box::new(backend),
            info,
        })
    }

    fn publish(&self, info: &ModuleInfo) {
        self.metrics
            .set_transform(&info.source, &info.sha256, info.contract, info.loaded_unix);
    }

    /// The pipeline rolled a module back: the file's module is no longer
    /// the one loaded last, and `/health` says why.
    pub fn rolled_back(&self, r: &Rollback) {
        let mut latest = lock(&self.latest);
        latest.clone_from(&r.restored.sha256);
        *lock(&self.notice) = Some(format!(
            "module {} ({}) rolled back to {}: it failed on {} of its first {} records, which its predecessor transformed",
            r.bad.sha256, r.bad.source, r.restored.sha256, r.regressions, r.records
        ));
    }

    /// Why the running module is not the one loaded last, if it is not.
    pub fn notice(&self) -> Option<String> {
        lock(&self.notice).clone()
    }

    /// Whether a reloaded module waits for the next batch boundary.
    pub fn has_pending(&self) -> bool {
        self.has_pending.load(Ordering::Acquire)
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

/// A poisoned lock only means a reload panicked; the data is still whole.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmacct_guest_sdk::RecordBuf;

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

    /// Records back to back, as a chunk holds them.
    pub(super) fn batch<R: AsRef<[u8]>>(records: &[R]) -> RecordBuf {
        records.iter().collect()
    }

    /// The embedded module and the native build of the same rules.
    fn both_engines() -> (Instance, NativeDefault) {
        let wasm = Sandbox::new(Limits::default())
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
        let buf = batch(&RECORDS);
        let (mut wasm, mut native) = both_engines();
        let (mut a, mut b) = (Output::default(), Output::default());
        wasm.run(buf.all().numbered_from(10), &mut a).unwrap();
        native.run(buf.all().numbered_from(10), &mut b).unwrap();
        assert_eq!(a.samples.import_lines(), b.samples.import_lines());
        assert_eq!(a.samples.len(), 4);
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

    /// `STAMP_TIMEZONE` reaches the embedded module and the native rules
    /// alike: local stamps are read in the zone (the fold's earlier hour),
    /// stamps with an offset and epoch seconds as they say.
    #[test]
    fn both_engines_read_stamps_in_the_configured_zone() {
        let mut init = init();
        init.extend(crate::stamp_zone::init_entries("Europe/Paris").unwrap());
        let mut wasm = Sandbox::new(Limits::default())
            .unwrap()
            .compile(DEFAULT_WASM, "embedded".into())
            .unwrap()
            .instantiate(&init)
            .unwrap();
        let mut native = NativeDefault::new(&init).unwrap();
        let record =
            |stamp: &str| format!(r#"{{"stamp_updated": "{stamp}", "packets": 1, "bytes": 2}}"#);
        let stamps = [
            "2026-07-01 12:00:00",
            "2026-01-15 12:00:00",
            "2026-10-25 02:30:00",
            "2026-10-25 03:00:00",
            "2026-07-01T12:00:00+02:00",
            "2026-07-01T10:00:00Z",
            "1782900000",
        ];
        // date -u -d '2026-07-01 10:00' +%s → 1782900000; '2026-01-15 11:00' →
        // 1768474800; '2026-10-25 00:30' → 1792888200; '2026-10-25 02:00' → 1792893600
        let want = [
            1_782_900_000,
            1_768_474_800,
            1_792_888_200,
            1_792_893_600,
            1_782_900_000,
            1_782_900_000,
            1_782_900_000,
        ];
        let buf = batch(&stamps.map(record));
        for engine in [&mut wasm as &mut dyn Backend, &mut native] {
            let mut out = Output::default();
            engine.run(buf.all(), &mut out).unwrap();
            assert!(out.errors.is_empty(), "{:?}", out.errors);
            let got: Vec<i64> = out
                .samples
                .timestamps
                .iter()
                .step_by(2)
                .map(|ts| ts / 1000)
                .collect();
            assert_eq!(got, want);
        }
    }

    /// Records with each byte that needs care (escapes, UTF-8, control
    /// bytes, a quote) at every position up to past the module's 64-byte
    /// scan window, in a key and in a value, and numbers of every length.
    fn special_byte_records() -> Vec<Vec<u8>> {
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
        records
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
        let records = special_byte_records();
        let buf = batch(&records);
        let (mut wasm, mut native) = both_engines();
        let (mut a, mut b) = (Output::default(), Output::default());
        // Chunks of the pipeline's size, so the module sees several calls.
        for start in (0..buf.len()).step_by(100) {
            let run = buf.all().range(start..buf.len().min(start + 100));
            wasm.run(run, &mut a).unwrap();
            native.run(run, &mut b).unwrap();
        }
        assert_eq!(a.samples.import_lines(), b.samples.import_lines());
        assert_eq!(a.samples, b.samples);
        assert_eq!(a.errors, b.errors);
        // Both outcomes happen: valid specials in values become labels,
        // broken ones reject their record, and so does every special in a
        // key (no label name holds one: `bad_label_name`, the key as read
        // in its detail).
        assert!(
            a.samples.len() > 600 && a.errors.len() > 250,
            "{} {}",
            a.samples.len(),
            a.errors.len()
        );
        // Two metric fields: two samples a record.
        assert_eq!(a.samples.len() / 2 + a.errors.len(), records.len());
    }

    /// Label names are checked 16 bytes at once with WASM SIMD in the
    /// module and a word at a time natively: both must agree on every
    /// printable byte at every position of keys of every length around the
    /// 16-byte window, and on keys that start with a digit or `__`.
    #[test]
    fn wasm_and_native_agree_on_label_names() {
        let mut records = Vec::new();
        for len in 1..=20usize {
            for pos in 0..len {
                for byte in (0x20u8..0x7f).filter(|b| *b != b'"' && *b != b'\\') {
                    let mut key = vec![b'k'; len];
                    key[pos] = byte;
                    let mut r = br#"{"event_type": "purge", ""#.to_vec();
                    r.extend_from_slice(&key);
                    r.extend_from_slice(br#"": "x", "stamp_updated": "2026-11-25 19:46:40", "packets": 5, "bytes": 1000}"#);
                    records.push(r);
                }
            }
            records.push(
                format!(
                    r#"{{"__{}": 1, "stamp_updated": 1, "packets": 1, "bytes": 1}}"#,
                    "k".repeat(len)
                )
                .into_bytes(),
            );
        }
        let buf = batch(&records);
        let (mut wasm, mut native) = both_engines();
        let (mut a, mut b) = (Output::default(), Output::default());
        for start in (0..buf.len()).step_by(1000) {
            let run = buf.all().range(start..buf.len().min(start + 1000));
            wasm.run(run, &mut a).unwrap();
            native.run(run, &mut b).unwrap();
        }
        assert_eq!(a.errors, b.errors);
        assert_eq!(a.samples, b.samples);
        // 63 of the 93 bytes may be in a name (not first: 53), and names
        // starting with `__` never.
        let good: usize = (1..=20usize).map(|len| 53 + (len - 1) * 63).sum();
        assert_eq!(a.samples.len() / 2, good);
        assert!(a.errors.iter().all(|e| e.error.reason == "bad_label_name"));
    }

    /// `/metrics` shows every fault reason from the start (at 0).
    #[test]
    fn every_fault_reason_is_on_metrics() {
        let page = Metrics::new().render();
        for reason in Fault::REASONS {
            let series = format!("transform_faults_total{{reason=\"{reason}\"}} 0");
            assert!(page.contains(&series), "{series}\n{page}");
        }
        let faults = [
            Fault::Trap(String::new()),
            Fault::Timeout,
            Fault::Oom,
            Fault::Limit("x"),
            Fault::OutputTooLarge { bytes: 0, limit: 0 },
            Fault::BadOutput(String::new()),
        ];
        let reasons: Vec<&str> = faults.iter().map(Fault::reason).collect();
        assert_eq!(reasons, Fault::REASONS);
    }

    #[test]
    fn a_module_that_is_not_a_component_is_rejected() {
        let sandbox = Sandbox::new(Limits::default()).unwrap();
        let err = sandbox.compile(b"not wasm", "x".into()).err().unwrap();
        assert!(matches!(err, LoadError::Compile(_)), "{err}");
    }

    #[test]
    fn init_errors_reject_the_module() {
        let sandbox = Sandbox::new(Limits::default()).unwrap();
        let module = sandbox.compile(DEFAULT_WASM, "embedded".into()).unwrap();
        // The default rules require `job`.
        let err = module.instantiate(&[]).err().unwrap();
        assert!(
            matches!(&err, LoadError::Init(m) if m.contains("job")),
            "{err}"
        );
    }
}
