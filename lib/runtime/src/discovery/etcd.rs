//! Records in etcd (`ETCD_ENDPOINTS`), as in the design's topology. Each
//! process holds one lease of [`ETCD_LEASE_TTL`], renewed every
//! [`KEEP_ALIVE_EVERY`]; its records are keys under that lease,
//! `dynamo/<bucket>/<key>/<process>`, so they vanish when it dies. Watchers
//! read a bucket's prefix once and then follow an etcd watch from the next
//! revision, keeping a [`RecordWatch`] current.
//!
//! Faults: when etcd is unreachable, views keep what they had and the lease
//! is renewed as soon as etcd answers again. A lease that etcd no longer
//! knows (it expired during a long outage, or etcd lost its data) is replaced
//! by a new one and every record of the process is put again. After a
//! reconnection a watcher reads the prefix again; a record missing from that
//! read is kept for one lease TTL more (its process may be putting it again),
//! so a short etcd outage never empties a view.

use super::view::RecordWatch;
use crate::request_plane::nats::token;
use crate::request_plane::TransportError;
use bytes::Bytes;
use etcd_client::{EventType, GetOptions, PutOptions, WatchOptions};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The TTL of each process's etcd lease, in seconds: how long the records
/// of a process that died stay listed.
pub const ETCD_LEASE_TTL: Duration = Duration::from_secs(3);
/// How often a process renews its lease.
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(1);
/// The deadline of every etcd request, and of connecting.
const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// The longest pause between attempts while etcd does not answer.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

fn prefix(bucket: &str) -> String {
    format!("dynamo/{}/", token(bucket))
}

fn etcd_error(
    what: &'static str,
    endpoints: &[String],
) -> impl Fn(etcd_client::Error) -> TransportError {
    let endpoints = endpoints.join(",");
    move |source| TransportError::Etcd {
        what,
        endpoints: endpoints.clone(),
        source,
    }
}

/// This process's lease and records in etcd, and the views it watches.
pub(crate) struct EtcdRecords {
    client: etcd_client::Client,
    endpoints: Vec<String>,
    process: u64,
    /// The lease the records are under now.
    lease: Mutex<i64>,
    /// This process's records: full key -> (id of the handle that put it, value).
    own: Mutex<HashMap<String, (u64, Bytes)>>,
    views: tokio::sync::Mutex<HashMap<String, RecordWatch>>,
    shutdown: CancellationToken,
}

impl Drop for EtcdRecords {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl EtcdRecords {
    /// Connects to etcd at `endpoints`, grants this process's lease and
    /// starts renewing it.
    pub(crate) async fn connect(endpoints: &[String]) -> Result<Arc<Self>, TransportError> {
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(REQUEST_DEADLINE)
            .with_timeout(REQUEST_DEADLINE)
            .with_keep_alive(Duration::from_secs(2), REQUEST_DEADLINE);
        let mut client = etcd_client::Client::connect(endpoints, Some(options))
            .await
            .map_err(etcd_error("connect", endpoints))?;
        let lease = client
            .lease_grant(ttl_secs(), None)
            .await
            .map_err(etcd_error("grant a lease", endpoints))?
            .id();
        tracing::info!(endpoints = %endpoints.join(","), lease = format_args!("{lease:x}"), "discovery: etcd");
        let me = Arc::new(Self {
            client,
            endpoints: endpoints.to_vec(),
            process: fastrand::u64(..),
            lease: Mutex::new(lease),
            own: Mutex::new(HashMap::new()),
            views: tokio::sync::Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
        });
        tokio::spawn(keep_alive(Arc::downgrade(&me), me.shutdown.clone()));
        Ok(me)
    }

    /// Puts `value` under `key` in `bucket`, under this process's lease,
    /// until the returned handle is dropped or withdrawn.
    pub(crate) async fn put(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        value: Bytes,
    ) -> Result<EtcdRecordHandle, TransportError> {
        let full = format!("{}{}/{:016x}", prefix(bucket), token(key), self.process);
        let id = fastrand::u64(..);
        self.own.lock().insert(full.clone(), (id, value.clone()));
        let lease = *self.lease.lock();
        let put = self
            .client
            .clone()
            .put(
                full.clone(),
                value.to_vec(),
                Some(PutOptions::new().with_lease(lease)),
            )
            .await;
        if let Err(e) = put {
            self.own.lock().remove(&full);
            return Err(etcd_error("put a record", &self.endpoints)(e));
        }
        Ok(EtcdRecordHandle {
            records: Arc::downgrade(self),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            full,
            id,
        })
    }

    /// The view of `bucket`: on the first call, reads the bucket and starts
    /// the watch that keeps it current.
    pub(crate) async fn watch(&self, bucket: &str) -> Result<RecordWatch, TransportError> {
        let mut views = self.views.lock().await;
        if let Some(view) = views.get(bucket) {
            return Ok(view.clone());
        }
        let view = RecordWatch::new(bucket);
        let prefix = prefix(bucket);
        let revision = read_prefix(&mut self.client.clone(), &prefix, &view, None)
            .await
            .map_err(etcd_error("read a bucket", &self.endpoints))?;
        tokio::spawn(follow(
            self.client.clone(),
            prefix,
            view.clone(),
            revision,
            self.shutdown.clone(),
        ));
        views.insert(bucket.to_owned(), view.clone());
        Ok(view)
    }

    /// Puts every record of this process again, under `lease`.
    async fn put_all(&self, lease: i64) -> Result<(), etcd_client::Error> {
        let own: Vec<(String, Bytes)> = self
            .own
            .lock()
            .iter()
            .map(|(k, (_, v))| (k.clone(), v.clone()))
            .collect();
        let mut client = self.client.clone();
        for (key, value) in own {
            client
                .put(
                    key,
                    value.to_vec(),
                    Some(PutOptions::new().with_lease(lease)),
                )
                .await?;
        }
        Ok(())
    }
}

fn ttl_secs() -> i64 {
    ETCD_LEASE_TTL.as_secs() as i64
}

/// Renews the lease every [`KEEP_ALIVE_EVERY`] until the runtime goes; when
/// etcd no longer knows it, grants a new one and puts every record again.
async fn keep_alive(records: Weak<EtcdRecords>, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    let mut failing_since: Option<Instant> = None;
    loop {
        let Some(me) = records.upgrade() else { return };
        let mut client = me.client.clone();
        let lease = *me.lease.lock();
        drop(me);
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            o = renew_until_failure(&mut client, lease, &shutdown) => o,
        };
        let expired = match outcome {
            Renewal::Expired => true,
            Renewal::Failed { error, renewed } => {
                if renewed || failing_since.is_none() {
                    tracing::warn!(error, "etcd: cannot renew the lease; retrying");
                    failing_since = Some(Instant::now());
                    backoff = Duration::from_millis(100);
                }
                // Past the TTL etcd may have let the lease go: check by granting anew.
                failing_since.is_some_and(|t| t.elapsed() >= ETCD_LEASE_TTL)
            }
        };
        if expired {
            let Some(me) = records.upgrade() else { return };
            match client.lease_grant(ttl_secs(), None).await {
                Ok(granted) => {
                    let id = granted.id();
                    *me.lease.lock() = id;
                    match me.put_all(id).await {
                        Ok(()) => {
                            tracing::info!(
                                lease = format_args!("{id:x}"),
                                "etcd: new lease; records put again"
                            );
                            failing_since = None;
                            backoff = Duration::from_millis(100);
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "etcd: could not put the records again")
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "etcd: cannot grant a lease yet"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

enum Renewal {
    /// etcd says the lease is gone.
    Expired,
    /// etcd did not answer; `renewed` when it did before on this stream.
    Failed { error: String, renewed: bool },
}

/// Renews `lease` on one keep-alive stream until it fails.
async fn renew_until_failure(
    client: &mut etcd_client::Client,
    lease: i64,
    shutdown: &CancellationToken,
) -> Renewal {
    let failed = |error: String, renewed| Renewal::Failed { error, renewed };
    let (mut keeper, mut stream) = match client.lease_keep_alive(lease).await {
        Ok(pair) => pair,
        Err(e) => return failed(e.to_string(), false),
    };
    let mut renewed = false;
    loop {
        if let Err(e) = keeper.keep_alive().await {
            return failed(e.to_string(), renewed);
        }
        match tokio::time::timeout(REQUEST_DEADLINE, stream.message()).await {
            Ok(Ok(Some(answer))) if answer.ttl() > 0 => renewed = true,
            Ok(Ok(Some(_))) => return Renewal::Expired,
            Ok(Ok(None)) => return failed("keep-alive stream closed".into(), renewed),
            Ok(Err(e)) => return failed(e.to_string(), renewed),
            Err(_) => return failed("no keep-alive answer in time".into(), renewed),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return failed("runtime stopped".into(), renewed),
            _ = tokio::time::sleep(KEEP_ALIVE_EVERY) => {}
        }
    }
}

/// Reads every key under `prefix` into `view`; returns the revision read.
/// With `stale`, keys of the view missing from the read are not removed but
/// noted there with the time they were first missed.
async fn read_prefix(
    client: &mut etcd_client::Client,
    prefix: &str,
    view: &RecordWatch,
    stale: Option<&mut HashMap<String, Instant>>,
) -> Result<i64, etcd_client::Error> {
    let read = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await?;
    let revision = read.header().map(|h| h.revision()).unwrap_or(0);
    let mut fresh = std::collections::BTreeMap::new();
    for kv in read.kvs() {
        if let Ok(key) = kv.key_str() {
            fresh.insert(key.to_owned(), Bytes::copy_from_slice(kv.value()));
        }
    }
    let now = Instant::now();
    view.update(|m| {
        if let Some(stale) = stale {
            for k in m.keys() {
                if !fresh.contains_key(k) {
                    stale.entry(k.clone()).or_insert(now);
                    fresh.insert(k.clone(), m[k].clone());
                }
            }
        }
        if *m == fresh {
            false
        } else {
            *m = fresh;
            true
        }
    });
    Ok(revision)
}

/// Follows the watch of `prefix` from `revision + 1`; reads the prefix again
/// and watches anew after any failure, until the runtime goes.
async fn follow(
    mut client: etcd_client::Client,
    prefix: String,
    view: RecordWatch,
    mut revision: i64,
    shutdown: CancellationToken,
) {
    let mut stale: HashMap<String, Instant> = HashMap::new();
    let mut backoff = Duration::from_millis(100);
    let mut sweep = tokio::time::interval(Duration::from_millis(250));
    loop {
        let watched = tokio::select! {
            _ = shutdown.cancelled() => return,
            w = client.watch(
                prefix.as_str(),
                Some(WatchOptions::new().with_prefix().with_start_revision(revision + 1)),
            ) => w,
        };
        if let Ok(mut stream) = watched {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = sweep.tick() => drop_stale(&view, &mut stale),
                    msg = stream.message() => match msg {
                        Ok(Some(answer)) => {
                            if answer.canceled() {
                                tracing::debug!(prefix, reason = answer.cancel_reason(), "etcd watch cancelled");
                                break;
                            }
                            backoff = Duration::from_millis(100);
                            for event in answer.events() {
                                let Some(kv) = event.kv() else { continue };
                                let Ok(key) = kv.key_str() else { continue };
                                revision = revision.max(kv.mod_revision());
                                stale.remove(key);
                                match event.event_type() {
                                    EventType::Put => view.insert(key.to_owned(), Bytes::copy_from_slice(kv.value())),
                                    EventType::Delete => view.remove(key),
                                }
                            }
                        }
                        Ok(None) | Err(_) => break,
                    },
                }
            }
        }
        // The watch broke (etcd restarted, the connection dropped, or the
        // revision was compacted): read the prefix again, then watch anew.
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            drop_stale(&view, &mut stale);
            match read_prefix(&mut client, &prefix, &view, Some(&mut stale)).await {
                Ok(r) => {
                    revision = r;
                    break;
                }
                Err(e) => tracing::debug!(prefix, error = %e, "etcd: cannot read the bucket yet"),
            }
        }
    }
}

/// Removes the keys missing from a re-read for longer than a lease TTL.
fn drop_stale(view: &RecordWatch, stale: &mut HashMap<String, Instant>) {
    if stale.is_empty() {
        return;
    }
    let now = Instant::now();
    stale.retain(|key, since| {
        let keep = now.duration_since(*since) < ETCD_LEASE_TTL;
        if !keep {
            view.remove(key);
        }
        keep
    });
}

/// A record this process holds in etcd; deleted when dropped.
pub(crate) struct EtcdRecordHandle {
    records: Weak<EtcdRecords>,
    bucket: String,
    key: String,
    full: String,
    id: u64,
}

impl EtcdRecordHandle {
    pub(crate) fn bucket(&self) -> &str {
        &self.bucket
    }

    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// Forgets the record; the runtime's records when it was still this handle's.
    fn remove(&self) -> Option<Arc<EtcdRecords>> {
        let records = self.records.upgrade()?;
        let mut own = records.own.lock();
        if own.get(&self.full).is_some_and(|(id, _)| *id == self.id) {
            own.remove(&self.full);
            drop(own);
            Some(records)
        } else {
            None
        }
    }

    /// Deletes the record now (within the request deadline).
    pub(crate) async fn withdraw(self) {
        if let Some(records) = self.remove() {
            if let Err(e) = records
                .client
                .clone()
                .delete(self.full.as_str(), None)
                .await
            {
                tracing::debug!(key = %self.full, error = %e, "etcd: delete failed; the lease ends the record");
            }
        }
    }
}

impl Drop for EtcdRecordHandle {
    fn drop(&mut self) {
        let Some(records) = self.remove() else { return };
        let key = std::mem::take(&mut self.full);
        let mut client = records.client.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = client.delete(key.as_str(), None).await {
                    tracing::debug!(key, error = %e, "etcd: delete failed; the lease ends the record");
                }
            });
        }
    }
}
