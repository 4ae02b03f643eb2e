//! Transform modules as wasmtime components, sandboxed.
//!
//! A module gets WASI with nothing behind it (no directories, environment,
//! arguments, sockets; a clock frozen at the epoch), a memory ceiling and a
//! time limit per call (epoch interruption).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pmacct_guest_sdk::{BatchOutput, IndexedError, RecordError};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine as WtEngine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::{Backend, Fault, LoadError, Records};
use crate::throttle::Throttle;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../guest-sdk/wit",
        world: "transform",
    });
}

use bindings::pmacct::transform::host::{Host, Level};
use bindings::{Transform, TransformPre};

/// How often the epoch ticks; the time limit is rounded up to it.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// A guest may log this many lines per second; the rest are dropped (and counted).
const LOG_LINES_PER_SECOND: u32 = 20;
const LOG_LINE_MAX: usize = 2048;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_memory_bytes: usize,
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
    linker: Arc<Linker<HostState>>,
    limits: Limits,
}

impl Sandbox {
    pub fn new(limits: Limits) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(limits.timeout.is_some());
        if limits.perf_map {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = WtEngine::new(&config).map_err(wt)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(wt)?;
        Transform::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)
            .map_err(wt)?;
        if limits.timeout.is_some() {
            // The ticker holds only a weak handle: it stops with the last engine.
            let weak = engine.weak();
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || loop {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => return,
                    }
                })?;
        }
        Ok(Sandbox {
            engine,
            linker: Arc::new(linker),
            limits,
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Compile and type-check a module against the contract.
    pub fn compile(&self, bytes: &[u8], source: String) -> Result<Compiled, LoadError> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(TransformPre::new)
            .map_err(|e| LoadError::Contract(format!("{e:#}")))?;
        Ok(Compiled {
            runtime: self.clone(),
            pre,
            sha256,
            source,
        })
    }
}

/// A compiled, contract-checked module.
pub struct Compiled {
    runtime: Sandbox,
    pre: TransformPre<HostState>,
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

    /// A fresh instance, initialised with `init`.
    pub fn instantiate(self, init: &[(String, String)]) -> Result<Instance, LoadError> {
        let module = Arc::new(self);
        let (store, bindings) = module.new_instance(init)?;
        Ok(Instance {
            module,
            init: init.to_vec(),
            store,
            bindings,
        })
    }

    fn new_instance(
        &self,
        init: &[(String, String)],
    ) -> Result<(Store<HostState>, Transform), LoadError> {
        let limits = self.runtime.limits;
        let state = HostState {
            wasi: WasiCtxBuilder::new()
                .wall_clock(FrozenClock)
                .monotonic_clock(FrozenClock)
                .build(),
            table: ResourceTable::new(),
            limiter: Limiter {
                max_memory: limits.max_memory_bytes,
                hit: Arc::new(AtomicBool::new(false)),
            },
            tag: self.sha256[..12].to_string(),
            log_lines: Throttle::new(LOG_LINES_PER_SECOND, Duration::from_secs(1)),
        };
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|s| &mut s.limiter);
        arm_deadline(&mut store, limits.timeout);
        store.epoch_deadline_trap();
        let bindings = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| LoadError::Contract(format!("instantiation failed: {e:#}")))?;
        arm_deadline(&mut store, limits.timeout);
        bindings
            .pmacct_transform_guest()
            .call_init(&mut store, init)
            .map_err(|e| LoadError::Init(format!("init trapped: {e:#}")))?
            .map_err(LoadError::Init)?;
        Ok((store, bindings))
    }
}

/// One live instance: the engine the pipeline calls.
pub struct Instance {
    module: Arc<Compiled>,
    init: Vec<(String, String)>,
    store: Store<HostState>,
    bindings: Transform,
}

impl Backend for Instance {
    fn run(&mut self, chunk: Records<'_>, out: &mut BatchOutput) -> Result<(), Fault> {
        let (records, ends) = (chunk.bytes, chunk.ends);
        arm_deadline(&mut self.store, self.module.runtime.limits.timeout);
        let result =
            self.bindings
                .pmacct_transform_guest()
                .call_transform(&mut self.store, records, ends);
        let output = match result {
            Ok(o) => o,
            Err(e) => return Err(self.classify(e)),
        };
        if output.errors.iter().any(|e| e.index as usize >= ends.len()) {
            return Err(Fault::Trap(
                "module reported an error for a record it was not given".into(),
            ));
        }
        // VictoriaMetrics skips lines it cannot parse and still answers 204,
        // so a module writing malformed lines would lose data silently. The
        // SDK never does; a hand-written module is checked, cheaply.
        if !well_formed(&output.body, output.samples) {
            return Err(Fault::Trap(
                "module wrote malformed import lines (not one {\"metric\":... line per sample)"
                    .into(),
            ));
        }
        if out.body.is_empty() {
            // Usually one chunk fills a batch: take the lifted buffer
            // instead of copying it.
            out.body = output.body;
        } else {
            out.body.extend_from_slice(&output.body);
        }
        out.samples += output.samples;
        out.errors
            .extend(output.errors.into_iter().map(|e| IndexedError {
                index: chunk.first_index + e.index,
                error: RecordError::new(e.reason, e.detail),
            }));
        Ok(())
    }

    fn reset(&mut self) -> Result<(), LoadError> {
        let (store, bindings) = self.module.new_instance(&self.init)?;
        self.store = store;
        self.bindings = bindings;
        Ok(())
    }
}

impl Instance {
    fn classify(&self, e: wasmtime::Error) -> Fault {
        if self.store.data().limiter.hit.load(Ordering::Relaxed) {
            return Fault::Oom;
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
}

/// wasmtime's error type is its own, not `anyhow`'s.
fn wt(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
}

/// `samples` lines, each an object starting with `{"metric":{` and ending
/// in `}`: the import format's shape, without parsing the JSON.
fn well_formed(body: &[u8], samples: u32) -> bool {
    const START: &[u8] = br#"{"metric":{"#;
    let mut lines = 0u32;
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', body) {
        let line = &body[start..end];
        if !line.starts_with(START) || !line.ends_with(b"}") {
            return false;
        }
        lines += 1;
        start = end + 1;
    }
    start == body.len() && lines == samples
}

/// The call that follows may run `timeout` (rounded up to a tick) at most.
fn arm_deadline(store: &mut Store<HostState>, timeout: Option<Duration>) {
    if let Some(d) = timeout {
        let ticks = (d.as_millis() as u64).div_ceil(EPOCH_TICK.as_millis() as u64);
        store.set_epoch_deadline(ticks.max(1));
    }
}

struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    tag: String,
    log_lines: Throttle,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        let Some(dropped) = self.log_lines.admit() else {
            return;
        };
        if dropped > 0 {
            tracing::warn!(module = %self.tag, dropped, "transform log lines dropped (rate limit)");
        }
        let mut msg = message.as_str();
        if msg.len() > LOG_LINE_MAX {
            let mut cut = LOG_LINE_MAX;
            while !msg.is_char_boundary(cut) {
                cut -= 1;
            }
            msg = &msg[..cut];
        }
        match level {
            Level::Error => tracing::error!(module = %self.tag, "{msg}"),
            Level::Warn => tracing::warn!(module = %self.tag, "{msg}"),
            Level::Info => tracing::info!(module = %self.tag, "{msg}"),
            Level::Debug => tracing::debug!(module = %self.tag, "{msg}"),
        }
    }
}

/// Denies memory growth past the ceiling and remembers that it did, so the
/// trap that follows (Rust guests abort on allocation failure) is reported
/// as out-of-memory rather than as a generic trap.
struct Limiter {
    max_memory: usize,
    hit: Arc<AtomicBool>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.hit.store(true, Ordering::Relaxed);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// A clock that never moves: transforms must not depend on time.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::well_formed;

    #[test]
    fn import_line_shape() {
        let good = b"{\"metric\":{\"__name__\":\"a\"},\"values\":[1],\"timestamps\":[2]}\n";
        assert!(well_formed(good, 1));
        assert!(well_formed(b"", 0));
        assert!(!well_formed(good, 2), "count must match");
        assert!(
            !well_formed(&good[..good.len() - 1], 1),
            "unterminated line"
        );
        assert!(!well_formed(b"garbage\n", 1));
        assert!(
            !well_formed(b"{\"metric\":{\"__name__\":\"a\"},\"values\":[1\n", 1),
            "cut short"
        );
    }
}
