//! What `transform new` writes, embedded in the binary so an author needs
//! no checkout: for each language the default rules, the SDK, the contract,
//! a toolchain manifest, sample records and a README.

use crate::config::flags::Language;

/// The contract every SDK builds against (2.0).
const WIT: &str = include_str!("../../../guest-sdk/wit/transform.wit");
/// Records every project starts with (`records.jsonl`).
pub const RECORDS: &str = include_str!("../../../guest-sdk/templates/records.jsonl");

/// The Rust SDK's sources, vendored into a Rust project's `sdk/src`.
pub const RUST_SDK: [(&str, &str); 16] = [
    ("bytes.rs", include_str!("../../../guest-sdk/src/bytes.rs")),
    ("chunk.rs", include_str!("../../../guest-sdk/src/chunk.rs")),
    (
        "config.rs",
        include_str!("../../../guest-sdk/src/config.rs"),
    ),
    (
        "config_de.rs",
        include_str!("../../../guest-sdk/src/config_de.rs"),
    ),
    ("error.rs", include_str!("../../../guest-sdk/src/error.rs")),
    (
        "field_set.rs",
        include_str!("../../../guest-sdk/src/field_set.rs"),
    ),
    (
        "import_lines.rs",
        include_str!("../../../guest-sdk/src/import_lines.rs"),
    ),
    ("lib.rs", include_str!("../../../guest-sdk/src/lib.rs")),
    ("log.rs", include_str!("../../../guest-sdk/src/log.rs")),
    (
        "lookup.rs",
        include_str!("../../../guest-sdk/src/lookup.rs"),
    ),
    (
        "record.rs",
        include_str!("../../../guest-sdk/src/record.rs"),
    ),
    (
        "records.rs",
        include_str!("../../../guest-sdk/src/records.rs"),
    ),
    (
        "sample.rs",
        include_str!("../../../guest-sdk/src/sample.rs"),
    ),
    (
        "sample_set.rs",
        include_str!("../../../guest-sdk/src/sample_set.rs"),
    ),
    ("time.rs", include_str!("../../../guest-sdk/src/time.rs")),
    ("zone.rs", include_str!("../../../guest-sdk/src/zone.rs")),
];

/// A file of a new project: its path in the project and its text, with
/// `{{name}}` (the package's name) and `{{module}}` (the module's file
/// name, without `.wasm`) filled in.
pub struct File {
    pub path: String,
    pub text: &'static str,
}

fn file(path: impl Into<String>, text: &'static str) -> File {
    File {
        path: path.into(),
        text,
    }
}

/// A language's own files: the rules, their manifest, a README.
const RUST: [(&str, &str); 6] = [
    (
        "Cargo.toml",
        include_str!("../../../guest-sdk/templates/rust/Cargo.toml.in"),
    ),
    // The crates' versions a build was tested with, so a new release of
    // one cannot break a new project.
    (
        "Cargo.lock",
        include_str!("../../../guest-sdk/templates/rust/Cargo.lock.in"),
    ),
    (
        "README.md",
        include_str!("../../../guest-sdk/templates/rust/README.md"),
    ),
    (
        ".gitignore",
        include_str!("../../../guest-sdk/templates/rust/gitignore"),
    ),
    (
        "src/lib.rs",
        include_str!("../../../transforms/default/src/lib.rs"),
    ),
    (
        "sdk/Cargo.toml",
        include_str!("../../../guest-sdk/templates/rust/sdk/Cargo.toml"),
    ),
];
const PYTHON: [(&str, &str); 5] = [
    (
        "app.py",
        include_str!("../../../guest-sdk/templates/python/app.py"),
    ),
    (
        "pmacct_transform.py",
        include_str!("../../../guest-sdk/python/pmacct_transform.py"),
    ),
    (
        "requirements.txt",
        include_str!("../../../guest-sdk/templates/python/requirements.txt"),
    ),
    (
        "README.md",
        include_str!("../../../guest-sdk/templates/python/README.md"),
    ),
    (
        ".gitignore",
        include_str!("../../../guest-sdk/templates/python/gitignore"),
    ),
];
const JS: [(&str, &str); 6] = [
    (
        "app.js",
        include_str!("../../../guest-sdk/templates/js/app.js"),
    ),
    (
        "pmacct_transform.js",
        include_str!("../../../guest-sdk/js/pmacct_transform.js"),
    ),
    (
        "package.json",
        include_str!("../../../guest-sdk/js/package.json"),
    ),
    (
        "package-lock.json",
        include_str!("../../../guest-sdk/js/package-lock.json"),
    ),
    (
        "README.md",
        include_str!("../../../guest-sdk/templates/js/README.md"),
    ),
    (
        ".gitignore",
        include_str!("../../../guest-sdk/templates/js/gitignore"),
    ),
];

/// Every file of a new project in `lang`.
pub fn project(lang: Language) -> Vec<File> {
    let (own, contract, wit): (&[(&str, &str)], _, _) = match lang {
        // The SDK's crate reads the contract from its own folder.
        Language::Rust => (&RUST, "sdk/wit/transform.wit", WIT),
        Language::Python => (&PYTHON, "wit/transform.wit", WIT),
        Language::Js => (&JS, "wit/transform.wit", WIT),
    };
    let mut files = vec![file("records.jsonl", RECORDS), file(contract, wit)];
    files.extend(own.iter().map(|(path, text)| file(*path, text)));
    if lang == Language::Rust {
        files.extend(
            RUST_SDK
                .iter()
                .map(|(name, text)| file(format!("sdk/src/{name}"), text)),
        );
    }
    files
}

/// The pinned componentize-py (`requirements.txt`), for error messages.
pub fn python_toolchain() -> &'static str {
    include_str!("../../../guest-sdk/templates/python/requirements.txt").trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file added to the SDK must be vendored too.
    #[test]
    fn every_sdk_source_is_embedded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk/src");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .expect("the SDK's sources")
            .map(|e| {
                e.expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = RUST_SDK.iter().map(|(n, _)| *n).collect();
        assert_eq!(on_disk, embedded);
    }

    /// The vendored SDK's manifest names the same dependencies as the
    /// workspace's.
    #[test]
    fn the_vendored_manifest_has_the_sdks_dependencies() {
        let names = |text: &str| -> Vec<String> {
            let mut deps = Vec::new();
            let mut in_deps = false;
            for line in text.lines() {
                if line.starts_with('[') {
                    in_deps = line.contains("dependencies]");
                } else if in_deps {
                    if let Some((name, _)) = line.split_once('=') {
                        let name = name.trim().trim_end_matches(".workspace");
                        if !name.is_empty() && !name.starts_with('#') {
                            deps.push(name.to_string());
                        }
                    }
                }
            }
            deps.sort();
            deps
        };
        let workspace = include_str!("../../../guest-sdk/Cargo.toml");
        let vendored = include_str!("../../../guest-sdk/templates/rust/sdk/Cargo.toml");
        assert_eq!(names(workspace), names(vendored));
    }
}
