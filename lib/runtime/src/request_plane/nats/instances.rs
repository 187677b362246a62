//! The live instances of every endpoint, in a JetStream key-value bucket
//! whose entries expire unless their instance keeps renewing them, so a
//! worker that dies drops out within [`LEASE`]. Clients keep the instance
//! list of the endpoints they call fresh by listing the bucket's keys.

use super::key_prefix;
use super::transport::Running;
use crate::request_plane::{CallError, EndpointPath, InstanceId, TransportError};
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The key-value bucket of live instances.
pub const INSTANCE_BUCKET: &str = "dynamo_instances";
/// How long an instance stays listed without renewing its entry.
pub const LEASE: Duration = Duration::from_secs(5);
/// How often a serving instance renews its entry.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How often a client lists the instances of the endpoints it calls.
const REFRESH: Duration = Duration::from_millis(500);

/// What an instance publishes about itself in the bucket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstanceRecord {
    /// `namespace/component/endpoint`.
    pub endpoint: String,
    /// The instance id, hex.
    pub instance: String,
    /// The subject prefix its requests go to.
    pub subject: String,
    /// Its process's system status server, if it runs one.
    pub system_addr: Option<String>,
}

/// The instance bucket, and the instances known of the endpoints this
/// process calls.
pub(crate) struct InstanceRegistry {
    js: jetstream::Context,
    kv: kv::Store,
    known: RwLock<HashMap<EndpointPath, Vec<InstanceId>>>,
    watched: Mutex<HashSet<EndpointPath>>,
}

impl InstanceRegistry {
    /// Opens (or creates) the instance bucket.
    pub(crate) async fn open(client: async_nats::Client) -> Result<Self, TransportError> {
        let js = jetstream::new(client);
        Ok(Self {
            kv: open_leased_bucket(&js, INSTANCE_BUCKET).await?,
            js,
            known: RwLock::new(HashMap::new()),
            watched: Mutex::new(HashSet::new()),
        })
    }

    /// Lists instance `id` of `path` with `record`, renewed every
    /// [`HEARTBEAT`] until `stop` is cancelled or the returned handle stopped.
    pub(crate) async fn register(
        &self,
        path: &EndpointPath,
        id: InstanceId,
        record: &InstanceRecord,
        stop: CancellationToken,
        in_flight: Running,
    ) -> Result<NatsServing, TransportError> {
        let key = format!("{}{id:016x}", key_prefix(path));
        let value =
            Bytes::from(
                serde_json::to_vec(record).map_err(|source| TransportError::Encode {
                    what: "an instance record",
                    source,
                })?,
            );
        self.kv
            .put(&key, value.clone())
            .await
            .map_err(|source| TransportError::Register {
                bucket: INSTANCE_BUCKET,
                key: key.clone(),
                source,
            })?;
        tokio::spawn(heartbeat(
            self.js.clone(),
            self.kv.clone(),
            key.clone(),
            value,
            stop.clone(),
        ));
        Ok(NatsServing {
            kv: self.kv.clone(),
            key,
            stop,
            in_flight,
        })
    }

    /// Keeps the instance list of `path` fresh for as long as the registry lives.
    pub(crate) async fn watch(self: &Arc<Self>, path: &EndpointPath) -> Result<(), CallError> {
        if !self.watched.lock().insert(path.clone()) {
            return Ok(());
        }
        self.refresh(path).await;
        let weak: Weak<Self> = Arc::downgrade(self);
        let path = path.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REFRESH).await;
                let Some(registry) = weak.upgrade() else {
                    break;
                };
                registry.refresh(&path).await;
            }
        });
        Ok(())
    }

    /// Lists the instances of `path` now.
    pub(crate) async fn refresh(&self, path: &EndpointPath) {
        let prefix = key_prefix(path);
        let ids = match self.kv.keys().await {
            Ok(keys) => {
                keys.filter_map(|k| async move { k.ok() })
                    .filter_map(|k| {
                        let id = k
                            .strip_prefix(&prefix)
                            .and_then(|rest| InstanceId::from_str_radix(rest, 16).ok());
                        async move { id }
                    })
                    .collect::<Vec<_>>()
                    .await
            }
            Err(e) => {
                tracing::warn!(endpoint = %path, error = %e, "cannot list instances");
                return;
            }
        };
        self.known.write().insert(path.clone(), ids);
    }

    /// The instances of `path` as last listed.
    pub(crate) fn instances(&self, path: &EndpointPath) -> Vec<InstanceId> {
        self.known.read().get(path).cloned().unwrap_or_default()
    }

    /// Drops instance `id` of `path` from the list until the next listing
    /// (it did not answer a request).
    pub(crate) fn forget(&self, path: &EndpointPath, id: InstanceId) {
        if let Some(ids) = self.known.write().get_mut(path) {
            ids.retain(|i| *i != id);
        }
    }
}

/// Opens a bucket whose entries expire after [`LEASE`], creating it if
/// needed. The bucket's stream is created directly, with the settings of a
/// key-value bucket, rather than with `create_key_value`, which first queries
/// account information that NATS servers before 2.10 answer in a form the
/// client does not read.
async fn open_leased_bucket(
    js: &jetstream::Context,
    bucket: &'static str,
) -> Result<kv::Store, TransportError> {
    if let Ok(kv) = js.get_key_value(bucket).await {
        return Ok(kv);
    }
    let created = js
        .create_stream(jetstream::stream::Config {
            name: format!("KV_{bucket}"),
            description: Some("dynamo: entries leased by live processes".to_owned()),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            max_age: LEASE,
            storage: jetstream::stream::StorageType::Memory,
            discard: jetstream::stream::DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            num_replicas: 1,
            duplicate_window: LEASE,
            ..Default::default()
        })
        .await;
    if let Err(e) = &created {
        // Another process may have created it meanwhile; if not, the open below says so.
        tracing::debug!(error = %e, bucket, "creating the bucket's stream");
    }
    js.get_key_value(bucket)
        .await
        .map_err(|source| TransportError::OpenBucket { bucket, source })
}

/// A serving instance's entry, renewed by a heartbeat.
pub(crate) struct NatsServing {
    kv: kv::Store,
    key: String,
    stop: CancellationToken,
    /// The requests this instance is working on.
    in_flight: Running,
}

impl NatsServing {
    /// Stops taking requests and leaves the bucket, then waits up to
    /// `timeout` for the requests in flight to finish. Returns how many were
    /// still running when it gave up (0 when drained).
    pub(crate) async fn drain(self, timeout: Duration) -> usize {
        let in_flight = self.in_flight.clone();
        self.stop().await;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = in_flight.lock().len();
            if left == 0 || tokio::time::Instant::now() >= deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops serving and the heartbeat, and removes the entry.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        if let Err(e) = self.kv.delete(&self.key).await {
            tracing::warn!(key = %self.key, error = %e, "could not deregister; the entry expires by itself");
        }
    }
}

/// Renews the instance's entry every [`HEARTBEAT`] until `stop`. When the
/// put fails (a NATS server that restarted lost the bucket, which lives in
/// memory), it creates the bucket again and puts once more, so the instance
/// is listed again as soon as the connection is back.
async fn heartbeat(
    js: jetstream::Context,
    mut kv: kv::Store,
    key: String,
    value: Bytes,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(HEARTBEAT) => {}
        }
        let Err(e) = kv.put(&key, value.clone()).await else {
            continue;
        };
        match open_leased_bucket(&js, INSTANCE_BUCKET).await {
            Ok(fresh) => {
                kv = fresh;
                match kv.put(&key, value.clone()).await {
                    Ok(_) => tracing::info!(key, "instance bucket created again; instance listed"),
                    Err(e) => tracing::warn!(key, error = %e, "could not renew the instance entry"),
                }
            }
            Err(open) => {
                tracing::warn!(key, error = %e, reopen = %open, "could not renew the instance entry")
            }
        }
    }
}
