//! The in-process transport: endpoints registered in the runtime, requests
//! driven on a task of their own, frames over a bounded channel.

use super::driver::{drive, Frame, FrameSink, SinkError};
use super::endpoint_metrics::EndpointMetrics;
use super::handler::RawHandler;
use super::{CallError, Context, EndpointPath, InstanceId, RequestMeta};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Frames in flight per request before the handler waits for the caller.
const CHANNEL_CAPACITY: usize = 32;

#[derive(Clone)]
struct Instance {
    id: InstanceId,
    handler: Arc<dyn RawHandler>,
    metrics: Option<Arc<EndpointMetrics>>,
}

/// The endpoints served in this process.
pub(crate) struct LocalPlane {
    endpoints: RwLock<HashMap<EndpointPath, Vec<Instance>>>,
    /// Bumped on every change, for callers waiting for instances.
    changed: watch::Sender<u64>,
}

impl Default for LocalPlane {
    fn default() -> Self {
        Self {
            endpoints: RwLock::new(HashMap::new()),
            changed: watch::channel(0).0,
        }
    }
}

struct ChannelSink(mpsc::Sender<Frame>);

impl FrameSink for ChannelSink {
    async fn send(&mut self, frame: Frame) -> Result<(), SinkError> {
        self.0.send(frame).await.map_err(|_| SinkError::CallerGone)
    }
}

impl LocalPlane {
    pub(crate) fn register(
        &self,
        path: &EndpointPath,
        id: InstanceId,
        handler: Arc<dyn RawHandler>,
        metrics: Option<Arc<EndpointMetrics>>,
    ) {
        self.endpoints
            .write()
            .entry(path.clone())
            .or_default()
            .push(Instance {
                id,
                handler,
                metrics,
            });
        self.changed.send_modify(|v| *v += 1);
    }

    pub(crate) fn unregister(&self, path: &EndpointPath, id: InstanceId) {
        let mut endpoints = self.endpoints.write();
        if let Some(list) = endpoints.get_mut(path) {
            list.retain(|i| i.id != id);
            if list.is_empty() {
                endpoints.remove(path);
            }
        }
        drop(endpoints);
        self.changed.send_modify(|v| *v += 1);
    }

    pub(crate) fn instances(&self, path: &EndpointPath) -> Vec<InstanceId> {
        self.endpoints
            .read()
            .get(path)
            .map(|l| l.iter().map(|i| i.id).collect())
            .unwrap_or_default()
    }

    pub(crate) fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Starts a request on an instance; returns the frames and the token that cancels it.
    pub(crate) fn call(
        &self,
        path: &EndpointPath,
        id: InstanceId,
        payload: bytes::Bytes,
        meta: RequestMeta,
    ) -> Result<(mpsc::Receiver<Frame>, CancellationToken), CallError> {
        let instance = self
            .endpoints
            .read()
            .get(path)
            .and_then(|l| l.iter().find(|i| i.id == id).cloned())
            .ok_or_else(|| CallError::InstanceNotFound {
                endpoint: path.to_string(),
                instance: id,
            })?;
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let cancel = CancellationToken::new();
        let ctx = Context::new(format!("{:016x}", fastrand::u64(..)), meta, cancel.clone());
        tokio::spawn(async move {
            let mut sink = ChannelSink(tx);
            drive(
                instance.handler,
                payload,
                ctx,
                instance.metrics.as_ref(),
                &mut sink,
            )
            .await;
        });
        Ok((rx, cancel))
    }
}
