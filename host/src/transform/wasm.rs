//! Transform modules as wasmtime components, sandboxed.
//!
//! A module gets WASI with nothing behind it and nothing that waits
//! (`wasi.rs`), limits on what its instance holds (`limits.rs`), a time
//! limit per call (epoch interruption), and its output checked at the
//! boundary (`output.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use pmacct_guest_sdk::{IndexedError, RecordError, SampleSet};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, ResourceTable, ResourceTableError};
use wasmtime::{Engine as WtEngine, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::cache::ModuleCache;
use super::epoch::Ticker;
use super::function_cache::FunctionCache;
use super::limits::{Hit, Limiter};
use super::wasi::WaitTimedOut;
use super::{
    embedded, engine_config, lines, output, wasi, Backend, Fault, LoadError, Output, Records,
};
use crate::enrich::Tables;
use crate::throttle::Throttle;

/// Contract 2.0 (samples as structure), the current one.
mod v2 {
    wasmtime::component::bindgen!({
        path: "../guest-sdk/wit",
        world: "transform",
    });
}

/// Contract 1.0 (samples as import lines): its modules keep loading.
mod v1 {
    wasmtime::component::bindgen!({
        path: "../guest-sdk/wit-1.0",
        world: "transform",
    });
}

/// How often the epoch ticks; the time limit is rounded up to it.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// A guest may log this many lines per second; the rest are dropped (and counted).
const LOG_LINES_PER_SECOND: u32 = 20;
const LOG_LINE_MAX: usize = 2048;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of all of an instance's linear memories together.
    pub max_memory_bytes: usize,
    /// Bytes of samples one call may return (TRANSFORM_MAX_OUTPUT_MB).
    pub max_output_bytes: usize,
    /// Longest time one call may run; `None` turns epoch interruption off
    /// (benchmarks only: a looping module would then hang the pipeline).
    pub timeout: Option<Duration>,
    /// Name the compiled functions for `perf` (TRANSFORM_PERF_MAP).
    pub perf_map: bool,
    /// Longest time a chunk that faulted may take before its remaining
    /// records are rejected unrun (TRANSFORM_FAULT_BUDGET_MS).
    pub fault_budget: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory_bytes: 128 << 20,
            max_output_bytes: 16 << 20,
            timeout: Some(Duration::from_secs(2)),
            perf_map: false,
            fault_budget: Duration::from_secs(5),
        }
    }
}

/// The wasmtime engine and the linker every module is instantiated with.
/// One per process; cheap to clone.
#[derive(Clone)]
pub struct Sandbox {
    engine: WtEngine,
    /// What the engine compiles to ([`engine_config::compatibility_key`]).
    engine_key: Arc<str>,
    linker: Arc<Linker<HostState>>,
    limits: Limits,
    cache: Option<Arc<ModuleCache>>,
    /// Advances the epoch while a call runs (with a time limit only).
    ticker: Option<Arc<Ticker>>,
}

impl Sandbox {
    pub fn new(limits: Limits) -> anyhow::Result<Self> {
        let mut config = engine_config::config(limits.timeout.is_some());
        if limits.perf_map {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        config
            .enable_incremental_compilation(Arc::new(FunctionCache::default()))
            .map_err(wt)?;
        let engine = WtEngine::new(&config).map_err(wt)?;
        let mut linker = Linker::new(&engine);
        wasi::add_to_linker(&mut linker).map_err(wt)?;
        v2::Transform::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)
            .map_err(wt)?;
        v1::Transform::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)
            .map_err(wt)?;
        let ticker = match limits.timeout {
            Some(_) => Some(Arc::new(Ticker::start(&engine, EPOCH_TICK)?)),
            None => None,
        };
        Ok(Sandbox {
            engine_key: engine_config::compatibility_key(&engine).into(),
            engine,
            linker: Arc::new(linker),
            limits,
            cache: None,
            ticker,
        })
    }

    /// Keep compiled modules in `cache` (TRANSFORM_CACHE_DIR).
    pub fn with_cache(
        mut self,
        dir: &std::path::Path,
        counter: prometheus::IntCounterVec,
    ) -> Result<Self, super::cache::DirError> {
        let cache = ModuleCache::open(dir, self.engine_key.to_string(), counter)?;
        self.cache = Some(Arc::new(cache));
        Ok(self)
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// What the engine compiles to: equal for engines whose code is
    /// interchangeable.
    pub fn engine_key(&self) -> &str {
        &self.engine_key
    }

    /// Compile and type-check a module against the contract.
    pub fn compile(&self, bytes: &[u8], source: String) -> Result<Compiled, LoadError> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let component = self.component(bytes, &sha256)?;
        let contract = |e: wasmtime::Error| LoadError::Contract(format!("{e:#}"));
        let instance_pre = self.linker.instantiate_pre(&component).map_err(contract)?;
        let pre = match v2::TransformPre::new(instance_pre.clone()) {
            Ok(pre) => Pre::V2(pre),
            Err(v2_error) => match v1::TransformPre::new(instance_pre) {
                Ok(pre) => Pre::V1(pre),
                // The current contract's error names what is missing.
                Err(_) => return Err(contract(v2_error)),
            },
        };
        Ok(Compiled {
            sandbox: self.clone(),
            pre,
            sha256,
            source,
        })
    }
}

impl Sandbox {
    /// A module's code: the embedded default's precompiled code, an entry
    /// of the cache, or compiled now (and then cached).
    fn component(&self, bytes: &[u8], sha256: &str) -> Result<Component, LoadError> {
        if let Some(component) = embedded::precompiled(&self.engine, &self.engine_key, sha256) {
            return Ok(component);
        }
        let compile = || {
            Component::new(&self.engine, bytes).map_err(|e| LoadError::Compile(format!("{e:#}")))
        };
        match &self.cache {
            Some(cache) => cache.component(&self.engine, sha256, compile),
            None => compile(),
        }
    }
}

/// A module's bindings, by the contract it was built against.
enum Pre {
    V2(v2::TransformPre<HostState>),
    V1(v1::TransformPre<HostState>),
}

enum Bindings {
    V2(v2::Transform),
    V1(v1::Transform),
}

/// A compiled, contract-checked module.
pub struct Compiled {
    sandbox: Sandbox,
    pre: Pre,
    sha256: String,
    source: String,
}

impl Compiled {
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The contract the module was built against: `"2.0"` or `"1.0"`.
    pub fn contract(&self) -> &'static str {
        match self.pre {
            Pre::V2(_) => "2.0",
            Pre::V1(_) => "1.0",
        }
    }

    /// A fresh instance, initialised with `init`.
    pub fn instantiate(self, init: &[(String, String)]) -> Result<Instance, LoadError> {
        let module = Arc::new(self);
        let (store, bindings) = module.new_instance(init)?;
        Ok(Instance {
            module,
            init: init.to_vec(),
            store,
            bindings,
            scratch_ends: Vec::new(),
        })
    }

    fn new_instance(
        &self,
        init: &[(String, String)],
    ) -> Result<(Store<HostState>, Bindings), LoadError> {
        let limits = self.sandbox.limits;
        let state = HostState {
            wasi: wasi::context(),
            table: wasi::table(),
            limiter: Limiter::new(limits.max_memory_bytes),
            deadline: None,
            tag: self.sha256[..12].to_string(),
            log_lines: Throttle::new(LOG_LINES_PER_SECOND, Duration::from_secs(1)),
            lookup: Lookup::default(),
        };
        let mut store = Store::new(&self.sandbox.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        let _running = self.sandbox.ticker.as_ref().map(|t| t.running());
        arm_deadline(&mut store, limits.timeout);
        let instantiated = match &self.pre {
            Pre::V2(pre) => pre.instantiate(&mut store).map(Bindings::V2),
            Pre::V1(pre) => pre.instantiate(&mut store).map(Bindings::V1),
        };
        let bindings = instantiated
            .map_err(|e| LoadError::Contract(format!("instantiation failed: {e:#}")))?;
        arm_deadline(&mut store, limits.timeout);
        let initialised = match &bindings {
            Bindings::V2(b) => b.pmacct_transform_guest().call_init(&mut store, init),
            Bindings::V1(b) => b.pmacct_transform_guest().call_init(&mut store, init),
        };
        initialised
            .map_err(|e| LoadError::Init(format!("init failed: {}", classify(&store, &e))))?
            .map_err(LoadError::Init)?;
        Ok((store, bindings))
    }
}

/// One live instance: the engine the pipeline calls.
pub struct Instance {
    module: Arc<Compiled>,
    init: Vec<(String, String)>,
    store: Store<HostState>,
    bindings: Bindings,
    /// A run's ends counted from its own first byte, as the contract takes them.
    scratch_ends: Vec<u32>,
}

impl Instance {
    /// Bytes of the instance's linear memories now.
    pub fn memory_bytes(&self) -> usize {
        self.store.data().limiter.memory()
    }
}

impl Backend for Instance {
    fn run(&mut self, chunk: Records<'_>, out: &mut Output) -> Result<(), Fault> {
        let ends = chunk.local_ends(&mut self.scratch_ends);
        let limits = self.module.sandbox.limits;
        let running = self.module.sandbox.ticker.as_ref().map(|t| t.running());
        arm_deadline(&mut self.store, limits.timeout);
        let (store, bytes) = (&mut self.store, chunk.bytes());
        let result = match &self.bindings {
            Bindings::V2(b) => b
                .pmacct_transform_guest()
                .call_transform(&mut *store, bytes, ends)
                .map(Lifted::V2),
            Bindings::V1(b) => b
                .pmacct_transform_guest()
                .call_transform(&mut *store, bytes, ends)
                .map(Lifted::V1),
        };
        drop(running);
        let lifted = result.map_err(|e| classify(&self.store, &e))?;
        let (records, max) = (chunk.len(), limits.max_output_bytes);
        let errors = match lifted {
            Lifted::V2(o) => {
                let samples = raise(o.samples);
                output::check_set(&samples, o.errors.iter().map(|e| e.index), records, max)?;
                add_set(out, samples);
                o.errors
                    .into_iter()
                    .map(|e| (e.index, e.reason, e.detail))
                    .collect()
            }
            Lifted::V1(o) => {
                let indices = o.errors.iter().map(|e| e.index);
                output::check(&o.body, o.samples, indices, records, max)?;
                lines::read(&o.body, &mut out.samples).map_err(Fault::BadOutput)?;
                o.errors
                    .into_iter()
                    .map(|e| (e.index, e.reason, e.detail))
                    .collect()
            }
        };
        add_errors(out, chunk.first(), errors);
        Ok(())
    }

    fn reset(&mut self) -> Result<(), LoadError> {
        let (mut store, bindings) = self.module.new_instance(&self.init)?;
        store.data_mut().lookup = std::mem::take(&mut self.store.data_mut().lookup);
        self.store = store;
        self.bindings = bindings;
        Ok(())
    }

    fn serve(&mut self, tables: &Arc<Tables>) {
        let lookup = &mut self.store.data_mut().lookup;
        if !lookup
            .tables
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(t, tables))
        {
            lookup.counts.resize(tables.len(), [0; 2]);
            lookup.tables = Some(tables.clone());
        }
    }

    fn take_lookups(&mut self, counts: &mut [[u64; 2]]) {
        for (sum, own) in counts
            .iter_mut()
            .zip(&mut self.store.data_mut().lookup.counts)
        {
            let own = std::mem::take(own);
            sum[0] += own[0];
            sum[1] += own[1];
        }
    }
}

/// A call's output as the bindings lifted it.
enum Lifted {
    V2(v2::exports::pmacct::transform::guest::ChunkOutput),
    V1(v1::exports::pmacct::transform::guest::BatchOutput),
}

/// The lifted structure as the SDK's type: its vectors moved.
fn raise(s: v2::exports::pmacct::transform::guest::Samples) -> SampleSet {
    SampleSet {
        text: s.text,
        string_ends: s.string_ends,
        series_ends: s.series_ends,
        point_series: s.point_series,
        values: s.values,
        timestamps: s.timestamps,
    }
}

/// A 2.0 module's checked samples.
fn add_set(out: &mut Output, samples: SampleSet) {
    if out.samples.is_blank() {
        // Usually one chunk fills a batch: take the lifted structure
        // instead of copying it.
        out.samples = samples;
    } else {
        out.samples.append(&samples);
    }
}

/// A module's errors, bounded and numbered in the whole run.
fn add_errors(out: &mut Output, first: u32, errors: Vec<(u32, String, String)>) {
    out.errors
        .extend(errors.into_iter().map(|(index, mut reason, mut detail)| {
            output::bound_error(&mut reason, &mut detail);
            IndexedError {
                index: first + index,
                error: RecordError::new(reason, detail),
            }
        }));
}

/// What ended a call that failed: a limit it ran into, its time limit (in
/// wasm or in a WASI wait), or a trap.
fn classify(store: &Store<HostState>, e: &wasmtime::Error) -> Fault {
    match store.data().limiter.hit() {
        Some(Hit::Memory) => return Fault::Oom,
        Some(Hit::TableElements) => return Fault::Limit("table elements"),
        None => {}
    }
    if e.downcast_ref::<WaitTimedOut>().is_some() {
        return Fault::Timeout;
    }
    if let Some(ResourceTableError::Full) = e.downcast_ref::<ResourceTableError>() {
        return Fault::Limit("handles");
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) | Some(Trap::OutOfFuel) => Fault::Timeout,
        _ => Fault::Trap(
            format!("{e:#}")
                .lines()
                .next()
                .unwrap_or("trap")
                .to_string(),
        ),
    }
}

/// wasmtime's error type is its own, not `anyhow`'s.
fn wt(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
}

/// The call that follows may run `timeout` (rounded up to a tick) at most,
/// in wasm code and in WASI waits.
fn arm_deadline(store: &mut Store<HostState>, timeout: Option<Duration>) {
    if let Some(d) = timeout {
        let ticks = (d.as_millis() as u64).div_ceil(EPOCH_TICK.as_millis() as u64);
        store.set_epoch_deadline(ticks.max(1));
        store.data_mut().deadline = Some(Instant::now() + EPOCH_TICK * ticks.max(1) as u32);
    }
    store.data_mut().limiter.clear_hit();
}

pub(super) struct HostState {
    wasi: WasiCtx,
    pub(super) table: ResourceTable,
    limiter: Limiter,
    /// When the running call's time is up; WASI waits end there.
    pub(super) deadline: Option<Instant>,
    tag: String,
    log_lines: Throttle,
    /// What `host.lookup` reads and counts; carried over a reset.
    lookup: Lookup,
}

#[derive(Default)]
struct Lookup {
    /// The tables of the chunk being transformed.
    tables: Option<Arc<Tables>>,
    /// Hits and misses by table (one per table served), until the
    /// pipeline takes them.
    counts: Vec<[u64; 2]>,
    /// Whether a call naming no served table was logged: once an instance
    /// and its successors, as a module may call it for every record.
    undeclared_logged: bool,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl HostState {
    fn log(&mut self, level: Level, message: String) {
        let Some(dropped) = self.log_lines.admit() else {
            return;
        };
        if dropped > 0 {
            tracing::warn!(module = %self.tag, dropped, "transform log lines dropped (rate limit)");
        }
        let msg = output::prefix(&message, LOG_LINE_MAX);
        match level {
            Level::Error => tracing::error!(module = %self.tag, "{msg}"),
            Level::Warn => tracing::warn!(module = %self.tag, "{msg}"),
            Level::Info => tracing::info!(module = %self.tag, "{msg}"),
            Level::Debug => tracing::debug!(module = %self.tag, "{msg}"),
        }
    }
}

/// The levels of both contracts' `log`.
enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl HostState {
    /// `host.lookup` (2.0): one trie walk or MaxMind DB search and a path
    /// of at most four keys; the address, however long, is read once and
    /// refused early by the parser. Nothing when no table is served.
    fn lookup(&mut self, table: &str, address: &str, path: &str) -> Option<String> {
        let mut value = String::new();
        let found = (self.lookup.tables.as_ref())
            .and_then(|tables| tables.lookup(table, address, path, &mut value));
        let Some((i, hit)) = found else {
            self.undeclared(table);
            return None;
        };
        // One count per table, sized when the tables were served.
        if let Some(count) = self.lookup.counts.get_mut(i) {
            count[usize::from(!hit)] += 1;
        }
        hit.then_some(value)
    }

    /// A call naming a table ENRICH_TABLES does not declare answers
    /// nothing and counts nowhere (the name is the module's, unbounded):
    /// said once, so that a misspelt table is not a silent default.
    fn undeclared(&mut self, table: &str) {
        if std::mem::replace(&mut self.lookup.undeclared_logged, true) {
            return;
        }
        let declared = self.lookup.tables.as_ref().map_or(0, |t| t.len());
        let name = output::prefix(table, 64);
        tracing::warn!(
            module = %self.tag,
            table = ?name,
            declared,
            "the module looked up a table ENRICH_TABLES does not declare: the call answers nothing (said once)"
        );
    }
}

/// Each contract's `host` interface: the same `log`, its own types, and
/// what the contract adds (`$more`).
macro_rules! host_interface {
    ($contract:ident $($more:item)*) => {
        impl $contract::pmacct::transform::host::Host for HostState {
            $($more)*

            fn log(&mut self, level: $contract::pmacct::transform::host::Level, message: String) {
                use $contract::pmacct::transform::host::Level as L;
                let level = match level {
                    L::Error => Level::Error,
                    L::Warn => Level::Warn,
                    L::Info => Level::Info,
                    L::Debug => Level::Debug,
                };
                HostState::log(self, level, message);
            }
        }
    };
}

host_interface!(v2
    fn lookup(&mut self, table: String, address: String, path: String) -> Option<String> {
        HostState::lookup(self, &table, &address, &path)
    }
);
host_interface!(v1);
