//! The stages' loops, as [`app`](crate::app) wires them:
//!
//! ```text
//! Kafka ─► source ─► transform ─► batch ─►(bounded channel)─► sink ─► the store
//!            ▲                                                  │
//!            └───────── acks: release, rewind, reuse ◄──────────┘
//! ```
//!
//! [`SourceStage`] runs source, transform and batching on one thread:
//! wasmtime calls are synchronous CPU work and keep the async reactor free
//! for HTTP. It alone owns the consumer and the offsets. The channel to
//! [`SinkStage`], on tokio, is small; when it stays full for a second the
//! consumer pauses its partitions (and keeps polling, so it stays in its
//! group) instead of buffering. What the sink learns comes back as
//! [`channels::Ack`]s.

mod channels;
mod sink_stage;
mod source_stage;

use std::sync::Arc;

use crate::metrics::Metrics;
use crate::stop::Stop;

pub(crate) use channels::channels;
pub use sink_stage::DeliverySettings;
pub(crate) use sink_stage::SinkStage;
pub(crate) use source_stage::SourceStage;

/// What both stages hold: the metrics they update, and the stop request.
#[derive(Clone)]
pub(crate) struct Common {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) stop: Arc<Stop>,
}
