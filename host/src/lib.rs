//! pmacct-kafka-vm: pmacct flow records from Kafka to VictoriaMetrics (or
//! any remote-write receiver), through a hot-reloadable WASM transform.
//!
//! One module a stage: [`source`] (Kafka) → [`transform`] (WASM) →
//! [`batch`] (with [`rollup`]) → [`sink`] (the store), with [`offsets`]
//! deciding what may be committed, [`durability`] when an accepted batch is
//! safe, [`pipeline`] wiring them, [`config`], [`admin`] HTTP and
//! [`metrics`] beside them. docs/architecture.md tells the threads.
//!
//! Modules are public only where the binary, the tests or the benchmarks
//! use them, so the compiler reports what nothing uses.

pub(crate) mod admin;
pub(crate) mod admin_listener;
pub mod app;
pub mod avro;
pub(crate) mod batch;
pub(crate) mod chunk;
pub mod config;
pub(crate) mod dlq;
pub(crate) mod durability;
pub mod enrich;
pub(crate) mod error;
pub(crate) mod event_time;
pub(crate) mod file_watch;
pub(crate) mod health;
pub mod health_cli;
pub(crate) mod kafka_health;
pub(crate) mod kafka_log;
pub(crate) mod kafka_properties;
pub mod logging;
pub(crate) mod markers;
pub mod metrics;
pub(crate) mod offsets;
pub(crate) mod pipeline;
pub(crate) mod redact;
pub(crate) mod retry;
pub(crate) mod rollup;
pub(crate) mod signals;
pub mod sink;
pub(crate) mod source;
pub(crate) mod stamp_zone;
pub(crate) mod stop;
pub(crate) mod store_client;
pub(crate) mod tap;
pub mod tap_cli;
pub(crate) mod throttle;
pub mod transform;
pub mod transform_cli;
