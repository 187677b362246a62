//! Readiness from canary requests: while an endpoint serves, the runtime
//! sends its own handler a configured request every so often, and `/health`
//! lists the endpoint as `notready` while the canary fails or times out.
//! Canaries go to the handler directly: they are not counted in the
//! endpoint's automatic metrics.

use super::handler::{RawHandler, RawItems};
use super::Context;
use crate::health::{Health, HealthStatus};
use bytes::Bytes;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The canary of one endpoint (see `ServeOptions::health_check`).
///
/// ```
/// use dynamo_runtime::request_plane::HealthCheck;
/// use std::time::Duration;
/// let check = HealthCheck::new(serde_json::json!({"prompt": "ping", "max_tokens": 1}))
///     .every(Duration::from_secs(5))
///     .timeout(Duration::from_secs(2));
/// assert_eq!(check.interval, Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    /// The request sent, as the endpoint's handler receives it (JSON).
    pub payload: serde_json::Value,
    /// Time between two canaries.
    pub interval: Duration,
    /// How long a canary may take, its whole response stream included.
    pub timeout: Duration,
}

impl HealthCheck {
    /// A canary of `payload`, every 10 s, with a 5 s timeout.
    pub fn new(payload: serde_json::Value) -> Self {
        Self {
            payload,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
        }
    }

    /// Sets the time between two canaries.
    pub fn every(self, interval: Duration) -> Self {
        Self { interval, ..self }
    }

    /// Sets how long a canary may take.
    pub fn timeout(self, timeout: Duration) -> Self {
        Self { timeout, ..self }
    }
}

/// Runs `check` against `handler` until `stop`, setting `endpoint`'s status.
pub(crate) async fn run(
    check: HealthCheck,
    handler: Arc<dyn RawHandler>,
    health: Arc<Health>,
    endpoint: String,
    stop: CancellationToken,
) {
    let payload = match serde_json::to_vec(&check.payload) {
        Ok(p) => Bytes::from(p),
        Err(e) => {
            tracing::error!(endpoint, error = %e, "health check payload does not encode; no canary runs");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(check.interval) => {}
        }
        let ctx = Context::new(
            format!("health-check-{:016x}", fastrand::u64(..)),
            super::RequestMeta::default(),
            stop.child_token(),
        );
        let outcome =
            tokio::time::timeout(check.timeout, canary(&*handler, payload.clone(), ctx)).await;
        let status = match outcome {
            Ok(Ok(())) => HealthStatus::Ready,
            Ok(Err(message)) => {
                tracing::warn!(endpoint, message, "health check failed");
                HealthStatus::NotReady
            }
            Err(_) => {
                tracing::warn!(endpoint, timeout = ?check.timeout, "health check timed out");
                HealthStatus::NotReady
            }
        };
        health.set_endpoint_status(&endpoint, status);
    }
}

/// One canary: the handler's whole response stream, without an error.
async fn canary(handler: &dyn RawHandler, payload: Bytes, ctx: Context) -> Result<(), String> {
    let mut items: RawItems = handler.call(payload, ctx).await.map_err(|f| f.message)?;
    while let Some(item) = items.next().await {
        item.map_err(|f| f.message)?;
    }
    Ok(())
}
