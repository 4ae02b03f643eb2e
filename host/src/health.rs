//! Whether the store takes our writes, as the sink last saw it: a `watch`
//! value that readiness and the recovery probe read. `victoriametrics_up`
//! on `/metrics` follows it, and is never read back.

use std::sync::Arc;

use prometheus::IntGauge;
use tokio::sync::watch;

#[derive(Clone)]
pub struct StoreHealth {
    up: Arc<watch::Sender<bool>>,
    gauge: IntGauge,
}

impl StoreHealth {
    /// Up until a send says otherwise.
    pub fn new(gauge: IntGauge) -> Self {
        gauge.set(1);
        StoreHealth {
            up: Arc::new(watch::Sender::new(true)),
            gauge,
        }
    }

    pub fn set(&self, up: bool) {
        self.up.send_replace(up);
        self.gauge.set(i64::from(up));
    }

    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// Returns once the store is marked down (at once if it is now).
    pub async fn went_down(&self) {
        let mut seen = self.up.subscribe();
        // The sender lives as long as `self`: the wait cannot fail.
        let _ = seen.wait_for(|up| !*up).await;
    }
}
