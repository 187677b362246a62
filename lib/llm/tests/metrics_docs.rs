//! `docs/metrics-overview.md` keeps a table of every metric the project emits.
//! This test runs everything that emits metrics (a worker endpoint, the
//! frontend with its preprocessor, a failing scrape-time callback), scrapes the
//! process, and requires a row for each family, with its type, labels and
//! buckets as emitted; and a row for every metric name in
//! `prometheus_names`. A metric added to the code without a row fails here,
//! and the failure prints the row to add.

mod support;

use dynamo_llm::http::{Frontend, FrontendConfig};
use dynamo_llm::mocker::MockerConfig;
use dynamo_llm::registry::ModelRegistry;
use dynamo_runtime::{prometheus_names, DistributedRuntime, RuntimeConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// One metric as the docs table states it, or as the scrape shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Row {
    kind: String,
    labels: BTreeSet<String>,
    buckets: Vec<String>,
}

/// The rows of the table: `| `name` | type | `l1`, `l2` | buckets | meaning |`.
fn documented() -> BTreeMap<String, Row> {
    let doc = support::read_repo_file("docs/metrics-overview.md");
    let mut rows = BTreeMap::new();
    for line in doc.lines().filter(|l| l.starts_with("| `dynamo_")) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert_eq!(cells.len(), 5, "a metrics row has 5 cells: {line}");
        let name = cells[0].trim_matches('`').to_owned();
        let labels = cells[2]
            .split(',')
            .map(|l| l.trim().trim_matches('`').to_owned())
            .filter(|l| !l.is_empty() && l != "none")
            .collect();
        let buckets = if cells[3] == "—" {
            Vec::new()
        } else {
            cells[3].split_whitespace().map(str::to_owned).collect()
        };
        let row = Row {
            kind: cells[1].to_owned(),
            labels,
            buckets,
        };
        assert!(
            rows.insert(name.clone(), row).is_none(),
            "two rows for {name}"
        );
    }
    rows
}

/// Every family of a scrape, from its `# TYPE` line and its samples.
fn emitted(scrape: &str) -> BTreeMap<String, Row> {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for line in scrape.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            rows.entry(name.to_owned()).or_default().kind = kind.to_owned();
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, _) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                let base = name.strip_suffix(s)?;
                (rows.get(base)?.kind == "histogram").then_some(base)
            })
            .unwrap_or(name);
        let row = rows
            .get_mut(family)
            .unwrap_or_else(|| panic!("no TYPE for {line}"));
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (label, value) = pair.split_once("=\"").unwrap();
            if label == "le" {
                let value = value.trim_end_matches('"').to_owned();
                if value != "+Inf" && !row.buckets.contains(&value) {
                    row.buckets.push(value);
                }
            } else {
                row.labels.insert(label.to_owned());
            }
        }
    }
    rows
}

/// The metric names `prometheus_names` declares (its `"dynamo_..."` constants
/// that are names, not prefixes or the hierarchy's label names).
fn declared_names() -> BTreeSet<String> {
    support::read_repo_file("lib/runtime/src/metrics/prometheus_names.rs")
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("pub const ")?
                .split_once("= \"")
                .map(|(_, v)| v)
        })
        .map(|v| v.trim_end_matches("\";").to_owned())
        .filter(|v| v.starts_with("dynamo_") && !v.ends_with('_'))
        .filter(|v| !prometheus_names::labels::HIERARCHY.contains(&v.as_str()))
        .collect()
}

fn row_text(name: &str, r: &Row) -> String {
    let labels: Vec<String> = r.labels.iter().map(|l| format!("`{l}`")).collect();
    let labels = if labels.is_empty() {
        "none".to_owned()
    } else {
        labels.join(", ")
    };
    let buckets = if r.buckets.is_empty() {
        "—".to_owned()
    } else {
        r.buckets.join(" ")
    };
    format!(
        "| `{name}` | {} | {labels} | {buckets} | (what it means) |",
        r.kind
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_emitted_and_declared_metric_has_a_row_in_the_docs_table() {
    let drt = DistributedRuntime::from_config(RuntimeConfig::default()).unwrap();
    let registry = ModelRegistry::new(drt.clone());
    let mocker = MockerConfig {
        ttft: Duration::from_millis(1),
        itl: Duration::from_millis(1),
    };
    let _worker = dynamo_llm::start_mock_worker(&drt, &registry, "m", mocker)
        .await
        .unwrap();
    let frontend = Frontend::new(drt.clone(), registry, FrontendConfig::default()).unwrap();
    let addr = frontend
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    for body in [
        serde_json::json!({"model": "m", "stream": true, "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}),
        serde_json::json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}),
    ] {
        http.post(format!("http://{addr}/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    }
    drt.metrics()
        .register_callback(|| Err::<(), _>("a failing callback, for its failure counter"));
    // A full labelled family, for the counter of refused label sets.
    let full = drt
        .metrics()
        .create_intcountervec("docs_full_total", "A full family", &["k"], &[])
        .unwrap();
    full.set_series_limit(1).unwrap();
    full.with_label_values(&["a"]).inc();
    full.with_label_values(&["b"]).inc();
    let _ = drt.metrics().prometheus_metrics_fmt().unwrap();
    let scrape = drt.metrics().prometheus_metrics_fmt().unwrap();

    let docs = documented();
    let mut emitted = emitted(&scrape);
    emitted.remove("dynamo_component_docs_full_total"); // this test's own family
    let mut problems = Vec::new();
    for (name, row) in &emitted {
        match docs.get(name) {
            None => problems.push(format!("no row; add:\n{}", row_text(name, row))),
            Some(d) if d != row => problems.push(format!(
                "row differs from the code; it should read:\n{}",
                row_text(name, row)
            )),
            Some(_) => {}
        }
    }
    let declared = declared_names();
    for name in &declared {
        if !docs.contains_key(name) {
            problems.push(format!("{name} is in prometheus_names but has no row"));
        }
        if !emitted.contains_key(name) {
            problems.push(format!(
                "{name} is in prometheus_names but this test does not emit it"
            ));
        }
    }
    for name in docs.keys() {
        if !emitted.contains_key(name) {
            problems.push(format!("the row for {name} names a metric nothing emits"));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/metrics-overview.md is out of step with the code:\n{}",
        problems.join("\n")
    );
    assert!(emitted.len() >= 20, "{emitted:?}");
}
