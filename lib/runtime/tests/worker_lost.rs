//! A worker that dies mid-stream (its whole async runtime stops at once, so
//! its NATS connection drops as a killed process's would): every stream it
//! carried ends for the caller with `WorkerLost` within the liveness
//! deadline, and the caller is left with no task and no reply route of those
//! requests; and a live worker that is silent for longer than that deadline
//! keeps its calls (its heartbeats).

use dynamo_runtime::request_plane::{CallError, Context, ResponseStream, TransportError};
use dynamo_runtime::{DistributedRuntime, RequestPlaneConfig, RuntimeConfig};
use dynamo_testing::NatsServer;
use futures::StreamExt;
use std::time::{Duration, Instant};

const LIVENESS: Duration = Duration::from_millis(1000);
const STREAMS: usize = 4;

fn config(url: &str) -> RuntimeConfig {
    RuntimeConfig {
        request_plane: RequestPlaneConfig::Nats {
            url: url.to_owned(),
            etcd_endpoints: None,
        },
        stream_liveness: Some(LIVENESS),
        ..Default::default()
    }
}

/// Numbers, one every 10 ms, for a long time.
fn endless(_: String, _ctx: Context) -> ResponseStream<u64> {
    Box::pin(futures::stream::unfold(0u64, |n| async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Some((Ok(n), n + 1))
    }))
}

#[test]
fn a_dead_workers_streams_end_and_leave_no_task_or_subscription() {
    let nats = NatsServer::start();
    let worker_rt = tokio::runtime::Runtime::new().unwrap();
    let _served = worker_rt.block_on(async {
        let drt = DistributedRuntime::from_config(config(&nats.url)).unwrap();
        let served = drt
            .namespace("ns")
            .component("w")
            .endpoint("count")
            .serve(|req: String, ctx: Context| async move { Ok(endless(req, ctx)) })
            .await
            .unwrap();
        (drt, served)
    });

    let caller_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    caller_rt.block_on(async {
        let drt = DistributedRuntime::from_config(config(&nats.url)).unwrap();
        let client = drt
            .namespace("ns")
            .component("w")
            .endpoint("count")
            .client::<String, u64>()
            .await
            .unwrap();
        client
            .wait_for_instances(Duration::from_secs(10))
            .await
            .unwrap();
        // One call first (it starts the connection's reply dispatcher, which
        // lives as long as the connection), dropped; settle; then count the
        // caller's tasks.
        let mut warm = client.round_robin("warm".to_owned()).await.unwrap();
        assert!(matches!(warm.next().await, Some(Ok(_))));
        drop(warm);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            drt.open_response_streams(),
            0,
            "the dropped call's route is gone"
        );
        let metrics = tokio::runtime::Handle::current().metrics();
        let baseline = metrics.num_alive_tasks();
        let mut streams = Vec::new();
        for _ in 0..STREAMS {
            let mut s = client.round_robin("go".to_owned()).await.unwrap();
            assert!(matches!(s.next().await, Some(Ok(_))));
            streams.push(s);
        }
        assert_eq!(
            drt.open_response_streams(),
            STREAMS,
            "one reply route per request"
        );
        assert_eq!(
            nats.request_inboxes(),
            0,
            "replies share one wildcard subscription"
        );

        // The worker dies: its runtime stops with every task and connection.
        let died = Instant::now();
        std::thread::spawn(move || worker_rt.shutdown_background())
            .join()
            .unwrap();
        // Each stream read by its own task, as the frontend reads them.
        let readers: Vec<_> = streams
            .into_iter()
            .map(|mut s| {
                tokio::spawn(async move {
                    loop {
                        match tokio::time::timeout(Duration::from_secs(10), s.next()).await {
                            Ok(Some(Ok(_))) => continue, // frames already on their way
                            Ok(other) => break (other, died.elapsed()),
                            Err(_) => panic!("a stream of the dead worker did not end within 10 s"),
                        }
                    }
                })
            })
            .collect();
        let mut ended_after = Duration::ZERO;
        for reader in readers {
            let (ended, after) = reader.await.unwrap();
            ended_after = ended_after.max(after);
            match ended {
                Some(Err(CallError::Transport {
                    source: TransportError::WorkerLost { silent },
                    ..
                })) => assert_eq!(silent, LIVENESS),
                other => panic!("expected WorkerLost, got {other:?}"),
            }
        }
        assert!(
            ended_after < LIVENESS + Duration::from_secs(5),
            "bounded by the liveness deadline: {ended_after:?}"
        );

        // Nothing of the four requests is left: no task, no reply route.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (tasks, routes) = (metrics.num_alive_tasks(), drt.open_response_streams());
            if tasks <= baseline && routes == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "left behind: {tasks} tasks (baseline {baseline}), {routes} reply routes"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("streams ended {ended_after:?} after the worker died; tasks back to {baseline}");
    });
}

/// The other side of the deadline: a live worker that is silent for longer
/// than it (before its first item, between two items, before a unary
/// answer) keeps its calls, because it sends heartbeats while it works.
#[test]
fn a_slow_live_worker_keeps_its_calls_by_its_heartbeats() {
    let nats = NatsServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let drt = DistributedRuntime::from_config(config(&nats.url)).unwrap();
        let silence = LIVENESS * 2 + LIVENESS / 2;
        let comp = drt.namespace("ns").component("slow");
        let _stream = comp
            .endpoint("stream")
            .serve(move |n: u64, _ctx: Context| async move {
                let items: ResponseStream<u64> =
                    Box::pin(futures::stream::unfold(0u64, move |i| async move {
                        if i == n {
                            return None;
                        }
                        tokio::time::sleep(silence).await;
                        Some((Ok(i), i + 1))
                    }));
                Ok(items)
            })
            .await
            .unwrap();
        let _unary = comp
            .endpoint("unary")
            .serve(move |x: u64, _ctx: Context| async move {
                tokio::time::sleep(silence).await;
                Ok(dynamo_runtime::request_plane::single(x + 1))
            })
            .await
            .unwrap();
        let stream = comp.endpoint("stream").client::<u64, u64>().await.unwrap();
        let unary = comp.endpoint("unary").client::<u64, u64>().await.unwrap();
        stream
            .wait_for_instances(Duration::from_secs(10))
            .await
            .unwrap();
        unary
            .wait_for_instances(Duration::from_secs(10))
            .await
            .unwrap();
        let (items, answer) = tokio::join!(
            async { stream.round_robin(2).await?.collect_all().await },
            async { unary.round_robin(41).await?.collect_all().await },
        );
        assert_eq!(items.unwrap(), vec![0, 1], "silent {silence:?} twice");
        assert_eq!(answer.unwrap(), vec![42], "silent {silence:?} once");
    });
}
