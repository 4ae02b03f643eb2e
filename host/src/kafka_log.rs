//! librdkafka's log lines and error callbacks, for the consumer and the
//! dead-letter producer alike: through the project's [`Throttle`] (one line
//! per facility or error code per 10 s, with how many were held back), so
//! an unreachable broker cannot flood the log; what they say about the
//! brokers goes to [`KafkaHealth`].

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::kafka_health::KafkaHealth;
use crate::metrics::Metrics;
use crate::throttle::Throttle;

/// One line per kind per this interval; the counters count every event.
const EVERY: Duration = Duration::from_secs(10);

pub struct KafkaLog {
    /// Which client this is, in every line ("consumer", "dead-letter producer").
    client: &'static str,
    metrics: Arc<Metrics>,
    /// What this client's errors say about Kafka goes here (the consumer's
    /// only: an idle producer's connections are closed by brokers, which
    /// librdkafka reports as all brokers down).
    health: Option<Arc<KafkaHealth>>,
    /// By log facility (librdkafka's `fac`: FAIL, CONFWARN, ...).
    lines: Mutex<HashMap<String, Throttle>>,
    /// By error code.
    errors: Mutex<HashMap<i32, Throttle>>,
}

/// Whether a line may go out now, and how many were held back before it.
fn admit<K, Q>(map: &Mutex<HashMap<K, Throttle>>, key: &Q, owned: impl FnOnce() -> K) -> Option<u64>
where
    K: Borrow<Q> + Hash + Eq,
    Q: Hash + Eq + ?Sized,
{
    let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
    match map.get_mut(key) {
        Some(t) => t.admit(),
        None => map
            .entry(owned())
            .or_insert_with(|| Throttle::new(1, EVERY))
            .admit(),
    }
}

impl KafkaLog {
    pub fn new(
        client: &'static str,
        metrics: Arc<Metrics>,
        health: Option<Arc<KafkaHealth>>,
    ) -> Self {
        KafkaLog {
            client,
            metrics,
            health,
            lines: Mutex::default(),
            errors: Mutex::default(),
        }
    }

    /// Whether librdkafka said every broker is down, and none answered since.
    pub fn brokers_down(&self) -> bool {
        self.health.as_ref().is_some_and(|h| h.brokers_down())
    }

    /// A broker answered.
    pub fn reachable(&self) {
        if let Some(h) = &self.health {
            h.set_reachable();
        }
    }

    /// librdkafka's log callback.
    pub fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let Some(held_back) = admit(&self.lines, fac, || fac.to_string()) else {
            return;
        };
        let client = self.client;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", client, fac, held_back, "{message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", client, fac, held_back, "{message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", client, fac, held_back, "{message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", client, fac, held_back, "{message}")
            }
        }
    }

    /// librdkafka's error callback: every error event, the client's own and
    /// a consumer's record errors alike (which `poll` then returns too).
    pub fn error(&self, error: &KafkaError, reason: &str) {
        self.metrics.kafka_errors.inc();
        let code = error.rdkafka_error_code();
        let undecodable = code.is_some_and(undecodable);
        if let Some(h) = &self.health {
            if code == Some(RDKafkaErrorCode::AllBrokersDown) {
                h.set_brokers_down();
            } else if undecodable {
                h.set_unreadable(reason);
            }
        }
        if undecodable {
            self.metrics.input.unreadable.inc();
        }
        let key = code.map_or(0, |c| c as i32);
        if let Some(held_back) = admit(&self.errors, &key, || key) {
            let client = self.client;
            if undecodable {
                tracing::error!(target: "librdkafka", client, error = %error, held_back, "{reason}: records the client cannot decode; their partition does not advance (see /health)");
            } else {
                tracing::warn!(target: "librdkafka", client, error = %error, held_back, "{reason}");
            }
        }
    }
}

/// Errors that say fetched records cannot be decoded: a compression codec
/// the client was built without, corrupt compressed data, a malformed
/// batch. librdkafka fetches them again and again; nothing after them in
/// their partition is read.
fn undecodable(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::BadCompression
            | RDKafkaErrorCode::NotImplemented
            | RDKafkaErrorCode::BadMessage
            | RDKafkaErrorCode::InvalidMessage
    )
}
