//! What the frontend answers: the response's identity ([`ResponseMeta`]) and
//! the body of a streamed answer ([`SseBody`]), which turns the engine's
//! items into OpenAI chunk events on the per-token path.
//!
//! Per token, the body appends one event to a reused buffer: the chunk JSON
//! is a precomputed prefix, the token's text (escaped), and a constant
//! suffix; the text comes from the decoder's reused buffer. Items the engine
//! has ready together leave as one body chunk (one write to the socket); the
//! first item of a burst never waits for a second. Each item is counted by
//! the request's timer as it is taken from the engine, as it was before
//! frames were batched, so TTFT and ITL record the same moments.

use crate::metrics::RequestTimer;
use crate::preprocessor::Decoder;
use crate::protocols::EngineOutput;
use bytes::{BufMut, Bytes, BytesMut};
use dynamo_runtime::request_plane::{CallError, ResponseReceiver};
use futures::{Stream, StreamExt};
use serde_json::{json, Value};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The engine's answer to one request.
pub(crate) type EngineStream = ResponseReceiver<EngineOutput>;

/// A body chunk is handed to the socket once it holds this many bytes, even
/// if the engine has more ready.
const MAX_BATCH_BYTES: usize = 16 * 1024;

const DONE: &[u8] = b"data: [DONE]\n\n";

/// What identifies a response and repeats in each of its chunks.
#[derive(Debug, Clone)]
pub(crate) struct ResponseMeta {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub chat: bool,
    pub prompt_tokens: usize,
}

impl ResponseMeta {
    pub(crate) fn usage(&self, completion_tokens: u64) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens as u64 + completion_tokens,
        })
    }

    fn object(&self) -> &'static str {
        if self.chat {
            "chat.completion.chunk"
        } else {
            "text_completion"
        }
    }

    /// The last chunk: no text, the finish reason.
    fn final_chunk(&self, finish_reason: &str) -> Value {
        let choice = if self.chat {
            json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": finish_reason})
        } else {
            json!({"index": 0, "text": "", "logprobs": null, "finish_reason": finish_reason})
        };
        json!({
            "id": self.id, "object": self.object(), "created": self.created, "model": self.model,
            "choices": [choice],
        })
    }

    fn usage_chunk(&self, completion_tokens: u64) -> Value {
        json!({
            "id": self.id, "object": self.object(), "created": self.created, "model": self.model,
            "choices": [], "usage": self.usage(completion_tokens),
        })
    }
}

/// One text chunk's event, but for its text: what comes before and after it.
#[derive(Debug, Clone)]
struct ChunkTemplate {
    before_text: Vec<u8>,
    after_text: &'static [u8],
}

impl ChunkTemplate {
    fn new(meta: &ResponseMeta) -> Self {
        let quoted = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned());
        let head = format!(
            "data: {{\"id\":{},\"object\":\"{}\",\"created\":{},\"model\":{},\"choices\":[{{\"index\":0,",
            quoted(&meta.id),
            meta.object(),
            meta.created,
            quoted(&meta.model)
        );
        let (field, after_text): (&str, &'static [u8]) = if meta.chat {
            (
                "\"delta\":{\"role\":\"assistant\",\"content\":",
                b"},\"finish_reason\":null}]}\n\n",
            )
        } else {
            (
                "\"text\":",
                b",\"logprobs\":null,\"finish_reason\":null}]}\n\n",
            )
        };
        Self {
            before_text: [head.as_bytes(), field.as_bytes()].concat(),
            after_text,
        }
    }

    /// Appends the event of a chunk carrying `text`.
    fn write(&self, out: &mut BytesMut, text: &str) {
        out.extend_from_slice(&self.before_text);
        // A `str` always serializes; the writer is a growing buffer.
        let _ = serde_json::to_writer(out.writer(), text);
        out.extend_from_slice(self.after_text);
    }
}

fn write_event(out: &mut BytesMut, value: &Value) {
    out.extend_from_slice(b"data: ");
    let _ = serde_json::to_writer(out.writer(), value);
    out.extend_from_slice(b"\n\n");
}

/// The body of a streamed response: pulls the engine's items when the
/// connection can take more, and ends with the finish chunk, the usage chunk
/// (when asked for) and `[DONE]`; on an engine error, an error event and
/// `[DONE]`. Dropped early (the client went away), it drops the engine's
/// stream (which cancels the request) and the timer (which counts the
/// disconnect).
pub(crate) struct SseBody {
    engine: EngineStream,
    decoder: Decoder,
    timer: RequestTimer,
    meta: ResponseMeta,
    template: ChunkTemplate,
    include_usage: bool,
    failure_type: fn(&CallError) -> &'static str,
    finish: Option<String>,
    buf: BytesMut,
    done: bool,
}

impl SseBody {
    pub(crate) fn new(
        meta: ResponseMeta,
        engine: EngineStream,
        decoder: Decoder,
        timer: RequestTimer,
        include_usage: bool,
        failure_type: fn(&CallError) -> &'static str,
    ) -> Self {
        Self {
            template: ChunkTemplate::new(&meta),
            engine,
            decoder,
            timer,
            meta,
            include_usage,
            failure_type,
            finish: None,
            buf: BytesMut::with_capacity(1024),
            done: false,
        }
    }

    /// Writes what follows the last item.
    fn end(&mut self) {
        let finish = self.finish.take().unwrap_or_else(|| "stop".to_owned());
        write_event(&mut self.buf, &self.meta.final_chunk(&finish));
        if self.include_usage {
            let usage = self.meta.usage_chunk(self.timer.output_tokens());
            write_event(&mut self.buf, &usage);
        }
        self.buf.extend_from_slice(DONE);
        self.timer.succeed();
        self.done = true;
    }

    fn fail(&mut self, e: &CallError) {
        self.timer.fail((self.failure_type)(e));
        let err = json!({"error": {"message": e.to_string(), "type": "internal_error"}});
        write_event(&mut self.buf, &err);
        self.buf.extend_from_slice(DONE);
        self.done = true;
    }
}

impl Stream for SseBody {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        while !this.done && this.buf.len() < MAX_BATCH_BYTES {
            match this.engine.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(out))) => {
                    let text = this.decoder.push(&out.token_ids);
                    this.template.write(&mut this.buf, text);
                    this.timer.tokens_sent(out.token_ids.len());
                    if out.finish_reason.is_some() {
                        this.finish = out.finish_reason;
                    }
                }
                Poll::Ready(Some(Err(e))) => this.fail(&e),
                Poll::Ready(None) => this.end(),
                Poll::Pending => break,
            }
        }
        if this.buf.is_empty() {
            return if this.done {
                Poll::Ready(None)
            } else {
                Poll::Pending
            };
        }
        Poll::Ready(Some(Ok(this.buf.split().freeze())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(chat: bool) -> ResponseMeta {
        ResponseMeta {
            id: "chatcmpl-1".into(),
            created: 7,
            model: "m \"q\"".into(),
            chat,
            prompt_tokens: 3,
        }
    }

    #[test]
    fn a_chunk_event_is_the_json_a_serializer_would_write() {
        for chat in [true, false] {
            let m = meta(chat);
            let mut buf = BytesMut::new();
            ChunkTemplate::new(&m).write(&mut buf, "a \"b\"\n\u{1}é");
            let text = std::str::from_utf8(&buf).unwrap();
            let json = text
                .strip_prefix("data: ")
                .and_then(|t| t.strip_suffix("\n\n"))
                .unwrap();
            let v: Value = serde_json::from_str(json).unwrap();
            let want = if chat {
                json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "m \"q\"",
                       "choices": [{"index": 0, "delta": {"role": "assistant", "content": "a \"b\"\n\u{1}é"}, "finish_reason": null}]})
            } else {
                json!({"id": "chatcmpl-1", "object": "text_completion", "created": 7, "model": "m \"q\"",
                       "choices": [{"index": 0, "text": "a \"b\"\n\u{1}é", "logprobs": null, "finish_reason": null}]})
            };
            assert_eq!(v, want);
        }
    }
}
