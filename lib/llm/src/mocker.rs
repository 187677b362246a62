//! A mock engine: streams `max_tokens` tokens with a configurable time to
//! first token and inter-token delay, so the LLM metrics have realistic
//! shapes on a machine with no GPU. The tokens spell a fixed text, so the
//! output reads as words. With a [`MockKv`], each request also takes blocks
//! of a simulated paged KV cache with prefix reuse (waiting for blocks when
//! it is full), and the engine's KV and scheduler gauges follow it.

use crate::engine_metrics::{EngineMetrics, PagedKvCache, Sequence};
use crate::protocols::{EngineOutput, EngineRequest};
use dynamo_runtime::request_plane::{Context, HandlerError, ResponseStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Tokens per block of the mock engine's KV cache.
pub const MOCK_BLOCK_SIZE: usize = 16;
/// Blocks of the mock engine's KV cache (16,384 tokens).
pub const MOCK_TOTAL_BLOCKS: usize = 1024;

/// The mock engine's simulated KV cache and the gauges that show it.
#[derive(Debug)]
pub struct MockKv {
    cache: PagedKvCache,
    metrics: EngineMetrics,
    waiting: AtomicU64,
    freed: tokio::sync::Notify,
}

impl MockKv {
    /// A cache of `total_blocks` blocks of `block_size` tokens, shown on `metrics`.
    pub fn new(block_size: usize, total_blocks: usize, metrics: EngineMetrics) -> Self {
        let kv = Self {
            cache: PagedKvCache::new(block_size, total_blocks),
            metrics,
            waiting: AtomicU64::new(0),
            freed: tokio::sync::Notify::new(),
        };
        kv.publish();
        kv
    }

    fn publish(&self) {
        self.metrics.set_kv_stats(self.cache.stats());
        self.metrics
            .set_waiting(self.waiting.load(Ordering::Relaxed));
    }

    /// Admits a request, waiting (counted as waiting) while the cache is full.
    async fn admit(&self, prompt: &[u32], ctx: &Context) -> Option<Sequence> {
        let mut counted = false;
        let seq = loop {
            let freed = self.freed.notified();
            if let Some(seq) = self.cache.admit(prompt) {
                break Some(seq);
            }
            if !counted {
                counted = true;
                self.waiting.fetch_add(1, Ordering::Relaxed);
                self.publish();
            }
            tokio::select! {
                _ = freed => {}
                _ = ctx.cancelled() => break None,
            }
        };
        if counted {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        self.publish();
        seq
    }

    fn grow(&self, seq: &mut Sequence) {
        if self.cache.grow(seq) {
            self.publish();
        }
    }

    fn release(&self, seq: Sequence) {
        self.cache.release(seq);
        self.publish();
        self.freed.notify_waiters();
    }
}

/// Gives a request's blocks back when its stream ends, however it ends.
struct Held {
    kv: Arc<MockKv>,
    seq: Option<Sequence>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(seq) = self.seq.take() {
            self.kv.release(seq);
        }
    }
}

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

/// The handler to serve with `Endpoint::serve`; with `kv`, requests take
/// blocks of its simulated KV cache.
pub fn mock_engine(
    config: MockerConfig,
    kv: Option<Arc<MockKv>>,
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
        let kv = kv.clone();
        let prompt = request.token_ids;
        let max_tokens = request.max_tokens;
        let stream = futures::stream::unfold((0u32, None::<Held>), move |(i, mut held)| {
            let vocab = vocab.clone();
            let ctx = ctx.clone();
            let kv = kv.clone();
            let prompt = if i == 0 { prompt.clone() } else { Vec::new() };
            async move {
                if i >= max_tokens || ctx.is_cancelled() {
                    return None;
                }
                if let Some(kv) = &kv {
                    match held.as_mut().and_then(|h| h.seq.as_mut()) {
                        Some(seq) => kv.grow(seq),
                        None => {
                            let seq = kv.admit(&prompt, &ctx).await?;
                            held = Some(Held {
                                kv: kv.clone(),
                                seq: Some(seq),
                            });
                        }
                    }
                }
                let delay = if i == 0 { config.ttft } else { config.itl };
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let token = vocab[i as usize % vocab.len()];
                let finish_reason = (i + 1 == max_tokens).then(|| "length".to_owned());
                Some((
                    Ok(EngineOutput {
                        token_ids: vec![token],
                        finish_reason,
                    }),
                    (i + 1, held),
                ))
            }
        });
        futures::future::ready(Ok(Box::pin(stream) as ResponseStream<EngineOutput>))
    }
}
