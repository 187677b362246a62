//! Discovery records across two runtimes over a real nats-server started here.

use dynamo_runtime::{DistributedRuntime, RequestPlaneConfig, RuntimeConfig};
use dynamo_testing::NatsServer;

fn nats_runtime(url: &str) -> DistributedRuntime {
    DistributedRuntime::from_config(RuntimeConfig {
        request_plane: RequestPlaneConfig::Nats {
            url: url.to_owned(),
        },
        ..Default::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_published_by_one_runtime_is_listed_by_another_until_revoked() {
    let server = NatsServer::start();
    let url = server.url.clone();
    let a = nats_runtime(&url);
    let b = nats_runtime(&url);
    let lease = a
        .register_record("models", "m.1 x", b"card".to_vec())
        .await
        .unwrap();
    assert_eq!(
        b.list_records("models").await.unwrap(),
        vec![b"card".to_vec()]
    );
    assert_eq!(
        a.list_records("models").await.unwrap(),
        vec![b"card".to_vec()]
    );
    lease.revoke().await;
    assert!(b.list_records("models").await.unwrap().is_empty());
}

/// A request larger than the server's max_payload is refused before it is
/// published, and the connection (and every call on it) goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_payload_limit_is_refused_and_the_connection_lives() {
    use dynamo_runtime::request_plane::{single, CallError, Context};
    let server = NatsServer::start();
    let worker = nats_runtime(&server.url);
    let caller = nats_runtime(&server.url);
    let ep = |drt: &DistributedRuntime| drt.namespace("ns").component("echo").endpoint("len");
    let served = ep(&worker)
        .serve(|text: String, _ctx: Context| async move { Ok(single(text.len())) })
        .await
        .unwrap();
    let client = ep(&caller).client::<String, usize>().await.unwrap();
    client
        .wait_for_instances(std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let err = client.round_robin("x".repeat(2_000_000)).await.unwrap_err();
    match &err {
        CallError::RequestTooLarge { bytes, limit, .. } => {
            assert!(*bytes > 2_000_000 && *limit < 1_048_576, "{err}")
        }
        other => panic!("{other}"),
    }
    // The same connection still carries calls, one just under the limit too.
    for len in [1, 900_000] {
        let got = client
            .round_robin("y".repeat(len))
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap();
        assert_eq!(got, vec![len]);
    }
    served.stop().await;
}

/// nats-server crashes and comes back (its in-memory instance bucket lost):
/// the worker lists itself again as soon as it has reconnected, and calls
/// succeed again, without any process restarting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_loses_no_registration_for_longer_than_the_reconnect() {
    use dynamo_runtime::request_plane::{single, Context};
    use std::time::{Duration, Instant};
    let mut server = NatsServer::start();
    let url = server.url.clone();
    let worker = nats_runtime(&server.url);
    let caller = nats_runtime(&server.url);
    let ep = |drt: &DistributedRuntime| drt.namespace("ns").component("echo").endpoint("up");
    let served = ep(&worker)
        .serve(|text: String, _ctx: Context| async move { Ok(single(text.to_uppercase())) })
        .await
        .unwrap();
    let client = ep(&caller).client::<String, String>().await.unwrap();
    client
        .wait_for_instances(Duration::from_secs(10))
        .await
        .unwrap();
    let call = || async {
        client
            .round_robin("hi".to_owned())
            .await
            .ok()?
            .collect_all()
            .await
            .ok()
    };
    assert_eq!(call().await, Some(vec!["HI".to_owned()]));
    let restarted = Instant::now();
    let _server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    // Bounded: the reconnect, one heartbeat, one refresh of the caller's list.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if call().await == Some(vec!["HI".to_owned()]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no call succeeded within 30 s of the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "calls succeed again {:?} after the restart",
        restarted.elapsed()
    );
    // The instance bucket, lost with the server's memory, holds the worker
    // again: it re-created it (nothing here creates it; a fresh process would).
    let nats = async_nats::connect(url.as_str()).await.unwrap();
    let js = async_nats::jetstream::new(nats);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = match js.get_key_value("dynamo_instances").await {
            Ok(kv) => {
                use futures::StreamExt;
                match kv.keys().await {
                    Ok(keys) => keys.filter_map(|k| async move { k.ok() }).count().await,
                    Err(_) => 0,
                }
            }
            Err(_) => 0,
        };
        if listed == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker is not listed again within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "the worker is listed again {:?} after the restart",
        restarted.elapsed()
    );
    served.stop().await;
}
