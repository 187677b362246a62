//! Records over NATS by scatter-gather: each process answers queries for
//! the records it holds, and listing asks every process over core NATS and
//! gathers the answers for [`RECORD_GATHER`]. A process that is gone does not
//! answer, so its records vanish with it. (JetStream listing was tried first:
//! on nats-server 2.9, stream info and new consumers did not yet see a record
//! just written to a fresh bucket, although reading its key did.)

use crate::request_plane::nats::token;
use crate::request_plane::TransportError;
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How long listing records gathers answers from the processes that hold them.
pub const RECORD_GATHER: Duration = Duration::from_millis(150);

/// One bucket of this process's records: key -> (lease id, value).
type RecordBucket = HashMap<String, (u64, Bytes)>;

/// This process's records, and the queries it answers for them.
pub(crate) struct NatsRecords {
    client: async_nats::Client,
    /// This process's records, by bucket.
    records: Arc<Mutex<HashMap<String, RecordBucket>>>,
    /// Buckets this process answers queries for.
    responders: Mutex<HashSet<String>>,
}

fn query_subject(bucket: &str) -> String {
    format!("dynamo.records.{}", token(bucket))
}

impl NatsRecords {
    pub(crate) fn new(client: async_nats::Client) -> Self {
        Self {
            client,
            records: Arc::default(),
            responders: Mutex::new(HashSet::new()),
        }
    }

    /// Publishes `value` under `key` in `bucket` until the returned handle is dropped.
    pub(crate) async fn put(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        value: Bytes,
    ) -> Result<NatsRecordHandle, TransportError> {
        self.ensure_responder(bucket).await?;
        let id = fastrand::u64(..);
        self.records
            .lock()
            .entry(bucket.to_owned())
            .or_default()
            .insert(key.to_owned(), (id, value));
        Ok(NatsRecordHandle {
            records: Arc::downgrade(self),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            id,
        })
    }

    async fn ensure_responder(&self, bucket: &str) -> Result<(), TransportError> {
        if self.responders.lock().contains(bucket) {
            return Ok(());
        }
        let subject = query_subject(bucket);
        let mut sub = self
            .client
            .subscribe(subject.clone())
            .await
            .map_err(|source| TransportError::Subscribe { subject, source })?;
        if !self.responders.lock().insert(bucket.to_owned()) {
            return Ok(()); // another call won the race; its responder answers
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
    pub(crate) async fn list(&self, bucket: &str) -> Result<Vec<Bytes>, TransportError> {
        let subject = query_subject(bucket);
        let inbox = self.client.new_inbox();
        let mut replies = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|source| TransportError::Subscribe {
                subject: inbox.clone(),
                source,
            })?;
        self.client
            .publish_with_reply(subject.clone(), inbox, Bytes::new())
            .await
            .map_err(|source| TransportError::Publish { subject, source })?;
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
}

/// A record this process publishes over NATS; withdrawn when dropped.
pub(crate) struct NatsRecordHandle {
    records: Weak<NatsRecords>,
    bucket: String,
    key: String,
    id: u64,
}

impl NatsRecordHandle {
    pub(crate) fn bucket(&self) -> &str {
        &self.bucket
    }

    pub(crate) fn key(&self) -> &str {
        &self.key
    }
}

impl Drop for NatsRecordHandle {
    fn drop(&mut self) {
        let Some(records) = self.records.upgrade() else {
            return;
        };
        let mut all = records.records.lock();
        if let Some(b) = all.get_mut(&self.bucket) {
            if b.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
                b.remove(&self.key);
            }
        }
    }
}
