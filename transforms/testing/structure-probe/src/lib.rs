//! A contract 2.0 module for the host's tests of what crosses the boundary.
//! Normally it writes one `bytes` sample per record, labelled `seq`. A
//! record can ask for a defect in the structure the call hands over, one a
//! module that does not use the SDK could send:
//!
//! - `"do": "string_index"` a series ending past the string table
//! - `"do": "label_name"`   a label named `ip-src`
//! - `"do": "utf8"`         a label value that is not UTF-8
//! - `"do": "point_series"` a point of a series that does not exist
//! - `"do": "lengths"`      a value without a timestamp
//! - `"do": "empty_name"`   a series whose name is empty
//! - `"do": "huge"`         a sound sample with a 2 MiB label value (for
//!   the output limit, TRANSFORM_MAX_OUTPUT_MB)
//!
//! The defect is added whenever the record is in the call, so the host
//! finds it by splitting the call until the record is alone.
//!
//! With `lookups=N` in its configuration it also looks `ip_src` up N
//! times a record in the host's table `t` (at `lookup_path`, default
//! `customer`), and labels the sample `customer` with the answer (`none`
//! without one): the benchmark of a lookup's cost. A record's own
//! `lookups` (a number) and `table` (a name) take the place of those.

use pmacct_guest_sdk::{lookup, Config, Record, RecordError, SampleSet, Samples, Transform};

pub struct StructureProbe {
    lookups: u32,
    path: String,
}

impl Transform for StructureProbe {
    fn init(c: &Config) -> Result<Self, String> {
        let lookups = match c.get("lookups") {
            None => 0,
            Some(n) => n
                .parse()
                .map_err(|_| format!("lookups: {n:?} is not a whole number"))?,
        };
        let path = c.get("lookup_path").unwrap_or("customer").to_string();
        Ok(StructureProbe { lookups, path })
    }

    fn transform(&mut self, r: &Record<'_>, out: &mut Samples<'_>) -> Result<(), RecordError> {
        let seq = r.get("seq").map_or("", |v| v.as_label());
        let mut customer = None;
        let lookups = match r.get("lookups").and_then(|v| v.as_f64()) {
            Some(n) => n as u32,
            None => self.lookups,
        };
        let table = r.get("table").and_then(|v| v.as_str()).unwrap_or("t");
        if lookups > 0 {
            let ip = r.str("ip_src")?;
            for _ in 0..lookups {
                customer = lookup(table, ip, &self.path);
            }
        }
        let s = out.sample("bytes").label("seq", seq);
        let s = match (lookups, customer.as_deref()) {
            (0, _) => s,
            (_, found) => s.label("customer", found.unwrap_or("none")),
        };
        s.finish(r.number_text("bytes")?, r.timestamp_ms("stamp_updated")?);
        Ok(())
    }
}

/// Add the defect `asked` to `set`.
pub fn spoil(set: &mut SampleSet, asked: &str) {
    let strings = set.string_ends.len() as u32;
    match asked {
        "string_index" => {
            set.series_ends.push(strings + 7);
            set.add_point(set.series_ends.len() as u32 - 1, 1.0, 0);
        }
        "label_name" => label(set, b"ip-src", b"x"),
        "utf8" => label(set, b"seq", &[0xff, 0xfe]),
        "point_series" => set.add_point(1 << 30, 1.0, 0),
        "lengths" => set.values.push(1.0),
        "empty_name" => {
            set.push_string(b"");
            set.push_point(1.0, 0);
        }
        "huge" => label(set, b"seq", &vec![b'x'; 2 << 20]),
        _ => {}
    }
}

fn label(set: &mut SampleSet, name: &[u8], value: &[u8]) {
    set.push_string(b"bytes");
    set.push_string(name);
    set.push_string(value);
    set.push_point(1.0, 0);
}

/// Which defects the call's records ask for.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn asked(records: &[u8], ends: &[u32]) -> Vec<String> {
    let mut start = 0;
    let mut asked = Vec::new();
    for &end in ends {
        let payload = records.get(start..end as usize).unwrap_or_default();
        if let Ok(r) = Record::parse(payload) {
            if let Some(d) = r.get("do").and_then(|v| v.as_str()) {
                asked.push(d.to_string());
            }
        }
        start = end as usize;
    }
    asked
}

#[cfg(target_arch = "wasm32")]
mod export {
    use pmacct_guest_sdk::__private::{lower, State};
    use pmacct_guest_sdk::bindings::exports::pmacct::transform::guest::{ChunkOutput, Guest};

    use super::{asked, spoil, StructureProbe};

    std::thread_local! {
        static STATE: State<StructureProbe> = const { State::new() };
    }

    struct Guest2;

    impl Guest for Guest2 {
        fn init(config: Vec<(String, String)>) -> Result<(), String> {
            STATE.with(|s| s.init(config))
        }

        fn transform(records: Vec<u8>, ends: Vec<u32>) -> ChunkOutput {
            let mut out = STATE.with(|s| s.run(&records, &ends));
            for defect in asked(&records, &ends) {
                spoil(&mut out.samples, &defect);
            }
            lower(out)
        }
    }

    pmacct_guest_sdk::bindings::export!(Guest2 with_types_in pmacct_guest_sdk::bindings);
}
