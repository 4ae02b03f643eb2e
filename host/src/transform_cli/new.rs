//! `transform new DIR --lang L`: a project that builds into a module
//! writing exactly what the embedded default writes, with the samples its
//! records must give (`expected.jsonl`).

use std::path::Path;

use anyhow::{bail, Context};
use clap::{Args, FromArgMatches};

use super::templates::{self, RECORDS};
use crate::config::flags::{Language, LimitsFlags, RulesFlags, TransformNewArgs};

/// Writes the project; returns what to print.
pub fn transform_new(args: &TransformNewArgs) -> anyhow::Result<String> {
    let dir = &args.dir;
    if dir.exists() && std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_some()) {
        bail!("{} exists and is not an empty folder", dir.display());
    }
    let name = package_name(dir)?;
    let module = name.replace('-', "_");
    for f in templates::project(args.lang) {
        let text = f
            .text
            .replace("{{name}}", &name)
            .replace("{{module}}", &module);
        write(&dir.join(&f.path), text.as_bytes())?;
    }
    write(&dir.join("expected.jsonl"), &expected_samples()?)?;
    let next = match args.lang {
        Language::Rust => "transform build (needs: rustup target add wasm32-wasip2)",
        Language::Python => "transform build (needs: pip install -r requirements.txt)",
        Language::Js => "transform build (needs: npm ci, in the project)",
    };
    Ok(format!(
        "created {} ({:?}): the default rules; next: cd {} && pmacct-kafka-vm {next}",
        dir.display(),
        args.lang,
        dir.display()
    ))
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// The folder's name as a package name: lower case, `-` for anything but
/// letters and digits, starting with a letter.
pub fn package_name(dir: &Path) -> anyhow::Result<String> {
    let base = std::path::absolute(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let mut name: String = base
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    name = name.trim_matches('-').to_string();
    if name.is_empty() {
        bail!(
            "{}: the folder needs a name (it names the module)",
            dir.display()
        );
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name.insert_str(0, "transform-");
    }
    Ok(name)
}

/// The embedded default's samples for the sample records, with the
/// settings `transform test` has when none is given (the environment's
/// are ignored, so every project starts alike).
fn expected_samples() -> anyhow::Result<Vec<u8>> {
    let rules = RulesFlags::from_arg_matches(&defaults_only::<RulesFlags>())?;
    let limits = LimitsFlags::from_arg_matches(&defaults_only::<LimitsFlags>())?;
    let mut out = Vec::new();
    super::samples_of(
        None,
        &rules,
        &limits,
        None,
        &mut RECORDS.as_bytes(),
        &mut out,
        &mut std::io::sink(),
    )?;
    Ok(out)
}

/// Matches of no arguments, with no environment variable read.
fn defaults_only<T: Args>() -> clap::ArgMatches {
    T::augment_args(clap::Command::new("defaults"))
        .mut_args(|a| a.env(None::<&str>))
        .get_matches_from(["defaults"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_from_folders() {
        let name = |d: &str| package_name(Path::new(d)).unwrap();
        assert_eq!(name("/tmp/my-transform"), "my-transform");
        assert_eq!(name("/tmp/My Transform_2"), "my-transform-2");
        assert_eq!(name("/tmp/2fast"), "transform-2fast");
        assert!(package_name(Path::new("/")).is_err());
    }
}
