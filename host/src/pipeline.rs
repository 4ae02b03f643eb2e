//! Wires the stages and runs them until a signal stops them:
//!
//! ```text
//! Kafka ─► source ─► transform ─► batch ─►(bounded channel)─► sink ─► VictoriaMetrics
//!            ▲                                                  │
//!            └──────────── store offsets after 2xx ◄────────────┘
//! ```
//!
//! Source, transform and batching run on one thread: wasmtime calls are
//! synchronous CPU work and keep the async reactor free for HTTP. The channel
//! to the sink is small; when it stays full for a second the consumer pauses
//! its partitions (and keeps polling, so it stays in its group) instead of
//! buffering.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;

use crate::admin::{self, AdminState};
use crate::batch::{chunk_room, Batch};
use crate::config::{OutputKind, RunConfig};
use crate::dlq::{DeadLetters, Letter};
use crate::durability::{Due, Holds, Restarts, Window};
use crate::error::ConfigError;
use crate::metrics::Metrics;
use crate::offsets::Tracker;
use crate::rollup::{self, Rollup};
use crate::sink::{Auth, EncodeError, NotDelivered, Request, Sink, SinkSettings};
use crate::source::{Chunk, Source, SourceSettings};
use crate::stop::Stop;
use crate::throttle::Throttle;
use crate::transform::{self, TransformHandle, Transformer, WasmRuntime};

/// Records per transform call, at most.
const MAX_CHUNK: usize = 1024;
/// Longest wait in `poll` while a batch is open or nothing arrives, so the
/// batch timer, a stop request and a reloaded module waiting to swap in are
/// noticed promptly (librdkafka's poll cannot be woken; 40 wake-ups a
/// second cost an idle host well under 1 % of a core).
const IDLE_POLL: Duration = Duration::from_millis(25);
/// Batches built and not yet accepted, beyond the one being sent.
const QUEUED_BATCHES: usize = 2;
/// How long a full batch waits for the sink before the consumer pauses.
const WAIT_BEFORE_PAUSE: Duration = Duration::from_secs(1);
/// One log line per error reason per this interval (the counter counts all).
const ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// Run the pipeline until `stop` is requested, then drain: flush the open
/// batch, wait (up to `SHUTDOWN_TIMEOUT`) for VictoriaMetrics to accept what
/// is in flight, commit, leave the group.
pub async fn run(cfg: RunConfig, stop: Arc<Stop>) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let (handle, transformer) = load_transform(&cfg, &metrics, &stop)?;
    let _watcher = transform::watch(handle.clone())?;
    let kafka_properties = cfg.kafka_properties().map_err(ConfigError)?;
    let sink = Arc::new(Sink::new(sink_settings(&cfg)?, metrics.clone())?);
    check_store(&sink, &cfg, &metrics).await?;
    let source = connect_source(&cfg, &kafka_properties, &metrics)?;
    let dlq = dead_letters(&cfg, &kafka_properties, &source, &metrics)?;
    let mut tasks = vec![
        start_admin(&cfg, &metrics, &handle, &stop).await?,
        tokio::spawn(sink.clone().watch_recovery()),
    ];

    let (tx, rx) = mpsc::channel::<Batch>(QUEUED_BATCHES);
    let (recycle_tx, recycle_rx) = std_mpsc::channel::<Batch>();
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let rewind = Arc::new(AtomicBool::new(false));
    let restarts = Arc::new(Restarts::default());
    if !cfg.vm_durable_after.is_zero() {
        tasks.push(tokio::spawn(sink.clone().watch_restarts(restarts.clone())));
    }
    let stage = SourceStage {
        tracker: tracker.clone(),
        rewind: rewind.clone(),
        rollup: rollup_stage(&cfg),
        last_record: None,
        revoked: Vec::new(),
        runtime: tokio::runtime::Handle::current(),
        keep_letters: dlq.is_some(),
        source: source.clone(),
        handle,
        transformer,
        metrics: metrics.clone(),
        stop: stop.clone(),
        max_samples: cfg.vm_max_samples_per_send,
        max_age: cfg.vm_max_time_to_send,
        tx,
        recycled: recycle_rx,
    };
    let source_thread = std::thread::Builder::new().name("source".into());
    let source_thread = source_thread.spawn(move || stage.run())?;

    tracing::info!(url = %sink.url(), max_samples = cfg.vm_max_samples_per_send, max_time_s = cfg.vm_max_time_to_send.as_secs_f64(), "pipeline running");
    let sink_stage = SinkStage {
        tracker,
        window: Window::new(cfg.vm_durable_after, restarts),
        rewind,
        sink,
        dlq,
        source: source.clone(),
        metrics,
        stop,
        grace: cfg.shutdown_timeout,
        recycle: recycle_tx,
        max_in_flight: cfg.vm_max_in_flight as usize,
    };
    finish(source_thread, &source, tasks, sink_stage.run(rx).await).await
}

/// The transform the pipeline starts with: `TRANSFORM_PATH`, or the
/// embedded default rules.
fn load_transform(
    cfg: &RunConfig,
    metrics: &Arc<Metrics>,
    stop: &Stop,
) -> anyhow::Result<(Arc<TransformHandle>, Transformer)> {
    let runtime = WasmRuntime::new(cfg.limits.limits())?;
    let init = cfg.rules.transform_init().map_err(anyhow::Error::msg)?;
    let handle = TransformHandle::new(runtime, cfg.transform_path.clone(), init, metrics.clone());
    let mut transformer = handle
        .load_initial(cfg.transform_engine)
        .with_context(|| match &cfg.transform_path {
            Some(p) => format!("TRANSFORM_PATH: cannot load {}", p.display()),
            None => "cannot load the embedded default transform".to_string(),
        })?;
    transformer.set_interrupt(stop.flag());
    tracing::info!(source = %transformer.info().source, sha256 = %transformer.info().sha256, "transform loaded");
    Ok((handle, transformer))
}

fn connect_source(
    cfg: &RunConfig,
    kafka_properties: &[(String, String, String)],
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Arc<Source>> {
    let settings = SourceSettings {
        brokers: cfg.kafka_bootstrap_servers.as_deref().unwrap_or_default(),
        topics: &cfg.topics(),
        group: &cfg.kafka_consumer_group_id,
        session_timeout_ms: cfg.kafka_session_timeout_ms,
        properties: kafka_properties,
    };
    Ok(Arc::new(Source::connect(&settings, metrics.clone())?))
}

fn dead_letters(
    cfg: &RunConfig,
    kafka_properties: &[(String, String, String)],
    source: &Source,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Option<Arc<DeadLetters>>> {
    let Some(topic) = cfg
        .kafka_dlq_topic
        .as_deref()
        .filter(|t| !t.trim().is_empty())
    else {
        return Ok(None);
    };
    tracing::info!(topic, "rejected records go to the dead-letter topic");
    Ok(Some(Arc::new(DeadLetters::new(
        cfg.kafka_bootstrap_servers.as_deref().unwrap_or_default(),
        topic,
        kafka_properties,
        source.slots(),
        metrics.clone(),
    )?)))
}

async fn start_admin(
    cfg: &RunConfig,
    metrics: &Arc<Metrics>,
    handle: &Arc<TransformHandle>,
    stop: &Arc<Stop>,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = admin::bind(cfg.admin_addr()).await?;
    tracing::info!(addr = %cfg.admin_addr(), "admin HTTP listening (/metrics /health /health/live /health/ready /reload)");
    let router = admin::router(AdminState {
        metrics: metrics.clone(),
        transform: handle.clone(),
        stop: stop.clone(),
        token: cfg
            .admin_token
            .as_deref()
            .filter(|t| !t.trim().is_empty())
            .map(|t| Arc::from(t.trim())),
    });
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "admin HTTP server stopped");
        }
    }))
}

fn rollup_stage(cfg: &RunConfig) -> Option<rollup::Stage> {
    cfg.rollup.settings().map(|settings| {
        tracing::info!(
            ?settings,
            "roll-up on: samples of one series and time slot are summed"
        );
        rollup::Stage::new(Rollup::new(settings))
    })
}

/// After the sink stage ended: the source thread joined, the last commit,
/// the helper tasks stopped, and whether anything was left undelivered.
async fn finish(
    source_thread: std::thread::JoinHandle<()>,
    source: &Source,
    tasks: Vec<JoinHandle<()>>,
    undelivered: usize,
) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || source_thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the source thread panicked"))?;
    match source.commit() {
        Ok(()) => tracing::info!("offsets committed"),
        Err(e) => {
            tracing::warn!(error = %e, "final offset commit failed; uncommitted records will be read again")
        }
    }
    tasks.iter().for_each(JoinHandle::abort);
    if undelivered > 0 {
        anyhow::bail!(
            "stopped with {undelivered} batch(es) not accepted by VictoriaMetrics within SHUTDOWN_TIMEOUT; \
             their records are uncommitted and will be read again"
        );
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

fn sink_settings(cfg: &RunConfig) -> Result<SinkSettings, ConfigError> {
    let auth = match (
        &cfg.vm_username,
        &cfg.vm_bearer_token,
        &cfg.vm_bearer_token_file,
    ) {
        (Some(user), _, _) => Auth::Basic {
            user: user.clone(),
            password: cfg.vm_password.clone(),
        },
        (None, Some(token), _) => Auth::Bearer(token.clone()),
        (None, None, Some(path)) => Auth::BearerFile(path.clone()),
        (None, None, None) => Auth::None,
    };
    Ok(SinkSettings {
        url: cfg.sink_url().map_err(ConfigError)?,
        verify_tls: cfg.vm_ssl_verify,
        ca_file: cfg.vm_ca_file.clone(),
        timeout: cfg.vm_request_timeout,
        max_retries: cfg.vm_max_retries,
        auth,
        format: cfg.format().map_err(ConfigError)?,
    })
}

/// An empty batch is a no-op for the store: a 4xx here means the URL or
/// the credentials are wrong, which would otherwise stall the pipeline in
/// retries. A store that is down is waited for.
async fn check_store(sink: &Sink, cfg: &RunConfig, metrics: &Metrics) -> anyhow::Result<()> {
    let url_setting = match cfg.output {
        OutputKind::VmImport => "VM_URL/VM_IMPORT_PATH",
        OutputKind::RemoteWrite => "REMOTE_WRITE_URL",
    };
    match sink.probe().await {
        Ok(()) => {
            tracing::info!(url = %sink.url(), output = ?cfg.output, "the store accepts writes")
        }
        Err(e) if e.is_auth_error() => {
            return Err(ConfigError(format!(
                "VM_USERNAME/VM_PASSWORD or VM_BEARER_TOKEN(_FILE): {e}"
            ))
            .into());
        }
        Err(e) if e.is_client_error() => {
            return Err(ConfigError(format!("{url_setting}: {e}")).into());
        }
        Err(e) => {
            metrics.victoriametrics_up.set(0);
            tracing::warn!(error = %e, "the store is not reachable yet; batches will wait and be retried")
        }
    }
    Ok(())
}

/// The sink's side of the pipeline.
struct SinkStage {
    tracker: Arc<Mutex<Tracker>>,
    window: Window,
    /// Set when VictoriaMetrics restarted within the window: the source
    /// rewinds to the commit positions.
    rewind: Arc<AtomicBool>,
    sink: Arc<Sink>,
    dlq: Option<Arc<DeadLetters>>,
    source: Arc<Source>,
    metrics: Arc<Metrics>,
    stop: Arc<Stop>,
    grace: Duration,
    recycle: std_mpsc::Sender<Batch>,
    max_in_flight: usize,
}

type Delivery = JoinHandle<(Batch, Result<(), NotDelivered>)>;

/// How often accepted batches are checked for having become durable.
const DURABLE_TICK: Duration = Duration::from_millis(250);

impl SinkStage {
    /// Send up to `max_in_flight` batches at once; release what each held
    /// once it is accepted and durable, and store the commit positions that
    /// moved. An abandoned batch never releases, so nothing after it is
    /// committed. Returns how many batches were abandoned at shutdown.
    async fn run(mut self, mut rx: mpsc::Receiver<Batch>) -> usize {
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
                next = rx.recv(), if can_take => match next {
                    Some(batch) => in_flight.push_back(tokio::spawn(deliver(
                        self.sink.clone(),
                        self.dlq.clone(),
                        self.metrics.clone(),
                        batch,
                        self.stop.clone(),
                        self.grace,
                    ))),
                    None => open = false,
                },
                _ = tick.tick(), if !self.window.is_empty() => self.check_durable(),
            }
        }
    }

    /// A delivery ended: its batch goes into the durability window (or is
    /// released) and back for reuse. Returns 1 if it was abandoned.
    fn finished(
        &mut self,
        done: Result<(Batch, Result<(), NotDelivered>), tokio::task::JoinError>,
    ) -> usize {
        self.metrics.batches_in_flight.dec();
        if let Ok((batch, _)) = &done {
            self.metrics
                .samples_in_flight
                .sub(i64::from(batch.out.samples));
        }
        match done {
            Ok((mut batch, Ok(()))) => {
                let holds = (
                    std::mem::take(&mut batch.holds),
                    std::mem::take(&mut batch.releases),
                );
                if let Some(holds) = self.window.accepted(holds) {
                    self.release(&holds);
                }
                batch.clear();
                let _ = self.recycle.send(batch);
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
        match self.window.due(Instant::now()) {
            Due::Durable(list) => list.iter().for_each(|holds| self.release(holds)),
            Due::Rewind => self.rewind.store(true, Ordering::Release),
        }
    }

    /// At shutdown: what VictoriaMetrics accepted is released once it is
    /// durable: at once if it flushes on request, else when the window
    /// passes (within SHUTDOWN_TIMEOUT).
    async fn wait_durable(&mut self) {
        if self.window.is_empty() {
            return;
        }
        if self.sink.force_flush().await {
            let all = self.window.drain();
            all.iter().for_each(|holds| self.release(holds));
            return;
        }
        while !self.window.is_empty() && !self.stop.past(self.grace) {
            tokio::time::sleep(DURABLE_TICK).await;
            self.check_durable();
        }
    }

    fn release(&self, (holds, releases): &Holds) {
        let mut positions = Vec::new();
        let uncommitted = {
            let mut tracker = self.tracker.lock().unwrap_or_else(PoisonError::into_inner);
            for &hold in holds {
                tracker.release(hold);
            }
            for &(hold, last) in releases {
                tracker.release_fenced(hold, last);
            }
            tracker.advanced(&mut positions);
            tracker.uncommitted()
        };
        self.metrics.offsets.uncommitted.set(uncommitted);
        self.source.store(&positions);
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
    stop: Arc<Stop>,
    grace: Duration,
) -> (Batch, Result<(), NotDelivered>) {
    let mut refused = None;
    if batch.out.samples > 0 {
        let (request, lines) = encode(&sink, &metrics, &mut batch).await;
        let result = match &request {
            Ok(request) => sink.deliver(request, || stop.past(grace)).await,
            Err(e) => Err(NotDelivered::Refused(e.clone().into())),
        };
        // Reuse the lines' buffer: given back by the encoder, or, sent as
        // they were, once the HTTP client let go of them.
        batch.out.body = match (lines, request) {
            (Some(lines), _) => lines,
            (None, Ok(r)) => r.body.try_into_mut().map(Vec::from).unwrap_or_default(),
            (None, Err(_)) => Vec::new(),
        };
        if let Err(e) = result {
            let Some(reason) = e.reason() else {
                return (batch, Err(e));
            };
            metrics.record_error(reason, batch.records - batch.rejected);
            refused = Some((reason, e.to_string()));
        }
    }
    let sent = match &dlq {
        Some(dlq) => dead_letter(dlq, &batch, refused, || stop.past(grace)).await,
        None => Ok(()),
    };
    (batch, sent.map_err(NotDelivered::from))
}

/// The batch's request, and its import lines back when they were encoded
/// (on the blocking pool: CPU work on the whole batch). Lines the format
/// sends as they are move into the request.
async fn encode(
    sink: &Arc<Sink>,
    metrics: &Metrics,
    batch: &mut Batch,
) -> (Result<Request, EncodeError>, Option<Vec<u8>>) {
    let lines = std::mem::take(&mut batch.out.body);
    let raw_len = lines.len() as u64;
    let samples = u64::from(batch.out.samples);
    if sink.format().is_passthrough() {
        let body = bytes::Bytes::from(lines);
        return (
            Ok(Request {
                body,
                samples,
                raw_len,
            }),
            None,
        );
    }
    let encoder = sink.clone();
    let done = tokio::task::spawn_blocking(move || (encoder.format().encode(&lines), lines)).await;
    let (encoded, lines) = match done {
        Ok(done) => done,
        Err(e) => return (Err(EncodeError::new(format!("encoder task: {e}"))), None),
    };
    let request = encoded.map(|e| {
        let samples = e.counts.map_or(samples, |c| {
            metrics.encoding.merged.inc_by(c.merged);
            metrics.encoding.unreadable.inc_by(c.invalid);
            c.samples
        });
        Request {
            body: e.body,
            samples,
            raw_len,
        }
    });
    (request, Some(lines))
}

/// Send a delivered batch's rejected records to the dead-letter topic: the
/// transform's rejections, and every record when VictoriaMetrics refused
/// the batch (`refused`: the reason and why).
async fn dead_letter(
    dlq: &DeadLetters,
    batch: &Batch,
    refused: Option<(&'static str, String)>,
    give_up: impl Fn() -> bool,
) -> Result<(), crate::dlq::Abandoned> {
    let Some(letters) = &batch.letters else {
        return Ok(());
    };
    let mut out = Vec::new();
    let mut rejected = letters.rejected.iter().peekable();
    for i in 0..letters.ends.len() {
        let (slot, offset) = letters.positions[i];
        let (reason, detail) = match rejected.peek() {
            Some((idx, reason, detail)) if *idx as usize == i => {
                rejected.next();
                (reason.as_str(), detail.as_str())
            }
            _ => match &refused {
                Some((reason, why)) => (*reason, why.as_str()),
                None => continue,
            },
        };
        out.push(Letter {
            payload: letters.payload(i),
            reason,
            detail,
            slot,
            offset,
        });
    }
    if out.is_empty() {
        return Ok(());
    }
    dlq.send(&out, give_up).await
}

enum HandOver {
    Sent,
    /// The sink stayed busy; the batch comes back.
    Busy(Box<Batch>),
    /// The sink is gone (shutdown gave up on it).
    Closed,
}

struct SourceStage {
    tracker: Arc<Mutex<Tracker>>,
    rewind: Arc<AtomicBool>,
    rollup: Option<rollup::Stage>,
    /// When the last record arrived (a quiet topic gets its roll-up sums).
    last_record: Option<Instant>,
    revoked: Vec<crate::offsets::Slot>,
    runtime: tokio::runtime::Handle,
    keep_letters: bool,
    source: Arc<Source>,
    handle: Arc<TransformHandle>,
    transformer: Transformer,
    metrics: Arc<Metrics>,
    stop: Arc<Stop>,
    max_samples: u32,
    max_age: Duration,
    tx: mpsc::Sender<Batch>,
    recycled: std_mpsc::Receiver<Batch>,
}

impl SourceStage {
    fn run(mut self) {
        let mut chunk = Chunk::default();
        let mut batch = self.new_batch();
        let mut outbox: Option<Batch> = None;
        let mut paused = false;
        let mut errors = ErrorLog::default();
        loop {
            let stopping = self.stop.is_requested();
            if self.rewind.swap(false, Ordering::AcqRel) {
                self.read_again(&mut chunk, &mut batch);
                outbox = None;
                self.set_paused(&mut paused, false);
            }
            if let Some(b) = outbox.take() {
                match self.hand_over(b) {
                    HandOver::Sent => self.set_paused(&mut paused, false),
                    HandOver::Busy(b) => {
                        outbox = Some(*b);
                        self.set_paused(&mut paused, true);
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
            }
            if !chunk.is_empty() {
                self.last_record = Some(Instant::now());
                self.forget_revoked();
                self.transform_chunk(&chunk, &mut batch, &mut errors);
                chunk.clear();
                self.write_rollup(&mut batch, false);
            }
            let due = batch
                .due_at(self.max_age)
                .is_some_and(|d| d <= Instant::now());
            if !batch.is_empty() && (stopping || due || batch.is_full(self.max_samples)) {
                let next = self.new_batch();
                outbox = Some(std::mem::replace(&mut batch, next));
            }
        }
    }

    /// Pause fetching while the sink is behind, resume once it caught up.
    fn set_paused(&self, paused: &mut bool, pause: bool) {
        if *paused == pause {
            return;
        }
        *paused = pause;
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
    fn wait_for_sink(&self, chunk: &mut Chunk, stopping: bool) {
        if stopping {
            std::thread::sleep(Duration::from_millis(20));
        } else {
            self.source.poll_into(chunk, MAX_CHUNK, IDLE_POLL);
        }
    }

    /// Wait for records no longer than the open batch may still wait.
    fn poll(&self, chunk: &mut Chunk, batch: &Batch) {
        let wait = batch.due_at(self.max_age).map_or(IDLE_POLL, |due| {
            due.saturating_duration_since(Instant::now()).min(IDLE_POLL)
        });
        let room = chunk_room(batch, self.max_samples, MAX_CHUNK);
        self.source.poll_into(chunk, room, wait);
    }

    /// Swap in a reloaded module between batches; while one waits, the open
    /// batch is sent at once so the swap does not wait for it to fill.
    fn swap_at_boundary(&mut self, batch: &mut Batch) {
        if batch.is_empty() {
            self.transformer.swap_if_pending(&self.handle);
        } else if self.handle.has_pending() {
            batch.make_due(self.max_age);
        }
    }

    /// Give a batch to the sink. A busy sink gets a second to make room
    /// before the caller pauses the consumer: a pause drops what librdkafka
    /// prefetched and a resume must fetch it again (pausing on every full
    /// channel cut throughput a hundredfold in the end-to-end bench).
    fn hand_over(&self, b: Batch) -> HandOver {
        let samples = i64::from(b.out.samples);
        match self.tx.try_send(b) {
            Ok(()) => {}
            Err(TrySendError::Closed(_)) => return HandOver::Closed,
            Err(TrySendError::Full(b)) => {
                let room = self.runtime.block_on(async {
                    tokio::time::timeout(WAIT_BEFORE_PAUSE, self.tx.reserve()).await
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
        match &mut self.rollup {
            None => self
                .transformer
                .run(&chunk.bytes, &chunk.ends, &mut batch.out),
            Some(stage) => {
                let source = &self.source;
                let mut tracker = self.tracker.lock().unwrap_or_else(PoisonError::into_inner);
                let counts = stage.add_chunk(
                    &mut self.transformer,
                    chunk,
                    |slot| source.place(slot).1,
                    &mut tracker,
                    &mut batch.out.errors,
                );
                self.metrics.rollup.late_samples.inc_by(counts.late);
            }
        }
        if let Some(rollback) = self.transformer.take_rolled_back() {
            self.handle.rolled_back(&rollback);
        }
        if self.transformer.take_interrupted() {
            self.pin(chunk);
        }
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
        if let Some(letters) = &mut batch.letters {
            let base = letters.payloads.len() as u32;
            letters.payloads.extend_from_slice(&chunk.bytes);
            letters.ends.extend(chunk.ends.iter().map(|e| base + e));
            letters.positions.extend_from_slice(&chunk.positions);
        }
        batch.add_records(chunk.len());
    }

    /// The batch holds the first record of each partition it takes records
    /// from, until it is accepted.
    fn hold(&self, chunk: &Chunk, batch: &mut Batch) {
        let mut tracker = self.tracker.lock().unwrap_or_else(PoisonError::into_inner);
        let mut last = None;
        for &(slot, offset) in &chunk.positions {
            if last != Some(slot) && !batch.holds_partition(slot) {
                batch.holds.push(tracker.hold(slot, offset));
            }
            last = Some(slot);
            tracker.read(slot, offset);
        }
        self.metrics.offsets.uncommitted.set(tracker.uncommitted());
    }

    /// A shutdown cut the chunk's transform short: some of its records
    /// yielded nothing. Hold each partition's first record of the chunk for
    /// good, so the commit position stays before them and the next run
    /// reads them again (what the chunk did yield is then written twice,
    /// the same samples, which deduplication merges).
    fn pin(&self, chunk: &Chunk) {
        let mut tracker = self.tracker.lock().unwrap_or_else(PoisonError::into_inner);
        let mut pinned: Vec<crate::offsets::Slot> = Vec::new();
        for &(slot, offset) in &chunk.positions {
            if !pinned.contains(&slot) {
                pinned.push(slot);
                tracker.hold(slot, offset);
            }
        }
        tracing::warn!(
            records = chunk.len(),
            "shutdown during a faulting chunk: its records stay uncommitted and are read again at the next start"
        );
    }

    /// Put what the roll-up has to write into the batch: final slots always;
    /// every changed sum when the topic went quiet or the host stops.
    fn write_rollup(&mut self, batch: &mut Batch, stopping: bool) {
        let Some(stage) = &mut self.rollup else {
            return;
        };
        let rollup = &mut stage.rollup;
        let counts = rollup.write_due(&mut batch.out.body, &mut batch.releases);
        let mut written = counts.written;
        let quiet = self
            .last_record
            .is_some_and(|t| t.elapsed() >= self.max_age);
        let flush = (quiet || stopping) && rollup.has_changes();
        if flush {
            written += rollup.write_open(&mut batch.out.body);
        }
        if written > 0 {
            batch.out.samples += written as u32;
            batch.start_clock();
        }
        if flush {
            // Sent now, not a batch period later.
            batch.make_due(self.max_age);
        }
        let m = &self.metrics.rollup;
        m.cells_written.inc_by(written);
        m.early_writes.inc_by(counts.early);
        m.open_cells.set(rollup.open_cells() as i64);
    }

    /// VictoriaMetrics may have lost what it accepted: read every partition
    /// again from its commit position, dropping what was read since (the
    /// batches and roll-up state it went into are forgotten; acknowledgements
    /// still on the way belong to the old epoch and are ignored).
    fn read_again(&mut self, chunk: &mut Chunk, batch: &mut Batch) {
        let mut tracker = self.tracker.lock().unwrap_or_else(PoisonError::into_inner);
        for (slot, position) in tracker.positions() {
            self.source.seek(slot, position);
            tracker.reset(slot);
            if let Some(stage) = &mut self.rollup {
                stage.rollup.forget(slot);
            }
        }
        chunk.clear();
        batch.clear();
    }

    /// Drop what was kept for partitions this consumer lost.
    fn forget_revoked(&mut self) {
        self.source.take_revoked(&mut self.revoked);
        if self.revoked.is_empty() {
            return;
        }
        let mut tracker = self.tracker.lock().unwrap_or_else(PoisonError::into_inner);
        for &slot in &self.revoked {
            tracker.reset(slot);
            if let Some(stage) = &mut self.rollup {
                stage.rollup.forget(slot);
            }
        }
        self.revoked.clear();
    }

    fn new_batch(&self) -> Batch {
        self.recycled
            .try_recv()
            .unwrap_or_else(|_| Batch::new(self.max_samples as usize * 320, self.keep_letters))
    }
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
        if first {
            tracing::warn!(
                reason,
                topic = &*topic,
                partition,
                offset,
                detail,
                "record rejected (further ones with this reason: one line per 10 s)"
            );
        } else {
            tracing::warn!(
                reason,
                topic = &*topic,
                partition,
                offset,
                detail,
                more_since_last_line,
                "record rejected"
            );
        }
    }
}
