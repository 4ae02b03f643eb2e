//! The stages' loops, as [`app`](crate::app) wires them:
//!
//! ```text
//! Kafka ─► source ─► transform ─► batch ─►(bounded channel)─► sink ─► the store
//!            ▲                                                  │
//!            └──────────── store offsets after 2xx ◄────────────┘
//! ```
//!
//! [`SourceStage`] runs source, transform and batching on one thread:
//! wasmtime calls are synchronous CPU work and keep the async reactor free
//! for HTTP. The channel to [`SinkStage`], on tokio, is small; when it stays
//! full for a second the consumer pauses its partitions (and keeps polling,
//! so it stays in its group) instead of buffering.

mod sink_stage;
mod source_stage;

pub(crate) use sink_stage::SinkStage;
pub(crate) use source_stage::SourceStage;
