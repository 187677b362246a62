//! Calling an endpoint: instance discovery, routing, and the response stream
//! that cancels the request when dropped.

use super::driver::Frame;
use super::{CallError, EndpointPath, InstanceId, Plane, RequestMeta, TransportError};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

/// How long a call with no instance in view waits for one before it fails
/// with [`CallError::NoInstances`].
const ROUTE_WAIT: Duration = Duration::from_millis(500);

/// Cancels a request on the server.
pub(crate) type Canceller = Box<dyn FnOnce() + Send>;

/// A started request: its frames and how to cancel it.
pub(crate) struct Started {
    /// The request's frames; an `Err` ends the request (the transport lost
    /// the instance).
    pub frames: BoxStream<'static, Result<Frame, TransportError>>,
    pub cancel: Canceller,
}

/// A client of one endpoint. Cheap to clone.
///
/// Round-robin and random routing skip instances that have gone away, so a
/// call fails only when no instance is left.
pub struct Client<Req, Resp> {
    inner: Arc<Inner>,
    _types: PhantomData<fn(Req) -> Resp>,
}

impl<Req, Resp> std::fmt::Debug for Client<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.inner.path.to_string())
            .finish()
    }
}

impl<Req, Resp> Clone for Client<Req, Resp> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            _types: PhantomData,
        }
    }
}

struct Inner {
    path: EndpointPath,
    /// `path` as `namespace/component/endpoint`, written once.
    name: String,
    /// The start of the endpoint's NATS subjects, written once.
    subject_prefix: String,
    plane: Plane,
    next: AtomicUsize,
}

impl<Req, Resp> Client<Req, Resp>
where
    Req: Serialize,
    Resp: DeserializeOwned + Send + 'static,
{
    pub(crate) async fn new(path: EndpointPath, plane: Plane) -> Result<Self, CallError> {
        if let Plane::Nats(nats) = &plane {
            nats.instances
                .watch(&nats.records)
                .await
                .map_err(|source| CallError::Transport {
                    endpoint: path.to_string(),
                    source,
                })?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                name: path.to_string(),
                subject_prefix: super::nats::transport::subject_prefix(&path),
                path,
                plane,
                next: AtomicUsize::new(0),
            }),
            _types: PhantomData,
        })
    }

    fn endpoint(&self) -> String {
        self.inner.name.clone()
    }

    /// The live instances known now, sorted.
    pub fn instance_ids(&self) -> Vec<InstanceId> {
        self.sorted_instances().to_vec()
    }

    /// The live instances, sorted, shared with the registry where it has
    /// them so (no copy per call).
    fn sorted_instances(&self) -> Arc<[InstanceId]> {
        match &self.inner.plane {
            Plane::Local(local) => {
                let mut ids = local.instances(&self.inner.path);
                ids.sort_unstable();
                ids.into()
            }
            Plane::Nats(nats) => nats.instances.instances(&self.inner.name),
        }
    }

    /// Waits until at least one instance is serving.
    pub async fn wait_for_instances(
        &self,
        timeout: Duration,
    ) -> Result<Vec<InstanceId>, CallError> {
        self.instances_within(timeout)
            .await
            .ok_or_else(|| CallError::Timeout {
                endpoint: self.endpoint(),
                waited: timeout,
            })
    }

    /// The instances, waiting up to `timeout` for the view to show one.
    async fn instances_within(&self, timeout: Duration) -> Option<Vec<InstanceId>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = match &self.inner.plane {
            Plane::Local(local) => Some(local.subscribe_changes()),
            Plane::Nats(_) => None,
        };
        loop {
            let seen = match &self.inner.plane {
                Plane::Nats(nats) => nats.instances.version(),
                Plane::Local(_) => 0,
            };
            let ids = self.instance_ids();
            if !ids.is_empty() {
                return Some(ids);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            match (&self.inner.plane, changes.as_mut()) {
                (Plane::Nats(nats), _) => {
                    // A skipped instance comes back after a while without a
                    // change of the view: look again at least every 100 ms.
                    nats.instances
                        .changed(seen, left.min(Duration::from_millis(100)))
                        .await;
                }
                (Plane::Local(_), Some(rx)) => {
                    let _ = tokio::time::timeout(left, rx.changed()).await;
                }
                (Plane::Local(_), None) => return None,
            }
        }
    }

    /// Sends the request to the next instance in turn.
    pub async fn round_robin(&self, request: Req) -> Result<ResponseReceiver<Resp>, CallError> {
        self.round_robin_with(request, &RequestMeta::default())
            .await
    }

    /// Sends the request to the next instance in turn, with its id and trace
    /// context: the handler's [`Context`](super::Context) has them, and the
    /// endpoint's request-duration histogram takes them as its exemplar.
    pub async fn round_robin_with(
        &self,
        request: Req,
        meta: &RequestMeta,
    ) -> Result<ResponseReceiver<Resp>, CallError> {
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        self.routed(request, start, meta).await
    }

    /// Sends the request to a random instance.
    pub async fn random(&self, request: Req) -> Result<ResponseReceiver<Resp>, CallError> {
        self.routed(request, fastrand::usize(..), &RequestMeta::default())
            .await
    }

    /// Sends the request with the default routing (round-robin).
    pub async fn generate(&self, request: Req) -> Result<ResponseReceiver<Resp>, CallError> {
        self.round_robin(request).await
    }

    /// Sends the request to one chosen instance.
    pub async fn direct(
        &self,
        request: Req,
        instance: InstanceId,
    ) -> Result<ResponseReceiver<Resp>, CallError> {
        let payload = self.encode(&request)?;
        self.start(instance, payload, &RequestMeta::default()).await
    }

    async fn routed(
        &self,
        request: Req,
        start: usize,
        meta: &RequestMeta,
    ) -> Result<ResponseReceiver<Resp>, CallError> {
        let payload = self.encode(&request)?;
        let mut ids = self.sorted_instances();
        if ids.is_empty() && matches!(self.inner.plane, Plane::Nats(_)) {
            // A worker that registered a moment ago may not be in the view
            // yet (its model card can arrive first): wait a little for it.
            ids = self
                .instances_within(ROUTE_WAIT)
                .await
                .ok_or_else(|| CallError::NoInstances {
                    endpoint: self.endpoint(),
                })?
                .into();
        }
        if ids.is_empty() {
            return Err(CallError::NoInstances {
                endpoint: self.endpoint(),
            });
        }
        let mut last_error = None;
        for k in 0..ids.len() {
            let id = ids[(start + k) % ids.len()];
            match self.start(id, payload.clone(), meta).await {
                Err(e @ CallError::InstanceNotFound { .. }) => {
                    tracing::debug!(endpoint = %self.inner.path, instance = id, "instance gone; trying the next one");
                    last_error = Some(e);
                }
                // Not accepted (an instance that died a moment ago may still
                // have its subscription on the server): nothing ran there, so
                // the next instance may take it.
                Err(
                    e @ CallError::Transport {
                        source: TransportError::NotAccepted { .. },
                        ..
                    },
                ) => {
                    tracing::debug!(endpoint = %self.inner.path, instance = id, error = %e, "instance did not accept; trying the next one");
                    if let Plane::Nats(nats) = &self.inner.plane {
                        nats.instances.forget(id);
                    }
                    last_error = Some(e);
                }
                other => return other,
            }
        }
        Err(last_error.unwrap_or(CallError::NoInstances {
            endpoint: self.endpoint(),
        }))
    }

    fn encode(&self, request: &Req) -> Result<bytes::Bytes, CallError> {
        serde_json::to_vec(request)
            .map(bytes::Bytes::from)
            .map_err(|source| CallError::RequestEncoding {
                endpoint: self.endpoint(),
                source,
            })
    }

    async fn start(
        &self,
        instance: InstanceId,
        payload: bytes::Bytes,
        meta: &RequestMeta,
    ) -> Result<ResponseReceiver<Resp>, CallError> {
        let started = match &self.inner.plane {
            Plane::Local(local) => {
                let (mut rx, token) =
                    local.call(&self.inner.path, instance, payload, meta.clone())?;
                Started {
                    frames: futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
                        .map(Ok)
                        .boxed(),
                    cancel: Box::new(move || token.cancel()),
                }
            }
            Plane::Nats(nats) => {
                let path = &self.inner.path;
                let prefix = &self.inner.subject_prefix;
                let started = nats
                    .transport
                    .call(path, prefix, instance, payload, meta)
                    .await;
                if let Err(CallError::InstanceNotFound { .. }) = &started {
                    nats.instances.forget(instance);
                }
                started?
            }
        };
        Ok(ResponseReceiver {
            endpoint: self.endpoint(),
            instance,
            frames: started.frames,
            cancel: Some(started.cancel),
            done: false,
            _types: PhantomData,
        })
    }
}

/// The responses of one request. Dropping it before the end cancels the
/// request on the server.
pub struct ResponseReceiver<Resp> {
    endpoint: String,
    instance: InstanceId,
    frames: BoxStream<'static, Result<Frame, TransportError>>,
    cancel: Option<Canceller>,
    done: bool,
    _types: PhantomData<fn() -> Resp>,
}

impl<Resp> std::fmt::Debug for ResponseReceiver<Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseReceiver")
            .field("endpoint", &self.endpoint)
            .field("instance", &format_args!("{:016x}", self.instance))
            .field("done", &self.done)
            .finish()
    }
}

impl<Resp: DeserializeOwned> ResponseReceiver<Resp> {
    /// The instance serving this request.
    pub fn instance(&self) -> InstanceId {
        self.instance
    }

    /// Reads every response; the first error ends it.
    pub async fn collect_all(mut self) -> Result<Vec<Resp>, CallError> {
        let mut out = Vec::new();
        while let Some(item) = self.next().await {
            out.push(item?);
        }
        Ok(out)
    }
}

impl<Resp: DeserializeOwned> Stream for ResponseReceiver<Resp> {
    type Item = Result<Resp, CallError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let frame = match self.frames.poll_next_unpin(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(frame) => frame,
        };
        // The endpoint's name is copied only for an error (not per item).
        let endpoint = || self.endpoint.clone();
        let item = match frame {
            Some(Ok(Frame::Item(bytes))) => match serde_json::from_slice(&bytes) {
                Ok(resp) => return Poll::Ready(Some(Ok(resp))),
                Err(source) => {
                    let endpoint = endpoint();
                    // We cannot read the rest: stop the server too.
                    if let Some(cancel) = self.cancel.take() {
                        cancel();
                    }
                    Some(Err(CallError::ResponseDecoding { endpoint, source }))
                }
            },
            Some(Ok(Frame::End)) => None,
            Some(Ok(Frame::Failed(f))) => Some(Err(CallError::Remote {
                endpoint: endpoint(),
                error_type: f.error_type.to_owned(),
                message: f.message,
            })),
            Some(Err(source)) => {
                let endpoint = endpoint();
                // The instance is gone: tell it to stop, should it still run.
                if let Some(cancel) = self.cancel.take() {
                    cancel();
                }
                Some(Err(CallError::Transport { endpoint, source }))
            }
            None => Some(Err(CallError::Transport {
                endpoint: endpoint(),
                source: TransportError::StreamCut,
            })),
        };
        self.done = true;
        Poll::Ready(item)
    }
}

impl<Resp> Drop for ResponseReceiver<Resp> {
    fn drop(&mut self) {
        if !self.done {
            if let Some(cancel) = self.cancel.take() {
                cancel();
            }
        }
    }
}
