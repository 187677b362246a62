//! An engine worker's KV-cache and scheduler statistics as gauges on its
//! endpoint (names in `dynamo_runtime::prometheus_names::kvstats`), and a
//! simulated paged KV cache with prefix reuse that drives them for the mock
//! engine.

use dynamo_runtime::prometheus::{Gauge, IntGauge};
use dynamo_runtime::prometheus_names::kvstats;
use dynamo_runtime::{Endpoint, MetricsError};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};

/// What an engine reports of its KV cache.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KvStats {
    /// Blocks held by running requests.
    pub active_blocks: u64,
    /// Blocks in all.
    pub total_blocks: u64,
    /// Share of prompt blocks found in the prefix cache, 0 to 1.
    pub prefix_cache_hit_rate: f64,
}

impl KvStats {
    /// `active_blocks / total_blocks` (0 with no blocks).
    pub fn usage(&self) -> f64 {
        if self.total_blocks == 0 {
            0.0
        } else {
            self.active_blocks as f64 / self.total_blocks as f64
        }
    }
}

/// The engine gauges of one endpoint. Cheap to clone.
///
/// ```
/// use dynamo_llm::engine_metrics::{EngineMetrics, KvStats};
/// let drt = dynamo_runtime::DistributedRuntime::from_config(Default::default())?;
/// let ep = drt.namespace("dynamo").component("backend").endpoint("generate");
/// let m = EngineMetrics::new(&ep)?;
/// m.set_kv_stats(KvStats { active_blocks: 3, total_blocks: 12, prefix_cache_hit_rate: 0.5 });
/// m.set_waiting(2);
/// let text = drt.metrics().prometheus_metrics_fmt()?;
/// assert!(text.contains("dynamo_component_kvstats_gpu_cache_usage_percent{dynamo_component=\"backend\",dynamo_endpoint=\"generate\",dynamo_namespace=\"dynamo\"} 0.25"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct EngineMetrics {
    active_blocks: IntGauge,
    total_blocks: IntGauge,
    usage: Gauge,
    hit_rate: Gauge,
    waiting: IntGauge,
}

/// The name under the `dynamo_component_` prefix the `create_*` methods add.
fn short(name: &str) -> &str {
    name.strip_prefix("dynamo_component_").unwrap_or(name)
}

impl EngineMetrics {
    /// Creates (or gets) the gauges on `endpoint`.
    pub fn new(endpoint: &Endpoint) -> Result<Self, MetricsError> {
        let m = endpoint.metrics();
        Ok(Self {
            active_blocks: m.create_intgauge(
                short(kvstats::ACTIVE_BLOCKS),
                "KV-cache blocks held by running requests",
                &[],
            )?,
            total_blocks: m.create_intgauge(
                short(kvstats::TOTAL_BLOCKS),
                "KV-cache blocks in all",
                &[],
            )?,
            usage: m.create_gauge(
                short(kvstats::GPU_CACHE_USAGE_PERCENT),
                "Share of the KV cache in use, 0 to 1",
                &[],
            )?,
            hit_rate: m.create_gauge(
                short(kvstats::GPU_PREFIX_CACHE_HIT_RATE),
                "Share of prompt blocks found in the prefix cache, 0 to 1",
                &[],
            )?,
            waiting: m.create_intgauge(
                short(kvstats::NUM_REQUESTS_WAITING),
                "Requests waiting for the engine to admit them",
                &[],
            )?,
        })
    }

    /// Sets the KV-cache gauges (usage is computed from the blocks).
    pub fn set_kv_stats(&self, stats: KvStats) {
        self.active_blocks.set(clamp_i64(stats.active_blocks));
        self.total_blocks.set(clamp_i64(stats.total_blocks));
        self.usage.set(stats.usage());
        self.hit_rate.set(stats.prefix_cache_hit_rate);
    }

    /// Sets the number of requests waiting for admission.
    pub fn set_waiting(&self, waiting: u64) {
        self.waiting.set(clamp_i64(waiting));
    }
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// How many recent admissions the prefix-cache hit rate is computed over.
const HIT_RATE_WINDOW: usize = 128;

/// A simulated paged KV cache: prompts are split into blocks of `block_size`
/// tokens, each identified by a hash of its tokens and of every token before
/// it (so equal prefixes share blocks). A block used by no running request
/// stays cached until space is needed (least recently used first); a new
/// request reuses the cached blocks of its prefix. Output tokens take blocks
/// of their own.
#[derive(Debug)]
pub struct PagedKvCache {
    block_size: usize,
    total_blocks: usize,
    state: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    /// Prompt blocks in use: hash -> requests using it.
    active: HashMap<u64, usize>,
    /// Output blocks in use.
    output_blocks: usize,
    /// Prompt blocks cached and unused: hash -> last use.
    cached: HashMap<u64, u64>,
    /// Last use -> hash, oldest first.
    lru: BTreeMap<u64, u64>,
    clock: u64,
    /// (hit blocks, prompt blocks) of recent admissions.
    recent: VecDeque<(usize, usize)>,
}

/// A request's share of the cache, from admission to release.
#[derive(Debug, Default)]
pub struct Sequence {
    prompt_blocks: Vec<u64>,
    output_blocks: usize,
    tokens_in_last: usize,
}

impl PagedKvCache {
    /// A cache of `total_blocks` blocks of `block_size` tokens.
    pub fn new(block_size: usize, total_blocks: usize) -> Self {
        Self {
            block_size: block_size.max(1),
            total_blocks,
            state: Mutex::new(CacheState::default()),
        }
    }

    /// Admits a request of `prompt` tokens, or `None` when the blocks it
    /// needs are not free (it waits for a release).
    pub fn admit(&self, prompt: &[u32]) -> Option<Sequence> {
        let hashes = block_hashes(prompt, self.block_size);
        let mut s = self.state.lock();
        let hits = hashes
            .iter()
            .take_while(|h| s.active.contains_key(h) || s.cached.contains_key(h))
            .count();
        let new_blocks = hashes
            .iter()
            .filter(|h| !s.active.contains_key(h) && !s.cached.contains_key(h))
            .count();
        let revived = hashes.iter().filter(|h| s.cached.contains_key(h)).count();
        // Free: not active, not cached. Evictable: cached and not about to be reused.
        let used = s.active.len() + s.output_blocks;
        let free = self.total_blocks.saturating_sub(used + s.cached.len());
        let evictable = s.cached.len() - revived;
        if new_blocks > free + evictable || used + new_blocks + revived > self.total_blocks {
            return None;
        }
        for h in &hashes {
            if let Some(at) = s.cached.remove(h) {
                s.lru.remove(&at);
            }
        }
        let mut to_evict = new_blocks.saturating_sub(free);
        while to_evict > 0 {
            let Some((_, h)) = s.lru.pop_first() else {
                break;
            };
            s.cached.remove(&h);
            to_evict -= 1;
        }
        for h in &hashes {
            *s.active.entry(*h).or_insert(0) += 1;
        }
        s.recent.push_back((hits, hashes.len()));
        if s.recent.len() > HIT_RATE_WINDOW {
            s.recent.pop_front();
        }
        Some(Sequence {
            prompt_blocks: hashes,
            output_blocks: 0,
            tokens_in_last: self.block_size,
        })
    }

    /// Accounts one generated token of `seq`: a new block when the last is full.
    /// False (and no block taken) when the cache is full.
    pub fn grow(&self, seq: &mut Sequence) -> bool {
        if seq.tokens_in_last < self.block_size {
            seq.tokens_in_last += 1;
            return true;
        }
        let mut s = self.state.lock();
        let used = s.active.len() + s.output_blocks;
        if used + s.cached.len() >= self.total_blocks {
            match s.lru.pop_first() {
                Some((_, h)) => {
                    s.cached.remove(&h);
                }
                None if used >= self.total_blocks => return false,
                None => {}
            }
        }
        s.output_blocks += 1;
        seq.output_blocks += 1;
        seq.tokens_in_last = 1;
        true
    }

    /// Releases `seq`: its output blocks are freed, its prompt blocks cached.
    pub fn release(&self, seq: Sequence) {
        let mut s = self.state.lock();
        s.output_blocks -= seq.output_blocks.min(s.output_blocks);
        for h in seq.prompt_blocks {
            let left = match s.active.get_mut(&h) {
                Some(n) => {
                    *n -= 1;
                    *n
                }
                None => continue,
            };
            if left == 0 {
                s.active.remove(&h);
                s.clock += 1;
                let at = s.clock;
                s.cached.insert(h, at);
                s.lru.insert(at, h);
            }
        }
    }

    /// The statistics now.
    pub fn stats(&self) -> KvStats {
        let s = self.state.lock();
        let (hits, blocks) = s
            .recent
            .iter()
            .fold((0, 0), |(h, b), (hh, bb)| (h + hh, b + bb));
        KvStats {
            active_blocks: (s.active.len() + s.output_blocks) as u64,
            total_blocks: self.total_blocks as u64,
            prefix_cache_hit_rate: if blocks == 0 {
                0.0
            } else {
                hits as f64 / blocks as f64
            },
        }
    }
}

/// The chained hashes of the full blocks of `tokens`.
fn block_hashes(tokens: &[u32], block_size: usize) -> Vec<u64> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    tokens
        .chunks_exact(block_size)
        .map(|block| {
            block.hash(&mut hasher);
            hasher.finish()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(shared: u32, own: u32, salt: u32) -> Vec<u32> {
        (0..shared)
            .chain((0..own).map(|i| 100_000 + salt * 1000 + i))
            .collect()
    }

    #[test]
    fn equal_prefixes_share_blocks_and_cached_blocks_are_reused() {
        let cache = PagedKvCache::new(4, 10);
        let a = cache.admit(&prompt(8, 4, 1)).unwrap(); // 3 blocks
        let b = cache.admit(&prompt(8, 4, 2)).unwrap(); // 2 shared + 1 own
        let s = cache.stats();
        assert_eq!(s.active_blocks, 4);
        assert!((s.prefix_cache_hit_rate - 2.0 / 6.0).abs() < 1e-9, "{s:?}");
        cache.release(a);
        cache.release(b);
        assert_eq!(cache.stats().active_blocks, 0);
        // Same prompt again: every block from the cache.
        let c = cache.admit(&prompt(8, 4, 1)).unwrap();
        assert_eq!(cache.stats().active_blocks, 3);
        assert!((cache.stats().prefix_cache_hit_rate - 5.0 / 9.0).abs() < 1e-9);
        cache.release(c);
    }

    #[test]
    fn a_full_cache_evicts_unused_blocks_then_refuses() {
        let cache = PagedKvCache::new(4, 4);
        let a = cache.admit(&prompt(0, 12, 1)).unwrap(); // 3 blocks
        assert!(cache.admit(&prompt(0, 8, 2)).is_none(), "2 more do not fit");
        cache.release(a); // 3 cached, evictable
        let mut b = cache.admit(&prompt(0, 8, 2)).unwrap(); // evicts 1 (free 1 + 1 evicted)
        assert_eq!(cache.stats().active_blocks, 2);
        // Output tokens: the last prompt block is full, so the first token takes a block.
        assert!(cache.grow(&mut b));
        assert_eq!(cache.stats().active_blocks, 3);
        for _ in 0..3 {
            assert!(cache.grow(&mut b));
        }
        assert!(cache.grow(&mut b), "evicts the last cached block");
        assert_eq!(cache.stats().active_blocks, 4);
        for _ in 0..3 {
            assert!(cache.grow(&mut b));
        }
        assert!(!cache.grow(&mut b), "nothing left to take");
        cache.release(b);
        assert_eq!(cache.stats().active_blocks, 0);
        assert_eq!(cache.stats().total_blocks, 4);
    }
}
