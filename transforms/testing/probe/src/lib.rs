//! A transform for the host's tests. Normally it writes one `bytes` sample
//! per record labelled `seq` (the record's `seq` field) and `module="probe"`.
//! A record can ask it to misbehave, to prove the sandbox holds:
//!
//! - `"do": "loop"`   spin forever (the host's time limit must interrupt it)
//! - `"do": "oom"`    allocate until memory runs out (the memory limit)
//! - `"do": "trap"`   panic, which traps
//! - `"do": "read"`   try to read `"path"` from the filesystem and report
//!   what happened as a record error (`fs_denied` or `fs_allowed`)
//! - `"do": "log"`    log a line through the host
//!
//! `always` in the configuration (`loop`, `oom`, `trap`) makes it misbehave
//! that way on every record. `init` fails when the configuration has
//! `fail_init`.

use pmacct_guest_sdk::{export_transform, log, Config, Record, RecordError, Samples, Transform};

pub struct Probe {
    tag: String,
    always: Option<String>,
}

impl Transform for Probe {
    fn init(config: &Config) -> Result<Self, String> {
        if let Some(why) = config.get("fail_init") {
            return Err(format!("asked to fail: {why}"));
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
            Some("loop") => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            Some("oom") => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Some("trap") => panic!("asked to trap"),
            Some("read") => {
                let path = r.str("path")?;
                return Err(match std::fs::read(path) {
                    Ok(b) => {
                        RecordError::new("fs_allowed", format!("read {} bytes of {path}", b.len()))
                    }
                    Err(e) => RecordError::new("fs_denied", format!("{path}: {e}")),
                });
            }
            Some("log") => log::info("probe says hello"),
            _ => {}
        }
        out.sample("bytes")
            .label("seq", r.get("seq").map_or("", |v| v.as_label()))
            .label("module", &self.tag)
            .finish(r.number_text("bytes")?, r.timestamp_ms("stamp_updated")?);
        Ok(())
    }
}

export_transform!(Probe);
