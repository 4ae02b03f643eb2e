//! What the Kafka client tells about Kafka, for `/health` and
//! `/health/ready`: every broker down, or fetched records it cannot decode.
//! Set from librdkafka's callbacks and the source; read by the admin.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long after the last undecodable fetch the host still reports it.
/// librdkafka fetches the same records again several times a second while
/// they stay undecodable, so this long without one means they are gone
/// (read, or their partition no longer ours).
const UNREADABLE_FOR: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct KafkaHealth {
    brokers_down: AtomicBool,
    unreadable: Mutex<Option<(Instant, String)>>,
}

impl KafkaHealth {
    /// librdkafka reported every broker down.
    pub fn set_brokers_down(&self) {
        self.brokers_down.store(true, Ordering::Relaxed);
    }

    pub fn brokers_down(&self) -> bool {
        self.brokers_down.load(Ordering::Relaxed)
    }

    /// A broker answered (a record, an assignment, a commit, a broker `UP`
    /// in the statistics). One relaxed store: cheap enough for every poll.
    pub fn set_reachable(&self) {
        if self.brokers_down.load(Ordering::Relaxed) {
            self.brokers_down.store(false, Ordering::Relaxed);
            tracing::info!("Kafka: a broker is reachable again");
        }
    }

    /// Records were fetched that the client cannot decode: `error` says why.
    pub fn set_unreadable(&self, error: &str) {
        let mut u = self
            .unreadable
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match &mut *u {
            Some((last, e)) if e == error => *last = Instant::now(),
            other => *other = Some((Instant::now(), error.to_string())),
        }
    }

    /// Why Kafka keeps the host from doing its work now, if it does.
    pub fn problem(&self) -> Option<String> {
        if self.brokers_down.load(Ordering::Relaxed) {
            return Some("kafka: all brokers down".to_string());
        }
        let u = self
            .unreadable
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match &*u {
            Some((last, error)) if last.elapsed() < UNREADABLE_FOR => Some(format!(
                "kafka: fetched records cannot be decoded ({error}); their partition does not advance, see kafka_unreadable_fetches_total"
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_why_until_the_cause_goes() {
        let h = KafkaHealth::default();
        assert_eq!(h.problem(), None);
        h.set_brokers_down();
        assert_eq!(h.problem().as_deref(), Some("kafka: all brokers down"));
        h.set_reachable();
        assert_eq!(h.problem(), None);
        h.set_unreadable("Local: Invalid compressed data");
        let p = h.problem().unwrap_or_default();
        assert!(
            p.contains("cannot be decoded (Local: Invalid compressed data)"),
            "{p}"
        );
    }
}
