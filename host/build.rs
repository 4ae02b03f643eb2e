//! Builds the guest modules for wasm32-wasip2 in one cargo run: the default
//! transform (`transforms/default`), which the host embeds, and the examples
//! and the test probe, which the tests load from PMACCT_GUEST_WASM_DIR.
//! Set PMACCT_DEFAULT_TRANSFORM_WASM to a prebuilt default module to skip
//! this (e.g. in a Docker build stage).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every guest crate of the workspace.
const GUESTS: [&str; 5] = [
    "default-transform",
    "probe-transform",
    "example-counters",
    "example-subnets",
    "example-enrich",
];

fn main() {
    println!("cargo:rerun-if-env-changed=PMACCT_DEFAULT_TRANSFORM_WASM");
    if let Ok(prebuilt) = env::var("PMACCT_DEFAULT_TRANSFORM_WASM") {
        println!("cargo:rerun-if-changed={prebuilt}");
        println!("cargo:rustc-env=DEFAULT_TRANSFORM_WASM={prebuilt}");
        return;
    }
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
    println!("cargo:rustc-env=DEFAULT_TRANSFORM_WASM={}", out.display());
}
