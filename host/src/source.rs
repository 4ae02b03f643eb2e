//! Kafka: the consumer, reading raw payloads into chunks (no parsing here),
//! and storing offsets only when the pipeline says a batch is delivered.
//!
//! `enable.auto.offset.store=false` is the whole delivery guarantee on this
//! side: librdkafka's background commit only ever commits offsets we stored,
//! and we store a batch's offsets after VictoriaMetrics accepted it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::error::Error;
use crate::kafka_properties::KafkaProperties;
use crate::metrics::Metrics;
use crate::throttle::Throttle;

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

/// Records read in one go, payloads back to back (the transform's input).
#[derive(Default)]
pub struct Chunk {
    pub bytes: Vec<u8>,
    pub ends: Vec<u32>,
    /// (slot, offset) of each record, for offsets and error logs.
    pub positions: Vec<(Slot, i64)>,
}

impl Chunk {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
        self.positions.clear();
    }

    /// Keep only the records whose slot passes `keep` (a rare path: rebalances).
    fn retain(&mut self, keep: impl Fn(Slot) -> bool) {
        let old = std::mem::take(self);
        let mut start = 0;
        for (&end, &(slot, offset)) in old.ends.iter().zip(&old.positions) {
            if keep(slot) {
                self.push(&old.bytes[start..end as usize], slot, offset);
            }
            start = end as usize;
        }
    }

    fn push(&mut self, payload: &[u8], slot: Slot, offset: i64) {
        self.bytes.extend_from_slice(payload);
        self.ends.push(self.bytes.len() as u32);
        self.positions.push((slot, offset));
    }
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
}

pub struct Source {
    consumer: BaseConsumer<Ctx>,
    /// Slots of revoked partitions, for [`take_revoked`](Self::take_revoked).
    revoked: Mutex<Vec<Slot>>,
    slots: Arc<Slots>,
    metrics: Arc<Metrics>,
    /// A broker outage errors on every poll: one line per 10 s.
    error_log: Mutex<Throttle>,
}

impl Source {
    pub fn connect(s: &SourceSettings, metrics: Arc<Metrics>) -> Result<Self, Error> {
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
        s.properties.apply(&mut config);
        let consumer: BaseConsumer<Ctx> = config
            .create_with_context(Ctx {
                metrics: metrics.clone(),
                revoked: Mutex::default(),
                rebalanced: AtomicBool::new(false),
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
        Ok(Source {
            consumer,
            revoked: Mutex::default(),
            slots: Arc::default(),
            metrics,
            error_log: Mutex::new(Throttle::new(1, Duration::from_secs(10))),
        })
    }

    /// Read up to `max_records` into `chunk`: wait up to `wait` for the
    /// first, then take only what is already fetched. Returns how many were
    /// added.
    pub fn poll_into(&self, chunk: &mut Chunk, max_records: usize, wait: Duration) -> usize {
        let before = chunk.len();
        let mut timeout = wait;
        // Records come in runs from one partition: look the slot up only
        // when the partition changes.
        let mut last: Option<(i32, Slot)> = None;
        let mut last_topic = String::new();
        while chunk.len() - before < max_records && chunk.bytes.len() < CHUNK_MAX_BYTES {
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
                        self.drop_revoked(chunk);
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
                    // A null payload (tombstone) becomes an empty record, which
                    // the transform rejects with a reason: nothing vanishes.
                    chunk.push(m.payload().unwrap_or_default(), slot, m.offset());
                }
                Some(Err(e)) => self.kafka_error(&e),
            }
            timeout = Duration::ZERO;
        }
        let added = chunk.len() - before;
        self.metrics.records_consumed.inc_by(added as u64);
        added
    }

    /// Take revoked partitions from the rebalance callback into
    /// `self.revoked`, and drop their records from `chunk` (not transformed
    /// yet, so read before the revocation): whoever owns them now reads
    /// them again.
    fn drop_revoked(&self, chunk: &mut Chunk) {
        let taken: Vec<(String, i32)> = std::mem::take(
            &mut *self
                .consumer
                .context()
                .revoked
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let slots: Vec<Slot> = taken.iter().map(|(t, p)| self.slots.slot(t, *p)).collect();
        chunk.retain(|slot| !slots.contains(&slot));
        self.revoked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(slots);
    }

    fn kafka_error(&self, e: &KafkaError) {
        self.metrics.kafka_errors.inc();
        let admitted = self
            .error_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit();
        if let Some(more_since_last_line) = admitted {
            tracing::warn!(error = %e, more_since_last_line, "Kafka consumer error");
        }
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
    pub fn take_revoked(&self, out: &mut Vec<Slot>) {
        if self
            .consumer
            .context()
            .rebalanced
            .swap(false, Ordering::Acquire)
        {
            self.drop_revoked(&mut Chunk::default());
        }
        out.append(&mut self.revoked.lock().unwrap_or_else(PoisonError::into_inner));
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
        if let Ok(a) = self.consumer.assignment() {
            if let Err(e) = self.consumer.pause(&a) {
                tracing::debug!(error = %e, "pause failed");
            }
        }
    }

    pub fn resume(&self) {
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

struct Ctx {
    metrics: Arc<Metrics>,
    /// Partitions revoked since the pipeline last asked (rebalance
    /// callbacks run inside `poll`, on the source thread), and a flag that
    /// `poll_into` checks per record without taking the lock.
    revoked: Mutex<Vec<(String, i32)>>,
    rebalanced: AtomicBool,
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.metrics.kafka_errors.inc();
        tracing::warn!(target: "librdkafka", error = %error, "{reason}");
    }

    fn stats(&self, stats: rdkafka::Statistics) {
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
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = ?partitions(tpl), "partitions assigned");
                self.metrics.rebalances.with_label_values(&["assign"]).inc();
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
            Ok(()) => tracing::debug!(offsets = ?offsets_of(offsets), "offsets committed"),
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
