//! The durability window (`VM_DURABLE_AFTER`): a 2xx from VictoriaMetrics
//! is durable only once it flushed, seconds later (a SIGKILL 8 s after a 204
//! lost every sample of the request; 10 s after, none). So an accepted
//! batch keeps its offsets held for that long, and releases them only if
//! VictoriaMetrics did not restart in between. When it did, the pipeline
//! rewinds every partition to its commit position and delivers again
//! everything since: the records are still in Kafka, and nothing is kept
//! in memory but the holds.
//!
//! A restart is seen on the store's own `/metrics` (VictoriaMetrics'
//! `vm_app_start_timestamp` and `vm_app_uptime_seconds`, else the
//! `process_start_time_seconds` of Prometheus and other Go services),
//! polled every second, so it is caught even when no request failed in
//! between.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::offsets::Hold;

/// What an accepted batch held: its own holds, and roll-up buckets' holds
/// with the last offset each covered.
pub type Holds = (Vec<Hold>, Vec<(Hold, i64)>);

/// Counts VictoriaMetrics restarts seen; shared with the watcher task.
#[derive(Default)]
pub struct Restarts(AtomicU64);

impl Restarts {
    pub fn seen(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    pub fn note(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// Accepted batches waiting out the window.
pub struct Window {
    after: Duration,
    restarts: Arc<Restarts>,
    pending: VecDeque<(Instant, u64, Holds)>,
}

/// What [`Window::due`] found.
pub enum Due {
    /// Holds whose batches are durable now.
    Durable(Vec<Holds>),
    /// VictoriaMetrics restarted while batches were in the window: they may
    /// be lost, so deliver everything since the commit positions again.
    Rewind,
}

impl Window {
    pub fn new(after: Duration, restarts: Arc<Restarts>) -> Self {
        Window {
            after,
            restarts,
            pending: VecDeque::new(),
        }
    }

    /// An accepted batch's holds: released at once without a window.
    pub fn accepted(&mut self, holds: Holds) -> Option<Holds> {
        if self.after.is_zero() {
            return Some(holds);
        }
        self.pending
            .push_back((Instant::now() + self.after, self.restarts.seen(), holds));
        None
    }

    pub fn due(&mut self, now: Instant) -> Due {
        let restarts = self.restarts.seen();
        if self.pending.iter().any(|(_, seen, _)| *seen != restarts) {
            self.pending.clear();
            return Due::Rewind;
        }
        let mut durable = Vec::new();
        while self.pending.front().is_some_and(|(at, _, _)| *at <= now) {
            if let Some((_, _, holds)) = self.pending.pop_front() {
                durable.push(holds);
            }
        }
        Due::Durable(durable)
    }

    /// Everything waiting, at shutdown once VictoriaMetrics flushed.
    pub fn drain(&mut self) -> Vec<Holds> {
        self.pending.drain(..).map(|(_, _, h)| h).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Which run of VictoriaMetrics answered: its start time and uptime (both
/// whole seconds) from its `/metrics` page.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run {
    started: f64,
    uptime: f64,
}

impl Run {
    pub fn from_metrics(page: &str) -> Option<Run> {
        let value = |name: &str| {
            page.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        };
        if let (Some(started), Some(uptime)) = (
            value("vm_app_start_timestamp"),
            value("vm_app_uptime_seconds"),
        ) {
            return Some(Run { started, uptime });
        }
        // Prometheus, Mimir and other Go services: a start time (fractional
        // seconds, so a restart within the second shows too), no uptime.
        Some(Run {
            started: value("process_start_time_seconds")?,
            uptime: 0.0,
        })
    }

    /// Whether `later` is another run: a new start time, or (a restart
    /// within the same second) an uptime that went back.
    pub fn restarted(&self, later: &Run) -> bool {
        later.started != self.started || later.uptime < self.uptime
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_wait_out_the_window_and_a_restart_rewinds() {
        let restarts = Arc::new(Restarts::default());
        let mut w = Window::new(Duration::from_millis(50), restarts.clone());
        assert!(w.accepted((Vec::new(), Vec::new())).is_none());
        assert!(matches!(w.due(Instant::now()), Due::Durable(d) if d.is_empty()));
        assert!(
            matches!(w.due(Instant::now() + Duration::from_millis(60)), Due::Durable(d) if d.len() == 1)
        );
        w.accepted((Vec::new(), Vec::new()));
        restarts.note();
        assert!(matches!(
            w.due(Instant::now() + Duration::from_secs(1)),
            Due::Rewind
        ));
        assert!(w.is_empty());
        let mut off = Window::new(Duration::ZERO, restarts);
        assert!(off.accepted((Vec::new(), Vec::new())).is_some());
    }

    #[test]
    fn tells_runs_apart() {
        let page = |start: u64, up: u64| {
            format!("vm_app_version{{version=\"x\"}} 1\nvm_app_start_timestamp {start}\nvm_app_uptime_seconds {up}\n")
        };
        let first = Run::from_metrics(&page(100, 5)).unwrap();
        assert!(!first.restarted(&Run::from_metrics(&page(100, 6)).unwrap()));
        assert!(first.restarted(&Run::from_metrics(&page(101, 0)).unwrap()));
        assert!(first.restarted(&Run::from_metrics(&page(100, 0)).unwrap()));
        assert_eq!(Run::from_metrics("nothing"), None);
        let prometheus = |start: &str| {
            format!("# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {start}\n")
        };
        let first = Run::from_metrics(&prometheus("1.76e+09")).unwrap();
        assert!(!first.restarted(&Run::from_metrics(&prometheus("1.76e+09")).unwrap()));
        assert!(first.restarted(&Run::from_metrics(&prometheus("1.76000001e+09")).unwrap()));
    }
}
