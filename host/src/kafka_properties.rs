//! librdkafka properties the operator set, each with where it was set, so
//! that librdkafka's complaint about one names the variable to fix. The
//! consumer and the dead-letter producer apply the same list.

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;

/// One `name=value`, and the setting it came from (`KAFKA_SASL_USERNAME`,
/// `KAFKA_PROPERTY_FETCH_MIN_BYTES`, `--kafka-property fetch.min.bytes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaProperty {
    pub name: String,
    pub value: String,
    pub origin: String,
}

/// In the order they apply: a later one overrides an earlier one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaProperties(pub Vec<KafkaProperty>);

impl KafkaProperties {
    /// Set them all; librdkafka checks names and values when the client is
    /// created, and [`explain`](Self::explain) names the setting then.
    pub fn apply(&self, config: &mut ClientConfig) {
        for p in &self.0 {
            config.set(&p.name, &p.value);
        }
    }

    /// librdkafka's error, prefixed with the setting it is about. It may
    /// quote a value it refused: secret ones are masked.
    pub fn explain(&self, e: &KafkaError) -> String {
        let text = self
            .0
            .iter()
            .filter(|p| !p.value.is_empty() && crate::redact::secret_property(&p.name))
            .fold(e.to_string(), |t, p| {
                t.replace(p.value.as_str(), crate::redact::MASK)
            });
        match self.0.iter().find(|p| text.contains(p.name.as_str())) {
            Some(p) => format!("{}: {text}", p.origin),
            None => format!("Kafka client configuration: {text}"),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &KafkaProperty> {
        self.0.iter()
    }
}

/// Whether a property was set with `KAFKA_PROPERTY_<NAME>` or with
/// `--kafka-property`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Env,
    Flag,
}

/// The operator's properties as written: each `KAFKA_PROPERTY_<NAME>` of
/// `env` (by variable name; the name lower-cased with `_` as `.`), then
/// each `--kafka-property NAME=VALUE` in order. A flag without `=` is the
/// error, named.
pub fn operator_properties(
    env: impl IntoIterator<Item = (String, String)>,
    flags: &[String],
) -> Result<Vec<(KafkaProperty, Source)>, String> {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(var, _)| var.starts_with(ENV_PREFIX))
        .collect();
    vars.sort();
    let mut props: Vec<_> = vars
        .into_iter()
        .map(|(var, value)| {
            let name = var[ENV_PREFIX.len()..]
                .to_ascii_lowercase()
                .replace('_', ".");
            let p = KafkaProperty {
                name,
                value,
                origin: var,
            };
            (p, Source::Env)
        })
        .collect();
    for item in flags {
        let (name, value) = item
            .split_once('=')
            .ok_or_else(|| format!("--kafka-property: {item:?} is not NAME=VALUE"))?;
        let p = KafkaProperty {
            name: name.trim().to_string(),
            value: value.to_string(),
            origin: format!("--kafka-property {name}"),
        };
        props.push((p, Source::Flag));
    }
    Ok(props)
}

const ENV_PREFIX: &str = "KAFKA_PROPERTY_";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_properties_come_sorted_then_flags_in_order() {
        let env = [
            ("KAFKA_PROPERTY_FETCH_MIN_BYTES", "1"),
            ("HOME", "/"),
            ("KAFKA_PROPERTY_CLIENT_ID", "x"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let flags = ["client.id=y".to_string(), "a.b=c=d".to_string()];
        let props = operator_properties(env, &flags).unwrap();
        let got: Vec<_> = props
            .iter()
            .map(|(p, s)| (p.name.as_str(), p.value.as_str(), p.origin.as_str(), *s))
            .collect();
        assert_eq!(
            got,
            [
                ("client.id", "x", "KAFKA_PROPERTY_CLIENT_ID", Source::Env),
                (
                    "fetch.min.bytes",
                    "1",
                    "KAFKA_PROPERTY_FETCH_MIN_BYTES",
                    Source::Env
                ),
                ("client.id", "y", "--kafka-property client.id", Source::Flag),
                ("a.b", "c=d", "--kafka-property a.b", Source::Flag),
            ]
        );
        let e = operator_properties([], &["nope".to_string()]).unwrap_err();
        assert_eq!(e, r#"--kafka-property: "nope" is not NAME=VALUE"#);
    }

    #[test]
    fn a_refused_secret_value_is_masked() {
        let props = KafkaProperties(vec![KafkaProperty {
            name: "ssl.key.password".into(),
            value: "hunter2".into(),
            origin: "KAFKA_SSL_KEY_PASSWORD".into(),
        }]);
        let e = KafkaError::ClientCreation(
            "Invalid value \"hunter2\" for configuration property \"ssl.key.password\"".into(),
        );
        let text = props.explain(&e);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.starts_with("KAFKA_SSL_KEY_PASSWORD: "), "{text}");
    }
}
