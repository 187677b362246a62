//! Which models are served, and by which endpoint. A worker publishes a model
//! card through the runtime's discovery records (in-process, or gathered from
//! every process over NATS); the frontend lists the cards and routes by them.

use dynamo_runtime::{DiscoveryError, DistributedRuntime, RecordLease};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The discovery bucket of model cards.
pub const MODEL_BUCKET: &str = "dynamo_models";
/// How long the frontend trusts its list of models.
const CACHE_FOR: Duration = Duration::from_millis(500);
/// How often a miss may force a fresh list.
const MISS_REFRESH_EVERY: Duration = Duration::from_millis(100);

/// A model card: the model and where it is served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// Namespace of the worker's endpoint.
    pub namespace: String,
    /// Component of the worker's endpoint.
    pub component: String,
    /// The endpoint.
    pub endpoint: String,
}

#[derive(Serialize, Deserialize)]
struct Card {
    model: String,
    #[serde(flatten)]
    entry: ModelEntry,
}

struct Cache {
    listed_at: Option<Instant>,
    models: BTreeMap<String, ModelEntry>,
}

/// The models of a deployment, as seen from one process. Cheap to clone.
#[derive(Clone)]
pub struct ModelRegistry {
    drt: DistributedRuntime,
    cache: Arc<RwLock<Cache>>,
}

impl std::fmt::Debug for ModelRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelRegistry").finish_non_exhaustive()
    }
}

impl ModelRegistry {
    /// The registry of `drt`'s deployment.
    pub fn new(drt: DistributedRuntime) -> Self {
        Self {
            drt,
            cache: Arc::new(RwLock::new(Cache {
                listed_at: None,
                models: BTreeMap::new(),
            })),
        }
    }

    /// Publishes that `model` is served at `entry`, for as long as the lease lives.
    pub async fn register(
        &self,
        model: &str,
        entry: ModelEntry,
    ) -> Result<RecordLease, DiscoveryError> {
        let card = Card {
            model: model.to_owned(),
            entry,
        };
        let value = serde_json::to_vec(&card).unwrap_or_default();
        let lease = self.drt.register_record(MODEL_BUCKET, model, value).await?;
        self.cache.write().listed_at = None;
        Ok(lease)
    }

    async fn refresh(&self) {
        match self.drt.list_records(MODEL_BUCKET).await {
            Ok(values) => {
                let models = values
                    .iter()
                    .filter_map(|v| serde_json::from_slice::<Card>(v).ok())
                    .map(|c| (c.model, c.entry))
                    .collect();
                *self.cache.write() = Cache {
                    listed_at: Some(Instant::now()),
                    models,
                };
            }
            Err(e) => tracing::warn!(error = %e, "cannot list the models"),
        }
    }

    async fn fresh(&self, max_age: Duration) {
        let stale = self
            .cache
            .read()
            .listed_at
            .is_none_or(|t| t.elapsed() > max_age);
        if stale {
            self.refresh().await;
        }
    }

    /// Where `model` is served.
    pub async fn get(&self, model: &str) -> Option<ModelEntry> {
        self.fresh(CACHE_FOR).await;
        if let Some(e) = self.cache.read().models.get(model) {
            return Some(e.clone());
        }
        self.fresh(MISS_REFRESH_EVERY).await;
        self.cache.read().models.get(model).cloned()
    }

    /// Every model served.
    pub async fn names(&self) -> Vec<String> {
        self.fresh(CACHE_FOR).await;
        self.cache.read().models.keys().cloned().collect()
    }
}
