//! The system status server: `/metrics`, `/health`, `/live` over real HTTP,
//! checked with a real parser and promtool.

mod support;

use dynamo_runtime::prometheus_names::{labels, runtime as rt_names};
use dynamo_runtime::{
    DistributedRuntime, MetricsRegistry, RuntimeConfig, RuntimeError, SystemServerConfig,
    METRICS_CONTENT_TYPE,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use support::{get, parse, parse_many, promtool_check, runtime_with_server};

#[test]
fn metrics_route_serves_valid_text_with_the_right_content_type() {
    let drt = runtime_with_server();
    let ep = drt.namespace("ns").component("c").endpoint("generate");
    ep.create_counter("requests_total", "Requests", &[])
        .unwrap()
        .inc_by(3.0);
    let (status, ctype, body) = get(&drt, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(ctype, METRICS_CONTENT_TYPE);
    let p = parse(&body);
    assert_eq!(
        p.value(
            "dynamo_component_requests_total",
            &[
                (labels::NAMESPACE, "ns"),
                (labels::COMPONENT, "c"),
                (labels::ENDPOINT, "generate")
            ]
        ),
        Some(3.0)
    );
    let uptime = p
        .value(rt_names::SYSTEM_UPTIME_SECONDS, &[])
        .expect("uptime present");
    assert!(uptime > 0.0 && uptime < 600.0, "{uptime}");
}

#[test]
fn health_and_live() {
    let drt = runtime_with_server();
    let (status, ctype, body) = get(&drt, "/health");
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/json"), "{ctype}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["status"], "ready");
    assert!(json["uptime"].as_f64().unwrap() >= 0.0);
    assert!(json["endpoints"].is_object());
    let (status, _, body) = get(&drt, "/live");
    assert_eq!(status, 200);
    assert!(body.contains("live"));
    let (status, _, _) = get(&drt, "/nope");
    assert_eq!(status, 404);
    let addr = drt.system_server_addr().unwrap();
    let post = reqwest::blocking::Client::new()
        .post(format!("http://{addr}/metrics"))
        .send()
        .unwrap();
    assert_eq!(post.status().as_u16(), 405);
}

#[test]
fn port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = DistributedRuntime::from_config(RuntimeConfig {
        system_server: SystemServerConfig::Enabled {
            host: "127.0.0.1".into(),
            port,
        },
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(err, RuntimeError::Bind { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn bad_host_is_a_clear_error() {
    let err = DistributedRuntime::from_config(RuntimeConfig {
        system_server: SystemServerConfig::Enabled {
            host: "no such host!".into(),
            port: 0,
        },
        ..Default::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("no such host!"), "{err}");
}

#[test]
fn server_works_when_created_inside_a_tokio_runtime() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let drt = rt.block_on(async { runtime_with_server() });
    let addr = drt.system_server_addr().unwrap();
    let body = rt.block_on(async move {
        tokio::task::spawn_blocking(move || {
            reqwest::blocking::get(format!("http://{addr}/live"))
                .unwrap()
                .status()
                .as_u16()
        })
        .await
        .unwrap()
    });
    assert_eq!(body, 200);
    drop(drt); // dropping inside no async context: fine
}

#[test]
fn promtool_accepts_the_output_without_lint_warnings() {
    let drt = runtime_with_server();
    let ep = drt
        .namespace("dynamo")
        .component("backend")
        .endpoint("generate");
    let m = ep.metrics();
    m.create_counter("tokens_total", "Tokens generated", &[])
        .unwrap()
        .inc_by(10.0);
    m.create_intgauge("queue_requests", "Queued requests", &[("tier", "gold")])
        .unwrap()
        .set(2);
    m.create_histogram("latency_seconds", "Latency", &[], None)
        .unwrap()
        .observe(0.2);
    m.create_intcountervec("responses_total", "Responses", &["code"], &[])
        .unwrap()
        .with_label_values(&["200"])
        .inc();
    m.create_histogramvec(
        "step_seconds",
        "Step time",
        &["phase"],
        &[],
        Some(vec![0.01, 0.1]),
    )
    .unwrap()
    .with_label_values(&["prefill"])
    .observe(0.05);
    m.register_callback(|| Err::<(), _>("counted"));
    let (_, _, body) = get(&drt, "/metrics");
    let check = promtool_check(&body);
    check.assert_clean(&body);
    assert!(check.output.trim().is_empty(), "promtool: {}", check.output);
}

#[test]
fn awkward_label_values_round_trip() {
    let drt = runtime_with_server();
    let values = [
        "quote \" here",
        "back\\slash",
        "new\nline",
        "ünïcødé 日本語 🚀",
        "} braces { and , commas",
        "trailing\\",
        "",
    ];
    let ns = drt.namespace("ns \"q\"\\");
    let vec = ns
        .create_countervec(
            "odd_total",
            "Odd labels",
            &["v"],
            &[("const", "a\"b\\c\nd")],
        )
        .unwrap();
    for v in values {
        vec.with_label_values(&[v]).inc();
    }
    let (_, _, body) = get(&drt, "/metrics");
    promtool_check(&body).assert_clean(&body);
    let p = parse(&body);
    for v in values {
        let got = p.value(
            "dynamo_component_odd_total",
            &[
                (labels::NAMESPACE, "ns \"q\"\\"),
                ("const", "a\"b\\c\nd"),
                ("v", v),
            ],
        );
        assert_eq!(got, Some(1.0), "value {v:?} did not round-trip\n{body}");
    }
}

#[test]
fn scrapes_during_concurrent_updates_always_parse() {
    let drt = runtime_with_server();
    let ep = drt.namespace("ns").component("c").endpoint("e");
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for t in 0..2 {
        let ep = ep.clone();
        let stop = stop.clone();
        writers.push(std::thread::spawn(move || {
            let c = ep.create_counter("busy_total", "Busy", &[]).unwrap();
            let h = ep
                .create_histogram("busy_seconds", "Busy", &[], None)
                .unwrap();
            let v = ep
                .create_intcountervec("busy_by_key_total", "Busy", &["key"], &[])
                .unwrap();
            let hv = ep
                .create_histogramvec(
                    "busy_by_key_seconds",
                    "Busy",
                    &["key"],
                    &[],
                    Some(vec![0.01, 0.1, 1.0]),
                )
                .unwrap();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                c.inc();
                h.observe((i % 100) as f64 / 10.0);
                let key = format!("t{t}-{}", i % 50);
                v.with_label_values(&[&key]).inc();
                hv.with_label_values(&[&key]).observe(0.01);
                // New families appear while scrapes run, too.
                if i % 1000 == 0 {
                    ep.create_gauge(&format!("dyn_{t}_{}", i / 1000 % 50), "Dynamic", &[])
                        .unwrap()
                        .set(i as f64);
                }
                i += 1;
            }
            i
        }));
    }
    let mut bodies = Vec::new();
    for _ in 0..60 {
        let (status, _, body) = get(&drt, "/metrics");
        assert_eq!(status, 200);
        bodies.push(body);
    }
    stop.store(true, Ordering::Relaxed);
    let updates: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(updates > 0);
    let parsed = parse_many(&bodies);
    let mut last_count = 0.0;
    for (i, p) in parsed.iter().enumerate() {
        assert!(p.ok, "scrape {i} failed to parse: {:?}", p.error);
        let count = p
            .value(
                "dynamo_component_busy_seconds_count",
                &[
                    (labels::NAMESPACE, "ns"),
                    (labels::COMPONENT, "c"),
                    (labels::ENDPOINT, "e"),
                ],
            )
            .unwrap_or(0.0);
        assert!(
            count >= last_count,
            "histogram count went back: {last_count} -> {count}"
        );
        last_count = count;
    }
    promtool_check(bodies.last().unwrap()).assert_clean("last scrape");
}

/// Label values with characters no escape of the text format covers reach a
/// real Prometheus whole: the scrape is accepted and each value reads back
/// as documented (`\r` as the text `\u000d`).
#[test]
fn hostile_label_values_reach_a_real_prometheus() {
    let drt = support::runtime_with_server();
    let addr = drt.system_server_addr().unwrap();
    let vec = drt
        .metrics()
        .create_intcountervec("hostile_total", "Hostile values", &["v"], &[])
        .unwrap();
    let values = [
        ("cr", "a\rb", r"a\u000db"),
        ("ls", "x\u{2028}y", r"x\u2028y"),
        ("quote", "q\"\\\n", "q\"\\\n"),
        ("nul", "\u{0}", r"\u0000"),
        ("utf8", "Björn 佖", "Björn 佖"),
    ];
    for (i, (_, raw, _)) in values.iter().enumerate() {
        vec.with_label_values(&[*raw]).inc_by(i as u64 + 1);
    }
    let addr = addr.to_string();
    let prom = dynamo_testing::PrometheusServer::scraping("hostile", &[&addr], &[]);
    let http = reqwest::blocking::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let series = loop {
        let v: serde_json::Value = http
            .get(format!("{}/api/v1/query", prom.url))
            .query(&[("query", "dynamo_component_hostile_total")])
            .send()
            .and_then(|r| r.text())
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let result = v["data"]["result"].as_array().cloned().unwrap_or_default();
        if result.len() == values.len() {
            break result;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Prometheus has {} of {} series: {v}\n{}",
            result.len(),
            values.len(),
            prom.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    for (i, (name, _, read_back)) in values.iter().enumerate() {
        let found = series
            .iter()
            .find(|s| s["metric"]["v"] == *read_back)
            .unwrap_or_else(|| panic!("{name}: {read_back:?} not in {series:?}"));
        assert_eq!(found["value"][1], (i + 1).to_string(), "{name}");
    }
}

/// Prometheus asks for OpenMetrics first; a plain client gets text 0.0.4.
/// Both carry the same samples, and the OpenMetrics answer passes
/// prometheus_client's strict OpenMetrics parser, text callbacks' families
/// (a counter without `_total`, untyped, a summary, timestamps) included.
#[test]
fn metrics_route_negotiates_openmetrics_with_the_same_samples() {
    use support::{get_accepting, parse_openmetrics, PROMETHEUS_ACCEPT};
    let drt = runtime_with_server();
    let ep = drt.namespace("ns").component("c").endpoint("generate");
    ep.create_intcounter("requests_total", "Requests \"all\"", &[])
        .unwrap()
        .inc_by(3);
    ep.create_counter("bare", "A counter without the suffix", &[])
        .unwrap()
        .inc();
    let h = ep
        .create_histogramvec(
            "wait_seconds",
            "Wait",
            &["model"],
            &[],
            Some(vec![0.1, 1.0]),
        )
        .unwrap();
    h.with_label_values(&["a \"b\"\n"]).observe(0.5);
    h.with_label_values(&["c"]).observe(5.0);
    drt.metrics()
        .register_prometheus_expfmt_callback(|| {
            Ok::<_, std::io::Error>(
                "# TYPE ext_untyped untyped\next_untyped 7 1700000000250\n\
                 # TYPE ext_sum summary\next_sum{quantile=\"0.5\"} 1\next_sum_sum 3\next_sum_count 2\n"
                    .to_owned(),
            )
        });

    let (status, ctype, om) = get_accepting(&drt, "/metrics", PROMETHEUS_ACCEPT);
    assert_eq!(status, 200);
    assert_eq!(
        ctype,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(
        om.contains("# TYPE dynamo_component_requests counter\n"),
        "{om}"
    );
    assert!(
        om.contains("# TYPE dynamo_component_bare unknown\n"),
        "{om}"
    );
    assert!(om.contains("# TYPE ext_untyped unknown\n"), "{om}");
    assert!(om.contains("ext_untyped 7 1700000000.25\n"), "{om}");
    let om = parse_openmetrics(&om);

    let (_, ctype, text) = get_accepting(&drt, "/metrics", "*/*");
    assert_eq!(ctype, METRICS_CONTENT_TYPE);
    let text = parse(&text);
    // client_python's text parser names a counter's sample `<name>_total`
    // even where the text says `<name>` (Prometheus keeps `<name>`): compare
    // names without the suffix.
    let samples = |p: &support::Parsed| {
        let mut s: Vec<String> = p
            .samples
            .iter()
            .filter(|(name, _, _)| name != rt_names::SYSTEM_UPTIME_SECONDS)
            .map(|(n, l, v)| format!("{} {l:?} {v}", n.trim_end_matches("_total")))
            .collect();
        s.sort();
        s
    };
    assert_eq!(samples(&om), samples(&text));
    assert_eq!(om.families["dynamo_component_wait_seconds"], "histogram");
    assert_eq!(om.families["dynamo_component_requests"], "counter");
    assert_eq!(om.families["ext_sum"], "summary");
}
