//! Leased records: small values that live processes publish under a key in a
//! named bucket, and that anyone can watch. How workers announce the
//! instances and the models they serve, and how a process announces its
//! system server for Prometheus. The public methods are
//! `DistributedRuntime::register_record`, `list_records` and `watch_records`.
//!
//! Readers never fetch on their request path: each bucket they read has a
//! [`RecordWatch`], a view kept current in the background by the backend:
//! - in-process by default (`local`);
//! - over NATS alone (`NATS_SERVER`), by announcements (`nats`);
//! - in etcd (`ETCD_ENDPOINTS` beside `NATS_SERVER`), under leases and
//!   watches (`etcd`).
//!
//! In every backend the records of a process that dies vanish with it
//! (within [`RECORD_LEASE`] or [`ETCD_LEASE_TTL`]), and a short outage of
//! NATS or etcd leaves every view as it was.

mod etcd;
mod frame;
mod local;
mod nats;
mod view;

pub(crate) use etcd::EtcdRecords;
pub use etcd::ETCD_LEASE_TTL;
pub(crate) use local::LocalRecords;
pub(crate) use nats::NatsRecords;
pub use nats::{ANNOUNCE_EVERY, RECORD_GATHER, RECORD_LEASE};
pub use view::RecordWatch;

use crate::request_plane::{Plane, TransportError};
use crate::DistributedRuntime;
use bytes::Bytes;
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

/// Where the records of a runtime connected to NATS live.
pub(crate) enum RemoteRecords {
    /// Announced over NATS.
    Nats(Arc<NatsRecords>),
    /// In etcd.
    Etcd(Arc<EtcdRecords>),
}

impl RemoteRecords {
    /// Publishes `value` under `key` in `bucket`.
    pub(crate) async fn put(
        &self,
        bucket: &str,
        key: &str,
        value: Bytes,
    ) -> Result<RecordLease, TransportError> {
        let kind = match self {
            RemoteRecords::Nats(n) => LeaseKind::Nats(n.put(bucket, key, value).await?),
            RemoteRecords::Etcd(e) => LeaseKind::Etcd(e.put(bucket, key, value).await?),
        };
        Ok(RecordLease { kind: Some(kind) })
    }

    /// The view of `bucket`.
    pub(crate) async fn watch(&self, bucket: &str) -> Result<RecordWatch, TransportError> {
        match self {
            RemoteRecords::Nats(n) => n.watch(bucket).await,
            RemoteRecords::Etcd(e) => e.watch(bucket).await,
        }
    }
}

enum LeaseKind {
    Local(local::LocalRecord),
    Nats(nats::NatsRecordHandle),
    Etcd(etcd::EtcdRecordHandle),
}

/// A published record. It stays listed while the lease lives; dropping it
/// withdraws it in the background, [`RecordLease::revoke`] withdraws it now.
pub struct RecordLease {
    kind: Option<LeaseKind>,
}

impl std::fmt::Debug for RecordLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (backend, bucket, key) = match &self.kind {
            Some(LeaseKind::Local(r)) => ("local", r.bucket.as_str(), r.key.as_str()),
            Some(LeaseKind::Nats(h)) => ("nats", h.bucket(), h.key()),
            Some(LeaseKind::Etcd(h)) => ("etcd", h.bucket(), h.key()),
            None => ("revoked", "", ""),
        };
        f.debug_struct("RecordLease")
            .field("backend", &backend)
            .field("bucket", &bucket)
            .field("key", &key)
            .finish()
    }
}

impl RecordLease {
    /// Removes the record now: when this returns, NATS or etcd has taken the
    /// withdrawal (or a deadline of a second or two passed; the lease then
    /// ends the record).
    pub async fn revoke(mut self) {
        match self.kind.take() {
            Some(LeaseKind::Nats(h)) => h.withdraw().await,
            Some(LeaseKind::Etcd(h)) => h.withdraw().await,
            Some(LeaseKind::Local(r)) => drop(r),
            None => {}
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
        Plane::Local(_) => Ok(RecordLease {
            kind: Some(LeaseKind::Local(drt.local_records().put(
                bucket,
                key,
                value.into(),
            ))),
        }),
        Plane::Nats(nats) => nats
            .records
            .put(bucket, key, value.into())
            .await
            .map_err(transport),
    }
}

/// The view of `bucket` (see `DistributedRuntime::watch_records`).
pub(crate) async fn watch(
    drt: &DistributedRuntime,
    bucket: &str,
) -> Result<RecordWatch, DiscoveryError> {
    check_bucket(bucket)?;
    let transport = |source| DiscoveryError::Transport {
        bucket: bucket.to_owned(),
        source,
    };
    match drt.plane().await.map_err(transport)? {
        Plane::Local(_) => Ok(drt.local_records().view(bucket)),
        Plane::Nats(nats) => nats.records.watch(bucket).await.map_err(transport),
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
