//! A live look at what flows through the transform (`GET /tap`): a few
//! records a second, each with the samples the module produced for it or
//! why it rejected it. Nobody listening costs one check per transform call.
//! A listener costs a bounded amount: at most [`PER_SECOND`] records, each
//! run through the module by itself (so the samples shown are its own, the
//! ones written), in a channel of [`DEPTH`] events that a slow listener
//! falls behind in (it is told how many it missed). Payloads are shown as
//! they are, cut at [`MAX_TEXT`] bytes.

use std::time::Duration;

use bytes::Bytes;
use pmacct_guest_sdk::IndexedError;
use serde_json::value::RawValue;
use tokio::sync::broadcast;

use crate::throttle::Throttle;

/// Records tapped a second, at most, whoever listens.
pub const PER_SECOND: u32 = 10;
/// Events kept for a slow listener.
const DEPTH: usize = 64;
/// A record or sample longer than this is shown cut, as a string.
const MAX_TEXT: usize = 16 << 10;

/// The admin side: listeners subscribe here.
#[derive(Clone)]
pub struct Tap {
    events: broadcast::Sender<Bytes>,
}

/// The transform side: where tapped records go.
pub struct Outlet {
    events: broadcast::Sender<Bytes>,
    pace: Throttle,
}

/// One tapped record and what it produced, copied out of the batch.
pub struct Tapped {
    record: Vec<u8>,
    samples: Vec<u8>,
    rejected: Option<(String, String)>,
}

impl Tap {
    pub fn new() -> (Tap, Outlet) {
        let (events, _) = broadcast::channel(DEPTH);
        let outlet = Outlet {
            events: events.clone(),
            pace: Throttle::new(PER_SECOND, Duration::from_secs(1)),
        };
        (Tap { events }, outlet)
    }

    /// Events from now on, one NDJSON line each.
    pub fn subscribe(&self) -> broadcast::Receiver<Bytes> {
        self.events.subscribe()
    }
}

impl Outlet {
    /// Whether to tap the next record: someone listens, within the pace.
    pub fn wants(&mut self) -> bool {
        self.events.receiver_count() > 0 && self.pace.admit().is_some()
    }

    pub fn send(&self, module_sha256: &str, t: &Tapped) {
        // Nobody listening any more is not an error.
        let _ = self.events.send(t.line(module_sha256));
    }
}

impl Tapped {
    pub fn of(record: &[u8], samples: &[u8], rejected: Option<&IndexedError>) -> Self {
        Tapped {
            record: record[..record.len().min(MAX_TEXT + 1)].to_vec(),
            samples: samples.to_vec(),
            rejected: rejected.map(|e| (e.error.reason.to_string(), e.error.detail.clone())),
        }
    }

    /// `{"module":…,"record":…,"samples":[…],"rejected":{…}|null}`: JSON
    /// shown as JSON, anything else (or anything cut) as a string.
    fn line(&self, module_sha256: &str) -> Bytes {
        let samples: Vec<Shown> = self
            .samples
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(Shown::of)
            .collect();
        let event = serde_json::json!({
            "module": &module_sha256[..module_sha256.len().min(12)],
            "record": Shown::of(&self.record),
            "samples": samples,
            "rejected": self.rejected.as_ref().map(|(reason, detail)| {
                serde_json::json!({"reason": reason, "detail": detail})
            }),
        });
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }
}

/// A payload as it is: its JSON when it is JSON and short enough, else its
/// text (cut, and marked so).
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Shown {
    Json(Box<RawValue>),
    Text(String),
}

impl Shown {
    fn of(bytes: &[u8]) -> Self {
        if bytes.len() > MAX_TEXT {
            let cut = String::from_utf8_lossy(&bytes[..MAX_TEXT]);
            return Shown::Text(format!("{cut}… (cut at {MAX_TEXT} bytes)"));
        }
        let text = String::from_utf8_lossy(bytes).into_owned();
        match RawValue::from_string(text.clone()) {
            Ok(raw) => Shown::Json(raw),
            Err(_) => Shown::Text(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nobody_listening_taps_nothing_and_a_listener_gets_a_paced_few() {
        let (tap, mut outlet) = Tap::new();
        assert!(!outlet.wants(), "nobody listens");
        let mut rx = tap.subscribe();
        let taken = (0..100).filter(|_| outlet.wants()).count();
        assert_eq!(taken, PER_SECOND as usize);
        let t = Tapped::of(
            br#"{"bytes": 1}"#,
            b"{\"metric\":{}}\n{\"metric\":{\"a\":\"b\"}}\n",
            None,
        );
        outlet.send("0123456789abcdef", &t);
        let line: serde_json::Value = serde_json::from_slice(&rx.try_recv().unwrap()).unwrap();
        assert_eq!(
            line,
            serde_json::json!({"module": "0123456789ab", "record": {"bytes": 1},
                "samples": [{"metric": {}}, {"metric": {"a": "b"}}], "rejected": null})
        );
    }

    #[test]
    fn bad_and_huge_payloads_are_shown_as_text() {
        let err = IndexedError {
            index: 0,
            error: pmacct_guest_sdk::RecordError::new("invalid_json", "nope"),
        };
        let t = Tapped::of(b"not json", b"", Some(&err));
        let line: serde_json::Value = serde_json::from_slice(&t.line("ab")).unwrap();
        assert_eq!(line["record"], "not json");
        assert_eq!(line["rejected"]["reason"], "invalid_json");
        let huge = vec![b'x'; MAX_TEXT * 4];
        let t = Tapped::of(&huge, b"", None);
        let shown = serde_json::from_slice::<serde_json::Value>(&t.line("ab")).unwrap();
        let text = shown["record"].as_str().unwrap();
        assert!(
            text.len() < MAX_TEXT + 64 && text.ends_with("bytes)"),
            "{}",
            text.len()
        );
    }
}
