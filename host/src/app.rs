//! The composition root: builds every stage from [`Settings`], runs them
//! until a signal asks them to stop, then drains: flush the open batch,
//! wait (up to `SHUTDOWN_TIMEOUT`) for the store to accept what is in
//! flight, commit, leave the group. [`pipeline`](crate::pipeline) holds the
//! stages' loops; this file only connects them.

use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::admin::{self, AdminSettings, AdminState};
use crate::admin_listener;
use crate::avro::AvroInput;
use crate::config::{self, RunFlags, Settings};
use crate::dlq::DeadLetters;
use crate::durability::{RestartWatch, Window};
use crate::enrich::Enricher;
use crate::error::Error;
use crate::health::StoreHealth;
use crate::kafka_health::KafkaHealth;
use crate::metrics::Metrics;
use crate::pipeline::{self, Common, SinkStage, SourceStage};
use crate::sink::Sink;
use crate::source::{Source, SourceSettings};
use crate::stop::Stop;
use crate::store_client::StoreClient;
use crate::tap::Tap;
use crate::transform::{self, CacheDir, DirError, Loader, Sandbox, TransformSettings, Transformer};

/// Batches built and not yet accepted, beyond the one being sent.
const QUEUED_BATCHES: usize = 2;

/// Run the pipeline from the flags; returns the exit code.
pub fn main(flags: &RunFlags, matches: &clap::ArgMatches) -> u8 {
    let settings = match Settings::try_from(flags) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return e.exit_code();
        }
    };
    config::report::log(matches);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let stop = Arc::new(Stop::default());
    let result = runtime.block_on(async {
        tokio::spawn(crate::signals::watch(stop.clone()));
        run(settings, stop).await
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            if !matches!(e, Error::Config(_)) {
                tracing::error!("{e}");
            }
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// Run the pipeline until `stop` is requested, then drain.
pub async fn run(s: Settings, stop: Arc<Stop>) -> Result<(), Error> {
    let metrics = Arc::new(Metrics::new());
    let mut transform = load_transform(s.transform, &metrics, &stop)?;
    let _watcher = transform::watch(transform.0.clone())?;
    let enricher = Enricher::start(s.enrich, metrics.clone())?;
    let client = StoreClient::new(s.store_client)?;
    let status_url = s.delivery.status_url.clone();
    let restarts = Arc::new(RestartWatch::new(
        client.clone(),
        status_url,
        metrics.clone(),
    ));
    let sink = Sink::new(s.sink, client, restarts.clone(), metrics.clone())?;
    let sink = Arc::new(sink);
    sink.check().await?;
    restarts.check().await?;
    let kafka = Arc::new(KafkaHealth::default());
    let avro = avro_input(&s.source, &stop, &metrics)?;
    let source = Source::connect(&s.source, metrics.clone(), kafka.clone(), avro)?;
    let dlq = dead_letters(s.dead_letter_topic, &s.source, &source, &metrics)?;
    let health = (sink.health().clone(), kafka);
    let (tap, outlet) = Tap::new();
    transform.1.set_tap(outlet);
    start_admin(&s.admin, &metrics, (&transform.0, tap), &stop, health)?;
    let window = Window::new(s.delivery.durable_after, restarts.seen());
    let tasks = vec![
        tokio::spawn(sink.clone().watch_recovery()),
        tokio::spawn(restarts.run(window.waiting())),
    ];
    let common = Common { metrics, stop };
    let (source_ends, sink_ends) = pipeline::channels(QUEUED_BATCHES);
    let keep_letters = dlq.is_some();
    let source_stage = SourceStage::new(
        source,
        (transform.0, transform.1, enricher),
        s.batch,
        s.rollup,
        keep_letters,
        common.clone(),
        source_ends,
    );
    let source_thread = std::thread::Builder::new()
        .name("source".into())
        .spawn(move || source_stage.run())
        .map_err(|e| Error::runtime("cannot start the source thread", e))?;
    tracing::info!(url = %sink.url(), max_samples = s.batch.max_samples, max_time_s = s.batch.max_age.as_secs_f64(), "pipeline running");
    let sink_stage = SinkStage::new(sink, window, dlq, &s.delivery, common, sink_ends);
    let undelivered = sink_stage.run().await;
    finish(source_thread, tasks, undelivered).await
}

/// Reads Avro messages, when the topic holds Avro.
fn avro_input(
    s: &SourceSettings,
    stop: &Arc<Stop>,
    metrics: &Arc<Metrics>,
) -> Result<Option<AvroInput>, Error> {
    let Some(a) = &s.avro else {
        return Ok(None);
    };
    let handle = tokio::runtime::Handle::current();
    AvroInput::new(a, handle, stop.clone(), metrics.clone())
        .map(Some)
        .map_err(Error::Config)
}

/// The transform the pipeline starts with: `TRANSFORM_PATH`, or the
/// embedded default rules.
fn load_transform(
    t: TransformSettings,
    metrics: &Arc<Metrics>,
    stop: &Stop,
) -> Result<(Arc<Loader>, Transformer), Error> {
    let sandbox =
        Sandbox::new(t.limits).map_err(|e| Error::runtime("cannot start the WASM runtime", e))?;
    let sandbox = with_cache(sandbox, &t.cache, metrics)?;
    let context = match &t.path {
        Some(p) => format!("TRANSFORM_PATH: cannot load {}", p.display()),
        None => "cannot load the embedded default transform".to_string(),
    };
    let loader = Loader::new(sandbox, t.path, t.init, metrics.clone());
    let mut transformer = loader
        .load_initial(t.engine)
        .map_err(|e| Error::runtime(&context, e))?;
    transformer.set_interrupt(stop.flag());
    tracing::info!(source = %transformer.info().source, sha256 = %transformer.info().sha256, contract = transformer.info().contract, "transform loaded");
    Ok((loader, transformer))
}

/// The sandbox keeping compiled modules in TRANSFORM_CACHE_DIR. A folder
/// others could write to is refused (exit 2); the default folder only is
/// done without when it cannot be made (e.g. a read-only home).
fn with_cache(sandbox: Sandbox, dir: &CacheDir, metrics: &Metrics) -> Result<Sandbox, Error> {
    let (dir, required) = match dir {
        CacheDir::Off => return Ok(sandbox),
        CacheDir::Set(dir) => (dir, true),
        CacheDir::Default(dir) => (dir, false),
    };
    let counter = metrics.transform.module_cache.clone();
    match sandbox.clone().with_cache(dir, counter) {
        Ok(cached) => {
            tracing::info!(dir = %dir.display(), "compiled modules are kept in TRANSFORM_CACHE_DIR");
            Ok(cached)
        }
        Err(e @ DirError::Create(..)) if !required => {
            tracing::warn!(error = %e, "running without a module cache: every start compiles the module");
            Ok(sandbox)
        }
        Err(e) => Err(Error::Config(e.to_string())),
    }
}

fn dead_letters(
    topic: Option<String>,
    settings: &SourceSettings,
    source: &Source,
    metrics: &Arc<Metrics>,
) -> Result<Option<Arc<DeadLetters>>, Error> {
    let Some(topic) = topic else {
        return Ok(None);
    };
    tracing::info!(topic, "rejected records go to the dead-letter topic");
    let letters = DeadLetters::new(
        &settings.brokers,
        &topic,
        &settings.properties,
        source.slots(),
        metrics.clone(),
    )?;
    Ok(Some(Arc::new(letters)))
}

/// The admin HTTP server, on a thread of its own for the life of the
/// process (it answers while the pipeline drains).
fn start_admin(
    settings: &AdminSettings,
    metrics: &Arc<Metrics>,
    (loader, tap): (&Arc<Loader>, Tap),
    stop: &Arc<Stop>,
    (store, kafka): (StoreHealth, Arc<KafkaHealth>),
) -> Result<(), Error> {
    let listener = admin_listener::bind(settings.addr)?;
    let router = admin::router(AdminState {
        metrics: metrics.clone(),
        transform: loader.clone(),
        stop: stop.clone(),
        store,
        kafka,
        token: settings.token.clone(),
        tap,
    });
    admin_listener::spawn(listener, router)?;
    let reload = if settings.token.is_some() {
        "/reload /tap (ADMIN_TOKEN)"
    } else {
        "/reload and /tap disabled without ADMIN_TOKEN"
    };
    tracing::info!(addr = %settings.addr, "admin HTTP listening (/metrics /health /health/live /health/ready {reload})");
    Ok(())
}

/// After the sink stage ended: the source thread joined (it commits last,
/// once the sink's acks are in), the helper tasks stopped, and whether
/// anything was left undelivered.
async fn finish(
    source_thread: std::thread::JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
    undelivered: usize,
) -> Result<(), Error> {
    let joined = tokio::task::spawn_blocking(move || source_thread.join()).await;
    if !matches!(joined, Ok(Ok(()))) {
        return Err(Error::Runtime("the source thread panicked".into()));
    }
    tasks.iter().for_each(JoinHandle::abort);
    if undelivered > 0 {
        return Err(Error::Undelivered(undelivered));
    }
    tracing::info!("stopped cleanly");
    Ok(())
}
