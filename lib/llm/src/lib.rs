//! # dynamo-llm
//!
//! The LLM serving path on `dynamo-runtime`: an OpenAI-compatible HTTP
//! frontend ([`http`]) with the `dynamo_frontend_*` metrics ([`metrics`]), a
//! preprocessor with a real BPE tokenizer ([`preprocessor`]), a mock engine
//! ([`mocker`]) served as a worker, the model registry that connects them
//! ([`registry`]), the load generator behind `dynamo load` ([`load`]), and
//! the terminal view behind `dynamo top` ([`top`]).
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod engine_metrics;
pub mod http;
pub mod load;
pub mod metrics;
pub mod mocker;
pub mod preprocessor;
pub mod protocols;
pub mod registry;
mod response;
pub mod top;

use dynamo_runtime::request_plane::ServedEndpoint;
use dynamo_runtime::request_plane::{HealthCheck, ServeOptions};
use dynamo_runtime::{DistributedRuntime, RecordLease};
use registry::{ModelEntry, ModelRegistry};

/// Namespace of the mock worker's endpoint.
pub const WORKER_NAMESPACE: &str = "dynamo";
/// Component of the mock worker's endpoint.
pub const WORKER_COMPONENT: &str = "mocker";
/// The mock worker's endpoint.
pub const WORKER_ENDPOINT: &str = "generate";

/// A running mock worker: its serving instance and its model card.
#[derive(Debug)]
pub struct MockWorker {
    /// The serving instance.
    pub served: ServedEndpoint,
    /// The published model card.
    pub card: RecordLease,
}

impl MockWorker {
    /// Drains the worker: withdraws the model card first (frontends stop
    /// routing to it), takes no new request, and waits up to `timeout` for
    /// the requests it is working on. Returns how many were left unfinished.
    pub async fn drain(self, timeout: std::time::Duration) -> usize {
        self.card.revoke().await;
        self.served.drain(timeout).await
    }

    /// Stops serving and withdraws the model card.
    pub async fn stop(self) {
        self.card.revoke().await;
        self.served.stop().await;
    }
}

/// Serves the mock engine on `drt` and registers `model` for it.
pub async fn start_mock_worker(
    drt: &DistributedRuntime,
    registry: &ModelRegistry,
    model: &str,
    config: mocker::MockerConfig,
) -> anyhow::Result<MockWorker> {
    let endpoint = drt
        .namespace(WORKER_NAMESPACE)
        .component(WORKER_COMPONENT)
        .endpoint(WORKER_ENDPOINT);
    // A one-token canary every 10 s: /health follows whether the engine answers.
    let canary = serde_json::json!({"token_ids": [1], "max_tokens": 1});
    let options = ServeOptions {
        health_check: Some(HealthCheck::new(canary)),
        ..Default::default()
    };
    let kv = mocker::MockKv::new(
        mocker::MOCK_BLOCK_SIZE,
        mocker::MOCK_TOTAL_BLOCKS,
        engine_metrics::EngineMetrics::new(&endpoint)?,
    );
    let served = endpoint
        .serve_with_options(
            mocker::mock_engine(config, Some(std::sync::Arc::new(kv))),
            options,
        )
        .await?;
    let card = registry
        .register(
            model,
            ModelEntry {
                namespace: WORKER_NAMESPACE.to_owned(),
                component: WORKER_COMPONENT.to_owned(),
                endpoint: WORKER_ENDPOINT.to_owned(),
            },
        )
        .await?;
    Ok(MockWorker { served, card })
}

/// Publishes that the engine served at `endpoint` serves `model`, so that
/// every frontend of the deployment routes requests for `model` to it (in
/// one process, or across processes over NATS or etcd). The model stays
/// listed while the returned lease lives. The engine receives
/// [`protocols::EngineRequest`]s and answers [`protocols::EngineOutput`]s.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// let drt = dynamo_runtime::DistributedRuntime::from_config(Default::default())?;
/// let endpoint = drt.namespace("dynamo").component("backend").endpoint("generate");
/// let _card = dynamo_llm::register_llm(&endpoint, "my-model").await?;
/// let registry = dynamo_llm::registry::ModelRegistry::new(drt.clone());
/// assert_eq!(registry.names().await, ["my-model"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub async fn register_llm(
    endpoint: &dynamo_runtime::Endpoint,
    model: &str,
) -> Result<RecordLease, RegisterError> {
    if model.is_empty() || model.len() > MAX_MODEL_NAME || model.chars().any(char::is_control) {
        return Err(RegisterError::ModelName {
            model: model.to_owned(),
        });
    }
    let [namespace, component, endpoint_name] = endpoint.names()?;
    let registry = ModelRegistry::new(endpoint.drt().clone());
    Ok(registry
        .register(
            model,
            ModelEntry {
                namespace,
                component,
                endpoint: endpoint_name,
            },
        )
        .await?)
}

/// The longest model name [`register_llm`] takes, in bytes.
pub const MAX_MODEL_NAME: usize = 256;

/// An error from [`register_llm`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The model name is empty, longer than [`MAX_MODEL_NAME`] or holds control characters.
    #[error("invalid model name {model:?}: 1 to 256 bytes, no control characters")]
    ModelName {
        /// The name given.
        model: String,
    },
    /// The endpoint's names are not usable.
    #[error(transparent)]
    Endpoint(#[from] dynamo_runtime::MetricsError),
    /// The model card could not be published.
    #[error(transparent)]
    Discovery(#[from] dynamo_runtime::DiscoveryError),
}
