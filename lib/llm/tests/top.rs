//! `dynamo top --once` against `dynamo serve --with-load`: its figures agree
//! with the frontend's own /metrics, and a target that does not answer is
//! shown as down while the rest is read.

mod support;

use dynamo_llm::top::stats::quantile;
use dynamo_runtime::exposition::{self, Family};
use dynamo_runtime::prometheus_names::frontend as fe;
use std::time::Duration;

fn frontend_families(base: &str) -> Vec<Family> {
    let text = reqwest::blocking::get(format!("{base}/metrics"))
        .and_then(|r| r.text())
        .unwrap();
    exposition::parse(&text).unwrap()
}

fn requests_total(families: &[Family]) -> f64 {
    families
        .iter()
        .filter(|f| f.name == fe::REQUESTS_TOTAL)
        .flat_map(|f| &f.samples)
        .filter(|s| s.label(fe::MODEL) == Some("mock-model"))
        .map(|s| s.value)
        .sum()
}

/// The cells of `row` under each of `header`'s column titles (a column runs
/// from its title to the next; titles stand at least two spaces apart).
fn columns(header: &str, row: &str) -> Vec<(String, String)> {
    let header: Vec<char> = header.chars().collect();
    let row: Vec<char> = row.chars().collect();
    let mut starts = Vec::new();
    for i in 0..header.len() {
        let after_gap = i == 0 || (i >= 2 && header[i - 1] == ' ' && header[i - 2] == ' ');
        if header[i] != ' ' && after_gap {
            starts.push(i);
        }
    }
    let cut = |line: &[char], a: usize, b: usize| -> String {
        line.get(a.min(line.len())..b.min(line.len()))
            .map(|s| s.iter().collect::<String>())
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let mut out = Vec::new();
    for (k, start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(usize::MAX);
        out.push((cut(&header, *start, end), cut(&row, *start, end)));
    }
    out
}

fn cell<'a>(cols: &'a [(String, String)], title: &str) -> &'a str {
    cols.iter()
        .find(|(t, _)| t == title)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no column {title:?} in {cols:?}"))
}

fn seconds(text: &str) -> f64 {
    let (v, unit) = text.split_once(' ').unwrap_or((text, ""));
    let v: f64 = v
        .parse()
        .unwrap_or_else(|_| panic!("not a latency: {text:?}"));
    match unit {
        "s" => v,
        "ms" => v / 1e3,
        "µs" => v / 1e6,
        other => panic!("unit {other:?}"),
    }
}

#[test]
fn top_once_agrees_with_the_frontend_metrics() {
    let (serve, mut lines) = support::serve(
        &[
            "--with-load",
            "--http",
            "127.0.0.1:0",
            "--system-port",
            "0",
            "--ttft-ms",
            "20",
            "--itl-ms",
            "2",
        ],
        &[],
    );
    let frontend = support::next_line(&mut lines)
        .trim_start_matches("frontend on ")
        .to_owned();
    support::line_starting(&mut lines, "load batch 1:", Duration::from_secs(60));
    support::drain(lines);

    let before = requests_total(&frontend_families(&frontend));
    let out = support::run(&[
        "top",
        "--once",
        "--url",
        &frontend,
        "--target",
        "127.0.0.1:1",
        "--interval-ms",
        "2000",
        "--width",
        "140",
    ]);
    let after_families = frontend_families(&frontend);
    let after = requests_total(&after_families);
    let frame = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{frame}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let lines: Vec<&str> = frame.lines().collect();
    let find = |prefix: &str| {
        lines
            .iter()
            .position(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in\n{frame}"))
    };
    let header = lines[find("MODEL")];
    let model = columns(header, lines[find("mock-model")]);
    // Lifetime total: between the frontend's count before and after.
    let total: f64 = cell(&model, "REQUESTS").parse().unwrap();
    assert!(
        before <= total && total <= after,
        "{before} <= {total} <= {after}\n{frame}"
    );
    assert!(
        cell(&model, "REQ/S").parse::<f64>().unwrap() > 0.0,
        "{frame}"
    );
    assert!(
        cell(&model, "TOK/S").parse::<f64>().unwrap() > 0.0,
        "{frame}"
    );
    assert_eq!(cell(&model, "ERRORS"), "0", "{frame}");
    // TTFT p50 over the interval lies in the bucket that holds the lifetime
    // p50 the frontend's histogram gives (the mock's TTFT is constant).
    let ttft: Vec<(f64, f64)> = after_families
        .iter()
        .filter(|f| f.name == fe::TIME_TO_FIRST_TOKEN_SECONDS)
        .flat_map(|f| &f.samples)
        .filter(|s| s.name.ends_with("_bucket") && s.label(fe::MODEL) == Some("mock-model"))
        .map(|s| {
            let le = s.label("le").unwrap();
            (
                if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                },
                s.value,
            )
        })
        .collect();
    let lifetime = quantile(0.5, &ttft).unwrap();
    let upper = ttft.iter().find(|b| b.0 >= lifetime).unwrap().0;
    let lower = ttft
        .iter()
        .rev()
        .find(|b| b.0 < lifetime)
        .map_or(0.0, |b| b.0);
    let top_p50 = seconds(cell(&model, "TTFT p50"));
    assert!(
        lower <= top_p50 && top_p50 <= upper,
        "TTFT p50 {top_p50} outside ({lower}, {upper}] of the lifetime {lifetime}\n{frame}"
    );

    // The worker is up with its endpoint; the target that does not answer is down.
    let workers_header = lines[find("WORKER")];
    let down = columns(
        workers_header,
        lines[frame
            .lines()
            .position(|l| l.contains("127.0.0.1:1 "))
            .unwrap()],
    );
    assert_eq!(cell(&down, "STATE"), "DOWN", "{frame}");
    assert!(frame.contains("connection refused"), "{frame}");
    let first_worker = find("WORKER") + 1;
    let states: Vec<String> = lines[first_worker..]
        .iter()
        .take_while(|l| !l.trim().is_empty())
        .map(|l| cell(&columns(workers_header, l), "STATE").to_owned())
        .collect();
    assert_eq!(states.iter().filter(|s| *s == "up").count(), 1, "{frame}");
    assert_eq!(states.len(), 2, "{frame}");
    assert!(frame.contains("dynamo/mocker/generate"), "{frame}");
    // The frontend and the worker's system server, from discovery, and the
    // target given.
    assert!(frame.contains("2/3 targets up"), "{frame}");
    drop(serve);
}
