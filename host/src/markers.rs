//! pmacct's purge markers (`kafka_markers: true`): a
//! `{"event_type": "purge_init", "writer_id": ...}` message before each
//! purge's records and a `purge_close` one after them. They carry no flow,
//! so the host recognises them before any transform sees them: counted in
//! `pmacct_markers_total{event_type}`, never an error, never a dead letter,
//! and their offsets committed like any record's.
//!
//! Recognised by their first key, without parsing: pmacct writes
//! `event_type` first in every message (markers and records alike), so a
//! flow record (`"purge"`) is told apart within its first 25 bytes.

/// A marker's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    PurgeInit,
    PurgeClose,
}

impl Marker {
    pub const ALL: [Marker; 2] = [Marker::PurgeInit, Marker::PurgeClose];

    /// Its `event_type`, the metric's label.
    pub fn event_type(self) -> &'static str {
        match self {
            Marker::PurgeInit => "purge_init",
            Marker::PurgeClose => "purge_close",
        }
    }
}

/// The marker `record` is, if it is one.
pub fn marker(record: &[u8]) -> Option<Marker> {
    let rest = after(record, b"{")?;
    let rest = after(rest, b"\"event_type\"")?;
    let rest = after(rest, b":")?;
    let rest = after(rest, b"\"purge_")?;
    let (kind, rest) = if let Some(rest) = rest.strip_prefix(b"init\"") {
        (Marker::PurgeInit, rest)
    } else {
        (Marker::PurgeClose, rest.strip_prefix(b"close\"")?)
    };
    match skip_space(rest).first() {
        Some(b',' | b'}') => Some(kind),
        _ => None,
    }
}

/// What follows `token` after optional JSON whitespace.
fn after<'a>(bytes: &'a [u8], token: &[u8]) -> Option<&'a [u8]> {
    skip_space(bytes).strip_prefix(token)
}

fn skip_space(bytes: &[u8]) -> &[u8] {
    let n = bytes
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .count();
    &bytes[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_as_pmacct_writes_them_and_nothing_else() {
        let yes = [
            (
                r#"{"event_type": "purge_init", "writer_id": "default_kafka/2187"}"#,
                Marker::PurgeInit,
            ),
            (
                r#"{"event_type": "purge_close", "writer_id": "default_kafka/2187", "purged_entries": 4, "total_entries": 4, "duration": 0}"#,
                Marker::PurgeClose,
            ),
            (r#" {"event_type":"purge_close"} "#, Marker::PurgeClose),
        ];
        for (text, kind) in yes {
            assert_eq!(marker(text.as_bytes()), Some(kind), "{text}");
        }
        let no = [
            r#"{"event_type": "purge", "ip_src": "10.0.0.3", "bytes": 1000}"#,
            r#"{"event_type": "purge_initial", "bytes": 1}"#,
            r#"{"event_type": "purge_close_x"}"#,
            r#"{"ip_src": "10.0.0.3", "event_type": "purge_init"}"#,
            r#"{"event_type": "purge_init""#,
            "",
            "{",
            "purge_init",
        ];
        for text in no {
            assert_eq!(marker(text.as_bytes()), None, "{text}");
        }
    }
}
