//! Records within one process: the view of each bucket is the bucket itself.

use super::view::RecordWatch;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// The in-process records of one runtime.
#[derive(Default)]
pub(crate) struct LocalRecords {
    /// bucket -> its view.
    buckets: Mutex<HashMap<String, RecordWatch>>,
    /// (bucket, key) -> id of the lease that put the value there now.
    owners: Mutex<HashMap<(String, String), u64>>,
}

impl LocalRecords {
    /// The view of `bucket` (created empty the first time).
    pub(crate) fn view(&self, bucket: &str) -> RecordWatch {
        self.buckets
            .lock()
            .entry(bucket.to_owned())
            .or_insert_with(|| RecordWatch::new(bucket))
            .clone()
    }

    /// Puts `value` under `key`; returns the handle that withdraws it.
    pub(crate) fn put(self: &Arc<Self>, bucket: &str, key: &str, value: Bytes) -> LocalRecord {
        let id = fastrand::u64(..);
        self.owners
            .lock()
            .insert((bucket.to_owned(), key.to_owned()), id);
        self.view(bucket).insert(key.to_owned(), value);
        LocalRecord {
            records: self.clone(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            id,
        }
    }
}

/// A record of this process; withdrawn when dropped (unless the key was put
/// again since, by another lease).
pub(crate) struct LocalRecord {
    records: Arc<LocalRecords>,
    pub(crate) bucket: String,
    pub(crate) key: String,
    id: u64,
}

impl Drop for LocalRecord {
    fn drop(&mut self) {
        let owner = (
            std::mem::take(&mut self.bucket),
            std::mem::take(&mut self.key),
        );
        let mut owners = self.records.owners.lock();
        if owners.get(&owner) == Some(&self.id) {
            owners.remove(&owner);
            drop(owners);
            self.records.view(&owner.0).remove(&owner.1);
        }
    }
}
