//! Per-token cost of the frontend's LLM metrics: one streamed request's metric
//! work (start, the prompt length, every token, the end) divided by its
//! tokens, against the naive peer measured in the same run: `Instant::now()`
//! and one shared `prometheus::Histogram::observe` per token, the same
//! request-level observations, and label lookups for every child.
//!
//! `cargo bench -p dynamo-llm --bench token_metrics`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dynamo_llm::metrics::{FrontendMetrics, ITL_BUCKETS};
use dynamo_runtime::prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};
use dynamo_runtime::{DistributedRuntime, RuntimeConfig};
use std::hint::black_box;
use std::time::Instant;

/// The straightforward implementation with the `prometheus` crate's vecs.
struct Naive {
    requests: IntCounterVec,
    inflight: IntGaugeVec,
    ttft: HistogramVec,
    itl: HistogramVec,
    isl: HistogramVec,
    osl: HistogramVec,
    duration: HistogramVec,
}

impl Naive {
    fn new() -> Self {
        let h = |name: &str| {
            HistogramVec::new(
                HistogramOpts::new(name, "h").buckets(ITL_BUCKETS.to_vec()),
                &["model"],
            )
            .expect("histogram")
        };
        Naive {
            requests: IntCounterVec::new(
                Opts::new("r", "r"),
                &["model", "endpoint", "request_type", "status"],
            )
            .expect("counter"),
            inflight: IntGaugeVec::new(Opts::new("i", "i"), &["model"]).expect("gauge"),
            ttft: h("ttft"),
            itl: h("itl"),
            isl: h("isl"),
            osl: h("osl"),
            duration: h("duration"),
        }
    }

    fn request(&self, tokens: usize) {
        let start = Instant::now();
        let m = ["mock-model"];
        self.inflight.with_label_values(&m).inc();
        self.isl.with_label_values(&m).observe(100.0);
        let itl = self.itl.with_label_values(&m);
        let mut last: Option<Instant> = None;
        for _ in 0..tokens {
            let now = Instant::now();
            match last {
                None => self
                    .ttft
                    .with_label_values(&m)
                    .observe(start.elapsed().as_secs_f64()),
                Some(prev) => itl.observe((now - prev).as_secs_f64()),
            }
            last = Some(now);
        }
        self.inflight.with_label_values(&m).dec();
        self.duration
            .with_label_values(&m)
            .observe(start.elapsed().as_secs_f64());
        self.osl.with_label_values(&m).observe(tokens as f64);
        self.requests
            .with_label_values(&["mock-model", "chat_completions", "stream", "success"])
            .inc();
    }
}

fn per_token(c: &mut Criterion) {
    let drt = DistributedRuntime::from_config(RuntimeConfig::default()).expect("runtime");
    let metrics = FrontendMetrics::new(drt.metrics()).expect("metrics");
    let naive = Naive::new();
    let mut group = c.benchmark_group("frontend_metrics_per_request");
    for tokens in [64usize, 512] {
        group.throughput(Throughput::Elements(tokens as u64));
        group.bench_with_input(BenchmarkId::new("dynamo", tokens), &tokens, |b, &n| {
            b.iter(|| {
                let mut t =
                    metrics.start("mock-model", "chat_completions", "stream", Instant::now());
                t.input_tokens(100);
                for _ in 0..n {
                    t.tokens_sent(black_box(1));
                }
                t.succeed();
            })
        });
        group.bench_with_input(
            BenchmarkId::new("naive_prometheus", tokens),
            &tokens,
            |b, &n| b.iter(|| naive.request(black_box(n))),
        );
    }
    group.finish();
}

criterion_group!(benches, per_token);
criterion_main!(benches);
