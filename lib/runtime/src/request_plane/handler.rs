//! Typed handlers and their type-erased form: bytes in, a stream of encoded
//! response items (or a typed failure) out.

use super::{Context, HandlerError, ResponseStream};
use crate::metrics::prometheus_names::work_handler::error_type;
use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::marker::PhantomData;

/// The buffer a handler's items are serialized into grows by this much when
/// it has less than [`MIN_ITEM_ROOM`] left.
const ITEM_BUFFER_BYTES: usize = 8 * 1024;
const MIN_ITEM_ROOM: usize = 512;

/// Why a request failed on the server: one of the `error_type` values, and a message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub error_type: &'static str,
    pub message: String,
}

impl Failure {
    pub(crate) fn new(error_type: &'static str, message: impl Into<String>) -> Self {
        Self {
            error_type,
            message: message.into(),
        }
    }
}

pub(crate) type RawItems = BoxStream<'static, Result<Bytes, Failure>>;

/// A handler with its types erased.
pub(crate) trait RawHandler: Send + Sync + 'static {
    fn call(&self, payload: Bytes, ctx: Context) -> BoxFuture<'static, Result<RawItems, Failure>>;
}

/// A typed handler closure.
pub(crate) struct Typed<F, Req, Resp> {
    f: F,
    _types: PhantomData<fn(Req) -> Resp>,
}

impl<F, Req, Resp> Typed<F, Req, Resp> {
    pub(crate) fn new(f: F) -> Self {
        Self {
            f,
            _types: PhantomData,
        }
    }
}

impl<F, Fut, Req, Resp> RawHandler for Typed<F, Req, Resp>
where
    F: Fn(Req, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ResponseStream<Resp>, HandlerError>> + Send + 'static,
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
{
    fn call(&self, payload: Bytes, ctx: Context) -> BoxFuture<'static, Result<RawItems, Failure>> {
        let request: Req = match serde_json::from_slice(&payload) {
            Ok(r) => r,
            Err(e) => {
                let failure = Failure::new(
                    error_type::INVALID_REQUEST,
                    format!("request does not deserialize: {e}"),
                );
                return futures::future::ready(Err(failure)).boxed();
            }
        };
        let fut = (self.f)(request, ctx);
        async move {
            let stream = fut
                .await
                .map_err(|e| Failure::new(error_type::HANDLER, e.to_string()))?;
            // Items are written into one buffer, each split off as it is
            // done: an allocation per few kilobytes of items, not per item.
            let mut buf = BytesMut::new();
            Ok(stream
                .map(move |item| match item {
                    Ok(resp) => {
                        if buf.capacity() - buf.len() < MIN_ITEM_ROOM {
                            buf.reserve(ITEM_BUFFER_BYTES);
                        }
                        match serde_json::to_writer((&mut buf).writer(), &resp) {
                            Ok(()) => Ok(buf.split().freeze()),
                            Err(e) => {
                                buf.clear();
                                Err(Failure::new(
                                    error_type::RESPONSE_ENCODING,
                                    format!("response does not serialize: {e}"),
                                ))
                            }
                        }
                    }
                    Err(e) => Err(Failure::new(error_type::HANDLER, e.to_string())),
                })
                .boxed())
        }
        .boxed()
    }
}
