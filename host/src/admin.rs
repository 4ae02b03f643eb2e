//! The admin HTTP server's endpoints: `/metrics` (Prometheus text),
//! `/health`, `/health/live`, `/health/ready`, and, only with `ADMIN_TOKEN`
//! set and only for its bearer, `POST /reload` (load `TRANSFORM_PATH` again
//! if it changed) and `GET /tap` (records and what they produced, live, as
//! NDJSON). Nothing here shows configuration, so no endpoint can reveal a
//! secret. Its connections: [`crate::admin_listener`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::health::StoreHealth;
use crate::kafka_health::KafkaHealth;
use crate::metrics::Metrics;
use crate::stop::Stop;
use crate::tap::Tap;
use crate::transform::{Loader, Reloaded};

/// Where the admin HTTP listens, and the token its control routes take.
pub struct AdminSettings {
    pub addr: SocketAddr,
    /// The bearer token `POST /reload` requires, if any.
    pub token: Option<Arc<str>>,
}

/// Events `GET /tap` sends when no `limit` is given, and at most.
const TAP_EVENTS: usize = 100;
const TAP_EVENTS_MAX: usize = 10_000;

#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub transform: Arc<Loader>,
    pub stop: Arc<Stop>,
    /// Whether the store takes our writes.
    pub store: StoreHealth,
    /// What keeps Kafka from giving us records, if anything.
    pub kafka: Arc<KafkaHealth>,
    /// `POST /reload` and `GET /tap` need `Authorization: Bearer <token>`;
    /// without a token they are disabled.
    pub token: Option<Arc<str>>,
    pub tap: Tap,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/reload", post(reload))
        .route("/tap", get(tap))
        .with_state(state)
}

async fn metrics(State(s): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

/// 200 while the process runs; the body says whether VictoriaMetrics takes
/// our writes and Kafka gives us records (`ok`), or not (`degraded`, with
/// why in `kafka`).
async fn health(State(s): State<AdminState>) -> Response {
    let up = s.store.is_up();
    let kafka = s.kafka.problem();
    Json(json!({
        "status": if up && kafka.is_none() { "ok" } else { "degraded" },
        "victoriametrics": if up { "accepting" } else { "failing, retrying" },
        "kafka": kafka.as_deref().unwrap_or("ok"),
        "batches_in_flight": s.metrics.batches_in_flight.get(),
        "samples_in_flight": s.metrics.samples_in_flight.get(),
        "transform": s.transform.notice(),
    }))
    .into_response()
}

/// Liveness: the process answers. Restarting it would not help anything
/// this endpoint could see, so it never fails.
async fn live() -> Response {
    Json(json!({"status": "live"})).into_response()
}

/// Readiness: 200 while VictoriaMetrics takes our writes, Kafka gives us
/// records and the host is not stopping; 503 otherwise (a load balancer or
/// orchestrator should wait), with why in `reason`.
async fn ready(State(s): State<AdminState>) -> Response {
    let up = s.store.is_up();
    let stopping = s.stop.is_requested();
    let kafka = s.kafka.problem();
    let reason = if stopping {
        Some("stopping".to_string())
    } else if !up {
        Some("victoriametrics: writes failing, retrying".to_string())
    } else {
        kafka.clone()
    };
    let body = Json(json!({
        "status": if reason.is_none() { "ready" } else { "not ready" },
        "reason": reason,
        "victoriametrics": if up { "accepting" } else { "failing, retrying" },
        "kafka": kafka.as_deref().unwrap_or("ok"),
        "stopping": stopping,
    }));
    if reason.is_none() {
        body.into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

/// Compare without leaking through timing where the token differs.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a caller may not use `endpoint`, if it may not: without
/// `ADMIN_TOKEN` nobody may (the port listens on every interface by
/// default, and a change to `TRANSFORM_PATH` reloads without it), with it
/// only its bearer.
fn refusal(endpoint: &str, token: Option<&str>, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = token else {
        tracing::warn!("{endpoint} refused: disabled without ADMIN_TOKEN");
        return Some(
            (
                StatusCode::FORBIDDEN,
                Json(json!({"status": "error", "error": format!("{endpoint} is disabled: set ADMIN_TOKEN to enable it, then send Authorization: Bearer <ADMIN_TOKEN>{}", if endpoint.contains("reload") { " (a change to TRANSFORM_PATH reloads without it)" } else { "" })})),
            )
                .into_response(),
        );
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if same(given.trim().as_bytes(), token.as_bytes()) {
        return None;
    }
    tracing::warn!("{endpoint} refused: missing or wrong ADMIN_TOKEN");
    Some(
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({"status": "error", "error": "this endpoint needs Authorization: Bearer <ADMIN_TOKEN>"})),
        )
            .into_response(),
    )
}

async fn reload(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(refused) = refusal("POST /reload", s.token.as_deref(), &headers) {
        return refused;
    }
    if s.transform.path().is_none() {
        return (
            StatusCode::CONFLICT,
            Json(json!({"status": "error", "error": "no TRANSFORM_PATH is configured; the embedded default transform cannot be reloaded"})),
        )
            .into_response();
    }
    let loader = s.transform.clone();
    match tokio::task::spawn_blocking(move || loader.reload_if_changed()).await {
        Ok(Ok(Reloaded::Loaded(info))) => {
            Json(json!({"status": "ok", "module": info})).into_response()
        }
        Ok(Ok(Reloaded::Unchanged { sha256 })) => {
            Json(json!({"status": "unchanged", "sha256": sha256})).into_response()
        }
        Ok(Err(e)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"status": "error", "error": e.to_string()})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"status": "error", "error": format!("reload task failed: {e}")})),
        )
            .into_response(),
    }
}

/// `limit=N` of a query string, if there.
fn limit_in(query: Option<&str>) -> Option<usize> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("limit="))
        .and_then(|v| v.parse().ok())
}

/// `GET /tap?limit=N`: up to N tapped records (default 100), one NDJSON
/// line each as they pass, then the end; `{"missed":n}` when this listener
/// fell behind. Ends early when the host stops.
async fn tap(
    State(s): State<AdminState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(refused) = refusal("GET /tap", s.token.as_deref(), &headers) {
        return refused;
    }
    let limit = limit_in(query.as_deref())
        .unwrap_or(TAP_EVENTS)
        .clamp(1, TAP_EVENTS_MAX);
    tracing::info!(limit, "tap: a listener joined");
    let events = s.tap.subscribe();
    let stream = futures_util::stream::unfold(
        (events, limit, s.stop),
        |(mut rx, left, stop)| async move {
            use tokio::sync::broadcast::error::RecvError;
            if left == 0 {
                return None;
            }
            let line = tokio::select! {
                received = rx.recv() => match received {
                    Ok(line) => line,
                    Err(RecvError::Lagged(n)) => bytes::Bytes::from(format!("{{\"missed\":{n}}}\n")),
                    Err(RecvError::Closed) => return None,
                },
                () = stop.passed(Duration::ZERO) => return None,
            };
            Some((Ok::<_, Infallible>(line), (rx, left - 1, stop)))
        },
    );
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}
