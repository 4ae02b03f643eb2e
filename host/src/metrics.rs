//! Every metric the host exposes on `/metrics`, named in one place.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Counter, Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// A transform may invent error reasons; past this many distinct ones they
/// are counted as `other`, so a buggy module cannot explode the series count.
const MAX_REASONS: usize = 32;

pub struct Metrics {
    registry: Registry,
    pub records_consumed: IntCounter,
    pub record_errors: IntCounterVec,
    pub batches_in_flight: IntGauge,
    pub samples_in_flight: IntGauge,
    pub victoriametrics_up: IntGauge,
    pub kafka_errors: IntCounter,
    pub input: InputMetrics,
    pub dead_letters: IntCounterVec,
    pub consumer_lag: IntGaugeVec,
    pub rebalances: IntCounterVec,
    pub sink: SinkMetrics,
    pub transform: TransformMetrics,
    pub offsets: OffsetMetrics,
    pub rollup: RollupMetrics,
    pub encoding: EncodingMetrics,
    pub durability: DurabilityMetrics,
    pub enrich: EnrichMetrics,
    reasons: Mutex<HashSet<String>>,
}

/// What the sink reports about accepted and failed requests.
pub struct SinkMetrics {
    /// Samples accepted by the store; also shown as the original tool's
    /// `samples_count_total`, so existing dashboards keep working.
    pub samples_written: IntCounter,
    pub body_bytes_sent: IntCounter,
    pub body_raw_bytes: IntCounter,
    pub batches_sent: IntCounter,
    pub send_failures: IntCounterVec,
    pub send_duration: Histogram,
}

/// What the transform stage reports.
pub struct TransformMetrics {
    pub duration: Histogram,
    pub cpu: Counter,
    pub reloads: IntCounterVec,
    pub module_cache: IntCounterVec,
    pub faults: IntCounterVec,
    pub info: IntGaugeVec,
}

/// Makes metrics and registers them in one registry.
struct Make<'r>(&'r Registry);

impl Make<'_> {
    fn counter(&self, name: &str, help: &str) -> IntCounter {
        register(self.0, IntCounter::new(name, help))
    }

    fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        register(self.0, IntCounterVec::new(Opts::new(name, help), labels))
    }

    fn float_counter(&self, name: &str, help: &str) -> Counter {
        register(self.0, Counter::new(name, help))
    }

    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        register(self.0, IntGauge::new(name, help))
    }

    fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        register(self.0, IntGaugeVec::new(Opts::new(name, help), labels))
    }

    /// Exponential buckets from `start`, doubling, 16 of them.
    fn histogram(&self, name: &str, help: &str, start: f64) -> Histogram {
        let buckets = prometheus::exponential_buckets(start, 2.0, 16).expect("valid buckets");
        register(
            self.0,
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)),
        )
    }
}

impl SinkMetrics {
    fn new(make: &Make<'_>) -> Self {
        let m = SinkMetrics {
            samples_written: make.counter(
                "samples_written_total",
                "Samples accepted by VictoriaMetrics.",
            ),
            body_bytes_sent: make.counter(
                "import_body_bytes_total",
                "Bytes of request bodies accepted by the store, as sent (compressed, or remote-write protobuf).",
            ),
            body_raw_bytes: make.counter(
                "import_body_raw_bytes_total",
                "Bytes of accepted bodies before compression: import lines, or remote write's protobuf.",
            ),
            batches_sent: make.counter("batches_sent_total", "Batches accepted by VictoriaMetrics."),
            send_failures: make.counter_vec(
                "send_failures_total",
                "Failed sends to VictoriaMetrics (each is retried), by kind.",
                &["kind"],
            ),
            send_duration: make.histogram(
                "send_duration_seconds",
                "Time of one successful import request.",
                0.001,
            ),
        };
        for kind in ["connect", "timeout", "status"] {
            m.send_failures.with_label_values(&[kind]);
        }
        register(
            make.0,
            Alias::new(
                "samples_count_total",
                "Samples accepted by VictoriaMetrics (kafka2vm's name of samples_written_total).",
                m.samples_written.clone(),
            ),
        );
        m
    }
}

/// A counter shown under a second name: one value, so the two can never
/// disagree.
#[derive(Clone)]
struct Alias {
    desc: Desc,
    counter: IntCounter,
}

impl Alias {
    fn new(name: &str, help: &str, counter: IntCounter) -> prometheus::Result<Self> {
        let desc = Desc::new(name.into(), help.into(), Vec::new(), HashMap::new())?;
        Ok(Alias { desc, counter })
    }
}

impl Collector for Alias {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families = self.counter.collect();
        for family in &mut families {
            family.set_name(self.desc.fq_name.clone());
            family.set_help(self.desc.help.clone());
        }
        families
    }
}

impl TransformMetrics {
    fn new(make: &Make<'_>) -> Self {
        let m = TransformMetrics {
            duration: make.histogram(
                "transform_duration_seconds",
                "Time of one transform call over a chunk of records.",
                0.000_05,
            ),
            cpu: make.float_counter(
                "transform_cpu_seconds_total",
                "CPU time of the transform calls (the calling thread's: time the OS gave to other work while a call waited is not in it).",
            ),
            faults: make.counter_vec(
                "transform_faults_total",
                "Transform calls that trapped, timed out, crossed a sandbox limit or returned bad output, by reason (each replaces the instance and splits the chunk; only records that fault alone are rejected).",
                &["reason"],
            ),
            reloads: make.counter_vec(
                "transform_reloads_total",
                "Transform loads after start-up, by result: ok, error, unchanged (a file event with the module already loaded; nothing reloaded), or rolled_back (a new module failed on most records and its predecessor runs again).",
                &["result"],
            ),
            module_cache: make.counter_vec(
                "transform_module_cache_total",
                "Lookups of a module's compiled code in TRANSFORM_CACHE_DIR, by result: hit, miss (compiled and written), or corrupt (an entry that failed its checks: logged, removed, compiled again).",
                &["result"],
            ),
            info: make.gauge_vec(
                "transform_info",
                "The running transform: its source, SHA-256 and the contract it was built against (2.0, or 1.0: import lines read into structure); the value is its load time (unix seconds).",
                &["source", "sha256", "contract"],
            ),
        };
        for result in ["ok", "error", "unchanged", "rolled_back"] {
            m.reloads.with_label_values(&[result]);
        }
        for result in ["hit", "miss", "corrupt"] {
            m.module_cache.with_label_values(&[result]);
        }
        // transform::Fault::REASONS (this module depends on none of the host).
        for reason in [
            "transform_trap",
            "transform_timeout",
            "transform_oom",
            "transform_limit",
            "transform_output_too_large",
            "transform_bad_output",
        ] {
            m.faults.with_label_values(&[reason]);
        }
        m
    }
}

/// What reading Kafka reports beyond records: messages, markers, what
/// cannot be decoded, and dead letters that did not fit.
pub struct InputMetrics {
    pub messages: IntCounter,
    pub unreadable: IntCounter,
    pub markers: IntCounterVec,
    pub dead_letters_truncated: IntCounter,
    pub dead_letters_unsent: IntCounter,
    pub schema_registry_requests: IntCounterVec,
}

impl InputMetrics {
    fn new(make: &Make<'_>) -> Self {
        let m = InputMetrics {
            messages: make.counter(
                "kafka_messages_total",
                "Kafka messages read: one holds several records with pmacct's kafka_multi_values, and a marker is a message but no record.",
            ),
            unreadable: make.counter(
                "kafka_unreadable_fetches_total",
                "Fetches of records the Kafka client cannot decode (corrupt or unknown compression): their partition does not advance past them; /health says so.",
            ),
            markers: make.counter_vec(
                "pmacct_markers_total",
                "pmacct's purge markers read (kafka_markers: true), by event_type: never records, never errors, committed like records.",
                &["event_type"],
            ),
            dead_letters_truncated: make.counter(
                "dead_letters_truncated_total",
                "Dead letters too large for the broker, produced cut short (headers x-truncated and x-original-size say so).",
            ),
            dead_letters_unsent: make.counter(
                "dead_letters_unsent_total",
                "Records the broker refused as dead letters for good (not a matter of size): logged, not dead-lettered, committed like the rest.",
            ),
            schema_registry_requests: make.counter_vec(
                "schema_registry_requests_total",
                "Schema lookups asked of SCHEMA_REGISTRY_URL (once per schema id), by result: ok, unusable (no such id, not Avro: its records are rejected as invalid_avro) or error (retried; reading waits).",
                &["result"],
            ),
        };
        for event_type in ["purge_init", "purge_close"] {
            m.markers.with_label_values(&[event_type]);
        }
        m
    }
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
    pub sums_refused: IntCounterVec,
}

/// What the durability window and the store's restart watch report.
pub struct DurabilityMetrics {
    pub status_up: IntGauge,
    pub status_failures: IntCounter,
    pub restarts: IntCounter,
    pub waiting: IntGauge,
}

impl DurabilityMetrics {
    fn new(make: &Make<'_>) -> Self {
        DurabilityMetrics {
            status_up: make.gauge(
                "store_status_up",
                "1 while the store's status page (VM_STATUS_URL) answers with its start time, 0 while it does not: accepted batches then stay uncommitted.",
            ),
            status_failures: make.counter(
                "store_status_failures_total",
                "Reads of the store's status page (VM_STATUS_URL) that failed.",
            ),
            restarts: make.counter(
                "store_restarts_total",
                "Restarts of the store seen on its status page; each makes the pipeline deliver again what was accepted but not yet durable.",
            ),
            waiting: make.gauge(
                "durability_window_batches",
                "Batches accepted by the store whose offsets wait to be durable (VM_DURABLE_AFTER, then a read of the store's status showing the same run).",
            ),
        }
    }
}

/// What the enrichment tables report (`ENRICH_TABLES`).
pub struct EnrichMetrics {
    pub reloads: IntCounterVec,
    pub entries: IntGaugeVec,
    pub lookups: IntCounterVec,
}

impl EnrichMetrics {
    fn new(make: &Make<'_>) -> Self {
        EnrichMetrics {
            reloads: make.counter_vec(
                "enrich_table_reloads_total",
                "Loads of an enrichment table after its file changed, by table and result (ok, or error: the table loaded before stays).",
                &["table", "result"],
            ),
            entries: make.gauge_vec(
                "enrich_table_entries",
                "Entries of each enrichment table in use: rows of a CSV, search-tree nodes of a MaxMind DB.",
                &["table"],
            ),
            lookups: make.counter_vec(
                "enrich_lookups_total",
                "Lookups of ENRICH_LABELS by table and result: hit (a label added), miss (no address in the record's field, no entry for it, or the record has the label already).",
                &["table", "result"],
            ),
        }
    }
}

/// What putting batches in the wire format reports (remote write only).
pub struct EncodingMetrics {
    pub merged: IntCounter,
}

impl EncodingMetrics {
    fn new(make: &Make<'_>) -> Self {
        EncodingMetrics {
            merged: make.counter(
                "remote_write_samples_merged_total",
                "Samples replaced by a later one of the same series and timestamp in the same batch (a remote-write receiver takes one value per series and timestamp; ROLLUP=sum adds them up instead).",
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
    fn new(make: &Make<'_>) -> Self {
        OffsetMetrics {
            uncommitted: make.gauge(
                "kafka_uncommitted_records",
                "Records read whose offsets cannot be committed yet (their batch or roll-up cell is not accepted yet): how far commits run behind reading.",
            ),
        }
    }
}

impl RollupMetrics {
    fn new(make: &Make<'_>) -> Self {
        RollupMetrics {
            open_cells: make.gauge(
                "rollup_open_cells",
                "Roll-up cells (series x interval x partition) held in memory.",
            ),
            cells_written: make.counter(
                "rollup_cells_written_total",
                "Roll-up cell sums written (a cell written again after late samples counts again).",
            ),
            late_samples: make.counter(
                "rollup_late_samples_total",
                "Samples added to an interval already written once (its sum is written again; deduplication keeps the larger).",
            ),
            sums_refused: make.counter_vec(
                "rollup_sums_refused_total",
                "Roll-up sums the store refused for good or that were given up (VM_MAX_RETRIES), by reason: dead-lettered as import lines when KAFKA_DLQ_TOPIC is set. Their records are committed; they are not record errors.",
                &["reason"],
            ),
            early_writes: make.counter(
                "rollup_early_writes_total",
                "Cells written for good before their interval closed, because ROLLUP_MAX_CELLS was reached.",
            ),
        }
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let make = Make(&registry);
        Metrics {
            records_consumed: make.counter(
                "records_consumed_total",
                "Records read from Kafka (each line of a multi-value message; markers are not records).",
            ),
            record_errors: make.counter_vec(
                "record_errors_total",
                "Records that yielded no samples, by reason. Their offsets are committed.",
                &["reason"],
            ),
            batches_in_flight: make.gauge(
                "batches_in_flight",
                "Batches handed to the sink and not yet accepted.",
            ),
            samples_in_flight: make.gauge(
                "samples_in_flight",
                "Samples in batches handed to the sink and not yet accepted (buffered in memory).",
            ),
            victoriametrics_up: make.gauge(
                "victoriametrics_up",
                "1 while the last import request succeeded, 0 while sends fail.",
            ),
            kafka_errors: make.counter("kafka_errors_total", "Errors reported by the Kafka client."),
            input: InputMetrics::new(&make),
            dead_letters: make.counter_vec(
                "dead_letters_total",
                "Records produced to KAFKA_DLQ_TOPIC, by reason.",
                &["reason"],
            ),
            consumer_lag: make.gauge_vec(
                "kafka_consumer_lag",
                "Records behind the partition's end, by topic and partition (librdkafka statistics, every 15 s).",
                &["topic", "partition"],
            ),
            rebalances: make.counter_vec(
                "kafka_rebalances_total",
                "Rebalances of this consumer, by event: assign (partitions given to it) or revoke; a host has joined its group once assign is 1 or more.",
                &["event"],
            ),
            sink: SinkMetrics::new(&make),
            transform: TransformMetrics::new(&make),
            offsets: OffsetMetrics::new(&make),
            rollup: RollupMetrics::new(&make),
            encoding: EncodingMetrics::new(&make),
            durability: DurabilityMetrics::new(&make),
            enrich: EnrichMetrics::new(&make),
            reasons: Mutex::new(HashSet::new()),
            registry,
        }
    }

    /// Count `n` roll-up sums refused under `reason` (the sink's own,
    /// fixed set of reasons).
    pub fn rollup_sums_refused(&self, reason: &str, n: u64) {
        self.rollup
            .sums_refused
            .with_label_values(&[reason])
            .inc_by(n);
    }

    /// Count `n` rejected records under `reason`, sanitised and capped.
    pub fn record_error(&self, reason: &str, n: u64) {
        let label = self.reason_label(reason);
        self.record_errors.with_label_values(&[&label]).inc_by(n);
    }

    /// Count a record produced to the dead-letter topic under `reason`,
    /// sanitised and capped as [`record_error`](Self::record_error) does.
    pub fn dead_letter(&self, reason: &str) {
        let label = self.reason_label(reason);
        self.dead_letters.with_label_values(&[&label]).inc();
    }

    /// `reason` as a label value: lower-case ASCII letters, digits and `_`,
    /// 48 characters at most, and `other` once [`MAX_REASONS`] distinct
    /// ones were seen (a module invents its reasons; both counters that
    /// carry them share the set).
    fn reason_label(&self, reason: &str) -> String {
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
        let mut seen = self.reasons.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(&clean) || seen.len() < MAX_REASONS {
            seen.insert(clean.clone());
            clean
        } else {
            "other".to_string()
        }
    }

    /// Record which module now runs (one series at a time).
    pub fn set_transform(&self, source: &str, sha256: &str, contract: &str, loaded_unix: i64) {
        self.transform.info.reset();
        self.transform
            .info
            .with_label_values(&[source, sha256, contract])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_count_total_is_samples_written_total() {
        let m = Metrics::new();
        m.sink.samples_written.inc_by(42);
        let page = m.render();
        for name in ["samples_written_total", "samples_count_total"] {
            assert!(page.contains(&format!("\n{name} 42\n")), "{name}: {page}");
            assert!(page.contains(&format!("# TYPE {name} counter")), "{page}");
        }
    }

    /// A module inventing reasons cannot add series without bound to
    /// either counter that carries them.
    #[test]
    fn reasons_are_capped_on_both_counters() {
        let m = Metrics::new();
        for i in 0..100 {
            m.record_error(&format!("Reason {i}!"), 1);
            m.dead_letter(&format!("Reason {i}!"));
        }
        let page = m.render();
        for name in ["record_errors_total", "dead_letters_total"] {
            let series = page
                .lines()
                .filter(|l| l.starts_with(&format!("{name}{{")))
                .count();
            assert_eq!(series, MAX_REASONS + 1, "{name}: {page}");
            assert!(
                page.contains(&format!("{name}{{reason=\"other\"}} 68")),
                "{page}"
            );
            assert!(
                page.contains(&format!("{name}{{reason=\"reason_0_\"}} 1")),
                "{page}"
            );
        }
    }
}
