//! `dynamo serve --role worker` and `--role frontend` as separate processes
//! over a real nats-server (started here): the frontend finds the worker's
//! model through discovery and routes to it; each process serves its metrics.

mod support;

/// Starts `dynamo serve` with these arguments and its own system server on a
/// free port; returns it with its first stdout line.
fn serve(args: &[&str]) -> (support::Dynamo, String) {
    let (proc, mut lines) = support::serve(
        args,
        &[
            ("DYN_SYSTEM_PORT", "0"),
            ("DYN_SYSTEM_HOST", "127.0.0.1"),
            // Discovery's steps, for the logs a failing assertion shows.
            (
                "DYN_LOG",
                "info,dynamo_runtime::discovery=debug,dynamo_runtime::runtime=debug",
            ),
        ],
    );
    let line = support::next_line(&mut lines);
    support::drain(lines);
    (proc, line)
}

#[test]
fn frontend_and_worker_as_two_processes() {
    let nats = dynamo_testing::NatsServer::start();
    let url = nats.url.clone();
    let (worker, line) = serve(&[
        "--nats",
        &url,
        "--role",
        "worker",
        "--ttft-ms",
        "5",
        "--itl-ms",
        "1",
    ]);
    let worker_metrics = line
        .strip_prefix("worker metrics on ")
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    let (frontend_proc, line) = serve(&[
        "--nats",
        &url,
        "--role",
        "frontend",
        "--http",
        "127.0.0.1:0",
    ]);
    let frontend = line
        .strip_prefix("frontend on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();

    let http = reqwest::blocking::Client::new();
    for _ in 0..5 {
        let v: serde_json::Value = http
            .post(format!("{frontend}/v1/chat/completions"))
            .json(&serde_json::json!({"model": "mock-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(v["usage"]["completion_tokens"], 3, "{v}");
    }
    let fm = http
        .get(format!("{frontend}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(fm.contains("dynamo_frontend_requests_total{endpoint=\"chat_completions\",model=\"mock-model\",request_type=\"unary\",status=\"success\"} 5"), "{fm}");
    assert!(
        !fm.contains("dynamo_component_requests_total{"),
        "the frontend process serves no endpoint"
    );
    let wm = http.get(&worker_metrics).send().unwrap().text().unwrap();
    assert!(wm.contains("dynamo_component_requests_total{dynamo_component=\"mocker\",dynamo_endpoint=\"generate\",dynamo_namespace=\"dynamo\"} 5"), "{wm}");
    assert!(
        !wm.contains("dynamo_frontend_requests_total{"),
        "the worker process runs no frontend"
    );

    // Prometheus discovery: the frontend lists both processes' system servers
    // (each process here runs one: DYN_SYSTEM_PORT=0).
    let worker_addr = worker_metrics
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned();
    let mut sd = serde_json::Value::Null;
    for _ in 0..100 {
        sd = http
            .get(format!("{frontend}/discovery/prometheus"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        if sd[0]["targets"].as_array().is_some_and(|t| t.len() == 2) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let logs = || {
        format!(
            "{sd}\n--- worker (system server {worker_addr}) ---\n{}\n--- frontend ---\n{}",
            worker.logs(),
            frontend_proc.logs()
        )
    };
    assert_eq!(sd[0]["labels"]["dynamo_server"], "system", "{}", logs());
    let targets = sd[0]["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2, "{}", logs());
    assert!(
        targets.contains(&serde_json::json!(worker_addr)),
        "{}",
        logs()
    );
    for t in targets {
        let body = http
            .get(format!("http://{}/metrics", t.as_str().unwrap()))
            .send()
            .unwrap()
            .text()
            .unwrap();
        assert!(
            body.contains("dynamo_component_system_uptime_seconds"),
            "{t}: {body}"
        );
    }
}

#[test]
fn a_role_without_nats_is_a_clear_error() {
    let out = support::run(&["serve", "--role", "worker"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--nats"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
