//! A mock engine: streams `max_tokens` tokens with a configurable time to
//! first token and inter-token delay, so the LLM metrics have realistic
//! shapes on a machine with no GPU. The tokens spell a fixed text, so the
//! output reads as words.

use crate::protocols::{EngineOutput, EngineRequest};
use dynamo_runtime::request_plane::{Context, HandlerError, ResponseStream};
use std::sync::Arc;
use std::time::Duration;

/// The mock engine's timing.
#[derive(Debug, Clone, Copy)]
pub struct MockerConfig {
    /// Delay before the first token.
    pub ttft: Duration,
    /// Delay between tokens.
    pub itl: Duration,
}

const TEXT: &str = "The quick brown fox jumps over the lazy dog while the metrics pipeline \
                    counts every token it streams to the waiting client. ";

/// The handler to serve with `Endpoint::serve`.
pub fn mock_engine(
    config: MockerConfig,
) -> impl Fn(
    EngineRequest,
    Context,
) -> futures::future::Ready<Result<ResponseStream<EngineOutput>, HandlerError>>
       + Send
       + Sync
       + 'static {
    let vocab: Arc<Vec<u32>> = Arc::new(tiktoken_rs::cl100k_base_singleton().encode_ordinary(TEXT));
    move |request: EngineRequest, ctx: Context| {
        let vocab = vocab.clone();
        let stream = futures::stream::unfold(0u32, move |i| {
            let vocab = vocab.clone();
            let ctx = ctx.clone();
            async move {
                if i >= request.max_tokens || ctx.is_cancelled() {
                    return None;
                }
                let delay = if i == 0 { config.ttft } else { config.itl };
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let token = vocab[i as usize % vocab.len()];
                let finish_reason = (i + 1 == request.max_tokens).then(|| "length".to_owned());
                Some((
                    Ok(EngineOutput {
                        token_ids: vec![token],
                        finish_reason,
                    }),
                    i + 1,
                ))
            }
        });
        futures::future::ready(Ok(Box::pin(stream) as ResponseStream<EngineOutput>))
    }
}
