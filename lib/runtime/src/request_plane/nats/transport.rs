//! Requests and their streamed responses over core NATS. A request goes to
//! one instance's subject with NATS request-reply (the instance acknowledges
//! at once, so a dead instance is seen as "no responders"); responses stream
//! back as frames to the caller's inbox; dropping the stream publishes a
//! cancel to the instance.

use super::key_prefix;
use crate::metrics::prometheus_names::work_handler::error_type;
use crate::request_plane::client::Started;
use crate::request_plane::driver::{drive, Frame, FrameSink, SinkError};
use crate::request_plane::endpoint_metrics::{EndpointMetrics, Outcome};
use crate::request_plane::handler::{Failure, RawHandler};
use crate::request_plane::{CallError, Context, EndpointPath, InstanceId, TransportError};
use async_nats::{HeaderMap, RequestErrorKind};
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// Room kept under the server's `max_payload` for a request's subject and headers.
const HEADER_ALLOWANCE: usize = 512;
/// How often an instance tells each caller that it still works on its
/// request (an `alive` frame), whatever else it sends.
pub const STREAM_HEARTBEAT: Duration = Duration::from_millis(500);

const H_REQUEST_ID: &str = "Dyn-Request-Id";
const H_REPLY: &str = "Dyn-Reply";
const H_FRAME: &str = "Dyn-Frame";
const H_ERROR_TYPE: &str = "Dyn-Error-Type";

/// The subject prefix of one instance: its requests go to `<prefix>.req`,
/// its cancels to `<prefix>.cancel`.
pub(crate) fn subject(path: &EndpointPath, id: InstanceId) -> String {
    format!("dynamo.rq.{}{id:016x}", key_prefix(path))
}

/// Requests in flight on a serving instance, by the caller's inbox, to cancel.
pub(crate) type Running = Arc<Mutex<HashMap<String, CancellationToken>>>;

/// Carries requests and responses over one NATS connection.
pub(crate) struct NatsTransport {
    client: async_nats::Client,
    handle: Handle,
    /// How long a caller waits for the next frame before it gives the
    /// instance up (see `RuntimeConfig::stream_liveness`).
    liveness: Duration,
}

impl NatsTransport {
    pub(crate) fn new(client: async_nats::Client, liveness: Duration) -> Self {
        Self {
            client,
            handle: Handle::current(),
            liveness,
        }
    }

    async fn subscribe(&self, subject: String) -> Result<async_nats::Subscriber, TransportError> {
        self.client
            .subscribe(subject.clone())
            .await
            .map_err(|source| TransportError::Subscribe { subject, source })
    }

    /// Serves the requests sent to `subject` with `handler` until the
    /// returned token is cancelled; the map holds the requests in flight.
    pub(crate) async fn serve(
        &self,
        subject: &str,
        handler: Arc<dyn RawHandler>,
        metrics: Option<Arc<EndpointMetrics>>,
    ) -> Result<(CancellationToken, Running), TransportError> {
        let requests = self.subscribe(format!("{subject}.req")).await?;
        let cancels = self.subscribe(format!("{subject}.cancel")).await?;
        let stop = CancellationToken::new();
        let running: Running = Arc::default();
        tokio::spawn(serve_requests(
            self.client.clone(),
            requests,
            handler,
            metrics,
            running.clone(),
            stop.clone(),
        ));
        tokio::spawn(serve_cancels(cancels, running.clone(), stop.clone()));
        Ok((stop, running))
    }

    /// Sends a request to instance `id` of `path` and returns its frames.
    pub(crate) async fn call(
        &self,
        path: &EndpointPath,
        id: InstanceId,
        payload: Bytes,
    ) -> Result<Started, CallError> {
        let transport = |source| CallError::Transport {
            endpoint: path.to_string(),
            source,
        };
        // Refused here, before anything is published: a message over the
        // server's limit would make it close this connection, and every
        // stream on it with it.
        let limit = self.client.server_info().max_payload;
        let bytes = payload.len() + HEADER_ALLOWANCE;
        if limit > 0 && bytes > limit {
            return Err(CallError::RequestTooLarge {
                endpoint: path.to_string(),
                bytes: payload.len(),
                limit: limit.saturating_sub(HEADER_ALLOWANCE),
            });
        }
        let base = subject(path, id);
        let inbox = self.client.new_inbox();
        let frames = self.subscribe(inbox.clone()).await.map_err(transport)?;
        // The inbox is unique to this call (a NUID), so ids cannot collide
        // between callers, across processes too.
        let request_id = inbox.rsplit('.').next().unwrap_or(&inbox).to_owned();
        let mut headers = HeaderMap::new();
        headers.insert(H_REQUEST_ID, request_id.as_str());
        headers.insert(H_REPLY, inbox.as_str());
        let request = async_nats::Request::new()
            .headers(headers)
            .payload(payload)
            // An instance accepts at once; one that says nothing for the
            // liveness deadline is gone (it died as the request reached it,
            // before nats-server noticed): the call moves to the next one.
            .timeout(Some(self.liveness));
        let req_subject = format!("{base}.req");
        match self.client.send_request(req_subject.clone(), request).await {
            Ok(_accepted) => {}
            Err(e) if e.kind() == RequestErrorKind::NoResponders => {
                return Err(CallError::InstanceNotFound {
                    endpoint: path.to_string(),
                    instance: id,
                });
            }
            Err(source) => {
                return Err(transport(TransportError::Request {
                    subject: req_subject,
                    source,
                }))
            }
        }
        let client = self.client.clone();
        let handle = self.handle.clone();
        let cancel_subject = format!("{base}.cancel");
        let cancel_key = inbox;
        Ok(Started {
            frames: live_frames(frames, self.liveness),
            cancel: Box::new(move || {
                handle.spawn(async move {
                    if let Err(e) = client.publish(cancel_subject, cancel_key.into()).await {
                        tracing::debug!(error = %e, "could not publish a cancel");
                    }
                });
            }),
        })
    }
}

/// Publishes a request's frames to its caller's inbox.
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

/// The frames of one call, heartbeats left out, ending with
/// [`TransportError::WorkerLost`] when nothing has arrived for `liveness`.
/// The silence counts from the last frame read (heartbeats included), and
/// frames waiting in the subscription are read before the deadline is
/// checked, so a caller that was slow to read never loses a live instance.
fn live_frames(
    frames: async_nats::Subscriber,
    liveness: Duration,
) -> futures::stream::BoxStream<'static, Result<Frame, TransportError>> {
    let start = tokio::time::Instant::now();
    futures::stream::unfold(Some((frames, start)), move |state| async move {
        let (mut frames, mut heard) = state?;
        loop {
            match tokio::time::timeout_at(heard + liveness, frames.next()).await {
                Err(_) => {
                    let lost = TransportError::WorkerLost { silent: liveness };
                    return Some((Err(lost), None));
                }
                Ok(None) => return None,
                Ok(Some(msg)) => {
                    heard = tokio::time::Instant::now();
                    if header(&msg, H_FRAME) != Some("alive") {
                        return Some((Ok(decode_frame(msg)), Some((frames, heard))));
                    }
                }
            }
        }
    })
    .boxed()
}

/// Publishes an `alive` frame to `inbox` every [`STREAM_HEARTBEAT`] until `done`.
async fn heartbeats(client: async_nats::Client, inbox: String, done: CancellationToken) {
    loop {
        tokio::select! {
            _ = done.cancelled() => return,
            _ = tokio::time::sleep(STREAM_HEARTBEAT) => {}
        }
        let mut headers = HeaderMap::new();
        headers.insert(H_FRAME, "alive");
        if let Err(e) = client
            .publish_with_headers(inbox.clone(), headers, Bytes::new())
            .await
        {
            tracing::debug!(error = %e, "could not send a heartbeat");
        }
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
    running: Running,
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
                    .finish(Outcome::Failed(error_type::INVALID_REQUEST));
            }
            continue;
        };
        let token = CancellationToken::new();
        // Keyed by the caller's inbox, unique per call: a cancel names it.
        running.lock().insert(inbox.clone(), token.clone());
        let (client, handler, metrics, running) = (
            client.clone(),
            handler.clone(),
            metrics.clone(),
            running.clone(),
        );
        tokio::spawn(async move {
            let key = inbox.clone();
            let done = CancellationToken::new();
            let beating = tokio::spawn(heartbeats(client.clone(), inbox.clone(), done.clone()));
            let mut sink = NatsSink { client, inbox };
            let ctx = Context::new(request_id, token);
            drive(handler, msg.payload, ctx, metrics.as_ref(), &mut sink).await;
            done.cancel();
            let _ = beating.await;
            running.lock().remove(&key);
        });
    }
}

async fn serve_cancels(
    mut cancels: async_nats::Subscriber,
    running: Running,
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
