//! Records over NATS alone (no etcd), by announcement: each process announces
//! its records of a bucket on `dynamo.records.<bucket>.announce` whenever they
//! change and every [`ANNOUNCE_EVERY`]; a watcher subscribes to the
//! announcements and keeps a [`RecordWatch`] of them, forgetting a process
//! that has not announced for [`RECORD_LEASE`] (it died). A new watcher asks
//! every process once on `dynamo.records.<bucket>.query` and gathers the
//! answers for [`RECORD_GATHER`], so its view is complete from the start.
//!
//! While this process is disconnected from NATS, its views keep what they
//! had, and the time of the outage does not count against anyone's lease:
//! a short NATS outage never empties a view. Core NATS only, so a restarted
//! nats-server has nothing to lose: announcements resume on reconnection.

use super::frame::Announcement;
use super::view::RecordWatch;
use crate::request_plane::nats::token;
use crate::request_plane::TransportError;
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a new watcher gathers the answers of every process.
pub const RECORD_GATHER: Duration = Duration::from_millis(150);
/// How often a process announces its records while they do not change.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
/// How long a watcher keeps a process's records without an announcement.
pub const RECORD_LEASE: Duration = Duration::from_secs(3);
/// How often a watcher looks for processes past their lease.
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// How long an explicit withdrawal waits for NATS to take the announcement.
const WITHDRAW_DEADLINE: Duration = Duration::from_secs(1);

fn announce_subject(bucket: &str) -> String {
    format!("dynamo.records.{}.announce", token(bucket))
}

fn query_subject(bucket: &str) -> String {
    format!("dynamo.records.{}.query", token(bucket))
}

/// This process's records of one bucket.
#[derive(Default)]
struct OwnBucket {
    /// key -> (id of the handle that put it, value).
    records: BTreeMap<String, (u64, Bytes)>,
    /// Announcements sent so far.
    seq: u64,
    /// Wakes the bucket's announcer.
    changed: Arc<Notify>,
}

/// This process's records, their announcers, and the views it watches.
pub(crate) struct NatsRecords {
    client: async_nats::Client,
    process: u64,
    own: Mutex<HashMap<String, OwnBucket>>,
    /// One view per watched bucket; an async lock so that concurrent first
    /// watchers wait for one gather.
    views: tokio::sync::Mutex<HashMap<String, RecordWatch>>,
    /// Ends the announcers and watchers when the runtime goes.
    shutdown: CancellationToken,
}

impl Drop for NatsRecords {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl NatsRecords {
    pub(crate) fn new(client: async_nats::Client) -> Self {
        Self {
            client,
            process: fastrand::u64(..),
            own: Mutex::new(HashMap::new()),
            views: tokio::sync::Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
        }
    }

    /// Publishes `value` under `key` in `bucket` until the returned handle is
    /// dropped or withdrawn.
    pub(crate) async fn put(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        value: Bytes,
    ) -> Result<NatsRecordHandle, TransportError> {
        self.ensure_announcer(bucket).await?;
        let id = fastrand::u64(..);
        {
            let mut own = self.own.lock();
            let b = own.entry(bucket.to_owned()).or_default();
            b.records.insert(key.to_owned(), (id, value));
            b.changed.notify_one();
        }
        Ok(NatsRecordHandle {
            records: Arc::downgrade(self),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            id,
        })
    }

    /// The announcement of this process's records of `bucket` now (and counts it).
    fn announcement(&self, bucket: &str) -> Bytes {
        let mut own = self.own.lock();
        let b = own.entry(bucket.to_owned()).or_default();
        b.seq += 1;
        Announcement {
            process: self.process,
            seq: b.seq,
            records: b
                .records
                .iter()
                .map(|(k, (_, v))| (k.clone(), v.clone()))
                .collect(),
        }
        .encode()
    }

    /// Starts the task that announces `bucket` and answers its queries, once.
    async fn ensure_announcer(self: &Arc<Self>, bucket: &str) -> Result<(), TransportError> {
        if self.own.lock().contains_key(bucket) {
            return Ok(());
        }
        let subject = query_subject(bucket);
        let queries = self
            .client
            .subscribe(subject.clone())
            .await
            .map_err(|source| TransportError::Subscribe { subject, source })?;
        let changed = {
            let mut own = self.own.lock();
            if own.contains_key(bucket) {
                return Ok(()); // another call won the race; its announcer runs
            }
            own.entry(bucket.to_owned()).or_default().changed.clone()
        };
        tokio::spawn(announce(
            Arc::downgrade(self),
            self.client.clone(),
            bucket.to_owned(),
            queries,
            changed,
            self.shutdown.clone(),
        ));
        Ok(())
    }

    /// The view of `bucket`: on the first call, subscribes to its
    /// announcements and gathers every process's answer for [`RECORD_GATHER`].
    pub(crate) async fn watch(&self, bucket: &str) -> Result<RecordWatch, TransportError> {
        let mut views = self.views.lock().await;
        if let Some(view) = views.get(bucket) {
            return Ok(view.clone());
        }
        let subject = announce_subject(bucket);
        let announcements = self
            .client
            .subscribe(subject.clone())
            .await
            .map_err(|source| TransportError::Subscribe { subject, source })?;
        let mut seen = Processes::default();
        self.gather(bucket, &mut seen).await?;
        let view = RecordWatch::new(bucket);
        seen.show(&view);
        tokio::spawn(keep_current(
            self.client.clone(),
            view.clone(),
            announcements,
            seen,
            self.shutdown.clone(),
        ));
        views.insert(bucket.to_owned(), view.clone());
        Ok(view)
    }

    /// Asks every process for its records of `bucket`.
    async fn gather(&self, bucket: &str, seen: &mut Processes) -> Result<(), TransportError> {
        let inbox = self.client.new_inbox();
        let mut replies = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|source| TransportError::Subscribe {
                subject: inbox.clone(),
                source,
            })?;
        let subject = query_subject(bucket);
        self.client
            .publish_with_reply(subject.clone(), inbox, Bytes::new())
            .await
            .map_err(|source| TransportError::Publish { subject, source })?;
        let deadline = Instant::now() + RECORD_GATHER;
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, replies.next()).await {
            seen.receive(bucket, &msg.payload);
        }
        Ok(())
    }
}

/// Announces `bucket` on every change and every [`ANNOUNCE_EVERY`], and
/// answers its queries, until the runtime goes.
async fn announce(
    records: Weak<NatsRecords>,
    client: async_nats::Client,
    bucket: String,
    mut queries: async_nats::Subscriber,
    changed: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let announce_to = announce_subject(&bucket);
    let mut tick = tokio::time::interval(ANNOUNCE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let reply = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => None,
            _ = changed.notified() => None,
            query = queries.next() => match query {
                Some(q) => q.reply,
                None => break,
            },
        };
        let Some(me) = records.upgrade() else { break };
        let frame = me.announcement(&bucket);
        drop(me);
        let to = reply.unwrap_or_else(|| announce_to.clone().into());
        if let Err(e) = client.publish(to, frame).await {
            tracing::debug!(bucket, error = %e, "could not announce records");
        }
    }
}

/// What a watcher knows of each process.
#[derive(Default)]
struct Processes {
    by_process: HashMap<u64, Seen>,
    /// Whether a malformed announcement was reported already.
    warned: bool,
}

struct Seen {
    seq: u64,
    records: BTreeMap<String, Bytes>,
    last: Instant,
}

impl Processes {
    /// Takes in one announcement; true when the records changed.
    fn receive(&mut self, bucket: &str, payload: &Bytes) -> bool {
        let a = match Announcement::decode(payload) {
            Ok(a) => a,
            Err(e) => {
                if !std::mem::replace(&mut self.warned, true) {
                    tracing::warn!(bucket, error = %e, "malformed records announcement ignored (reported once)");
                }
                return false;
            }
        };
        let now = Instant::now();
        match self.by_process.get_mut(&a.process) {
            Some(s) if a.seq <= s.seq => {
                s.last = now;
                false
            }
            Some(s) => {
                s.seq = a.seq;
                s.last = now;
                let changed = s.records != a.records;
                s.records = a.records;
                changed
            }
            None => {
                let changed = !a.records.is_empty();
                self.by_process.insert(
                    a.process,
                    Seen {
                        seq: a.seq,
                        records: a.records,
                        last: now,
                    },
                );
                changed
            }
        }
    }

    /// Forgets the processes silent for [`RECORD_LEASE`]; true when records went.
    fn expire(&mut self, now: Instant) -> bool {
        let mut changed = false;
        self.by_process.retain(|_, s| {
            let live = now.duration_since(s.last) < RECORD_LEASE;
            changed |= !live && !s.records.is_empty();
            live
        });
        changed
    }

    /// Starts every lease afresh (after this process was disconnected).
    fn renew_all(&mut self, now: Instant) {
        for s in self.by_process.values_mut() {
            s.last = now;
        }
    }

    /// Shows the records in `view`.
    fn show(&self, view: &RecordWatch) {
        let mut all = BTreeMap::new();
        for (process, s) in &self.by_process {
            for (k, v) in &s.records {
                all.insert(format!("{process:016x}/{k}"), v.clone());
            }
        }
        view.update(|m| {
            if *m == all {
                false
            } else {
                *m = all;
                true
            }
        });
    }
}

/// Keeps `view` current from the announcements until the runtime goes.
async fn keep_current(
    client: async_nats::Client,
    view: RecordWatch,
    mut announcements: async_nats::Subscriber,
    mut seen: Processes,
    shutdown: CancellationToken,
) {
    let bucket = view.bucket().to_owned();
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    let mut was_connected = true;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            msg = announcements.next() => match msg {
                Some(msg) => {
                    if seen.receive(&bucket, &msg.payload) {
                        seen.show(&view);
                    }
                }
                None => break,
            },
            _ = sweep.tick() => {
                let now = Instant::now();
                let connected =
                    client.connection_state() == async_nats::connection::State::Connected;
                if connected && !was_connected {
                    seen.renew_all(now);
                }
                was_connected = connected;
                if connected && seen.expire(now) {
                    seen.show(&view);
                }
            }
        }
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

    /// Removes the record; the runtime's records when it was still this handle's.
    fn remove(&self) -> Option<Arc<NatsRecords>> {
        let records = self.records.upgrade()?;
        let mut own = records.own.lock();
        let b = own.get_mut(&self.bucket)?;
        if b.records
            .get(&self.key)
            .is_some_and(|(id, _)| *id == self.id)
        {
            b.records.remove(&self.key);
            b.changed.notify_one();
            drop(own);
            Some(records)
        } else {
            None
        }
    }

    /// Removes the record and announces it now, waiting (up to a second) for
    /// NATS to take the announcement: for a process about to exit.
    pub(crate) async fn withdraw(self) {
        let Some(records) = self.remove() else { return };
        let frame = records.announcement(&self.bucket);
        let send = async {
            records
                .client
                .publish(announce_subject(&self.bucket), frame)
                .await
                .ok()?;
            records.client.flush().await.ok()
        };
        if tokio::time::timeout(WITHDRAW_DEADLINE, send).await.is_err() {
            tracing::debug!(bucket = %self.bucket, "withdrawal not confirmed; the lease ends it");
        }
    }
}

impl Drop for NatsRecordHandle {
    fn drop(&mut self) {
        // The bucket's announcer sends the change.
        let _ = self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(process: u64, seq: u64, records: &[(&str, &str)]) -> Bytes {
        Announcement {
            process,
            seq,
            records: records
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Bytes::from(v.to_string())))
                .collect(),
        }
        .encode()
    }

    #[tokio::test(start_paused = true)]
    async fn a_watcher_follows_announcements_and_leases() {
        let view = RecordWatch::new("b");
        let mut seen = Processes::default();
        assert!(seen.receive("b", &frame(1, 1, &[("m", "one")])));
        assert!(seen.receive("b", &frame(2, 5, &[("m", "two")])));
        seen.show(&view);
        assert_eq!(view.values(), vec![b"one".to_vec(), b"two".to_vec()]);
        assert!(
            !seen.receive("b", &frame(2, 4, &[])),
            "an older announcement is ignored"
        );
        assert!(
            !seen.receive("b", &frame(1, 2, &[("m", "one")])),
            "same records"
        );
        assert!(!seen.receive("b", &Bytes::from_static(b"junk")));
        tokio::time::advance(RECORD_LEASE - Duration::from_millis(10)).await;
        assert!(!seen.receive("b", &frame(1, 3, &[("m", "one")])));
        tokio::time::advance(Duration::from_millis(20)).await;
        assert!(seen.expire(Instant::now()), "process 2 is past its lease");
        seen.show(&view);
        assert_eq!(view.values(), vec![b"one".to_vec()]);
        tokio::time::advance(RECORD_LEASE * 2).await;
        seen.renew_all(Instant::now());
        assert!(!seen.expire(Instant::now()), "renewed after an outage");
        assert!(seen.receive("b", &frame(1, 4, &[])));
        seen.show(&view);
        assert!(view.is_empty(), "withdrawn");
    }
}
