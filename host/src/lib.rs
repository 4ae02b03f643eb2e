//! pmacct-kafka-vm: pmacct flow records from Kafka to VictoriaMetrics,
//! through a hot-reloadable WASM transform.
//!
//! One module a stage: [`source`] (Kafka) → [`batch`] → [`transform`] (WASM)
//! → [`sink`] (VictoriaMetrics), with [`offsets`] deciding what may be
//! committed, [`pipeline`] wiring them, [`config`], [`admin`] HTTP and
//! [`metrics`].

pub mod admin;
pub mod batch;
pub mod cli;
pub mod config;
pub mod dlq;
pub mod durability;
pub mod import_line;
pub mod metrics;
pub mod offsets;
pub mod pipeline;
pub mod rollup;
pub mod sink;
pub mod source;
pub mod synth;
pub mod transform;
