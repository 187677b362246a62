//! What the request-plane examples share: the protocol of the `generate`
//! endpoint and a mock engine that streams tokens.

use dynamo_runtime::request_plane::{Context, HandlerError, ResponseStream};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Namespace of the examples' endpoint.
pub const NAMESPACE: &str = "dynamo";
/// Component of the examples' endpoint.
pub const COMPONENT: &str = "backend";
/// The endpoint.
pub const ENDPOINT: &str = "generate";

/// A generation request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerateRequest {
    /// The prompt.
    pub prompt: String,
    /// How many tokens to stream back.
    pub max_tokens: u32,
}

/// One streamed token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Token {
    /// Position in the response.
    pub index: u32,
    /// The token's text.
    pub text: String,
}

/// Logs to stderr (`DYN_LOG` or `RUST_LOG`, `info` by default).
pub fn init_logging() {
    dynamo_runtime::logging::init();
}

/// A mock engine: streams `max_tokens` tokens, `delay` apart, and stops when
/// the caller cancels.
pub fn mock_engine(
    delay: Duration,
) -> impl Fn(
    GenerateRequest,
    Context,
) -> futures::future::Ready<Result<ResponseStream<Token>, HandlerError>>
       + Send
       + Sync
       + 'static {
    move |request: GenerateRequest, ctx: Context| {
        let words: Vec<String> = request
            .prompt
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let stream = futures::stream::unfold(0u32, move |index| {
            let words = words.clone();
            let ctx = ctx.clone();
            async move {
                if index >= request.max_tokens || ctx.is_cancelled() {
                    return None;
                }
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let text = words
                    .get(index as usize % words.len().max(1))
                    .cloned()
                    .unwrap_or_else(|| format!("tok{index}"));
                Some((Ok(Token { index, text }), index + 1))
            }
        });
        futures::future::ready(Ok(Box::pin(stream) as ResponseStream<Token>))
    }
}
