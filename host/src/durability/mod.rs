//! The durability window (`VM_DURABLE_AFTER`): a 2xx from VictoriaMetrics
//! is durable only once it flushed, seconds later (a SIGKILL 8 s after a 204
//! lost every sample of the request; 10 s after, none). So an accepted
//! batch keeps its offsets held until two things are true:
//!
//! - the window has passed since the store answered, and
//! - a read of the store's status page *sent after that* found the same run
//!   of the store that answered (same start time).
//!
//! Time alone is not enough: a store that crashed right after answering and
//! stays down longer than the window never flushed. While the status page
//! cannot be read, nothing is released. When it shows a new run, the
//! pipeline rewinds every partition to its commit position and delivers
//! again everything since: the records are still in Kafka, and nothing is
//! kept in memory but the holds.
//!
//! Shutdown waits the same way: VictoriaMetrics' `/internal/force_flush`
//! makes data searchable, not durable (1.112 SIGKILLed seconds after it
//! lost samples a host had committed), so it is no shortcut.
//!
//! A run is told apart on the store's own `/metrics` (VictoriaMetrics'
//! `vm_app_start_timestamp` and `vm_app_uptime_seconds`, else the
//! `process_start_time_seconds` of Prometheus and other Go services).

mod restarts;

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::offsets::Hold;
pub use restarts::RestartWatch;

/// What an accepted batch held: its own holds, and roll-up buckets' holds
/// with the last offset each covered.
pub type Holds = (Vec<Hold>, Vec<(Hold, i64)>);

/// What the restart watch last saw of the store.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Seen {
    /// Runs of the store seen so far: the first run read counts as one, each
    /// restart adds one. 0 until the status page was first read.
    pub runs: u64,
    /// When the last read that found the current run was sent.
    pub at: Option<Instant>,
    /// The run found by that read.
    pub run: Option<Run>,
    /// Whether the last read found the store (else deliveries read the
    /// status themselves before sending).
    pub up: bool,
    /// When the last restart was seen.
    pub restarted_at: Option<Instant>,
}

/// The store's answer to a batch: which run it came from, as far as the
/// watch knew when the request was sent (a restart after that is seen
/// later as a new run), and when.
#[derive(Debug, Clone, Copy)]
pub struct Accepted {
    pub runs: u64,
    pub at: Instant,
}

struct Pending {
    due: Instant,
    runs: u64,
    holds: Holds,
}

/// Accepted batches waiting to be durable.
pub struct Window {
    after: Duration,
    seen: watch::Receiver<Seen>,
    pending: Vec<Pending>,
    /// How many wait, for the restart watch: it reads the store's status
    /// often only while some do.
    waiting: watch::Sender<usize>,
}

/// What [`Window::due`] found.
pub enum Due {
    /// Holds whose batches are durable now.
    Durable(Vec<Holds>),
    /// The store restarted while batches were in the window: they may be
    /// lost, so deliver everything since the commit positions again.
    Rewind,
}

impl Window {
    pub fn new(after: Duration, seen: watch::Receiver<Seen>) -> Self {
        Window {
            after,
            seen,
            pending: Vec::new(),
            waiting: watch::Sender::new(0),
        }
    }

    /// How many accepted batches wait in the window, as it changes.
    pub fn waiting(&self) -> watch::Receiver<usize> {
        self.waiting.subscribe()
    }

    fn publish(&self) {
        let len = self.pending.len();
        self.waiting
            .send_if_modified(|n| std::mem::replace(n, len) != len);
    }

    /// An accepted batch's holds: released at once without a window.
    pub fn accepted(&mut self, holds: Holds, answer: Accepted) -> Option<Holds> {
        if self.after.is_zero() {
            return Some(holds);
        }
        self.pending.push(Pending {
            due: answer.at + self.after,
            runs: answer.runs,
            holds,
        });
        self.publish();
        None
    }

    pub fn due(&mut self) -> Due {
        let seen = *self.seen.borrow();
        if self.pending.iter().any(|p| p.runs != seen.runs) {
            self.pending.clear();
            self.publish();
            return Due::Rewind;
        }
        let Some(read_at) = seen.at else {
            return Due::Durable(Vec::new());
        };
        let mut durable = Vec::new();
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].due <= read_at {
                durable.push(self.pending.swap_remove(i).holds);
            } else {
                i += 1;
            }
        }
        self.publish();
        Due::Durable(durable)
    }

    pub fn len(&self) -> usize {
        self.pending.len()
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

    fn durable(w: &mut Window) -> usize {
        match w.due() {
            Due::Durable(d) => d.len(),
            Due::Rewind => panic!("rewind"),
        }
    }

    fn none() -> Holds {
        (Vec::new(), Vec::new())
    }

    #[test]
    fn released_only_once_a_read_after_the_window_shows_the_same_run() {
        let t0 = Instant::now();
        let (tx, rx) = watch::channel(Seen {
            runs: 1,
            at: Some(t0),
            ..Seen::default()
        });
        let mut w = Window::new(Duration::from_millis(50), rx);
        let answer = Accepted { runs: 1, at: t0 };
        assert!(w.accepted(none(), answer).is_none());
        assert_eq!(durable(&mut w), 0, "window not over");
        // Time passes, but the store cannot be read: nothing is released.
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(durable(&mut w), 0, "no read since the window ended");
        tx.send_modify(|s| s.at = Some(Instant::now()));
        assert_eq!(durable(&mut w), 1);
        assert!(w.is_empty());
    }

    #[test]
    fn a_new_run_rewinds_also_after_a_long_outage() {
        let t0 = Instant::now();
        let (tx, rx) = watch::channel(Seen {
            runs: 1,
            at: Some(t0),
            ..Seen::default()
        });
        let mut w = Window::new(Duration::from_millis(10), rx);
        w.accepted(none(), Accepted { runs: 1, at: t0 });
        std::thread::sleep(Duration::from_millis(30));
        tx.send_modify(|s| {
            s.runs = 2;
            s.at = Some(Instant::now());
        });
        assert!(matches!(w.due(), Due::Rewind));
        assert!(w.is_empty());
    }

    #[test]
    fn a_batch_answered_before_the_first_read_is_delivered_again() {
        let (tx, rx) = watch::channel(Seen::default());
        let mut w = Window::new(Duration::from_millis(1), rx);
        w.accepted(
            none(),
            Accepted {
                runs: 0,
                at: Instant::now(),
            },
        );
        tx.send_modify(|s| {
            s.runs = 1;
            s.at = Some(Instant::now());
        });
        assert!(matches!(w.due(), Due::Rewind));
    }

    #[test]
    fn a_read_before_the_window_passed_releases_nothing() {
        let t0 = Instant::now();
        let (tx, rx) = watch::channel(Seen {
            runs: 1,
            at: Some(t0),
            ..Seen::default()
        });
        let window = Duration::from_secs(60);
        let mut w = Window::new(window, rx);
        w.accepted(none(), Accepted { runs: 1, at: t0 });
        // Release is decided by when the read was sent, not by the clock.
        tx.send_modify(|s| s.at = Some(t0 + window - Duration::from_millis(1)));
        assert_eq!(
            durable(&mut w),
            0,
            "the read was sent before the window passed"
        );
        tx.send_modify(|s| s.at = Some(t0 + window));
        assert_eq!(durable(&mut w), 1);
        let (_tx, rx) = watch::channel(Seen::default());
        let mut off = Window::new(Duration::ZERO, rx);
        assert!(off.accepted(none(), Accepted { runs: 0, at: t0 }).is_some());
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
