//! pmacct's `kafka_output: avro`, read in the source stage: each Avro
//! record becomes the JSON object pmacct's `kafka_output: json` would have
//! written ([`to_json`]), so every transform, the default rules and custom
//! modules alike, reads Avro topics unchanged.
//!
//! Two framings, as pmacct writes them:
//! - **a schema file** (`avro_schema_file` in pmacct, `AVRO_SCHEMA_FILE`
//!   here: its `-acct_data` file): a message is Avro binary datums back to
//!   back, several with `kafka_multi_values`. pmacct's purge markers use
//!   other schemas, recognised by their first field (`purge_init`,
//!   `purge_close`) and read with pmacct's marker schemas;
//! - **the Confluent schema registry's wire format**
//!   (`kafka_avro_schema_registry`, `SCHEMA_REGISTRY_URL` here): a zero
//!   byte, the schema id (4 bytes, big-endian), one datum; each id's
//!   schema is fetched once (`registry`).
//!
//! A message that does not decode is one record whose raw bytes are
//! rejected as `invalid_avro` (counted, logged, dead-lettered unchanged);
//! with a schema file, the datums before the fault are records as usual.

mod registry;
pub mod to_json;

use std::path::PathBuf;
use std::sync::Arc;

use apache_avro::Schema;
use reqwest::Url;

use crate::chunk::Chunk;
use crate::markers::Marker;
use crate::metrics::Metrics;
use crate::offsets::Slot;
use crate::stop::Stop;
use registry::{Lookup, Registry};
use to_json::Program;

/// The reason a record that does not decode is rejected with.
pub const INVALID: &str = "invalid_avro";

/// How messages are framed.
#[derive(Debug, Clone)]
pub enum AvroSettings {
    /// `AVRO_SCHEMA_FILE`, compiled at start-up.
    SchemaFile {
        path: PathBuf,
        program: Arc<Program>,
    },
    /// `SCHEMA_REGISTRY_URL`.
    Registry(Url),
}

impl AvroSettings {
    /// The schema file's record schema, compiled. `Err` says why not.
    pub fn schema_file(path: PathBuf) -> Result<Self, String> {
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let program = Schema::parse_str(&text)
            .map_err(|e| e.to_string())
            .and_then(|s| Program::compile(&s))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(AvroSettings::SchemaFile {
            path,
            program: Arc::new(program),
        })
    }
}

/// pmacct's marker schemas (`p_avro_schema_build_acct_init`/`_close`).
const INIT_SCHEMA: &str = r#"{"type": "record", "name": "acct_init", "fields": [
    {"name": "event_type", "type": "string"}, {"name": "writer_id", "type": "string"}]}"#;
const CLOSE_SCHEMA: &str = r#"{"type": "record", "name": "acct_close", "fields": [
    {"name": "event_type", "type": "string"}, {"name": "writer_id", "type": "string"},
    {"name": "purged_entries", "type": "long"}, {"name": "total_entries", "type": "long"},
    {"name": "duration", "type": "int"}]}"#;

enum Framing {
    File {
        data: Arc<Program>,
        /// `acct_init`, `acct_close`, by [`Marker::ALL`].
        markers: [Program; 2],
    },
    Registry(Registry),
}

/// Reads Avro messages into a chunk's records.
pub struct AvroInput {
    framing: Framing,
}

impl AvroInput {
    pub fn new(
        settings: &AvroSettings,
        runtime: tokio::runtime::Handle,
        stop: Arc<Stop>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let framing = match settings {
            AvroSettings::SchemaFile { path, program } => {
                tracing::info!(file = %path.display(), record = %program.name, "reading Avro with a schema file");
                let marker = |s: &str| {
                    Schema::parse_str(s)
                        .map_err(|e| e.to_string())
                        .and_then(|s| Program::compile(&s))
                };
                Framing::File {
                    data: program.clone(),
                    markers: [marker(INIT_SCHEMA)?, marker(CLOSE_SCHEMA)?],
                }
            }
            AvroSettings::Registry(url) => {
                let registry = Registry::new(url, runtime, stop, metrics)?;
                tracing::info!(registry = %registry.url(), "reading Avro in the schema registry's wire format");
                Framing::Registry(registry)
            }
        };
        Ok(AvroInput { framing })
    }

    /// Add one Kafka message's records (and markers) to `chunk`. Returns
    /// how many markers of each kind it held ([`Marker::ALL`] order), or
    /// `None` when a stop was requested while the registry did not answer:
    /// the message is then not taken (nor committed).
    pub fn push_message(
        &mut self,
        chunk: &mut Chunk,
        payload: &[u8],
        slot: Slot,
        offset: i64,
    ) -> Option<[u64; 2]> {
        let mut markers = [0; 2];
        let mut note = |m: Option<Marker>| {
            if let Some(m) = m {
                markers[m as usize] += 1;
            }
        };
        match &mut self.framing {
            Framing::File { data, markers: m } => {
                let program = match payload {
                    [0x14, rest @ ..] if rest.starts_with(b"purge_init") => &m[0],
                    [0x16, rest @ ..] if rest.starts_with(b"purge_close") => &m[1],
                    _ => &**data,
                };
                push_datums(chunk, program, payload, slot, offset, &mut note);
            }
            Framing::Registry(registry) => {
                let (id, datum) = match payload {
                    [0, a, b, c, d, datum @ ..] => (u32::from_be_bytes([*a, *b, *c, *d]), datum),
                    _ => {
                        let why = "not the schema registry's wire format (a zero byte and a schema id first)";
                        chunk.push_undecodable(payload, slot, offset, 0, why.into());
                        return Some(markers);
                    }
                };
                match registry.get(id) {
                    Lookup::Found(program) => {
                        push_one(chunk, &program, payload, datum, slot, offset, &mut note)
                    }
                    Lookup::Unusable(why) => chunk.push_undecodable(payload, slot, offset, 0, why),
                    Lookup::Stopping => return None,
                }
            }
        }
        Some(markers)
    }
}

/// Datums back to back, each a record; from the first that does not
/// decode, the rest of the message is one rejected record.
fn push_datums(
    chunk: &mut Chunk,
    program: &Program,
    payload: &[u8],
    slot: Slot,
    offset: i64,
    note: &mut impl FnMut(Option<Marker>),
) {
    let mut input = payload;
    let mut index = 0;
    // An empty message (a tombstone) is one empty record, rejected by the
    // transform with a reason, as for JSON.
    if input.is_empty() {
        chunk.push_undecodable(input, slot, offset, 0, "an empty message".into());
        return;
    }
    while !input.is_empty() {
        let rest = input;
        match program.write(&mut input, chunk.records.unended()) {
            Ok(()) => note(chunk.end_record(slot, offset, index)),
            Err(e) => {
                chunk.records.discard();
                chunk.push_undecodable(rest, slot, offset, index, e.0);
                return;
            }
        }
        index += 1;
    }
}

/// One datum that must fill the message.
fn push_one(
    chunk: &mut Chunk,
    program: &Program,
    payload: &[u8],
    mut datum: &[u8],
    slot: Slot,
    offset: i64,
    note: &mut impl FnMut(Option<Marker>),
) {
    let result = program.write(&mut datum, chunk.records.unended());
    let why = match result {
        Ok(()) if datum.is_empty() => return note(chunk.end_record(slot, offset, 0)),
        Ok(()) => format!("{} bytes after the datum", datum.len()),
        Err(e) => e.0,
    };
    chunk.records.discard();
    chunk.push_undecodable(payload, slot, offset, 0, why);
}
