//! The flags turned into typed values once, each stage's part apart, and
//! validated together: what clap cannot say (settings required only to run,
//! values wrong only together). Building them reads TRANSFORM_CONFIG's
//! `@file`s and the `KAFKA_PROPERTY_*` environment; nothing parses a flag
//! after start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::flags::{
    Compression, LimitsFlags, OutputKind, Renormalize, RollupFlags, RollupMode, RulesFlags,
    RunFlags,
};
use crate::admin::AdminSettings;
use crate::avro::AvroSettings;
use crate::batch::BatchSettings;
use crate::enrich::EnrichSettings;
use crate::error::Error;
use crate::kafka_properties::{operator_properties, KafkaProperties, KafkaProperty};
use crate::pipeline::DeliverySettings;
use crate::sink::{Format, SinkSettings};
use crate::source::SourceSettings;
use crate::store_client::{Auth, ClientSettings};
use crate::transform::{CacheDir, EngineKind, Limits, TransformSettings};

/// Everything the pipeline is built from.
pub struct Settings {
    pub source: SourceSettings,
    /// KAFKA_DLQ_TOPIC, when set.
    pub dead_letter_topic: Option<String>,
    pub sink: SinkSettings,
    /// How the sink and the restart watch reach the store.
    pub store_client: ClientSettings,
    pub batch: BatchSettings,
    pub delivery: DeliverySettings,
    pub admin: AdminSettings,
    pub transform: TransformSettings,
    /// ROLLUP=sum's settings; `None` with ROLLUP=none.
    pub rollup: Option<crate::rollup::Settings>,
    pub enrich: EnrichSettings,
}

impl TryFrom<&RunFlags> for Settings {
    type Error = Error;

    fn try_from(f: &RunFlags) -> Result<Self, Error> {
        let transform = transform(f)?;
        let source = source(f)?;
        check_rollup(&f.rollup, &source.topics)?;
        let sink = sink(f)?;
        Ok(Settings {
            store_client: ClientSettings {
                verify_tls: f.vm_ssl_verify,
                ca_file: f.vm_ca_file.clone(),
                timeout: f.vm_request_timeout,
                auth: auth(f)?,
            },
            source,
            dead_letter_topic: non_blank(&f.kafka_dlq_topic),
            batch: BatchSettings {
                max_samples: f.vm_max_samples_per_send,
                max_age: f.vm_max_time_to_send,
                max_future_skew: f.max_future_skew,
            },
            delivery: DeliverySettings {
                durable_after: f.vm_durable_after,
                status_url: status_url(f, &sink.url),
                max_in_flight: f.vm_max_in_flight as usize,
                shutdown_timeout: f.shutdown_timeout,
            },
            admin: AdminSettings {
                addr: SocketAddr::new(f.admin_bind, f.prometheus_client_port),
                token: non_blank(&f.admin_token).map(Arc::from),
            },
            transform,
            rollup: f.rollup.settings(),
            enrich: EnrichSettings::parse(&f.enrich.enrich_tables, &f.enrich.enrich_labels)
                .map_err(Error::Config)?,
            sink,
        })
    }
}

fn non_blank(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn required(var: &str, v: &Option<String>) -> Result<String, Error> {
    non_blank(v).ok_or_else(|| {
        Error::Config(format!(
            "{var}: required (set it in the environment or .env)"
        ))
    })
}

fn transform(f: &RunFlags) -> Result<TransformSettings, Error> {
    required("VM_JOB", &f.rules.vm_job)?;
    required("VM_INSTANCE", &f.rules.vm_instance)?;
    if f.rules.metric_fields().iter().any(|f| f.is_empty()) {
        return Err(Error::Config("VM_METRIC_NAME: must name a field".into()));
    }
    let engine = f.transform_engine;
    if engine != EngineKind::Wasm && f.transform_path.is_some() {
        return Err(Error::Config(
            "TRANSFORM_ENGINE: a TRANSFORM_PATH module needs the wasm engine".into(),
        ));
    }
    Ok(TransformSettings {
        path: f.transform_path.clone(),
        engine,
        limits: f.limits.limits(),
        init: f.rules.transform_init()?,
        cache: cache_dir(f.transform_cache_dir.as_deref()),
    })
}

/// TRANSFORM_CACHE_DIR, or the user's cache folder (XDG's, as absolute
/// paths only), or none.
fn cache_dir(set: Option<&std::path::Path>) -> CacheDir {
    match set {
        Some(p) if p.as_os_str() == "off" => CacheDir::Off,
        Some(p) => CacheDir::Set(p.to_path_buf()),
        None => {
            let absolute = |var: &str| {
                std::env::var_os(var)
                    .map(PathBuf::from)
                    .filter(|p| p.is_absolute())
            };
            absolute("XDG_CACHE_HOME")
                .or_else(|| absolute("HOME").map(|h| h.join(".cache")))
                .map_or(CacheDir::Off, |base| {
                    CacheDir::Default(base.join("pmacct-kafka-vm").join("modules"))
                })
        }
    }
}

fn source(f: &RunFlags) -> Result<SourceSettings, Error> {
    let brokers = required("KAFKA_BOOTSTRAP_SERVERS", &f.kafka_bootstrap_servers)?;
    let topics: Vec<String> = required("KAFKA_TOPIC", &f.kafka_topic)?
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if topics.is_empty() {
        return Err(Error::Config("KAFKA_TOPIC: names no topic".into()));
    }
    Ok(SourceSettings {
        brokers,
        topics,
        group: f.kafka_consumer_group_id.clone(),
        session_timeout_ms: f.kafka_session_timeout_ms,
        properties: kafka_properties(f)?,
        avro: avro(f)?,
    })
}

/// Avro input, when a schema file or a registry is set (not both).
fn avro(f: &RunFlags) -> Result<Option<AvroSettings>, Error> {
    match (&f.avro_schema_file, &f.schema_registry_url) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(Error::Config(
            "AVRO_SCHEMA_FILE: set it or SCHEMA_REGISTRY_URL, not both (pmacct writes one framing)"
                .into(),
        )),
        (Some(path), None) => AvroSettings::schema_file(path.clone())
            .map(Some)
            .map_err(|e| Error::Config(format!("AVRO_SCHEMA_FILE: {e}"))),
        (None, Some(url)) => Ok(Some(AvroSettings::Registry(url.clone()))),
    }
}

/// Cells of different topics would share a partition's intervals, and
/// hosts owning them would overwrite each other.
fn check_rollup(rollup: &RollupFlags, topics: &[String]) -> Result<(), Error> {
    if rollup.rollup == RollupMode::Sum && (topics.len() > 1 || topics[0].starts_with('^')) {
        return Err(Error::Config(
            "ROLLUP: sum needs exactly one KAFKA_TOPIC (not a list or a pattern)".into(),
        ));
    }
    Ok(())
}

fn sink(f: &RunFlags) -> Result<SinkSettings, Error> {
    let extra_labels = extra_labels(&f.vm_extra_labels)?;
    let (url, url_setting, format) = match f.output {
        OutputKind::VmImport => (
            import_url(f, &extra_labels)?,
            "VM_URL/VM_IMPORT_PATH",
            Format::Import {
                gzip: f.vm_compression == Compression::Gzip,
            },
        ),
        OutputKind::RemoteWrite => (
            f.remote_write_url.clone().ok_or_else(|| {
                Error::Config("REMOTE_WRITE_URL: required with OUTPUT=remote-write (set it in the environment or .env)".into())
            })?,
            "REMOTE_WRITE_URL",
            Format::RemoteWrite { extra_labels },
        ),
    };
    Ok(SinkSettings {
        url,
        url_setting,
        max_retries: f.vm_max_retries,
        format,
    })
}

/// Where the durability window reads the store's start time: none without
/// a window; VM_STATUS_URL; else `/metrics` beside the write path, under
/// the same path prefix (a gateway's `/vm/api/v1/import` gives
/// `/vm/metrics`, not the gateway's own `/metrics`).
fn status_url(f: &RunFlags, write: &reqwest::Url) -> Option<reqwest::Url> {
    if f.vm_durable_after.is_zero() {
        return None;
    }
    if let Some(url) = &f.vm_status_url {
        return Some(url.clone());
    }
    let mut url = write.clone();
    let path = write.path();
    let cut = ["/insert/", "/api/v1/"]
        .iter()
        .filter_map(|marker| path.find(marker))
        .min()
        .unwrap_or_else(|| path.trim_end_matches('/').len());
    let prefix = path[..cut].to_string();
    url.set_path(&format!("{prefix}/metrics"));
    url.set_query(None);
    url.set_fragment(None);
    Some(url)
}

/// VM_URL and VM_IMPORT_PATH joined with exactly one slash, with
/// VM_EXTRA_LABELS as `extra_label` query arguments (VictoriaMetrics adds
/// them to every sample: no cost per record here).
fn import_url(f: &RunFlags, extra: &[(String, String)]) -> Result<reqwest::Url, Error> {
    let base = f.vm_url.as_ref().ok_or_else(|| {
        Error::Config(
            "VM_URL: required with OUTPUT=vm-import (set it in the environment or .env)".into(),
        )
    })?;
    let joined = format!(
        "{}/{}",
        base.as_str().trim_end_matches('/'),
        f.vm_import_path.trim_start_matches('/')
    );
    let mut url = reqwest::Url::parse(&joined)
        .map_err(|e| Error::Config(format!("VM_IMPORT_PATH: {joined:?}: {e}")))?;
    if !extra.is_empty() {
        let mut query = url.query_pairs_mut();
        for (k, v) in extra {
            query.append_pair("extra_label", &format!("{k}={v}"));
        }
    }
    Ok(url)
}

/// VM_EXTRA_LABELS as (name, value), names checked against Prometheus'
/// label syntax (the store would drop the whole request otherwise).
fn extra_labels(items: &[String]) -> Result<Vec<(String, String)>, Error> {
    let mut labels = Vec::new();
    for item in items.iter().filter(|s| !s.trim().is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| Error::Config(format!("VM_EXTRA_LABELS: {item:?} is not name=value")))?;
        let k = k.trim();
        let valid = k
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
        if k.is_empty() || !valid {
            return Err(Error::Config(format!(
                "VM_EXTRA_LABELS: {k:?} is not a label name"
            )));
        }
        labels.push((k.to_string(), v.trim().to_string()));
    }
    Ok(labels)
}

fn auth(f: &RunFlags) -> Result<Auth, Error> {
    let bad = |msg: &str| Err(Error::Config(msg.into()));
    match (&f.vm_username, &f.vm_bearer_token, &f.vm_bearer_token_file) {
        (None, _, _) if f.vm_password.is_some() => bad("VM_PASSWORD: set VM_USERNAME too"),
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            bad("VM_USERNAME: basic auth and VM_BEARER_TOKEN(_FILE) exclude each other")
        }
        (None, Some(_), Some(_)) => {
            bad("VM_BEARER_TOKEN: set it or VM_BEARER_TOKEN_FILE, not both")
        }
        (Some(user), None, None) => Ok(Auth::Basic {
            user: user.clone(),
            password: f.vm_password.clone(),
        }),
        (None, Some(token), None) => Ok(Auth::Bearer(token.clone())),
        (None, None, Some(path)) => Ok(Auth::BearerFile(path.clone())),
        (None, None, None) => Ok(Auth::None),
    }
}

/// librdkafka properties: the named security settings, then
/// `KAFKA_PROPERTY_*`, then `--kafka-property` (a later one wins).
fn kafka_properties(f: &RunFlags) -> Result<KafkaProperties, Error> {
    let property = |name: &str, value: String, origin: String| KafkaProperty {
        name: name.to_string(),
        value,
        origin,
    };
    let mut props: Vec<KafkaProperty> = security_properties(f)
        .into_iter()
        .filter_map(|(name, value, var)| {
            let value = value.filter(|v| !v.is_empty())?;
            Some(property(name, value, var.to_string()))
        })
        .collect();
    let operator =
        operator_properties(std::env::vars(), &f.kafka_property).map_err(Error::Config)?;
    props.extend(operator.into_iter().map(|(p, _)| p));
    Ok(KafkaProperties(props))
}

/// The named Kafka security settings as (property, value, variable).
fn security_properties(f: &RunFlags) -> [(&'static str, Option<String>, &'static str); 8] {
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.to_string_lossy().into_owned());
    [
        (
            "security.protocol",
            f.kafka_security_protocol.clone(),
            "KAFKA_SECURITY_PROTOCOL",
        ),
        (
            "sasl.mechanisms",
            f.kafka_sasl_mechanism.clone(),
            "KAFKA_SASL_MECHANISM",
        ),
        (
            "sasl.username",
            f.kafka_sasl_username.clone(),
            "KAFKA_SASL_USERNAME",
        ),
        (
            "sasl.password",
            f.kafka_sasl_password.clone(),
            "KAFKA_SASL_PASSWORD",
        ),
        (
            "ssl.ca.location",
            path(&f.kafka_ssl_ca_location),
            "KAFKA_SSL_CA_LOCATION",
        ),
        (
            "ssl.certificate.location",
            path(&f.kafka_ssl_certificate_location),
            "KAFKA_SSL_CERTIFICATE_LOCATION",
        ),
        (
            "ssl.key.location",
            path(&f.kafka_ssl_key_location),
            "KAFKA_SSL_KEY_LOCATION",
        ),
        (
            "ssl.key.password",
            f.kafka_ssl_key_password.clone(),
            "KAFKA_SSL_KEY_PASSWORD",
        ),
    ]
}

impl RollupFlags {
    /// The roll-up's settings, when it is on.
    pub fn settings(&self) -> Option<crate::rollup::Settings> {
        (self.rollup == RollupMode::Sum).then_some(crate::rollup::Settings {
            step: self.rollup_step,
            lateness: self.rollup_lateness,
            max_cells: self.rollup_max_cells as usize,
            idle_after: self.rollup_idle_after,
            interim: self.rollup_interim_writes,
        })
    }
}

impl LimitsFlags {
    pub fn limits(&self) -> Limits {
        Limits {
            max_memory_bytes: (self.transform_max_memory_mb as usize) << 20,
            max_output_bytes: (self.transform_max_output_mb as usize) << 20,
            timeout: (self.transform_timeout_ms > 0)
                .then(|| Duration::from_millis(self.transform_timeout_ms)),
            perf_map: self.transform_perf_map,
            fault_budget: Duration::from_millis(self.transform_fault_budget_ms),
        }
    }
}

impl RulesFlags {
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
    pub fn transform_init(&self) -> Result<Vec<(String, String)>, Error> {
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
        if self.renormalize == Renormalize::SamplingRate {
            entries.push(("renormalize".to_string(), "sampling_rate".to_string()));
        }
        let zone = crate::stamp_zone::init_entries(&self.stamp_timezone)
            .map_err(|e| Error::Config(format!("STAMP_TIMEZONE: {e}")))?;
        entries.extend(zone);
        for item in self
            .transform_config
            .iter()
            .filter(|s| !s.trim().is_empty())
        {
            let (k, v) = item.split_once('=').ok_or_else(|| {
                Error::Config(format!("TRANSFORM_CONFIG: entry {item:?} is not key=value"))
            })?;
            let (k, v) = (k.trim(), v.trim());
            // `key=@/path`: the host reads the file; a transform has no filesystem.
            let value = match v.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path).map_err(|e| {
                    Error::Config(format!("TRANSFORM_CONFIG: {k}: cannot read {path}: {e}"))
                })?,
                None => v.to_string(),
            };
            entries.push((k.to_string(), value));
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_args::{parse, with, REQUIRED};

    fn settings(extra: &[&str]) -> Result<Settings, Error> {
        Settings::try_from(&with(extra).run)
    }

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
            let s = Settings::try_from(&parse(&args).unwrap().run).unwrap();
            assert_eq!(s.sink.url.as_str(), "http://vm:8428/api/v1/import");
        }
    }

    #[test]
    fn status_url_keeps_the_path_prefix() {
        let status = |extra: &[&str]| {
            settings(extra)
                .unwrap()
                .delivery
                .status_url
                .map(|u| u.to_string())
        };
        assert_eq!(status(&[]).as_deref(), Some("http://vm:8428/metrics"));
        let mut args = REQUIRED.to_vec();
        args[2] = "--vm-url=https://u:p@gw.example/vm/";
        args.push("--vm-extra-labels=a=b");
        let s = Settings::try_from(&parse(&args).unwrap().run).unwrap();
        assert_eq!(
            s.delivery.status_url.map(|u| u.to_string()).as_deref(),
            Some("https://u:p@gw.example/vm/metrics")
        );
        assert_eq!(
            status(&["--vm-import-path=/insert/0/prometheus/api/v1/import"]).as_deref(),
            Some("http://vm:8428/metrics")
        );
        assert_eq!(
            status(&["--vm-status-url=http://vmstorage:8482/metrics"]).as_deref(),
            Some("http://vmstorage:8482/metrics")
        );
        assert_eq!(status(&["--vm-durable-after=0"]), None);
    }

    #[test]
    fn extra_labels_become_query_arguments() {
        let s = settings(&["--vm-extra-labels=site=par1, env=prod"]).unwrap();
        assert_eq!(
            s.sink.url.as_str(),
            "http://vm:8428/api/v1/import?extra_label=site%3Dpar1&extra_label=env%3Dprod"
        );
        let e = settings(&["--vm-extra-labels=1site=x"]).err().unwrap();
        assert!(e.to_string().starts_with("VM_EXTRA_LABELS:"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn topics_are_a_comma_list() {
        let mut args = REQUIRED.to_vec();
        args[1] = "--kafka-topic=a, ^pmacct-.*,";
        let s = Settings::try_from(&parse(&args).unwrap().run).unwrap();
        assert_eq!(s.source.topics, ["a", "^pmacct-.*"]);
    }

    #[test]
    fn required_settings_are_named() {
        let mut args = REQUIRED.to_vec();
        args[3] = "--vm-job= ";
        let e = Settings::try_from(&parse(&args).unwrap().run)
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "VM_JOB: required (set it in the environment or .env)"
        );
    }

    #[test]
    fn auth_settings_exclude_each_other() {
        let e = settings(&["--vm-password=p"]).err().unwrap();
        assert_eq!(e.to_string(), "VM_PASSWORD: set VM_USERNAME too");
        let e = settings(&["--vm-username=u", "--vm-bearer-token=t"])
            .err()
            .unwrap();
        assert!(e.to_string().starts_with("VM_USERNAME:"), "{e}");
        assert!(matches!(
            settings(&["--vm-username=u", "--vm-password=p"])
                .unwrap()
                .store_client
                .auth,
            Auth::Basic { .. }
        ));
    }

    #[test]
    fn explicit_kafka_security_settings_become_properties() {
        let s = settings(&[
            "--kafka-security-protocol=sasl_ssl",
            "--kafka-sasl-mechanism=SCRAM-SHA-512",
            "--kafka-sasl-username=u",
            "--kafka-property=sasl.username=override",
        ])
        .unwrap();
        let names: Vec<_> = s
            .source
            .properties
            .iter()
            .map(|p| format!("{}={} ({})", p.name, p.value, p.origin))
            .collect();
        assert_eq!(
            names,
            [
                "security.protocol=sasl_ssl (KAFKA_SECURITY_PROTOCOL)",
                "sasl.mechanisms=SCRAM-SHA-512 (KAFKA_SASL_MECHANISM)",
                "sasl.username=u (KAFKA_SASL_USERNAME)",
                "sasl.username=override (--kafka-property sasl.username)"
            ]
        );
    }
}
