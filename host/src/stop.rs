//! The stop request: set by the first SIGINT/SIGTERM, read by every stage,
//! which then drains and ends. A [`Deadline`] is the stop request plus
//! `SHUTDOWN_TIMEOUT`: what retries give up at, waking their sleeps.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct Stop {
    token: CancellationToken,
    requested: OnceLock<Instant>,
    flag: Arc<AtomicBool>,
}

impl Stop {
    pub fn request(&self) {
        let _ = self.requested.set(Instant::now());
        self.flag.store(true, Ordering::Release);
        self.token.cancel();
    }

    pub fn is_requested(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// The flag itself, for code that must not depend on this module (the
    /// transform stops a faulting chunk early on it).
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }

    /// Whether `grace` has passed since the stop was requested.
    pub fn past(&self, grace: Duration) -> bool {
        self.requested.get().is_some_and(|t| t.elapsed() >= grace)
    }

    /// Resolves once `grace` has passed since the stop was requested.
    pub async fn passed(&self, grace: Duration) {
        self.token.cancelled().await;
        if let Some(&at) = self.requested.get() {
            tokio::time::sleep_until((at + grace).into()).await;
        }
    }
}

/// The point past which work in flight is given up: `grace` after the
/// stop request.
#[derive(Clone)]
pub struct Deadline {
    stop: Arc<Stop>,
    grace: Duration,
}

impl Deadline {
    pub fn new(stop: Arc<Stop>, grace: Duration) -> Self {
        Deadline { stop, grace }
    }

    pub fn is_past(&self) -> bool {
        self.stop.past(self.grace)
    }

    /// Sleep for `delay`, or less if the deadline comes first.
    pub async fn sleep(&self, delay: Duration) {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.stop.passed(self.grace) => {}
        }
    }

    /// Resolves when the deadline is reached.
    pub async fn reached(&self) {
        self.stop.passed(self.grace).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sleep_ends_at_the_deadline() {
        let stop = Arc::new(Stop::default());
        let deadline = Deadline::new(stop.clone(), Duration::from_millis(100));
        assert!(!deadline.is_past());
        let started = Instant::now();
        stop.request();
        deadline.sleep(Duration::from_secs(60)).await;
        let slept = started.elapsed();
        assert!(
            slept >= Duration::from_millis(100) && slept < Duration::from_secs(5),
            "{slept:?}"
        );
        assert!(deadline.is_past());
    }
}
