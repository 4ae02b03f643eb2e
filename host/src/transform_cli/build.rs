//! `transform build [DIR]`: the project's language found from its files,
//! its toolchain run with the flags the contract needs, the module checked.
//! A missing toolchain is named with the command that installs it.

use std::ffi::OsString;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

use super::new::package_name;
use super::templates;
use crate::config::flags::{Language, TransformBuildArgs};

/// The Rust target a module is built for.
const RUST_TARGET: &str = "wasm32-wasip2";

/// Builds and checks the module; what to print.
pub fn transform_build(args: &TransformBuildArgs) -> anyhow::Result<String> {
    let dir = &args.dir;
    let lang = language(dir)?;
    let module = package_name(dir)?.replace('-', "_");
    let out = match &args.out {
        Some(out) => std::path::absolute(out)?,
        None => std::path::absolute(dir.join(format!("{module}.wasm")))?,
    };
    let built = match lang {
        Language::Rust => rust(dir)?,
        Language::Python => python(dir, &out)?,
        Language::Js => js(dir, &out)?,
    };
    if built != out {
        std::fs::copy(&built, &out)
            .with_context(|| format!("copying {} to {}", built.display(), out.display()))?;
    }
    let checked = super::check_module(&out, &args.rules, &args.limits)?;
    let bytes = std::fs::read(&out).with_context(|| format!("reading {}", out.display()))?;
    Ok(format!(
        "built {} ({} bytes, sha256 {})\n{checked}",
        out.display(),
        bytes.len(),
        hex::encode(Sha256::digest(&bytes))
    ))
}

/// The project's language, from the files `transform new` writes.
fn language(dir: &Path) -> anyhow::Result<Language> {
    let has = |f: &str| dir.join(f).is_file();
    Ok(if has("Cargo.toml") {
        Language::Rust
    } else if has("app.py") {
        Language::Python
    } else if has("app.js") {
        Language::Js
    } else {
        bail!(
            "{}: no Cargo.toml, app.py or app.js, so not a transform project (start one with: pmacct-kafka-vm transform new DIR --lang rust|python|js)",
            dir.display()
        )
    })
}

/// Runs a toolchain's command, its output on stderr; `install` says how to
/// get it when it is missing.
fn run(mut cmd: Command, install: &str) -> anyhow::Result<Vec<u8>> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let output = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) if e.kind() == ErrorKind::NotFound => bail!("{program} not found: {install}"),
        Err(e) => bail!("{program}: {e}"),
    };
    if !output.status.success() {
        // What it printed on stdout may be its only explanation.
        eprint!("{}", String::from_utf8_lossy(&output.stdout));
        bail!(
            "{program} failed ({}); its messages are above",
            output.status
        );
    }
    Ok(output.stdout)
}

fn tool(var: &str, default: impl Into<OsString>) -> OsString {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.into())
}

fn rust(dir: &Path) -> anyhow::Result<PathBuf> {
    let install = "install Rust (https://rustup.rs), then: rustup target add wasm32-wasip2";
    let mut sysroot = Command::new(tool("RUSTC", "rustc"));
    sysroot.current_dir(dir).args(["--print", "sysroot"]);
    let sysroot = String::from_utf8(run(sysroot, install)?)?;
    if !Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(RUST_TARGET)
        .is_dir()
    {
        bail!("the Rust target {RUST_TARGET} is not installed: rustup target add {RUST_TARGET}");
    }
    let mut cargo = Command::new(tool("CARGO", "cargo"));
    cargo
        .current_dir(dir)
        .args(["build", "--release", "--target", RUST_TARGET])
        .args(["--message-format", "json-render-diagnostics"]);
    let messages = run(cargo, install)?;
    // The cdylib cargo reports, wherever CARGO_TARGET_DIR puts it.
    String::from_utf8_lossy(&messages)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
        })
        .filter_map(|m| m["filenames"].as_array().cloned())
        .flatten()
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .find(|f| f.extension().is_some_and(|e| e == "wasm"))
        .context("cargo built no .wasm: is the package's crate-type \"cdylib\"?")
}

fn python(dir: &Path, out: &Path) -> anyhow::Result<PathBuf> {
    let install = format!(
        "pip install -r requirements.txt ({}), or set COMPONENTIZE_PY",
        templates::python_toolchain()
    );
    let mut cmd = Command::new(tool("COMPONENTIZE_PY", "componentize-py"));
    cmd.current_dir(dir)
        .args([
            "-d",
            "wit",
            "-w",
            "transform",
            "componentize",
            "-p",
            ".",
            "app",
            "-o",
        ])
        .arg(out);
    run(cmd, &install)?;
    Ok(out.to_path_buf())
}

fn js(dir: &Path, out: &Path) -> anyhow::Result<PathBuf> {
    let local = std::path::absolute(dir.join("node_modules/.bin/componentize-js"))?;
    let program = tool("COMPONENTIZE_JS", &local);
    if Path::new(&program) == local && !local.is_file() {
        bail!(
            "componentize-js not found in {}: run `npm ci` there (Node.js 18 or later), or set COMPONENTIZE_JS",
            dir.join("node_modules").display()
        );
    }
    let mut cmd = Command::new(program);
    // No WASI feature beyond what the host's empty sandbox offers.
    cmd.current_dir(dir)
        .args([
            "app.js",
            "--wit",
            "wit/transform.wit",
            "--world-name",
            "transform",
        ])
        .args([
            "-d",
            "stdio",
            "random",
            "clocks",
            "http",
            "fetch-event",
            "-o",
        ])
        .arg(out);
    run(cmd, "npm ci, in the project")?;
    Ok(out.to_path_buf())
}
