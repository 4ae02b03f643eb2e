//! Builds the guest modules for wasm32-wasip2 in one cargo run: the default
//! transform (`transforms/default`), which the host embeds, and the examples
//! and the test probe, which the tests load from PMACCT_GUEST_WASM_DIR.
//! Set PMACCT_DEFAULT_TRANSFORM_WASM to a prebuilt default module to skip
//! this (e.g. in a Docker build stage).
//!
//! It then compiles the default module with the host's own engine settings
//! (`src/transform/engine_config.rs`, included here), so the host loads its
//! code at start instead of compiling it. For cargo to build wasmtime once
//! for this script and the host, the profiles' `build-override` must match
//! the profiles (see the workspace's Cargo.toml).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

#[path = "src/transform/engine_config.rs"]
#[allow(dead_code)]
mod engine_config;

/// Every guest crate of the workspace.
const GUESTS: [&str; 6] = [
    "default-transform",
    "probe-transform",
    "structure-probe",
    "example-counters",
    "example-subnets",
    "example-enrich",
];

fn main() {
    println!("cargo:rerun-if-env-changed=PMACCT_DEFAULT_TRANSFORM_WASM");
    println!("cargo:rerun-if-changed=src/transform/engine_config.rs");
    let default = match env::var("PMACCT_DEFAULT_TRANSFORM_WASM") {
        Ok(prebuilt) => {
            println!("cargo:rerun-if-changed={prebuilt}");
            PathBuf::from(prebuilt)
        }
        Err(_) => build_guests(),
    };
    println!(
        "cargo:rustc-env=DEFAULT_TRANSFORM_WASM={}",
        default.display()
    );
    precompile(&default);
}

/// Compile the default module as the host would, into OUT_DIR; without a
/// usable engine here, an empty artifact makes the host compile it at start.
fn precompile(wasm: &Path) {
    let bytes =
        std::fs::read(wasm).unwrap_or_else(|e| panic!("cannot read {}: {e}", wasm.display()));
    let sha256: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!("cargo:rustc-env=DEFAULT_TRANSFORM_SHA256={sha256}");
    // The default limits time calls out, so their code checks the epoch.
    let built = wasmtime::Engine::new(&engine_config::config(true)).and_then(|engine| {
        let code = engine.precompile_component(&bytes)?;
        Ok((code, engine_config::compatibility_key(&engine)))
    });
    let (code, key) = built.unwrap_or_else(|e| {
        println!("cargo:warning=cannot precompile the default transform ({e}); the host will compile it at start");
        (Vec::new(), String::new())
    });
    let out =
        Path::new(&env::var("OUT_DIR").expect("set by cargo")).join("default_transform.cwasm");
    std::fs::write(&out, code).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
    println!("cargo:rustc-env=DEFAULT_TRANSFORM_CWASM={}", out.display());
    println!("cargo:rustc-env=DEFAULT_TRANSFORM_ENGINE_KEY={key}");
}

/// Build every guest module; returns the default module's path.
fn build_guests() -> PathBuf {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.parent().expect("host/ is inside the workspace");
    for watched in [
        "guest-sdk/src",
        "guest-sdk/wit",
        "guest-sdk/Cargo.toml",
        "transforms",
        "examples/transforms",
        "Cargo.lock",
        ".cargo/config.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    // A target dir of its own: the outer build holds a lock on its own.
    let target_root = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let target_dir = target_root.join("wasm-guest");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .args(GUESTS.iter().flat_map(|p| ["-p", *p]))
        .arg("--target-dir")
        .arg(&target_dir)
        // Small, fast module: no debug info, whole-program optimisation.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1");
    // What the outer build set for the host must not leak into the guest.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("cannot run cargo to build the default transform");
    if !status.success() {
        panic!(
            "building the default transform for wasm32-wasip2 failed; \
             is the target installed? (rustup target add wasm32-wasip2)"
        );
    }
    let wasm_dir = target_dir.join("wasm32-wasip2/release");
    println!(
        "cargo:rustc-env=PMACCT_GUEST_WASM_DIR={}",
        wasm_dir.display()
    );
    let built = wasm_dir.join("default_transform.wasm");
    let out = Path::new(&env::var("OUT_DIR").expect("set by cargo")).join("default_transform.wasm");
    std::fs::copy(&built, &out).unwrap_or_else(|e| panic!("cannot copy {}: {e}", built.display()));
    out
}
