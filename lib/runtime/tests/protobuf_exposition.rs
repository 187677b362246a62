//! The protobuf exposition: decoded by an independent decoder (prost, from
//! message definitions written here after Prometheus's metrics.proto) it
//! carries the same samples as the text format, and native buckets that
//! hold every observation in its bucket; a real Prometheus 2.42 with
//! `--enable-feature=native-histograms` negotiates it, reads hostile label
//! values whole, and its `histogram_quantile` over the native series lands
//! within the schema's error bound of the true quantile.

mod support;

use dynamo_runtime::native::{bucket_upper_bound, SCHEMA};
use dynamo_runtime::prometheus_names::runtime as rt_names;
use dynamo_runtime::{DistributedRuntime, Exemplar, ExpositionFormat, MetricsRegistry};
use prost::Message;
use std::collections::BTreeMap;
use support::{get_accepting, parse, runtime_with_server};

/// What Prometheus 2.42 sends with `--enable-feature=native-histograms`.
const PROTOBUF_ACCEPT: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// io.prometheus.client messages, the fields this project writes.
mod pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricFamily {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub help: Option<String>,
        #[prost(int32, optional, tag = "3")]
        pub r#type: Option<i32>,
        #[prost(message, repeated, tag = "4")]
        pub metric: Vec<Metric>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPair {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub value: Option<String>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Value {
        #[prost(double, optional, tag = "1")]
        pub value: Option<f64>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metric {
        #[prost(message, repeated, tag = "1")]
        pub label: Vec<LabelPair>,
        #[prost(message, optional, tag = "2")]
        pub gauge: Option<Value>,
        #[prost(message, optional, tag = "3")]
        pub counter: Option<Value>,
        #[prost(message, optional, tag = "4")]
        pub summary: Option<Summary>,
        #[prost(message, optional, tag = "5")]
        pub untyped: Option<Value>,
        #[prost(int64, optional, tag = "6")]
        pub timestamp_ms: Option<i64>,
        #[prost(message, optional, tag = "7")]
        pub histogram: Option<Histogram>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Quantile {
        #[prost(double, optional, tag = "1")]
        pub quantile: Option<f64>,
        #[prost(double, optional, tag = "2")]
        pub value: Option<f64>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Summary {
        #[prost(uint64, optional, tag = "1")]
        pub sample_count: Option<u64>,
        #[prost(double, optional, tag = "2")]
        pub sample_sum: Option<f64>,
        #[prost(message, repeated, tag = "3")]
        pub quantile: Vec<Quantile>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, optional, tag = "1")]
        pub seconds: Option<i64>,
        #[prost(int32, optional, tag = "2")]
        pub nanos: Option<i32>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Exemplar {
        #[prost(message, repeated, tag = "1")]
        pub label: Vec<LabelPair>,
        #[prost(double, optional, tag = "2")]
        pub value: Option<f64>,
        #[prost(message, optional, tag = "3")]
        pub timestamp: Option<Timestamp>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Bucket {
        #[prost(uint64, optional, tag = "1")]
        pub cumulative_count: Option<u64>,
        #[prost(double, optional, tag = "2")]
        pub upper_bound: Option<f64>,
        #[prost(message, optional, tag = "3")]
        pub exemplar: Option<Exemplar>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BucketSpan {
        #[prost(sint32, optional, tag = "1")]
        pub offset: Option<i32>,
        #[prost(uint32, optional, tag = "2")]
        pub length: Option<u32>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {
        #[prost(uint64, optional, tag = "1")]
        pub sample_count: Option<u64>,
        #[prost(double, optional, tag = "2")]
        pub sample_sum: Option<f64>,
        #[prost(message, repeated, tag = "3")]
        pub bucket: Vec<Bucket>,
        #[prost(sint32, optional, tag = "5")]
        pub schema: Option<i32>,
        #[prost(double, optional, tag = "6")]
        pub zero_threshold: Option<f64>,
        #[prost(uint64, optional, tag = "7")]
        pub zero_count: Option<u64>,
        #[prost(message, repeated, tag = "9")]
        pub negative_span: Vec<BucketSpan>,
        #[prost(sint64, repeated, tag = "10")]
        pub negative_delta: Vec<i64>,
        #[prost(message, repeated, tag = "12")]
        pub positive_span: Vec<BucketSpan>,
        #[prost(sint64, repeated, tag = "13")]
        pub positive_delta: Vec<i64>,
    }
}

fn decode(mut bytes: &[u8]) -> Vec<pb::MetricFamily> {
    let mut families = Vec::new();
    while !bytes.is_empty() {
        families.push(
            pb::MetricFamily::decode_length_delimited(&mut bytes)
                .expect("a delimited MetricFamily"),
        );
    }
    families
}

fn labels_of(pairs: &[pb::LabelPair]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|l| {
            (
                l.name.clone().unwrap_or_default(),
                l.value.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// One sample as text formats name it: (name, labels without `le` and
/// `quantile`, `le` or `quantile` as a number, value), formatted for sorting.
fn sample(name: &str, mut labels: BTreeMap<String, String>, value: f64) -> String {
    let point = ["le", "quantile"]
        .iter()
        .find_map(|k| labels.remove(*k))
        .map(|p| p.parse::<f64>().expect("a numeric le or quantile"));
    format!("{name} {labels:?} {point:?} {value}")
}

/// The samples a text parser would read from the decoded families.
fn samples_of(families: &[pb::MetricFamily]) -> Vec<String> {
    let mut out = Vec::new();
    for f in families {
        let name = f.name.clone().unwrap_or_default();
        for m in &f.metric {
            let labels = labels_of(&m.label);
            let with = |k: &str, v: f64| {
                let mut l = labels.clone();
                l.insert(k.to_owned(), v.to_string());
                l
            };
            if let Some(v) = m
                .counter
                .as_ref()
                .or(m.gauge.as_ref())
                .or(m.untyped.as_ref())
            {
                out.push(sample(&name, labels.clone(), v.value.unwrap_or(0.0)));
            } else if let Some(h) = &m.histogram {
                let count = h.sample_count.unwrap_or(0) as f64;
                for b in &h.bucket {
                    let le = b.upper_bound.unwrap_or(f64::NAN);
                    if le.is_finite() {
                        let v = b.cumulative_count.unwrap_or(0) as f64;
                        out.push(sample(&format!("{name}_bucket"), with("le", le), v));
                    }
                }
                out.push(sample(
                    &format!("{name}_bucket"),
                    with("le", f64::INFINITY),
                    count,
                ));
                out.push(sample(&format!("{name}_count"), labels.clone(), count));
                out.push(sample(
                    &format!("{name}_sum"),
                    labels.clone(),
                    h.sample_sum.unwrap_or(0.0),
                ));
            } else if let Some(s) = &m.summary {
                for q in &s.quantile {
                    let v = q.value.unwrap_or(0.0);
                    out.push(sample(
                        &name,
                        with("quantile", q.quantile.unwrap_or(0.0)),
                        v,
                    ));
                }
                out.push(sample(
                    &format!("{name}_count"),
                    labels.clone(),
                    s.sample_count.unwrap_or(0) as f64,
                ));
                out.push(sample(
                    &format!("{name}_sum"),
                    labels.clone(),
                    s.sample_sum.unwrap_or(0.0),
                ));
            }
        }
    }
    out.retain(|s| !s.starts_with(rt_names::SYSTEM_UPTIME_SECONDS));
    out.sort();
    out
}

/// Native buckets as (index, count), by index.
type Buckets = Vec<(i32, u64)>;

/// The positive and negative native buckets of a decoded histogram, read
/// from its spans and deltas as the format defines them.
fn native_buckets(h: &pb::Histogram) -> (Buckets, Buckets) {
    let read = |spans: &[pb::BucketSpan], deltas: &[i64]| {
        let mut out = Vec::new();
        let (mut index, mut count, mut d) = (0i32, 0i64, deltas.iter());
        for span in spans {
            // The first offset is the first index; later ones the gap.
            index += span.offset.unwrap_or(0);
            for _ in 0..span.length.unwrap_or(0) {
                count += d.next().expect("a delta per bucket");
                out.push((index, count as u64));
                index += 1;
            }
        }
        assert!(d.next().is_none(), "deltas left over");
        out
    };
    (
        read(&h.positive_span, &h.positive_delta),
        read(&h.negative_span, &h.negative_delta),
    )
}

/// The bucket of `v` > 0 as the schema defines it: `ceil(log2(v) * 2^schema)`.
fn expected_index(v: f64) -> i32 {
    (v.log2() * f64::from(1 << SCHEMA)).ceil() as i32
}

#[test]
fn protobuf_carries_the_same_samples_as_text() {
    let drt = runtime_with_server();
    let ep = drt.namespace("ns").component("c").endpoint("generate");
    ep.create_intcounter("requests_total", "Requests \"all\"", &[])
        .unwrap()
        .inc_by(3);
    ep.create_gauge("load", "Load", &[]).unwrap().set(-2.5);
    let v = ep
        .create_intcountervec("by_value_total", "By value", &["v"], &[])
        .unwrap();
    for value in ["plain", "q\"\\\n", "a\rb", "Björn 佖", "", "k=\"v\",w=x"] {
        v.with_label_values(&[value]).inc();
    }
    let h = ep
        .create_histogramvec(
            "wait_seconds",
            "Wait",
            &["model"],
            &[],
            Some(vec![0.1, 1.0]),
        )
        .unwrap();
    h.with_label_values(&["a"]).observe(0.05);
    h.with_label_values(&["a"])
        .observe_with_exemplar(0.5, &Exemplar::new(&[("trace_id", "t\"1")]).unwrap());
    h.with_label_values(&["b"]).observe(5.0);
    drt.metrics().register_prometheus_expfmt_callback(|| {
        Ok::<_, std::io::Error>(
            "# TYPE ext_untyped untyped\next_untyped{k=\"v\"} 7 1700000000250\n\
             # TYPE ext_sum summary\next_sum{quantile=\"0.5\"} 1\next_sum_sum 3\next_sum_count 2\n\
             # TYPE ext_h histogram\next_h_bucket{x=\"1\",le=\"2\"} 1\next_h_bucket{x=\"1\",le=\"+Inf\"} 3\n\
             ext_h_sum{x=\"1\"} 9\next_h_count{x=\"1\"} 3\n"
                .to_owned(),
        )
    });

    let (status, ctype, _) = get_accepting(&drt, "/metrics", PROTOBUF_ACCEPT);
    assert_eq!(status, 200);
    assert_eq!(
        ctype,
        "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
    );
    let bytes = drt.metrics().render(ExpositionFormat::Protobuf).unwrap();
    let families = decode(&bytes);
    let by_name: BTreeMap<_, _> = families
        .iter()
        .map(|f| (f.name.clone().unwrap_or_default(), f))
        .collect();
    assert_eq!(by_name["dynamo_component_requests_total"].r#type, Some(0));
    assert_eq!(
        by_name["dynamo_component_requests_total"].help.as_deref(),
        Some("Requests \"all\"")
    );
    assert_eq!(by_name["dynamo_component_wait_seconds"].r#type, Some(4));
    assert_eq!(by_name["ext_sum"].r#type, Some(2));
    assert_eq!(
        by_name["ext_untyped"].metric[0].timestamp_ms,
        Some(1_700_000_000_250)
    );

    // Sample for sample what the text format says, read by a real text parser.
    let text = parse(&drt.metrics().prometheus_metrics_fmt().unwrap());
    let mut from_text: Vec<String> = text
        .samples
        .iter()
        .filter(|(n, _, _)| n != rt_names::SYSTEM_UPTIME_SECONDS)
        .map(|(n, l, v)| {
            let v = match v {
                serde_json::Value::Number(n) => n.as_f64().unwrap(),
                other => other.as_str().unwrap().parse().unwrap(),
            };
            sample(n, l.clone(), v)
        })
        .collect();
    from_text.sort();
    assert_eq!(samples_of(&families), from_text);

    // The exemplar rides on its classic bucket, labels unescaped.
    let a = by_name["dynamo_component_wait_seconds"]
        .metric
        .iter()
        .find(|m| labels_of(&m.label).get("model").map(String::as_str) == Some("a"))
        .unwrap();
    let h = a.histogram.as_ref().unwrap();
    let e = h.bucket[1]
        .exemplar
        .as_ref()
        .expect("the le=1 bucket's exemplar");
    assert_eq!(labels_of(&e.label)["trace_id"], "t\"1");
    assert_eq!(e.value, Some(0.5));
    assert!(e.timestamp.as_ref().unwrap().seconds.unwrap() > 1_600_000_000);
    // And the native part is there: schema 3, every observation in a bucket.
    assert_eq!(h.schema, Some(SCHEMA));
    let (positive, _) = native_buckets(h);
    assert_eq!(
        positive,
        vec![(expected_index(0.05), 1), (expected_index(0.5), 1)]
    );
}

#[test]
fn native_buckets_hold_every_observation_in_its_bucket() {
    let drt = DistributedRuntime::new().unwrap();
    let h = drt.create_histogram("spread", "Spread", &[], None).unwrap();
    let mut want: BTreeMap<i32, u64> = BTreeMap::new();
    let mut want_negative: BTreeMap<i32, u64> = BTreeMap::new();
    let mut x = 0.123_456_f64;
    for i in 0..5000 {
        // Values from 1e-12 to 1e12, away from bucket bounds.
        x = (x * 9301.0 + 49297.0) % 233280.0;
        let v = 10f64.powf(x / 233280.0 * 24.0 - 12.0);
        let v = if i % 10 == 0 { -v } else { v };
        let index = expected_index(v.abs());
        if (bucket_upper_bound(index) - v.abs()).abs() < 1e-9 * v.abs() {
            continue;
        }
        h.observe(v);
        let map = if v < 0.0 {
            &mut want_negative
        } else {
            &mut want
        };
        *map.entry(index).or_default() += 1;
    }
    let local = h.local();
    for _ in 0..7 {
        local.observe(0.0);
    }
    local.flush();
    let bytes = drt.metrics().render(ExpositionFormat::Protobuf).unwrap();
    let family = decode(&bytes)
        .into_iter()
        .find(|f| f.name.as_deref() == Some("dynamo_component_spread"))
        .unwrap();
    let hist = family.metric[0].histogram.clone().unwrap();
    let (positive, negative) = native_buckets(&hist);
    assert_eq!(positive, want.into_iter().collect::<Vec<_>>());
    assert_eq!(negative, want_negative.into_iter().collect::<Vec<_>>());
    assert_eq!(hist.zero_count, Some(7));
    let in_buckets: u64 = positive.iter().chain(&negative).map(|b| b.1).sum::<u64>() + 7;
    assert_eq!(hist.sample_count, Some(in_buckets));
    assert_eq!(h.get_sample_count(), in_buckets);

    // A histogram without observations is still a native one: a span of none.
    drt.create_histogram("empty", "Empty", &[], None).unwrap();
    let bytes = drt.metrics().render(ExpositionFormat::Protobuf).unwrap();
    let family = decode(&bytes)
        .into_iter()
        .find(|f| f.name.as_deref() == Some("dynamo_component_empty"))
        .unwrap();
    let hist = family.metric[0].histogram.clone().unwrap();
    assert_eq!(hist.schema, Some(SCHEMA));
    assert_eq!(hist.positive_span.len(), 1);
    assert_eq!(hist.positive_span[0].length.unwrap_or(0), 0);
}

fn query(http: &reqwest::blocking::Client, url: &str, q: &str) -> serde_json::Value {
    http.get(format!("{url}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .and_then(|r| r.text())
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// A real Prometheus 2.42 with native histograms negotiates protobuf,
/// reads hostile label values as the text path gives them, and computes
/// quantiles from the native series within the schema's error bound.
#[test]
fn prometheus_reads_native_histograms_within_the_error_bound() {
    let drt = runtime_with_server();
    let addr = drt.system_server_addr().unwrap();
    let h = drt
        .metrics()
        .create_histogram("latency_seconds", "Latency", &[], None)
        .unwrap();
    // Latencies from 1 ms to a minute, log-uniform, deterministic.
    let mut values = Vec::new();
    let mut x = 7.0_f64;
    for _ in 0..20_000 {
        x = (x * 9301.0 + 49297.0) % 233280.0;
        values.push(10f64.powf(x / 233280.0 * 4.8 - 3.0));
    }
    for v in &values {
        h.observe(*v);
    }
    values.sort_by(f64::total_cmp);
    let hostile = drt
        .metrics()
        .create_intcountervec("hostile_total", "Hostile values", &["v"], &[])
        .unwrap();
    let read_back = [
        ("a\rb", r"a\u000db"),
        ("q\"\\\n", "q\"\\\n"),
        ("Björn 佖", "Björn 佖"),
    ];
    for (i, (raw, _)) in read_back.iter().enumerate() {
        hostile.with_label_values(&[*raw]).inc_by(i as u64 + 1);
    }

    let addr = addr.to_string();
    let prom = dynamo_testing::PrometheusServer::scraping(
        "native",
        &[&addr],
        &["--enable-feature=native-histograms"],
    );
    let http = reqwest::blocking::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let v = query(
            &http,
            &prom.url,
            "histogram_count(dynamo_component_latency_seconds)",
        );
        if v["data"]["result"][0]["value"][1] == "20000" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no native histogram of 20000 observations: {v}\n{}",
            prom.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Native ingestion replaces the classic series (Prometheus 2.42).
    let classic = query(&http, &prom.url, "dynamo_component_latency_seconds_bucket");
    assert_eq!(
        classic["data"]["result"].as_array().map(Vec::len),
        Some(0),
        "{classic}"
    );

    let bound = 2f64.powf(1.0 / f64::from(1 << SCHEMA)) - 1.0;
    for q in [0.5, 0.9, 0.99, 0.999] {
        let truth = values[((q * values.len() as f64).ceil() as usize).saturating_sub(1)];
        let v = query(
            &http,
            &prom.url,
            &format!("histogram_quantile({q}, dynamo_component_latency_seconds)"),
        );
        let estimate: f64 = v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no quantile {q}: {v}"));
        let error = (estimate - truth).abs() / truth;
        eprintln!(
            "q={q}: Prometheus {estimate:.6}, true {truth:.6}, {:.2}% off",
            error * 100.0
        );
        assert!(
            error <= bound + 1e-9,
            "q={q}: Prometheus says {estimate}, the true quantile is {truth} ({:.2}% off, bound {:.2}%)",
            error * 100.0,
            bound * 100.0
        );
    }

    let hostile = query(&http, &prom.url, "dynamo_component_hostile_total");
    let series = hostile["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (i, (_, want)) in read_back.iter().enumerate() {
        let found = series
            .iter()
            .find(|s| s["metric"]["v"] == *want)
            .unwrap_or_else(|| panic!("{want:?} not in {series:?}"));
        assert_eq!(found["value"][1], (i + 1).to_string());
    }
}
