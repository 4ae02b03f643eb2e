//! The dead-letter topic (`KAFKA_DLQ_TOPIC`): records the transform rejected
//! or VictoriaMetrics refused, produced unchanged with headers saying why
//! and where they came from. A batch's offsets are stored only after its
//! dead letters are acknowledged by the broker, so a record is never both
//! uncommitted-lost and missing from the dead-letter topic.
//!
//! Dead letters never block for good: only errors that may pass are
//! retried. A letter too large for the broker is produced cut short (halved
//! until it fits, with headers saying so); one refused for any other reason
//! that no retry changes is logged and counted, not dead-lettered.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use crate::error::Error;
use crate::kafka_log::KafkaLog;
use crate::kafka_properties::KafkaProperties;
use crate::metrics::Metrics;
use crate::source::{Slot, Slots};
use crate::stop::Deadline;
use crate::throttle::Throttle;

/// One record to dead-letter.
pub struct Letter<'a> {
    pub payload: &'a [u8],
    pub reason: &'a str,
    pub detail: &'a str,
    pub origin: Origin,
}

/// What a letter's payload is.
#[derive(Debug, Clone, Copy)]
pub enum Origin {
    /// A record as read: where from, and its line within its Kafka message
    /// (pmacct's `kafka_multi_values`).
    Record { slot: Slot, offset: i64, index: u32 },
    /// A roll-up sum the store refused, as the import line that was sent:
    /// its records are committed (their values are in the sum), so the sum
    /// is what must be kept. Its timestamp's milliseconds name the partition.
    Sum,
}

/// The producer's log and errors, through the same throttle as the consumer's.
struct Ctx(KafkaLog);

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.0.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.0.error(&error, reason);
    }
}

/// One try at one letter: which, and how many bytes of its payload.
#[derive(Clone, Copy)]
struct Attempt {
    letter: usize,
    len: usize,
}

/// What a refused letter needs.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// Something that may pass (an outage, a full queue): the same, later.
    Retry,
    /// Too large for the client or the broker: a shorter payload, now.
    Shrink,
    /// The broker refuses this record whatever is retried.
    GiveUp,
}

fn refusal(e: &KafkaError) -> Refusal {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::MessageBatchTooLarge) => {
            Refusal::Shrink
        }
        Some(
            RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidTimestamp
            | RDKafkaErrorCode::UnsupportedForMessageFormat
            | RDKafkaErrorCode::PolicyViolation,
        ) => Refusal::GiveUp,
        _ => Refusal::Retry,
    }
}

pub struct DeadLetters {
    producer: FutureProducer<Ctx>,
    topic: String,
    slots: Arc<Slots>,
    metrics: Arc<Metrics>,
    /// Retries and cut letters: one line per 10 s each, with the count held back.
    retry_log: Mutex<Throttle>,
    cut_log: Mutex<Throttle>,
}

impl DeadLetters {
    pub fn new(
        brokers: &str,
        topic: &str,
        properties: &KafkaProperties,
        slots: Arc<Slots>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Error> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("client.id", "pmacct-kafka-vm-dlq")
            .set("acks", "all")
            // At least once, like every dead letter (a retry after a lost
            // answer, a replay after a crash): a duplicate carries the same
            // x-source-* headers. Idempotence would add a producer id to
            // acquire first, which a broker restart at the producer's start
            // once left it without for the rest of the run (fault schedule
            // 19), holding every batch with a dead letter uncommitted.
            .set("enable.idempotence", "false")
            .set("linger.ms", "20");
        // The operator's security and connection settings apply here too;
        // consumer-only properties are ignored (with a warning) by librdkafka.
        properties.apply(&mut config);
        let log = KafkaLog::new("dead-letter producer", metrics.clone(), None);
        let producer: FutureProducer<Ctx> = config
            .create_with_context(Ctx(log))
            .map_err(|e| Error::Config(format!("KAFKA_DLQ_TOPIC: {}", properties.explain(&e))))?;
        Ok(DeadLetters {
            producer,
            topic: topic.to_string(),
            slots,
            metrics,
            retry_log: Mutex::new(Throttle::new(1, LOG_EVERY)),
            cut_log: Mutex::new(Throttle::new(1, LOG_EVERY)),
        })
    }

    /// Produce every letter, retrying until the broker acknowledged each or
    /// the shutdown deadline. Letters already
    /// queued may still arrive after giving up: at least once, like the rest.
    pub async fn send(&self, letters: &[Letter<'_>], deadline: &Deadline) -> Result<(), Abandoned> {
        tokio::select! {
            () = self.send_all(letters) => Ok(()),
            () = deadline.reached() => Err(Abandoned {
                topic: self.topic.clone(),
            }),
        }
    }

    async fn send_all(&self, letters: &[Letter<'_>]) {
        let mut delays = crate::retry::delays();
        let mut pending: Vec<Attempt> = (0..letters.len())
            .map(|letter| Attempt {
                letter,
                len: letters[letter].payload.len(),
            })
            .collect();
        while !pending.is_empty() {
            let futures: Vec<_> = pending
                .iter()
                .map(|&a| {
                    (
                        a,
                        self.producer
                            .send_result(self.record(&letters[a.letter], a.len)),
                    )
                })
                .collect();
            let mut again = Vec::new();
            let mut wait = false;
            for (a, f) in futures {
                let result = match f {
                    Ok(delivery) => match delivery.await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err((e, _))) => Err(e),
                        Err(_) => Err(KafkaError::Canceled),
                    },
                    Err((e, _)) => Err(e),
                };
                let letter = &letters[a.letter];
                match result {
                    Ok(()) => self.delivered(letter, a.len),
                    Err(e) => match refusal(&e) {
                        Refusal::Retry => {
                            self.log_retry(&e);
                            wait = true;
                            again.push(a);
                        }
                        Refusal::Shrink if a.len > 0 => again.push(Attempt {
                            len: a.len / 2,
                            ..a
                        }),
                        Refusal::Shrink | Refusal::GiveUp => self.unsent(letter, &e),
                    },
                }
            }
            if wait {
                let delay = delays.next().unwrap_or(crate::retry::LONGEST);
                tokio::time::sleep(delay).await;
            }
            pending = again;
        }
    }

    fn delivered(&self, letter: &Letter<'_>, len: usize) {
        self.metrics.dead_letter(letter.reason);
        if len == letter.payload.len() {
            return;
        }
        self.metrics.input.dead_letters_truncated.inc();
        let admitted = self
            .cut_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit();
        if let Some(held_back) = admitted {
            let (topic, partition, offset, record) = self.place(letter.origin);
            tracing::warn!(dlq = %self.topic, topic = &*topic, partition, offset, record, sent = len, size = letter.payload.len(), held_back, "dead letter too large for the broker: produced cut short (header x-truncated)");
        }
    }

    fn log_retry(&self, e: &KafkaError) {
        let admitted = self
            .retry_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit();
        if let Some(held_back) = admitted {
            tracing::warn!(error = %e, topic = %self.topic, held_back, "dead letter not acknowledged; retrying");
        }
    }

    /// Where a letter came from, for logs (a roll-up sum: none).
    fn place(&self, origin: Origin) -> (Arc<str>, i32, i64, u32) {
        match origin {
            Origin::Record {
                slot,
                offset,
                index,
            } => {
                let (topic, partition) = self.slots.get(slot);
                (topic, partition, offset, index)
            }
            Origin::Sum => (Arc::from("-"), -1, -1, 0),
        }
    }

    /// Refused for good: the record is not dead-lettered, and said so.
    fn unsent(&self, letter: &Letter<'_>, e: &KafkaError) {
        self.metrics.input.dead_letters_unsent.inc();
        let (topic, partition, offset, record) = self.place(letter.origin);
        tracing::error!(error = %e, dlq = %self.topic, topic = &*topic, partition, offset, record, reason = letter.reason, size = letter.payload.len(), "the broker refuses this dead letter for good: the record is not dead-lettered");
    }

    /// The record as it came from Kafka (its first `len` bytes), with where
    /// it came from and why it was rejected as headers.
    fn record<'a>(&'a self, l: &Letter<'a>, len: usize) -> FutureRecord<'a, (), [u8]> {
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: "x-reason",
                value: Some(l.reason),
            })
            .insert(Header {
                key: "x-detail",
                value: Some(l.detail),
            });
        headers = match l.origin {
            Origin::Record {
                slot,
                offset,
                index,
            } => {
                let (source_topic, partition) = self.slots.get(slot);
                headers
                    .insert(Header {
                        key: "x-source-topic",
                        value: Some(&*source_topic),
                    })
                    .insert(Header {
                        key: "x-source-partition",
                        value: Some(&partition.to_string()),
                    })
                    .insert(Header {
                        key: "x-source-offset",
                        value: Some(&offset.to_string()),
                    })
                    .insert(Header {
                        key: "x-record-index",
                        value: Some(&index.to_string()),
                    })
            }
            Origin::Sum => headers.insert(Header {
                key: "x-content",
                value: Some("rollup-sum-import-line"),
            }),
        };
        if len < l.payload.len() {
            headers = headers
                .insert(Header {
                    key: "x-truncated",
                    value: Some("true"),
                })
                .insert(Header {
                    key: "x-original-size",
                    value: Some(&l.payload.len().to_string()),
                });
        }
        FutureRecord::to(&self.topic)
            .payload(&l.payload[..len])
            .headers(headers)
    }
}

/// One line per 10 s for retries and for cut letters.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Dead letters not acknowledged by the shutdown deadline.
#[derive(Debug, thiserror::Error)]
#[error("dead letters to {topic} not acknowledged within SHUTDOWN_TIMEOUT")]
pub struct Abandoned {
    topic: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_may_pass_is_retried() {
        let produce = |code| KafkaError::MessageProduction(code);
        assert_eq!(
            refusal(&produce(RDKafkaErrorCode::MessageSizeTooLarge)),
            Refusal::Shrink
        );
        assert_eq!(
            refusal(&produce(RDKafkaErrorCode::InvalidRecord)),
            Refusal::GiveUp
        );
        for code in [
            RDKafkaErrorCode::QueueFull,
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ] {
            assert_eq!(refusal(&produce(code)), Refusal::Retry, "{code:?}");
        }
        assert_eq!(refusal(&KafkaError::Canceled), Refusal::Retry);
    }
}
