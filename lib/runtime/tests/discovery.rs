//! Discovery across runtimes over real servers started here: records and
//! instances announced over NATS alone, and kept in etcd beside NATS; what a
//! process that dies leaves behind, and what an outage of either server does
//! to the views (nothing, for as long as it lasts).

use dynamo_runtime::request_plane::{single, Client, Context, ServedEndpoint};
use dynamo_runtime::{DistributedRuntime, RecordWatch, RequestPlaneConfig, RuntimeConfig};
use dynamo_testing::{EtcdServer, NatsServer};
use std::time::{Duration, Instant};

fn runtime(url: &str, etcd: Option<&EtcdServer>) -> DistributedRuntime {
    DistributedRuntime::from_config(RuntimeConfig {
        request_plane: RequestPlaneConfig::Nats {
            url: url.to_owned(),
            etcd_endpoints: etcd.map(|e| vec![e.endpoint.clone()]),
        },
        ..Default::default()
    })
    .unwrap()
}

fn nats_runtime(url: &str) -> DistributedRuntime {
    runtime(url, None)
}

/// Waits (up to `within`) until `view` holds exactly `want`; panics saying what it held.
async fn until_listed(view: &RecordWatch, want: &[&[u8]], within: Duration) -> Duration {
    let start = Instant::now();
    let want: Vec<Vec<u8>> = want.iter().map(|w| w.to_vec()).collect();
    loop {
        let seen = view.version();
        let mut got = view.values();
        got.sort();
        if got == want {
            return start.elapsed();
        }
        let left = within.saturating_sub(start.elapsed());
        assert!(
            !left.is_zero(),
            "after {within:?} the view holds {got:?}, not {want:?}"
        );
        view.changed(seen, left).await;
    }
}

/// One runtime publishes, another lists; revoked, it goes; a process that
/// stops without withdrawing (it died) goes when its lease ends.
async fn records_live_and_die_with_their_process(url: &str, etcd: Option<&EtcdServer>) {
    let a = runtime(url, etcd);
    let b = runtime(url, etcd);
    let lease = a
        .register_record("models", "m.1 x", b"card".to_vec())
        .await
        .unwrap();
    let view = b.watch_records("models").await.unwrap();
    until_listed(&view, &[b"card"], Duration::from_secs(10)).await;
    until_listed(
        &a.watch_records("models").await.unwrap(),
        &[b"card"],
        Duration::from_secs(10),
    )
    .await;
    // The same key from two processes: both are listed.
    let other = b
        .register_record("models", "m.1 x", b"card2".to_vec())
        .await
        .unwrap();
    until_listed(&view, &[b"card", b"card2"], Duration::from_secs(10)).await;
    drop(other);
    lease.revoke().await;
    let gone = until_listed(&view, &[], Duration::from_secs(10)).await;
    eprintln!("revoked record gone from the other view in {gone:?}");

    let c = runtime(url, etcd);
    let lease = c
        .register_record("models", "dies", b"orphan".to_vec())
        .await
        .unwrap();
    until_listed(&view, &[b"orphan"], Duration::from_secs(10)).await;
    // Nothing withdraws it: the lease handle is leaked and the runtime goes.
    std::mem::forget(lease);
    let died = Instant::now();
    drop(c);
    let lease_ttl = if etcd.is_some() {
        dynamo_runtime::ETCD_LEASE_TTL
    } else {
        dynamo_runtime::RECORD_LEASE
    };
    until_listed(&view, &[], lease_ttl * 4).await;
    eprintln!(
        "records of a process that stopped gone in {:?} (lease {lease_ttl:?})",
        died.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_records_live_and_die_with_their_process() {
    let server = NatsServer::start();
    records_live_and_die_with_their_process(&server.url, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_records_live_and_die_with_their_process() {
    let nats = NatsServer::start();
    let etcd = EtcdServer::start();
    records_live_and_die_with_their_process(&nats.url, Some(&etcd)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_unreachable_is_an_error_naming_the_endpoints() {
    let nats = NatsServer::start();
    let port = dynamo_testing::free_port();
    let drt = DistributedRuntime::from_config(RuntimeConfig {
        request_plane: RequestPlaneConfig::Nats {
            url: nats.url.clone(),
            etcd_endpoints: Some(vec![format!("127.0.0.1:{port}")]),
        },
        ..Default::default()
    })
    .unwrap();
    let started = Instant::now();
    let e = drt
        .register_record("models", "m", b"x".to_vec())
        .await
        .unwrap_err();
    let text = format!(
        "{e}: {}",
        std::error::Error::source(&e)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded by the connect deadline"
    );
}

/// A worker serving `ns/echo/len` (a string's length) over NATS at `url`, a
/// caller's runtime, the served endpoint and the caller's client, once the
/// client sees the instance.
async fn length_service(
    url: &str,
) -> (
    DistributedRuntime,
    DistributedRuntime,
    ServedEndpoint,
    Client<String, usize>,
) {
    let worker = nats_runtime(url);
    let caller = nats_runtime(url);
    let ep = |drt: &DistributedRuntime| drt.namespace("ns").component("echo").endpoint("len");
    let served = ep(&worker)
        .serve(|text: String, _ctx: Context| async move { Ok(single(text.len())) })
        .await
        .unwrap();
    let client = ep(&caller).client::<String, usize>().await.unwrap();
    client
        .wait_for_instances(Duration::from_secs(10))
        .await
        .unwrap();
    (worker, caller, served, client)
}

/// A request larger than the server's max_payload is refused before it is
/// published, and the connection (and every call on it) goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_payload_limit_is_refused_and_the_connection_lives() {
    use dynamo_runtime::request_plane::CallError;
    let server = NatsServer::start();
    let (_worker, _caller, served, client) = length_service(&server.url).await;
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

/// The size limit is the current server's: after nats-server comes back
/// with a smaller `max_payload`, a request over the new limit is refused
/// before it is published (not sent to close the connection), and calls under
/// it go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payload_limit_follows_a_restarted_server() {
    use dynamo_runtime::request_plane::CallError;
    let mut nats = NatsServer::start();
    let (_worker, _caller, _served, client) = length_service(&nats.url).await;
    let call = |len: usize| {
        let client = client.clone();
        async move {
            client
                .round_robin("y".repeat(len))
                .await?
                .collect_all()
                .await
        }
    };
    // Under the default limit (1 MiB), 100 kB goes through.
    assert_eq!(call(100_000).await.unwrap(), vec![100_000]);
    let mut nats = tokio::task::spawn_blocking(move || {
        nats.kill();
        nats.start_again_with_max_payload(64 * 1024);
        nats
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while call(1).await.ok() != Some(vec![1]) {
        assert!(
            Instant::now() < deadline,
            "no call succeeded within 30 s of the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    match call(100_000).await {
        Err(CallError::RequestTooLarge { limit, .. }) => assert!(limit < 64 * 1024, "{limit}"),
        other => panic!("expected the new limit to refuse 100 kB: {other:?}"),
    }
    for len in [1, 60_000] {
        assert_eq!(call(len).await.unwrap(), vec![len], "the connection lives");
    }
    nats.kill();
}

/// A worker and a caller; the discovery server (nats-server, or etcd) is
/// killed for longer than a record lease and started again: the caller's
/// view keeps the worker all along, calls succeed again after the restart,
/// and an instance served after it shows up (the watch is back).
async fn a_restart_loses_no_registration(mut nats: NatsServer, mut etcd: Option<EtcdServer>) {
    let worker = runtime(&nats.url, etcd.as_ref());
    let caller = runtime(&nats.url, etcd.as_ref());
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
    let down = dynamo_runtime::RECORD_LEASE + Duration::from_secs(1);
    let restarted = Instant::now();
    let restarter = tokio::task::spawn_blocking(move || {
        match etcd.as_mut() {
            Some(e) => e.kill(),
            None => nats.kill(),
        }
        std::thread::sleep(down);
        match etcd.as_mut() {
            Some(e) => e.start_again(),
            None => nats.start_again(),
        }
        (nats, etcd)
    });
    while !restarter.is_finished() {
        assert_eq!(
            client.instance_ids().len(),
            1,
            "the instance left the caller's view during the outage ({:?} in)",
            restarted.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_nats, _etcd) = restarter.await.unwrap();
    let back = restarted.elapsed();
    let server = if _etcd.is_some() {
        "etcd"
    } else {
        "nats-server"
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while call().await != Some(vec!["HI".to_owned()]) {
        assert!(
            Instant::now() < deadline,
            "no call succeeded within 30 s of the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{server}: back {back:?} after it went down; calls succeed again {:?} after",
        restarted.elapsed()
    );
    let second = ep(&worker)
        .serve(|text: String, _ctx: Context| async move { Ok(single(text.to_lowercase())) })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.instance_ids().len() != 2 {
        assert!(
            Instant::now() < deadline,
            "an instance served after the restart is not seen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Stopping one leaves the other listed, and the caller follows.
    second.stop().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.instance_ids().len() != 1 {
        assert!(
            Instant::now() < deadline,
            "a stopped instance is still listed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_loses_no_registration() {
    a_restart_loses_no_registration(NatsServer::start(), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_restart_loses_no_registration() {
    a_restart_loses_no_registration(NatsServer::start(), Some(EtcdServer::start())).await;
}

/// Dropping a `ServedEndpoint` does not stop it: the instance stays listed
/// (past several record leases) and keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_serve_handle_keeps_the_instance_listed() {
    let server = NatsServer::start();
    let worker = nats_runtime(&server.url);
    let caller = nats_runtime(&server.url);
    let ep = |drt: &DistributedRuntime| drt.namespace("ns").component("echo").endpoint("kept");
    drop(
        ep(&worker)
            .serve(|text: String, _ctx: Context| async move { Ok(single(text.len())) })
            .await
            .unwrap(),
    );
    let client = ep(&caller).client::<String, usize>().await.unwrap();
    client
        .wait_for_instances(Duration::from_secs(10))
        .await
        .unwrap();
    tokio::time::sleep(dynamo_runtime::RECORD_LEASE * 2).await;
    assert_eq!(client.instance_ids().len(), 1);
    let got = client
        .round_robin("four".to_owned())
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(got, vec![4]);
}
