//! The HTTP server every process runs when `DYN_SYSTEM_PORT` asks for it:
//! `/metrics`, `/health`, `/live`.

use crate::health::{Health, HealthStatus};
use crate::http_server::HttpLimits;
use crate::metrics::{Registry, ScopePath};
use crate::metrics_http;
use crate::RuntimeError;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Instant;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Content type of `/metrics`.
pub const METRICS_CONTENT_TYPE: &str = crate::metrics::TEXT_CONTENT_TYPE;

/// What the handlers read.
pub(crate) struct ServerState {
    pub registry: Arc<Registry>,
    pub health: Arc<Health>,
    pub start: Instant,
}

/// A running server; dropping it stops it.
pub(crate) struct SystemServer {
    pub addr: SocketAddr,
    _shutdown: oneshot::Sender<()>,
}

/// Binds `host:port` and serves on `handle`.
pub(crate) fn start(
    handle: &Handle,
    host: &str,
    port: u16,
    state: ServerState,
) -> Result<SystemServer, RuntimeError> {
    let bind_err = |source| RuntimeError::Bind {
        addr: format!("{host}:{port}"),
        source,
    };
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(bind_err)?
        .next()
        .ok_or_else(|| {
            bind_err(std::io::Error::other(
                "the host name resolves to no address",
            ))
        })?;
    let listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    let bound = listener.local_addr().map_err(bind_err)?;
    let listener = {
        let _guard = handle.enter();
        tokio::net::TcpListener::from_std(listener).map_err(bind_err)?
    };
    let (tx, rx) = oneshot::channel::<()>();
    let app = router(Arc::new(state));
    handle.spawn(async move {
        let shutdown = async {
            let _ = rx.await;
        };
        crate::http_server::serve(listener, app, limits(), shutdown).await;
    });
    tracing::info!(address = %bound, "system status server listening (/metrics, /health, /live)");
    Ok(SystemServer {
        addr: bound,
        _shutdown: tx,
    })
}

/// The system server's own connection cap, apart from any other server of
/// the process: Prometheus and health probes need few connections.
const MAX_CONNECTIONS: usize = 32;

fn limits() -> HttpLimits {
    HttpLimits {
        max_connections: MAX_CONNECTIONS,
        ..HttpLimits::default()
    }
}

fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/live", get(live))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<ServerState>>, headers: HeaderMap) -> Response {
    // Rendering runs callbacks, which may block (a Python callback waits for
    // the GIL), and compressing is CPU work: keep both off the async workers.
    let registry = state.registry.clone();
    let gzip = metrics_http::request_accepts_gzip(&headers);
    let format = metrics_http::request_format(&headers);
    let render =
        move || metrics_http::Body::new(registry.scrape_as(&ScopePath::root(), format), gzip);
    match tokio::task::spawn_blocking(render).await {
        Ok(body) => body.into_response(format.content_type()),
        Err(e) => {
            tracing::error!(error = %e, "metrics rendering failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "metrics rendering failed\n",
            )
                .into_response()
        }
    }
}

async fn health(State(state): State<Arc<ServerState>>) -> Response {
    let report = state.health.report(state.start.elapsed().as_secs_f64());
    let code = match report.status {
        HealthStatus::Ready => StatusCode::OK,
        HealthStatus::NotReady => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, Json(report)).into_response()
}

async fn live() -> Response {
    (
        StatusCode::OK,
        Json(serde_json::json!({ "status": "live" })),
    )
        .into_response()
}
