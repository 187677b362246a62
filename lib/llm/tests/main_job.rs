//! The README's main job, run as a user would: `dynamo serve` (frontend on
//! :8080, worker system server on :8081), a request, both /metrics, then
//! `dynamo load`, whose summary must agree with the frontend's /metrics.

mod support;

use std::time::{Duration, Instant};

fn get(url: &str) -> (u16, String) {
    let r = reqwest::blocking::get(url).unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

#[test]
fn serve_then_load() {
    let (serve, mut lines) = support::serve(&["--ttft-ms", "20", "--itl-ms", "2"], &[]);
    let first = support::next_line(&mut lines);
    assert!(
        first.starts_with("frontend on http://0.0.0.0:8080"),
        "{first}"
    );

    let reply: serde_json::Value = reqwest::blocking::Client::new()
        .post("http://127.0.0.1:8080/v1/chat/completions")
        .json(&serde_json::json!({"model": "mock-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(reply["usage"]["completion_tokens"], 4, "{reply}");

    let (status, frontend) = get("http://127.0.0.1:8080/metrics");
    assert_eq!(status, 200);
    assert!(frontend.contains("dynamo_frontend_requests_total{endpoint=\"chat_completions\",model=\"mock-model\",request_type=\"unary\",status=\"success\"} 1"), "{frontend}");
    let (status, worker) = get("http://127.0.0.1:8081/metrics");
    assert_eq!(status, 200);
    assert!(worker.contains("dynamo_component_requests_total{dynamo_component=\"mocker\",dynamo_endpoint=\"generate\",dynamo_namespace=\"dynamo\"} 1"), "{worker}");
    let (status, health) = get("http://127.0.0.1:8081/health");
    assert_eq!(status, 200);
    assert!(
        health.contains("\"dynamo/mocker/generate\":\"ready\""),
        "{health}"
    );

    let start = Instant::now();
    let load = support::run(&[
        "load",
        "--requests",
        "30",
        "--concurrency",
        "4",
        "--max-tokens",
        "8",
        "--quiet",
    ]);
    assert!(start.elapsed() < Duration::from_secs(120));
    let out = String::from_utf8_lossy(&load.stdout);
    assert!(
        load.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&load.stderr)
    );
    assert!(out.contains("requests: 30 ok, 0 failed"), "{out}");
    assert!(
        out.contains("frontend /metrics for this run: 30 successful requests"),
        "{out}"
    );
    for row in ["TTFT", "ITL", "end-to-end"] {
        assert!(
            out.lines().any(|l| l.starts_with(row)),
            "{row} missing:\n{out}"
        );
    }
    drop(serve);
}

#[test]
fn serve_with_load_drives_its_own_traffic() {
    let (serve, mut lines) = support::serve(
        &[
            "--with-load",
            "--http",
            "127.0.0.1:0",
            "--system-port",
            "0",
            "--ttft-ms",
            "5",
            "--itl-ms",
            "1",
        ],
        &[],
    );
    let frontend = support::next_line(&mut lines)
        .trim_start_matches("frontend on ")
        .to_owned();
    let batch = support::line_starting(&mut lines, "load batch 1:", Duration::from_secs(60));
    assert!(batch.contains("40 ok, 0 failed"), "{batch}");
    let (_, metrics) = get(&format!("{frontend}/metrics"));
    let ok: f64 = metrics
        .lines()
        .find(|l| {
            l.starts_with("dynamo_frontend_requests_total{")
                && l.contains("request_type=\"stream\",status=\"success\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no streamed successes\n{metrics}"));
    assert!(ok >= 40.0, "{ok}");
    drop(serve);
}

/// `DYN_SYSTEM_HOST` is the address the system server binds, with the port of
/// `--system-port` (127.0.0.2 is loopback too, but not 127.0.0.1).
#[test]
fn the_system_server_binds_the_host_it_is_given() {
    let port = dynamo_testing::free_port();
    let port_arg = port.to_string();
    let (_serve, mut lines) = support::serve(
        &["--http", "127.0.0.1:0", "--system-port", &port_arg],
        &[("DYN_SYSTEM_HOST", "127.0.0.2")],
    );
    let _frontend = support::next_line(&mut lines);
    let system = support::next_line(&mut lines);
    assert!(
        system.contains(&format!("http://127.0.0.2:{port}/metrics")),
        "{system}"
    );
    let ok = reqwest::blocking::get(format!("http://127.0.0.2:{port}/live")).unwrap();
    assert_eq!(ok.status(), 200);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "bound to 127.0.0.2 only"
    );
}
