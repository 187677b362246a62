//! Requests and their streamed responses over core NATS. A request goes to
//! one instance's subject with the caller's inbox as its reply subject (so a
//! dead instance is seen at once: nats-server answers "no responders" there);
//! responses stream back to the inbox as messages of [`wire`] records, the
//! frames ready together in one message; an instance sends a heartbeat every
//! [`STREAM_HEARTBEAT`] while it works. The first message back is the
//! acceptance: nothing within the liveness deadline means the instance died
//! as the request reached it, and the call moves on. Dropping the stream
//! publishes a cancel to the instance.

use super::in_flight::InFlight;
use super::key_prefix;
use super::replies::{Replies, Reply, Route};
use super::wire;
use crate::metrics::prometheus_names::work_handler::error_type;
use crate::request_plane::client::Started;
use crate::request_plane::driver::{drive, Frame, FrameSink, SinkError};
use crate::request_plane::endpoint_metrics::{EndpointMetrics, Outcome};
use crate::request_plane::handler::{Failure, RawHandler};
use crate::request_plane::{
    CallError, Context, EndpointPath, InstanceId, RequestMeta, TraceParent, TransportError,
};
use async_nats::Subject;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context as TaskContext, Poll};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// Room kept under the server's `max_payload` for a request's subject and headers.
const HEADER_ALLOWANCE: usize = 512;
/// How often an instance tells each caller that it still works on its
/// request (an `alive` frame), whatever else it sends.
pub const STREAM_HEARTBEAT: Duration = Duration::from_millis(500);

/// A message of frames is published once it holds this many bytes, even
/// when more frames are ready.
const BATCH_BYTES: usize = 64 * 1024;

/// The start of every instance subject of one endpoint; an instance's is
/// this and its id in 16 hex digits (see [`subject`]).
pub(crate) fn subject_prefix(path: &EndpointPath) -> String {
    format!("dynamo.rq.{}", key_prefix(path))
}

/// The subject prefix of one instance: its requests go to `<prefix>.req`,
/// its cancels to `<prefix>.cancel`.
pub(crate) fn subject(path: &EndpointPath, id: InstanceId) -> String {
    format!("{}{id:016x}", subject_prefix(path))
}

/// An instance's request subject, from its endpoint's [`subject_prefix`].
fn request_subject(prefix: &str, id: InstanceId) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(prefix.len() + 20);
    out.push_str(prefix);
    let _ = write!(out, "{id:016x}.req");
    out
}

/// The cancel subject beside a request subject.
fn cancel_subject(request_subject: &str) -> String {
    let base = request_subject
        .strip_suffix(".req")
        .unwrap_or(request_subject);
    format!("{base}.cancel")
}

/// Requests in flight on a serving instance (see [`InFlight`]).
pub(crate) type Running = Arc<InFlight>;

/// Carries requests and responses over one NATS connection.
pub(crate) struct NatsTransport {
    /// Shared, not cloned per request: a clone of the client itself touches
    /// a dozen counters (its command channel's among them).
    client: Arc<async_nats::Client>,
    handle: Handle,
    /// How long a caller waits for the next frame before it gives the
    /// instance up (see `RuntimeConfig::stream_liveness`).
    liveness: Duration,
    /// The replies of this process's calls (started by the first call).
    replies: tokio::sync::OnceCell<Replies>,
    /// The server's message size limit, as last read.
    max_payload: AtomicUsize,
    /// Set on every (re)connection: the next call reads the limit again
    /// (`server_info` copies the whole server description, too much per call).
    info_stale: Arc<AtomicBool>,
}

impl NatsTransport {
    /// `info_stale` is set by the connection's event callback on every
    /// (re)connection, when the server (and its limit) may have changed.
    pub(crate) fn new(
        client: async_nats::Client,
        liveness: Duration,
        info_stale: Arc<AtomicBool>,
    ) -> Self {
        // Read now, so that concurrent first calls never see "no limit".
        let max_payload = AtomicUsize::new(client.server_info().max_payload);
        Self {
            client: Arc::new(client),
            handle: Handle::current(),
            liveness,
            replies: tokio::sync::OnceCell::new(),
            max_payload,
            info_stale,
        }
    }

    /// The server's message size limit (0: none known). Between a
    /// reconnection and the re-read, a call may still check the previous
    /// server's limit.
    fn max_payload(&self) -> usize {
        if self.info_stale.swap(false, Ordering::Relaxed) {
            let limit = self.client.server_info().max_payload;
            self.max_payload.store(limit, Ordering::Relaxed);
            limit
        } else {
            self.max_payload.load(Ordering::Relaxed)
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

    /// Calls of this process whose replies are still being read.
    pub(crate) fn open_response_streams(&self) -> usize {
        self.replies.get().map_or(0, Replies::open)
    }

    /// Sends a request to instance `id` of `path` (whose [`subject_prefix`]
    /// is `prefix`) and returns its frames.
    pub(crate) async fn call(
        &self,
        path: &EndpointPath,
        prefix: &str,
        id: InstanceId,
        payload: Bytes,
        meta: &RequestMeta,
    ) -> Result<Started, CallError> {
        let transport = |source| CallError::Transport {
            endpoint: path.to_string(),
            source,
        };
        // Refused here, before anything is published: a message over the
        // server's limit would make it close this connection, and every
        // stream on it with it.
        let limit = self.max_payload();
        let bytes = payload.len() + HEADER_ALLOWANCE;
        if limit > 0 && bytes > limit {
            return Err(CallError::RequestTooLarge {
                endpoint: path.to_string(),
                bytes: payload.len(),
                limit: limit.saturating_sub(HEADER_ALLOWANCE),
            });
        }
        let replies = self
            .replies
            .get_or_try_init(|| Replies::start(&self.client))
            .await
            .map_err(transport)?;
        // The reply subject is unique to this call (a connection's inbox and
        // 128 random bits): the instance takes its last token as the request id.
        let (inbox, route) = replies.route();
        let inbox = Subject::from(inbox);
        let req_subject = Subject::from(request_subject(prefix, id));
        let published = if meta.is_empty() {
            self.client
                .publish_with_reply(req_subject.clone(), inbox.clone(), payload)
                .await
        } else {
            self.client
                .publish_with_reply_and_headers(
                    req_subject.clone(),
                    inbox.clone(),
                    meta_headers(meta),
                    payload,
                )
                .await
        };
        published.map_err(|source| {
            transport(TransportError::Publish {
                subject: req_subject.to_string(),
                source,
            })
        })?;
        let mut frames = LiveFrames::new(route, self.liveness);
        match frames.accepted().await {
            Acceptance::Accepted => {}
            Acceptance::NoResponders => {
                return Err(CallError::InstanceNotFound {
                    endpoint: path.to_string(),
                    instance: id,
                })
            }
            Acceptance::Silent => {
                return Err(transport(TransportError::NotAccepted {
                    subject: req_subject.to_string(),
                    waited: self.liveness,
                }))
            }
        }
        let client = self.client.clone();
        let handle = self.handle.clone();
        Ok(Started {
            frames: frames.boxed(),
            // The cancel names the call by its inbox; its subject is only
            // written when a call is cancelled.
            cancel: Box::new(move || {
                handle.spawn(async move {
                    let key = Bytes::copy_from_slice(inbox.as_bytes());
                    if let Err(e) = client.publish(cancel_subject(&req_subject), key).await {
                        tracing::debug!(error = %e, "could not publish a cancel");
                    }
                });
            }),
        })
    }
}

/// Publishes a request's frames to its caller's inbox, the frames ready
/// together in one message.
struct NatsSink {
    client: Arc<async_nats::Client>,
    inbox: Subject,
    pending: BytesMut,
}

impl NatsSink {
    async fn publish(&mut self) -> Result<(), SinkError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let message = self.pending.split().freeze();
        // Boxed: the client's publish future is several hundred bytes, and
        // inline it would make every request's future (allocated per
        // request) too large for the allocator's fast per-thread cache.
        Box::pin(self.client.publish(self.inbox.clone(), message))
            .await
            .map_err(|_| SinkError::Transport)
    }
}

impl FrameSink for NatsSink {
    async fn send(&mut self, frame: Frame) -> Result<(), SinkError> {
        let last = !matches!(frame, Frame::Item(_));
        wire::put_frame(&mut self.pending, &frame);
        if last || self.pending.len() >= BATCH_BYTES {
            self.publish().await
        } else {
            Ok(())
        }
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        self.publish().await
    }
}

/// What the first message back says of a request.
enum Acceptance {
    /// The instance answers.
    Accepted,
    /// No instance listens on the subject.
    NoResponders,
    /// Nothing came back within the liveness deadline.
    Silent,
}

/// The frames of one call, heartbeats left out, ending with
/// [`TransportError::WorkerLost`] when nothing has arrived for `liveness`.
/// The silence counts from the last message read (heartbeats included), and
/// messages waiting in the subscription are read before the deadline is
/// checked, so a caller that was slow to read never loses a live instance.
/// A message only notes when it came; the timer is moved on when it fires
/// early (not per message: each move takes the timer wheel's lock).
struct LiveFrames {
    messages: Route,
    liveness: Duration,
    silence: Pin<Box<tokio::time::Sleep>>,
    /// When the last message came (the call's start before the first).
    heard: tokio::time::Instant,
    ready: VecDeque<Frame>,
    done: bool,
}

impl LiveFrames {
    fn new(messages: Route, liveness: Duration) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            messages,
            liveness,
            silence: Box::pin(tokio::time::sleep_until(now + liveness)),
            heard: now,
            ready: VecDeque::new(),
            done: false,
        }
    }

    /// Ready once nothing has come for `liveness`.
    fn poll_silent(&mut self, cx: &mut TaskContext<'_>) -> Poll<()> {
        loop {
            ready!(self.silence.as_mut().poll(cx));
            let due = self.heard + self.liveness;
            if due <= tokio::time::Instant::now() {
                return Poll::Ready(());
            }
            self.silence.as_mut().reset(due);
        }
    }

    /// Waits for the first message.
    async fn accepted(&mut self) -> Acceptance {
        let first = std::future::poll_fn(|cx| {
            if let Poll::Ready(m) = self.messages.poll_recv(cx) {
                return Poll::Ready(Some(m));
            }
            self.poll_silent(cx).map(|()| None)
        })
        .await;
        let Some(first) = first else {
            return Acceptance::Silent;
        };
        match first {
            Some(Reply::NoResponders) => Acceptance::NoResponders,
            Some(Reply::Message(m)) => {
                self.take_message(m);
                Acceptance::Accepted
            }
            // The subscription ended (the connection closed): let the stream say so.
            None => Acceptance::Accepted,
        }
    }

    /// Takes in one message; the silence counts from now.
    fn take_message(&mut self, payload: Bytes) {
        self.heard = tokio::time::Instant::now();
        if let Err(e) = wire::read(payload, &mut self.ready) {
            self.ready.push_back(Frame::Failed(Failure::new(
                error_type::TRANSPORT,
                format!("malformed message on the reply inbox: {e}"),
            )));
        }
    }
}

impl Stream for LiveFrames {
    type Item = Result<Frame, TransportError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(f) = self.ready.pop_front() {
                return Poll::Ready(Some(Ok(f)));
            }
            if self.done {
                return Poll::Ready(None);
            }
            match self.messages.poll_recv(cx) {
                Poll::Ready(Some(Reply::Message(msg))) => self.take_message(msg),
                // Only a request's first reply can say so; later, ignore it.
                Poll::Ready(Some(Reply::NoResponders)) => {}
                Poll::Ready(None) => {
                    self.done = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => {
                    return match self.poll_silent(cx) {
                        Poll::Ready(()) => {
                            self.done = true;
                            Poll::Ready(Some(Err(TransportError::WorkerLost {
                                silent: self.liveness,
                            })))
                        }
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }
}

/// Publishes a heartbeat to `inbox` every [`STREAM_HEARTBEAT`], for as long
/// as it is polled.
async fn heartbeats(client: Arc<async_nats::Client>, inbox: Subject) {
    loop {
        tokio::time::sleep(STREAM_HEARTBEAT).await;
        // Boxed, as in `NatsSink::publish`: this future is part of every request's.
        if let Err(e) = Box::pin(client.publish(inbox.clone(), wire::alive())).await {
            tracing::debug!(error = %e, "could not send a heartbeat");
        }
    }
}

async fn serve_requests(
    client: Arc<async_nats::Client>,
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
        let Some(inbox) = msg.reply.clone() else {
            // Not a request of ours: count it, but there is nowhere to answer.
            tracing::warn!(subject = %msg.subject, "request without a reply inbox; dropped");
            if let Some(m) = &metrics {
                m.start(msg.payload.len(), Default::default())
                    .finish(Outcome::Failed(error_type::INVALID_REQUEST));
            }
            continue;
        };
        // The reply subject's last token is unique per call: the request id.
        let request_id = inbox.rsplit('.').next().unwrap_or_default().to_owned();
        let token = CancellationToken::new();
        // A caller that gave up at once may have had its cancel read first.
        if running.cancelled_early(inbox.as_str()) {
            token.cancel();
        }
        let registered = token.clone();
        let meta = msg.headers.as_ref().map(meta_of).unwrap_or_default();
        let ctx = Context::new(request_id, meta, token);
        let mut sink = NatsSink {
            client: client.clone(),
            inbox: inbox.clone(),
            pending: BytesMut::new(),
        };
        let (handler, metrics, payload) = (handler.clone(), metrics.clone(), msg.payload);
        let request = async move {
            drive(handler, payload, ctx, metrics.as_ref(), &mut sink).await;
        };
        let mut request = Box::pin(request);
        // A request that completes at once (a unary answer ready now) is
        // served right here; one that waits goes on in a task of its own,
        // with its heartbeats beside it (no task of their own to start and
        // stop per request, and none for a request served at once).
        if futures::FutureExt::now_or_never(request.as_mut()).is_some() {
            continue;
        }
        // Keyed by the caller's inbox, unique per call: a cancel names it.
        running.register(inbox.clone(), registered);
        let (client, running) = (client.clone(), running.clone());
        tokio::spawn(async move {
            tokio::select! {
                biased;
                () = request => {}
                () = heartbeats(client, inbox.clone()) => {}
            }
            running.remove(inbox.as_str());
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
        running.cancel(&String::from_utf8_lossy(&msg.payload));
    }
}

/// The NATS header carrying the caller's request id.
const REQUEST_ID_HEADER: &str = "Dynamo-Request-Id";
/// The NATS header carrying the W3C trace context.
const TRACEPARENT_HEADER: &str = "traceparent";

/// A request's id and trace context as NATS headers.
fn meta_headers(meta: &RequestMeta) -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    if let Some(id) = meta.request_id() {
        headers.insert(REQUEST_ID_HEADER, id);
    }
    if let Some(tp) = meta.traceparent() {
        headers.insert(TRACEPARENT_HEADER, tp.as_str());
    }
    headers
}

/// A request's id and trace context from its NATS headers (untrusted: the
/// id is cut to its bound, an invalid `traceparent` ignored).
fn meta_of(headers: &async_nats::HeaderMap) -> RequestMeta {
    let id = headers
        .get(REQUEST_ID_HEADER)
        .map(|v| v.as_str())
        .unwrap_or_default();
    let traceparent = headers
        .get(TRACEPARENT_HEADER)
        .and_then(|v| TraceParent::parse(v.as_str()));
    RequestMeta::new(id, traceparent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request_plane::handler::Typed;
    use crate::request_plane::single;

    /// A caller that gives up at once can have its cancel read before its
    /// request (they come on two subscriptions, read by two tasks): the
    /// request then starts cancelled and its handler never runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancel_read_before_its_request_keeps_its_handler_from_running() {
        let nats = dynamo_testing::NatsServer::start();
        let client = async_nats::connect(&nats.url).await.unwrap();
        let transport = NatsTransport::new(client.clone(), Duration::from_secs(3), Arc::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let handler = Arc::new(Typed::new(move |x: u64, _ctx: Context| {
            seen.fetch_add(1, Ordering::SeqCst);
            async move { Ok(single(x)) }
        }));
        let (stop, running) = transport.serve("t.early", handler, None).await.unwrap();

        let gone = "_INBOX.early.gone";
        let mut gone_replies = client.subscribe(gone).await.unwrap();
        client.publish("t.early.cancel", gone.into()).await.unwrap();
        client.flush().await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while running.early_len() == 0 {
            assert!(tokio::time::Instant::now() < deadline, "the cancel is kept");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        client
            .publish_with_reply("t.early.req", gone, "7".into())
            .await
            .unwrap();
        // A later request is answered (requests are served in order: the
        // cancelled one was handled before it).
        let live = "_INBOX.early.live";
        let mut live_replies = client.subscribe(live).await.unwrap();
        client
            .publish_with_reply("t.early.req", live, "8".into())
            .await
            .unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), live_replies.next())
            .await
            .unwrap()
            .unwrap();
        let mut frames = VecDeque::new();
        wire::read(reply.payload, &mut frames).unwrap();
        assert_eq!(
            frames.into_iter().collect::<Vec<_>>(),
            vec![Frame::Item(Bytes::from_static(b"8")), Frame::End]
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "only the live request ran");
        assert_eq!(running.early_len(), 0, "the kept cancel was used");
        assert_eq!(running.len(), 0);
        let nothing = tokio::time::timeout(Duration::from_millis(200), gone_replies.next()).await;
        assert!(nothing.is_err(), "the cancelled request sent nothing");
        stop.cancel();
    }
}
