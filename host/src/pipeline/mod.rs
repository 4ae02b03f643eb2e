//! Wires the stages and runs them until a signal stops them:
//!
//! ```text
//! Kafka ─► source ─► transform ─► batch ─►(bounded channel)─► sink ─► the store
//!            ▲                                                  │
//!            └──────────── store offsets after 2xx ◄────────────┘
//! ```
//!
//! Source, transform and batching run on one thread: wasmtime calls are
//! synchronous CPU work and keep the async reactor free for HTTP. The channel
//! to the sink is small; when it stays full for a second the consumer pauses
//! its partitions (and keeps polling, so it stays in its group) instead of
//! buffering.

//!
//! The source thread is [`source_stage`]; the sink's side, on tokio, is
//! [`sink_stage`]; this file builds both from the settings and runs them.

mod sink_stage;
mod source_stage;

use std::sync::atomic::AtomicBool;
use std::sync::{mpsc as std_mpsc, Arc, Mutex};

use anyhow::Context;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::admin::{self, AdminState};
use crate::batch::Batch;
use crate::config::{OutputKind, RunConfig};
use crate::dlq::DeadLetters;
use crate::durability::{Restarts, Window};
use crate::error::ConfigError;
use crate::health::StoreHealth;
use crate::metrics::Metrics;
use crate::offsets::Tracker;
use crate::rollup::{self, Rollup};
use crate::sink::{Auth, Sink, SinkSettings};
use crate::source::{Source, SourceSettings};
use crate::stop::Stop;
use crate::transform::{self, TransformHandle, Transformer, WasmRuntime};

use sink_stage::SinkStage;
use source_stage::SourceStage;

/// Batches built and not yet accepted, beyond the one being sent.
const QUEUED_BATCHES: usize = 2;

/// Run the pipeline until `stop` is requested, then drain: flush the open
/// batch, wait (up to `SHUTDOWN_TIMEOUT`) for VictoriaMetrics to accept what
/// is in flight, commit, leave the group.
pub async fn run(cfg: RunConfig, stop: Arc<Stop>) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let (handle, transformer) = load_transform(&cfg, &metrics, &stop)?;
    let _watcher = transform::watch(handle.clone())?;
    let kafka_properties = cfg.kafka_properties().map_err(ConfigError)?;
    let sink = Arc::new(Sink::new(sink_settings(&cfg)?, metrics.clone())?);
    check_store(&sink, &cfg).await?;
    let source = connect_source(&cfg, &kafka_properties, &metrics)?;
    let dlq = dead_letters(&cfg, &kafka_properties, &source, &metrics)?;
    let mut tasks = vec![
        start_admin(&cfg, &metrics, &handle, &stop, sink.health()).await?,
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
    store: &StoreHealth,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = admin::bind(cfg.admin_addr()).await?;
    tracing::info!(addr = %cfg.admin_addr(), "admin HTTP listening (/metrics /health /health/live /health/ready /reload)");
    let router = admin::router(AdminState {
        metrics: metrics.clone(),
        transform: handle.clone(),
        stop: stop.clone(),
        store: store.clone(),
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
async fn check_store(sink: &Sink, cfg: &RunConfig) -> anyhow::Result<()> {
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
            sink.health().set(false);
            tracing::warn!(error = %e, "the store is not reachable yet; batches will wait and be retried")
        }
    }
    Ok(())
}
