//! docs/metrics.md "Callbacks": update callbacks run before every scrape that
//! includes their object; failures are isolated, logged and counted; text
//! callbacks are parsed and merged.

mod support;

use dynamo_runtime::prometheus_names::{callback as cb, labels};
use dynamo_runtime::MetricsRegistry;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use support::{parse, promtool_check, runtime};

fn failures(text: &str, kind: &str, failure: &str) -> f64 {
    parse(text)
        .value(
            cb::FAILURES_TOTAL,
            &[(labels::CALLBACK, kind), (labels::FAILURE, failure)],
        )
        .unwrap_or_else(|| panic!("{kind}/{failure} missing"))
}

#[test]
fn update_callbacks_run_before_scrapes_that_include_their_object() {
    let drt = runtime();
    let ns = drt.namespace("ns");
    let ep = ns.component("c").endpoint("e");
    let gauge = ep
        .create_intgauge("connections", "Open connections", &[])
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let (g, n) = (gauge.clone(), calls.clone());
    ep.metrics().register_callback(move || {
        let i = n.fetch_add(1, Ordering::SeqCst) + 1;
        g.set(i as i64 * 10);
        Ok::<(), std::io::Error>(())
    });
    let p = parse(&drt.prometheus_metrics_fmt().unwrap());
    let l = [
        (labels::NAMESPACE, "ns"),
        (labels::COMPONENT, "c"),
        (labels::ENDPOINT, "e"),
    ];
    assert_eq!(
        p.value("dynamo_component_connections", &l),
        Some(10.0),
        "set in the same scrape"
    );
    ns.prometheus_metrics_fmt().unwrap();
    ep.prometheus_metrics_fmt().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // A scrape of another subtree does not run it.
    drt.namespace("other").prometheus_metrics_fmt().unwrap();
    ns.component("c2").prometheus_metrics_fmt().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn failing_and_panicking_callbacks_do_not_break_the_scrape() {
    let drt = runtime();
    let ep = drt.namespace("ns").component("c").endpoint("e");
    let ok = ep.create_counter("still_here_total", "h", &[]).unwrap();
    ok.inc();
    ep.metrics()
        .register_callback(|| Err::<(), _>("engine unreachable"));
    ep.metrics()
        .register_callback(|| -> Result<(), std::io::Error> { panic!("callback bug") });
    let after = ep
        .create_gauge(
            "after",
            "set by a callback registered after the failing ones",
            &[],
        )
        .unwrap();
    let a = after.clone();
    ep.metrics().register_callback(move || {
        a.set(5.0);
        Ok::<(), std::io::Error>(())
    });
    drt.prometheus_metrics_fmt().unwrap();
    let text = drt.prometheus_metrics_fmt().unwrap();
    assert_eq!(failures(&text, cb::KIND_UPDATE, cb::FAILURE_ERROR), 2.0);
    assert_eq!(failures(&text, cb::KIND_UPDATE, cb::FAILURE_PANIC), 2.0);
    assert_eq!(after.get(), 5.0, "later callbacks still ran");
    assert!(text.contains("dynamo_component_still_here_total{"));
}

#[test]
fn text_callbacks_merge_repeat_and_drop_malformed() {
    let drt = runtime();
    let ep = drt.namespace("ns").component("c").endpoint("e");
    let engine = "# HELP vllm:num_requests_running Running requests.\n\
                  # TYPE vllm:num_requests_running gauge\n\
                  vllm:num_requests_running{model_name=\"m\"} 3\n\
                  # TYPE vllm:ttft_seconds histogram\n\
                  vllm:ttft_seconds_bucket{le=\"0.1\",model_name=\"m\"} 1\n\
                  vllm:ttft_seconds_bucket{le=\"+Inf\",model_name=\"m\"} 2\n\
                  vllm:ttft_seconds_sum{model_name=\"m\"} 0.35\n\
                  vllm:ttft_seconds_count{model_name=\"m\"} 2\n";
    ep.metrics()
        .register_prometheus_expfmt_callback(move || Ok::<_, std::io::Error>(engine.to_owned()));
    // A second callback repeats one family with one new series and one repeated series.
    ep.metrics().register_prometheus_expfmt_callback(|| {
        Ok::<_, std::io::Error>(
            "# TYPE vllm:num_requests_running gauge\n\
             vllm:num_requests_running{model_name=\"m\"} 99\n\
             vllm:num_requests_running{model_name=\"n\"} 1\n"
                .to_owned(),
        )
    });
    ep.metrics().register_prometheus_expfmt_callback(|| {
        Ok::<_, std::io::Error>("this is { not prometheus\n".to_owned())
    });
    // A family that clashes in type with a registered one is dropped.
    drt.create_intgauge("clash", "registered as a gauge", &[])
        .unwrap()
        .set(1);
    drt.metrics().register_prometheus_expfmt_callback(|| {
        Ok::<_, std::io::Error>(
            "# TYPE dynamo_component_clash counter\ndynamo_component_clash 5\n".to_owned(),
        )
    });
    // One that agrees in type joins the registered family.
    drt.create_intgauge("joined", "registered as a gauge", &[])
        .unwrap()
        .set(1);
    drt.metrics().register_prometheus_expfmt_callback(|| {
        Ok::<_, std::io::Error>(
            "# TYPE dynamo_component_joined gauge\ndynamo_component_joined{src=\"engine\"} 2\ndynamo_component_joined 7\n".to_owned(),
        )
    });

    let text = drt.prometheus_metrics_fmt().unwrap();
    promtool_check(&text).assert_clean(&text);
    let p = parse(&text);
    assert_eq!(
        p.value("vllm:num_requests_running", &[("model_name", "m")]),
        Some(3.0),
        "first value wins"
    );
    assert_eq!(
        p.value("vllm:num_requests_running", &[("model_name", "n")]),
        Some(1.0)
    );
    assert_eq!(
        p.value("vllm:ttft_seconds_count", &[("model_name", "m")]),
        Some(2.0)
    );
    assert_eq!(
        p.families.get("vllm:ttft_seconds").map(String::as_str),
        Some("histogram")
    );
    assert_eq!(
        p.value("dynamo_component_clash", &[]),
        Some(1.0),
        "registered value kept"
    );
    assert_eq!(
        p.value("dynamo_component_joined", &[]),
        Some(1.0),
        "registered series kept over the repeat"
    );
    assert_eq!(
        p.value("dynamo_component_joined", &[("src", "engine")]),
        Some(2.0)
    );
    assert_eq!(text.matches("# TYPE vllm:num_requests_running").count(), 1);
    assert_eq!(failures(&text, cb::KIND_EXPFMT, cb::FAILURE_MALFORMED), 1.0);
    assert_eq!(failures(&text, cb::KIND_EXPFMT, cb::FAILURE_CONFLICT), 1.0);
    // Text callbacks of an endpoint appear in the endpoint's own scrape, not in another's.
    assert!(ep
        .prometheus_metrics_fmt()
        .unwrap()
        .contains("vllm:num_requests_running"));
    assert!(!drt
        .namespace("x")
        .prometheus_metrics_fmt()
        .unwrap()
        .contains("vllm:"));
}

#[test]
fn text_callback_errors_and_panics_are_counted() {
    let drt = runtime();
    drt.metrics()
        .register_prometheus_expfmt_callback(|| Err::<String, _>("no engine"));
    drt.metrics()
        .register_prometheus_expfmt_callback(|| -> Result<String, std::io::Error> {
            panic!("boom")
        });
    let text = drt.prometheus_metrics_fmt().unwrap();
    assert_eq!(failures(&text, cb::KIND_EXPFMT, cb::FAILURE_ERROR), 1.0);
    assert_eq!(failures(&text, cb::KIND_EXPFMT, cb::FAILURE_PANIC), 1.0);
}

#[test]
fn callbacks_may_create_metrics_and_scrape_without_deadlock() {
    let drt = runtime();
    let d = drt.clone();
    drt.metrics().register_callback(move || {
        d.create_intcounter("made_in_callback_total", "h", &[])
            .map(|c| c.inc())
            .map_err(|e| e.to_string())
    });
    let text = drt.prometheus_metrics_fmt().unwrap();
    assert_eq!(
        parse(&text).value("dynamo_component_made_in_callback_total", &[]),
        Some(1.0)
    );
}
