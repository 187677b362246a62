//! What `dynamo top` shows, computed from two scrapes of every target: rates
//! and latency quantiles over the interval between them (from the counters'
//! and histograms' deltas, never lifetime averages), and the values of the
//! gauges now. Pure functions of the scrapes: no I/O, no clock.

use dynamo_runtime::exposition::{Family, Sample};
use dynamo_runtime::prometheus_names::{frontend as fe, kvstats, labels, work_handler as wh};
use std::collections::BTreeMap;

/// What kind of server a target is, as discovery names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ServerKind {
    /// An HTTP frontend: `dynamo_frontend_*` is read from it.
    Frontend,
    /// A process's system status server: `dynamo_component_*` and GPU
    /// metrics are read from it.
    System,
    /// Given with `--target`: everything is read from it.
    Any,
}

impl ServerKind {
    /// The kind discovery's `dynamo_server` label names.
    pub fn from_label(label: &str) -> Self {
        match label {
            "frontend" => ServerKind::Frontend,
            "system" => ServerKind::System,
            _ => ServerKind::Any,
        }
    }

    fn frontend_metrics(self) -> bool {
        matches!(self, ServerKind::Frontend | ServerKind::Any)
    }

    fn worker_metrics(self) -> bool {
        matches!(self, ServerKind::System | ServerKind::Any)
    }
}

/// One target's answer to one scrape.
#[derive(Debug, Clone)]
pub struct TargetScrape {
    /// `host:port`.
    pub address: String,
    /// What it is.
    pub kind: ServerKind,
    /// Its families, or why it could not be read.
    pub result: Result<Vec<Family>, String>,
}

/// Every target's answer at one moment.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// Seconds since some fixed start (only differences matter).
    pub at: f64,
    /// One per target.
    pub targets: Vec<TargetScrape>,
}

impl Scrape {
    fn target(&self, address: &str) -> Option<&TargetScrape> {
        self.targets.iter().find(|t| t.address == address)
    }
}

/// Latency quantiles over an interval (seconds); `None` without observations.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Quantiles {
    /// The median.
    pub p50: Option<f64>,
    /// The 99th percentile.
    pub p99: Option<f64>,
}

/// One model, as the frontends see it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelRow {
    /// The model's name.
    pub model: String,
    /// Requests finished per second over the interval.
    pub requests_per_s: f64,
    /// Output tokens of the requests finished in the interval, per second.
    pub output_tokens_per_s: f64,
    /// Time to first token over the interval.
    pub ttft: Quantiles,
    /// Inter-token latency over the interval.
    pub itl: Quantiles,
    /// Requests in flight now.
    pub inflight: f64,
    /// Requests finished since the frontends started.
    pub requests_total: f64,
    /// Errors since the frontends started, by type (non-zero only).
    pub errors: BTreeMap<String, f64>,
    /// Errors per second over the interval.
    pub errors_per_s: f64,
}

/// One endpoint a worker serves.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointRow {
    /// `namespace/component/endpoint`.
    pub path: String,
    /// Requests started per second over the interval.
    pub requests_per_s: f64,
    /// Requests in flight now.
    pub inflight: f64,
    /// Errors since the worker started, by type (non-zero only).
    pub errors: BTreeMap<String, f64>,
    /// Request duration over the interval.
    pub duration: Quantiles,
}

/// One worker process (a system server).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerRow {
    /// Its system server's `host:port`.
    pub address: String,
    /// Why it could not be read, when it could not: shown as down.
    pub down: Option<String>,
    /// Requests started per second over the interval, all endpoints.
    pub requests_per_s: f64,
    /// Requests in flight now.
    pub inflight: f64,
    /// Errors since it started, all endpoints and types.
    pub errors: f64,
    /// KV-cache usage now (0..1), the largest of its endpoints', if exported.
    pub kv_usage: Option<f64>,
    /// Requests waiting for the engine now, if exported.
    pub waiting: Option<f64>,
    /// GPU utilization now (%, mean over its GPUs), if exported.
    pub gpu_util: Option<f64>,
    /// GPU memory used and total now (MiB, all its GPUs), if exported.
    pub gpu_memory: Option<(f64, f64)>,
    /// Its endpoints.
    pub endpoints: Vec<EndpointRow>,
}

/// A frontend target that could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct DownTarget {
    /// `host:port`.
    pub address: String,
    /// Why.
    pub error: String,
}

/// Everything one frame shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Seconds between the two scrapes.
    pub interval: f64,
    /// By model name.
    pub models: Vec<ModelRow>,
    /// By address.
    pub workers: Vec<WorkerRow>,
    /// Frontends that did not answer (a `--target` that does not is a
    /// worker shown as down).
    pub frontends_down: Vec<DownTarget>,
    /// Targets read, of all.
    pub targets_up: usize,
    /// Targets in all.
    pub targets: usize,
}

/// The samples of the families named `name` (and its histogram/counter
/// sample names) across `families`.
fn family<'a>(families: &'a [Family], name: &str) -> impl Iterator<Item = &'a Sample> + 'a {
    let name = name.to_owned();
    families
        .iter()
        .filter(move |f| f.name == name)
        .flat_map(|f| f.samples.iter())
}

fn sum_where(
    families: &[Family],
    name: &str,
    sample_name: &str,
    keep: impl Fn(&Sample) -> bool,
) -> f64 {
    family(families, name)
        .filter(|s| s.name == sample_name && keep(s))
        .map(|s| s.value)
        .sum()
}

/// A counter's increase between two reads; a reset (the process restarted)
/// counts from zero.
fn increase(before: f64, now: f64) -> f64 {
    if now >= before {
        now - before
    } else {
        now
    }
}

/// Cumulative bucket counts by upper bound (`+Inf` included), summed over
/// the samples `keep` selects.
fn buckets(
    families: &[Family],
    name: &str,
    keep: impl Fn(&Sample) -> bool,
) -> BTreeMap<Bound, f64> {
    let bucket_name = format!("{name}_bucket");
    let mut out = BTreeMap::new();
    for s in family(families, name).filter(|s| s.name == bucket_name && keep(s)) {
        let Some(le) = s.label("le").and_then(parse_bound) else {
            continue;
        };
        *out.entry(Bound(le)).or_insert(0.0) += s.value;
    }
    out
}

fn parse_bound(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        t => t.parse().ok(),
    }
}

/// An upper bound, ordered (bounds are never NaN).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bound(f64);

impl Eq for Bound {}

impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The bucket deltas between two reads of the same histogram.
fn bucket_delta(before: &BTreeMap<Bound, f64>, now: &BTreeMap<Bound, f64>) -> Vec<(f64, f64)> {
    // A reset anywhere: the process restarted; its counts since are the delta.
    let reset = now
        .iter()
        .any(|(le, v)| before.get(le).is_some_and(|b| v < b));
    now.iter()
        .map(|(le, v)| {
            let b = if reset {
                0.0
            } else {
                before.get(le).copied().unwrap_or(0.0)
            };
            (le.0, v - b)
        })
        .collect()
}

/// The `q` quantile of cumulative buckets `(upper bound, count)` sorted by
/// bound with `+Inf` last, as Prometheus's `histogram_quantile` computes it:
/// linear within the bucket that holds the rank, the highest finite bound
/// when that is `+Inf`. `None` without observations.
pub fn quantile(q: f64, cumulative: &[(f64, f64)]) -> Option<f64> {
    let total = cumulative.last().map(|b| b.1)?;
    if total.is_nan() || total <= 0.0 || cumulative.last().is_some_and(|b| b.0 != f64::INFINITY) {
        return None;
    }
    let rank = q * total;
    // Counts read at slightly different moments may dip: keep them monotone.
    let mut monotone = Vec::with_capacity(cumulative.len());
    let mut highest = 0.0f64;
    for (le, c) in cumulative {
        highest = highest.max(*c);
        monotone.push((*le, highest));
    }
    let i = monotone.iter().position(|b| b.1 >= rank)?;
    let (end, count) = monotone[i];
    if end == f64::INFINITY {
        return Some(if i == 0 { 0.0 } else { monotone[i - 1].0 });
    }
    let (start, below) = if i == 0 {
        if end <= 0.0 {
            return Some(end);
        }
        (0.0, 0.0)
    } else {
        monotone[i - 1]
    };
    let in_bucket = count - below;
    if in_bucket <= 0.0 {
        return Some(end);
    }
    Some(start + (end - start) * (rank - below) / in_bucket)
}

fn quantiles(
    before: &[&[Family]],
    now: &[&[Family]],
    name: &str,
    keep: &dyn Fn(&Sample) -> bool,
) -> Quantiles {
    let sum_over = |sets: &[&[Family]]| {
        let mut out: BTreeMap<Bound, f64> = BTreeMap::new();
        for families in sets {
            for (le, v) in buckets(families, name, keep) {
                *out.entry(le).or_insert(0.0) += v;
            }
        }
        out
    };
    let delta = bucket_delta(&sum_over(before), &sum_over(now));
    Quantiles {
        p50: quantile(0.5, &delta),
        p99: quantile(0.99, &delta),
    }
}

fn errors_by_type(
    families: &[&[Family]],
    name: &str,
    keep: &dyn Fn(&Sample) -> bool,
) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for f in families {
        for s in family(f, name).filter(|s| keep(s)) {
            if let Some(t) = s.label(labels::ERROR_TYPE) {
                *out.entry(t.to_owned()).or_insert(0.0) += s.value;
            }
        }
    }
    out.retain(|_, v| *v > 0.0);
    out
}

fn ok_families(scrape: &Scrape, want: impl Fn(ServerKind) -> bool) -> Vec<(&str, &[Family])> {
    scrape
        .targets
        .iter()
        .filter(|t| want(t.kind))
        .filter_map(|t| {
            t.result
                .as_ref()
                .ok()
                .map(|f| (t.address.as_str(), f.as_slice()))
        })
        .collect()
}

fn model_rows(before: &Scrape, now: &Scrape, dt: f64) -> Vec<ModelRow> {
    let frontends = ok_families(now, ServerKind::frontend_metrics);
    let now_sets: Vec<&[Family]> = frontends.iter().map(|t| t.1).collect();
    // Only targets read both times contribute deltas.
    let pairs: Vec<(&[Family], &[Family])> = frontends
        .into_iter()
        .filter_map(|(address, n)| {
            let b = before.target(address)?.result.as_ref().ok()?;
            Some((b.as_slice(), n))
        })
        .collect();
    let mut models: Vec<String> = now_sets
        .iter()
        .flat_map(|f| family(f, fe::REQUESTS_TOTAL).chain(family(f, fe::INFLIGHT_REQUESTS)))
        .filter_map(|s| s.label(fe::MODEL).map(str::to_owned))
        .collect();
    models.sort();
    models.dedup();
    models
        .into_iter()
        .map(|model| {
            let of_model = |s: &Sample| s.label(fe::MODEL) == Some(model.as_str());
            let rate = |name: &str, sample: &str| {
                pairs
                    .iter()
                    .map(|(b, n)| {
                        increase(
                            sum_where(b, name, sample, of_model),
                            sum_where(n, name, sample, of_model),
                        )
                    })
                    .sum::<f64>()
                    / dt
            };
            let befores: Vec<&[Family]> = pairs.iter().map(|p| p.0).collect();
            let nows: Vec<&[Family]> = pairs.iter().map(|p| p.1).collect();
            let osl_sum = format!("{}_sum", fe::OUTPUT_SEQUENCE_TOKENS);
            ModelRow {
                requests_per_s: rate(fe::REQUESTS_TOTAL, fe::REQUESTS_TOTAL),
                output_tokens_per_s: rate(fe::OUTPUT_SEQUENCE_TOKENS, &osl_sum),
                errors_per_s: rate(fe::REQUEST_ERRORS_TOTAL, fe::REQUEST_ERRORS_TOTAL),
                ttft: quantiles(&befores, &nows, fe::TIME_TO_FIRST_TOKEN_SECONDS, &of_model),
                itl: quantiles(&befores, &nows, fe::INTER_TOKEN_LATENCY_SECONDS, &of_model),
                inflight: now_sets
                    .iter()
                    .map(|f| sum_where(f, fe::INFLIGHT_REQUESTS, fe::INFLIGHT_REQUESTS, of_model))
                    .sum(),
                requests_total: now_sets
                    .iter()
                    .map(|f| sum_where(f, fe::REQUESTS_TOTAL, fe::REQUESTS_TOTAL, of_model))
                    .sum(),
                errors: errors_by_type(&now_sets, fe::REQUEST_ERRORS_TOTAL, &of_model),
                model,
            }
        })
        .collect()
}

fn endpoint_path(s: &Sample) -> Option<String> {
    let [ns, c, e] = labels::HIERARCHY.map(|l| s.label(l));
    Some(format!("{}/{}/{}", ns?, c?, e?))
}

fn worker_row(address: &str, before: Option<&[Family]>, now: &[Family], dt: f64) -> WorkerRow {
    let mut paths: Vec<String> = family(now, wh::REQUESTS_TOTAL)
        .chain(family(now, wh::CONCURRENT_REQUESTS))
        .filter_map(endpoint_path)
        .collect();
    paths.sort();
    paths.dedup();
    let endpoints: Vec<EndpointRow> = paths
        .into_iter()
        .map(|path| {
            let of_path = |s: &Sample| endpoint_path(s).as_deref() == Some(path.as_str());
            let requests_now = sum_where(now, wh::REQUESTS_TOTAL, wh::REQUESTS_TOTAL, of_path);
            let requests_per_s = before.map_or(0.0, |b| {
                increase(
                    sum_where(b, wh::REQUESTS_TOTAL, wh::REQUESTS_TOTAL, of_path),
                    requests_now,
                ) / dt
            });
            EndpointRow {
                requests_per_s,
                inflight: sum_where(
                    now,
                    wh::CONCURRENT_REQUESTS,
                    wh::CONCURRENT_REQUESTS,
                    of_path,
                ),
                errors: errors_by_type(&[now], wh::ERRORS_TOTAL, &of_path),
                duration: before.map_or_else(Quantiles::default, |b| {
                    quantiles(&[b], &[now], wh::REQUEST_DURATION_SECONDS, &of_path)
                }),
                path,
            }
        })
        .collect();
    let max_of = |name: &str| {
        family(now, name)
            .map(|s| s.value)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
    };
    let gpu_util: Vec<f64> = family(now, "DCGM_FI_DEV_GPU_UTIL")
        .map(|s| s.value)
        .collect();
    let used: Option<f64> = family(now, "DCGM_FI_DEV_FB_USED")
        .map(|s| s.value)
        .reduce(|a, b| a + b);
    let free: Option<f64> = family(now, "DCGM_FI_DEV_FB_FREE")
        .map(|s| s.value)
        .reduce(|a, b| a + b);
    WorkerRow {
        address: address.to_owned(),
        down: None,
        requests_per_s: endpoints.iter().map(|e| e.requests_per_s).sum(),
        inflight: endpoints.iter().map(|e| e.inflight).sum(),
        errors: endpoints
            .iter()
            .flat_map(|e| e.errors.values())
            .fold(0.0, |a, b| a + b),
        kv_usage: max_of(kvstats::GPU_CACHE_USAGE_PERCENT),
        waiting: family(now, kvstats::NUM_REQUESTS_WAITING)
            .map(|s| s.value)
            .reduce(|a, b| a + b),
        gpu_util: (!gpu_util.is_empty())
            .then(|| gpu_util.iter().sum::<f64>() / gpu_util.len() as f64),
        gpu_memory: used.map(|u| (u, u + free.unwrap_or(0.0))),
        endpoints,
    }
}

/// The frame's figures from the scrape before and the scrape now.
pub fn compute(before: &Scrape, now: &Scrape) -> Stats {
    let dt = (now.at - before.at).max(1e-9);
    let mut workers: Vec<WorkerRow> = now
        .targets
        .iter()
        .filter(|t| t.kind.worker_metrics())
        .filter(|t| {
            // A `--target` without worker metrics (a frontend) is no worker.
            t.kind != ServerKind::Any
                || t.result
                    .as_ref()
                    .map_or(true, |f| f.iter().any(|f| f.name == wh::REQUESTS_TOTAL))
        })
        .map(|t| match &t.result {
            Ok(families) => {
                let b = before
                    .target(&t.address)
                    .and_then(|b| b.result.as_ref().ok())
                    .map(Vec::as_slice);
                worker_row(&t.address, b, families, dt)
            }
            Err(e) => WorkerRow {
                address: t.address.clone(),
                down: Some(e.clone()),
                ..WorkerRow::default()
            },
        })
        .collect();
    workers.sort_by(|a, b| a.address.cmp(&b.address));
    Stats {
        interval: dt,
        models: model_rows(before, now, dt),
        workers,
        frontends_down: now
            .targets
            .iter()
            .filter(|t| t.kind == ServerKind::Frontend)
            .filter_map(|t| {
                t.result.as_ref().err().map(|e| DownTarget {
                    address: t.address.clone(),
                    error: e.clone(),
                })
            })
            .collect(),
        targets_up: now.targets.iter().filter(|t| t.result.is_ok()).count(),
        targets: now.targets.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynamo_runtime::exposition::parse;

    fn frontend_text(
        requests: u64,
        ttft: [u64; 3],
        osl_sum: u64,
        inflight: u64,
        errors: u64,
    ) -> String {
        format!(
            "# TYPE dynamo_frontend_requests_total counter\n\
             dynamo_frontend_requests_total{{endpoint=\"chat_completions\",model=\"m\",request_type=\"stream\",status=\"success\"}} {requests}\n\
             dynamo_frontend_requests_total{{endpoint=\"chat_completions\",model=\"other\",request_type=\"stream\",status=\"success\"}} 7\n\
             # TYPE dynamo_frontend_inflight_requests gauge\n\
             dynamo_frontend_inflight_requests{{model=\"m\"}} {inflight}\n\
             # TYPE dynamo_frontend_time_to_first_token_seconds histogram\n\
             dynamo_frontend_time_to_first_token_seconds_bucket{{model=\"m\",le=\"0.1\"}} {}\n\
             dynamo_frontend_time_to_first_token_seconds_bucket{{model=\"m\",le=\"1\"}} {}\n\
             dynamo_frontend_time_to_first_token_seconds_bucket{{model=\"m\",le=\"+Inf\"}} {}\n\
             dynamo_frontend_time_to_first_token_seconds_sum{{model=\"m\"}} 1\n\
             dynamo_frontend_time_to_first_token_seconds_count{{model=\"m\"}} {}\n\
             # TYPE dynamo_frontend_output_sequence_tokens histogram\n\
             dynamo_frontend_output_sequence_tokens_bucket{{model=\"m\",le=\"+Inf\"}} {requests}\n\
             dynamo_frontend_output_sequence_tokens_sum{{model=\"m\"}} {osl_sum}\n\
             dynamo_frontend_output_sequence_tokens_count{{model=\"m\"}} {requests}\n\
             # TYPE dynamo_frontend_request_errors_total counter\n\
             dynamo_frontend_request_errors_total{{endpoint=\"chat_completions\",error_type=\"engine\",model=\"m\"}} {errors}\n\
             dynamo_frontend_request_errors_total{{endpoint=\"chat_completions\",error_type=\"no_worker\",model=\"m\"}} 0\n",
            ttft[0], ttft[1], ttft[2], ttft[2]
        )
    }

    fn worker_text(requests: u64, inflight: u64, duration: [u64; 2]) -> String {
        let l =
            "dynamo_component=\"backend\",dynamo_endpoint=\"generate\",dynamo_namespace=\"dynamo\"";
        format!(
            "dynamo_component_requests_total{{{l}}} {requests}\n\
             dynamo_component_concurrent_requests{{{l}}} {inflight}\n\
             dynamo_component_errors_total{{{l},error_type=\"cancelled\"}} 2\n\
             dynamo_component_errors_total{{{l},error_type=\"handler\"}} 0\n\
             # TYPE dynamo_component_request_duration_seconds histogram\n\
             dynamo_component_request_duration_seconds_bucket{{{l},le=\"1\"}} {}\n\
             dynamo_component_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}\n\
             dynamo_component_request_duration_seconds_sum{{{l}}} 1\n\
             dynamo_component_request_duration_seconds_count{{{l}}} {}\n\
             dynamo_component_kvstats_gpu_cache_usage_percent{{{l}}} 0.25\n\
             DCGM_FI_DEV_GPU_UTIL{{gpu=\"0\"}} 80\nDCGM_FI_DEV_GPU_UTIL{{gpu=\"1\"}} 40\n\
             DCGM_FI_DEV_FB_USED{{gpu=\"0\"}} 1000\nDCGM_FI_DEV_FB_FREE{{gpu=\"0\"}} 3000\n",
            duration[0], duration[1], duration[1]
        )
    }

    fn scrape(at: f64, frontend: &str, worker: Result<String, String>) -> Scrape {
        Scrape {
            at,
            targets: vec![
                TargetScrape {
                    address: "fe:8080".into(),
                    kind: ServerKind::Frontend,
                    result: Ok(parse(frontend).unwrap()),
                },
                TargetScrape {
                    address: "w:8081".into(),
                    kind: ServerKind::System,
                    result: worker.map(|w| parse(&w).unwrap()),
                },
            ],
        }
    }

    #[test]
    fn rates_and_quantiles_come_from_the_deltas() {
        let before = scrape(
            10.0,
            &frontend_text(100, [50, 90, 100], 3000, 0, 1),
            Ok(worker_text(100, 0, [90, 100])),
        );
        // In 2 s: 20 requests, 640 tokens, TTFT 10 under 0.1 s and 10 in (0.1, 1].
        let now = scrape(
            12.0,
            &frontend_text(120, [60, 110, 120], 3640, 3, 2),
            Ok(worker_text(120, 3, [90, 120])),
        );
        let s = compute(&before, &now);
        assert_eq!(s.interval, 2.0);
        assert_eq!(s.models.len(), 2);
        let m = &s.models[0];
        assert_eq!(m.model, "m");
        assert_eq!(m.requests_per_s, 10.0);
        assert_eq!(m.output_tokens_per_s, 320.0);
        assert_eq!(m.inflight, 3.0);
        assert_eq!(m.requests_total, 120.0);
        assert_eq!(m.errors_per_s, 0.5);
        assert_eq!(m.errors, BTreeMap::from([("engine".to_owned(), 2.0)]));
        // Rank 10 of 20 is the last of the first bucket: its bound.
        assert_eq!(m.ttft.p50, Some(0.1));
        // Rank 19.8: 9.8 of the 10 in (0.1, 1] -> 0.1 + 0.9 * 0.98.
        assert!((m.ttft.p99.unwrap() - (0.1 + 0.9 * 0.98)).abs() < 1e-12);
        // The lifetime distribution would say otherwise: it is not used.
        assert_eq!(m.itl, Quantiles::default());
        assert_eq!(s.models[1].requests_per_s, 0.0);

        let w = &s.workers[0];
        assert_eq!(w.address, "w:8081");
        assert_eq!((w.requests_per_s, w.inflight, w.errors), (10.0, 3.0, 2.0));
        assert_eq!(w.kv_usage, Some(0.25));
        assert_eq!(w.gpu_util, Some(60.0));
        assert_eq!(w.gpu_memory, Some((1000.0, 4000.0)));
        assert_eq!(w.endpoints[0].path, "dynamo/backend/generate");
        // All 20 requests of the interval took more than 1 s: p50 is the
        // highest finite bound.
        assert_eq!(w.endpoints[0].duration.p50, Some(1.0));
        assert_eq!(s.targets_up, 2);
    }

    #[test]
    fn a_target_that_stops_answering_is_down_and_a_restart_is_not_negative() {
        let before = scrape(
            0.0,
            &frontend_text(100, [50, 90, 100], 3000, 0, 0),
            Ok(worker_text(100, 0, [90, 100])),
        );
        let now = scrape(
            1.0,
            &frontend_text(5, [5, 5, 5], 50, 0, 0),
            Err("connection refused".into()),
        );
        let s = compute(&before, &now);
        // The frontend restarted: its counts since are the interval's.
        assert_eq!(s.models[0].requests_per_s, 5.0);
        assert_eq!(s.models[0].ttft.p50, Some(0.05));
        assert_eq!(s.workers[0].down.as_deref(), Some("connection refused"));
        assert_eq!((s.targets_up, s.targets), (1, 2));
    }

    #[test]
    fn quantile_edges() {
        assert_eq!(quantile(0.5, &[]), None);
        assert_eq!(quantile(0.5, &[(f64::INFINITY, 0.0)]), None);
        assert_eq!(
            quantile(0.5, &[(1.0, 4.0), (f64::INFINITY, 4.0)]),
            Some(0.5)
        );
        assert_eq!(
            quantile(0.99, &[(1.0, 0.0), (f64::INFINITY, 4.0)]),
            Some(1.0)
        );
        assert_eq!(quantile(0.5, &[(f64::INFINITY, 4.0)]), Some(0.0));
        // Counts that dip (read at different moments) are made monotone.
        assert_eq!(
            quantile(0.5, &[(1.0, 4.0), (2.0, 3.0), (f64::INFINITY, 4.0)]),
            Some(0.5)
        );
    }
}
