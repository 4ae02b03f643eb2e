//! VictoriaMetrics import client: POSTs a batch's JSON lines and retries
//! until VictoriaMetrics accepts them or the host is told to give up.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Certificate, Client, StatusCode, Url};

use crate::config::ConfigError;
use crate::metrics::Metrics;

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// While VictoriaMetrics stays down, one warning per this interval.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// reqwest's message alone ("error sending request") hides the cause
/// (refused, certificate, DNS); show the whole chain.
fn chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot connect to {url}: {}", chain(source))]
    Connect { url: Url, source: reqwest::Error },
    #[error("request to {url} timed out")]
    Timeout { url: Url },
    #[error("VictoriaMetrics answered {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("request to {url} failed: {}", chain(source))]
    Other { url: Url, source: reqwest::Error },
}

impl SendError {
    fn kind(&self) -> &'static str {
        match self {
            SendError::Connect { .. } | SendError::Other { .. } => "connect",
            SendError::Timeout { .. } => "timeout",
            SendError::Status { .. } => "status",
        }
    }
}

impl SendError {
    /// VictoriaMetrics will never take this body: resending it is pointless.
    /// VictoriaMetrics skips malformed lines and answers 204, so this is
    /// rare: a body too large, or a 400/422 that is not about the path. Every
    /// other answer (401, 403, 404, 429, 5xx, and 400 "unsupported path",
    /// which a wrong VM_IMPORT_PATH gives) is a problem an operator fixes, so
    /// those batches are kept and retried: nothing is dropped for it.
    pub fn is_permanent(&self) -> bool {
        match self {
            SendError::Status { status, body } => match status.as_u16() {
                413 => true,
                400 | 422 => !body.contains("unsupported path"),
                _ => false,
            },
            _ => false,
        }
    }

    /// An answer that says the credentials are missing or wrong.
    pub fn is_auth_error(&self) -> bool {
        matches!(self, SendError::Status { status, .. } if matches!(status.as_u16(), 401 | 403))
    }

    /// An answer that says the URL is wrong, not the data.
    pub fn is_client_error(&self) -> bool {
        matches!(self, SendError::Status { status, .. } if status.is_client_error())
    }
}

/// Why a batch was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum NotDelivered {
    /// Given up at the shutdown deadline; its records stay uncommitted.
    #[error("gave up sending after {attempts} attempts: {last}")]
    Abandoned { attempts: u32, last: SendError },
    /// VictoriaMetrics refused the body for good; its records are dealt
    /// with as rejected (dead-lettered or counted).
    #[error("VictoriaMetrics refused the batch: {0}")]
    Refused(SendError),
    /// VM_MAX_RETRIES attempts failed; the operator chose to give up then:
    /// its records are dealt with as rejected too (`vm_unavailable`).
    #[error("gave up after {attempts} attempts (VM_MAX_RETRIES): {last}")]
    GaveUp { attempts: u32, last: SendError },
    /// Accepted, but its rejected records' dead letters were not
    /// acknowledged by the shutdown deadline; its records stay uncommitted.
    #[error("{0}")]
    LettersAbandoned(#[from] crate::dlq::Abandoned),
}

/// How requests prove who they are.
pub enum Auth {
    None,
    Basic {
        user: String,
        password: Option<String>,
    },
    Bearer(String),
    /// A token file, read again when it changes (rotated secrets).
    BearerFile(PathBuf),
}

pub struct SinkSettings {
    pub url: Url,
    pub verify_tls: bool,
    /// Extra CA certificates (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    /// Attempts before a batch is given up; 0: never give up.
    pub max_retries: u32,
    pub auth: Auth,
}

/// The `Authorization` header, kept ready; a token file is checked for a
/// change once per request (a stat per batch, not per record).
enum Authorization {
    None,
    Fixed(HeaderValue),
    File {
        path: PathBuf,
        current: Mutex<(Option<SystemTime>, HeaderValue)>,
    },
}

impl Authorization {
    fn new(auth: Auth) -> Result<Self, ConfigError> {
        let sensitive = |mut v: HeaderValue| {
            v.set_sensitive(true);
            v
        };
        Ok(match auth {
            Auth::None => Authorization::None,
            Auth::Basic { user, password } => {
                use base64::Engine;
                let raw = format!("{user}:{}", password.unwrap_or_default());
                let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
                Authorization::Fixed(sensitive(
                    HeaderValue::from_str(&format!("Basic {encoded}"))
                        .map_err(|_| ConfigError("VM_USERNAME: not a valid header value".into()))?,
                ))
            }
            Auth::Bearer(token) => {
                Authorization::Fixed(sensitive(bearer(&token).ok_or_else(|| {
                    ConfigError("VM_BEARER_TOKEN: not a valid header value".into())
                })?))
            }
            Auth::BearerFile(path) => {
                let (modified, value) = read_token(&path).map_err(ConfigError)?;
                Authorization::File {
                    path,
                    current: Mutex::new((modified, value)),
                }
            }
        })
    }

    fn header(&self) -> Option<HeaderValue> {
        match self {
            Authorization::None => None,
            Authorization::Fixed(v) => Some(v.clone()),
            Authorization::File { path, current } => {
                let mut cur = current.lock().unwrap_or_else(PoisonError::into_inner);
                let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                if modified != cur.0 {
                    match read_token(path) {
                        Ok(fresh) => {
                            tracing::info!(path = %path.display(), "VM_BEARER_TOKEN_FILE changed; using the new token");
                            *cur = fresh;
                        }
                        // Keep the last good token; the request may still work.
                        Err(e) => tracing::warn!(error = %e, "keeping the previous token"),
                    }
                }
                Some(cur.1.clone())
            }
        }
    }
}

fn bearer(token: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {}", token.trim())).ok()?;
    v.set_sensitive(true);
    Some(v)
}

fn read_token(path: &std::path::Path) -> Result<(Option<SystemTime>, HeaderValue), String> {
    // The time first: a write landing between the two is then seen as a
    // change again at the next request, not missed.
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("VM_BEARER_TOKEN_FILE: cannot read {}: {e}", path.display()))?;
    if text.trim().is_empty() {
        return Err(format!("VM_BEARER_TOKEN_FILE: {} is empty", path.display()));
    }
    let value = bearer(&text).ok_or_else(|| {
        format!(
            "VM_BEARER_TOKEN_FILE: {} does not hold a valid token",
            path.display()
        )
    })?;
    Ok((modified, value))
}

pub struct Sink {
    client: Client,
    url: Url,
    authorization: Authorization,
    metrics: Arc<Metrics>,
    /// Attempts before a batch is given up; 0: never give up.
    max_retries: u32,
}

impl Sink {
    pub fn new(s: SinkSettings, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let mut builder = Client::builder()
            .danger_accept_invalid_certs(!s.verify_tls)
            .timeout(s.timeout)
            .connect_timeout(s.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(4)
            .user_agent(concat!("pmacct-kafka-vm/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &s.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                ConfigError(format!("VM_CA_FILE: cannot read {}: {e}", path.display()))
            })?;
            let certs = Certificate::from_pem_bundle(&pem)
                .map_err(|e| ConfigError(format!("VM_CA_FILE: {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(ConfigError(format!(
                    "VM_CA_FILE: {} holds no PEM certificate",
                    path.display()
                ))
                .into());
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Sink {
            client: builder.build()?,
            url: s.url,
            authorization: Authorization::new(s.auth)?,
            metrics,
            max_retries: s.max_retries,
        })
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// While VictoriaMetrics is marked down and no batch is being retried
    /// (an idle pipeline), probe it now and then so `victoriametrics_up` and
    /// readiness recover without waiting for the next record.
    pub async fn watch_recovery(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let down = self.metrics.victoriametrics_up.get() == 0;
            if down
                && self.metrics.batches_in_flight.get() == 0
                && self.send(bytes::Bytes::new()).await.is_ok()
            {
                tracing::info!(url = %self.url, "VictoriaMetrics accepts imports again");
                self.metrics.victoriametrics_up.set(1);
            }
        }
    }

    /// Count VictoriaMetrics restarts into `restarts`: its start time, from
    /// its `/metrics`, once a second. Unreachable pages are skipped: a
    /// restart shows as a new start time once it answers again.
    pub async fn watch_restarts(self: Arc<Self>, restarts: Arc<crate::durability::Restarts>) {
        let Ok(url) = self.url.join("/metrics") else {
            return;
        };
        let mut known = None;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut request = self.client.get(url.clone());
            if let Some(auth) = self.authorization.header() {
                request = request.header(AUTHORIZATION, auth);
            }
            let page = match request.send().await {
                Ok(r) if r.status().is_success() => r.text().await.unwrap_or_default(),
                _ => continue,
            };
            let Some(run) = crate::durability::Run::from_metrics(&page) else {
                continue;
            };
            if known.is_some_and(|k: crate::durability::Run| k.restarted(&run)) {
                tracing::warn!(url = %url, "VictoriaMetrics restarted; what it accepted within VM_DURABLE_AFTER is delivered again");
                restarts.note();
            }
            known = Some(run);
        }
    }

    /// Ask VictoriaMetrics to make what it accepted durable now (at
    /// shutdown, so the last batches need not wait out VM_DURABLE_AFTER).
    pub async fn force_flush(&self) -> bool {
        let Ok(url) = self.url.join("/internal/force_flush") else {
            return false;
        };
        let mut request = self.client.get(url);
        if let Some(auth) = self.authorization.header() {
            request = request.header(AUTHORIZATION, auth);
        }
        matches!(request.send().await, Ok(r) if r.status().is_success())
    }

    /// One attempt.
    pub async fn send(&self, body: bytes::Bytes) -> Result<(), SendError> {
        let mut request = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/stream+json");
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
            status,
            body: body.trim().to_string(),
        })
    }

    fn classify(&self, source: reqwest::Error) -> SendError {
        let url = self.url.clone();
        if source.is_timeout() {
            SendError::Timeout { url }
        } else if source.is_connect() {
            SendError::Connect { url, source }
        } else {
            SendError::Other { url, source }
        }
    }

    /// Send until accepted, backing off exponentially (with jitter) between
    /// attempts. Stops early only when VictoriaMetrics refuses the body for
    /// good, or when `give_up` says so (past the shutdown deadline).
    pub async fn deliver(
        &self,
        body: bytes::Bytes,
        samples: u64,
        give_up: impl Fn() -> bool,
    ) -> Result<(), NotDelivered> {
        let mut backoff = BACKOFF_START;
        let mut attempts = 0;
        let mut last_warn: Option<Instant> = None;
        loop {
            attempts += 1;
            let started = Instant::now();
            let len = body.len() as u64;
            match self.send(body.clone()).await {
                Ok(()) => {
                    self.metrics
                        .send_duration
                        .observe(started.elapsed().as_secs_f64());
                    self.metrics.batches_sent.inc();
                    self.metrics.victoriametrics_up.set(1);
                    self.metrics.samples_count.inc_by(samples);
                    self.metrics.samples_written.inc_by(samples);
                    self.metrics.body_bytes_sent.inc_by(len);
                    if attempts > 1 {
                        tracing::info!(
                            attempts,
                            "VictoriaMetrics accepted the batch after retries"
                        );
                    }
                    return Ok(());
                }
                Err(e) => {
                    self.metrics
                        .send_failures
                        .with_label_values(&[e.kind()])
                        .inc();
                    if e.is_permanent() {
                        tracing::error!(error = %e, samples, "VictoriaMetrics refused the batch; its records are rejected, not retried");
                        return Err(NotDelivered::Refused(e));
                    }
                    self.metrics.victoriametrics_up.set(0);
                    if self.max_retries > 0 && attempts >= self.max_retries {
                        tracing::error!(error = %e, attempts, samples, "VM_MAX_RETRIES reached; the batch's records are rejected as vm_unavailable");
                        return Err(NotDelivered::GaveUp { attempts, last: e });
                    }
                    if give_up() {
                        return Err(NotDelivered::Abandoned { attempts, last: e });
                    }
                    if last_warn.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                        tracing::warn!(error = %e, attempts, retry_in_ms = backoff.as_millis() as u64, samples, "send to VictoriaMetrics failed; retrying (the batch is kept)");
                        last_warn = Some(Instant::now());
                    } else {
                        tracing::debug!(error = %e, attempts, "send failed again");
                    }
                    let jitter = rand::rng().random_range(0.5..1.0);
                    tokio::time::sleep(backoff.mul_f64(jitter)).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}
