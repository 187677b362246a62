//! Which models are served, and by which endpoint: workers register the
//! model they serve, the frontend looks it up and routes to its endpoint.

use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where a model is served: the names of its endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    /// Namespace of the worker's endpoint.
    pub namespace: String,
    /// Component of the worker's endpoint.
    pub component: String,
    /// The endpoint.
    pub endpoint: String,
}

/// The models of one deployment (in-process). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ModelRegistry {
    models: Arc<RwLock<BTreeMap<String, ModelEntry>>>,
}

impl ModelRegistry {
    /// A worker serves `model` at `entry`.
    pub fn register(&self, model: &str, entry: ModelEntry) {
        self.models.write().insert(model.to_owned(), entry);
    }

    /// The model is no longer served.
    pub fn remove(&self, model: &str) {
        self.models.write().remove(model);
    }

    /// Where `model` is served.
    pub fn get(&self, model: &str) -> Option<ModelEntry> {
        self.models.read().get(model).cloned()
    }

    /// Every model served.
    pub fn names(&self) -> Vec<String> {
        self.models.read().keys().cloned().collect()
    }
}
