//! Runs one request on the server side, the same way for every transport:
//! decode, call the handler with panics isolated, send every item, and
//! record the automatic metrics exactly once however the request ends.

use super::endpoint_metrics::{EndpointMetrics, Outcome};
use super::handler::{Failure, RawHandler};
use super::Context;
use crate::metrics::prometheus_names::work_handler::error_type;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

/// What travels from the server to the caller.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Frame {
    /// One serialized response item.
    Item(Bytes),
    /// The request failed; nothing follows.
    Failed(Failure),
    /// The stream ended normally.
    End,
}

/// Where the driver sends frames. `send` fails with [`SinkError::CallerGone`]
/// when the caller dropped the stream, [`SinkError::Transport`] when the
/// frame could not be handed to the transport.
pub(crate) trait FrameSink: Send {
    /// Sends (or queues) one frame; the last frame of a request is sent at once.
    fn send(&mut self, frame: Frame) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Sends the queued frames: the driver calls it before it waits for the
    /// handler's next item, so frames are batched only when ready together.
    fn flush(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send {
        async { Ok(()) }
    }
}

/// Why a frame could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SinkError {
    /// The caller dropped the stream.
    CallerGone,
    /// The transport failed.
    Transport,
}

fn panic_failure(payload: Box<dyn std::any::Any + Send>) -> Failure {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    Failure::new(error_type::PANIC, format!("handler panicked: {message}"))
}

fn sink_failure(e: SinkError) -> Outcome {
    Outcome::Failed(match e {
        SinkError::CallerGone => error_type::CANCELLED,
        SinkError::Transport => error_type::TRANSPORT,
    })
}

/// Runs one request to its end.
pub(crate) async fn drive(
    handler: Arc<dyn RawHandler>,
    payload: Bytes,
    ctx: Context,
    metrics: Option<&Arc<EndpointMetrics>>,
    sink: &mut impl FrameSink,
) {
    let mut guard = metrics.map(|m| m.start(payload.len(), ctx.shared_meta()));
    let outcome = run(handler, payload, &ctx, &mut guard, sink).await;
    if let Some(g) = guard.as_mut() {
        g.finish(outcome);
    }
}

async fn run(
    handler: Arc<dyn RawHandler>,
    payload: Bytes,
    ctx: &Context,
    guard: &mut Option<super::endpoint_metrics::RequestGuard<'_>>,
    sink: &mut impl FrameSink,
) -> Outcome {
    let cancel = ctx.cancel_token();
    // Cancelled before it started (its cancel came first): the handler
    // never runs.
    if cancel.is_cancelled() {
        return Outcome::Failed(error_type::CANCELLED);
    }
    let started = std::panic::catch_unwind(AssertUnwindSafe(|| handler.call(payload, ctx.clone())));
    let started = match started {
        Ok(fut) => {
            let mut fut = AssertUnwindSafe(fut).catch_unwind();
            // A handler that starts at once (most do) needs no wait on the
            // cancellation beside it.
            let r = match (&mut fut).now_or_never() {
                Some(r) => r,
                None => tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return Outcome::Failed(error_type::CANCELLED),
                    r = fut => r,
                },
            };
            r.unwrap_or_else(|p| Err(panic_failure(p)))
        }
        Err(p) => Err(panic_failure(p)),
    };
    let mut items = match started {
        Ok(items) => items,
        Err(failure) => return send_failure(sink, failure).await,
    };
    loop {
        if cancel.is_cancelled() {
            return Outcome::Failed(error_type::CANCELLED);
        }
        // An item ready now joins the frames queued in the sink; before
        // waiting for one, the sink sends what it holds.
        let ready = AssertUnwindSafe(items.next()).catch_unwind().now_or_never();
        let next = match ready {
            Some(next) => next,
            None => {
                if let Err(e) = sink.flush().await {
                    return sink_failure(e);
                }
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return Outcome::Failed(error_type::CANCELLED),
                    next = AssertUnwindSafe(items.next()).catch_unwind() => next,
                }
            }
        };
        match next {
            Err(p) => return send_failure(sink, panic_failure(p)).await,
            // A handler that ends its stream because the caller cancelled
            // (as handlers watching `Context::is_cancelled` do) served a
            // cancelled request, not a completed one.
            Ok(None) if cancel.is_cancelled() => return Outcome::Failed(error_type::CANCELLED),
            Ok(None) => {
                return match sink.send(Frame::End).await {
                    Ok(()) => Outcome::Completed,
                    Err(e) => sink_failure(e),
                }
            }
            Ok(Some(Err(failure))) => return send_failure(sink, failure).await,
            Ok(Some(Ok(bytes))) => {
                if let Some(g) = guard.as_ref() {
                    g.response_bytes(bytes.len());
                }
                if let Err(e) = sink.send(Frame::Item(bytes)).await {
                    return sink_failure(e);
                }
            }
        }
    }
}

async fn send_failure(sink: &mut impl FrameSink, failure: Failure) -> Outcome {
    let error_type = failure.error_type;
    tracing::debug!(error_type, message = %failure.message, "request failed");
    // The failure is what we count, whether or not the caller still listens.
    let _ = sink.send(Frame::Failed(failure)).await;
    Outcome::Failed(error_type)
}
