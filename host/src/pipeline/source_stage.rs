//! The source thread: poll Kafka, transform each chunk, fill batches and
//! hand them to the sink; pause fetching while the sink is behind. It alone
//! owns the consumer and the offsets' tracker: what the sink stage learns
//! (a batch durable, the store restarted) comes back as [`Ack`]s.

use std::collections::HashMap;
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use pmacct_guest_sdk::{IndexedError, RecordError};
use tokio::sync::mpsc::{self, error::TrySendError};

use super::channels::{Ack, SourceEnds};
use super::Common;
use crate::batch::{chunk_room, Batch, BatchSettings};
use crate::durability::Holds;
use crate::enrich::Enricher;
use crate::event_time::{self, WallClock};
use crate::metrics::Metrics;
use crate::offsets::{Slot, Tracker};
use crate::rollup;
use crate::source::{Chunk, Source};
use crate::stop::Stop;
use crate::throttle::Throttle;
use crate::transform::{Loader, Transformer};

/// Records per transform call, at most.
const MAX_CHUNK: usize = 1024;
/// Longest wait in `poll` while a batch or a roll-up cell is open, so the
/// batch timer and the roll-up's quiet and idle rules are kept promptly
/// (librdkafka's poll cannot be woken).
const BUSY_POLL: Duration = Duration::from_millis(25);
/// Longest wait in `poll` while sent batches still hold offsets: their
/// releases come back as acks, which are read between polls. The sink
/// checks the durability window as often.
const ACK_POLL: Duration = Duration::from_millis(250);
/// Longest wait in `poll` with nothing open or held: only a stop request
/// (and a rewind, which finds nothing open) waits for it, a second at most.
/// A reloaded module does not: it is swapped in before the records that
/// end the wait are transformed. One wake-up a second keeps an idle host
/// near zero CPU (at 250 ms the source alone took 0.8 ms of CPU a second).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How long a full batch waits for the sink before the consumer pauses.
const WAIT_BEFORE_PAUSE: Duration = Duration::from_secs(1);
/// One log line per error reason per this interval (the counter counts all).
const ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

enum HandOver {
    Sent,
    /// The sink stayed busy; the batch comes back.
    Busy(Box<Batch>),
    /// The sink is gone (shutdown gave up on it).
    Closed,
}

pub(crate) struct SourceStage {
    source: Source,
    /// Which offsets may be committed. This thread's alone.
    tracker: Tracker,
    loader: Arc<Loader>,
    transformer: Transformer,
    /// Adds ENRICH_LABELS' fields to records before the transform.
    enricher: Option<Enricher>,
    rollup: Option<rollup::Feeder>,
    settings: BatchSettings,
    /// Whether batches keep their records for the dead-letter topic.
    keep_letters: bool,
    metrics: Arc<Metrics>,
    stop: Arc<Stop>,
    runtime: tokio::runtime::Handle,
    /// `None` once the source is done: the sink then ends.
    to_sink: Option<mpsc::Sender<Batch>>,
    acks: std_mpsc::Receiver<Ack>,
    /// Delivered batches, emptied, to fill again.
    spare: Vec<Batch>,
    /// When the last record arrived (a quiet topic gets its roll-up sums).
    last_record: Option<Instant>,
    revoked: Vec<Slot>,
    paused: bool,
    /// Commit positions that moved, reused between calls.
    advanced: Vec<(Slot, i64)>,
}

impl SourceStage {
    /// Must be called on the tokio runtime the sink stage runs on.
    pub(crate) fn new(
        source: Source,
        (loader, transformer, enricher): (Arc<Loader>, Transformer, Option<Enricher>),
        settings: BatchSettings,
        rollup: Option<rollup::Settings>,
        keep_letters: bool,
        common: Common,
        ends: SourceEnds,
    ) -> Self {
        SourceStage {
            source,
            tracker: Tracker::default(),
            loader,
            transformer,
            enricher,
            rollup: rollup.map(rollup_feeder),
            settings,
            keep_letters,
            metrics: common.metrics,
            stop: common.stop,
            runtime: tokio::runtime::Handle::current(),
            to_sink: Some(ends.batches),
            acks: ends.acks,
            spare: Vec::new(),
            last_record: None,
            revoked: Vec::new(),
            paused: false,
            advanced: Vec::new(),
        }
    }

    /// Until a stop is requested and everything read went to the sink;
    /// then wait for the sink's last acks and commit.
    pub(crate) fn run(mut self) {
        self.pump();
        self.finish();
    }

    fn pump(&mut self) {
        let mut chunk = Chunk::default();
        let mut batch = self.new_batch();
        let mut outbox: Option<Batch> = None;
        let mut errors = ErrorLog::default();
        loop {
            let stopping = self.stop.is_requested();
            if self.take_acks() {
                chunk.clear();
                batch.clear();
                outbox = None;
                self.set_paused(false);
            }
            if let Some(b) = outbox.take() {
                match self.hand_over(b) {
                    HandOver::Sent => self.set_paused(false),
                    HandOver::Busy(b) => {
                        outbox = Some(*b);
                        self.set_paused(true);
                    }
                    HandOver::Closed => return,
                }
            }
            if outbox.is_some() {
                self.wait_for_sink(&mut chunk, stopping);
                continue;
            }
            self.forget_revoked();
            self.write_rollup(&mut batch, stopping);
            if stopping && chunk.is_empty() && batch.is_empty() {
                return;
            }
            self.swap_at_boundary(&mut batch);
            if chunk.is_empty() && !stopping {
                self.poll(&mut chunk, &batch);
                // A module loaded during the wait runs on what ended it.
                self.swap_at_boundary(&mut batch);
            }
            if !chunk.is_empty() {
                self.last_record = Some(Instant::now());
                self.forget_revoked();
                self.transform_chunk(&chunk, &mut batch, &mut errors);
                self.pass_markers(&mut chunk);
                chunk.clear();
                self.write_rollup(&mut batch, false);
            } else if !chunk.markers.is_empty() {
                self.pass_markers(&mut chunk);
            }
            let due = batch
                .due_at(self.settings.max_age)
                .is_some_and(|d| d <= Instant::now());
            if !batch.is_empty() && (stopping || due || batch.is_full(self.settings.max_samples)) {
                let next = self.new_batch();
                outbox = Some(std::mem::replace(&mut batch, next));
            }
        }
    }

    /// Act on what the sink stage reported, in its order. Returns whether
    /// it asked to read everything again (the caller drops what it built).
    fn take_acks(&mut self) -> bool {
        let mut rewound = false;
        let mut released = false;
        while let Ok(ack) = self.acks.try_recv() {
            match ack {
                Ack::Release(holds) => {
                    self.release(&holds);
                    released = true;
                }
                Ack::Rewind => {
                    // What was durable before the restart is stored first.
                    if std::mem::take(&mut released) {
                        self.store_advanced();
                    }
                    self.read_again();
                    rewound = true;
                }
                Ack::Reuse(batch) => self.spare.push(*batch),
            }
        }
        // One store for all the acks taken: each is a call into librdkafka.
        if released {
            self.store_advanced();
        }
        rewound
    }

    /// The last batch is with the sink: close the channel (the sink ends
    /// once it has sent what it holds and waited, within SHUTDOWN_TIMEOUT,
    /// for it to be durable), release what it reports until it is gone,
    /// and commit.
    fn finish(&mut self) {
        self.to_sink = None;
        while let Ok(ack) = self.acks.recv() {
            match ack {
                Ack::Release(holds) => {
                    self.release(&holds);
                    self.store_advanced();
                }
                // Nothing is read again at a stop: whatever the store may
                // have lost stays uncommitted for the next run.
                Ack::Rewind => self.forget_all(),
                Ack::Reuse(_) => {}
            }
        }
        match self.source.commit() {
            Ok(()) => tracing::info!("offsets committed"),
            Err(e) => {
                tracing::warn!(error = %e, "final offset commit failed; uncommitted records will be read again")
            }
        }
    }

    /// What an accepted (or dealt-with) batch held may now be committed
    /// (once [`store_advanced`](Self::store_advanced) stores it).
    fn release(&mut self, (holds, releases): &Holds) {
        for &hold in holds {
            self.tracker.release(hold);
        }
        for &(hold, last) in releases {
            self.tracker.release_fenced(hold, last);
        }
    }

    /// Store the commit positions that moved (librdkafka commits them).
    fn store_advanced(&mut self) {
        self.advanced.clear();
        self.tracker.advanced(&mut self.advanced);
        self.metrics
            .offsets
            .uncommitted
            .set(self.tracker.uncommitted());
        self.source.store(&self.advanced);
    }

    /// Pause fetching while the sink is behind, resume once it caught up.
    fn set_paused(&mut self, pause: bool) {
        if self.paused == pause {
            return;
        }
        self.paused = pause;
        if pause {
            self.source.pause();
            tracing::info!("sink is behind; fetching paused");
        } else {
            self.source.resume();
            tracing::info!("sink caught up; fetching resumed");
        }
    }

    /// While a batch waits for the sink: paused partitions deliver nothing,
    /// but polling keeps the consumer in its group; anything already
    /// fetched is kept.
    fn wait_for_sink(&mut self, chunk: &mut Chunk, stopping: bool) {
        if stopping {
            std::thread::sleep(Duration::from_millis(20));
        } else {
            self.source.poll_into(chunk, MAX_CHUNK, BUSY_POLL);
        }
    }

    /// Wait for records no longer than the open batch may still wait, and
    /// long with nothing open.
    fn poll(&mut self, chunk: &mut Chunk, batch: &Batch) {
        let cells = self
            .rollup
            .as_ref()
            .is_some_and(|s| s.rollup.open_cells() > 0);
        let longest = if !batch.is_empty() || cells {
            BUSY_POLL
        } else if self.tracker.uncommitted() > 0 {
            ACK_POLL
        } else {
            IDLE_POLL
        };
        let max_age = self.settings.max_age;
        let wait = batch.due_at(max_age).map_or(longest, |due| {
            due.saturating_duration_since(Instant::now()).min(longest)
        });
        let room = chunk_room(batch, self.settings.max_samples, MAX_CHUNK);
        self.source.poll_into(chunk, room, wait);
    }

    /// Swap in a reloaded module between batches; while one waits, the open
    /// batch is sent at once so the swap does not wait for it to fill.
    fn swap_at_boundary(&mut self, batch: &mut Batch) {
        if batch.is_empty() {
            self.transformer.swap_if_pending(&self.loader);
        } else if self.loader.has_pending() {
            batch.make_due(self.settings.max_age);
        }
    }

    /// Give a batch to the sink. A busy sink gets a second to make room
    /// before the caller pauses the consumer: a pause drops what librdkafka
    /// prefetched and a resume must fetch it again (pausing on every full
    /// channel cut throughput a hundredfold in the end-to-end bench).
    fn hand_over(&self, b: Batch) -> HandOver {
        let Some(tx) = &self.to_sink else {
            return HandOver::Closed;
        };
        let samples = b.out.samples.len() as i64;
        match tx.try_send(b) {
            Ok(()) => {}
            Err(TrySendError::Closed(_)) => return HandOver::Closed,
            Err(TrySendError::Full(b)) => {
                let room = self.runtime.block_on(async {
                    tokio::time::timeout(WAIT_BEFORE_PAUSE, tx.reserve()).await
                });
                match room {
                    Ok(Ok(permit)) => permit.send(b),
                    Ok(Err(_closed)) => return HandOver::Closed,
                    Err(_elapsed) => return HandOver::Busy(Box::new(b)),
                }
            }
        }
        self.metrics.batches_in_flight.inc();
        self.metrics.samples_in_flight.add(samples);
        HandOver::Sent
    }

    fn transform_chunk(&mut self, chunk: &Chunk, batch: &mut Batch, errors: &mut ErrorLog) {
        self.hold(chunk, batch);
        self.transformer.begin_chunk();
        let clock = WallClock::read(self.settings.max_future_skew);
        let records = match &mut self.enricher {
            Some(enricher) => {
                self.transformer.serve(enricher.refresh());
                enricher.enrich(chunk.all())
            }
            None => chunk.all(),
        };
        match &mut self.rollup {
            None => event_time::run_checked(&mut self.transformer, records, &mut batch.out, clock),
            Some(feeder) => {
                let source = &self.source;
                let located = rollup::Located {
                    records,
                    positions: &chunk.positions,
                };
                let counts = feeder.add_chunk(
                    &mut self.transformer,
                    located,
                    |slot| source.place(slot).1,
                    &mut self.tracker,
                    &mut batch.out.errors,
                    clock,
                );
                self.metrics.rollup.late_samples.inc_by(counts.late);
            }
        }
        if let Some(enricher) = &mut self.enricher {
            self.transformer.take_lookups(enricher.lookup_counts());
            enricher.count();
        }
        if let Some(rollback) = self.transformer.take_rolled_back() {
            self.loader.rolled_back(&rollback);
        }
        if self.transformer.take_interrupted() {
            self.pin(chunk);
        }
        reject_undecodable(chunk, &mut batch.out.errors);
        self.count_rejected(chunk, batch, errors);
        keep_for_letters(chunk, batch);
        batch.add_records(chunk.len());
    }

    /// Count, log and keep for dead letters the chunk's rejected records.
    fn count_rejected(&self, chunk: &Chunk, batch: &mut Batch, errors: &mut ErrorLog) {
        // A module may report a record twice or out of order; dead letters
        // are matched to records in order, once each.
        batch.out.errors.sort_by_key(|e| e.index);
        batch.out.errors.dedup_by_key(|e| e.index);
        let first = batch.records as u32;
        batch.rejected += batch.out.errors.len() as u64;
        for e in batch.out.errors.drain(..) {
            self.metrics.record_error(&e.error.reason, 1);
            let (slot, offset) = chunk.positions[e.index as usize];
            let source = &self.source;
            errors.log(
                &e.error.reason,
                &e.error.detail,
                || source.place(slot),
                offset,
            );
            if let Some(letters) = &mut batch.letters {
                letters.rejected.push((
                    first + e.index,
                    e.error.reason.into_owned(),
                    e.error.detail,
                ));
            }
        }
    }

    /// The batch holds the first record of each partition it takes records
    /// from, until it is accepted.
    fn hold(&mut self, chunk: &Chunk, batch: &mut Batch) {
        let mut last = None;
        for &(slot, offset) in &chunk.positions {
            if last != Some(slot) && !batch.holds_partition(slot, &self.tracker) {
                batch.holds.push(self.tracker.hold(slot, offset));
            }
            last = Some(slot);
            self.tracker.read(slot, offset);
        }
        self.metrics
            .offsets
            .uncommitted
            .set(self.tracker.uncommitted());
    }

    /// pmacct's markers read with the chunk: nothing to transform, but read.
    /// Noted after the chunk's holds, so their offsets are committed once
    /// the records before them are, and stored now: a `purge_close` ends
    /// each purge, and nothing may come after it for a while.
    fn pass_markers(&mut self, chunk: &mut Chunk) {
        for &(slot, offset) in &chunk.markers {
            self.tracker.read(slot, offset);
        }
        chunk.markers.clear();
        self.store_advanced();
    }

    /// A shutdown cut the chunk's transform short: some of its records
    /// yielded nothing. Hold each partition's first record of the chunk for
    /// good, so the commit position stays before them and the next run
    /// reads them again (what the chunk did yield is then written twice,
    /// the same samples, which deduplication merges).
    fn pin(&mut self, chunk: &Chunk) {
        let mut pinned: Vec<Slot> = Vec::new();
        for &(slot, offset) in &chunk.positions {
            if !pinned.contains(&slot) {
                pinned.push(slot);
                self.tracker.hold(slot, offset);
            }
        }
        tracing::warn!(
            records = chunk.len(),
            "shutdown during a faulting chunk: its records stay uncommitted and are read again at the next start"
        );
    }

    /// Put what the roll-up has to write into the batch: final slots always;
    /// with interim writes, every changed sum when the topic went quiet or
    /// the host stops.
    fn write_rollup(&mut self, batch: &mut Batch, stopping: bool) {
        let Some(feeder) = &mut self.rollup else {
            return;
        };
        let rollup = &mut feeder.rollup;
        let counts = rollup.write_due(&mut batch.out.samples, &mut batch.releases, Instant::now());
        let mut written = counts.written;
        let max_age = self.settings.max_age;
        let quiet = self.last_record.is_some_and(|t| t.elapsed() >= max_age);
        // Without interim writes an open slot stays unwritten (and its
        // records uncommitted) until it is final, also at a stop.
        let flush = rollup.interim() && (quiet || stopping) && rollup.has_changes();
        if flush {
            written += rollup.write_open(&mut batch.out.samples);
        }
        if written > 0 {
            batch.start_clock();
        }
        if flush {
            // Sent now, not a batch period later.
            batch.make_due(max_age);
        }
        let m = &self.metrics.rollup;
        m.cells_written.inc_by(written);
        m.early_writes.inc_by(counts.early);
        m.open_cells.set(rollup.open_cells() as i64);
    }

    /// VictoriaMetrics may have lost what it accepted: read every partition
    /// again from its commit position, forgetting what was read since (the
    /// caller drops the batches it went into; the roll-up state is dropped
    /// here; acks still on the way hold offsets of the old epoch and are
    /// ignored).
    fn read_again(&mut self) {
        for (slot, position) in self.tracker.positions() {
            self.source.seek(slot, position);
            self.forget(slot);
        }
    }

    /// Forget every partition's holds and roll-up state (at a stop: no
    /// seek, nothing is read again).
    fn forget_all(&mut self) {
        for (slot, _) in self.tracker.positions() {
            self.forget(slot);
        }
    }

    fn forget(&mut self, slot: Slot) {
        self.tracker.reset(slot);
        if let Some(feeder) = &mut self.rollup {
            feeder.rollup.forget(slot);
        }
    }

    /// Drop what was kept for partitions this consumer lost.
    fn forget_revoked(&mut self) {
        let mut revoked = std::mem::take(&mut self.revoked);
        self.source.take_revoked(&mut revoked);
        for &slot in &revoked {
            self.forget(slot);
        }
        revoked.clear();
        self.revoked = revoked;
    }

    fn new_batch(&mut self) -> Batch {
        let mut batch = self.spare.pop().unwrap_or_else(|| {
            Batch::new(self.settings.max_samples as usize * 320, self.keep_letters)
        });
        batch.sums = self.rollup.is_some();
        batch
    }
}

fn rollup_feeder(settings: rollup::Settings) -> rollup::Feeder {
    tracing::info!(
        ?settings,
        "roll-up on: samples of one series and interval are summed"
    );
    rollup::Feeder::new(rollup::Rollup::new(settings))
}

/// With a dead-letter topic, the batch keeps its records as they came.
fn keep_for_letters(chunk: &Chunk, batch: &mut Batch) {
    if let Some(letters) = &mut batch.letters {
        letters.records.extend(chunk.all());
        letters.positions.extend_from_slice(&chunk.positions);
        letters.indices.extend_from_slice(&chunk.indices);
    }
}

/// Records the source could not read (`Chunk::undecodable`) are rejected
/// with its reason, whatever the module made of their raw bytes.
fn reject_undecodable(chunk: &Chunk, errors: &mut Vec<IndexedError>) {
    if chunk.undecodable.is_empty() {
        return;
    }
    errors.retain(|e| !chunk.undecodable.iter().any(|(i, _)| *i == e.index));
    errors.extend(chunk.undecodable.iter().map(|(index, why)| IndexedError {
        index: *index,
        error: RecordError::new(crate::avro::INVALID, why.clone()),
    }));
}

/// Rate-limited log of rejected records: the first of each reason at once,
/// then one line per reason per interval with how many were not shown.
#[derive(Default)]
struct ErrorLog {
    by_reason: HashMap<String, Throttle>,
}

impl ErrorLog {
    /// `place` gives the record's topic and partition, looked up only when
    /// a line is written.
    fn log(
        &mut self,
        reason: &str,
        detail: &str,
        place: impl FnOnce() -> (Arc<str>, i32),
        offset: i64,
    ) {
        // No allocation per record: a reason's key is made once.
        let (first, admitted) = match self.by_reason.get_mut(reason) {
            Some(throttle) => (false, throttle.admit()),
            None => {
                let mut throttle = Throttle::new(1, ERROR_LOG_EVERY);
                let admitted = throttle.admit();
                self.by_reason.insert(reason.to_string(), throttle);
                (true, admitted)
            }
        };
        let Some(more_since_last_line) = admitted else {
            return;
        };
        let (topic, partition) = place();
        let message = if first {
            "record rejected (further ones with this reason: one line per 10 s)"
        } else {
            "record rejected"
        };
        tracing::warn!(
            reason,
            topic = &*topic,
            partition,
            offset,
            detail,
            more_since_last_line,
            "{message}"
        );
    }
}
