//! Kafka: the consumer, reading raw payloads into chunks (no parsing here),
//! and storing offsets only when the pipeline says a batch is delivered.
//!
//! `enable.auto.offset.store=false` is the whole delivery guarantee on this
//! side: librdkafka's background commit only ever commits offsets we stored,
//! and we store a batch's offsets after VictoriaMetrics accepted it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::avro::{AvroInput, AvroSettings};
pub use crate::chunk::Chunk;
use crate::error::Error;
use crate::kafka_health::KafkaHealth;
use crate::kafka_log::KafkaLog;
use crate::kafka_properties::KafkaProperties;
use crate::markers::Marker;
use crate::metrics::Metrics;

/// Records carry a partition's slot number instead of its topic name.
pub use crate::offsets::Slot;

/// Where each [`Slot`] points. Append-only; looked up on the error path, at
/// offset store time and when the partition changes between two records.
#[derive(Default)]
pub struct Slots(Mutex<Vec<(Arc<str>, i32)>>);

impl Slots {
    fn slot(&self, topic: &str, partition: i32) -> Slot {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match all
            .iter()
            .position(|(t, p)| *p == partition && &**t == topic)
        {
            Some(i) => i as Slot,
            None => {
                all.push((Arc::from(topic), partition));
                (all.len() - 1) as Slot
            }
        }
    }

    /// The topic and partition behind a slot.
    pub fn get(&self, slot: Slot) -> (Arc<str>, i32) {
        let all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        all.get(slot as usize)
            .cloned()
            .unwrap_or_else(|| (Arc::from("?"), -1))
    }
}

/// Add one message to `chunk`, as JSON lines or through the Avro reader.
/// `None`: a stop was requested while the schema registry did not answer;
/// the message is not taken, so its offset is not committed and it is read
/// again.
fn take(
    avro: Option<&mut AvroInput>,
    chunk: &mut Chunk,
    payload: &[u8],
    slot: Slot,
    offset: i64,
) -> Option<[u64; 2]> {
    match avro {
        None => Some(chunk.push_message(payload, slot, offset)),
        Some(avro) => avro.push_message(chunk, payload, slot, offset),
    }
}

/// Take revoked partitions from the rebalance callback into `revoked`,
/// and drop their records from `chunk` (not transformed yet, so read
/// before the revocation): whoever owns them now reads them again.
fn drop_revoked(
    consumer: &BaseConsumer<Ctx>,
    slots: &Slots,
    revoked: &mut Vec<Slot>,
    chunk: &mut Chunk,
) {
    let taken: Vec<(String, i32)> = std::mem::take(
        &mut *consumer
            .context()
            .revoked
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    let taken: Vec<Slot> = taken.iter().map(|(t, p)| slots.slot(t, *p)).collect();
    chunk.retain(|slot| !taken.contains(&slot));
    revoked.extend(taken);
}

/// Largest chunk in bytes: keeps one transform call and its copy small.
const CHUNK_MAX_BYTES: usize = 4 << 20;

/// What the consumer connects to and as whom.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    pub brokers: String,
    /// Topic names, or regular expressions starting with `^`.
    pub topics: Vec<String>,
    pub group: String,
    pub session_timeout_ms: u32,
    /// The operator's librdkafka properties, applied after ours.
    pub properties: KafkaProperties,
    /// pmacct's `kafka_output: avro`, when AVRO_SCHEMA_FILE or
    /// SCHEMA_REGISTRY_URL is set; JSON otherwise.
    pub avro: Option<AvroSettings>,
}

pub struct Source {
    consumer: BaseConsumer<Ctx>,
    /// Slots of revoked partitions, for [`take_revoked`](Self::take_revoked).
    revoked: Vec<Slot>,
    slots: Arc<Slots>,
    metrics: Arc<Metrics>,
    /// `pmacct_markers_total` by [`Marker::ALL`], looked up once.
    markers: [prometheus::IntCounter; 2],
    /// When to ask the brokers again while all are reported down.
    next_probe: Option<Instant>,
    /// Reads Avro messages into records; `None`: messages are JSON.
    avro: Option<AvroInput>,
}

/// While every broker is reported down, how often to ask for metadata, and
/// how long to wait for the answer (on the source thread, which has
/// nothing to read meanwhile).
const PROBE_EVERY: Duration = Duration::from_secs(2);
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

impl Source {
    pub fn connect(
        s: &SourceSettings,
        metrics: Arc<Metrics>,
        health: Arc<KafkaHealth>,
        avro: Option<AvroInput>,
    ) -> Result<Self, Error> {
        let mut config = consumer_config(s);
        s.properties.apply(&mut config);
        let consumer: BaseConsumer<Ctx> = config
            .create_with_context(Ctx {
                metrics: metrics.clone(),
                log: KafkaLog::new("consumer", metrics.clone(), Some(health)),
                revoked: Mutex::default(),
                rebalanced: AtomicBool::new(false),
                paused: AtomicBool::new(false),
            })
            .map_err(|e| Error::Config(s.properties.explain(&e)))?;
        let topics: Vec<&str> = s.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(|e| {
            Error::Config(format!("KAFKA_TOPIC: cannot subscribe to {topics:?}: {e}"))
        })?;
        tracing::info!(
            brokers = %s.brokers,
            topics = ?topics,
            group = %s.group,
            "subscribed"
        );
        let markers =
            Marker::ALL.map(|m| metrics.input.markers.with_label_values(&[m.event_type()]));
        Ok(Source {
            consumer,
            revoked: Vec::new(),
            slots: Arc::default(),
            metrics,
            markers,
            next_probe: None,
            avro,
        })
    }

    /// Read up to `max_records` into `chunk`: wait up to `wait` for the
    /// first message, then take only what is already fetched. A message's
    /// records all go in, so the count may pass `max_records` by the last
    /// message's. Returns how many records were added.
    pub fn poll_into(&mut self, chunk: &mut Chunk, max_records: usize, wait: Duration) -> usize {
        self.probe_brokers();
        let before = chunk.len();
        let mut timeout = wait;
        let mut messages = 0;
        let mut markers = [0; 2];
        // Records come in runs from one partition: look the slot up only
        // when the partition changes.
        let mut last: Option<(i32, Slot)> = None;
        let mut last_topic = String::new();
        let mut avro = self.avro.as_mut();
        while chunk.len() - before < max_records && chunk.records.byte_len() < CHUNK_MAX_BYTES {
            match self.consumer.poll(timeout) {
                None => break,
                Some(Ok(m)) => {
                    if self
                        .consumer
                        .context()
                        .rebalanced
                        .swap(false, Ordering::Acquire)
                    {
                        // This record comes from the new assignment; records
                        // of revoked partitions read before it do not count.
                        drop_revoked(&self.consumer, &self.slots, &mut self.revoked, chunk);
                        last = None;
                    }
                    let slot = match last {
                        Some((p, slot)) if p == m.partition() && last_topic == m.topic() => slot,
                        _ => {
                            let slot = self.slots.slot(m.topic(), m.partition());
                            last = Some((m.partition(), slot));
                            last_topic.clear();
                            last_topic.push_str(m.topic());
                            slot
                        }
                    };
                    let payload = m.payload().unwrap_or_default();
                    let Some(found) = take(avro.as_deref_mut(), chunk, payload, slot, m.offset())
                    else {
                        break;
                    };
                    markers[0] += found[0];
                    markers[1] += found[1];
                    messages += 1;
                }
                // Logged and counted by the error callback (`KafkaLog`),
                // which sees every error event before `poll` returns it.
                Some(Err(e)) => tracing::debug!(error = %e, "Kafka consumer error"),
            }
            timeout = Duration::ZERO;
        }
        self.count(chunk.len() - before, messages, markers)
    }

    /// While every broker is reported down, ask for metadata now and then:
    /// an answer means one is back, which a consumer of an idle topic would
    /// otherwise not notice (librdkafka reports brokers going down, not
    /// coming back), and readiness would stay false.
    fn probe_brokers(&mut self) {
        let log = &self.consumer.context().log;
        if !log.brokers_down() {
            return;
        }
        let now = Instant::now();
        if self.next_probe.is_some_and(|t| now < t) {
            return;
        }
        self.next_probe = Some(now + PROBE_EVERY);
        if self.consumer.fetch_metadata(None, PROBE_TIMEOUT).is_ok() {
            log.reachable();
        }
    }

    /// Count what one poll read; returns the records.
    fn count(&self, records: usize, messages: u64, markers: [u64; 2]) -> usize {
        if messages > 0 {
            self.consumer.context().log.reachable();
            self.metrics.input.messages.inc_by(messages);
            self.metrics.records_consumed.inc_by(records as u64);
            for (counter, n) in self.markers.iter().zip(markers) {
                if n > 0 {
                    counter.inc_by(n);
                }
            }
        }
        records
    }

    /// Store commit positions (the next offset to read, per partition);
    /// librdkafka commits them within `auto.commit.interval.ms`.
    pub fn store(&self, positions: &[(Slot, i64)]) {
        if positions.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for &(slot, next) in positions {
            let (topic, partition) = self.slots.get(slot);
            if let Err(e) = tpl.add_partition_offset(&topic, partition, Offset::Offset(next)) {
                tracing::error!(error = %e, partition, "cannot build offset list");
            }
        }
        if let Err(e) = self.consumer.store_offsets(&tpl) {
            // Happens when the partition was revoked meanwhile: its new owner
            // reads those records again (at-least-once, never lost).
            tracing::info!(error = %e, "offsets not stored (partition no longer assigned?)");
        }
    }

    /// The slots of partitions revoked since the last call. What was kept
    /// for them must be dropped before the chunk read since is used: its
    /// records of those partitions come from their new assignment.
    pub fn take_revoked(&mut self, out: &mut Vec<Slot>) {
        if self
            .consumer
            .context()
            .rebalanced
            .swap(false, Ordering::Acquire)
        {
            drop_revoked(
                &self.consumer,
                &self.slots,
                &mut self.revoked,
                &mut Chunk::default(),
            );
        }
        out.append(&mut self.revoked);
    }

    /// The topic and partition of each record's slot.
    pub fn slots(&self) -> Arc<Slots> {
        self.slots.clone()
    }

    /// The topic and partition of one slot.
    pub fn place(&self, slot: Slot) -> (Arc<str>, i32) {
        self.slots.get(slot)
    }

    /// Read a partition again from `offset` (VictoriaMetrics lost what it
    /// had accepted). Fails, logged, if the partition is no longer ours.
    pub fn seek(&self, slot: Slot, offset: i64) {
        let (topic, partition) = self.slots.get(slot);
        match self.consumer.seek(
            &topic,
            partition,
            Offset::Offset(offset),
            Duration::from_secs(10),
        ) {
            Ok(()) => tracing::info!(
                topic = &*topic,
                partition,
                offset,
                "reading again from the commit position"
            ),
            Err(e) => {
                tracing::warn!(error = %e, topic = &*topic, partition, "cannot seek back (partition no longer assigned?)")
            }
        }
    }

    /// Stop fetching while the sink is behind; `poll` must still be called
    /// so the consumer stays in its group.
    pub fn pause(&self) {
        self.consumer
            .context()
            .paused
            .store(true, Ordering::Release);
        if let Ok(a) = self.consumer.assignment() {
            if let Err(e) = self.consumer.pause(&a) {
                tracing::debug!(error = %e, "pause failed");
            }
        }
    }

    pub fn resume(&self) {
        self.consumer
            .context()
            .paused
            .store(false, Ordering::Release);
        if let Ok(a) = self.consumer.assignment() {
            if let Err(e) = self.consumer.resume(&a) {
                tracing::debug!(error = %e, "resume failed");
            }
        }
    }

    /// Commit what was stored, synchronously (at shutdown).
    pub fn commit(&self) -> KafkaResult<()> {
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored since the last commit.
            Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => Ok(()),
            other => other,
        }
    }
}

/// Our consumer settings, before the operator's properties.
fn consumer_config(s: &SourceSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &s.brokers)
        .set("group.id", &s.group)
        .set("client.id", "pmacct-kafka-vm")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.commit.interval.ms", "1000")
        .set("session.timeout.ms", s.session_timeout_ms.to_string())
        .set(
            "heartbeat.interval.ms",
            (s.session_timeout_ms / 3).max(100).to_string(),
        )
        // librdkafka postpones a partition's next fetch by this much once
        // its queue is over the thresholds (1 s by default): a consumer
        // a little slower than the broker then drains the queue and
        // waits most of each second (measured: 142 000 records/s with
        // the default, against 1.2 M for a consumer faster than it).
        .set("fetch.queue.backoff.ms", "10")
        // Per-partition lag for /metrics (kafka_consumer_lag); the
        // operator may set another interval, or 0 to turn it off.
        .set("statistics.interval.ms", "15000")
        .set_log_level(RDKafkaLogLevel::Warning);
    config
}

struct Ctx {
    metrics: Arc<Metrics>,
    /// librdkafka's log and errors, throttled; what they say about Kafka.
    log: KafkaLog,
    /// Partitions revoked since the pipeline last asked (rebalance
    /// callbacks run inside `poll`, on the source thread), and a flag that
    /// `poll_into` checks per record without taking the lock.
    revoked: Mutex<Vec<(String, i32)>>,
    rebalanced: AtomicBool,
    /// Whether fetching is paused (the sink is behind). librdkafka keeps a
    /// partition's pause across a revoke and a later assign, so a
    /// partition paused, revoked and given back would never be fetched
    /// again: each assignment is set to this explicitly.
    paused: AtomicBool,
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.log.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(&error, reason);
    }

    fn stats(&self, stats: rdkafka::Statistics) {
        if stats.brokers.values().any(|b| b.state == "UP") {
            self.log.reachable();
        }
        for (topic, t) in &stats.topics {
            for p in t.partitions.values() {
                // librdkafka lists an internal partition -1, and -1 lags for
                // partitions this consumer does not own.
                if p.partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[topic.as_str(), &p.partition.to_string()])
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for Ctx {
    fn post_rebalance(&self, c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.log.reachable();
                let paused = self.paused.load(Ordering::Acquire);
                tracing::info!(partitions = ?partitions(tpl), paused, "partitions assigned");
                self.metrics.rebalances.with_label_values(&["assign"]).inc();
                let set = if paused { c.pause(tpl) } else { c.resume(tpl) };
                if let Err(e) = set {
                    tracing::warn!(error = %e, paused, "cannot set the new partitions' pause state");
                }
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = ?partitions(tpl), "partitions revoked");
                self.metrics.rebalances.with_label_values(&["revoke"]).inc();
                self.revoked
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend(
                        tpl.elements()
                            .iter()
                            .map(|e| (e.topic().to_string(), e.partition())),
                    );
                self.rebalanced.store(true, Ordering::Release);
                // Their lag is another consumer's to report now.
                for e in tpl.elements() {
                    let _ = self
                        .metrics
                        .consumer_lag
                        .remove_label_values(&[e.topic(), &e.partition().to_string()]);
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                self.log.reachable();
                tracing::debug!(offsets = ?offsets_of(offsets), "offsets committed")
            }
            Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                tracing::warn!(error = %e, "offset commit failed; it is retried with the next commit")
            }
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

fn offsets_of(tpl: &TopicPartitionList) -> Vec<(i32, i64)> {
    tpl.elements()
        .iter()
        .filter_map(|e| e.offset().to_raw().map(|o| (e.partition(), o)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(c: &Chunk) -> Vec<(&str, (Slot, i64), u32)> {
        c.all()
            .iter()
            .zip(&c.positions)
            .zip(&c.indices)
            .map(|((r, &pos), &index)| (std::str::from_utf8(r).unwrap_or("?"), pos, index))
            .collect()
    }

    #[test]
    fn a_message_is_its_lines_and_markers_are_set_apart() {
        let mut c = Chunk::default();
        assert_eq!(c.push_message(b"{\"a\":1}", 0, 7), [0, 0]);
        let packed = b"{\"event_type\": \"purge_init\"}\n{\"b\":2}\n{\"c\":3}\n{\"event_type\": \"purge_close\"}\n";
        assert_eq!(c.push_message(packed, 1, 8), [1, 1]);
        // No trailing newline; a tombstone is one empty record.
        assert_eq!(c.push_message(b"{\"d\":4}\n{\"e\":5}", 1, 9), [0, 0]);
        assert_eq!(c.push_message(b"", 1, 10), [0, 0]);
        assert_eq!(
            records(&c),
            [
                ("{\"a\":1}", (0, 7), 0),
                ("{\"b\":2}", (1, 8), 1),
                ("{\"c\":3}", (1, 8), 2),
                ("{\"d\":4}", (1, 9), 0),
                ("{\"e\":5}", (1, 9), 1),
                ("", (1, 10), 0),
            ]
        );
        assert_eq!(c.markers, [(1, 8), (1, 8)]);
        c.retain(|slot| slot == 0);
        assert_eq!(records(&c), [("{\"a\":1}", (0, 7), 0)]);
        assert!(c.markers.is_empty());
    }

    /// Records that could not be read keep their reason through a
    /// rebalance's `retain`, at their new index; decoded records that are
    /// markers are set apart.
    #[test]
    fn undecodable_records_keep_their_reason() {
        let mut c = Chunk::default();
        c.push_undecodable(b"x", 0, 1, 0, "why 0".into());
        c.push_message(b"{\"a\":1}", 1, 2);
        c.push_undecodable(b"y", 1, 3, 2, "why 1".into());
        c.push_undecodable(b"z", 0, 4, 0, "why 2".into());
        c.records
            .unended()
            .extend_from_slice(br#"{"event_type": "purge_close", "writer_id": "w"}"#);
        assert_eq!(c.end_record(1, 5, 0), Some(Marker::PurgeClose));
        assert_eq!(
            c.undecodable.iter().map(|u| u.0).collect::<Vec<_>>(),
            [0, 2, 3]
        );
        c.retain(|slot| slot == 1);
        assert_eq!(records(&c), [("{\"a\":1}", (1, 2), 0), ("y", (1, 3), 2)]);
        assert_eq!(c.undecodable, [(1, "why 1".to_string())]);
        assert_eq!(c.markers, [(1, 5)]);
    }
}
