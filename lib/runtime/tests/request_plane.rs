//! The automatic per-endpoint metrics over the in-process request plane,
//! checked exactly after known traffic, with a real parser.

mod support;

use dynamo_runtime::prometheus_names::{labels, work_handler as wh};
use dynamo_runtime::request_plane::{from_iter, single, CallError, Context, ResponseStream};
use dynamo_runtime::{DistributedRuntime, Endpoint};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use support::{parse, runtime, warnings_during, Parsed};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Req {
    n: u32,
    mode: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Token {
    i: u32,
}

fn req(n: u32, mode: &str) -> Req {
    Req {
        n,
        mode: mode.to_owned(),
    }
}

fn json_len<T: Serialize>(v: &T) -> f64 {
    serde_json::to_vec(v).unwrap().len() as f64
}

/// A handler whose behaviour the request chooses.
async fn handler(
    r: Req,
    ctx: Context,
) -> Result<ResponseStream<Token>, dynamo_runtime::request_plane::HandlerError> {
    match r.mode.as_str() {
        "ok" => Ok(from_iter((0..r.n).map(|i| Token { i }))),
        "fail_at_start" => Err("engine refused".into()),
        "panic_at_start" => panic!("handler bug at start"),
        "fail_mid_stream" => Ok(Box::pin(futures::stream::iter((0..r.n).map(|i| {
            if i == 2 {
                Err("engine died".into())
            } else {
                Ok(Token { i })
            }
        })))),
        "panic_mid_stream" => Ok(Box::pin(futures::stream::iter(0..r.n).map(|i| {
            if i == 2 {
                panic!("handler bug mid-stream");
            }
            Ok(Token { i })
        }))),
        "endless" => Ok(Box::pin(futures::stream::unfold(0u32, move |i| {
            let ctx = ctx.clone();
            async move {
                if ctx.is_cancelled() {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                Some((Ok(Token { i }), i + 1))
            }
        }))),
        _ => Ok(single(Token { i: 0 })),
    }
}

fn endpoint(drt: &DistributedRuntime) -> Endpoint {
    drt.namespace("ns").component("worker").endpoint("generate")
}

fn ep_labels() -> Vec<(&'static str, &'static str)> {
    vec![
        (labels::NAMESPACE, "ns"),
        (labels::COMPONENT, "worker"),
        (labels::ENDPOINT, "generate"),
    ]
}

fn scrape(drt: &DistributedRuntime) -> Parsed {
    parse(&drt.metrics().prometheus_metrics_fmt().unwrap())
}

fn value(p: &Parsed, name: &str) -> f64 {
    p.value(name, &ep_labels())
        .unwrap_or_else(|| panic!("{name} missing"))
}

fn errors(p: &Parsed, error_type: &str) -> f64 {
    let mut l = ep_labels();
    l.push((labels::ERROR_TYPE, error_type));
    p.value(wh::ERRORS_TOTAL, &l)
        .unwrap_or_else(|| panic!("errors{{{error_type}}} missing"))
}

/// Waits until no request is in flight, and returns the scrape.
async fn settled(drt: &DistributedRuntime, requests: f64) -> Parsed {
    for _ in 0..400 {
        let p = scrape(drt);
        let count = p
            .value(
                &format!("{}_count", wh::REQUEST_DURATION_SECONDS),
                &ep_labels(),
            )
            .unwrap_or(0.0);
        if value(&p, wh::CONCURRENT_REQUESTS) == 0.0 && count >= requests {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("requests did not settle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn successful_traffic_is_counted_exactly() {
    let drt = runtime();
    let ep = endpoint(&drt);
    let served = ep.serve(handler).await.unwrap();
    let client = ep.client::<Req, Token>().await.unwrap();
    let mut req_bytes = 0.0;
    let mut resp_bytes = 0.0;
    for n in [1u32, 3, 10, 0, 7] {
        let r = req(n, "ok");
        req_bytes += json_len(&r);
        let items = client
            .round_robin(r)
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap();
        assert_eq!(items, (0..n).map(|i| Token { i }).collect::<Vec<_>>());
        resp_bytes += items.iter().map(json_len).sum::<f64>();
    }
    let p = settled(&drt, 5.0).await;
    assert_eq!(value(&p, wh::REQUESTS_TOTAL), 5.0);
    assert_eq!(value(&p, wh::REQUEST_BYTES_TOTAL), req_bytes);
    assert_eq!(value(&p, wh::RESPONSE_BYTES_TOTAL), resp_bytes);
    assert_eq!(
        value(&p, &format!("{}_count", wh::REQUEST_DURATION_SECONDS)),
        5.0
    );
    assert_eq!(value(&p, wh::CONCURRENT_REQUESTS), 0.0);
    for t in wh::error_type::ALL {
        assert_eq!(errors(&p, t), 0.0, "{t}");
    }
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted_once_by_type_and_the_server_keeps_serving() {
    let drt = runtime();
    let ep = endpoint(&drt);
    let _served = ep.serve(handler).await.unwrap();
    let client = ep.client::<Req, Token>().await.unwrap();
    let cases = [
        ("fail_at_start", wh::error_type::HANDLER, 0usize),
        ("fail_mid_stream", wh::error_type::HANDLER, 2),
        ("panic_at_start", wh::error_type::PANIC, 0),
        ("panic_mid_stream", wh::error_type::PANIC, 2),
    ];
    for (mode, error_type, good_items) in cases {
        let mut stream = client.round_robin(req(5, mode)).await.unwrap();
        let mut got = 0;
        let err = loop {
            match stream.next().await {
                Some(Ok(_)) => got += 1,
                Some(Err(e)) => break e,
                None => panic!("{mode}: stream ended without an error"),
            }
        };
        assert_eq!(got, good_items, "{mode}");
        match err {
            CallError::Remote { error_type: t, .. } => assert_eq!(t, error_type, "{mode}"),
            other => panic!("{mode}: {other:?}"),
        }
        assert!(
            stream.next().await.is_none(),
            "{mode}: nothing after the error"
        );
    }
    // Still serving.
    let ok = client
        .round_robin(req(2, "ok"))
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(ok.len(), 2);
    let p = settled(&drt, 5.0).await;
    assert_eq!(value(&p, wh::REQUESTS_TOTAL), 5.0);
    assert_eq!(errors(&p, wh::error_type::HANDLER), 2.0);
    assert_eq!(errors(&p, wh::error_type::PANIC), 2.0);
    assert_eq!(errors(&p, wh::error_type::CANCELLED), 0.0);
    assert_eq!(
        value(&p, &format!("{}_count", wh::REQUEST_DURATION_SECONDS)),
        5.0
    );
    assert_eq!(value(&p, wh::CONCURRENT_REQUESTS), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_cancel_mid_stream_is_counted_once_and_stops_the_handler() {
    let drt = runtime();
    let ep = endpoint(&drt);
    let _served = ep.serve(handler).await.unwrap();
    let client = ep.client::<Req, Token>().await.unwrap();
    let mut stream = client.round_robin(req(0, "endless")).await.unwrap();
    for _ in 0..3 {
        stream.next().await.unwrap().unwrap();
    }
    let in_flight = scrape(&drt);
    assert_eq!(value(&in_flight, wh::CONCURRENT_REQUESTS), 1.0);
    drop(stream);
    let p = settled(&drt, 1.0).await;
    assert_eq!(value(&p, wh::REQUESTS_TOTAL), 1.0);
    assert_eq!(errors(&p, wh::error_type::CANCELLED), 1.0);
    assert_eq!(
        value(&p, &format!("{}_count", wh::REQUEST_DURATION_SECONDS)),
        1.0
    );
    let sent = value(&p, wh::RESPONSE_BYTES_TOTAL);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let later = scrape(&drt);
    assert_eq!(
        value(&later, wh::RESPONSE_BYTES_TOTAL),
        sent,
        "the handler stopped producing"
    );
    assert_eq!(
        value(&later, &format!("{}_count", wh::REQUEST_DURATION_SECONDS)),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_payloads_are_counted_and_the_server_stays_up() {
    let drt = runtime();
    let ep = endpoint(&drt);
    let _served = ep.serve(handler).await.unwrap();
    // A client whose request type is not the endpoint's.
    let wrong = ep.client::<Vec<u8>, Token>().await.unwrap();
    for junk in [vec![1u8, 2, 3], vec![]] {
        match wrong.round_robin(junk).await.unwrap().collect_all().await {
            Err(CallError::Remote { error_type, .. }) => {
                assert_eq!(error_type, wh::error_type::INVALID_REQUEST)
            }
            other => panic!("{other:?}"),
        }
    }
    let good = ep.client::<Req, Token>().await.unwrap();
    assert_eq!(
        good.round_robin(req(1, "ok"))
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap()
            .len(),
        1
    );
    let text = drt.metrics().prometheus_metrics_fmt().unwrap();
    support::promtool_check(&text).assert_clean(&text);
    let p = settled(&drt, 3.0).await;
    assert_eq!(value(&p, wh::REQUESTS_TOTAL), 3.0);
    assert_eq!(errors(&p, wh::error_type::INVALID_REQUEST), 2.0);
    // A response type the client cannot read is the client's error.
    let misread = ep.client::<Req, String>().await.unwrap();
    match misread
        .round_robin(req(1, "ok"))
        .await
        .unwrap()
        .collect_all()
        .await
    {
        Err(CallError::ResponseDecoding { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_health_and_instances() {
    let drt = runtime();
    let ep = endpoint(&drt);
    let client = ep.client::<Req, Token>().await.unwrap();
    match client.round_robin(req(1, "ok")).await {
        Err(CallError::NoInstances { endpoint }) => assert_eq!(endpoint, "ns/worker/generate"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert!(matches!(
        client.wait_for_instances(Duration::from_millis(50)).await,
        Err(CallError::Timeout { .. })
    ));
    assert!(drt.health().endpoints.is_empty());
    let a = ep.serve(handler).await.unwrap();
    let b = ep.serve(handler).await.unwrap();
    let ids = client
        .wait_for_instances(Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    let health = drt.health();
    assert_eq!(
        health.endpoints.get("ns/worker/generate"),
        Some(&dynamo_runtime::HealthStatus::Ready)
    );
    let mut seen = Vec::new();
    for _ in 0..4 {
        let s = client.round_robin(req(1, "ok")).await.unwrap();
        seen.push(s.instance());
        s.collect_all().await.unwrap();
    }
    assert_eq!(seen[0], seen[2]);
    assert_eq!(seen[1], seen[3]);
    assert_ne!(seen[0], seen[1], "round-robin alternates");
    let direct = client.direct(req(1, "ok"), b.instance_id()).await.unwrap();
    assert_eq!(direct.instance(), b.instance_id());
    direct.collect_all().await.unwrap();
    for _ in 0..10 {
        let s = client.random(req(1, "ok")).await.unwrap();
        assert!(ids.contains(&s.instance()));
        s.collect_all().await.unwrap();
    }
    let a_id = a.instance_id();
    a.stop().await;
    for _ in 0..4 {
        let s = client.round_robin(req(1, "ok")).await.unwrap();
        assert_eq!(s.instance(), b.instance_id());
        s.collect_all().await.unwrap();
    }
    assert!(matches!(
        client.direct(req(1, "ok"), a_id).await,
        Err(CallError::InstanceNotFound { .. })
    ));
    b.stop().await;
    assert!(drt.health().endpoints.is_empty());
    let p = settled(&drt, 19.0).await;
    assert_eq!(
        value(&p, wh::REQUESTS_TOTAL),
        19.0,
        "both instances count into one series per process"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_a_badly_named_endpoint_is_an_error() {
    let drt = runtime();
    let ep = drt.namespace("ns").component("").endpoint("e");
    let err = ep.serve(handler).await.expect_err("refused");
    assert!(err.to_string().contains("component"), "{err}");
    assert!(ep.client::<Req, Token>().await.is_err());
}

/// The developer guide creates `requests_total` on an endpoint that also
/// serves (Rust: a float counter; Python: an integer one): it is the
/// runtime's own series, in either order, with a warning.
#[tokio::test]
async fn a_user_metric_that_is_an_automatic_one_is_the_same_series_in_either_order() {
    for (user_first, int) in [(true, false), (true, true), (false, false), (false, true)] {
        let case = format!("user first: {user_first}, integer: {int}");
        let drt = runtime();
        let ep = endpoint(&drt);
        let create = || -> Box<dyn Fn()> {
            let scope = ep.metrics();
            if int {
                let c = scope
                    .create_intcounter("requests_total", "Total requests", &[])
                    .unwrap();
                Box::new(move || c.inc())
            } else {
                let c = scope
                    .create_counter("requests_total", "Total requests", &[])
                    .unwrap();
                Box::new(move || c.inc())
            }
        };
        let ((served, user_inc), logs) = warnings_during(|| {
            let user = user_first.then(&create);
            let served = futures::executor::block_on(ep.serve(handler)).unwrap();
            (served, user.unwrap_or_else(&create))
        });
        assert_eq!(
            logs.matches("the runtime already counts this metric")
                .count(),
            1,
            "{case}: {logs}"
        );
        let client = ep.client::<Req, Token>().await.unwrap();
        for _ in 0..2 {
            client
                .round_robin(req(1, "ok"))
                .await
                .unwrap()
                .collect_all()
                .await
                .unwrap();
        }
        user_inc();
        let p = settled(&drt, 2.0).await;
        assert_eq!(p.samples_named(wh::REQUESTS_TOTAL).len(), 1, "{case}");
        assert_eq!(value(&p, wh::REQUESTS_TOTAL), 3.0, "{case}");
        let text = drt.metrics().prometheus_metrics_fmt().unwrap();
        let first_help = if user_first {
            "Total requests"
        } else {
            "Total number of requests processed by component endpoint"
        };
        assert!(
            text.contains(&format!("# HELP {} {first_help}\n", wh::REQUESTS_TOTAL)),
            "{case}: {text}"
        );
        served.stop().await;
    }
}

/// A canary through the handler drives readiness: `/health` says notready
/// while it fails or hangs, ready again once it passes; canaries are not
/// counted as requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_follow_a_canary_through_the_handler() {
    use dynamo_runtime::request_plane::{HealthCheck, ServeOptions};
    use dynamo_runtime::HealthStatus;
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::Arc;
    const OK: u8 = 0;
    const FAIL: u8 = 1;
    const HANG: u8 = 2;
    let drt = runtime();
    let ep = endpoint(&drt);
    let mode = Arc::new(AtomicU8::new(OK));
    let m = mode.clone();
    let options = ServeOptions {
        health_check: Some(
            HealthCheck::new(serde_json::json!({"n": 1, "mode": "canary"}))
                .every(Duration::from_millis(50))
                .timeout(Duration::from_millis(300)),
        ),
        ..Default::default()
    };
    let served = ep
        .serve_with_options(
            move |r: Req, _ctx: Context| {
                let mode = m.load(Ordering::Relaxed);
                async move {
                    match mode {
                        FAIL => Err("the engine lost its GPU".into()),
                        HANG => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            Ok(single(Token { i: 0 }))
                        }
                        _ => Ok(from_iter((0..r.n).map(|i| Token { i }))),
                    }
                }
            },
            options,
        )
        .await
        .unwrap();
    let status_becomes = |want: HealthStatus| {
        let drt = drt.clone();
        async move {
            for _ in 0..200 {
                if drt.health().status == want {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("health never became {want:?}: {:?}", drt.health());
        }
    };
    status_becomes(HealthStatus::Ready).await;
    mode.store(FAIL, Ordering::Relaxed);
    status_becomes(HealthStatus::NotReady).await;
    mode.store(OK, Ordering::Relaxed);
    status_becomes(HealthStatus::Ready).await;
    mode.store(HANG, Ordering::Relaxed);
    status_becomes(HealthStatus::NotReady).await;
    mode.store(OK, Ordering::Relaxed);
    status_becomes(HealthStatus::Ready).await;
    let p = scrape(&drt);
    assert_eq!(
        p.value(wh::REQUESTS_TOTAL, &ep_labels()).unwrap_or(0.0),
        0.0,
        "canaries are not requests"
    );
    served.stop().await;
}

/// A caller's request id and `traceparent` reach the handler's context, in
/// one process and over a real nats-server, and the endpoint's duration
/// histogram carries them as its exemplar (OpenMetrics, read back by
/// prometheus_client's OpenMetrics parser). Without them, the handler sees
/// the request plane's own id and no trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_and_trace_context_reach_the_handler_and_the_exemplar() {
    use dynamo_runtime::request_plane::{RequestMeta, TraceParent};
    use dynamo_runtime::{ExpositionFormat, RequestPlaneConfig, RuntimeConfig};
    let nats = dynamo_testing::NatsServer::start();
    let planes = [
        ("in-process", RequestPlaneConfig::InProcess),
        (
            "nats",
            RequestPlaneConfig::Nats {
                url: nats.url.clone(),
                etcd_endpoints: None,
            },
        ),
    ];
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    for (plane, config) in planes {
        let drt = DistributedRuntime::from_config(RuntimeConfig {
            request_plane: config,
            ..Default::default()
        })
        .unwrap();
        let ep = endpoint(&drt);
        let served = ep
            .serve(|_: Req, ctx: Context| async move {
                Ok(single(format!(
                    "{}|{}",
                    ctx.id(),
                    ctx.trace_id().unwrap_or("-")
                )))
            })
            .await
            .unwrap();
        let client = ep.client::<Req, String>().await.unwrap();
        // What the handler saw of a call with `meta`.
        let seen = async |meta: &RequestMeta| -> String {
            let items = client
                .round_robin_with(req(1, "ok"), meta)
                .await
                .unwrap()
                .collect_all()
                .await
                .unwrap();
            items.concat()
        };
        let meta = RequestMeta::new("chatcmpl-42", TraceParent::parse(trace));
        assert_eq!(
            seen(&meta).await,
            "chatcmpl-42|4bf92f3577b34da6a3ce929d0e0e4736",
            "{plane}"
        );
        // The duration is observed when the worker's side of the call ends,
        // a moment after the caller has its last item: wait for each.
        settled(&drt, 1.0).await;
        // An id longer than the bound is cut; a call without an id gets the
        // plane's own.
        let long = RequestMeta::new(&"x".repeat(500), None);
        assert_eq!(
            seen(&long).await,
            format!("{}|-", "x".repeat(64)),
            "{plane}"
        );
        settled(&drt, 2.0).await;
        let plain = [seen(&RequestMeta::default()).await];
        settled(&drt, 3.0).await;
        let (id, rest) = plain[0].split_once('|').unwrap();
        assert!(!id.is_empty() && rest == "-", "{plane}: {plain:?}");

        let om = String::from_utf8(drt.metrics().render(ExpositionFormat::OpenMetrics).unwrap())
            .unwrap();
        let parsed = support::parse_openmetrics(&om);
        let bucket = format!("{}_bucket", wh::REQUEST_DURATION_SECONDS);
        let exemplars: Vec<_> = parsed
            .exemplars
            .iter()
            .filter(|(name, ..)| *name == bucket)
            .map(|(_, _, labels, _, ts)| {
                assert!(ts.is_some(), "{plane}: an exemplar has its timestamp");
                let trace = labels.get("trace_id").cloned();
                (labels["request_id"].clone(), trace)
            })
            .collect();
        // Each bucket keeps its last exemplar: the last call's is there
        // (whichever bucket it fell in), and every exemplar is one of the
        // three calls', the first with its trace.
        let long_id = "x".repeat(64);
        let traced = ("chatcmpl-42".to_owned(), Some(trace[3..35].to_owned()));
        assert!(exemplars.contains(&(id.to_owned(), None)), "{plane}: {om}");
        for e in &exemplars {
            assert!(
                *e == traced || *e == (long_id.clone(), None) || *e == (id.to_owned(), None),
                "{plane}: {e:?}"
            );
        }
        let text =
            String::from_utf8(drt.metrics().render(ExpositionFormat::Text).unwrap()).unwrap();
        assert!(!text.contains(" # {"), "text 0.0.4 has no exemplars");
        served.stop().await;
    }
}
