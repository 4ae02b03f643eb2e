//! Starting without compiling, against the real binary, broker and
//! VictoriaMetrics: a module compiled once is loaded from
//! TRANSFORM_CACHE_DIR at the next start and reload, a damaged entry is
//! never trusted (counted, removed, compiled again, the samples exact), a
//! folder others could write to is refused, and the embedded default runs
//! from the code its build precompiled.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::{deploy, parse_labelled, wait_for, Host, Stack};

const LONG: Duration = Duration::from_secs(60);

fn wasm(name: &str) -> PathBuf {
    let p = Path::new(env!("PMACCT_GUEST_WASM_DIR")).join(format!("{name}.wasm"));
    assert!(p.exists(), "{} was not built", p.display());
    p
}

fn flows(from: u64, n: u64) -> Vec<String> {
    (from..from + n)
        .map(|seq| {
            json!({"seq": seq, "ip_src": "10.1.2.3", "stamp_updated": "2026-11-25 10:01:02",
                "packets": 1, "bytes": 100 + seq})
            .to_string()
        })
        .collect()
}

/// `transform_module_cache_total{result}` as [hit, miss, corrupt].
fn lookups(host: &Host) -> [f64; 3] {
    let m = host.metrics();
    ["hit", "miss", "corrupt"]
        .map(|r| parse_labelled(&m, "transform_module_cache_total", "result", r))
}

/// The cache's entries.
fn entries(cache: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(cache)
        .expect("read the cache folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    found.sort();
    found
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

/// Start a host, write `n` records from `from`, wait for all their samples
/// (each its own series), stop it by SIGTERM (exit 0); returns the lookups
/// it counted and its log.
fn one_run(stack: &Stack, env: &[(&str, &str)], from: u64, n: u64) -> ([f64; 3], String) {
    let mut host = stack.host("cache", env);
    stack.broker.produce("cache", &flows(from, n));
    stack
        .vm
        .wait_samples(r#"{module="probe"}"#, (from + n) as usize, LONG);
    let counted = lookups(&host);
    let status = host.terminate(LONG);
    assert!(status.success(), "{status:?}\n{}", host.log_text());
    (counted, host.log_text())
}

/// Miss, then hit; a byte flipped in the entry, then the entry cut short:
/// each found, counted `corrupt`, logged, replaced, and the records still
/// stored exactly; the run after each repair is a hit again.
#[test]
fn a_module_compiled_once_loads_from_the_cache_and_a_damaged_entry_is_never_trusted() {
    let stack = Stack::start();
    let module = stack.dir.path().join("module.wasm");
    std::fs::copy(wasm("probe_transform"), &module).unwrap();
    let cache = stack.dir.path().join("state").join("modules");
    let env = [
        ("TRANSFORM_PATH", module.to_str().unwrap()),
        ("TRANSFORM_CACHE_DIR", cache.to_str().unwrap()),
    ];
    let (counted, _) = one_run(&stack, &env, 0, 50);
    assert_eq!(
        counted,
        [0.0, 1.0, 0.0],
        "first start: compiled and written"
    );
    assert_eq!(
        mode(&cache),
        0o700,
        "the folder is made for the host's user only"
    );
    let entry = entries(&cache);
    assert_eq!(entry.len(), 1, "{entry:?}");
    assert_eq!(mode(&entry[0]), 0o600);

    let (counted, _) = one_run(&stack, &env, 50, 50);
    assert_eq!(counted, [1.0, 0.0, 0.0], "second start: from the cache");

    let mut bytes = std::fs::read(&entry[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&entry[0], &bytes).unwrap();
    let (counted, log) = one_run(&stack, &env, 100, 50);
    assert_eq!(counted, [0.0, 0.0, 1.0], "a flipped byte");
    assert!(
        log.contains("unusable") && log.contains("does not match"),
        "{log}"
    );
    let (counted, _) = one_run(&stack, &env, 150, 50);
    assert_eq!(counted, [1.0, 0.0, 0.0], "the entry was written again");

    let whole = std::fs::read(&entry[0]).unwrap();
    std::fs::write(&entry[0], &whole[..whole.len() / 3]).unwrap();
    let (counted, log) = one_run(&stack, &env, 200, 50);
    assert_eq!(counted, [0.0, 0.0, 1.0], "an entry cut short");
    assert!(log.contains("truncated"), "{log}");
    assert_eq!(entries(&cache).len(), 1, "no temporary file left behind");

    // A whole entry, sound in itself, from an engine with other settings
    // (no time limit: code without epoch checks) under this engine's name:
    // wasmtime refuses it.
    let untimed = [env[0], env[1], ("TRANSFORM_TIMEOUT_MS", "0")];
    let (counted, _) = one_run(&stack, &untimed, 250, 50);
    assert_eq!(counted, [0.0, 1.0, 0.0], "another engine: its own entry");
    let other = entries(&cache)
        .into_iter()
        .find(|e| *e != entry[0])
        .unwrap();
    std::fs::rename(&other, &entry[0]).unwrap();
    let (counted, log) = one_run(&stack, &env, 300, 50);
    assert_eq!(counted, [0.0, 0.0, 1.0], "an entry of another engine");
    assert!(log.contains("wasmtime refused it"), "{log}");
    let (counted, _) = one_run(&stack, &env, 350, 50);
    assert_eq!(counted, [1.0, 0.0, 0.0]);
    stack.vm.wait_samples(r#"{module="probe"}"#, 400, LONG);
}

/// A reload compiles a module it has not seen and loads one it has from
/// the cache: probe → counters (miss) → probe again (hit).
#[test]
fn a_reload_of_a_module_seen_before_is_a_cache_hit() {
    let stack = Stack::start();
    let module = stack.dir.path().join("module.wasm");
    std::fs::copy(wasm("probe_transform"), &module).unwrap();
    let cache = stack.dir.path().join("modules");
    let host = stack.host(
        "reload",
        &[
            ("TRANSFORM_PATH", module.to_str().unwrap()),
            ("TRANSFORM_CACHE_DIR", cache.to_str().unwrap()),
        ],
    );
    assert_eq!(lookups(&host), [0.0, 1.0, 0.0]);
    let reloads = |n: f64| {
        wait_for("the reload", LONG, || {
            let m = host.metrics();
            (parse_labelled(&m, "transform_reloads_total", "result", "ok") >= n).then_some(())
        })
    };
    deploy(&wasm("example_counters"), &module);
    reloads(1.0);
    assert_eq!(lookups(&host), [0.0, 2.0, 0.0]);
    deploy(&wasm("probe_transform"), &module);
    reloads(2.0);
    assert_eq!(lookups(&host), [1.0, 2.0, 0.0]);
    assert_eq!(entries(&cache).len(), 2);
    stack.broker.produce("reload", &flows(0, 20));
    stack.vm.wait_samples(r#"{module="probe"}"#, 20, LONG);
}

/// The host's exit code and stderr with TRANSFORM_CACHE_DIR set to `dir`.
fn refused(stack: &Stack, dir: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pmacct-kafka-vm"))
        .current_dir(stack.dir.path())
        .env_clear()
        .envs([
            ("KAFKA_BOOTSTRAP_SERVERS", stack.broker.addr.as_str()),
            ("KAFKA_TOPIC", "refused"),
            ("VM_URL", stack.vm.url.as_str()),
            ("VM_JOB", "pmacct"),
            ("VM_INSTANCE", "refused"),
            ("TRANSFORM_PATH", wasm("probe_transform").to_str().unwrap()),
            ("TRANSFORM_CACHE_DIR", dir.to_str().unwrap()),
            ("PROMETHEUS_CLIENT_PORT", &support::free_port().to_string()),
        ])
        .output()
        .expect("run the host");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), stderr)
}

/// What is in the folder runs as the host's code, so a folder its group or
/// others may write to, or another user's, stops start-up with exit 2 and
/// a line saying why; a file where the folder should be too.
#[test]
fn a_cache_folder_others_could_write_to_is_refused() {
    let stack = Stack::start();
    for m in [0o770, 0o707, 0o777] {
        let dir = stack.dir.path().join(format!("open-{m:o}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(m)).unwrap();
        let (code, stderr) = refused(&stack, &dir);
        assert_eq!(code, Some(2), "mode {m:o}: {stderr}");
        assert!(
            stderr.contains("TRANSFORM_CACHE_DIR") && stderr.contains("chmod 700"),
            "{stderr}"
        );
        assert!(
            entries(&dir).is_empty(),
            "nothing loaded from or written to it"
        );
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let dir = stack.dir.path().join("someone-else");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
        let (code, stderr) = refused(&stack, &dir);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("uid 65534"), "{stderr}");
    }
    let file = stack.dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let (code, stderr) = refused(&stack, &file);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("TRANSFORM_CACHE_DIR"), "{stderr}");
}

/// The embedded default runs from the code its build precompiled: nothing
/// compiled, nothing looked up. With a time limit off (code compiled
/// without epoch checks, another engine) it is compiled once and cached.
#[test]
fn the_embedded_default_starts_from_its_precompiled_code() {
    let stack = Stack::start();
    let cache = stack.dir.path().join("modules");
    let cache = cache.to_str().unwrap();
    let host = stack.host("default", &[("TRANSFORM_CACHE_DIR", cache)]);
    assert!(
        host.log_text().contains("precompiled"),
        "{}",
        host.log_text()
    );
    assert_eq!(lookups(&host), [0.0, 0.0, 0.0]);
    stack.broker.produce("default", &flows(0, 10));
    stack.vm.wait_samples(r#"{__name__="bytes"}"#, 10, LONG);
    drop(host);

    let env = [
        ("TRANSFORM_CACHE_DIR", cache),
        ("TRANSFORM_TIMEOUT_MS", "0"),
    ];
    let host = stack.host("default", &env);
    assert_eq!(lookups(&host), [0.0, 1.0, 0.0]);
    drop(host);
    let host = stack.host("default", &env);
    assert_eq!(lookups(&host), [1.0, 0.0, 0.0]);
}
