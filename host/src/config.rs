//! Every setting of the host, read from flags, the environment and `.env`
//! (the environment wins over `.env`; a flag wins over both).
//!
//! The names and defaults are the original kafka2vm tool's, so its `.env`
//! files work unchanged.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub use crate::error::ConfigError;
pub use crate::transform::EngineKind;

#[derive(Debug, Parser)]
#[command(
    name = "pmacct-kafka-vm",
    version,
    about = "pmacct flow records from Kafka to VictoriaMetrics, through a hot-reloadable WASM transform",
    long_about = "pmacct flow records from Kafka to VictoriaMetrics, through a hot-reloadable WASM transform.\n\n\
        With no subcommand it runs the pipeline. Every option can be given as a flag or as the \
        environment variable shown beside it; a .env file in the working directory is read too \
        (real environment variables win).",
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Log lines as text or as JSON objects (levels via RUST_LOG, default info).
    #[arg(long, env = "LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunConfig,
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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with transform modules without Kafka or VictoriaMetrics.
    #[command(subcommand)]
    Transform(TransformCommand),
}

#[derive(Debug, Subcommand)]
pub enum TransformCommand {
    /// Run pmacct JSON lines through a transform and print the samples in
    /// VictoriaMetrics' import format (stdout) and the rejected records
    /// (stderr). Exits 1 when any record was rejected.
    Test(TransformTestArgs),
    /// Load a module, check it against the contract and initialise it.
    Check(TransformCheckArgs),
}

#[derive(Debug, Args)]
pub struct TransformTestArgs {
    /// The module; without it, the embedded default transform.
    #[arg(long)]
    pub module: Option<PathBuf>,
    /// JSON lines to read; standard input when absent or `-`.
    #[arg(long)]
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub rules: RulesConfig,
    #[command(flatten)]
    pub limits: LimitsConfig,

    #[command(flatten)]
    pub rollup: RollupConfig,
}

#[derive(Debug, Args)]
pub struct TransformCheckArgs {
    pub module: PathBuf,
    #[command(flatten)]
    pub rules: RulesConfig,
    #[command(flatten)]
    pub limits: LimitsConfig,

    #[command(flatten)]
    pub rollup: RollupConfig,
}

/// The sandbox of a transform module.
#[derive(Debug, Clone, Args)]
pub struct LimitsConfig {
    /// Largest time one transform call (up to 1 024 records) may run before
    /// it is interrupted, ms (0: never interrupt; a looping module then
    /// stalls the pipeline). Sized for Python and JavaScript modules, which
    /// take 65-80 ms for a full call; a Rust module takes about 1 ms.
    #[arg(long, env = "TRANSFORM_TIMEOUT_MS", default_value_t = 2000)]
    pub transform_timeout_ms: u64,

    /// Longest time a chunk whose transform faulted may take, ms: faults
    /// are isolated to their records by splitting the chunk, and past this
    /// the chunk's remaining records are rejected unrun with the fault's
    /// reason. Bounds what a module that loops on every record costs (a
    /// chunk, not an hour) and keeps the consumer polling.
    #[arg(long, env = "TRANSFORM_FAULT_BUDGET_MS", default_value_t = 5000)]
    pub transform_fault_budget_ms: u64,

    /// Largest linear memory a transform may grow to, MiB. Sized for the
    /// garbage-collected heaps of Python and JavaScript modules (a JavaScript
    /// one settles between 64 and 128); a Rust module needs a few MiB.
    #[arg(long, env = "TRANSFORM_MAX_MEMORY_MB", default_value_t = 128)]
    pub transform_max_memory_mb: u64,

    /// Write /tmp/perf-PID.map so that `perf record`/`perf report` name a
    /// module's functions instead of showing bare addresses: YES/NO. For
    /// profiling a transform; one line per function, written at load.
    #[arg(long, env = "TRANSFORM_PERF_MAP", default_value = "NO", value_parser = parse_yes_no, action = clap::ArgAction::Set)]
    pub transform_perf_map: bool,
}

/// Roll-up of samples that share a series and a time slot.
#[derive(Debug, Clone, Args)]
pub struct RollupConfig {
    /// `none` writes every sample as the transform made it; `sum` adds up
    /// samples of one series and time slot (ROLLUP_STEP) on the host and
    /// writes one sample for them, exact with VictoriaMetrics'
    /// deduplication on (see the README's Roll-up section).
    #[arg(long, env = "ROLLUP", value_enum, default_value = "none")]
    pub rollup: RollupMode,

    /// With ROLLUP=sum: the time slot timestamps are floored to (`60s`,
    /// `5m`, `1h`; `0` keeps them, to the second).
    #[arg(long, env = "ROLLUP_STEP", default_value = "0", value_parser = parse_duration)]
    pub rollup_step: Duration,

    /// With ROLLUP=sum: a time slot is written for good once its partition's
    /// newest record is this far past the slot's end; records later than
    /// that are rejected as `rollup_too_late`.
    #[arg(long, env = "ROLLUP_LATENESS", default_value = "2m", value_parser = parse_duration)]
    pub rollup_lateness: Duration,

    /// With ROLLUP=sum: most cells (series × time slot × partition) kept;
    /// beyond it the oldest slots are written for good early. About 150
    /// bytes a cell plus the series' labels.
    #[arg(long, env = "ROLLUP_MAX_CELLS", default_value_t = 500_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub rollup_max_cells: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RollupMode {
    None,
    Sum,
}

impl RollupConfig {
    /// The roll-up's settings, when it is on.
    pub fn settings(&self) -> Option<crate::rollup::Settings> {
        (self.rollup == RollupMode::Sum).then_some(crate::rollup::Settings {
            step: self.rollup_step,
            lateness: self.rollup_lateness,
            max_cells: self.rollup_max_cells as usize,
        })
    }
}

impl LimitsConfig {
    pub fn limits(&self) -> crate::transform::Limits {
        crate::transform::Limits {
            max_memory_bytes: (self.transform_max_memory_mb as usize) << 20,
            timeout: (self.transform_timeout_ms > 0)
                .then(|| Duration::from_millis(self.transform_timeout_ms)),
            perf_map: self.transform_perf_map,
            fault_budget: Duration::from_millis(self.transform_fault_budget_ms),
        }
    }
}

/// What the transform is told at `init`.
#[derive(Debug, Clone, Args)]
pub struct RulesConfig {
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

    /// Extra key=value entries for a custom transform's `init`, separated by
    /// `;`. A value `@PATH` is replaced by the file's contents, read by the
    /// host (e.g. `prefixes=@/etc/pmacct/customers.csv;default=unknown`).
    #[arg(long, env = "TRANSFORM_CONFIG", value_delimiter = ';')]
    pub transform_config: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RunConfig {
    /// Comma-separated Kafka brokers (host:port).
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS", required = true)]
    pub kafka_bootstrap_servers: Option<String>,

    /// Topic pmacct writes JSON records to; a comma list for several, and an
    /// entry starting with `^` is a regular expression (`^pmacct-.*`).
    #[arg(long, env = "KAFKA_TOPIC", required = true)]
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
    #[arg(long, env = "VM_URL", value_parser = parse_url)]
    pub vm_url: Option<reqwest::Url>,

    /// Remote-write endpoint (required with OUTPUT=remote-write), e.g.
    /// http://prometheus:9090/api/v1/write,
    /// http://vminsert:8480/insert/0/prometheus/api/v1/write, or Mimir's
    /// http://mimir:8080/api/v1/push.
    #[arg(long, env = "REMOTE_WRITE_URL", value_parser = parse_url)]
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
    /// it anyone who reaches the admin port can reload (masked in logs).
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

    #[command(flatten)]
    pub limits: LimitsConfig,

    #[command(flatten)]
    pub rollup: RollupConfig,

    /// Wait this long for in-flight sends at shutdown before giving up
    /// (their records stay uncommitted and are read again), seconds.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "30", value_parser = parse_seconds)]
    pub shutdown_timeout: Duration,

    #[command(flatten)]
    pub rules: RulesConfig,
}

impl RulesConfig {
    /// The fields that each become one sample per record.
    pub fn metric_fields(&self) -> Vec<String> {
        match &self.vm_metrics_names {
            Some(names) if names.iter().any(|n| !n.trim().is_empty()) => names
                .iter()
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect(),
            _ => vec![self.vm_metric_name.trim().to_string()],
        }
    }

    /// The `init` configuration of the transform.
    pub fn transform_init(&self) -> Result<Vec<(String, String)>, String> {
        let mut entries = vec![
            ("metric_fields".to_string(), self.metric_fields().join(",")),
            ("avoid_labels".to_string(), self.vm_avoid_labels.join(",")),
            (
                "job".to_string(),
                self.vm_job.clone().unwrap_or_else(|| "test".into()),
            ),
            (
                "instance".to_string(),
                self.vm_instance.clone().unwrap_or_else(|| "test".into()),
            ),
        ];
        for item in self
            .transform_config
            .iter()
            .filter(|s| !s.trim().is_empty())
        {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| format!("TRANSFORM_CONFIG: entry {item:?} is not key=value"))?;
            let (k, v) = (k.trim(), v.trim());
            // `key=@/path`: the host reads the file; a transform has no filesystem.
            let value = match v.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| format!("TRANSFORM_CONFIG: {k}: cannot read {path}: {e}"))?,
                None => v.to_string(),
            };
            entries.push((k.to_string(), value));
        }
        Ok(entries)
    }
}

impl RunConfig {
    /// librdkafka properties from `--kafka-property` and `KAFKA_PROPERTY_*`
    /// (flags win), each with where it came from for error messages.
    pub fn kafka_properties(&self) -> Result<Vec<(String, String, String)>, String> {
        let mut props: Vec<(String, String, String)> = self
            .kafka_security_properties()
            .into_iter()
            .filter_map(|(name, value, var)| {
                let value = value.filter(|v| !v.is_empty())?;
                Some((name.to_string(), value, var.to_string()))
            })
            .collect();
        // The generic pass-through comes last, so it can override the above.
        for (var, value) in std::env::vars() {
            if let Some(name) = var.strip_prefix("KAFKA_PROPERTY_") {
                let name = name.to_ascii_lowercase().replace('_', ".");
                props.push((name, value, var));
            }
        }
        for item in &self.kafka_property {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| format!("--kafka-property: {item:?} is not NAME=VALUE"))?;
            props.push((
                k.trim().to_string(),
                v.to_string(),
                format!("--kafka-property {k}"),
            ));
        }
        Ok(props)
    }

    /// The named Kafka security settings as (property, value, variable).
    fn kafka_security_properties(&self) -> [(&'static str, Option<String>, &'static str); 8] {
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        [
            (
                "security.protocol",
                self.kafka_security_protocol.clone(),
                "KAFKA_SECURITY_PROTOCOL",
            ),
            (
                "sasl.mechanisms",
                self.kafka_sasl_mechanism.clone(),
                "KAFKA_SASL_MECHANISM",
            ),
            (
                "sasl.username",
                self.kafka_sasl_username.clone(),
                "KAFKA_SASL_USERNAME",
            ),
            (
                "sasl.password",
                self.kafka_sasl_password.clone(),
                "KAFKA_SASL_PASSWORD",
            ),
            (
                "ssl.ca.location",
                self.kafka_ssl_ca_location.as_ref().map(path),
                "KAFKA_SSL_CA_LOCATION",
            ),
            (
                "ssl.certificate.location",
                self.kafka_ssl_certificate_location.as_ref().map(path),
                "KAFKA_SSL_CERTIFICATE_LOCATION",
            ),
            (
                "ssl.key.location",
                self.kafka_ssl_key_location.as_ref().map(path),
                "KAFKA_SSL_KEY_LOCATION",
            ),
            (
                "ssl.key.password",
                self.kafka_ssl_key_password.clone(),
                "KAFKA_SSL_KEY_PASSWORD",
            ),
        ]
    }

    /// What clap cannot say: settings required only to run, and values
    /// that are only wrong together. The error names the variable.
    pub fn validate(&self) -> Result<(), String> {
        for (var, v) in [
            ("VM_JOB", &self.rules.vm_job),
            ("VM_INSTANCE", &self.rules.vm_instance),
        ] {
            if v.as_deref().is_none_or(|s| s.trim().is_empty()) {
                return Err(format!(
                    "{var}: required (set it in the environment or .env)"
                ));
            }
        }
        for (var, v) in [
            ("KAFKA_BOOTSTRAP_SERVERS", &self.kafka_bootstrap_servers),
            ("KAFKA_TOPIC", &self.kafka_topic),
        ] {
            if v.as_deref().is_none_or(|s| s.trim().is_empty()) {
                return Err(format!(
                    "{var}: required (set it in the environment or .env)"
                ));
            }
        }
        if self.rules.metric_fields().iter().any(|f| f.is_empty()) {
            return Err("VM_METRIC_NAME: must name a field".into());
        }
        self.sink_url()?;
        self.extra_labels()?;
        if self.vm_password.is_some() && self.vm_username.is_none() {
            return Err("VM_PASSWORD: set VM_USERNAME too".into());
        }
        if self.vm_username.is_some()
            && (self.vm_bearer_token.is_some() || self.vm_bearer_token_file.is_some())
        {
            return Err(
                "VM_USERNAME: basic auth and VM_BEARER_TOKEN(_FILE) exclude each other".into(),
            );
        }
        if self.vm_bearer_token.is_some() && self.vm_bearer_token_file.is_some() {
            return Err("VM_BEARER_TOKEN: set it or VM_BEARER_TOKEN_FILE, not both".into());
        }
        if self.topics().is_empty() {
            return Err("KAFKA_TOPIC: names no topic".into());
        }
        let topics = self.topics();
        if self.rollup.rollup == RollupMode::Sum && (topics.len() > 1 || topics[0].starts_with('^'))
        {
            // Cells of different topics would share the partition's
            // timestamp slot, and hosts owning them would overwrite each other.
            return Err(
                "ROLLUP: sum needs exactly one KAFKA_TOPIC (not a list or a pattern)".into(),
            );
        }
        self.rules.transform_init()?;
        self.kafka_properties()?;
        if self.transform_engine != EngineKind::Wasm && self.transform_path.is_some() {
            return Err("TRANSFORM_ENGINE: a TRANSFORM_PATH module needs the wasm engine".into());
        }
        Ok(())
    }

    /// KAFKA_TOPIC's entries (names, or `^regex`).
    pub fn topics(&self) -> Vec<String> {
        self.kafka_topic
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect()
    }

    /// VM_EXTRA_LABELS as (name, value), names checked against Prometheus'
    /// label syntax (VictoriaMetrics would drop the whole request otherwise).
    pub fn extra_labels(&self) -> Result<Vec<(String, String)>, String> {
        let mut labels = Vec::new();
        for item in self.vm_extra_labels.iter().filter(|s| !s.trim().is_empty()) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| format!("VM_EXTRA_LABELS: {item:?} is not name=value"))?;
            let k = k.trim();
            let valid = k
                .chars()
                .enumerate()
                .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
            if k.is_empty() || !valid {
                return Err(format!("VM_EXTRA_LABELS: {k:?} is not a label name"));
            }
            labels.push((k.to_string(), v.trim().to_string()));
        }
        Ok(labels)
    }

    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::new(self.admin_bind, self.prometheus_client_port)
    }

    /// Where batches are POSTed: the import URL, or REMOTE_WRITE_URL.
    pub fn sink_url(&self) -> Result<reqwest::Url, String> {
        match self.output {
            OutputKind::VmImport => self.import_url(),
            OutputKind::RemoteWrite => self.remote_write_url.clone().ok_or_else(|| {
                "REMOTE_WRITE_URL: required with OUTPUT=remote-write (set it in the environment or .env)".into()
            }),
        }
    }

    /// The wire format of batches.
    pub fn format(&self) -> Result<crate::sink::Format, String> {
        Ok(match self.output {
            OutputKind::VmImport => crate::sink::Format::Import {
                gzip: self.vm_compression == Compression::Gzip,
            },
            OutputKind::RemoteWrite => crate::sink::Format::RemoteWrite {
                extra_labels: self.extra_labels()?,
            },
        })
    }

    /// VM_URL and VM_IMPORT_PATH joined with exactly one slash, with
    /// VM_EXTRA_LABELS as `extra_label` query arguments (VictoriaMetrics adds
    /// them to every sample: no cost per record here).
    pub fn import_url(&self) -> Result<reqwest::Url, String> {
        let base = self
            .vm_url
            .as_ref()
            .ok_or("VM_URL: required with OUTPUT=vm-import (set it in the environment or .env)")?;
        let joined = format!(
            "{}/{}",
            base.as_str().trim_end_matches('/'),
            self.vm_import_path.trim_start_matches('/')
        );
        let mut url =
            reqwest::Url::parse(&joined).map_err(|e| format!("VM_IMPORT_PATH: {joined:?}: {e}"))?;
        let extra = self.extra_labels()?;
        if !extra.is_empty() {
            let mut query = url.query_pairs_mut();
            for (k, v) in &extra {
                query.append_pair("extra_label", &format!("{k}={v}"));
            }
        }
        Ok(url)
    }
}

/// Settings whose values never appear in logs or in `--help`.
const SECRETS: &[&str] = &[
    "VM_PASSWORD",
    "VM_BEARER_TOKEN",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_KEY_PASSWORD",
    "ADMIN_TOKEN",
];

/// Needed to run, though not enforced by clap (subcommands do without).
const REQUIRED_TO_RUN: &[&str] = &["VM_JOB", "VM_INSTANCE"];

const MASK: &str = "***";

/// librdkafka properties that carry a secret (passwords, keys, JAAS, tokens).
fn is_secret_property(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "password",
        "secret",
        "jaas",
        "token",
        "key.pem",
        "oauthbearer.config",
    ]
    .iter()
    .any(|w| name.contains(w))
}

/// The effective configuration, one `(setting, value, origin)` per option
/// of the run, secrets masked: what start-up logs. `origin` is `flag`,
/// `env` (also `.env`), `default` or `unset`.
pub fn effective(matches: &clap::ArgMatches) -> Vec<(String, String, &'static str)> {
    use clap::parser::ValueSource;
    let cmd = <Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(env) = arg.get_env().map(|e| e.to_string_lossy().into_owned()) else {
            continue;
        };
        let raw: Option<Vec<String>> = matches
            .get_raw(id)
            .map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect());
        let origin = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => "flag",
            Some(ValueSource::EnvVariable) => "env",
            Some(ValueSource::DefaultValue) => "default",
            _ => "unset",
        };
        let value = match raw {
            None => String::new(),
            Some(_) if SECRETS.contains(&env.as_str()) => MASK.to_string(),
            Some(v) if env == "VM_URL" || env == "REMOTE_WRITE_URL" => {
                v.iter().map(|u| mask_url(u)).collect::<Vec<_>>().join(",")
            }
            Some(v) => v.join(","),
        };
        out.push((env, value, origin));
    }
    let mut props: Vec<(String, String, &'static str)> = std::env::vars()
        .filter(|(var, _)| var.starts_with("KAFKA_PROPERTY_"))
        .map(|(var, value)| {
            let secret = is_secret_property(&var.replace('_', "."));
            (var, if secret { MASK.to_string() } else { value }, "env")
        })
        .collect();
    props.sort();
    out.extend(props);
    if let Some(flags) = matches.get_raw("kafka_property") {
        for item in flags {
            let item = item.to_string_lossy();
            let (name, value) = item.split_once('=').unwrap_or((&item, ""));
            let value = if is_secret_property(name) {
                MASK
            } else {
                value
            };
            out.push((
                format!("--kafka-property {name}"),
                value.to_string(),
                "flag",
            ));
        }
    }
    out
}

/// A URL with its password (if any) replaced by the mask.
fn mask_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some(MASK));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// The README's configuration reference, generated from this struct (a test
/// keeps the README equal to it).
pub fn reference_markdown() -> String {
    let cmd = <Cli as clap::CommandFactory>::command();
    let mut out = String::from("| variable | flag | default | meaning |\n|---|---|---|---|\n");
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "help" || long == "version" {
            continue;
        }
        let env = match arg.get_env() {
            Some(e) => format!("`{}`", e.to_string_lossy()),
            None if long == "kafka-property" => "`KAFKA_PROPERTY_<NAME>`".to_string(),
            None => String::new(),
        };
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let env_name = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        let default = if arg.is_required_set()
            || env_name
                .as_deref()
                .is_some_and(|e| REQUIRED_TO_RUN.contains(&e))
        {
            "(required)".to_string()
        } else if defaults.is_empty() {
            String::new()
        } else {
            format!("`{}`", defaults.join(","))
        };
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace('|', "\\|");
        out.push_str(&format!("| {env} | `--{long}` | {default} | {help} |\n"));
    }
    out
}

fn parse_url(s: &str) -> Result<reqwest::Url, String> {
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

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("pmacct-kafka-vm").chain(args.iter().copied()))
    }

    const REQUIRED: [&str; 6] = [
        "--kafka-bootstrap-servers=b:9092",
        "--kafka-topic=t",
        "--vm-url=http://vm:8428/",
        "--vm-job=j",
        "--vm-instance=i",
        "--vm-ssl-verify=no",
    ];

    #[test]
    fn import_url_has_exactly_one_slash() {
        for (base, path) in [
            ("http://vm:8428", "/api/v1/import"),
            ("http://vm:8428/", "/api/v1/import"),
            ("http://vm:8428/", "api/v1/import"),
        ] {
            let mut args = REQUIRED.to_vec();
            let b = format!("--vm-url={base}");
            let p = format!("--vm-import-path={path}");
            args[2] = &b;
            args.push(&p);
            let cli = parse(&args).unwrap();
            assert_eq!(
                cli.run.import_url().unwrap().as_str(),
                "http://vm:8428/api/v1/import"
            );
        }
    }

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
        let mut args = REQUIRED.to_vec();
        args.push("--vm-metrics-names=bytes, packets");
        assert_eq!(
            parse(&args).unwrap().run.rules.metric_fields(),
            ["bytes", "packets"]
        );
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
    fn secrets_are_masked_in_the_effective_configuration() {
        let mut args = REQUIRED.to_vec();
        args[2] = "--vm-url=https://u:hunter2@vm:8428/";
        args.extend([
            "--vm-username=ops",
            "--vm-password=hunter2",
            "--admin-token=hunter2",
            "--kafka-sasl-password=hunter2",
            "--kafka-property=sasl.jaas.config=hunter2",
            "--kafka-property=fetch.min.bytes=1",
        ]);
        let matches = <Cli as clap::CommandFactory>::command()
            .try_get_matches_from(std::iter::once("x").chain(args.iter().copied()))
            .unwrap();
        let shown = effective(&matches);
        let text = format!("{shown:?}");
        assert!(!text.contains("hunter2"), "{text}");
        let get = |k: &str| shown.iter().find(|(n, _, _)| n == k).cloned().unwrap();
        assert_eq!(get("VM_PASSWORD").1, MASK);
        assert_eq!(
            get("VM_USERNAME"),
            ("VM_USERNAME".into(), "ops".into(), "flag")
        );
        assert_eq!(get("VM_URL").1, "https://u:***@vm:8428/");
        assert_eq!(get("KAFKA_CONSUMER_GROUP_ID").2, "default");
        assert_eq!(get("--kafka-property fetch.min.bytes").1, "1");
        assert_eq!(get("--kafka-property sasl.jaas.config").1, MASK);
        // Every secret option is in the list that masks it.
        for secret in SECRETS {
            assert!(shown.iter().any(|(n, _, _)| n == secret), "{secret}");
        }
    }

    #[test]
    fn help_hides_secret_values_from_the_environment() {
        let cmd = <Cli as clap::CommandFactory>::command();
        for arg in cmd.get_arguments() {
            if let Some(env) = arg.get_env() {
                let secret = SECRETS.contains(&env.to_string_lossy().as_ref());
                assert_eq!(arg.is_hide_env_values_set(), secret, "{env:?}");
            }
        }
    }

    #[test]
    fn extra_labels_become_query_arguments() {
        let mut args = REQUIRED.to_vec();
        args.push("--vm-extra-labels=site=par1, env=prod");
        let cli = parse(&args).unwrap();
        assert_eq!(
            cli.run.import_url().unwrap().as_str(),
            "http://vm:8428/api/v1/import?extra_label=site%3Dpar1&extra_label=env%3Dprod"
        );
        let mut args = REQUIRED.to_vec();
        args.push("--vm-extra-labels=1site=x");
        assert!(parse(&args).unwrap().run.validate().is_err());
    }

    #[test]
    fn topics_are_a_comma_list() {
        let mut args = REQUIRED.to_vec();
        args[1] = "--kafka-topic=a, ^pmacct-.*,";
        assert_eq!(parse(&args).unwrap().run.topics(), ["a", "^pmacct-.*"]);
    }

    #[test]
    fn explicit_kafka_security_settings_become_properties() {
        let mut args = REQUIRED.to_vec();
        args.extend([
            "--kafka-security-protocol=sasl_ssl",
            "--kafka-sasl-mechanism=SCRAM-SHA-512",
            "--kafka-sasl-username=u",
            "--kafka-property=sasl.username=override",
        ]);
        let props = parse(&args).unwrap().run.kafka_properties().unwrap();
        let names: Vec<_> = props.iter().map(|(n, v, _)| format!("{n}={v}")).collect();
        assert_eq!(
            names,
            [
                "security.protocol=sasl_ssl",
                "sasl.mechanisms=SCRAM-SHA-512",
                "sasl.username=u",
                "sasl.username=override"
            ]
        );
    }

    /// The README's reference is this struct's: regenerate it with
    /// `UPDATE_README=1 cargo test -p pmacct-kafka-vm --lib readme`.
    #[test]
    fn readme_configuration_reference_matches_the_options() {
        const START: &str = "<!-- configuration reference: generated from host/src/config.rs -->\n";
        const END: &str = "<!-- end of configuration reference -->";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let (Some(a), Some(b)) = (readme.find(START), readme.find(END)) else {
            panic!("README.md lacks the configuration reference markers");
        };
        let current = &readme[a + START.len()..b];
        let wanted = reference_markdown();
        if current != wanted {
            if std::env::var_os("UPDATE_README").is_some() {
                let updated = format!("{}{wanted}{}", &readme[..a + START.len()], &readme[b..]);
                std::fs::write(path, updated).unwrap();
            } else {
                panic!("README.md's configuration reference is out of date; run with UPDATE_README=1. Expected:\n{wanted}");
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
