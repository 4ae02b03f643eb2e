//! The dead-letter topic (`KAFKA_DLQ_TOPIC`): records the transform rejected
//! or VictoriaMetrics refused, produced unchanged with headers saying why
//! and where they came from. A batch's offsets are stored only after its
//! dead letters are acknowledged by the broker, so a record is never both
//! uncommitted-lost and missing from the dead-letter topic.

use std::sync::Arc;

use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::error::Error;
use crate::kafka_properties::KafkaProperties;
use crate::metrics::Metrics;
use crate::source::{Slot, Slots};
use crate::stop::Deadline;

/// One record to dead-letter.
pub struct Letter<'a> {
    pub payload: &'a [u8],
    pub reason: &'a str,
    pub detail: &'a str,
    /// Where it was read from.
    pub slot: Slot,
    pub offset: i64,
}

pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    slots: Arc<Slots>,
    metrics: Arc<Metrics>,
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
            .set("enable.idempotence", "true")
            .set("linger.ms", "20");
        // The operator's security and connection settings apply here too;
        // consumer-only properties are ignored (with a warning) by librdkafka.
        properties.apply(&mut config);
        let producer: FutureProducer = config
            .create()
            .map_err(|e| Error::Config(format!("KAFKA_DLQ_TOPIC: {}", properties.explain(&e))))?;
        Ok(DeadLetters {
            producer,
            topic: topic.to_string(),
            slots,
            metrics,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
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
        let mut pending: Vec<usize> = (0..letters.len()).collect();
        while !pending.is_empty() {
            let futures: Vec<_> = pending
                .iter()
                .map(|&i| (i, self.producer.send_result(self.record(&letters[i]))))
                .collect();
            let mut failed = Vec::new();
            for (i, f) in futures {
                match f {
                    Ok(delivery) => match delivery.await {
                        Ok(Ok(_)) => self.metrics.dead_letter(letters[i].reason),
                        Ok(Err((e, _))) => {
                            tracing::warn!(error = %e, topic = %self.topic, "dead letter not acknowledged; retrying");
                            failed.push(i);
                        }
                        Err(_) => failed.push(i),
                    },
                    Err((e, _)) => {
                        tracing::warn!(error = %e, topic = %self.topic, "dead letter not queued; retrying");
                        failed.push(i);
                    }
                }
            }
            if !failed.is_empty() {
                let delay = delays.next().unwrap_or(crate::retry::LONGEST);
                tokio::time::sleep(delay).await;
            }
            pending = failed;
        }
    }

    /// The record as it came from Kafka, with where it came from and why
    /// it was rejected as headers.
    fn record<'a>(&'a self, l: &Letter<'a>) -> FutureRecord<'a, (), [u8]> {
        let (source_topic, partition) = self.slots.get(l.slot);
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "x-reason",
                value: Some(l.reason),
            })
            .insert(Header {
                key: "x-detail",
                value: Some(l.detail),
            })
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
                value: Some(&l.offset.to_string()),
            });
        FutureRecord::to(&self.topic)
            .payload(l.payload)
            .headers(headers)
    }
}

/// Dead letters not acknowledged by the shutdown deadline.
#[derive(Debug, thiserror::Error)]
#[error("dead letters to {topic} not acknowledged within SHUTDOWN_TIMEOUT")]
pub struct Abandoned {
    topic: String,
}
