//! The live instances of every endpoint: discovery records in the
//! [`INSTANCE_BUCKET`] bucket (announced over NATS, or in etcd under the
//! process's lease), read from the bucket's watched view. A worker that dies
//! drops out when its lease ends; a client also skips, for one lease, an
//! instance that did not answer a request.

use super::key_prefix;
use super::transport::Running;
use crate::discovery::{RecordLease, RecordWatch, RemoteRecords, RECORD_LEASE};
use crate::request_plane::{EndpointPath, InstanceId, TransportError};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The discovery bucket of live instances.
pub const INSTANCE_BUCKET: &str = "dynamo_instances";

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

/// Instance ids by endpoint name, each list sorted and shared.
type ByEndpoint = HashMap<String, Arc<[InstanceId]>>;

/// The instances of every endpoint, as the bucket's view shows them. The
/// view is opened by the first client of the process, so a worker that calls
/// no endpoint receives nobody's instance records.
pub(crate) struct InstanceRegistry {
    view: tokio::sync::OnceCell<RecordWatch>,
    /// The view's records by endpoint (each list sorted, shared with the
    /// callers), as of a view version.
    by_endpoint: RwLock<(u64, ByEndpoint)>,
    /// Instances that did not answer, and when: skipped for a lease.
    forgotten: Mutex<HashMap<InstanceId, Instant>>,
}

impl InstanceRegistry {
    /// A registry that watches nothing yet.
    pub(crate) fn new() -> Self {
        Self {
            view: tokio::sync::OnceCell::new(),
            by_endpoint: RwLock::new((u64::MAX, HashMap::new())),
            forgotten: Mutex::new(HashMap::new()),
        }
    }

    /// Starts watching the instance bucket (once; for the first client).
    pub(crate) async fn watch(&self, records: &RemoteRecords) -> Result<(), TransportError> {
        self.view
            .get_or_try_init(|| records.watch(INSTANCE_BUCKET))
            .await
            .map(|_| ())
    }

    /// Lists instance `id` of `path` with `record` until the returned handle
    /// stops (or the process dies).
    pub(crate) async fn register(
        records: &RemoteRecords,
        path: &EndpointPath,
        id: InstanceId,
        record: &InstanceRecord,
        stop: CancellationToken,
        in_flight: Running,
    ) -> Result<NatsServing, TransportError> {
        let key = format!("{}{id:016x}", key_prefix(path));
        let value = serde_json::to_vec(record).map_err(|source| TransportError::Encode {
            what: "an instance record",
            source,
        })?;
        let lease = records.put(INSTANCE_BUCKET, &key, value.into()).await?;
        // The record lives while the instance serves, even when the caller
        // drops its handle (serving goes on until stopped): a task holds it
        // until `stop`.
        let lease = Arc::new(Mutex::new(Some(lease)));
        let held = lease.clone();
        let stopped = stop.clone();
        tokio::spawn(async move {
            stopped.cancelled().await;
            drop(held.lock().take());
        });
        Ok(NatsServing {
            lease,
            stop,
            in_flight,
        })
    }

    /// The instances of `endpoint` (`namespace/component/endpoint`) now
    /// (never waits on the network).
    pub(crate) fn instances(&self, endpoint: &str) -> Arc<[InstanceId]> {
        let Some(view) = self.view.get() else {
            return Arc::from([]);
        };
        let version = view.version();
        let of = |grouped: &ByEndpoint| {
            grouped
                .get(endpoint)
                .cloned()
                .unwrap_or_else(|| Arc::from([]))
        };
        let mut ids = {
            let cached = self.by_endpoint.read();
            if cached.0 == version {
                of(&cached.1)
            } else {
                drop(cached);
                let fresh = group(view);
                let ids = of(&fresh);
                *self.by_endpoint.write() = (version, fresh);
                ids
            }
        };
        let mut forgotten = self.forgotten.lock();
        if !forgotten.is_empty() {
            forgotten.retain(|_, at| at.elapsed() < RECORD_LEASE);
            // Skipped only while another is left: a lone instance that did
            // not answer (it is reconnecting to a restarted nats-server, say)
            // is tried again at once rather than refused for a lease.
            if ids.iter().any(|id| forgotten.contains_key(id))
                && ids.iter().any(|id| !forgotten.contains_key(id))
            {
                ids = ids
                    .iter()
                    .filter(|id| !forgotten.contains_key(id))
                    .copied()
                    .collect();
            }
        }
        ids
    }

    /// Waits up to `timeout` for the instances to change; returns at once
    /// when they changed since `seen`.
    pub(crate) async fn changed(&self, seen: u64, timeout: Duration) -> u64 {
        match self.view.get() {
            Some(view) => view.changed(seen, timeout).await,
            None => {
                tokio::time::sleep(timeout).await;
                seen
            }
        }
    }

    /// The view's version now.
    pub(crate) fn version(&self) -> u64 {
        self.view.get().map_or(0, RecordWatch::version)
    }

    /// Skips instance `id` for a lease, while others are left (it did not
    /// answer a request).
    pub(crate) fn forget(&self, id: InstanceId) {
        self.forgotten.lock().insert(id, Instant::now());
    }
}

/// The view's instances by endpoint.
fn group(view: &RecordWatch) -> ByEndpoint {
    let mut by_endpoint: HashMap<String, Vec<InstanceId>> = HashMap::new();
    view.for_each_value(|v| {
        let Ok(r) = serde_json::from_slice::<InstanceRecord>(v) else {
            return;
        };
        if let Ok(id) = InstanceId::from_str_radix(&r.instance, 16) {
            by_endpoint.entry(r.endpoint).or_default().push(id);
        }
    });
    by_endpoint
        .into_iter()
        .map(|(endpoint, mut ids)| {
            ids.sort_unstable();
            ids.dedup();
            (endpoint, Arc::from(ids))
        })
        .collect()
}

/// A serving instance's record.
pub(crate) struct NatsServing {
    /// The instance's record; taken out to be withdrawn when it stops.
    lease: Arc<Mutex<Option<RecordLease>>>,
    stop: CancellationToken,
    /// The requests this instance is working on.
    in_flight: Running,
}

impl NatsServing {
    /// Stops taking requests and leaves discovery, then waits up to
    /// `timeout` for the requests in flight to finish. Returns how many were
    /// still running when it gave up (0 when drained).
    pub(crate) async fn drain(self, timeout: Duration) -> usize {
        let in_flight = self.in_flight.clone();
        self.stop().await;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = in_flight.len();
            if left == 0 || tokio::time::Instant::now() >= deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops serving and withdraws the record.
    pub(crate) async fn stop(self) {
        let lease = self.lease.lock().take();
        if let Some(lease) = lease {
            lease.revoke().await;
        }
        self.stop.cancel();
    }
}
