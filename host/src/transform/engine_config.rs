//! The wasmtime engine's settings, defined once: the host's sandbox builds
//! its engine from them, and so does the build script, which includes this
//! file (`#[path]`) to precompile the embedded default. Code compiled by one
//! loads in the other only when the two agree, and [`compatibility_key`]
//! says whether they do. Being part of the build script, this file uses
//! nothing but wasmtime and sha2.

use std::hash::{Hash, Hasher};

use sha2::{Digest, Sha256};
use wasmtime::{Config, Engine};

/// The settings of every engine that compiles or loads a transform.
/// `epoch_interruption`: whether calls can be interrupted at a time limit
/// (TRANSFORM_TIMEOUT_MS > 0), which changes the code compiled.
pub fn config(epoch_interruption: bool) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(epoch_interruption);
    config
}

/// A name for what `engine` compiles to: two engines have the same key
/// exactly when code compiled by one may be loaded by the other (wasmtime's
/// version, the settings that shape code, the CPU features it uses). Stable
/// across processes and builds of the same source, unlike `DefaultHasher`.
pub fn compatibility_key(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.0.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Feeds what `Hash` writes into SHA-256; `finish` is never called by a
/// `Hash` implementation, and the digest is read from the inner value.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}
