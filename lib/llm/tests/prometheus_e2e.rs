//! The deploy side against a real Prometheus (the Debian package, started
//! here): the repository's `deploy/metrics/prometheus.yml` aimed at the main
//! job (`dynamo serve`, frontend :8080, worker :8081), which Prometheus finds
//! through the frontend's HTTP service discovery; traffic from `dynamo load`;
//! then every query of the Dynamo dashboard, with its Grafana variables
//! substituted, evaluated through Prometheus's HTTP API and required to return
//! data. The DCGM dashboard's queries must be valid PromQL (they need a GPU to
//! return data). Prometheus runs with exemplar storage: requests sent with a
//! W3C `traceparent` must be found by their trace id through
//! `/api/v1/query_exemplars`, on the frontend's histograms and on the worker's
//! endpoint histogram, under the same request id.

mod support;

use dynamo_testing::PrometheusServer;
use serde_json::Value;
use std::time::{Duration, Instant};

fn dashboard(name: &str) -> Value {
    let rel = format!("deploy/metrics/grafana/dashboards/{name}");
    serde_json::from_str(&support::read_repo_file(&rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every PromQL expression of a dashboard's panels, with the panel's title.
fn panel_queries(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            out.push((
                p["title"].as_str().unwrap().to_owned(),
                t["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

/// `label_values(selector, label)`, Grafana's variable query, split up.
fn label_values_query(q: &str) -> (String, String) {
    let inner = q
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not a label_values query: {q}"));
    let (selector, label) = inner.rsplit_once(',').unwrap();
    (selector.trim().to_owned(), label.trim().to_owned())
}

/// Grafana's built-in variables and the dashboard's own, as chosen values.
fn substitute(expr: &str, vars: &[(String, String)]) -> String {
    let mut e = expr
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "5s")
        .replace("$__range", "5m");
    // Longest names first, so `$model` never eats part of `$model_name`.
    let mut vars = vars.to_vec();
    vars.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    for (name, value) in vars {
        e = e
            .replace(&format!("${{{name}}}"), &value)
            .replace(&format!("${name}"), &value);
    }
    assert!(!e.contains('$'), "a variable is left in {e}");
    e
}

/// A regex matching exactly `v` (label values in `=~` matchers).
fn regex_escape(v: &str) -> String {
    v.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

struct Api {
    url: String,
    http: reqwest::blocking::Client,
}

impl Api {
    fn get(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .query(params)
            .send()
            .unwrap();
        r.json().unwrap()
    }

    fn query(&self, expr: &str) -> Value {
        self.get("/api/v1/query", &[("query", expr)])
    }

    /// The single value of a query returning one series, if it has one.
    fn scalar(&self, expr: &str) -> Option<f64> {
        let v = self.query(expr);
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    fn label_values(&self, selector: &str, label: &str) -> Vec<String> {
        let v = self.get(
            &format!("/api/v1/label/{label}/values"),
            &[("match[]", selector)],
        );
        assert_eq!(v["status"], "success", "{selector} {label}: {v}");
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    }

    /// Waits until `expr` (one series) reaches `want`.
    fn wait_for(&self, expr: &str, want: f64, prom: &PrometheusServer) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.scalar(expr);
            if got.is_some_and(|g| g >= want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{expr} stayed at {got:?}, want {want}\ntargets: {}\nlog:\n{}",
                self.get("/api/v1/targets", &[]),
                prom.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn load(requests: usize, unary: bool) {
    let requests = requests.to_string();
    let mut args = vec![
        "load",
        "--requests",
        &requests,
        "--concurrency",
        "8",
        "--max-tokens",
        "12",
        "--quiet",
    ];
    if unary {
        args.push("--unary");
    }
    let out = support::run(&args);
    assert!(
        out.status.success(),
        "dynamo load: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends `n` streamed requests, each with its own `traceparent`; returns
/// their trace ids and the response ids the frontend gave them.
fn traced(http: &reqwest::blocking::Client, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let trace_id = format!("{:016x}{:016x}", fastrand::u64(1..), i + 1);
            let body = http
                .post("http://127.0.0.1:8080/v1/chat/completions")
                .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
                .json(
                    &serde_json::json!({"model": "mock-model", "stream": true, "max_tokens": 4,
                    "messages": [{"role": "user", "content": "hi"}]}),
                )
                .send()
                .and_then(|r| r.text())
                .unwrap();
            let first = body.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            let chunk: Value = serde_json::from_str(first).unwrap();
            (trace_id, chunk["id"].as_str().unwrap().to_owned())
        })
        .collect()
}

/// Every traced request is an exemplar of the frontend's TTFT, ITL and
/// duration histograms and of the worker's duration histogram, under its
/// response id, as Prometheus stored them. Each bucket keeps its last
/// exemplar, and the traced requests went last, so the last one's is there
/// on each histogram; for the histograms observed once per request (TTFT,
/// durations) every stored exemplar with one of our trace ids has the
/// matching request id.
fn exemplars_carry_the_trace(api: &Api, traces: &[(String, String)], prom: &PrometheusServer) {
    let end = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 60
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    for metric in [
        "dynamo_frontend_time_to_first_token_seconds_bucket",
        "dynamo_frontend_inter_token_latency_seconds_bucket",
        "dynamo_frontend_request_duration_seconds_bucket",
        "dynamo_component_request_duration_seconds_bucket",
    ] {
        loop {
            let v = api.get(
                "/api/v1/query_exemplars",
                &[("query", metric), ("start", "0"), ("end", &end)],
            );
            assert_eq!(v["status"], "success", "{metric}: {v}");
            let found: Vec<(String, String)> = v["data"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|s| s["exemplars"].as_array().cloned().unwrap_or_default())
                .filter_map(|e| {
                    let l = &e["labels"];
                    Some((
                        l["trace_id"].as_str()?.to_owned(),
                        l["request_id"].as_str()?.to_owned(),
                    ))
                })
                .collect();
            let last = traces.last().unwrap();
            if found.contains(last) {
                for (trace, id) in &found {
                    if let Some((_, want)) = traces.iter().find(|(t, _)| t == trace) {
                        assert_eq!(id, want, "{metric}: trace {trace}");
                    }
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{metric}: no exemplar with trace {last:?} in {v}\n{}",
                prom.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// A streamed request whose client goes away after the first chunk, and one
/// for a model nobody serves: the error panels need errors.
fn errors(http: &reqwest::blocking::Client) {
    use std::io::Read;
    let mut r = http
        .post("http://127.0.0.1:8080/v1/chat/completions")
        .json(
            &serde_json::json!({"model": "mock-model", "stream": true, "max_tokens": 500,
            "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .unwrap();
    let mut first = [0u8; 16];
    r.read_exact(&mut first).unwrap();
    drop(r);
    let r = http
        .post("http://127.0.0.1:8080/v1/chat/completions")
        .json(&serde_json::json!({"model": "no-such-model",
            "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let (_serve, mut lines) = support::serve(&["--ttft-ms", "10", "--itl-ms", "2"], &[]);
    let first = support::next_line(&mut lines);
    assert!(first.starts_with("frontend on "), "{first}");
    support::drain(lines);

    // etcd where prometheus.yml scrapes it (unless one already serves there),
    // for the dashboard's discovery row.
    let free = std::net::TcpListener::bind("127.0.0.1:2379").is_ok();
    let _etcd = free.then(|| {
        dynamo_testing::EtcdServer::try_start_on(2379).expect(
            "etcd starts on :2379 (scripts/test.sh installs the Debian package etcd-server)",
        )
    });
    let prom = PrometheusServer::start_with(
        &support::repo().join("deploy/metrics/prometheus.yml"),
        &["--enable-feature=exemplar-storage"],
    );
    let api = Api {
        url: prom.url.clone(),
        http: reqwest::blocking::Client::new(),
    };

    // Discovery: the main job's one process publishes its system server.
    api.wait_for(
        r#"sum(up{job="dynamo",dynamo_server="system",instance="127.0.0.1:8081"})"#,
        1.0,
        &prom,
    );

    api.wait_for(r#"sum(up{job="etcd"})"#, 1.0, &prom);

    // Two rounds of traffic, each seen by a scrape, so that every rate over
    // the dashboards' window has an increase to show.
    let http = reqwest::blocking::Client::new();
    let ok = r#"sum(dynamo_frontend_requests_total{status="success"})"#;
    load(30, false);
    errors(&http);
    api.wait_for(ok, 30.0, &prom);
    load(60, false);
    load(20, true);
    errors(&http);
    let traces = traced(&http, 3);
    api.wait_for(ok, 113.0, &prom);
    exemplars_carry_the_trace(&api, &traces, &prom);
    // The SLO row reads recording rules: wait for their first evaluation
    // over this traffic.
    api.wait_for(
        r#"count(model:dynamo_frontend_time_to_first_token_seconds:p99_5m{model="mock-model"} >= 0)"#,
        1.0,
        &prom,
    );
    api.wait_for(
        r#"count(model:dynamo_goodput:ratio_rate5m{model="mock-model"} >= 0)"#,
        1.0,
        &prom,
    );

    // The dashboard's variables, each from its own label_values query.
    let dyn_dash = dashboard("grafana-dynamo-dashboard.json");
    let mut vars: Vec<(String, String)> = Vec::new();
    for v in dyn_dash["templating"]["list"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap().to_owned();
        let (selector, label) = label_values_query(v["query"]["query"].as_str().unwrap());
        let values = api.label_values(&substitute(&selector, &vars), &label);
        assert!(
            !values.is_empty(),
            "variable ${name}: no values for {selector}"
        );
        vars.push((name, regex_escape(&values[0])));
    }
    assert!(
        vars.contains(&("model".to_owned(), "mock-model".to_owned())),
        "{vars:?}"
    );

    let queries = panel_queries(&dyn_dash);
    assert!(queries.len() >= 20, "{queries:?}");
    let mut empty = Vec::new();
    for (title, expr) in &queries {
        let e = substitute(expr, &vars);
        let v = api.query(&e);
        assert_eq!(v["status"], "success", "{title}: {e}\n{v}");
        let finite = v["data"]["result"].as_array().unwrap().iter().any(|s| {
            s["value"][1]
                .as_str()
                .and_then(|x| x.parse::<f64>().ok())
                .is_some_and(f64::is_finite)
        });
        // GPUs and the NATS exporter are not here: valid queries, no data.
        let absent_here = e.contains("DCGM_FI_") || e.contains("gnatsd_");
        if !finite && !absent_here {
            empty.push(format!("{title}: {e} -> {v}"));
        }
    }
    assert!(
        empty.is_empty(),
        "queries without data:\n{}",
        empty.join("\n")
    );

    // Values that follow from the traffic, read through the dashboard's queries.
    let ttft_p50 = api
        .scalar(&substitute(
            r#"histogram_quantile(0.5, sum by (le) (rate(dynamo_frontend_time_to_first_token_seconds_bucket{model=~"$model"}[$__rate_interval])))"#,
            &vars,
        ))
        .unwrap();
    assert!(
        (0.005..0.25).contains(&ttft_p50),
        "TTFT p50 {ttft_p50} for a 10 ms mock"
    );
    let cancelled = api.scalar(r#"sum(dynamo_component_errors_total{error_type="cancelled"})"#);
    assert_eq!(
        cancelled,
        Some(2.0),
        "two client disconnects reach the worker as cancels"
    );

    // GPUs: the DCGM dashboard's queries and variable queries must parse.
    let dcgm = dashboard("grafana-dcgm-metrics.json");
    let mut dcgm_vars = Vec::new();
    for v in dcgm["templating"]["list"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap().to_owned();
        let (selector, label) = label_values_query(v["query"]["query"].as_str().unwrap());
        api.label_values(&substitute(&selector, &dcgm_vars), &label);
        dcgm_vars.push((name, ".*".to_owned()));
    }
    let dcgm_queries = panel_queries(&dcgm);
    assert!(dcgm_queries.len() >= 9);
    for (title, expr) in dcgm_queries {
        let e = substitute(&expr, &dcgm_vars);
        let v = api.query(&e);
        assert_eq!(v["status"], "success", "{title}: {e}\n{v}");
    }
}
