//! Writing a transform without this repository, as an author with only the
//! host binary and a language's toolchain: `transform new`, `build`,
//! `test --expect` and `bench`, each language in a folder outside the
//! repository, run with a cleared environment.
//!
//! The toolchains are the ones scripts/setup.sh --tests installs: Rust's
//! `wasm32-wasip2` target, and componentize-py and componentize-js, whose
//! paths scripts/test.sh exports (COMPONENTIZE_PY, COMPONENTIZE_JS).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_pmacct-kafka-vm");

/// The host binary in `dir`, with only what an author's shell would have:
/// PATH, HOME, Rust's homes, and the toolchain paths given.
fn host(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).env_clear().args(args);
    for var in [
        "PATH",
        "HOME",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
    ] {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    // Rust builds share one folder across runs (and stay out of the
    // workspace's, which `cargo test` holds locked).
    cmd.env(
        "CARGO_TARGET_DIR",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("authoring"),
    );
    cmd.envs(env.iter().copied());
    cmd.output().expect("run the host binary")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn toolchain(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run scripts/test.sh, which installs the Python and JavaScript toolchains (scripts/setup.sh --tests)")
    })
}

/// `transform new NAME --lang LANG` in a fresh folder outside the repository.
fn new_project(lang: &str) -> (tempfile::TempDir, PathBuf) {
    let home = tempfile::tempdir().expect("temp dir");
    let o = host(
        home.path(),
        &["transform", "new", "my-flows", "--lang", lang],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let dir = home.path().join("my-flows");
    for f in ["records.jsonl", "expected.jsonl", "README.md"] {
        assert!(dir.join(f).is_file(), "{f} missing\n{}", text(&o));
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("README.md"))
            .unwrap()
            .lines()
            .count(),
        5
    );
    (home, dir)
}

/// `transform build` in the project: the module, checked, with its size
/// and SHA-256 printed.
fn build(dir: &Path, env: &[(&str, &str)]) -> PathBuf {
    let o = host(dir, &["transform", "build"], env);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let module = dir.join("my_flows.wasm");
    let size = std::fs::metadata(&module).expect("the module").len();
    assert!(
        out.contains(&format!(
            "built {} ({size} bytes, sha256 ",
            module.display()
        )),
        "{out}"
    );
    assert!(out.contains("satisfies pmacct:transform@"), "{out}");
    module
}

/// `transform test` of the module on `records.jsonl`, with `extra` flags.
fn transform_test(dir: &Path, module: &Path, extra: &[&str]) -> Output {
    let m = module.to_str().unwrap();
    let mut args = vec![
        "transform",
        "test",
        "--module",
        m,
        "--input",
        "records.jsonl",
    ];
    args.extend_from_slice(extra);
    host(dir, &args, &[])
}

/// `transform test --expect expected.jsonl`: the exit code and output.
fn expect(dir: &Path, module: &Path) -> Output {
    transform_test(dir, module, &["--expect", "expected.jsonl"])
}

/// The samples of the records, as import lines.
fn samples(dir: &Path, module: &Path) -> Vec<serde_json::Value> {
    let o = transform_test(dir, module, &[]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("an import line"))
        .collect()
}

/// From nothing to a module: with no edit it writes exactly the embedded
/// default's samples (`expected.jsonl` is the embedded default's, and the
/// records include rejected ones); one edit adding a label shows in every
/// sample and breaks the expectation.
fn new_build_test_edit(lang: &str, source: &str, edit: (&str, &str), env: &[(&str, &str)]) {
    let (_home, dir) = new_project(lang);
    let expected = std::fs::read_to_string(dir.join("expected.jsonl")).unwrap();
    assert!(expected.lines().count() >= 10, "{expected}");
    let module = build(&dir, env);
    let o = expect(&dir, &module);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("ok: "), "{}", text(&o));

    let path = dir.join(source);
    let code = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        code.matches(edit.0).count(),
        1,
        "the edit's anchor in {source}"
    );
    std::fs::write(&path, code.replace(edit.0, edit.1)).unwrap();
    let module = build(&dir, env);
    let edited = samples(&dir, &module);
    assert_eq!(edited.len(), expected.lines().count());
    for s in &edited {
        assert_eq!(s["metric"]["site"], "lab", "{s}");
    }
    let o = expect(&dir, &module);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("differs from expected.jsonl"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_rust_project_builds_into_the_defaults_samples_and_takes_an_edit() {
    new_build_test_edit(
        "rust",
        "src/lib.rs",
        (
            ".label(\"instance\", instance);",
            ".label(\"instance\", instance).label(\"site\", \"lab\");",
        ),
        &[],
    );
}

#[test]
fn a_python_project_builds_into_the_defaults_samples_and_takes_an_edit() {
    let componentize = toolchain("COMPONENTIZE_PY");
    new_build_test_edit(
        "python",
        "app.py",
        (
            "(\"instance\", config.require(\"instance\"))]",
            "(\"instance\", config.require(\"instance\")), (\"site\", \"lab\")]",
        ),
        &[("COMPONENTIZE_PY", &componentize)],
    );
}

#[test]
fn a_javascript_project_builds_into_the_defaults_samples_and_takes_an_edit() {
    let componentize = toolchain("COMPONENTIZE_JS");
    new_build_test_edit(
        "js",
        "app.js",
        (
            "[\"instance\", config.require(\"instance\")]]",
            "[\"instance\", config.require(\"instance\")], [\"site\", \"lab\"]]",
        ),
        &[("COMPONENTIZE_JS", &componentize)],
    );
}

/// `bench` prints its figures for a module and the embedded default, and
/// exits 1 for a module that faults or is not a module.
#[test]
fn bench_prints_figures_and_fails_on_a_broken_module() {
    let dir = tempfile::tempdir().unwrap();
    let o = host(
        dir.path(),
        &["transform", "bench", "--records", "5000"],
        &[],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for figure in ["records/s", "µs/record", "load: ", "instance memory: "] {
        assert!(out.contains(figure), "{figure}\n{out}");
    }
    let probe = Path::new(env!("PMACCT_GUEST_WASM_DIR")).join("probe_transform.wasm");
    let probe = probe.to_str().unwrap();
    let args = ["transform", "bench", "--module", probe, "--records", "2000"];
    let o = host(dir.path(), &args, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("with a module cache"), "{}", text(&o));
    let o = host(dir.path(), &args, &[("TRANSFORM_CONFIG", "always=trap")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("the module faulted"), "{}", text(&o));
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not a module").unwrap();
    let o = host(
        dir.path(),
        &["transform", "bench", "--module", junk.to_str().unwrap()],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

/// A toolchain that is not there is named, with the command that installs
/// it; nothing is built and nothing fails silently.
#[test]
fn a_missing_toolchain_is_named_with_what_installs_it() {
    let (_home, py) = new_project("python");
    let o = host(
        &py,
        &["transform", "build"],
        &[("COMPONENTIZE_PY", "/nonexistent/componentize-py")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("pip install -r requirements.txt (componentize-py=="),
        "{}",
        text(&o)
    );
    let (_home, js) = new_project("js");
    let o = host(&js, &["transform", "build"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("run `npm ci` there"), "{}", text(&o));
    let o = host(&js, &["transform", "new", ".", "--lang", "js"], &[]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a project is never written over\n{}",
        text(&o)
    );
    let o = host(
        js.parent().unwrap(),
        &["transform", "build", "nowhere"],
        &[],
    );
    assert!(text(&o).contains("not a transform project"), "{}", text(&o));
}
