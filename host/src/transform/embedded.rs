//! The default transform embedded in the binary: its module, and its code
//! compiled by the build script with the host's own engine settings
//! (`engine_config.rs`), so the host starts without compiling it.
//!
//! The precompiled code is loaded only by an engine whose compatibility key
//! is the build's: other CPU features (an image built on one machine and
//! run on another), a setting that changes code (TRANSFORM_TIMEOUT_MS=0) or
//! a build script that could not precompile all make the host compile the
//! module as any other (and keep it in TRANSFORM_CACHE_DIR).

use wasmtime::component::Component;
use wasmtime::Engine;

/// The default transform, built from `transforms/default` for wasm32-wasip2
/// by this crate's build script.
pub static DEFAULT_WASM: &[u8] = include_bytes!(env!("DEFAULT_TRANSFORM_WASM"));

/// [`DEFAULT_WASM`] compiled by the build script (empty when it could not).
static PRECOMPILED: &[u8] = include_bytes!(env!("DEFAULT_TRANSFORM_CWASM"));
/// The compatibility key of the build script's engine.
const PRECOMPILED_KEY: &str = env!("DEFAULT_TRANSFORM_ENGINE_KEY");
/// The SHA-256 of [`DEFAULT_WASM`], to know it when it comes back from a
/// file too.
const DEFAULT_SHA256: &str = env!("DEFAULT_TRANSFORM_SHA256");

/// The default's precompiled code, when `wasm_sha256` is the default's and
/// the engine is the one it was compiled for.
pub fn precompiled(engine: &Engine, engine_key: &str, wasm_sha256: &str) -> Option<Component> {
    if wasm_sha256 != DEFAULT_SHA256 || PRECOMPILED.is_empty() {
        return None;
    }
    if engine_key != PRECOMPILED_KEY {
        tracing::info!(
            built_for = PRECOMPILED_KEY,
            engine = engine_key,
            "the default transform was precompiled for other engine settings or CPU features; compiling it"
        );
        return None;
    }
    // SAFETY: these bytes are part of the binary, written by its build
    // script from `Engine::precompile_component`; the key says they were
    // compiled with this engine's settings, which wasmtime checks again.
    match unsafe { Component::deserialize(engine, PRECOMPILED) } {
        Ok(component) => {
            tracing::info!("the default transform runs from the code precompiled by its build");
            Some(component)
        }
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot load the precompiled default transform; compiling it");
            None
        }
    }
}
