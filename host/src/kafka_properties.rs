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

#[cfg(test)]
mod tests {
    use super::*;

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
