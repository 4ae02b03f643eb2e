//! A transform for the host's tests. Normally it writes one `bytes` sample
//! per record labelled `seq` (the record's `seq` field) and `module="probe"`.
//! A record can ask it to misbehave, to prove the sandbox holds:
//!
//! - `"do": "loop"`    spin forever (the host's time limit must interrupt it)
//! - `"do": "oom"`     allocate until memory runs out (the memory limit)
//! - `"do": "trap"`    panic, which traps
//! - `"do": "read"`    try to read `"path"` from the filesystem and report
//!   what happened as a record error (`fs_denied` or `fs_allowed`)
//! - `"do": "log"`     log a line through the host
//! - `"do": "sleep"`   `std::thread::sleep` for an hour, then write its sample
//! - `"do": "poll"`    wait an hour on `wasi:io/poll` (a duration and an
//!   instant of the monotonic clock), then write its sample
//! - `"do": "handles"` take stdout handles from WASI until refused, then trap
//! - `"do": "connect"` try to open a TCP socket and to resolve `localhost`,
//!   and report what happened as a record error (`net_denied` or
//!   `net_allowed`)
//! - `"do": "flood"`   write `"n"` samples (labelled `i`), not one
//! - `"do": "raw"`     write `"line"` and a line end as its one sample, as
//!   they are (a malformed line, say)
//! - `"do": "both"`    write its sample and also report the record as an
//!   error (`both`)
//! - `"do": "reason"`  reject the record with `"reason"` as the reason
//! - `"do": "silent"`  write nothing and report nothing
//!
//! `always` in the configuration (`loop`, `oom`, `trap`, `sleep`, ...)
//! makes it misbehave that way on every record. `init` fails when the
//! configuration has `fail_init`, sleeps an hour with `sleep_init`, loops
//! with `loop_init`.

use pmacct_guest_sdk::{Config, Record, RecordError, Samples, Transform};

pub struct Probe {
    tag: String,
    always: Option<String>,
}

impl Transform for Probe {
    fn init(config: &Config) -> Result<Self, String> {
        if let Some(why) = config.get("fail_init") {
            return Err(format!("asked to fail: {why}"));
        }
        if config.get("sleep_init").is_some() {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
        if config.get("loop_init").is_some() {
            spin();
        }
        Ok(Probe {
            tag: config.get("tag").unwrap_or("probe").to_string(),
            always: config.get("always").map(str::to_string),
        })
    }

    fn transform(&mut self, r: &Record<'_>, out: &mut Samples<'_>) -> Result<(), RecordError> {
        let asked = self
            .always
            .as_deref()
            .or(r.get("do").and_then(|v| v.as_str()));
        match asked {
            Some("loop") => spin(),
            Some("oom") => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Some("trap") => panic!("asked to trap"),
            Some("silent") => return Ok(()),
            Some("read") => {
                let path = r.str("path")?;
                return Err(match std::fs::read(path) {
                    Ok(b) => {
                        RecordError::new("fs_allowed", format!("read {} bytes of {path}", b.len()))
                    }
                    Err(e) => RecordError::new("fs_denied", format!("{path}: {e}")),
                });
            }
            Some("log") => log("probe says hello"),
            Some("sleep") => std::thread::sleep(std::time::Duration::from_secs(3600)),
            Some("poll") => wasi::poll_an_hour(),
            Some("handles") => wasi::hoard_handles(),
            Some("connect") => return Err(wasi::connect()),
            Some("flood") => return self.flood(r, out),
            Some("raw") => {
                raw::push(r.str("line")?);
                return Ok(());
            }
            Some("both") => {
                raw::push(&format!(
                    r#"{{"metric":{{"__name__":"bytes","seq":"{}","module":"{}"}},"values":[1],"timestamps":[{}]}}"#,
                    r.get("seq").map_or("", |v| v.as_label()),
                    self.tag,
                    r.timestamp_ms("stamp_updated")?
                ));
                return Err(RecordError::new("both", "a sample and an error"));
            }
            Some("reason") => return Err(RecordError::new(r.str("reason")?.to_string(), "asked")),
            _ => {}
        }
        self.sample(r, out)
    }
}

impl Probe {
    fn sample(&self, r: &Record<'_>, out: &mut Samples<'_>) -> Result<(), RecordError> {
        out.sample("bytes")
            .label("seq", r.get("seq").map_or("", |v| v.as_label()))
            .label("module", &self.tag)
            .finish(r.number_text("bytes")?, r.timestamp_ms("stamp_updated")?);
        Ok(())
    }

    fn flood(&self, r: &Record<'_>, out: &mut Samples<'_>) -> Result<(), RecordError> {
        let n = r.get("n").and_then(|v| v.as_f64()).unwrap_or(100_000.0) as u64;
        let ts = r.timestamp_ms("stamp_updated")?;
        let seq = r.get("seq").map_or("", |v| v.as_label());
        for i in 0..n {
            out.sample("flood")
                .label("seq", seq)
                .label("i", &i.to_string())
                .finish(i, ts);
        }
        Ok(())
    }
}

fn spin() -> ! {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

/// Lines the SDK would never write, slipped into the output after it ran.
mod raw {
    use std::cell::RefCell;

    std::thread_local! {
        static LINES: RefCell<(Vec<u8>, u32)> = const { RefCell::new((Vec::new(), 0)) };
    }

    pub fn push(line: &str) {
        LINES.with(|l| {
            let mut l = l.borrow_mut();
            l.0.extend_from_slice(line.as_bytes());
            l.0.push(b'\n');
            l.1 += 1;
        });
    }

    #[cfg(target_arch = "wasm32")]
    pub fn take() -> (Vec<u8>, u32) {
        LINES.with(|l| std::mem::take(&mut *l.borrow_mut()))
    }
}

#[cfg(target_arch = "wasm32")]
mod wasi {
    use wasip2::clocks::monotonic_clock::{subscribe_duration, subscribe_instant};

    const HOUR_NS: u64 = 3_600_000_000_000;

    pub fn poll_an_hour() {
        let duration = subscribe_duration(HOUR_NS);
        let instant = subscribe_instant(HOUR_NS);
        let ready = wasip2::io::poll::poll(&[&duration, &instant]);
        std::hint::black_box(ready);
    }

    pub fn hoard_handles() {
        let mut held = Vec::new();
        loop {
            held.push(wasip2::cli::stdout::get_stdout());
            std::hint::black_box(&held);
        }
    }

    pub fn connect() -> pmacct_guest_sdk::RecordError {
        use wasip2::sockets::{instance_network, ip_name_lookup, network, tcp_create_socket};
        let socket = tcp_create_socket::create_tcp_socket(network::IpAddressFamily::Ipv4);
        let lookup =
            ip_name_lookup::resolve_addresses(&instance_network::instance_network(), "localhost");
        let detail = format!(
            "tcp: {:?}; lookup: {:?}",
            socket.as_ref().err(),
            lookup.as_ref().err()
        );
        let reason = if socket.is_ok() || lookup.is_ok() {
            "net_allowed"
        } else {
            "net_denied"
        };
        pmacct_guest_sdk::RecordError::new(reason, detail)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod wasi {
    pub fn poll_an_hour() {}
    pub fn hoard_handles() {}
    pub fn connect() -> pmacct_guest_sdk::RecordError {
        pmacct_guest_sdk::RecordError::new("net_denied", "not a module")
    }
}

/// Contract 1.0's export: the SDK's chunk loop, its samples written as
/// import lines, the raw lines appended. The probe speaks 1.0 so that the
/// host's tests of 1.0 output (bad lines among them) run against a real
/// module; its log lines go through 1.0's host interface too.
#[cfg(target_arch = "wasm32")]
mod export {
    use pmacct_guest_sdk::__private::State;

    use super::{raw, Probe};

    wit_bindgen::generate!({
        path: "../../../guest-sdk/wit-1.0",
        world: "transform",
    });

    use exports::pmacct::transform::guest::{BatchOutput, Guest, RecordError};

    std::thread_local! {
        static STATE: State<Probe> = const { State::new() };
    }

    struct ProbeGuest;

    impl Guest for ProbeGuest {
        fn init(config: Vec<(String, String)>) -> Result<(), String> {
            STATE.with(|s| s.init(config))
        }

        fn transform(records: Vec<u8>, ends: Vec<u32>) -> BatchOutput {
            let out = STATE.with(|s| s.run(&records, &ends));
            let mut body = Vec::new();
            out.samples.write_import_lines(&mut body);
            let (lines, count) = raw::take();
            body.extend_from_slice(&lines);
            let errors = out.errors.into_iter().map(|e| RecordError {
                index: e.index,
                reason: e.error.reason.into_owned(),
                detail: e.error.detail,
            });
            BatchOutput {
                body,
                samples: out.samples.len() as u32 + count,
                errors: errors.collect(),
            }
        }
    }

    pub fn log(message: &str) {
        pmacct::transform::host::log(pmacct::transform::host::Level::Info, message);
    }

    export!(ProbeGuest);
}

#[cfg(target_arch = "wasm32")]
use export::log;

#[cfg(not(target_arch = "wasm32"))]
fn log(message: &str) {
    eprintln!("{message}");
}
