//! The sink: POSTs a batch in the output's wire format (import lines, gzip
//! or not, or remote write) through the store's HTTP client
//! (`store_client`) and retries until the store accepts it or the host is
//! told to give up.

mod encode;
mod error;
mod remote_write;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::Url;

use crate::durability::{Accepted, RestartWatch};
use crate::error::Error;
use crate::health::StoreHealth;
use crate::metrics::Metrics;
use crate::redact::ShownUrl;
use crate::stop::Deadline;
use crate::store_client::StoreClient;
use crate::throttle::Throttle;
pub use encode::{EncodeError, Encoded, Format};
pub use error::{NotDelivered, Protocol, SendError};

/// While the store stays down, one warning per this interval.
const WARN_EVERY: Duration = Duration::from_secs(10);

pub struct SinkSettings {
    pub url: Url,
    /// The setting `url` came from, named when the store refuses it.
    pub url_setting: &'static str,
    /// Attempts before a batch is given up; 0: never give up.
    pub max_retries: u32,
    pub format: Format,
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
    client: StoreClient,
    url: Url,
    /// `url` as logs and errors show it.
    shown: ShownUrl,
    url_setting: &'static str,
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
    /// Which runs of the store answered (the durability window's).
    restarts: Arc<RestartWatch>,
}

impl Sink {
    /// The restart watch shares `client`.
    pub fn new(
        s: SinkSettings,
        client: StoreClient,
        restarts: Arc<RestartWatch>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Error> {
        let empty = s
            .format
            .encode(&pmacct_guest_sdk::SampleSet::default())
            .map_err(|e| Error::runtime("cannot encode an empty batch", e))?;
        Ok(Sink {
            client,
            shown: ShownUrl::new(&s.url),
            url: s.url,
            url_setting: s.url_setting,
            health: StoreHealth::new(metrics.victoriametrics_up.clone()),
            sending: AtomicUsize::new(0),
            metrics,
            max_retries: s.max_retries,
            headers: s.format.headers(),
            empty: empty.body,
            format: s.format,
            restarts,
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

    /// One attempt.
    pub async fn send(&self, body: Bytes) -> Result<(), SendError> {
        let resp = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
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
            self.restarts.read_if_down().await;
            let runs = self.restarts.runs();
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
