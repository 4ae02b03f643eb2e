//! The stop request: set by the first SIGINT/SIGTERM (or the admin server),
//! read by every stage, which then drains and ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Stop {
    requested: OnceLock<Instant>,
    flag: Arc<AtomicBool>,
}

impl Stop {
    pub fn request(&self) {
        let _ = self.requested.set(Instant::now());
        self.flag.store(true, Ordering::Release);
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
}
