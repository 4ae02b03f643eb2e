//! The admin port's connections, kept from hurting the pipeline or each
//! other.
//!
//! - Served on a thread and runtime of their own: a flood of requests takes
//!   no time from the sink's two workers.
//! - A connection that has not sent a request's headers within
//!   [`HEADER_TIMEOUT`] is closed, idle keep-alive ones included (hyper's
//!   header-read timeout): a client trickling its headers (slowloris) holds
//!   a connection for that long at most.
//! - At most [`MAX_CONNECTIONS`] at once, so the port cannot take the
//!   process's file descriptors (Kafka's and the store's sockets). At the
//!   cap a new connection closes the one idle longest (between requests or
//!   still sending its first headers) rather than wait: idle connections
//!   cannot lock a scraper out. Only when every connection is in a request
//!   does a new one wait for the first to finish.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::error::Error;
use crate::throttle::Throttle;

/// How long a client may take to send a request's headers, and how long a
/// kept-alive connection may sit idle. Scrapers and probes send theirs at
/// once; Prometheus reconnects when its kept connection was closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections open at once: a few scrapers, probes and operators need far
/// fewer, and the process keeps its descriptors for Kafka and the store.
pub const MAX_CONNECTIONS: usize = 64;

/// Bind the port now, so that a port in use stops the start-up.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, Error> {
    let listener = std::net::TcpListener::bind(addr).and_then(|l| {
        l.set_nonblocking(true)?;
        Ok(l)
    });
    listener.map_err(|e| {
        Error::runtime(
            &format!("PROMETHEUS_CLIENT_PORT: cannot listen on {addr}"),
            e,
        )
    })
}

/// Serve `router` on `listener` from a thread of its own, for the life of
/// the process.
pub fn spawn(listener: std::net::TcpListener, router: Router) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::runtime("cannot start the admin HTTP runtime", e))?;
    std::thread::Builder::new()
        .name("admin-http".into())
        .spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => serve(listener, router).await,
                    Err(e) => tracing::error!(error = %e, "admin HTTP server stopped"),
                }
            })
        })
        .map_err(|e| Error::runtime("cannot start the admin HTTP thread", e))?;
    Ok(())
}

async fn serve(listener: tokio::net::TcpListener, router: Router) {
    let slots = Arc::new(Slots::default());
    let mut refused = Throttle::new(1, Duration::from_secs(10));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, say: wait rather than spin.
                if let Some(held) = refused.admit() {
                    tracing::warn!(error = %e, held, "admin HTTP: cannot accept a connection");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let slot = slots.admit().await;
        tokio::spawn(connection(stream, router.clone(), slots.clone(), slot));
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    router: Router,
    slots: Arc<Slots>,
    (id, cut): (u64, CancellationToken),
) {
    let busy = slots.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
        let guard = Busy::new(busy.clone(), id);
        let router = router.clone();
        async move {
            let response = router.oneshot(request.map(axum::body::Body::new)).await;
            drop(guard);
            response
        }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        // An error is the client's doing (a reset, headers too slow).
        _ = served => {}
        () = cut.cancelled() => {}
    }
    slots.leave(id);
}

struct Slot {
    id: u64,
    /// Since when it waits for a request; `None` while answering one.
    idle_since: Option<Instant>,
    cut: CancellationToken,
}

#[derive(Default)]
struct Slots {
    open: Mutex<(u64, Vec<Slot>)>,
    /// A connection closed or finished a request.
    freed: Notify,
}

impl Slots {
    /// A slot for a new connection: a free one, or the one idle longest,
    /// closed; waits while every connection is in a request.
    async fn admit(&self) -> (u64, CancellationToken) {
        loop {
            if let Some(slot) = self.try_admit() {
                return slot;
            }
            self.freed.notified().await;
        }
    }

    fn try_admit(&self) -> Option<(u64, CancellationToken)> {
        let mut open = lock(&self.open);
        let (next, slots) = &mut *open;
        if slots.len() >= MAX_CONNECTIONS {
            let oldest = slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.idle_since.map(|t| (t, i)))
                .min()?
                .1;
            slots.swap_remove(oldest).cut.cancel();
        }
        *next += 1;
        let cut = CancellationToken::new();
        slots.push(Slot {
            id: *next,
            idle_since: Some(Instant::now()),
            cut: cut.clone(),
        });
        Some((*next, cut))
    }

    fn set_idle(&self, id: u64, idle: bool) {
        let mut open = lock(&self.open);
        if let Some(slot) = open.1.iter_mut().find(|s| s.id == id) {
            slot.idle_since = idle.then(Instant::now);
        }
        drop(open);
        if idle {
            self.freed.notify_one();
        }
    }

    fn leave(&self, id: u64) {
        lock(&self.open).1.retain(|s| s.id != id);
        self.freed.notify_one();
    }
}

/// Marks a connection as answering a request, until dropped (the response
/// is ready, or the connection went away).
struct Busy {
    slots: Arc<Slots>,
    id: u64,
}

impl Busy {
    fn new(slots: Arc<Slots>, id: u64) -> Self {
        slots.set_idle(id, false);
        Busy { slots, id }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.slots.set_idle(self.id, true);
    }
}

/// A poisoned lock only means a connection task panicked; the list is whole.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
