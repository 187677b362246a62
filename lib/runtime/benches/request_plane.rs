//! In-process round trip of a small unary request, with the automatic
//! endpoint metrics and without (the switch exists for this bench only).
//!
//! The metrics cost a few hundred nanoseconds on a round trip of tens of
//! microseconds, less than the drift between two separately timed runs on a
//! shared machine. So this bench times them paired: rounds of calls
//! alternate between the two endpoints, and it reports the median of the
//! per-round ratios. It runs on a current-thread tokio runtime so that
//! cross-thread wake-ups do not add noise.
//!
//! `cargo bench -p dynamo-runtime --bench request_plane`
//! (under `cargo test --benches` it runs a few calls as a smoke test).

use dynamo_runtime::request_plane::{single, Client, Context, ServeOptions};
use dynamo_runtime::{DistributedRuntime, RuntimeConfig};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

#[derive(Serialize, Deserialize, Clone)]
struct Small {
    id: u64,
    text: String,
}

async fn time_calls(client: &Client<Small, Small>, calls: u32) -> Duration {
    let request = Small {
        id: 7,
        text: "hello".to_owned(),
    };
    let start = Instant::now();
    for _ in 0..calls {
        let reply = client
            .round_robin(request.clone())
            .await
            .expect("call")
            .collect_all()
            .await
            .expect("reply");
        std::hint::black_box(reply);
    }
    start.elapsed()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let (rounds, calls) = if bench_mode { (40, 2_000) } else { (2, 20) };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let drt = DistributedRuntime::from_config(RuntimeConfig::default()).expect("runtime");
        let comp = drt.namespace("bench").component("echo");
        let mut clients = Vec::new();
        for (name, automatic_metrics) in [("with", true), ("without", false)] {
            let ep = comp.endpoint(name);
            ep.serve_with_options(
                |r: Small, _ctx: Context| async move { Ok(single(r)) },
                ServeOptions {
                    automatic_metrics,
                    ..Default::default()
                },
            )
            .await
            .expect("serve");
            clients.push(ep.client::<Small, Small>().await.expect("client"));
        }
        let (with, without) = (&clients[0], &clients[1]);
        time_calls(with, calls).await;
        time_calls(without, calls).await;
        let (mut ratios, mut with_us, mut without_us) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            // Alternate which goes first, so drift within a round cancels out.
            let (w, wo) = if round % 2 == 0 {
                let w = time_calls(with, calls).await;
                (w, time_calls(without, calls).await)
            } else {
                let wo = time_calls(without, calls).await;
                (time_calls(with, calls).await, wo)
            };
            with_us.push(w.as_secs_f64() * 1e6 / f64::from(calls));
            without_us.push(wo.as_secs_f64() * 1e6 / f64::from(calls));
            ratios.push(w.as_secs_f64() / wo.as_secs_f64());
        }
        println!(
            "inprocess unary round trip ({rounds} paired rounds of {calls} calls): \
             with automatic metrics {:.2} us, without {:.2} us, ratio {:.3} (median of paired rounds)",
            median(&mut with_us),
            median(&mut without_us),
            median(&mut ratios)
        );
    });
}
