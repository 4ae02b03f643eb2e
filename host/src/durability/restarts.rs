//! The restart watch: reads the store's status page to tell its runs apart,
//! and publishes what it saw for the durability window and for deliveries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;
use tokio::sync::watch;

use super::{Run, Seen};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::redact::ShownUrl;
use crate::store_client::StoreClient;
use crate::throttle::Throttle;

/// While the status page cannot be read, one warning per this interval.
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

pub struct RestartWatch {
    client: StoreClient,
    /// The store's status page (`/metrics`); `None` with no window, and
    /// then nothing is ever read or published.
    url: Option<Url>,
    metrics: Arc<Metrics>,
    seen: watch::Sender<Seen>,
}

impl RestartWatch {
    pub fn new(client: StoreClient, url: Option<Url>, metrics: Arc<Metrics>) -> Self {
        RestartWatch {
            client,
            url,
            metrics,
            seen: watch::Sender::new(Seen::default()),
        }
    }

    /// What the watch sees of the store, for the durability window.
    pub fn seen(&self) -> watch::Receiver<Seen> {
        self.seen.subscribe()
    }

    /// Runs of the store seen so far. A delivery reads it before it sends:
    /// a restart the watch sees after that may have lost the batch, and
    /// must count against it.
    pub fn runs(&self) -> u64 {
        self.seen.borrow().runs
    }

    /// Before a delivery's attempt: when the last read failed, a store
    /// coming back is read first, so that what it accepts counts against
    /// the run it came from (a failed read changes nothing; the send then
    /// fails too).
    pub async fn read_if_down(&self) {
        if let Some(url) = self.url.as_ref().filter(|_| !self.seen.borrow().up) {
            let _ = self.observe(url).await;
        }
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
    pub async fn run(self: Arc<Self>, mut waiting: watch::Receiver<usize>) {
        let Some(url) = self.url.clone() else {
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
    /// counted and logged) and when the read was sent. A read older than
    /// the last one published changes nothing.
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
            self.log_restart(url, before);
        }
        Ok(())
    }

    fn log_restart(&self, url: &Url, before: Option<Instant>) {
        let shown = ShownUrl::new(url);
        self.metrics.durability.restarts.inc();
        tracing::warn!(url = %shown, "the store restarted; what it accepted and had not made durable is delivered again");
        if before.is_some_and(|t| t.elapsed() < FLAPPING) {
            tracing::error!(url = %shown, "the store's start time changed twice within a minute: VM_STATUS_URL may reach several processes (a load balancer, vmauth); each change delivers the window again");
        }
    }

    /// One read of the status page: which run of the store answers.
    async fn read_run(&self, url: &Url) -> Result<Run, String> {
        let response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(without_url)?;
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
    pub async fn check(&self) -> Result<(), Error> {
        let Some(url) = &self.url else {
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
}

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
