//! The NATS transport. Requests go to one instance's subject with NATS
//! request-reply (the instance acknowledges at once, so a dead instance is
//! seen as "no responders"); responses stream back as frames to the caller's
//! inbox; dropping the stream publishes a cancel. Instances are discovered
//! through a JetStream key-value bucket whose entries expire unless their
//! instance keeps renewing them, so a worker that dies drops out within
//! [`LEASE`].

use super::client::Started;
use super::driver::{drive, Frame, FrameSink, SinkError};
use super::endpoint_metrics::EndpointMetrics;
use super::handler::{Failure, RawHandler};
use super::{CallError, Context, EndpointPath, InstanceId};
use crate::metrics::prometheus_names::work_handler::error_type;
use async_nats::jetstream::{self, kv};
use async_nats::{HeaderMap, RequestErrorKind};
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// The key-value bucket of live instances.
pub const INSTANCE_BUCKET: &str = "dynamo_instances";
/// How long an instance stays listed without renewing its entry.
pub const LEASE: Duration = Duration::from_secs(5);
/// How often a serving instance renews its entry.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How often a client lists the instances of the endpoints it calls.
const REFRESH: Duration = Duration::from_millis(500);
/// How long listing records gathers answers from the processes that hold them.
pub const RECORD_GATHER: Duration = Duration::from_millis(150);
/// How long a caller waits for an instance to accept a request.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(5);

const H_REQUEST_ID: &str = "Dyn-Request-Id";
const H_REPLY: &str = "Dyn-Reply";
const H_FRAME: &str = "Dyn-Frame";
const H_ERROR_TYPE: &str = "Dyn-Error-Type";

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

/// A name as one token of a NATS subject and key: `[A-Za-z0-9_-]` kept, every
/// other byte as `=XX`.
pub(crate) fn token(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

fn key_prefix(path: &EndpointPath) -> String {
    format!(
        "{}.{}.{}.",
        token(&path.namespace),
        token(&path.component),
        token(&path.endpoint)
    )
}

fn subject(path: &EndpointPath, id: InstanceId) -> String {
    format!("dynamo.rq.{}{id:016x}", key_prefix(path))
}

/// The NATS connection and the instance bucket of one runtime.
pub(crate) struct NatsPlane {
    client: async_nats::Client,
    kv: kv::Store,
    /// This process's records, by bucket.
    records: Arc<Mutex<HashMap<String, RecordBucket>>>,
    /// Buckets this process answers queries for.
    record_responders: Mutex<HashSet<String>>,
    handle: Handle,
    known: RwLock<HashMap<EndpointPath, Vec<InstanceId>>>,
    watched: Mutex<HashSet<EndpointPath>>,
}

impl NatsPlane {
    pub(crate) async fn connect(url: &str) -> Result<Arc<Self>, String> {
        let client = async_nats::ConnectOptions::new()
            .name("dynamo-runtime")
            .connect(url)
            .await
            .map_err(|e| format!("cannot connect to NATS at {url:?}: {e}"))?;
        let js = jetstream::new(client.clone());
        let kv = open_leased_bucket(&js, INSTANCE_BUCKET)
            .await
            .map_err(|e| format!("cannot open the JetStream bucket {INSTANCE_BUCKET:?} at {url:?} (is JetStream on? nats-server -js): {e}"))?;
        tracing::info!(url, "request plane: NATS");
        Ok(Arc::new(Self {
            client,
            kv,
            records: Arc::default(),
            record_responders: Mutex::new(HashSet::new()),
            handle: Handle::current(),
            known: RwLock::new(HashMap::new()),
            watched: Mutex::new(HashSet::new()),
        }))
    }

    // ---- serving ----

    pub(crate) async fn serve(
        &self,
        path: &EndpointPath,
        id: InstanceId,
        handler: Arc<dyn RawHandler>,
        metrics: Option<Arc<EndpointMetrics>>,
        system_addr: Option<SocketAddr>,
    ) -> Result<NatsServing, String> {
        let base = subject(path, id);
        let requests = self
            .client
            .subscribe(format!("{base}.req"))
            .await
            .map_err(|e| format!("cannot subscribe to {base}.req: {e}"))?;
        let cancels = self
            .client
            .subscribe(format!("{base}.cancel"))
            .await
            .map_err(|e| format!("cannot subscribe to {base}.cancel: {e}"))?;
        let record = InstanceRecord {
            endpoint: path.to_string(),
            instance: format!("{id:016x}"),
            subject: base.clone(),
            system_addr: system_addr.map(|a| a.to_string()),
        };
        let key = format!("{}{id:016x}", key_prefix(path));
        let value = Bytes::from(serde_json::to_vec(&record).map_err(|e| e.to_string())?);
        self.kv
            .put(&key, value.clone())
            .await
            .map_err(|e| format!("cannot register {key:?} in {INSTANCE_BUCKET:?}: {e}"))?;
        let stop = CancellationToken::new();
        let running: Arc<Mutex<HashMap<String, CancellationToken>>> = Arc::default();
        tokio::spawn(serve_requests(
            self.client.clone(),
            requests,
            handler,
            metrics,
            running.clone(),
            stop.clone(),
        ));
        tokio::spawn(serve_cancels(cancels, running, stop.clone()));
        tokio::spawn(heartbeat(self.kv.clone(), key.clone(), value, stop.clone()));
        Ok(NatsServing {
            kv: self.kv.clone(),
            key,
            stop,
        })
    }

    // ---- records (values published by live processes) ----
    //
    // Listing asks every process over core NATS and gathers the answers for
    // RECORD_GATHER: a process that is gone does not answer, so its records
    // vanish with it. (JetStream listing was tried first: on nats-server 2.9,
    // stream info and new consumers did not yet see a record just written to a
    // fresh bucket, although reading its key did.)

    /// Publishes `value` under `key` in `bucket` until the returned lease is stopped.
    pub(crate) async fn put_record(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        value: Bytes,
    ) -> Result<RecordHandle, String> {
        self.ensure_record_responder(bucket).await?;
        let id = fastrand::u64(..);
        self.records
            .lock()
            .entry(bucket.to_owned())
            .or_default()
            .insert(key.to_owned(), (id, value));
        Ok(RecordHandle {
            plane: Arc::downgrade(self),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            id,
        })
    }

    async fn ensure_record_responder(&self, bucket: &str) -> Result<(), String> {
        if self.record_responders.lock().contains(bucket) {
            return Ok(());
        }
        let subject = format!("dynamo.records.{}", token(bucket));
        let mut sub = self
            .client
            .subscribe(subject.clone())
            .await
            .map_err(|e| format!("cannot subscribe to {subject}: {e}"))?;
        if !self.record_responders.lock().insert(bucket.to_owned()) {
            return Ok(()); // another call won the race
        }
        let client = self.client.clone();
        let records = self.records.clone();
        let bucket = bucket.to_owned();
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let Some(reply) = msg.reply else { continue };
                let values: Vec<Vec<u8>> = records
                    .lock()
                    .get(&bucket)
                    .map(|b| b.values().map(|(_, v)| v.to_vec()).collect())
                    .unwrap_or_default();
                let body = serde_json::to_vec(&values).unwrap_or_default();
                if let Err(e) = client.publish(reply, body.into()).await {
                    tracing::debug!(error = %e, "could not answer a records query");
                }
            }
        });
        Ok(())
    }

    /// Every live value of `bucket`, from every process that answers within [`RECORD_GATHER`].
    pub(crate) async fn list_records(&self, bucket: &str) -> Result<Vec<Bytes>, String> {
        let subject = format!("dynamo.records.{}", token(bucket));
        let inbox = self.client.new_inbox();
        let mut replies = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| format!("cannot subscribe to the reply inbox: {e}"))?;
        self.client
            .publish_with_reply(subject, inbox, Bytes::new())
            .await
            .map_err(|e| format!("cannot ask for {bucket:?}: {e}"))?;
        let mut values = Vec::new();
        let deadline = tokio::time::Instant::now() + RECORD_GATHER;
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, replies.next()).await {
            match serde_json::from_slice::<Vec<Vec<u8>>>(&msg.payload) {
                Ok(vs) => values.extend(vs.into_iter().map(Bytes::from)),
                Err(e) => tracing::warn!(bucket, error = %e, "malformed records answer; ignored"),
            }
        }
        Ok(values)
    }

    // ---- discovery ----

    /// Keeps the instance list of `path` fresh for as long as the plane lives.
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
                let Some(plane) = weak.upgrade() else { break };
                plane.refresh(&path).await;
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

    pub(crate) fn instances(&self, path: &EndpointPath) -> Vec<InstanceId> {
        self.known.read().get(path).cloned().unwrap_or_default()
    }

    fn forget(&self, path: &EndpointPath, id: InstanceId) {
        if let Some(ids) = self.known.write().get_mut(path) {
            ids.retain(|i| *i != id);
        }
    }

    // ---- calling ----

    pub(crate) async fn call(
        &self,
        path: &EndpointPath,
        id: InstanceId,
        payload: Bytes,
    ) -> Result<Started, CallError> {
        let transport = |message: String| CallError::Transport {
            endpoint: path.to_string(),
            message,
        };
        let base = subject(path, id);
        let inbox = self.client.new_inbox();
        let frames = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| transport(format!("cannot subscribe to the reply inbox: {e}")))?;
        let request_id = format!("{:016x}", fastrand::u64(..));
        let mut headers = HeaderMap::new();
        headers.insert(H_REQUEST_ID, request_id.as_str());
        headers.insert(H_REPLY, inbox.as_str());
        let request = async_nats::Request::new()
            .headers(headers)
            .payload(payload)
            .timeout(Some(ACCEPT_TIMEOUT));
        match self
            .client
            .send_request(format!("{base}.req"), request)
            .await
        {
            Ok(_accepted) => {}
            Err(e) if e.kind() == RequestErrorKind::NoResponders => {
                self.forget(path, id);
                return Err(CallError::InstanceNotFound {
                    endpoint: path.to_string(),
                    instance: id,
                });
            }
            Err(e) => {
                return Err(transport(format!(
                    "instance {id:016x} did not accept the request: {e}"
                )))
            }
        }
        let client = self.client.clone();
        let handle = self.handle.clone();
        let cancel_subject = format!("{base}.cancel");
        Ok(Started {
            frames: frames.map(decode_frame).boxed(),
            cancel: Box::new(move || {
                handle.spawn(async move {
                    if let Err(e) = client.publish(cancel_subject, request_id.into()).await {
                        tracing::debug!(error = %e, "could not publish a cancel");
                    }
                });
            }),
        })
    }
}

/// Opens a bucket whose entries expire after [`LEASE`], creating it if needed. The bucket's stream is
/// created directly, with the settings of a key-value bucket, rather than
/// with `create_key_value`, which first queries account information that
/// NATS servers before 2.10 answer in a form the client does not read.
async fn open_leased_bucket(js: &jetstream::Context, bucket: &str) -> Result<kv::Store, String> {
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
        // Another process may have created it meanwhile.
        tracing::debug!(error = %e, "creating the instance bucket's stream");
    }
    js.get_key_value(INSTANCE_BUCKET)
        .await
        .map_err(|e| match created {
            Err(create_err) => format!("{create_err}; {e}"),
            Ok(_) => e.to_string(),
        })
}

/// One bucket of this process's records: key -> (lease id, value).
type RecordBucket = HashMap<String, (u64, Bytes)>;

/// A record this process publishes; removed when stopped or dropped.
pub(crate) struct RecordHandle {
    plane: Weak<NatsPlane>,
    bucket: String,
    key: String,
    id: u64,
}

impl Drop for RecordHandle {
    fn drop(&mut self) {
        let Some(plane) = self.plane.upgrade() else {
            return;
        };
        let mut records = plane.records.lock();
        if let Some(b) = records.get_mut(&self.bucket) {
            if b.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
                b.remove(&self.key);
            }
        }
    }
}

/// A serving instance's key, renewed by a heartbeat.
pub(crate) struct NatsServing {
    kv: kv::Store,
    key: String,
    stop: CancellationToken,
}

impl NatsServing {
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        if let Err(e) = self.kv.delete(&self.key).await {
            tracing::warn!(key = %self.key, error = %e, "could not deregister; the entry expires by itself");
        }
    }
}

async fn heartbeat(kv: kv::Store, key: String, value: Bytes, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(HEARTBEAT) => {}
        }
        if let Err(e) = kv.put(&key, value.clone()).await {
            tracing::warn!(key, error = %e, "could not renew the instance entry");
        }
    }
}

struct NatsSink {
    client: async_nats::Client,
    inbox: String,
}

impl FrameSink for NatsSink {
    async fn send(&mut self, frame: Frame) -> Result<(), SinkError> {
        let mut headers = HeaderMap::new();
        let payload = match frame {
            Frame::Item(bytes) => {
                headers.insert(H_FRAME, "item");
                bytes
            }
            Frame::End => {
                headers.insert(H_FRAME, "end");
                Bytes::new()
            }
            Frame::Failed(f) => {
                headers.insert(H_FRAME, "failed");
                headers.insert(H_ERROR_TYPE, f.error_type);
                Bytes::from(f.message)
            }
        };
        self.client
            .publish_with_headers(self.inbox.clone(), headers, payload)
            .await
            .map_err(|_| SinkError::Transport)
    }
}

fn header<'a>(msg: &'a async_nats::Message, name: &str) -> Option<&'a str> {
    msg.headers.as_ref()?.get(name).map(|v| v.as_str())
}

fn decode_frame(msg: async_nats::Message) -> Frame {
    match header(&msg, H_FRAME) {
        Some("item") => Frame::Item(msg.payload),
        Some("end") => Frame::End,
        Some("failed") => {
            let error_type = header(&msg, H_ERROR_TYPE)
                .and_then(|t| error_type::ALL.iter().copied().find(|k| *k == t))
                .unwrap_or(error_type::TRANSPORT);
            Frame::Failed(Failure::new(
                error_type,
                String::from_utf8_lossy(&msg.payload),
            ))
        }
        other => Frame::Failed(Failure::new(
            error_type::TRANSPORT,
            format!("unexpected frame {other:?} on the reply inbox"),
        )),
    }
}

async fn serve_requests(
    client: async_nats::Client,
    mut requests: async_nats::Subscriber,
    handler: Arc<dyn RawHandler>,
    metrics: Option<Arc<EndpointMetrics>>,
    running: Arc<Mutex<HashMap<String, CancellationToken>>>,
    stop: CancellationToken,
) {
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => break,
            msg = requests.next() => match msg { Some(m) => m, None => break },
        };
        let inbox = header(&msg, H_REPLY).map(str::to_owned);
        let request_id = header(&msg, H_REQUEST_ID)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{:016x}", fastrand::u64(..)));
        if let Some(reply) = msg.reply.clone() {
            if let Err(e) = client.publish(reply, Bytes::new()).await {
                tracing::debug!(error = %e, "could not accept a request");
            }
        }
        let Some(inbox) = inbox else {
            // Not a request of ours: count it, but there is nowhere to answer.
            tracing::warn!(subject = %msg.subject, "request without a reply inbox; dropped");
            if let Some(m) = &metrics {
                m.start(msg.payload.len())
                    .finish(super::endpoint_metrics::Outcome::Failed(
                        error_type::INVALID_REQUEST,
                    ));
            }
            continue;
        };
        let token = CancellationToken::new();
        running.lock().insert(request_id.clone(), token.clone());
        let (client, handler, metrics, running) = (
            client.clone(),
            handler.clone(),
            metrics.clone(),
            running.clone(),
        );
        tokio::spawn(async move {
            let mut sink = NatsSink { client, inbox };
            let ctx = Context::new(request_id.clone(), token);
            drive(handler, msg.payload, ctx, metrics.as_ref(), &mut sink).await;
            running.lock().remove(&request_id);
        });
    }
}

async fn serve_cancels(
    mut cancels: async_nats::Subscriber,
    running: Arc<Mutex<HashMap<String, CancellationToken>>>,
    stop: CancellationToken,
) {
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => break,
            msg = cancels.next() => match msg { Some(m) => m, None => break },
        };
        let id = String::from_utf8_lossy(&msg.payload);
        if let Some(token) = running.lock().get(id.as_ref()) {
            token.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_subject_and_key_safe() {
        assert_eq!(token("my-ns_1"), "my-ns_1");
        assert_eq!(token("a.b c*>"), "a=2Eb=20c=2A=3E");
        assert_eq!(token("ü"), "=C3=BC");
        let path = EndpointPath {
            namespace: "n.s".into(),
            component: "c".into(),
            endpoint: "e".into(),
        };
        assert_eq!(subject(&path, 255), "dynamo.rq.n=2Es.c.e.00000000000000ff");
    }
}
