//! One redaction for what the host shows of a URL or a setting: the logs,
//! errors, exit messages, dead-letter headers and the start-up report all
//! show a URL through [`ShownUrl`], and decide whether a Kafka property's
//! value may be shown with [`secret_property`].

use std::fmt;
use std::sync::Arc;

use reqwest::Url;

/// What a secret is shown as.
pub const MASK: &str = "***";

/// A URL as it may be shown: its password and the values of query
/// arguments that carry credentials (`token`, `authKey`, `sig`, ...)
/// replaced by [`MASK`]. The username, host, path and other arguments stay:
/// an operator needs them to tell which store is meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShownUrl {
    shown: Arc<str>,
    /// What was masked, to mask it in other text too (a store's answer
    /// that quotes the request).
    secrets: Arc<[String]>,
}

impl ShownUrl {
    pub fn new(url: &Url) -> Self {
        let mut shown = url.clone();
        let mut secrets = Vec::new();
        if let Some(password) = url.password() {
            secrets.push(password.to_string());
            // Only URLs that cannot have a password fail this.
            let _ = shown.set_password(Some(MASK));
        }
        if url.query().is_some() {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(name, value)| {
                    if secret_query(&name) && !value.is_empty() {
                        secrets.push(value.to_string());
                        (name.into_owned(), MASK.to_string())
                    } else {
                        (name.into_owned(), value.into_owned())
                    }
                })
                .collect();
            shown.query_pairs_mut().clear().extend_pairs(pairs);
        }
        ShownUrl {
            shown: shown.as_str().into(),
            secrets: secrets.into(),
        }
    }

    /// `text` with every secret of the URL masked.
    pub fn scrub(&self, text: &str) -> String {
        self.secrets
            .iter()
            .filter(|s| !s.is_empty())
            .fold(text.to_string(), |t, s| t.replace(s.as_str(), MASK))
    }
}

impl fmt::Display for ShownUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// `text` as it may be shown, if it is a URL; see [`mask_userinfo`] for
/// text that does not parse as one.
pub fn url_text(text: &str) -> String {
    match Url::parse(text.trim()) {
        Ok(url) => ShownUrl::new(&url).to_string(),
        Err(_) => mask_userinfo(text),
    }
}

/// `text` with the password of every `scheme://user:password@` in it
/// masked: for messages that quote a URL that did not parse (clap's).
pub fn mask_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#' | '\'' | '"') || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.find(':'), authority.rfind('@')) {
            (Some(colon), Some(at)) if colon < at => {
                out.push_str(&authority[..colon + 1]);
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Query arguments that carry credentials, by name (any case): `token`,
/// `access_token`, `authKey`, `api_key`, `password`, `sig` (Azure SAS),
/// `X-Amz-Signature`, `secret`, ...
fn secret_query(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "token",
        "key",
        "secret",
        "pass",
        "auth",
        "sig",
        "credential",
        "session",
        "jwt",
    ]
    .iter()
    .any(|w| name.contains(w))
}

/// librdkafka properties librdkafka itself marks sensitive (it hides them
/// in its own configuration dumps), and the aliases that set them.
const SENSITIVE_PROPERTIES: &[&str] = &[
    "sasl.username",
    "sasl.password",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.client.credentials.client.secret",
    "sasl.oauthbearer.assertion.private.key.file",
    "sasl.oauthbearer.assertion.private.key.passphrase",
    "sasl.oauthbearer.assertion.private.key.pem",
    "ssl.key.location",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl_key",
    "ssl.ca.pem",
    "ssl.keystore.password",
    // A command line, which may hold a password.
    "sasl.kerberos.kinit.cmd",
];

/// Words of a property name that say its value is, or leads to, a secret;
/// for properties librdkafka may add, and misspellings of known ones.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "jaas",
    "credentials",
    "private",
    "key",
    "keystore",
    "keytab",
    "pem",
    "cmd",
];

/// Whether a librdkafka property's value must not be shown. The name is
/// compared in any case, with `.`, `_` and `-` alike (`KAFKA_PROPERTY_SSL_KEY_PASSWORD`,
/// `ssl-key-password` and `SSL.Key.Password` are one property).
pub fn secret_property(name: &str) -> bool {
    let normal: String = name
        .trim()
        .chars()
        .map(|c| match c {
            '_' | '-' => '.',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    let normal = normal.trim_start_matches("kafka.property.");
    SENSITIVE_PROPERTIES
        .iter()
        .any(|p| p.replace('_', ".") == normal)
        || normal
            .split('.')
            .any(|word| SECRET_WORDS.iter().any(|w| word.contains(w)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_and_secret_arguments() {
        let url = Url::parse("https://ops:s3cret@vm:8428/api/v1/import?extra_label=job%3Dj&authKey=k3y&access_token=t0k").unwrap();
        let shown = ShownUrl::new(&url);
        let text = shown.to_string();
        assert_eq!(
            text,
            "https://ops:***@vm:8428/api/v1/import?extra_label=job%3Dj&authKey=***&access_token=***"
        );
        assert_eq!(
            shown.scrub("refused http://ops:s3cret@vm/?authKey=k3y"),
            "refused http://ops:***@vm/?authKey=***"
        );
        let plain = Url::parse("http://vm:8428/api/v1/import").unwrap();
        assert_eq!(ShownUrl::new(&plain).to_string(), plain.as_str());
    }

    #[test]
    fn text_that_is_no_url_is_masked_too() {
        assert_eq!(
            url_text("http://u:pw@host:99999/x"),
            "http://u:***@host:99999/x"
        );
        assert_eq!(url_text("http://u:pw@vm:8428/"), "http://u:***@vm:8428/");
        assert_eq!(url_text("not a url"), "not a url");
        assert_eq!(url_text("http://host:bad/a@b"), "http://host:bad/a@b");
        assert_eq!(
            mask_userinfo("error: invalid value 'http://u:p@w@h:x/' for '--vm-url <VM_URL>' (was https://a:b@c)"),
            "error: invalid value 'http://u:***@h:x/' for '--vm-url <VM_URL>' (was https://a:***@c)"
        );
    }

    #[test]
    fn every_sensitive_kafka_property_is_secret_in_any_spelling() {
        for name in SENSITIVE_PROPERTIES {
            assert!(secret_property(name), "{name}");
            assert!(
                secret_property(&name.to_uppercase().replace('.', "_")),
                "{name}"
            );
            assert!(
                secret_property(&format!(
                    "KAFKA_PROPERTY_{}",
                    name.to_uppercase().replace('.', "_")
                )),
                "{name}"
            );
        }
        for name in [
            "ssl-key-password",
            "SSL.Key.Password",
            "sasl.jaas.config",
            "some.new.secret",
            "ssl.certificate.pem",
        ] {
            assert!(secret_property(name), "{name}");
        }
        for name in [
            "fetch.min.bytes",
            "security.protocol",
            "sasl.mechanism",
            "bootstrap.servers",
            "client.id",
            "compression.codec",
        ] {
            assert!(!secret_property(name), "{name}");
        }
    }
}
