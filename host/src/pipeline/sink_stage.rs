//! The sink's side of the pipeline, on tokio: batches from the channel are
//! sent, several at once, each until the store accepts it or refuses it for
//! good; what they held is released, by an [`Ack`] to the source thread,
//! once it is durable.

use std::collections::VecDeque;
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::channels::{Ack, SinkEnds};
use super::Common;
use crate::batch::Batch;
use crate::dlq::{DeadLetters, Letter, Origin};
use crate::durability::{Accepted, Due, Window};
use crate::metrics::Metrics;
use crate::sink::{EncodeError, NotDelivered, Request, Sink};
use crate::stop::{Deadline, Stop};

/// When an accepted batch's offsets may be committed, and how long a stop
/// waits for the store.
pub struct DeliverySettings {
    /// `0`: commit on acceptance.
    pub durable_after: Duration,
    /// The store's status page (`/metrics`), read to tell its runs apart
    /// for the durability window; `None` with no window.
    pub status_url: Option<reqwest::Url>,
    pub max_in_flight: usize,
    pub shutdown_timeout: Duration,
}

/// The sink's side of the pipeline.
pub(crate) struct SinkStage {
    sink: Arc<Sink>,
    window: Window,
    dlq: Option<Arc<DeadLetters>>,
    metrics: Arc<Metrics>,
    stop: Arc<Stop>,
    /// SHUTDOWN_TIMEOUT.
    grace: Duration,
    max_in_flight: usize,
    batches: mpsc::Receiver<Batch>,
    /// To the source thread, which owns the offsets.
    acks: std_mpsc::Sender<Ack>,
}

/// A delivery's end: the batch back, and the store's answer when it stored
/// something (`None`: nothing to store, or refused and dead-lettered).
type Delivered = (Batch, Result<Option<Accepted>, NotDelivered>);
type Delivery = JoinHandle<Delivered>;

/// How often accepted batches are checked for having become durable.
const DURABLE_TICK: Duration = Duration::from_millis(250);

impl SinkStage {
    /// `window` follows the store's runs (see [`crate::durability`]).
    pub(crate) fn new(
        sink: Arc<Sink>,
        window: Window,
        dlq: Option<Arc<DeadLetters>>,
        settings: &DeliverySettings,
        common: Common,
        ends: SinkEnds,
    ) -> Self {
        SinkStage {
            sink,
            window,
            dlq,
            metrics: common.metrics,
            stop: common.stop,
            grace: settings.shutdown_timeout,
            max_in_flight: settings.max_in_flight,
            batches: ends.batches,
            acks: ends.acks,
        }
    }

    /// Send up to `max_in_flight` batches at once; release what each held
    /// once it is accepted and durable. An abandoned batch never releases,
    /// so nothing after it is committed. Ends when the source closed the
    /// channel and everything taken is dealt with; returns how many batches
    /// were abandoned at shutdown.
    pub(crate) async fn run(mut self) -> usize {
        let mut in_flight: VecDeque<Delivery> = VecDeque::new();
        let mut open = true;
        let mut abandoned = 0;
        let mut tick = tokio::time::interval(DURABLE_TICK);
        loop {
            let can_take = open && in_flight.len() < self.max_in_flight;
            let waiting = !in_flight.is_empty();
            if !can_take && !waiting {
                self.wait_durable().await;
                return abandoned;
            }
            tokio::select! {
                // Finish the oldest first: its offsets come first.
                biased;
                done = async { in_flight.front_mut().expect("a batch in flight").await }, if waiting => {
                    in_flight.pop_front();
                    abandoned += self.finished(done);
                }
                next = self.batches.recv(), if can_take => match next {
                    Some(batch) => in_flight.push_back(tokio::spawn(deliver(
                        self.sink.clone(),
                        self.dlq.clone(),
                        self.metrics.clone(),
                        batch,
                        Deadline::new(self.stop.clone(), self.grace),
                    ))),
                    None => open = false,
                },
                _ = tick.tick(), if !self.window.is_empty() => self.check_durable(),
            }
        }
    }

    /// A delivery ended: its batch goes into the durability window (or is
    /// released) and back for reuse. Returns 1 if it was abandoned.
    fn finished(&mut self, done: Result<Delivered, tokio::task::JoinError>) -> usize {
        self.metrics.batches_in_flight.dec();
        if let Ok((batch, _)) = &done {
            self.metrics
                .samples_in_flight
                .sub(batch.out.samples.len() as i64);
        }
        match done {
            Ok((mut batch, Ok(answer))) => {
                let holds = (
                    std::mem::take(&mut batch.holds),
                    std::mem::take(&mut batch.releases),
                );
                let now_free = match answer {
                    Some(answer) => self.window.accepted(holds, answer),
                    None => Some(holds),
                };
                if let Some(holds) = now_free {
                    self.tell(Ack::Release(holds));
                }
                self.metrics
                    .durability
                    .waiting
                    .set(self.window.len() as i64);
                batch.clear();
                self.tell(Ack::Reuse(Box::new(batch)));
                0
            }
            Ok((batch, Err(e))) => {
                tracing::error!(error = %e, records = batch.records, "batch abandoned at shutdown; its records stay uncommitted");
                1
            }
            Err(e) => {
                tracing::error!(error = %e, "a send task failed; its records stay uncommitted");
                1
            }
        }
    }

    fn check_durable(&mut self) {
        match self.window.due() {
            Due::Durable(list) => list
                .into_iter()
                .for_each(|holds| self.tell(Ack::Release(holds))),
            Due::Rewind => self.tell(Ack::Rewind),
        }
        self.metrics
            .durability
            .waiting
            .set(self.window.len() as i64);
    }

    /// The source thread ends only after this stage, so it hears every ack.
    fn tell(&self, ack: Ack) {
        // Gone only if the source thread panicked: nothing is released then.
        let _ = self.acks.send(ack);
    }

    /// At shutdown: what the store accepted is released once it is durable,
    /// as at any other time: the window passed and a later status read
    /// shows the same run (within SHUTDOWN_TIMEOUT; past it, the rest stays
    /// uncommitted and is delivered again by the next run). There is no
    /// shortcut: VictoriaMetrics' `/internal/force_flush` makes data
    /// searchable, not durable (1.112 SIGKILLed seconds after it lost
    /// samples a host had committed).
    async fn wait_durable(&mut self) {
        if self.window.is_empty() {
            return;
        }
        tracing::info!(
            batches = self.window.len(),
            "waiting for the last accepted batches to be durable (VM_DURABLE_AFTER, within SHUTDOWN_TIMEOUT)"
        );
        while !self.window.is_empty() && !self.stop.past(self.grace) {
            tokio::time::sleep(DURABLE_TICK).await;
            self.check_durable();
        }
        if !self.window.is_empty() {
            tracing::warn!(
                batches = self.window.len(),
                "SHUTDOWN_TIMEOUT passed before the last accepted batches were durable; their records stay uncommitted and are delivered again at the next start"
            );
        }
    }
}

/// Send one batch until accepted, refused for good, or abandoned at
/// shutdown; dead-letter what must be; hand the batch back for its offsets
/// and the reuse of its buffers. `Ok` means every record is dealt with.
async fn deliver(
    sink: Arc<Sink>,
    dlq: Option<Arc<DeadLetters>>,
    metrics: Arc<Metrics>,
    mut batch: Batch,
    deadline: Deadline,
) -> Delivered {
    let mut refused = None;
    let mut answer = None;
    if !batch.out.samples.is_empty() {
        let result = match encode(&sink, &metrics, &mut batch).await {
            Ok(request) => sink.deliver(&request, &deadline).await,
            Err(e) => Err(NotDelivered::Refused(e.into())),
        };
        match result {
            Ok(accepted) => answer = Some(accepted),
            Err(e) => {
                let Some(reason) = e.reason() else {
                    return (batch, Err(e));
                };
                if batch.sums {
                    metrics.rollup_sums_refused(reason, batch.out.samples.len() as u64);
                } else {
                    metrics.record_error(reason, batch.records - batch.rejected);
                }
                refused = Some((reason, e.to_string()));
            }
        }
    }
    let sent = match &dlq {
        Some(dlq) => dead_letter(dlq, &batch, refused, &deadline).await,
        None => Ok(()),
    };
    (batch, sent.map(|()| answer).map_err(NotDelivered::from))
}

/// The batch's request, encoded on the blocking pool (CPU work on the
/// whole batch); the samples go back into the batch, for its dead letters
/// and the reuse of their buffers.
async fn encode(
    sink: &Arc<Sink>,
    metrics: &Metrics,
    batch: &mut Batch,
) -> Result<Request, EncodeError> {
    let samples = std::mem::take(&mut batch.out.samples);
    let encoder = sink.clone();
    let done =
        tokio::task::spawn_blocking(move || (encoder.format().encode(&samples), samples)).await;
    let (encoded, samples) = match done {
        Ok(done) => done,
        Err(e) => return Err(EncodeError::new(format!("encoder task: {e}"))),
    };
    let count = samples.len() as u64;
    batch.out.samples = samples;
    encoded.map(|e| {
        let samples = e.counts.map_or(count, |c| {
            metrics.encoding.merged.inc_by(c.merged);
            c.samples
        });
        Request {
            body: e.body,
            samples,
            raw_len: e.raw_len as u64,
        }
    })
}

/// A refused roll-up batch's sums as the import lines they were, for their
/// dead letters.
#[derive(Default)]
struct Lines {
    text: Vec<u8>,
    ends: Vec<usize>,
}

impl Lines {
    fn of(samples: &pmacct_guest_sdk::SampleSet) -> Self {
        let mut lines = Lines::default();
        for p in 0..samples.len() {
            samples.write_import_lines_of(p..p + 1, &mut lines.text);
            lines.ends.push(lines.text.len());
        }
        lines
    }

    /// Each line, without its line end.
    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .map(|(start, &end)| &self.text[start..end - 1])
    }
}

/// Send a delivered batch's rejected records to the dead-letter topic: the
/// transform's rejections, and every record when VictoriaMetrics refused
/// the batch (`refused`: the reason and why).
async fn dead_letter(
    dlq: &DeadLetters,
    batch: &Batch,
    refused: Option<(&'static str, String)>,
    deadline: &Deadline,
) -> Result<(), crate::dlq::Abandoned> {
    let Some(letters) = &batch.letters else {
        return Ok(());
    };
    // A roll-up batch carries sums: a refusal loses those, not the batch's
    // records (whose values sit in cells written later).
    let (for_records, for_sums) = if batch.sums {
        (None, refused.as_ref())
    } else {
        (refused.as_ref(), None)
    };
    let mut out = Vec::new();
    let sums = match for_sums {
        Some(_) => Lines::of(&batch.out.samples),
        None => Lines::default(),
    };
    let mut rejected = letters.rejected.iter().peekable();
    for (i, payload) in letters.records.all().iter().enumerate() {
        let (slot, offset) = letters.positions[i];
        let (reason, detail) = match rejected.peek() {
            Some((idx, reason, detail)) if *idx as usize == i => {
                rejected.next();
                (reason.as_str(), detail.as_str())
            }
            _ => match for_records {
                Some((reason, why)) => (*reason, why.as_str()),
                None => continue,
            },
        };
        out.push(Letter {
            payload,
            reason,
            detail,
            origin: Origin::Record {
                slot,
                offset,
                index: letters.indices[i],
            },
        });
    }
    if let Some((reason, why)) = for_sums {
        out.extend(sums.iter().map(|payload| Letter {
            payload,
            reason,
            detail: why,
            origin: Origin::Sum,
        }));
    }
    if out.is_empty() {
        return Ok(());
    }
    dlq.send(&out, deadline).await
}
