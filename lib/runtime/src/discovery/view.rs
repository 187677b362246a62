//! [`RecordWatch`]: the live view of one discovery bucket, kept current in the
//! background by whichever backend holds the bucket (in-process, NATS
//! announcements, an etcd watch). Readers never wait on the network: they
//! read the view, and may wait for its next change.

use bytes::Bytes;
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The live records of one bucket, as this process sees them now. Cheap to
/// clone; every clone sees the same records.
///
/// ```
/// use dynamo_runtime::DistributedRuntime;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// let drt = DistributedRuntime::from_config(Default::default())?;
/// let models = drt.watch_records("models").await?;
/// assert!(models.values().is_empty());
/// let seen = models.version();
/// let _lease = drt.register_record("models", "m1", b"card".to_vec()).await?;
/// models.changed(seen, std::time::Duration::from_secs(1)).await;
/// assert_eq!(models.values(), vec![b"card".to_vec()]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct RecordWatch {
    inner: Arc<Inner>,
}

struct Inner {
    bucket: String,
    /// Entry key (unique per publishing process) -> value.
    entries: RwLock<BTreeMap<String, Bytes>>,
    /// Bumped on every change.
    version: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for RecordWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordWatch")
            .field("bucket", &self.inner.bucket)
            .field("records", &self.inner.entries.read().len())
            .field("version", &self.version())
            .finish()
    }
}

impl RecordWatch {
    pub(crate) fn new(bucket: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                bucket: bucket.to_owned(),
                entries: RwLock::new(BTreeMap::new()),
                version: tokio::sync::watch::channel(0).0,
            }),
        }
    }

    /// The bucket watched.
    pub fn bucket(&self) -> &str {
        &self.inner.bucket
    }

    /// The value of every live record, in a stable order.
    pub fn values(&self) -> Vec<Vec<u8>> {
        self.inner
            .entries
            .read()
            .values()
            .map(|v| v.to_vec())
            .collect()
    }

    /// Calls `f` with every live value, without copying them.
    pub(crate) fn for_each_value(&self, mut f: impl FnMut(&[u8])) {
        for v in self.inner.entries.read().values() {
            f(v);
        }
    }

    /// How many records are live.
    pub fn len(&self) -> usize {
        self.inner.entries.read().len()
    }

    /// Whether no record is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A number that grows with every change of the records.
    pub fn version(&self) -> u64 {
        *self.inner.version.borrow()
    }

    /// Waits until the version is past `seen` or `timeout` passes; returns
    /// the version then.
    pub async fn changed(&self, seen: u64, timeout: Duration) -> u64 {
        let mut rx = self.inner.version.subscribe();
        // The sender lives in `self`, so `wait_for` only ends by the predicate.
        let _ = tokio::time::timeout(timeout, rx.wait_for(|v| *v > seen)).await;
        self.version()
    }

    /// Changes the entries with `f`, which says whether it changed anything;
    /// bumps the version when it did.
    pub(crate) fn update(&self, f: impl FnOnce(&mut BTreeMap<String, Bytes>) -> bool) {
        let changed = f(&mut self.inner.entries.write());
        if changed {
            self.inner.version.send_modify(|v| *v += 1);
        }
    }

    /// Sets one entry.
    pub(crate) fn insert(&self, key: String, value: Bytes) {
        self.update(|m| m.insert(key, value.clone()).as_ref() != Some(&value));
    }

    /// Removes one entry.
    pub(crate) fn remove(&self, key: &str) {
        self.update(|m| m.remove(key).is_some());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn changes_bump_the_version_and_wake_waiters() {
        let view = RecordWatch::new("b");
        assert_eq!(view.version(), 0);
        view.insert("k".into(), Bytes::from_static(b"v"));
        assert_eq!(view.version(), 1);
        view.insert("k".into(), Bytes::from_static(b"v"));
        assert_eq!(view.version(), 1, "same value: no change");
        let waiter = {
            let view = view.clone();
            tokio::spawn(async move { view.changed(1, Duration::from_secs(5)).await })
        };
        view.remove("k");
        assert_eq!(waiter.await.unwrap(), 2);
        assert!(view.is_empty());
        view.remove("k");
        assert_eq!(view.version(), 2, "nothing removed: no change");
        assert_eq!(view.changed(2, Duration::from_millis(10)).await, 2);
    }
}
