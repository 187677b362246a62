//! Leased records: small values that live processes publish under a key in a
//! named bucket, and that anyone can list. How workers announce the model they
//! serve, and how a process announces its system server. In-process by
//! default; over NATS (`NATS_SERVER`), by scatter-gather ([`nats`]), so the
//! records of a process that is gone vanish with it. The public methods are
//! `DistributedRuntime::register_record` and `list_records`.

mod nats;

pub(crate) use nats::NatsRecords;
pub use nats::RECORD_GATHER;

use crate::request_plane::{Plane, TransportError};
use crate::DistributedRuntime;
use nats::NatsRecordHandle;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// An error from publishing or listing records.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// A bucket name outside `[A-Za-z0-9_-]+`.
    #[error("invalid bucket name {bucket:?}: use letters, digits, '_' and '-'")]
    InvalidBucket {
        /// The name given.
        bucket: String,
    },
    /// The transport failed.
    #[error("discovery bucket {bucket:?}: {source}")]
    Transport {
        /// The bucket.
        bucket: String,
        /// What failed.
        #[source]
        source: TransportError,
    },
    /// A record could not be encoded.
    #[error("discovery bucket {bucket:?}: cannot encode the record {what}: {source}")]
    Encode {
        /// The bucket.
        bucket: String,
        /// The record.
        what: String,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
}

/// One bucket: key -> (id of the lease that put it, value).
type Bucket = HashMap<String, (u64, Vec<u8>)>;

/// The in-process records of one runtime.
#[derive(Default)]
pub(crate) struct LocalRecords {
    buckets: Mutex<HashMap<String, Bucket>>,
}

enum LeaseKind {
    Local {
        records: Arc<LocalRecords>,
        bucket: String,
        key: String,
        id: u64,
    },
    /// Held for its `Drop`, which withdraws the record.
    Nats { _handle: NatsRecordHandle },
}

/// A published record. It stays listed while the lease lives; dropping it or
/// [`RecordLease::revoke`] removes it.
pub struct RecordLease {
    kind: Option<LeaseKind>,
}

impl std::fmt::Debug for RecordLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (transport, bucket, key) = match &self.kind {
            Some(LeaseKind::Local { bucket, key, .. }) => ("local", bucket.as_str(), key.as_str()),
            Some(LeaseKind::Nats { _handle: h }) => ("nats", h.bucket(), h.key()),
            None => ("revoked", "", ""),
        };
        f.debug_struct("RecordLease")
            .field("transport", &transport)
            .field("bucket", &bucket)
            .field("key", &key)
            .finish()
    }
}

impl RecordLease {
    /// Removes the record now.
    pub async fn revoke(mut self) {
        if let Some(kind) = self.kind.take() {
            drop_local(kind);
        }
    }
}

fn drop_local(kind: LeaseKind) {
    if let LeaseKind::Local {
        records,
        bucket,
        key,
        id,
    } = kind
    {
        let mut buckets = records.buckets.lock();
        if let Some(b) = buckets.get_mut(&bucket) {
            if b.get(&key).is_some_and(|(i, _)| *i == id) {
                b.remove(&key);
            }
        }
    }
}

impl Drop for RecordLease {
    fn drop(&mut self) {
        if let Some(kind) = self.kind.take() {
            drop_local(kind);
        }
    }
}

fn check_bucket(bucket: &str) -> Result<(), DiscoveryError> {
    if !bucket.is_empty()
        && bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(())
    } else {
        Err(DiscoveryError::InvalidBucket {
            bucket: bucket.to_owned(),
        })
    }
}

/// Publishes `value` under `key` in `bucket` for as long as the returned
/// lease lives (see `DistributedRuntime::register_record`).
pub(crate) async fn register(
    drt: &DistributedRuntime,
    bucket: &str,
    key: &str,
    value: Vec<u8>,
) -> Result<RecordLease, DiscoveryError> {
    check_bucket(bucket)?;
    let transport = |source| DiscoveryError::Transport {
        bucket: bucket.to_owned(),
        source,
    };
    match drt.plane().await.map_err(transport)? {
        Plane::Local(_) => {
            let records = drt.local_records().clone();
            let id = fastrand::u64(..);
            records
                .buckets
                .lock()
                .entry(bucket.to_owned())
                .or_default()
                .insert(key.to_owned(), (id, value));
            Ok(RecordLease {
                kind: Some(LeaseKind::Local {
                    records,
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    id,
                }),
            })
        }
        Plane::Nats(nats) => {
            let handle = nats
                .records
                .put(bucket, key, value.into())
                .await
                .map_err(transport)?;
            Ok(RecordLease {
                kind: Some(LeaseKind::Nats { _handle: handle }),
            })
        }
    }
}

/// The values of every live record of `bucket` (see `DistributedRuntime::list_records`).
pub(crate) async fn list(
    drt: &DistributedRuntime,
    bucket: &str,
) -> Result<Vec<Vec<u8>>, DiscoveryError> {
    check_bucket(bucket)?;
    let transport = |source| DiscoveryError::Transport {
        bucket: bucket.to_owned(),
        source,
    };
    match drt.plane().await.map_err(transport)? {
        Plane::Local(_) => Ok(drt
            .local_records()
            .buckets
            .lock()
            .get(bucket)
            .map(|b| b.values().map(|(_, v)| v.clone()).collect())
            .unwrap_or_default()),
        Plane::Nats(nats) => Ok(nats
            .records
            .list(bucket)
            .await
            .map_err(transport)?
            .into_iter()
            .map(|b| b.to_vec())
            .collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_live_as_long_as_their_lease() {
        let drt = DistributedRuntime::from_config(Default::default()).unwrap();
        let a = drt
            .register_record("models", "m1", b"one".to_vec())
            .await
            .unwrap();
        let b = drt
            .register_record("models", "m2", b"two".to_vec())
            .await
            .unwrap();
        let mut got = drt.list_records("models").await.unwrap();
        got.sort();
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
        a.revoke().await;
        assert_eq!(
            drt.list_records("models").await.unwrap(),
            vec![b"two".to_vec()]
        );
        drop(b);
        assert!(drt.list_records("models").await.unwrap().is_empty());
        assert!(drt.list_records("no such").await.is_err());
        assert!(drt.list_records("empty").await.unwrap().is_empty());
    }
}
