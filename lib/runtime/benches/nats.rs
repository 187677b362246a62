//! The NATS request plane on loopback, against raw async-nats in the same run:
//! p50/p99 latency of a small unary request (ours: a served endpoint with its
//! automatic metrics; raw: `Client::request` to an echoing subscriber), called
//! from the thread blocking on the runtime and from a task on a runtime
//! worker (where the frontend's HTTP handlers call from), and
//! responses per second for a stream of 1,000 small items (ours: a streamed
//! response; raw: a responder publishing 1,000 messages to the caller's inbox).
//!
//! Starts its own nats-server (JetStream on, free port); prints a note and
//! does nothing when nats-server is not installed.
//!
//! `cargo bench -p dynamo-runtime --bench nats`

use dynamo_runtime::request_plane::{from_iter, single, Context};
use dynamo_runtime::{DistributedRuntime, RequestPlaneConfig, RuntimeConfig};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

const STREAM_ITEMS: u32 = 1_000;

#[derive(Serialize, Deserialize, Clone)]
struct Small {
    id: u64,
    text: String,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Sorted round-trip times of `calls` unary calls, ours and raw interleaved
/// (so both see the same machine), after a tenth as many to warm up.
async fn unary_round_trips(
    ours_client: &dynamo_runtime::request_plane::Client<Small, Small>,
    nc: &async_nats::Client,
    request: &Small,
    payload: &bytes::Bytes,
    calls: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let ours_call = || async {
        let t = Instant::now();
        let _ = ours_client
            .round_robin(request.clone())
            .await
            .expect("call")
            .collect_all()
            .await
            .expect("reply");
        t.elapsed()
    };
    let raw_call = || async {
        let t = Instant::now();
        let _ = nc.request("raw.echo", payload.clone()).await.expect("raw");
        t.elapsed()
    };
    for _ in 0..calls / 10 {
        ours_call().await;
        raw_call().await;
    }
    let mut ours = Vec::with_capacity(calls);
    let mut raw = Vec::with_capacity(calls);
    for i in 0..calls {
        if i % 2 == 0 {
            ours.push(ours_call().await);
            raw.push(raw_call().await);
        } else {
            raw.push(raw_call().await);
            ours.push(ours_call().await);
        }
    }
    ours.sort();
    raw.sort();
    (ours, raw)
}

fn report_unary(caller: &str, calls: usize, ours: Vec<Duration>, raw: Vec<Duration>) {
    let (o50, o99, r50, r99) = (
        percentile(&ours, 0.5),
        percentile(&ours, 0.99),
        percentile(&raw, 0.5),
        percentile(&raw, 0.99),
    );
    println!(
        "nats unary round trip ({calls} calls, {caller}): ours p50 {:.0} us p99 {:.0} us; raw async-nats request p50 {:.0} us p99 {:.0} us; ratio p50 {:.2} p99 {:.2}",
        us(o50), us(o99), us(r50), us(r99), us(o50) / us(r50), us(o99) / us(r99)
    );
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let (calls, streams) = if bench_mode { (3_000, 20) } else { (20, 2) };
    let Some(server) = dynamo_testing::NatsServer::try_start() else {
        println!("nats bench skipped: nats-server is not installed (apt-get install nats-server)");
        return;
    };
    let url = server.url.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let drt = DistributedRuntime::from_config(RuntimeConfig {
            request_plane: RequestPlaneConfig::Nats {
                url: url.clone(),
                etcd_endpoints: None,
            },
            ..Default::default()
        })
        .expect("runtime");
        let comp = drt.namespace("bench").component("nats");
        let unary = comp.endpoint("unary");
        unary
            .serve(|r: Small, _ctx: Context| async move { Ok(single(r)) })
            .await
            .expect("serve");
        let stream = comp.endpoint("stream");
        stream
            .serve(|n: u32, _ctx: Context| async move { Ok(from_iter((0..n).map(|i| Small { id: u64::from(i), text: "tok".to_owned() }))) })
            .await
            .expect("serve");
        let unary_client = unary.client::<Small, Small>().await.expect("client");
        let stream_client = stream.client::<u32, Small>().await.expect("client");
        unary_client.wait_for_instances(Duration::from_secs(10)).await.expect("instance");
        stream_client.wait_for_instances(Duration::from_secs(10)).await.expect("instance");

        // The raw peers.
        let nc = async_nats::connect(&url).await.expect("connect");
        let mut echo = nc.subscribe("raw.echo").await.expect("subscribe");
        let mut burst = nc.subscribe("raw.burst").await.expect("subscribe");
        let responder = nc.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(m) = echo.next() => {
                        if let Some(reply) = m.reply { let _ = responder.publish(reply, m.payload).await; }
                    }
                    Some(m) = burst.next() => {
                        if let Some(reply) = m.reply {
                            for i in 0..STREAM_ITEMS {
                                let body = serde_json::to_vec(&Small { id: u64::from(i), text: "tok".to_owned() }).unwrap_or_default();
                                let _ = responder.publish(reply.clone(), body.into()).await;
                            }
                        }
                    }
                    else => break,
                }
            }
        });
        let request = Small { id: 7, text: "hello".to_owned() };
        let payload: bytes::Bytes = serde_json::to_vec(&request).unwrap_or_default().into();

        // From the thread that blocks on the runtime, and from a task on one
        // of its workers (where the frontend's HTTP handlers make their calls).
        let (o, r) = unary_round_trips(&unary_client, &nc, &request, &payload, calls).await;
        report_unary("from block_on", calls, o, r);
        let (c, n, req, p) = (unary_client.clone(), nc.clone(), request.clone(), payload.clone());
        let (o, r) = tokio::spawn(async move { unary_round_trips(&c, &n, &req, &p, calls).await })
            .await
            .expect("the bench task");
        report_unary("from a runtime worker", calls, o, r);

        let mut ours_time = Duration::ZERO;
        let mut raw_time = Duration::ZERO;
        for _ in 0..streams {
            let t = Instant::now();
            let items = stream_client.round_robin(STREAM_ITEMS).await.expect("call").collect_all().await.expect("items");
            assert_eq!(items.len() as u32, STREAM_ITEMS);
            ours_time += t.elapsed();

            let t = Instant::now();
            let inbox = nc.new_inbox();
            let mut sub = nc.subscribe(inbox.clone()).await.expect("subscribe");
            nc.publish_with_reply("raw.burst", inbox, bytes::Bytes::new()).await.expect("publish");
            for _ in 0..STREAM_ITEMS {
                let m = sub.next().await.expect("item");
                std::hint::black_box(serde_json::from_slice::<Small>(&m.payload).ok());
            }
            raw_time += t.elapsed();
        }
        let total = f64::from(STREAM_ITEMS) * streams as f64;
        let (ours_rate, raw_rate) = (total / ours_time.as_secs_f64(), total / raw_time.as_secs_f64());
        println!(
            "nats stream of {STREAM_ITEMS} items ({streams} streams): ours {ours_rate:.0} items/s; raw async-nats publish {raw_rate:.0} items/s; ratio {:.2}",
            ours_rate / raw_rate
        );
    });
}
