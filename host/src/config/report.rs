//! The effective configuration start-up logs: every setting with its value
//! and where it came from (flag, environment, default), secrets masked. It
//! is what an operator checks first when the host misbehaves.

use super::flags::Cli;
use crate::kafka_properties::{operator_properties, Source};
use crate::redact::{secret_property, url_text, MASK};

/// Log the effective configuration, one line per setting that is set.
pub fn log(matches: &clap::ArgMatches) {
    for (setting, value, origin) in effective(matches) {
        if origin != "unset" {
            tracing::info!(target: "config", setting, value, origin, "configuration");
        }
    }
}

/// Settings whose values never appear in logs or in `--help`.
pub(super) const SECRETS: &[&str] = &[
    "VM_PASSWORD",
    "VM_BEARER_TOKEN",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_KEY_PASSWORD",
    "ADMIN_TOKEN",
];

/// Settings whose values are URLs: shown without password or token, and
/// hidden from `--help`.
pub(super) const URLS: &[&str] = &[
    "VM_URL",
    "REMOTE_WRITE_URL",
    "VM_STATUS_URL",
    "SCHEMA_REGISTRY_URL",
];

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
            Some(v) if URLS.contains(&env.as_str()) => {
                v.iter().map(|u| url_text(u)).collect::<Vec<_>>().join(",")
            }
            Some(v) => v.join(","),
        };
        out.push((env, value, origin));
    }
    out.extend(kafka_properties(matches));
    out
}

/// `KAFKA_PROPERTY_*` and `--kafka-property`, masked where the name says
/// the value is a secret. (A flag that is not NAME=VALUE stops the start
/// with its own error; then nothing is shown of them.)
fn kafka_properties(matches: &clap::ArgMatches) -> Vec<(String, String, &'static str)> {
    let flags: Vec<String> = matches
        .get_raw("kafka_property")
        .into_iter()
        .flatten()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    let props = operator_properties(std::env::vars(), &flags).unwrap_or_default();
    props
        .into_iter()
        .map(|(p, source)| {
            let value = if secret_property(&p.name) {
                MASK.to_string()
            } else {
                p.value
            };
            let origin = match source {
                Source::Env => "env",
                Source::Flag => "flag",
            };
            (p.origin, value, origin)
        })
        .collect()
}

/// The README's configuration reference, generated from this struct (a test
/// keeps the README equal to it).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_in_the_effective_configuration() {
        let mut args = crate::config::test_args::REQUIRED.to_vec();
        args[2] = "--vm-url=https://u:hunter2@vm:8428/";
        args.extend([
            "--vm-username=ops",
            "--vm-password=hunter2",
            "--admin-token=hunter2",
            "--kafka-sasl-password=hunter2",
            "--kafka-property=sasl.jaas.config=hunter2",
            "--kafka-property=SSL_KEY_PASSWORD=hunter2",
            "--kafka-property=ssl.keystore.password=hunter2",
            "--kafka-property=sasl.oauthbearer.client.secret=hunter2",
            "--kafka-property=sasl.kerberos.kinit.cmd=kinit -p hunter2",
            "--kafka-property=fetch.min.bytes=1",
            "--schema-registry-url=https://u:hunter2@registry:8081/",
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
        assert_eq!(get("SCHEMA_REGISTRY_URL").1, "https://u:***@registry:8081/");
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
                let env = env.to_string_lossy();
                let hidden = SECRETS.contains(&env.as_ref()) || URLS.contains(&env.as_ref());
                assert_eq!(arg.is_hide_env_values_set(), hidden, "{env:?}");
            }
        }
    }
}
