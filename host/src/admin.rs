//! The admin HTTP server: `/metrics` (Prometheus text), `/health`, and
//! `POST /reload` (load `TRANSFORM_PATH` again).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::metrics::Metrics;
use crate::transform::TransformHandle;

#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub transform: Arc<TransformHandle>,
}

pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("PROMETHEUS_CLIENT_PORT: cannot listen on {addr}: {e}"))
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/reload", post(reload))
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
/// our writes (`ok`) or sends are being retried (`degraded`).
async fn health(State(s): State<AdminState>) -> Response {
    let up = s.metrics.victoriametrics_up.get() == 1;
    Json(json!({
        "status": if up { "ok" } else { "degraded" },
        "victoriametrics": if up { "accepting" } else { "failing, retrying" },
        "batches_in_flight": s.metrics.batches_in_flight.get(),
        "samples_in_flight": s.metrics.samples_in_flight.get(),
    }))
    .into_response()
}

async fn reload(State(s): State<AdminState>) -> Response {
    if s.transform.path().is_none() {
        return (
            StatusCode::CONFLICT,
            Json(json!({"status": "error", "error": "no TRANSFORM_PATH is configured; the embedded default transform cannot be reloaded"})),
        )
            .into_response();
    }
    let handle = s.transform.clone();
    match tokio::task::spawn_blocking(move || handle.reload()).await {
        Ok(Ok(info)) => Json(json!({"status": "ok", "module": info})).into_response(),
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
