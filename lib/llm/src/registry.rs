//! Which models are served, and by which endpoint. A worker publishes a model
//! card through the runtime's discovery records (in-process, announced over
//! NATS, or in etcd); the frontend reads the cards from the bucket's watched
//! view and routes by them, never waiting on the network per request.

use dynamo_runtime::{DiscoveryError, DistributedRuntime, RecordLease, RecordWatch};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The discovery bucket of model cards.
pub const MODEL_BUCKET: &str = "dynamo_models";
/// How long `register` waits for the card to show in this process's view.
const SHOWN_WITHIN: Duration = Duration::from_secs(2);

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

/// The models of a deployment, as seen from one process. Cheap to clone.
#[derive(Clone)]
pub struct ModelRegistry {
    drt: DistributedRuntime,
    view: Arc<tokio::sync::OnceCell<RecordWatch>>,
    /// The cards of the view, parsed, as of a view version.
    parsed: Arc<RwLock<(u64, BTreeMap<String, ModelEntry>)>>,
}

impl std::fmt::Debug for ModelRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelRegistry").finish_non_exhaustive()
    }
}

impl ModelRegistry {
    /// The registry of `drt`'s deployment. The first lookup starts watching
    /// the model cards (on `drt`'s runtime, for as long as it lives).
    pub fn new(drt: DistributedRuntime) -> Self {
        Self {
            drt,
            view: Arc::default(),
            parsed: Arc::new(RwLock::new((u64::MAX, BTreeMap::new()))),
        }
    }

    /// The watched view of the cards; `None` (and a warning) while discovery
    /// cannot be reached for the first time.
    async fn view(&self) -> Option<&RecordWatch> {
        match self
            .view
            .get_or_try_init(|| self.drt.watch_records(MODEL_BUCKET))
            .await
        {
            Ok(view) => Some(view),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the models");
                None
            }
        }
    }

    /// Opens the views a frontend reads (the model cards and the instances
    /// of every endpoint) now, instead of at the first request.
    pub async fn open(&self) -> Result<(), DiscoveryError> {
        self.view
            .get_or_try_init(|| self.drt.watch_records(MODEL_BUCKET))
            .await?;
        self.drt.watch_instances().await
    }

    /// Brings the parsed cards up to the view's version (parses once per change).
    async fn refresh(&self) {
        let Some(view) = self.view().await else {
            return;
        };
        let version = view.version();
        if self.parsed.read().0 == version {
            return;
        }
        let mut models = BTreeMap::new();
        for v in view.values() {
            if let Ok(card) = serde_json::from_slice::<Card>(&v) {
                models.insert(card.model, card.entry);
            }
        }
        *self.parsed.write() = (version, models);
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
        // When this process reads the cards too (a frontend beside the
        // worker), return once its own view shows the card (over NATS or etcd
        // it travels there and back), so a request right after finds it. A
        // worker alone does not watch the cards: it receives nobody's.
        if let Some(view) = self.view.get() {
            let deadline = tokio::time::Instant::now() + SHOWN_WITHIN;
            loop {
                let seen = view.version();
                if self.get(model).await.as_ref() == Some(&entry) {
                    break;
                }
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    tracing::warn!(model, "the model card is not in view yet; serving anyway");
                    break;
                }
                view.changed(seen, left).await;
            }
        }
        Ok(lease)
    }

    /// Where `model` is served.
    pub async fn get(&self, model: &str) -> Option<ModelEntry> {
        self.refresh().await;
        self.parsed.read().1.get(model).cloned()
    }

    /// Every model served.
    pub async fn names(&self) -> Vec<String> {
        self.refresh().await;
        self.parsed.read().1.keys().cloned().collect()
    }
}
