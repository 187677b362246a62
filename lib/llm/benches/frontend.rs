//! Throughput through the frontend with a zero-delay mock engine, the
//! frontend's LLM metrics on and off in the same run (the per-token cost of
//! the metrics is `benches/token_metrics.rs`).
//!
//! Two frontends share one process and one zero-delay worker, one with the
//! metrics and one without; rounds of streamed requests alternate between
//! them and the median of the per-round ratios is reported, so machine drift
//! cancels out.
//!
//! `cargo bench -p dynamo-llm --bench frontend`

use dynamo_llm::http::{Frontend, FrontendConfig};
use dynamo_llm::load::{run, LoadConfig};
use dynamo_llm::mocker::MockerConfig;
use dynamo_llm::registry::ModelRegistry;
use dynamo_runtime::{DistributedRuntime, RuntimeConfig};
use std::time::Duration;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let (rounds, requests, tokens) = if bench_mode { (30, 400, 64) } else { (2, 8, 8) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let drt = DistributedRuntime::from_config(RuntimeConfig::default()).expect("runtime");
        let registry = ModelRegistry::new(drt.clone());
        let zero = MockerConfig { ttft: Duration::ZERO, itl: Duration::ZERO };
        let _worker = dynamo_llm::start_mock_worker(&drt, &registry, "mock-model", zero).await.expect("worker");
        let mut urls = Vec::new();
        for metrics_enabled in [true, false] {
            let fe = Frontend::new(drt.clone(), registry.clone(), FrontendConfig { metrics_enabled, ..Default::default() })
                .expect("frontend");
            let addr = fe.serve("127.0.0.1:0".parse().expect("addr")).await.expect("serve");
            urls.push(format!("http://{addr}"));
        }
        let load = |url: &str| LoadConfig {
            url: url.to_owned(),
            model: "mock-model".to_owned(),
            requests,
            concurrency: 8,
            max_tokens: tokens,
            stream: true,
            progress: false,
        };
        let _ = run(load(&urls[0])).await;
        let _ = run(load(&urls[1])).await;
        let (mut on_rps, mut off_rps, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            let mut rps = [0.0; 2];
            for i in order {
                let report = run(load(&urls[i])).await.expect("load");
                assert_eq!(report.failed, 0);
                rps[i] = report.samples.len() as f64 / report.elapsed.as_secs_f64();
            }
            on_rps.push(rps[0]);
            off_rps.push(rps[1]);
            ratios.push(rps[1] / rps[0]);
        }
        let (on, off) = (median(&mut on_rps), median(&mut off_rps));
        println!(
            "frontend, zero-delay mock, {tokens}-token streams, concurrency 8 ({rounds} paired rounds of {requests}): \
             metrics on {on:.0} req/s ({:.0} tokens/s), off {off:.0} req/s ({:.0} tokens/s); \
             time with metrics / without {:.3} (median of paired rounds)",
            on * f64::from(tokens),
            off * f64::from(tokens),
            median(&mut ratios)
        );
    });
}
