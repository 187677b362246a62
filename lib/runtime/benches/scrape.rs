//! Scrape cost of 10,000 series and update cost through `create_*` handles,
//! each against the `prometheus` crate (gather + TextEncoder or
//! ProtobufEncoder) and the `prometheus-client` crate (its text and protobuf
//! encoders), measured in the same run, in every format and gzip'd.
//!
//! The series: 100 families x 100 label values. The label values are the
//! endpoints of one runtime (10 components x 10 endpoints); each family is
//! created on every endpoint. "counters": 100 counter families; "mixed": 50
//! counter families and 50 histogram families of 10 buckets; "countervecs":
//! family f is a counter vec on endpoint f whose variable label takes 100
//! values (the vec rendering path). The peers hold the same series as one vec
//! per family with the same labels.
//!
//! Each histogram's last observation carries an exemplar (a trace id). Where
//! a format carries exemplars (OpenMetrics, protobuf) prometheus-client is
//! given the same ones, so both sides write the same information; text 0.0.4
//! cannot carry them and is compared with prometheus-client's text without
//! them. Our protobuf carries native buckets too, which no peer has.
//!
//! `cargo bench -p dynamo-runtime --bench scrape`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use dynamo_runtime::metrics_http::gzip;
use dynamo_runtime::{DistributedRuntime, Endpoint, Exemplar, ExpositionFormat, RuntimeConfig};
use prometheus::Encoder;
use prometheus_client::metrics::counter::Counter as PcCounter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars as PcHistogramWithExemplars;
use prometheus_client::metrics::family::Family as PcFamily;
use prometheus_client::metrics::histogram::Histogram as PcHistogram;
use std::hint::black_box;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

const FAMILIES: usize = 100;
const COMPONENTS: usize = 10;
const ENDPOINTS_PER_COMPONENT: usize = 10;
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
const LABELS: [&str; 3] = ["dynamo_namespace", "dynamo_component", "dynamo_endpoint"];

#[derive(Clone, Copy)]
enum Mix {
    Counters,
    Mixed,
    CounterVecs,
}

impl Mix {
    fn is_histogram(self, family: usize) -> bool {
        matches!(self, Mix::Mixed) && family % 2 == 1
    }
    fn name(self) -> &'static str {
        match self {
            Mix::Counters => "10k_counters",
            Mix::Mixed => "10k_mixed_histograms",
            Mix::CounterVecs => "10k_countervecs",
        }
    }
}

fn endpoints(drt: &DistributedRuntime) -> Vec<(Endpoint, [String; 3])> {
    let ns = drt.namespace("bench");
    (0..COMPONENTS)
        .flat_map(|c| {
            let comp = ns.component(format!("component_{c}"));
            (0..ENDPOINTS_PER_COMPONENT).map(move |e| {
                let name = format!("endpoint_{e}");
                let labels = ["bench".to_owned(), format!("component_{c}"), name.clone()];
                (comp.endpoint(name), labels)
            })
        })
        .collect()
}

fn family_name(f: usize) -> String {
    format!("family_{f:03}_total")
}

fn value(f: usize, i: usize) -> f64 {
    ((f * 31 + i * 7) % 1000) as f64 * 0.013
}

/// The trace id of the exemplar of family `f`'s histogram on endpoint `i`.
fn trace_id(f: usize, i: usize) -> String {
    format!("{:032x}", i * FAMILIES + f + 1)
}

/// The values of the variable label in `Mix::CounterVecs`.
fn models() -> Vec<String> {
    (0..100).map(|m| format!("model_{m}")).collect()
}

fn setup_dynamo(mix: Mix) -> DistributedRuntime {
    let drt = DistributedRuntime::from_config(RuntimeConfig::default()).unwrap();
    if let Mix::CounterVecs = mix {
        for (f, (ep, _)) in endpoints(&drt).into_iter().enumerate() {
            let v = ep
                .metrics()
                .create_countervec(&family_name(f), "Bench counter", &["model"], &[])
                .unwrap();
            for (i, model) in models().iter().enumerate() {
                v.with_label_values(&[model]).inc_by(value(f, i));
            }
        }
        return drt;
    }
    for (i, (ep, _)) in endpoints(&drt).into_iter().enumerate() {
        for f in 0..FAMILIES {
            let m = ep.metrics();
            if mix.is_histogram(f) {
                let h = m
                    .create_histogram(
                        &format!("family_{f:03}_seconds"),
                        "Bench histogram",
                        &[],
                        Some(BUCKETS.to_vec()),
                    )
                    .unwrap();
                for k in 0..4 {
                    h.observe(value(f, i + k) / 100.0);
                }
                // One observation with an exemplar (OpenMetrics writes it).
                let exemplar = Exemplar::new(&[("trace_id", &trace_id(f, i))]).unwrap();
                h.observe_with_exemplar(value(f, i + 4) / 100.0, &exemplar);
            } else {
                m.create_counter(&family_name(f), "Bench counter", &[])
                    .unwrap()
                    .inc_by(value(f, i));
            }
        }
    }
    drt
}

fn setup_prometheus(drt: &DistributedRuntime, mix: Mix) -> prometheus::Registry {
    let registry = prometheus::Registry::new();
    let eps = endpoints(drt);
    if let Mix::CounterVecs = mix {
        for (f, (_, l)) in eps.iter().enumerate() {
            let opts = prometheus::Opts::new(
                format!("dynamo_component_{}", family_name(f)),
                "Bench counter",
            );
            let v = prometheus::CounterVec::new(opts, &[LABELS[0], LABELS[1], LABELS[2], "model"])
                .unwrap();
            for (i, model) in models().iter().enumerate() {
                v.with_label_values(&[&l[0], &l[1], &l[2], model])
                    .inc_by(value(f, i));
            }
            registry.register(Box::new(v)).unwrap();
        }
        return registry;
    }
    for f in 0..FAMILIES {
        if mix.is_histogram(f) {
            let opts = prometheus::HistogramOpts::new(
                format!("dynamo_component_family_{f:03}_seconds"),
                "Bench histogram",
            )
            .buckets(BUCKETS.to_vec());
            let v = prometheus::HistogramVec::new(opts, &LABELS).unwrap();
            for (i, (_, l)) in eps.iter().enumerate() {
                let h = v.with_label_values(&[&l[0], &l[1], &l[2]]);
                for k in 0..5 {
                    h.observe(value(f, i + k) / 100.0);
                }
            }
            registry.register(Box::new(v)).unwrap();
        } else {
            let opts = prometheus::Opts::new(
                format!("dynamo_component_{}", family_name(f)),
                "Bench counter",
            );
            let v = prometheus::CounterVec::new(opts, &LABELS).unwrap();
            for (i, (_, l)) in eps.iter().enumerate() {
                v.with_label_values(&[&l[0], &l[1], &l[2]])
                    .inc_by(value(f, i));
            }
            registry.register(Box::new(v)).unwrap();
        }
    }
    registry
}

type PcLabels = Vec<(&'static str, String)>;

/// Whether prometheus-client's histograms carry the bench's exemplars.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PcExemplars {
    Without,
    With,
}

fn setup_prometheus_client(
    drt: &DistributedRuntime,
    mix: Mix,
    exemplars: PcExemplars,
) -> prometheus_client::registry::Registry {
    let mut registry = prometheus_client::registry::Registry::default();
    let eps = endpoints(drt);
    let label_set =
        |l: &[String; 3]| -> PcLabels { LABELS.iter().copied().zip(l.iter().cloned()).collect() };
    if let Mix::CounterVecs = mix {
        for (f, (_, l)) in eps.iter().enumerate() {
            let fam = PcFamily::<PcLabels, PcCounter<f64, AtomicU64>>::default();
            for (i, model) in models().into_iter().enumerate() {
                let mut labels = label_set(l);
                labels.push(("model", model));
                fam.get_or_create(&labels).inc_by(value(f, i));
            }
            // prometheus-client appends `_total` itself.
            registry.register(
                format!("dynamo_component_family_{f:03}"),
                "Bench counter",
                fam,
            );
        }
        return registry;
    }
    for f in 0..FAMILIES {
        let name = format!("dynamo_component_family_{f:03}_seconds");
        if mix.is_histogram(f) && exemplars == PcExemplars::With {
            let fam =
                PcFamily::<PcLabels, PcHistogramWithExemplars<PcLabels>>::new_with_constructor(
                    || PcHistogramWithExemplars::new(BUCKETS.into_iter()),
                );
            for (i, (_, l)) in eps.iter().enumerate() {
                let h = fam.get_or_create(&label_set(l));
                for k in 0..4 {
                    h.observe(value(f, i + k) / 100.0, None);
                }
                let trace = vec![("trace_id", trace_id(f, i))];
                h.observe(value(f, i + 4) / 100.0, Some(trace));
            }
            registry.register(name, "Bench histogram", fam);
        } else if mix.is_histogram(f) {
            let fam = PcFamily::<PcLabels, PcHistogram>::new_with_constructor(|| {
                PcHistogram::new(BUCKETS)
            });
            for (i, (_, l)) in eps.iter().enumerate() {
                let h = fam.get_or_create(&label_set(l));
                for k in 0..5 {
                    h.observe(value(f, i + k) / 100.0);
                }
            }
            registry.register(name, "Bench histogram", fam);
        } else {
            let fam = PcFamily::<PcLabels, PcCounter<f64, AtomicU64>>::default();
            for (i, (_, l)) in eps.iter().enumerate() {
                fam.get_or_create(&label_set(l)).inc_by(value(f, i));
            }
            // prometheus-client appends `_total` itself.
            registry.register(
                format!("dynamo_component_family_{f:03}"),
                "Bench counter",
                fam,
            );
        }
    }
    registry
}

/// prometheus-client's text (OpenMetrics, its only text format).
fn pc_text(pc: &prometheus_client::registry::Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, pc).unwrap();
    out
}

/// prometheus-client's protobuf (the OpenMetrics `MetricSet`), encoded.
fn pc_protobuf(pc: &prometheus_client::registry::Registry) -> Vec<u8> {
    let set = prometheus_client::encoding::protobuf::encode(pc).unwrap();
    prost_for_prometheus_client::Message::encode_to_vec(&set)
}

fn bench_scrape(c: &mut Criterion) {
    let mut group = c.benchmark_group("scrape");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    for mix in [Mix::Counters, Mix::Mixed, Mix::CounterVecs] {
        let drt = setup_dynamo(mix);
        let prom = setup_prometheus(&drt, mix);
        // Text 0.0.4 cannot carry exemplars: its peer has none. OpenMetrics
        // and protobuf carry them: their peer has the same ones.
        let pc = setup_prometheus_client(&drt, mix, PcExemplars::Without);
        let pc_ex = setup_prometheus_client(&drt, mix, PcExemplars::With);
        let text = || drt.metrics().prometheus_metrics_fmt().unwrap();
        let openmetrics = || drt.metrics().render(ExpositionFormat::OpenMetrics).unwrap();
        let protobuf = || drt.metrics().render(ExpositionFormat::Protobuf).unwrap();
        let id = |name: &str| BenchmarkId::new(name, mix.name());

        group.bench_function(id("dynamo"), |b| b.iter(|| black_box(text())));
        group.bench_function(id("prometheus_gather_textencoder"), |b| {
            b.iter(|| {
                let mut out = Vec::new();
                prometheus::TextEncoder::new()
                    .encode(&prom.gather(), &mut out)
                    .unwrap();
                black_box(out)
            })
        });
        group.bench_function(id("prometheus_client_text"), |b| {
            b.iter(|| black_box(pc_text(&pc)))
        });
        group.bench_function(id("dynamo_openmetrics"), |b| {
            b.iter(|| black_box(openmetrics()))
        });
        group.bench_function(id("prometheus_client_openmetrics"), |b| {
            b.iter(|| black_box(pc_text(&pc_ex)))
        });
        // The protobuf exposition (ours with native buckets beside the
        // classic ones); peers: the `prometheus` crate's ProtobufEncoder (the
        // same MetricFamily format, classic buckets only, no exemplars) and
        // prometheus-client's protobuf (the OpenMetrics MetricSet message).
        group.bench_function(id("dynamo_protobuf"), |b| b.iter(|| black_box(protobuf())));
        group.bench_function(id("prometheus_gather_protobufencoder"), |b| {
            b.iter(|| {
                let mut out = Vec::new();
                prometheus::ProtobufEncoder::new()
                    .encode(&prom.gather(), &mut out)
                    .unwrap();
                black_box(out)
            })
        });
        group.bench_function(id("prometheus_client_protobuf"), |b| {
            b.iter(|| black_box(pc_protobuf(&pc_ex)))
        });
        // What a gzip-accepting scraper costs: each format and the same
        // compressor (flate2, fast level) on both sides. Prometheus asks for
        // OpenMetrics first (protobuf with native histograms on).
        group.bench_function(id("dynamo_gzip"), |b| {
            b.iter(|| black_box(gzip(text().as_bytes()).unwrap()))
        });
        group.bench_function(id("prometheus_client_text_gzip"), |b| {
            b.iter(|| black_box(gzip(pc_text(&pc).as_bytes()).unwrap()))
        });
        group.bench_function(id("dynamo_openmetrics_gzip"), |b| {
            b.iter(|| black_box(gzip(&openmetrics()).unwrap()))
        });
        group.bench_function(id("prometheus_client_openmetrics_gzip"), |b| {
            b.iter(|| black_box(gzip(pc_text(&pc_ex).as_bytes()).unwrap()))
        });
        group.bench_function(id("dynamo_protobuf_gzip"), |b| {
            b.iter(|| black_box(gzip(&protobuf()).unwrap()))
        });
        group.bench_function(id("prometheus_client_protobuf_gzip"), |b| {
            b.iter(|| black_box(gzip(&pc_protobuf(&pc_ex)).unwrap()))
        });
        let sizes = |what: &str, ours: &[u8], theirs: &[u8]| {
            eprintln!(
                "{}: {what} {} bytes, gzip'd {} bytes; prometheus-client {} bytes, gzip'd {} bytes",
                mix.name(),
                ours.len(),
                gzip(ours).unwrap().len(),
                theirs.len(),
                gzip(theirs).unwrap().len()
            );
        };
        sizes("text", text().as_bytes(), pc_text(&pc).as_bytes());
        sizes("openmetrics", &openmetrics(), pc_text(&pc_ex).as_bytes());
        sizes("protobuf", &protobuf(), &pc_protobuf(&pc_ex));
    }
    group.finish();
}

fn bench_update(c: &mut Criterion) {
    let mut group = c.benchmark_group("update");
    group
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    let drt = DistributedRuntime::from_config(RuntimeConfig::default()).unwrap();
    let ep = drt.namespace("ns").component("c").endpoint("e");
    let ours = ep
        .metrics()
        .create_counter("requests_total", "Requests", &[])
        .unwrap();
    let raw = prometheus::Counter::new("requests_total", "Requests").unwrap();
    group.bench_function("counter_inc/dynamo", |b| b.iter(|| black_box(&ours).inc()));
    group.bench_function("counter_inc/prometheus", |b| {
        b.iter(|| black_box(&raw).inc())
    });
    let ours_h = ep
        .metrics()
        .create_histogram("lat_seconds", "Latency", &[], None)
        .unwrap();
    let raw_h =
        prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("lat_seconds", "Latency"))
            .unwrap();
    group.bench_function("histogram_observe/dynamo", |b| {
        b.iter(|| black_box(&ours_h).observe(black_box(0.042)))
    });
    let exemplar = Exemplar::new(&[("request_id", "chatcmpl-0123456789abcdef")]).unwrap();
    group.bench_function("histogram_observe_with_exemplar/dynamo", |b| {
        b.iter(|| black_box(&ours_h).observe_with_exemplar(black_box(0.042), &exemplar))
    });
    group.bench_function("histogram_observe/prometheus", |b| {
        b.iter(|| black_box(&raw_h).observe(black_box(0.042)))
    });
    let ours_v = ep
        .metrics()
        .create_countervec("by_model_total", "By model", &["model"], &[])
        .unwrap();
    let raw_v = prometheus::CounterVec::new(
        prometheus::Opts::new("by_model_total", "By model"),
        &["model"],
    )
    .unwrap();
    group.bench_function("countervec_inc/dynamo", |b| {
        b.iter(|| black_box(&ours_v).with_label_values(&["llama"]).inc())
    });
    group.bench_function("countervec_inc/prometheus", |b| {
        b.iter(|| black_box(&raw_v).with_label_values(&["llama"]).inc())
    });
    group.finish();
}

criterion_group!(benches, bench_scrape, bench_update);
criterion_main!(benches);
