//! Two worker processes and a client process over a real nats-server (started
//! here, JetStream on, on a free port): both workers' automatic metrics, a
//! worker killed mid-run, and malformed payloads sent straight over NATS.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Worker {
    proc: Proc,
    metrics_url: String,
    instance: String,
}

fn start_worker(nats: &str) -> Worker {
    let mut child = Command::new(env!("CARGO_BIN_EXE_worker"))
        .env("NATS_SERVER", nats)
        .env("DYN_SYSTEM_PORT", "0")
        .env("DYN_SYSTEM_HOST", "127.0.0.1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let metrics_url = lines
        .next()
        .unwrap()
        .unwrap()
        .trim_start_matches("metrics on ")
        .to_owned();
    let instance = lines
        .next()
        .unwrap()
        .unwrap()
        .trim_start_matches("serving instance ")
        .to_owned();
    Worker {
        proc: Proc(child),
        metrics_url,
        instance,
    }
}

fn run_client(nats: &str, requests: u32) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_client"))
        .env("NATS_SERVER", nats)
        .args(["--requests", &requests.to_string(), "--max-tokens", "6"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const LABELS: &str =
    r#"dynamo_component="backend",dynamo_endpoint="generate",dynamo_namespace="dynamo""#;

/// The value of one sample of the worker's /metrics.
fn sample(body: &str, name: &str, extra: &str) -> f64 {
    let key = format!("{name}{{{LABELS}{extra}}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&key))
        .unwrap_or_else(|| panic!("{key} missing\n{body}"))
        .parse()
        .unwrap()
}

fn scrape(w: &Worker) -> String {
    reqwest::blocking::get(&w.metrics_url)
        .unwrap()
        .text()
        .unwrap()
}

/// Waits until the worker has no request in flight and returns its /metrics.
fn settled(w: &Worker) -> String {
    for _ in 0..200 {
        let body = scrape(w);
        if sample(&body, "dynamo_component_concurrent_requests", "") == 0.0 {
            return body;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("requests did not settle");
}

fn requests(body: &str) -> f64 {
    sample(body, "dynamo_component_requests_total", "")
}

fn errors(body: &str, error_type: &str) -> f64 {
    sample(
        body,
        "dynamo_component_errors_total",
        &format!(",error_type=\"{error_type}\""),
    )
}

#[test]
fn two_workers_a_client_a_kill_and_malformed_payloads() {
    let nats = dynamo_testing::NatsServer::start();
    let url = nats.url.clone();
    let a = start_worker(&url);
    let b = start_worker(&url);

    // Each worker reports its endpoint ready.
    for w in [&a, &b] {
        let health_url = w.metrics_url.replace("/metrics", "/health");
        let health: serde_json::Value =
            reqwest::blocking::get(&health_url).unwrap().json().unwrap();
        assert_eq!(health["status"], "ready", "{health}");
        assert_eq!(
            health["endpoints"]["dynamo/backend/generate"], "ready",
            "{health}"
        );
    }

    // Traffic spreads over both workers, and each counts what it served.
    let summary = run_client(&url, 20);
    assert_eq!(summary["ok"], 20, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    let by_a = summary["by_instance"][&a.instance].as_f64().unwrap_or(0.0);
    let by_b = summary["by_instance"][&b.instance].as_f64().unwrap_or(0.0);
    assert_eq!(by_a + by_b, 20.0, "{summary}");
    assert!(
        by_a > 0.0 && by_b > 0.0,
        "round-robin reaches both: {summary}"
    );
    let (body_a, body_b) = (settled(&a), settled(&b));
    assert_eq!(requests(&body_a), by_a);
    assert_eq!(requests(&body_b), by_b);
    assert_eq!(
        sample(
            &body_a,
            "dynamo_component_request_duration_seconds_count",
            ""
        ),
        by_a
    );
    assert!(sample(&body_b, "dynamo_component_response_bytes_total", "") > 0.0);
    for body in [&body_a, &body_b] {
        for t in ["handler", "panic", "cancelled", "invalid_request"] {
            assert_eq!(errors(body, t), 0.0, "{t}");
        }
    }

    // Malformed payloads straight over NATS to worker b: counted, answered, survived.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let subject = format!("dynamo.rq.dynamo.backend.generate.{}.req", b.instance);
    let failed_frame = rt.block_on(async {
        let nc = async_nats::connect(&url).await.unwrap();
        let inbox = nc.new_inbox();
        let mut sub = nc.subscribe(inbox.clone()).await.unwrap();
        // Not JSON, with a reply subject: answered with a failed frame.
        nc.publish_with_reply(subject.clone(), inbox, "{not json".into())
            .await
            .unwrap();
        // No reply subject at all: counted, nowhere to answer.
        nc.publish(subject.clone(), "\u{0}\u{1}garbage".into())
            .await
            .unwrap();
        let frame =
            tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut sub))
                .await
                .unwrap()
                .unwrap();
        // A wire record: kind 2 (failed), then the length-prefixed error type.
        let p = frame.payload;
        assert_eq!(p[0], 2, "a failed record: {p:?}");
        let n = u32::from_le_bytes([p[1], p[2], p[3], p[4]]) as usize;
        String::from_utf8_lossy(&p[5..5 + n]).into_owned()
    });
    assert_eq!(failed_frame, "invalid_request");
    let body_b = settled(&b);
    assert_eq!(errors(&body_b, "invalid_request"), 2.0);
    assert_eq!(requests(&body_b), by_b + 2.0);
    assert!(body_b.contains("# TYPE dynamo_component_requests_total counter"));

    // Kill worker a: calls keep succeeding on b, and b counts each exactly once.
    drop(a.proc);
    let summary = run_client(&url, 20);
    assert_eq!(summary["ok"], 20, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_eq!(summary["by_instance"][&b.instance], 20, "{summary}");
    let body_b = settled(&b);
    assert_eq!(
        requests(&body_b),
        by_b + 2.0 + 20.0,
        "nothing counted twice"
    );
    assert_eq!(
        sample(
            &body_b,
            "dynamo_component_request_duration_seconds_count",
            ""
        ),
        by_b + 2.0 + 20.0
    );

    // The dead worker drops out of discovery within seconds (its
    // announcements stop; a watcher forgets it after one record lease).
    let gone_after = rt.block_on(async {
        let drt = dynamo_runtime::DistributedRuntime::from_config(dynamo_runtime::RuntimeConfig {
            request_plane: dynamo_runtime::RequestPlaneConfig::Nats {
                url: url.clone(),
                etcd_endpoints: None,
            },
            ..Default::default()
        })
        .unwrap();
        let view = drt.watch_records("dynamo_instances").await.unwrap();
        let listed = |id: &str| {
            view.values()
                .iter()
                .any(|v| String::from_utf8_lossy(v).contains(&format!("\"instance\":\"{id}\"")))
        };
        let start = Instant::now();
        loop {
            assert!(listed(&b.instance), "b is listed: {view:?}");
            if !listed(&a.instance) {
                return start.elapsed();
            }
            assert!(start.elapsed() < Duration::from_secs(15), "a still listed");
            view.changed(view.version(), Duration::from_millis(250))
                .await;
        }
    });
    assert!(gone_after < Duration::from_secs(15));
    drop(b);
}
