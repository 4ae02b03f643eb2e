//! Every metric the host exposes on `/metrics`, named in one place.

use std::collections::HashSet;
use std::sync::Mutex;

use prometheus::core::Collector;
use prometheus::{
    Counter, Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// A transform may invent error reasons; past this many distinct ones they
/// are counted as `other`, so a buggy module cannot explode the series count.
const MAX_REASONS: usize = 32;

pub struct Metrics {
    registry: Registry,
    /// The original tool's counter (samples accepted by VictoriaMetrics);
    /// kept under its name so existing dashboards keep working.
    pub samples_count: IntCounter,
    pub records_consumed: IntCounter,
    pub samples_written: IntCounter,
    pub body_bytes_sent: IntCounter,
    pub body_raw_bytes: IntCounter,
    pub batches_sent: IntCounter,
    pub send_failures: IntCounterVec,
    pub record_errors: IntCounterVec,
    pub send_duration: Histogram,
    pub transform_duration: Histogram,
    pub transform_cpu: Counter,
    pub transform_reloads: IntCounterVec,
    pub transform_faults: IntCounterVec,
    pub transform_info: IntGaugeVec,
    pub batches_in_flight: IntGauge,
    pub samples_in_flight: IntGauge,
    pub victoriametrics_up: IntGauge,
    pub kafka_errors: IntCounter,
    pub dead_letters: IntCounterVec,
    pub consumer_lag: IntGaugeVec,
    pub offsets: OffsetMetrics,
    pub rollup: RollupMetrics,
    pub encoding: EncodingMetrics,
    reasons: Mutex<HashSet<String>>,
}

/// What the offset tracker reports.
pub struct OffsetMetrics {
    pub uncommitted: IntGauge,
}

/// What `ROLLUP=sum` reports (all zero with `ROLLUP=none`).
pub struct RollupMetrics {
    pub open_cells: IntGauge,
    pub cells_written: IntCounter,
    pub late_samples: IntCounter,
    pub early_writes: IntCounter,
}

/// What putting batches in the wire format reports (remote write only).
pub struct EncodingMetrics {
    pub merged: IntCounter,
    pub unreadable: IntCounter,
}

impl EncodingMetrics {
    fn new(registry: &Registry) -> Self {
        let counter = |name: &str, help: &str| register(registry, IntCounter::new(name, help));
        EncodingMetrics {
            merged: counter(
                "remote_write_samples_merged_total",
                "Samples replaced by a later one of the same series and timestamp in the same batch (a remote-write receiver takes one value per series and timestamp; ROLLUP=sum adds them up instead).",
            ),
            unreadable: counter(
                "remote_write_lines_unreadable_total",
                "Lines a transform wrote that are not import lines (no __name__, a label value not a string, a value not a number): skipped, as VictoriaMetrics' import skips them.",
            ),
        }
    }
}

/// Every metric: made (the names and labels are ours, so valid),
/// registered once, and a handle kept.
fn register<C: Collector + Clone + 'static>(registry: &Registry, made: prometheus::Result<C>) -> C {
    let c = made.expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

impl OffsetMetrics {
    fn new(registry: &Registry) -> Self {
        OffsetMetrics {
            uncommitted: register(registry, IntGauge::new(
                "kafka_uncommitted_records",
                "Records read whose offsets cannot be committed yet (their batch or roll-up cell is not accepted yet): how far commits run behind reading.",
            )),
        }
    }
}

impl RollupMetrics {
    fn new(registry: &Registry) -> Self {
        let counter = |name: &str, help: &str| register(registry, IntCounter::new(name, help));
        RollupMetrics {
            open_cells: register(registry, IntGauge::new(
                "rollup_open_cells",
                "Roll-up cells (series x time slot x partition) held in memory.",
            )),
            cells_written: counter(
                "rollup_cells_written_total",
                "Roll-up cell sums written (a cell written again after late samples counts again).",
            ),
            late_samples: counter(
                "rollup_late_samples_total",
                "Samples added to a time slot already written once (its sum is written again; deduplication keeps the larger).",
            ),
            early_writes: counter(
                "rollup_early_writes_total",
                "Cells written for good before their time slot closed, because ROLLUP_MAX_CELLS was reached.",
            ),
        }
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| register(&registry, IntCounter::new(name, help));
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(&registry, IntCounterVec::new(Opts::new(name, help), labels))
        };
        let float_counter = |name: &str, help: &str| register(&registry, Counter::new(name, help));
        let gauge = |name: &str, help: &str| register(&registry, IntGauge::new(name, help));
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            register(&registry, IntGaugeVec::new(Opts::new(name, help), labels))
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            register(
                &registry,
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)),
            )
        };
        let m = Metrics {
            samples_count: counter(
                "samples_count_total",
                "Samples accepted by VictoriaMetrics (name kept from kafka2vm).",
            ),
            records_consumed: counter("records_consumed_total", "Records read from Kafka."),
            samples_written: counter(
                "samples_written_total",
                "Samples accepted by VictoriaMetrics.",
            ),
            body_bytes_sent: counter(
                "import_body_bytes_total",
                "Bytes of request bodies accepted by the store, as sent (compressed, or remote-write protobuf).",
            ),
            body_raw_bytes: counter(
                "import_body_raw_bytes_total",
                "Bytes of the import lines of accepted bodies, before compression or encoding.",
            ),
            batches_sent: counter("batches_sent_total", "Batches accepted by VictoriaMetrics."),
            send_failures: counter_vec(
                "send_failures_total",
                "Failed sends to VictoriaMetrics (each is retried), by kind.",
                &["kind"],
            ),
            record_errors: counter_vec(
                "record_errors_total",
                "Records that yielded no samples, by reason. Their offsets are committed.",
                &["reason"],
            ),
            send_duration: histogram(
                "send_duration_seconds",
                "Time of one successful import request.",
                prometheus::exponential_buckets(0.001, 2.0, 16).expect("valid buckets"),
            ),
            transform_duration: histogram(
                "transform_duration_seconds",
                "Time of one transform call over a chunk of records.",
                prometheus::exponential_buckets(0.000_05, 2.0, 16).expect("valid buckets"),
            ),
            transform_cpu: float_counter(
                "transform_cpu_seconds_total",
                "CPU time of the transform calls (the calling thread's: time the OS gave to other work while a call waited is not in it).",
            ),
            transform_faults: counter_vec(
                "transform_faults_total",
                "Transform calls that trapped, timed out or ran out of memory, by reason (each replaces the instance and splits the chunk; only records that fault alone are rejected).",
                &["reason"],
            ),
            transform_reloads: counter_vec(
                "transform_reloads_total",
                "Transform loads after start-up, by result: ok, error, unchanged (a file event with the module already loaded; nothing reloaded), or rolled_back (a new module failed on most records and its predecessor runs again).",
                &["result"],
            ),
            transform_info: gauge_vec(
                "transform_info",
                "The running transform: its source and SHA-256; the value is its load time (unix seconds).",
                &["source", "sha256"],
            ),
            batches_in_flight: gauge(
                "batches_in_flight",
                "Batches handed to the sink and not yet accepted.",
            ),
            samples_in_flight: gauge(
                "samples_in_flight",
                "Samples in batches handed to the sink and not yet accepted (buffered in memory).",
            ),
            victoriametrics_up: gauge(
                "victoriametrics_up",
                "1 while the last import request succeeded, 0 while sends fail.",
            ),
            kafka_errors: counter("kafka_errors_total", "Errors reported by the Kafka client."),
            dead_letters: counter_vec(
                "dead_letters_total",
                "Records produced to KAFKA_DLQ_TOPIC, by reason.",
                &["reason"],
            ),
            consumer_lag: gauge_vec(
                "kafka_consumer_lag",
                "Records behind the partition's end, by topic and partition (librdkafka statistics, every 15 s).",
                &["topic", "partition"],
            ),
            offsets: OffsetMetrics::new(&registry),
            rollup: RollupMetrics::new(&registry),
            encoding: EncodingMetrics::new(&registry),
            reasons: Mutex::new(HashSet::new()),
            registry,
        };
        for kind in ["connect", "timeout", "status"] {
            m.send_failures.with_label_values(&[kind]);
        }
        m.victoriametrics_up.set(1);
        for result in ["ok", "error", "unchanged", "rolled_back"] {
            m.transform_reloads.with_label_values(&[result]);
        }
        for reason in ["transform_trap", "transform_timeout", "transform_oom"] {
            m.transform_faults.with_label_values(&[reason]);
        }
        m
    }

    /// Count `n` rejected records under `reason`, sanitised and capped.
    pub fn record_error(&self, reason: &str, n: u64) {
        let clean: String = reason
            .chars()
            .take(48)
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let label = {
            let mut seen = self.reasons.lock().unwrap_or_else(|p| p.into_inner());
            if seen.contains(&clean) || seen.len() < MAX_REASONS {
                seen.insert(clean.clone());
                clean
            } else {
                "other".to_string()
            }
        };
        self.record_errors.with_label_values(&[&label]).inc_by(n);
    }

    /// Record which module now runs (one series at a time).
    pub fn set_transform(&self, source: &str, sha256: &str, loaded_unix: i64) {
        self.transform_info.reset();
        self.transform_info
            .with_label_values(&[source, sha256])
            .set(loaded_unix);
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding our own registry into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
