//! The host's flags and environment variables, as clap reads them: names,
//! defaults and help, nothing derived. [`Settings`](super::Settings) turns
//! them into typed values once.
//!
//! The names and defaults are the original kafka2vm tool's, so its `.env`
//! files work unchanged.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use crate::transform::EngineKind;
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "pmacct-kafka-vm",
    version,
    about = "pmacct flow records from Kafka to VictoriaMetrics, through a hot-reloadable WASM transform",
    long_about = "pmacct flow records from Kafka to VictoriaMetrics, through a hot-reloadable WASM transform.\n\n\
        With no subcommand it runs the pipeline. Every option can be given as a flag or as the \
        environment variable shown beside it; a .env file in the working directory is read too \
        (real environment variables win).",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Log lines as text or as JSON objects (levels via RUST_LOG, default info).
    #[arg(long, env = "LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunFlags,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where samples go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputKind {
    VmImport,
    RemoteWrite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    None,
    Gzip,
}

// Parsed once at start-up: the size of the value does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with transform modules without Kafka or VictoriaMetrics.
    #[command(subcommand)]
    Transform(TransformCommand),
    /// Watch what flows through a running host: records and the samples
    /// each produced (or why it was rejected), from its `GET /tap`, one
    /// JSON line each, until N were shown.
    Tap(TapArgs),
    /// Exit 0 if the host on this machine answers `/health/live` within
    /// 2 s, else 1: a container's HEALTHCHECK without a shell or curl.
    Health(HealthArgs),
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The admin port of the host to ask.
    #[arg(long, env = "PROMETHEUS_CLIENT_PORT", default_value_t = 9003)]
    pub prometheus_client_port: u16,
    /// The address it binds to (asked on loopback when it binds every one).
    #[arg(long, env = "ADMIN_BIND", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub admin_bind: IpAddr,
}

#[derive(Debug, Args)]
pub struct TapArgs {
    /// The host's admin address.
    #[arg(long, default_value = "http://127.0.0.1:9003")]
    pub admin: String,
    /// Records to show, then exit.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// The host's ADMIN_TOKEN (the tap is disabled without one).
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TransformCommand {
    /// Run pmacct JSON lines through a transform and print the samples in
    /// VictoriaMetrics' import format (stdout) and the rejected records
    /// (stderr). Exits 1 when any record was rejected.
    Test(TransformTestArgs),
    /// Load a module, check it against the contract and initialise it.
    Check(TransformCheckArgs),
    /// Write a new transform project in DIR: the default rules in Rust,
    /// Python or JavaScript, the SDK and contract beside them, sample
    /// records and the samples they must give. Needs no checkout of this
    /// repository.
    New(TransformNewArgs),
    /// Build the project in DIR into a module with its language's
    /// toolchain, check it, and print its path, size and SHA-256.
    Build(TransformBuildArgs),
    /// Time a module on records under the pipeline's limits: records/s,
    /// µs per record, load time with and without the module cache, and the
    /// instance's memory. Exits 1 when the module faults or is rejected.
    Bench(TransformBenchArgs),
}

/// The language of a transform project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Rust,
    Python,
    #[value(alias = "javascript")]
    Js,
}

#[derive(Debug, Args)]
pub struct TransformNewArgs {
    /// The project's folder: created, and must not exist or be empty.
    pub dir: PathBuf,
    #[arg(long, value_enum)]
    pub lang: Language,
}

#[derive(Debug, Args)]
pub struct TransformBuildArgs {
    /// The project's folder (made by `transform new`).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Where to write the module (default: DIR/NAME.wasm).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub rules: RulesFlags,
    #[command(flatten)]
    pub limits: LimitsFlags,
}

#[derive(Debug, Args)]
pub struct TransformBenchArgs {
    /// The module; without it, the embedded default transform.
    #[arg(long)]
    pub module: Option<PathBuf>,
    /// JSON lines, read in a loop up to --records (default: the sample
    /// records `transform new` writes).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Records to transform, in calls of up to 1 024 as the pipeline makes.
    #[arg(long, default_value_t = 100_000)]
    pub records: usize,
    #[command(flatten)]
    pub rules: RulesFlags,
    #[command(flatten)]
    pub limits: LimitsFlags,
}

#[derive(Debug, Args)]
pub struct TransformTestArgs {
    /// The module; without it, the embedded default transform.
    #[arg(long)]
    pub module: Option<PathBuf>,
    /// JSON lines to read; standard input when absent or `-`.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Compare the samples with this file's instead of printing them: exit
    /// 0 when equal (rejected records are still listed on stderr), 1 with
    /// the first difference.
    #[arg(long)]
    pub expect: Option<PathBuf>,
    #[command(flatten)]
    pub rules: RulesFlags,
    #[command(flatten)]
    pub limits: LimitsFlags,
    #[command(flatten)]
    pub enrich: EnrichFlags,

    #[command(flatten)]
    pub rollup: RollupFlags,
}

/// Enrichment: the tables the host serves, the labels it adds.
#[derive(Debug, Clone, Args)]
pub struct EnrichFlags {
    /// Enrichment tables the host serves, to ENRICH_LABELS and to
    /// modules' `lookup`: `;`-separated NAME=KIND:PATH with KIND `mmdb` (a MaxMind DB: GeoLite2, DB-IP, ip-location-db),
    /// `csv` (a header row, then a prefix and its fields a row) or
    /// `networks` (pmacct's networks_file; fields `net`, `as`, `peer_as`,
    /// `nexthop`). Each is
    /// loaded again when its file changes; one that does not load keeps
    /// the table loaded before. Example:
    /// `asn=mmdb:/data/asn.mmdb;cust=csv:/etc/pmacct/customers.csv`.
    #[arg(long, env = "ENRICH_TABLES", default_value = "")]
    pub enrich_tables: String,

    /// Labels added to every record from ENRICH_TABLES, before the
    /// transform sees it: `,`-separated LABEL=TABLE:FIELD.PATH, the address
    /// in the record's FIELD looked up in TABLE and the value at PATH of
    /// the entry found (a MaxMind DB's keys, dot-separated; a CSV's
    /// column). The default rules make them labels of every sample. A
    /// record without the address, or with no entry for it, gets no such
    /// label. Example:
    /// `src_asn=asn:ip_src.autonomous_system_number,dst_country=country:ip_dst.country.iso_code`.
    #[arg(long, env = "ENRICH_LABELS", default_value = "")]
    pub enrich_labels: String,
}

#[derive(Debug, Args)]
pub struct TransformCheckArgs {
    pub module: PathBuf,
    #[command(flatten)]
    pub rules: RulesFlags,
    #[command(flatten)]
    pub limits: LimitsFlags,

    #[command(flatten)]
    pub rollup: RollupFlags,
}

/// The sandbox of a transform module.
#[derive(Debug, Clone, Args)]
pub struct LimitsFlags {
    /// Largest time one transform call (up to 1 024 records) may run before
    /// it is interrupted, ms (0: never interrupt; a looping module then
    /// stalls the pipeline). Sized for Python and JavaScript modules, which
    /// take 25-30 ms for a full call; a Rust module takes about 1.5 ms.
    /// The limit is checked at every loop and call in the module, which
    /// costs a module about a fifth of its time (docs/performance.md).
    #[arg(long, env = "TRANSFORM_TIMEOUT_MS", default_value_t = 2000)]
    pub transform_timeout_ms: u64,

    /// Longest time a chunk whose transform faulted may take, ms: faults
    /// are isolated to their records by splitting the chunk, and past this
    /// the chunk's remaining records are rejected unrun with the fault's
    /// reason. Bounds what a module that loops on every record costs (a
    /// chunk, not an hour) and keeps the consumer polling.
    #[arg(long, env = "TRANSFORM_FAULT_BUDGET_MS", default_value_t = 5000)]
    pub transform_fault_budget_ms: u64,

    /// Largest memory a transform instance may grow to, MiB: all its
    /// linear memories together. Sized for the garbage-collected heaps of
    /// Python and JavaScript modules (a JavaScript one settles between 64
    /// and 128); a Rust module needs a few MiB.
    #[arg(long, env = "TRANSFORM_MAX_MEMORY_MB", default_value_t = 128)]
    pub transform_max_memory_mb: u64,

    /// Largest output of one transform call (up to 1 024 records), MiB of
    /// samples (contract 2.0's lists, or 1.0's import lines). More is a
    /// fault like a trap: the chunk is split until
    /// the records that produce too much are alone, and those are rejected
    /// (`transform_output_too_large`). A record of the default rules makes
    /// about 0.5 KiB.
    #[arg(long, env = "TRANSFORM_MAX_OUTPUT_MB", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub transform_max_output_mb: u64,

    /// Write /tmp/perf-PID.map so that `perf record`/`perf report` name a
    /// module's functions instead of showing bare addresses: YES/NO. For
    /// profiling a transform; one line per function, written at load.
    #[arg(long, env = "TRANSFORM_PERF_MAP", default_value = "NO", value_parser = parse_yes_no, action = clap::ArgAction::Set)]
    pub transform_perf_map: bool,
}

/// Roll-up of samples that share a series and an interval.
#[derive(Debug, Clone, Args)]
pub struct RollupFlags {
    /// `none` writes every sample as the transform made it; `sum` adds up
    /// samples of one series and interval (ROLLUP_STEP) on the host and
    /// writes one sample for them, exact with VictoriaMetrics'
    /// deduplication on (see the README's Roll-up section).
    #[arg(long, env = "ROLLUP", value_enum, default_value = "none")]
    pub rollup: RollupMode,

    /// With ROLLUP=sum: the interval timestamps are floored to (`60s`,
    /// `5m`, `1h`; `0` keeps them, to the second).
    #[arg(long, env = "ROLLUP_STEP", default_value = "0", value_parser = parse_duration)]
    pub rollup_step: Duration,

    /// With ROLLUP=sum: an interval is written for good once its partition's
    /// newest record is this far past the interval's end; records later than
    /// that are rejected as `rollup_too_late`.
    #[arg(long, env = "ROLLUP_LATENESS", default_value = "2m", value_parser = parse_duration)]
    pub rollup_lateness: Duration,

    /// With ROLLUP=sum: most cells (series × interval × partition) kept;
    /// beyond it the oldest intervals are written for good early. About 150
    /// bytes a cell plus the series' labels.
    #[arg(long, env = "ROLLUP_MAX_CELLS", default_value_t = 500_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub rollup_max_cells: u64,

    /// With ROLLUP=sum: a partition with no record for this long has its
    /// open intervals written for good (later records for them are
    /// `rollup_too_late`): how long a quiet topic's last intervals wait.
    #[arg(long, env = "ROLLUP_IDLE_AFTER", default_value = "2m", value_parser = parse_duration)]
    pub rollup_idle_after: Duration,

    /// With ROLLUP=sum: also write growing sums before an interval is final
    /// (when the topic goes quiet and at a stop), for fresher dashboards:
    /// YES/NO. One series and timestamp is then written with several
    /// values, and only a store that keeps the largest of them (current
    /// VictoriaMetrics with deduplication, not 1.79 nor Prometheus) ends
    /// with the complete sum.
    #[arg(long, env = "ROLLUP_INTERIM_WRITES", default_value = "NO", value_parser = parse_yes_no, action = clap::ArgAction::Set)]
    pub rollup_interim_writes: bool,
}

/// Whether the default rules scale counters by the record's sampling rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Renormalize {
    None,
    #[value(name = "sampling_rate")]
    SamplingRate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RollupMode {
    None,
    Sum,
}

/// What the transform is told at `init`.
#[derive(Debug, Clone, Args)]
pub struct RulesFlags {
    /// Field that becomes the sample value and the metric name.
    #[arg(long, env = "VM_METRIC_NAME", default_value = "bytes")]
    pub vm_metric_name: String,

    /// Comma list of fields, one sample each, named after the field
    /// (the original tool's later name; overrides VM_METRIC_NAME when set).
    #[arg(long, env = "VM_METRICS_NAMES", value_delimiter = ',')]
    pub vm_metrics_names: Option<Vec<String>>,

    /// Comma list of fields never turned into labels.
    #[arg(
        long,
        env = "VM_AVOID_LABELS",
        default_value = "bytes,stamp_updated",
        value_delimiter = ','
    )]
    pub vm_avoid_labels: Vec<String>,

    /// `job` label of every sample (required to run; `transform test` uses "test").
    #[arg(long, env = "VM_JOB")]
    pub vm_job: Option<String>,

    /// `instance` label of every sample (required to run; `transform test` uses "test").
    #[arg(long, env = "VM_INSTANCE")]
    pub vm_instance: Option<String>,

    /// `sampling_rate`: the default rules multiply pmacct's counters
    /// (`bytes`, `packets`, `flows`) by each record's `sampling_rate` field
    /// (for collectors run without `nfacctd_renormalize` /
    /// `sfacctd_renormalize`; put `sampling_rate` in pmacct's `aggregate`).
    /// A rate of 0 (unknown) or 1, or none, leaves them as they are
    #[arg(long, env = "RENORMALIZE", value_enum, default_value = "none")]
    pub renormalize: Renormalize,

    /// Time zone of stamps pmacct writes without an offset (its default,
    /// `timestamps_utc: false`, is the collector's local time): `UTC`, an
    /// IANA name (`Europe/Paris`) or `local` (this host's `TZ` or
    /// /etc/localtime). In the autumn fold the earlier of the two hours is
    /// read. Stamps with an offset (`timestamps_rfc3339: true`) and epoch
    /// seconds are read as they say
    #[arg(long, env = "STAMP_TIMEZONE", default_value = "UTC")]
    pub stamp_timezone: String,

    /// Extra key=value entries for a custom transform's `init`, separated by
    /// `;`. A value `@PATH` is replaced by the file's contents, read by the
    /// host (e.g. `ports=drop;allow=@/etc/pmacct/allowed.txt`).
    #[arg(long, env = "TRANSFORM_CONFIG", value_delimiter = ';')]
    pub transform_config: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RunFlags {
    /// Comma-separated Kafka brokers (host:port).
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    pub kafka_bootstrap_servers: Option<String>,

    /// Topic pmacct writes JSON records to; a comma list for several, and an
    /// entry starting with `^` is a regular expression (`^pmacct-.*`).
    #[arg(long, env = "KAFKA_TOPIC")]
    pub kafka_topic: Option<String>,

    /// Kafka consumer group.
    #[arg(long, env = "KAFKA_CONSUMER_GROUP_ID", default_value = "kafka2vm")]
    pub kafka_consumer_group_id: String,

    /// Topic for records the transform rejected or VictoriaMetrics refused,
    /// produced unchanged with x-reason, x-detail and x-source-* headers.
    /// Without it they are counted (record_errors_total) and logged.
    #[arg(long, env = "KAFKA_DLQ_TOPIC")]
    pub kafka_dlq_topic: Option<String>,

    /// Any librdkafka property, as NAME=VALUE (repeatable). The environment
    /// form is one variable per property: KAFKA_PROPERTY_<NAME>, the name
    /// upper-cased with `.` as `_` (KAFKA_PROPERTY_SECURITY_PROTOCOL=ssl).
    #[arg(long = "kafka-property", value_name = "NAME=VALUE")]
    pub kafka_property: Vec<String>,

    /// librdkafka security.protocol: plaintext, ssl, sasl_plaintext or sasl_ssl.
    #[arg(long, env = "KAFKA_SECURITY_PROTOCOL")]
    pub kafka_security_protocol: Option<String>,

    /// SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long, env = "KAFKA_SASL_MECHANISM")]
    pub kafka_sasl_mechanism: Option<String>,

    /// SASL user name.
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,

    /// SASL password (masked in logs).
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub kafka_sasl_password: Option<String>,

    /// CA certificate(s) (PEM file) to verify the brokers with; without it
    /// the system's CA store.
    #[arg(long, env = "KAFKA_SSL_CA_LOCATION")]
    pub kafka_ssl_ca_location: Option<PathBuf>,

    /// Client certificate (PEM file), for brokers that require one.
    #[arg(long, env = "KAFKA_SSL_CERTIFICATE_LOCATION")]
    pub kafka_ssl_certificate_location: Option<PathBuf>,

    /// Client private key (PEM file).
    #[arg(long, env = "KAFKA_SSL_KEY_LOCATION")]
    pub kafka_ssl_key_location: Option<PathBuf>,

    /// Password of the client private key (masked in logs).
    #[arg(long, env = "KAFKA_SSL_KEY_PASSWORD", hide_env_values = true)]
    pub kafka_ssl_key_password: Option<String>,

    /// pmacct's `kafka_output: avro` with `avro_schema_file`: the schema
    /// file pmacct wrote (its `-acct_data` file). Messages are then Avro
    /// datums (several with kafka_multi_values), each read as the JSON
    /// record pmacct would have written
    #[arg(long, env = "AVRO_SCHEMA_FILE")]
    pub avro_schema_file: Option<PathBuf>,

    /// pmacct's `kafka_output: avro` with `kafka_avro_schema_registry`: the
    /// schema registry's URL. Messages are then in its wire format (a zero
    /// byte, a 4-byte schema id, Avro), each schema fetched once by id
    /// (GET /schemas/ids/ID); credentials in the URL are sent as basic auth
    /// (masked in logs)
    #[arg(long, env = "SCHEMA_REGISTRY_URL", value_parser = parse_url, hide_env_values = true)]
    pub schema_registry_url: Option<reqwest::Url>,

    /// librdkafka session.timeout.ms: how fast a dead consumer's partitions move.
    #[arg(long, env = "KAFKA_SESSION_TIMEOUT_MS", default_value_t = 45_000)]
    pub kafka_session_timeout_ms: u32,

    /// Where samples go: `vm-import` (VictoriaMetrics' JSON-lines import,
    /// VM_URL + VM_IMPORT_PATH) or `remote-write` (Prometheus remote write
    /// 1.0 to REMOTE_WRITE_URL: Prometheus, Mimir, Thanos Receive, Cortex,
    /// VictoriaMetrics). Authentication, VM_CA_FILE, VM_EXTRA_LABELS and the
    /// batching, retry and durability settings apply to both.
    #[arg(long, env = "OUTPUT", value_enum, default_value = "vm-import")]
    pub output: OutputKind,

    /// VictoriaMetrics base URL, e.g. http://victoria:8428 (required with
    /// OUTPUT=vm-import).
    #[arg(long, env = "VM_URL", value_parser = parse_url, hide_env_values = true)]
    pub vm_url: Option<reqwest::Url>,

    /// Remote-write endpoint (required with OUTPUT=remote-write), e.g.
    /// http://prometheus:9090/api/v1/write,
    /// http://vminsert:8480/insert/0/prometheus/api/v1/write, or Mimir's
    /// http://mimir:8080/api/v1/push.
    #[arg(long, env = "REMOTE_WRITE_URL", value_parser = parse_url, hide_env_values = true)]
    pub remote_write_url: Option<reqwest::Url>,

    /// Compression of import bodies (OUTPUT=vm-import): `gzip` (level 1,
    /// about a tenth of the bytes on the wire) or `none`. Remote write is
    /// always snappy-compressed.
    #[arg(long, env = "VM_COMPRESSION", value_enum, default_value = "gzip")]
    pub vm_compression: Compression,

    /// Verify VictoriaMetrics' TLS certificate: YES/NO (also true/false/1/0).
    #[arg(long, env = "VM_SSL_VERIFY", default_value = "YES", value_parser = parse_yes_no, action = clap::ArgAction::Set)]
    pub vm_ssl_verify: bool,

    /// Import path appended to VM_URL; for a cluster's vminsert
    /// `/insert/<tenant>/prometheus/api/v1/import`.
    #[arg(long, env = "VM_IMPORT_PATH", default_value = "/api/v1/import")]
    pub vm_import_path: String,

    /// Basic-auth user for VictoriaMetrics (or vmauth in front of it).
    #[arg(long, env = "VM_USERNAME")]
    pub vm_username: Option<String>,

    /// Basic-auth password (masked in logs).
    #[arg(long, env = "VM_PASSWORD", hide_env_values = true)]
    pub vm_password: Option<String>,

    /// Bearer token sent as `Authorization: Bearer ...` (masked in logs).
    #[arg(long, env = "VM_BEARER_TOKEN", hide_env_values = true)]
    pub vm_bearer_token: Option<String>,

    /// File holding the bearer token, read again on every change (rotated
    /// secrets, Kubernetes projected tokens).
    #[arg(long, env = "VM_BEARER_TOKEN_FILE")]
    pub vm_bearer_token_file: Option<PathBuf>,

    /// CA certificate(s) (PEM file) trusted for VictoriaMetrics' TLS, in
    /// addition to the system's.
    #[arg(long, env = "VM_CA_FILE")]
    pub vm_ca_file: Option<PathBuf>,

    /// Labels added to every sample, `name=value,...` (VictoriaMetrics'
    /// `extra_label`; they override labels of the same name).
    #[arg(long, env = "VM_EXTRA_LABELS", value_delimiter = ',')]
    pub vm_extra_labels: Vec<String>,

    /// Flush a batch when it holds this many samples.
    #[arg(long, env = "VM_MAX_SAMPLES_PER_SEND", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub vm_max_samples_per_send: u32,

    /// Flush a batch this many seconds after its first record, also when no
    /// further record arrives (fractions allowed).
    #[arg(long, env = "VM_MAX_TIME_TO_SEND", default_value = "10", value_parser = parse_seconds)]
    pub vm_max_time_to_send: Duration,

    /// Import requests sent at once. Offsets are still committed in order:
    /// a partition moves only past records whose batches all succeeded.
    #[arg(long, env = "VM_MAX_IN_FLIGHT", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub vm_max_in_flight: u32,

    /// Attempts at one batch before its records are given up as rejected
    /// (`vm_unavailable`: dead-lettered, or counted). 0: retry forever.
    #[arg(long, env = "VM_MAX_RETRIES", default_value_t = 0)]
    pub vm_max_retries: u32,

    /// How long after VictoriaMetrics accepted a batch its offsets stay
    /// uncommitted: a 2xx is durable only once VictoriaMetrics flushed
    /// (seconds later). If it restarts within this window, everything since
    /// the commit positions is delivered again. `0`: commit on acceptance.
    #[arg(long, env = "VM_DURABLE_AFTER", default_value = "15s", value_parser = parse_duration)]
    pub vm_durable_after: Duration,

    /// The store's own `/metrics` page, read once a second during the
    /// durability window to see whether the store restarted (its start
    /// time). Default: `/metrics` under VM_URL (or under REMOTE_WRITE_URL
    /// without its `/api/v1/...` or `/insert/...` path), path prefix kept.
    /// Behind a load balancer or vmauth, point it at the storing process.
    #[arg(long, env = "VM_STATUS_URL", value_parser = parse_url, hide_env_values = true)]
    pub vm_status_url: Option<reqwest::Url>,

    /// A record with a sample stamped further ahead of the host's clock
    /// than this is rejected as `future_timestamp` (stores drop such
    /// samples; under ROLLUP=sum it would close every open interval).
    #[arg(long, env = "MAX_FUTURE_SKEW", default_value = "10m", value_parser = parse_duration)]
    pub max_future_skew: Duration,

    /// Timeout of one request to VictoriaMetrics, seconds.
    #[arg(long, env = "VM_REQUEST_TIMEOUT", default_value = "30", value_parser = parse_seconds)]
    pub vm_request_timeout: Duration,

    /// Port of the admin HTTP server (/metrics, /health, /reload).
    #[arg(long, env = "PROMETHEUS_CLIENT_PORT", default_value_t = 9003)]
    pub prometheus_client_port: u16,

    /// Address the admin HTTP server binds to.
    #[arg(long, env = "ADMIN_BIND", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub admin_bind: IpAddr,

    /// Token `POST /reload` requires as `Authorization: Bearer ...`; without
    /// it `POST /reload` is disabled (403) (masked in logs).
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// A transform module (.wasm); without it the embedded default transform runs.
    #[arg(long, env = "TRANSFORM_PATH")]
    pub transform_path: Option<PathBuf>,

    /// Which engine runs the transform: `wasm` (TRANSFORM_PATH, or the
    /// embedded default rules), `native` (the default rules compiled into the
    /// host: faster, not reloadable, ignores TRANSFORM_PATH), or `count-only`
    /// (writes nothing; measures what the rest of the host costs).
    #[arg(long, env = "TRANSFORM_ENGINE", value_enum, default_value = "wasm")]
    pub transform_engine: EngineKind,

    /// Folder where compiled modules are kept, so that a module compiled
    /// once loads in milliseconds at the next start or reload; `off`
    /// compiles every time. Default: $XDG_CACHE_HOME/pmacct-kafka-vm/modules,
    /// else ~/.cache/pmacct-kafka-vm/modules (without either, no cache). It must belong
    /// to the host's user and be writable by no one else, or the host
    /// refuses to start: what is in it runs as compiled code.
    #[arg(long, env = "TRANSFORM_CACHE_DIR")]
    pub transform_cache_dir: Option<PathBuf>,

    #[command(flatten)]
    pub limits: LimitsFlags,

    #[command(flatten)]
    pub rollup: RollupFlags,

    #[command(flatten)]
    pub enrich: EnrichFlags,

    /// Wait this long for in-flight sends at shutdown before giving up
    /// (their records stay uncommitted and are read again), seconds.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "30", value_parser = parse_seconds)]
    pub shutdown_timeout: Duration,

    #[command(flatten)]
    pub rules: RulesFlags,
}

pub(super) fn parse_url(s: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(s.trim()).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!("scheme {other:?} is not http or https")),
    }
}

/// YES/NO as the original tool wrote it, and the usual spellings of a boolean.
pub fn parse_yes_no(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "yes" | "y" | "true" | "1" | "on" => Ok(true),
        "no" | "n" | "false" | "0" | "off" => Ok(false),
        _ => Err("expected YES or NO (or true/false, 1/0)".into()),
    }
}

/// `90`, `90s`, `500ms`, `5m`, `1h`, `0`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| "expected a duration such as 90s, 500ms, 5m or 1h".to_string())?;
    let seconds = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown unit {other:?}: use ms, s, m or h")),
    };
    if !(seconds.is_finite() && seconds < 1e9) {
        return Err("duration out of range".into());
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| "expected a number of seconds".to_string())?;
    if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
        return Err("expected a positive number of seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_args::{parse, with, REQUIRED};

    #[test]
    fn defaults_are_the_original_tools() {
        let cli = parse(&REQUIRED).unwrap();
        assert_eq!(cli.run.kafka_consumer_group_id, "kafka2vm");
        assert_eq!(cli.run.vm_max_samples_per_send, 1000);
        assert_eq!(cli.run.vm_max_time_to_send, Duration::from_secs(10));
        assert_eq!(cli.run.prometheus_client_port, 9003);
        assert_eq!(cli.run.rules.metric_fields(), ["bytes"]);
        assert_eq!(cli.run.rules.vm_avoid_labels, ["bytes", "stamp_updated"]);
        assert!(!cli.run.vm_ssl_verify);
    }

    #[test]
    fn metrics_names_overrides_metric_name() {
        let cli = with(&["--vm-metrics-names=bytes, packets"]);
        assert_eq!(cli.run.rules.metric_fields(), ["bytes", "packets"]);
    }

    #[test]
    fn yes_no_spellings() {
        for (s, v) in [
            ("YES", true),
            ("no", false),
            ("True", true),
            ("0", false),
            ("1", true),
        ] {
            assert_eq!(parse_yes_no(s), Ok(v), "{s}");
        }
        assert!(parse_yes_no("maybe").is_err());
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("5 weeks").is_err());
    }

    /// clap names a flag's value after the field; with the variable of the
    /// same name, its one-line errors name what the user set.
    #[test]
    fn value_names_are_the_environment_variables() {
        let cmd = <Cli as clap::CommandFactory>::command();
        for arg in cmd.get_arguments() {
            if let Some(env) = arg.get_env() {
                assert_eq!(arg.get_id().as_str().to_uppercase(), env.to_string_lossy());
            }
        }
    }

    #[test]
    fn subcommands_need_no_kafka_settings() {
        let cli = parse(&["transform", "check", "x.wasm"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Transform(TransformCommand::Check(_)))
        ));
    }
}
