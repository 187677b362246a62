//! Serving HTTP/1 with limits, for the system status server and the
//! frontend's API port: a deadline on reading each request's headers (which
//! is also how long an idle keep-alive connection may wait for its next
//! request), a cap on header size (431), and a cap on open connections. Past
//! the cap the server stops accepting until a connection closes; the kernel's
//! backlog holds the rest. Each server has its own listener and its own cap,
//! so a flood of one port leaves the other answering.
//!
//! ```no_run
//! use dynamo_runtime::http_server::{serve, HttpLimits};
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let app = axum::Router::new().route("/", axum::routing::get(|| async { "hi" }));
//! serve(listener, app, HttpLimits::default(), std::future::pending()).await;
//! # Ok(())
//! # }
//! ```

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The limits of one HTTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long a client may take to send a request's headers, and how long
    /// an idle keep-alive connection may wait for its next request.
    pub header_read_timeout: Duration,
    /// The largest request head (request line and headers), in bytes; past
    /// it the server answers 431 and closes the connection.
    pub max_header_bytes: usize,
    /// Connections open at once; past it, new ones wait in the backlog.
    pub max_connections: usize,
    /// After shutdown, how long requests in progress may take to finish
    /// before their connections are closed anyway.
    pub drain_timeout: Duration,
}

impl Default for HttpLimits {
    /// 10 s to send headers, 64 KiB of headers, 1024 connections, 30 s to drain.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_connections: 1024,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

impl HttpLimits {
    /// These limits with `max_connections` lowered, if need be, to half of
    /// the process's limit on open files (read from `/proc/self/limits`
    /// where there is one), so that one flooded server cannot take the file
    /// descriptors every other server and connection of the process needs.
    pub fn within_open_file_limit(mut self) -> Self {
        if let Some(files) = open_file_limit() {
            let cap = usize::try_from(files / 2).unwrap_or(usize::MAX).max(1);
            if self.max_connections > cap {
                tracing::info!(
                    asked = self.max_connections,
                    allowed = cap,
                    "connection limit lowered to half the open-file limit"
                );
                self.max_connections = cap;
            }
        }
        self
    }
}

/// The soft limit on open files, from `/proc/self/limits` (Linux).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Completes once the server drains (never, if it is dropped without draining).
async fn until_draining(mut draining: tokio::sync::watch::Receiver<bool>) {
    loop {
        let now = *draining.borrow_and_update();
        if now {
            return;
        }
        if draining.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// How long accepting waits after the listener fails (out of file
/// descriptors, say) before it tries again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `app` on `listener` with `limits` until `shutdown` completes, then
/// drains: stops accepting, lets every request in progress finish (idle
/// keep-alive connections are closed at once), and returns when all
/// connections are closed or after `drain_timeout`. Every connection runs on
/// a task of its own that holds one of the `max_connections` permits until it
/// closes, on every path.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let max = limits.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(max));
    let (drain, draining) = tokio::sync::watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .keep_alive(true);
    let http = Arc::new(http);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // the semaphore is never closed
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, %peer, "TCP_NODELAY not set");
        }
        let http = http.clone();
        let service = TowerToHyperService::new(app.clone());
        let draining = draining.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let conn = http.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let ended = tokio::select! {
                r = conn.as_mut() => r,
                () = until_draining(draining) => {
                    // Finish the request in progress, take no other.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = drain.send(true);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(limits.drain_timeout, permits.acquire_many_owned(all)).await;
    match drained {
        Ok(_) => tracing::debug!("HTTP server drained"),
        Err(_) => tracing::warn!(
            timeout = ?limits.drain_timeout,
            "HTTP server drain timed out; closing the connections left"
        ),
    }
}
