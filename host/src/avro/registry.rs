//! The schemas of a Confluent schema registry, by id: `GET
//! /schemas/ids/{id}` once per id, compiled and kept.
//!
//! A registry that cannot answer (down, 5xx, a timeout, refused
//! credentials) holds the source thread, retried with the host's backoff
//! until it answers or a stop is requested: records are never rejected
//! for an outage. An id the registry does not know (404) is the record's
//! fault: it is rejected as `invalid_avro`, and the answer kept for a
//! minute.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apache_avro::Schema;
use reqwest::Url;

use super::to_json::Program;
use crate::metrics::Metrics;
use crate::stop::Stop;
use crate::throttle::Throttle;

/// One request's time limit.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long "no such id" is believed.
const NOT_FOUND_FOR: Duration = Duration::from_secs(60);

/// What a schema id came to.
pub enum Lookup {
    Found(Arc<Program>),
    /// The registry has no usable schema of that id: the record's fault.
    Unusable(String),
    /// A stop was requested while the registry did not answer.
    Stopping,
}

pub struct Registry {
    base: Url,
    auth: Option<(String, String)>,
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    stop: Arc<Stop>,
    metrics: Arc<Metrics>,
    found: HashMap<u32, Arc<Program>>,
    unusable: HashMap<u32, (String, Instant)>,
    warn: Throttle,
}

/// One answer of the registry.
enum Answer {
    Schema(Program),
    Unusable(String),
    Retry(String),
}

impl Registry {
    pub fn new(
        url: &Url,
        runtime: tokio::runtime::Handle,
        stop: Arc<Stop>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let mut base = url.clone();
        let auth = (!base.username().is_empty()).then(|| {
            let user = base.username().to_string();
            (user, base.password().unwrap_or_default().to_string())
        });
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Registry {
            base,
            auth,
            client,
            runtime,
            stop,
            metrics,
            found: HashMap::new(),
            unusable: HashMap::new(),
            warn: Throttle::new(1, Duration::from_secs(10)),
        })
    }

    /// The URL as logs show it (credentials were taken out).
    pub fn url(&self) -> &Url {
        &self.base
    }

    /// The compiled schema of `id`, asking the registry the first time.
    pub fn get(&mut self, id: u32) -> Lookup {
        if let Some(p) = self.found.get(&id) {
            return Lookup::Found(p.clone());
        }
        if let Some((why, at)) = self.unusable.get(&id) {
            if at.elapsed() < NOT_FOUND_FOR {
                return Lookup::Unusable(why.clone());
            }
        }
        let mut delays = crate::retry::delays();
        loop {
            match self.ask(id) {
                Answer::Schema(p) => {
                    self.count("ok");
                    tracing::info!(id, record = %p.name, registry = %self.base, "Avro schema fetched");
                    let p = Arc::new(p);
                    self.found.insert(id, p.clone());
                    return Lookup::Found(p);
                }
                Answer::Unusable(why) => {
                    self.count("unusable");
                    self.unusable.insert(id, (why.clone(), Instant::now()));
                    return Lookup::Unusable(why);
                }
                Answer::Retry(why) => {
                    self.count("error");
                    if let Some(held_back) = self.warn.admit() {
                        tracing::warn!(id, registry = %self.base, error = %why, held_back, "the schema registry does not answer; reading waits for it");
                    }
                    let delay = delays.next().unwrap_or(crate::retry::LONGEST);
                    if self.sleep(delay) {
                        return Lookup::Stopping;
                    }
                }
            }
        }
    }

    fn count(&self, result: &str) {
        self.metrics
            .input
            .schema_registry_requests
            .with_label_values(&[result])
            .inc();
    }

    /// Sleep up to `delay`, in short steps; whether a stop was requested.
    fn sleep(&self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        while Instant::now() < until {
            if self.stop.is_requested() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
        }
        self.stop.is_requested()
    }

    fn ask(&self, id: u32) -> Answer {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map(|mut p| {
                p.pop_if_empty().extend(["schemas", "ids", &id.to_string()]);
            })
            .ok();
        let mut request = self
            .client
            .get(url)
            .header("Accept", "application/vnd.schemaregistry.v1+json");
        if let Some((user, password)) = &self.auth {
            request = request.basic_auth(user, Some(password));
        }
        let answer = self.runtime.block_on(async {
            let response = request.send().await?;
            let status = response.status();
            let body = response.text().await?;
            Ok::<_, reqwest::Error>((status, body))
        });
        match answer {
            Err(e) => Answer::Retry(e.without_url().to_string()),
            Ok((status, _)) if status == reqwest::StatusCode::NOT_FOUND => {
                Answer::Unusable(format!("schema id {id} is not in the registry"))
            }
            Ok((status, body)) if !status.is_success() => Answer::Retry(format!(
                "{status}: {}",
                body.chars().take(200).collect::<String>()
            )),
            Ok((_, body)) => parse(id, &body),
        }
    }
}

/// The registry's `{"schema": "<the schema's JSON>", "schemaType": ...}`.
fn parse(id: u32, body: &str) -> Answer {
    #[derive(serde::Deserialize)]
    struct Reply {
        schema: String,
        #[serde(rename = "schemaType")]
        schema_type: Option<String>,
    }
    let unusable = |why: String| Answer::Unusable(format!("schema id {id}: {why}"));
    let reply: Reply = match serde_json::from_str(body) {
        Ok(r) => r,
        Err(e) => return unusable(format!("the registry's answer is not a schema: {e}")),
    };
    if let Some(t) = reply.schema_type.filter(|t| t != "AVRO") {
        return unusable(format!("a {t} schema, not Avro"));
    }
    match Schema::parse_str(&reply.schema)
        .map_err(|e| e.to_string())
        .and_then(|s| Program::compile(&s))
    {
        Ok(p) => Answer::Schema(p),
        Err(e) => unusable(e),
    }
}
