//! A recording proxy in front of the real VictoriaMetrics: the host talks to
//! it as to VictoriaMetrics (every method, path, query and body forwarded,
//! every answer returned as is, 502 while VictoriaMetrics is down), and it
//! keeps each import body VictoriaMetrics accepted. The store's export
//! shows only what deduplication kept; this log shows what was written,
//! so the checker can tell a series and timestamp written with two values.

use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

struct Shared {
    upstream: String,
    client: reqwest::Client,
    /// Accepted import bodies, as text.
    writes: Mutex<Vec<String>>,
    accepted: AtomicU64,
}

pub struct Recorder {
    pub url: String,
    shared: Arc<Shared>,
}

impl Recorder {
    pub fn start(upstream: String) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new(Shared {
            upstream,
            client: reqwest::Client::new(),
            writes: Mutex::new(Vec::new()),
            accepted: AtomicU64::new(0),
        });
        let state = shared.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the recorder's runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new().fallback(forward).with_state(state);
                axum::serve(listener, app).await.expect("the recorder");
            });
        });
        Recorder {
            url: format!("http://127.0.0.1:{port}"),
            shared,
        }
    }

    /// Import requests holding samples that VictoriaMetrics answered 2xx.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Every accepted import line holding `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        let writes = self.shared.writes.lock().expect("writes");
        writes
            .iter()
            .flat_map(|body| body.lines())
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }
}

async fn forward(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let mut request = shared
        .client
        .request(method, format!("{}{path}", shared.upstream));
    for name in ["content-type", "content-encoding", "authorization"] {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value.as_bytes());
        }
    }
    let gzip = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip");
    let answer = match request.body(body.clone()).send().await {
        Ok(answer) => answer,
        Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
    };
    let status = answer.status().as_u16();
    let content_type = answer.headers().get("content-type").cloned();
    let reply = answer.bytes().await.unwrap_or_default();
    if path.starts_with("/api/v1/import") && (200..300).contains(&status) {
        let text = decode(&body, gzip);
        // The host's probes send empty imports: not a write.
        if !text.trim().is_empty() {
            shared.accepted.fetch_add(1, Ordering::SeqCst);
            shared.writes.lock().expect("writes").push(text);
        }
    }
    let mut response = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        reply,
    )
        .into_response();
    if let Some(ct) = content_type {
        response.headers_mut().insert("content-type", ct);
    }
    response
}

fn decode(body: &[u8], gzip: bool) -> String {
    if !gzip {
        return String::from_utf8_lossy(body).into_owned();
    }
    let mut out = String::new();
    flate2::read::GzDecoder::new(body)
        .read_to_string(&mut out)
        .expect("a gzip body of text");
    out
}
