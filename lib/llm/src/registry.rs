//! Which models are served, and by which endpoint. A worker publishes a model
//! card through the runtime's discovery records (in-process, or gathered from
//! every process over NATS); the frontend lists the cards and routes by them.

use dynamo_runtime::{DiscoveryError, DistributedRuntime, RecordLease};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The discovery bucket of model cards.
pub const MODEL_BUCKET: &str = "dynamo_models";
/// How often the frontend lists the model cards, in the background.
const LIST_EVERY: Duration = Duration::from_millis(500);
/// Listings a served model may be missing from before the frontend drops it:
/// one listing that missed a process's answer (a short discovery outage, a
/// slow gather) never turns a served model into a 404.
const MISSING_LISTINGS: u32 = 3;

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
    listed: bool,
    /// Each model, its entry, and how many listings in a row it was missing from.
    models: BTreeMap<String, (ModelEntry, u32)>,
}

impl Cache {
    /// Takes in one listing: models in it are current, models missing from
    /// it are kept until they were missing [`MISSING_LISTINGS`] times.
    fn update(&mut self, listed: BTreeMap<String, ModelEntry>) {
        for (_, (_, missing)) in self.models.iter_mut() {
            *missing += 1;
        }
        for (model, entry) in listed {
            self.models.insert(model, (entry, 0));
        }
        self.models
            .retain(|_, (_, missing)| *missing < MISSING_LISTINGS);
        self.listed = true;
    }
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
    /// The registry of `drt`'s deployment. Its view of the model cards is
    /// kept current by listing them every 500 ms in the background (on
    /// `drt`'s tokio runtime, for as long as the registry lives), never on
    /// the request path past the first.
    pub fn new(drt: DistributedRuntime) -> Self {
        let registry = Self {
            drt,
            cache: Arc::new(RwLock::new(Cache {
                listed: false,
                models: BTreeMap::new(),
            })),
        };
        let weak = Arc::downgrade(&registry.cache);
        let drt = registry.drt.clone();
        registry.drt.tokio_handle().spawn(async move {
            loop {
                tokio::time::sleep(LIST_EVERY).await;
                let Some(cache) = weak.upgrade() else { break };
                if let Some(listed) = list(&drt).await {
                    cache.write().update(listed);
                }
            }
        });
        registry
    }

    /// Publishes that `model` is served at `entry`, for as long as the lease lives.
    pub async fn register(
        &self,
        model: &str,
        entry: ModelEntry,
    ) -> Result<RecordLease, DiscoveryError> {
        let card = Card {
            model: model.to_owned(),
            entry: entry.clone(),
        };
        let value = serde_json::to_vec(&card).unwrap_or_default();
        let lease = self.drt.register_record(MODEL_BUCKET, model, value).await?;
        self.cache
            .write()
            .models
            .insert(model.to_owned(), (entry, 0));
        Ok(lease)
    }

    /// Lists the cards now, the first time only (later listings run in the background).
    async fn first_listing(&self) {
        if self.cache.read().listed {
            return;
        }
        if let Some(listed) = list(&self.drt).await {
            self.cache.write().update(listed);
        }
    }

    /// Where `model` is served.
    pub async fn get(&self, model: &str) -> Option<ModelEntry> {
        self.first_listing().await;
        self.cache.read().models.get(model).map(|(e, _)| e.clone())
    }

    /// Every model served.
    pub async fn names(&self) -> Vec<String> {
        self.first_listing().await;
        self.cache.read().models.keys().cloned().collect()
    }
}

/// One listing of the model cards; `None` (and a warning) when it failed.
async fn list(drt: &DistributedRuntime) -> Option<BTreeMap<String, ModelEntry>> {
    match drt.list_records(MODEL_BUCKET).await {
        Ok(values) => Some(
            values
                .iter()
                .filter_map(|v| serde_json::from_slice::<Card>(v).ok())
                .map(|c| (c.model, c.entry))
                .collect(),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the models");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(e: &str) -> ModelEntry {
        ModelEntry {
            namespace: "ns".into(),
            component: "c".into(),
            endpoint: e.into(),
        }
    }

    #[test]
    fn a_model_missing_from_a_listing_or_two_is_kept_and_dropped_after_three() {
        let mut cache = Cache {
            listed: false,
            models: BTreeMap::new(),
        };
        cache.update(BTreeMap::from([
            ("a".into(), entry("1")),
            ("b".into(), entry("1")),
        ]));
        for _ in 0..MISSING_LISTINGS - 1 {
            cache.update(BTreeMap::from([("a".into(), entry("2"))]));
            assert!(
                cache.models.contains_key("b"),
                "kept through a short outage"
            );
        }
        cache.update(BTreeMap::new());
        assert!(
            !cache.models.contains_key("b"),
            "gone after {MISSING_LISTINGS} listings"
        );
        assert_eq!(cache.models["a"].0, entry("2"), "the newest entry wins");
        cache.update(BTreeMap::from([("b".into(), entry("3"))]));
        assert_eq!(cache.models["b"], (entry("3"), 0), "back when listed again");
    }
}
