//! pmacct-kafka-vm: pmacct flow records from Kafka to VictoriaMetrics (or
//! any remote-write receiver), through a hot-reloadable WASM transform.
//!
//! One module a stage: [`source`] (Kafka) → [`transform`] (WASM) →
//! [`batch`] (with [`rollup`]) → [`sink`] (the store), with [`offsets`]
//! deciding what may be committed, [`durability`] when an accepted batch is
//! safe, [`pipeline`] wiring them, [`config`], [`admin`] HTTP and
//! [`metrics`] beside them. docs/architecture.md tells the threads.

pub mod admin;
pub mod admin_listener;
pub mod app;
pub mod avro;
pub mod batch;
pub mod chunk;
pub mod config;
pub mod dlq;
pub mod durability;
pub mod error;
pub mod event_time;
pub mod health;
pub mod health_cli;
pub mod import_line;
pub mod kafka_health;
pub mod kafka_log;
pub mod kafka_properties;
pub mod logging;
pub mod markers;
pub mod metrics;
pub mod offsets;
pub mod pipeline;
pub mod redact;
pub mod retry;
pub mod rollup;
pub mod signals;
pub mod sink;
pub mod source;
pub mod stamp_zone;
pub mod stop;
pub mod tap;
pub mod tap_cli;
pub mod throttle;
pub mod transform;
pub mod transform_cli;
