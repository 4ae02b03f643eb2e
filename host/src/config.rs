//! Every setting of the host, read from flags, the environment and `.env`
//! (the environment wins over `.env`; a flag wins over both).
//!
//! The names and defaults are the original kafka2vm tool's, so its `.env`
//! files work unchanged.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// A setting that turned out wrong after start-up checks (e.g. the import
/// URL answered 400): the binary exits 2 as for any configuration error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    Wasm,
    Native,
    CountOnly,
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
}

#[derive(Debug, Args)]
pub struct TransformCheckArgs {
    pub module: PathBuf,
    #[command(flatten)]
    pub rules: RulesConfig,
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

    /// Topic pmacct writes JSON records to.
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

    /// librdkafka session.timeout.ms: how fast a dead consumer's partitions move.
    #[arg(long, env = "KAFKA_SESSION_TIMEOUT_MS", default_value_t = 45_000)]
    pub kafka_session_timeout_ms: u32,

    /// VictoriaMetrics base URL, e.g. http://victoria:8428.
    #[arg(long, env = "VM_URL", required = true, value_parser = parse_url)]
    pub vm_url: Option<reqwest::Url>,

    /// Verify VictoriaMetrics' TLS certificate: YES/NO (also true/false/1/0).
    #[arg(long, env = "VM_SSL_VERIFY", default_value = "YES", value_parser = parse_yes_no, action = clap::ArgAction::Set)]
    pub vm_ssl_verify: bool,

    /// Import path appended to VM_URL.
    #[arg(long, env = "VM_IMPORT_PATH", default_value = "/api/v1/import")]
    pub vm_import_path: String,

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

    /// Timeout of one request to VictoriaMetrics, seconds.
    #[arg(long, env = "VM_REQUEST_TIMEOUT", default_value = "30", value_parser = parse_seconds)]
    pub vm_request_timeout: Duration,

    /// Port of the admin HTTP server (/metrics, /health, /reload).
    #[arg(long, env = "PROMETHEUS_CLIENT_PORT", default_value_t = 9003)]
    pub prometheus_client_port: u16,

    /// Address the admin HTTP server binds to.
    #[arg(long, env = "ADMIN_BIND", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub admin_bind: IpAddr,

    /// A transform module (.wasm); without it the embedded default transform runs.
    #[arg(long, env = "TRANSFORM_PATH")]
    pub transform_path: Option<PathBuf>,

    /// Which engine runs the transform: `wasm` (TRANSFORM_PATH, or the
    /// embedded default rules), `native` (the default rules compiled into the
    /// host: faster, not reloadable, ignores TRANSFORM_PATH), or `count-only`
    /// (writes nothing; measures what the rest of the host costs).
    #[arg(long, env = "TRANSFORM_ENGINE", value_enum, default_value = "wasm")]
    pub transform_engine: EngineKind,

    /// Largest time one transform call may run before it is interrupted, ms
    /// (0: never interrupt; a looping module then stalls the pipeline).
    #[arg(long, env = "TRANSFORM_TIMEOUT_MS", default_value_t = 2000)]
    pub transform_timeout_ms: u64,

    /// Largest linear memory a transform may grow to, MiB.
    #[arg(long, env = "TRANSFORM_MAX_MEMORY_MB", default_value_t = 64)]
    pub transform_max_memory_mb: u64,

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
        let mut props = Vec::new();
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
        self.import_url()?;
        self.rules.transform_init()?;
        self.kafka_properties()?;
        if self.transform_engine != EngineKind::Wasm && self.transform_path.is_some() {
            return Err("TRANSFORM_ENGINE: a TRANSFORM_PATH module needs the wasm engine".into());
        }
        Ok(())
    }

    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::new(self.admin_bind, self.prometheus_client_port)
    }

    /// VM_URL and VM_IMPORT_PATH joined with exactly one slash.
    pub fn import_url(&self) -> Result<reqwest::Url, String> {
        let base = self.vm_url.as_ref().ok_or("VM_URL: required")?;
        let joined = format!(
            "{}/{}",
            base.as_str().trim_end_matches('/'),
            self.vm_import_path.trim_start_matches('/')
        );
        reqwest::Url::parse(&joined).map_err(|e| format!("VM_IMPORT_PATH: {joined:?}: {e}"))
    }
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
    fn subcommands_need_no_kafka_settings() {
        let cli = parse(&["transform", "check", "x.wasm"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Transform(TransformCommand::Check(_)))
        ));
    }
}
