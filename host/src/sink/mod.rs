//! The store's client: POSTs a batch in the output's wire format (import
//! lines, gzip or not, or remote write) and retries until the store accepts
//! it or the host is told to give up.

mod auth;
mod encode;
mod error;
mod remote_write;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, AUTHORIZATION};
use reqwest::{Certificate, Client, Url};

use tokio::sync::watch;

use crate::durability::{Accepted, Run, Seen};
use crate::error::Error;
use crate::health::StoreHealth;
use crate::metrics::Metrics;
use crate::redact::ShownUrl;
use crate::stop::Deadline;
use crate::throttle::Throttle;
pub use auth::Auth;
use auth::Authorization;
pub use encode::{EncodeError, Encoded, Format};
pub use error::{NotDelivered, Protocol, SendError};

/// While the store stays down, one warning per this interval.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// How often the store's status page is read while accepted batches wait
/// in the durability window (each is released by the first read after its
/// window ends).
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// Two restarts closer than this look like a status URL that reaches
/// several processes.
const FLAPPING: Duration = Duration::from_secs(60);
/// How often it is read while none wait: only to notice a restart early.
const STATUS_IDLE: Duration = Duration::from_secs(30);

/// Until the next status read: [`STATUS_EVERY`] while batches wait in the
/// window or the last read failed, else [`STATUS_IDLE`] or until one
/// begins to wait (then at once: a restart during the quiet spell is found
/// before the batch is due). After a failed read the pace stays fast, so a
/// store coming back is seen before it accepts much: what it accepts before
/// the watch has seen its run is delivered again.
async fn pause(waiting: &mut watch::Receiver<usize>, failed: bool) {
    if *waiting.borrow_and_update() > 0 || failed {
        tokio::time::sleep(STATUS_EVERY).await;
        return;
    }
    tokio::select! {
        () = tokio::time::sleep(STATUS_IDLE) => {}
        gone = async { waiting.wait_for(|n| *n > 0).await.is_err() } => {
            // The sink stage is gone (shutdown): nothing will wait again.
            if gone {
                tokio::time::sleep(STATUS_IDLE).await;
            }
        }
    }
}

/// reqwest's error text without the URL it carries (which may hold a
/// password).
fn without_url(e: reqwest::Error) -> String {
    let mut text = e.without_url().to_string();
    text.truncate(300);
    text
}

pub struct SinkSettings {
    pub url: Url,
    /// The setting `url` came from, named when the store refuses it.
    pub url_setting: &'static str,
    pub verify_tls: bool,
    /// Extra CA certificates (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    /// Attempts before a batch is given up; 0: never give up.
    pub max_retries: u32,
    pub auth: Auth,
    pub format: Format,
    /// The store's status page (`/metrics`), read to tell its runs apart
    /// for the durability window; `None` with no window.
    pub status_url: Option<Url>,
}

/// The HTTP client: timeouts, TLS verification and the extra CAs.
fn client(s: &SinkSettings) -> Result<Client, Error> {
    let mut builder = Client::builder()
        .danger_accept_invalid_certs(!s.verify_tls)
        .timeout(s.timeout)
        .connect_timeout(s.timeout.min(Duration::from_secs(10)))
        .pool_max_idle_per_host(4)
        .user_agent(concat!("pmacct-kafka-vm/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &s.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            Error::Config(format!("VM_CA_FILE: cannot read {}: {e}", path.display()))
        })?;
        let certs = Certificate::from_pem_bundle(&pem)
            .map_err(|e| Error::Config(format!("VM_CA_FILE: {}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(Error::Config(format!(
                "VM_CA_FILE: {} holds no PEM certificate",
                path.display()
            )));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| Error::runtime("cannot build the HTTP client", e))
}

/// Counts a delivery while it runs, also if its future is dropped.
struct Sending<'a>(&'a AtomicUsize);

impl<'a> Sending<'a> {
    fn start(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Sending(count)
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One batch, encoded, with what it carries.
pub struct Request {
    pub body: Bytes,
    /// Samples in it (as the store will count them).
    pub samples: u64,
    /// The import lines' size before encoding.
    pub raw_len: u64,
}

pub struct Sink {
    client: Client,
    url: Url,
    /// `url` as logs and errors show it.
    shown: ShownUrl,
    url_setting: &'static str,
    authorization: Authorization,
    metrics: Arc<Metrics>,
    /// Attempts before a batch is given up; 0: never give up.
    max_retries: u32,
    format: Format,
    headers: HeaderMap,
    /// An empty batch in the wire format: what probes send.
    empty: Bytes,
    health: StoreHealth,
    /// Batches being delivered now (the recovery probe waits while any is).
    sending: AtomicUsize,
    status_url: Option<Url>,
    /// The store's runs as the restart watch saw them.
    seen: watch::Sender<Seen>,
}

impl Sink {
    pub fn new(s: SinkSettings, metrics: Arc<Metrics>) -> Result<Self, Error> {
        let empty = s
            .format
            .encode(b"")
            .map_err(|e| Error::runtime("cannot encode an empty batch", e))?;
        Ok(Sink {
            client: client(&s)?,
            shown: ShownUrl::new(&s.url),
            url: s.url,
            url_setting: s.url_setting,
            authorization: Authorization::new(s.auth)?,
            health: StoreHealth::new(metrics.victoriametrics_up.clone()),
            sending: AtomicUsize::new(0),
            metrics,
            max_retries: s.max_retries,
            headers: s.format.headers(),
            empty: empty.body,
            format: s.format,
            status_url: s.status_url,
            seen: watch::Sender::new(Seen::default()),
        })
    }

    /// Whether the store takes writes, as the last send or probe saw it.
    pub fn health(&self) -> &StoreHealth {
        &self.health
    }

    pub fn format(&self) -> &Format {
        &self.format
    }

    /// Send an empty batch: the store takes it without storing anything,
    /// so an answer tells whether it is up and the URL and credentials
    /// are right.
    pub async fn probe(&self) -> Result<(), SendError> {
        self.send(self.empty.clone()).await
    }

    /// The URL as it may be shown (no password, no token).
    pub fn url(&self) -> &ShownUrl {
        &self.shown
    }

    /// What the store's answer to an empty batch means at start-up. An
    /// empty batch is a no-op for the store: a 4xx means the URL or the
    /// credentials are wrong, which would otherwise stall the pipeline in
    /// retries. A store that is down is waited for.
    pub async fn check(&self) -> Result<(), Error> {
        match self.probe().await {
            Ok(()) => tracing::info!(url = %self.shown, "the store accepts writes"),
            Err(e) if e.is_auth_error() => {
                return Err(Error::Config(format!(
                    "VM_USERNAME/VM_PASSWORD or VM_BEARER_TOKEN(_FILE): {e}"
                )));
            }
            Err(e) if e.is_client_error() => {
                return Err(Error::Config(format!("{}: {e}", self.url_setting)));
            }
            Err(e) => {
                self.health.set(false);
                tracing::warn!(error = %e, "the store is not reachable yet; batches will wait and be retried")
            }
        }
        Ok(())
    }

    /// Once the store is marked down, probe it every few seconds while no
    /// batch is being retried (an idle pipeline), so `victoriametrics_up`
    /// and readiness recover without waiting for the next record.
    pub async fn watch_recovery(self: Arc<Self>) {
        loop {
            self.health.went_down().await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            let idle = self.sending.load(Ordering::Acquire) == 0;
            if !self.health.is_up() && idle && self.probe().await.is_ok() {
                tracing::info!(url = %self.shown, "the store accepts writes again");
                self.health.set(true);
            }
        }
    }

    /// What the restart watch sees of the store, for the durability window.
    pub fn seen(&self) -> watch::Receiver<Seen> {
        self.seen.subscribe()
    }

    /// Tell the store's runs apart: read its status page and publish each
    /// read that found it (and whether its run changed). A page that cannot
    /// be read publishes nothing, so nothing accepted is released
    /// meanwhile: that is logged and counted, never skipped.
    ///
    /// It reads once a second while batches wait in the durability window
    /// (`waiting`, from the sink stage) and every 30 s otherwise. The pace
    /// cannot make a restart go unnoticed: each read is compared with the
    /// last, however long ago, and a batch counts against the run the watch
    /// knew before it was sent, so a restart first seen after a send (read
    /// late because the window was empty) marks the batch's run as gone and
    /// rewinds: a spare replay, never a lost one. A batch is released only by
    /// a read sent after its window ended, and while one waits the pace is
    /// fast, so idling slowly only delays what nothing waits for.
    pub async fn watch_restarts(self: Arc<Self>, mut waiting: watch::Receiver<usize>) {
        let Some(url) = self.status_url.clone() else {
            return;
        };
        let mut warnings = Throttle::new(1, WARN_EVERY);
        loop {
            let failed = match self.observe(&url).await {
                Ok(()) => false,
                Err(why) => {
                    if let Some(more_since_last_line) = warnings.admit() {
                        tracing::warn!(url = %ShownUrl::new(&url), error = %why, more_since_last_line, "cannot read the store's status; accepted batches stay uncommitted until it answers (VM_STATUS_URL)");
                    }
                    true
                }
            };
            pause(&mut waiting, failed).await;
        }
    }

    /// One read of the status page, published: the run found (a restart
    /// counted and logged) and when the read was sent. The watch reads, and
    /// so does a delivery while the last read failed, so that what a store
    /// coming back accepts counts against the run it came from. A read
    /// older than the last one published changes nothing.
    async fn observe(&self, url: &Url) -> Result<(), String> {
        let m = &self.metrics.durability;
        let sent = Instant::now();
        let run = match self.read_run(url).await {
            Ok(run) => run,
            Err(why) => {
                m.status_up.set(0);
                m.status_failures.inc();
                self.seen
                    .send_if_modified(|s| std::mem::replace(&mut s.up, false));
                return Err(why);
            }
        };
        m.status_up.set(1);
        let mut restarted = None;
        self.seen.send_if_modified(|s| {
            if s.at.is_some_and(|at| at > sent) {
                return false;
            }
            let changed = s.run.is_none_or(|k| k.restarted(&run));
            if changed && s.run.is_some() {
                restarted = Some(s.restarted_at);
                s.restarted_at = Some(sent);
            }
            s.runs += u64::from(changed);
            s.run = Some(run);
            s.at = Some(sent);
            s.up = true;
            true
        });
        if let Some(before) = restarted {
            let shown = ShownUrl::new(url);
            m.restarts.inc();
            tracing::warn!(url = %shown, "the store restarted; what it accepted and had not made durable is delivered again");
            if before.is_some_and(|t: Instant| t.elapsed() < FLAPPING) {
                tracing::error!(url = %shown, "the store's start time changed twice within a minute: VM_STATUS_URL may reach several processes (a load balancer, vmauth); each change delivers the window again");
            }
        }
        Ok(())
    }

    /// One read of the status page: which run of the store answers.
    async fn read_run(&self, url: &Url) -> Result<Run, String> {
        let mut request = self.client.get(url.clone());
        if let Some(auth) = self.authorization.header() {
            request = request.header(AUTHORIZATION, auth);
        }
        let response = request.send().await.map_err(without_url)?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        let page = response.text().await.map_err(without_url)?;
        Run::from_metrics(&page).ok_or_else(|| {
            "no vm_app_start_timestamp or process_start_time_seconds on the page".to_string()
        })
    }

    /// At start-up: a status page that answers 4xx is a wrong URL or
    /// credentials, which would keep every offset uncommitted for good.
    pub async fn check_status(&self) -> Result<(), Error> {
        let Some(url) = &self.status_url else {
            return Ok(());
        };
        match self.read_run(url).await {
            Ok(_) => Ok(()),
            Err(e) if e.starts_with("HTTP 4") || e.starts_with("no vm_app") => Err(Error::Config(format!(
                "VM_STATUS_URL: {} {e}: the durability window needs the store's own /metrics (set VM_STATUS_URL, or VM_DURABLE_AFTER=0 for a store that is durable on its 2xx)",
                ShownUrl::new(url)
            ))),
            Err(e) => {
                tracing::warn!(url = %ShownUrl::new(url), error = %e, "the store's status page is not reachable yet");
                Ok(())
            }
        }
    }

    /// One attempt.
    pub async fn send(&self, body: Bytes) -> Result<(), SendError> {
        let mut request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone());
        if let Some(auth) = self.authorization.header() {
            request = request.header(AUTHORIZATION, auth);
        }
        let resp = request
            .body(body)
            .send()
            .await
            .map_err(|source| self.classify(source))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let mut body = resp.text().await.unwrap_or_default();
        body.truncate(body.char_indices().nth(300).map_or(body.len(), |(i, _)| i));
        Err(SendError::Status {
            url: self.shown.clone(),
            status,
            body: self.shown.scrub(body.trim()),
        })
    }

    fn classify(&self, source: reqwest::Error) -> SendError {
        let url = self.shown.clone();
        // reqwest's text names the URL as it was given; ours is shown.
        let source = source.without_url();
        if source.is_timeout() {
            SendError::Timeout { url }
        } else if source.is_connect() {
            SendError::Connect { url, source }
        } else {
            SendError::Other { url, source }
        }
    }

    /// Send until accepted, backing off exponentially (with jitter) between
    /// attempts. Stops early only when the store refuses the body for good,
    /// or at the shutdown deadline.
    pub async fn deliver(
        &self,
        request: &Request,
        deadline: &Deadline,
    ) -> Result<Accepted, NotDelivered> {
        let _sending = Sending::start(&self.sending);
        self.attempts(request, deadline).await
    }

    async fn attempts(
        &self,
        request: &Request,
        deadline: &Deadline,
    ) -> Result<Accepted, NotDelivered> {
        let mut delays = crate::retry::delays();
        let mut attempts = 0;
        let mut warnings = Throttle::new(1, WARN_EVERY);
        loop {
            attempts += 1;
            let started = Instant::now();
            // A store coming back: see which run it is before sending to
            // it (a failed read changes nothing; the send then fails too).
            if let Some(url) = self.status_url.as_ref().filter(|_| !self.seen.borrow().up) {
                let _ = self.observe(url).await;
            }
            // Read before sending: a restart the watch sees after this
            // may have lost the batch, and must count against it.
            let runs = self.seen.borrow().runs;
            let e = match self.send(request.body.clone()).await {
                Ok(()) => {
                    self.accepted(request, started, attempts);
                    return Ok(Accepted {
                        runs,
                        at: Instant::now(),
                    });
                }
                Err(e) => e,
            };
            self.metrics
                .sink
                .send_failures
                .with_label_values(&[e.kind()])
                .inc();
            let samples = request.samples;
            if e.is_permanent(self.format.protocol()) {
                tracing::error!(error = %e, samples, "the store refused the batch; its records are rejected, not retried");
                return Err(NotDelivered::Refused(e));
            }
            self.health.set(false);
            if self.max_retries > 0 && attempts >= self.max_retries {
                tracing::error!(error = %e, attempts, samples, "VM_MAX_RETRIES reached; the batch's records are rejected as vm_unavailable");
                return Err(NotDelivered::GaveUp { attempts, last: e });
            }
            if deadline.is_past() {
                return Err(NotDelivered::Abandoned { attempts, last: e });
            }
            let delay = delays.next().unwrap_or(crate::retry::LONGEST);
            if warnings.admit().is_some() {
                tracing::warn!(error = %e, attempts, retry_in_ms = delay.as_millis() as u64, samples, "send to the store failed; retrying (the batch is kept)");
            } else {
                tracing::debug!(error = %e, attempts, "send failed again");
            }
            deadline.sleep(delay).await;
        }
    }

    fn accepted(&self, request: &Request, started: Instant, attempts: u32) {
        self.health.set(true);
        let m = &self.metrics.sink;
        m.send_duration.observe(started.elapsed().as_secs_f64());
        m.batches_sent.inc();
        m.samples_written.inc_by(request.samples);
        m.body_bytes_sent.inc_by(request.body.len() as u64);
        m.body_raw_bytes.inc_by(request.raw_len);
        if attempts > 1 {
            tracing::info!(attempts, "the store accepted the batch after retries");
        }
    }
}
