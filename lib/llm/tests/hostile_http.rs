//! Hostile clients against the frontend's API port and the system server,
//! over real TCP: slow and idle connections are closed, a full API port
//! leaves the system server answering, and every refusal is a JSON error.

use dynamo_llm::http::{Frontend, FrontendConfig, MAX_HEADER_BYTES};
use dynamo_llm::mocker::MockerConfig;
use dynamo_llm::registry::ModelRegistry;
use dynamo_runtime::http_server::HttpLimits;
use dynamo_runtime::{DistributedRuntime, RuntimeConfig, SystemServerConfig};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEADER_TIMEOUT: Duration = Duration::from_millis(400);
const MAX_CONNECTIONS: usize = 6;
/// Every wait of these tests has this deadline.
const DEADLINE: Duration = Duration::from_secs(10);

struct Deployment {
    api: SocketAddr,
    system: SocketAddr,
    _worker: dynamo_llm::MockWorker,
}

async fn deploy() -> Deployment {
    let drt = DistributedRuntime::from_config(RuntimeConfig {
        system_server: SystemServerConfig::Enabled {
            host: "127.0.0.1".into(),
            port: 0,
        },
        ..Default::default()
    })
    .unwrap();
    let registry = ModelRegistry::new(drt.clone());
    let mocker = MockerConfig {
        ttft: Duration::from_millis(1),
        itl: Duration::from_millis(1),
    };
    let worker = dynamo_llm::start_mock_worker(&drt, &registry, "mock-model", mocker)
        .await
        .unwrap();
    let config = FrontendConfig {
        http: HttpLimits {
            header_read_timeout: HEADER_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            ..HttpLimits::default()
        },
        ..Default::default()
    };
    let frontend = Frontend::new(drt.clone(), registry, config).unwrap();
    let api = frontend
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    Deployment {
        api,
        system: drt.system_server_addr().unwrap(),
        _worker: worker,
    }
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closed the connection within the deadline");
    all
}

async fn get(addr: SocketAddr, path: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .unwrap()
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_and_the_system_server_keeps_answering() {
    let d = deploy().await;
    // Fill every connection of the API port with a client that never ends its headers.
    let mut slow = Vec::new();
    for _ in 0..MAX_CONNECTIONS + 4 {
        let mut s = TcpStream::connect(d.api).await.unwrap();
        s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    // The system server has its own listener and capacity.
    for path in ["/metrics", "/health", "/live"] {
        let r = get(d.system, path).await;
        assert!(
            r.status().is_success() || r.status() == 503,
            "{path}: {}",
            r.status()
        );
    }
    // Every slow client is cut off after the header-read timeout, those
    // waiting in the backlog too once they are accepted.
    for s in &mut slow {
        read_to_close(s).await;
    }
    // An idle keep-alive connection is closed after the same timeout.
    let mut idle = TcpStream::connect(d.api).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut idle).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // And the API port serves again.
    let r = get(d.api, "/v1/models").await;
    assert_eq!(r.status(), 200);
}

async fn json_error(r: reqwest::Response, status: u16) -> Value {
    assert_eq!(r.status().as_u16(), status);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].is_string(), "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_of_the_api_port_are_json_errors_and_counted() {
    let d = deploy().await;
    let http = reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .unwrap();
    let url = |path: &str| format!("http://{}{path}", d.api);
    json_error(http.get(url("/no/such/route")).send().await.unwrap(), 404).await;
    json_error(http.delete(url("/v1/models")).send().await.unwrap(), 405).await;
    let body = r#"{"model":"mock-model","messages":[{"role":"user","content":"hi"}]}"#;
    let not_json = http
        .post(url("/v1/chat/completions"))
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .unwrap();
    json_error(not_json, 415).await;
    let no_type = http
        .post(url("/v1/chat/completions"))
        .body(body)
        .send()
        .await
        .unwrap();
    json_error(no_type, 415).await;
    let big = "x".repeat(MAX_HEADER_BYTES + 1);
    let r = http
        .get(url("/v1/models"))
        .header("x-big", &big)
        .send()
        .await
        .unwrap();
    json_error(r, 431).await;
    // Past the server's own limit, the connection is refused with a bare 431.
    let huge = "x".repeat(HttpLimits::default().max_header_bytes + 1);
    let r = http
        .get(url("/v1/models"))
        .header("x-huge", &huge)
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status().as_u16(), 431);
    }
    // Still up, and the refusals are counted under the fixed model value.
    let ok = http
        .post(url("/v1/chat/completions"))
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let text = http
        .get(url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("dynamo_frontend_request_errors_total{")
                && l.contains("error_type=\"invalid_request\"")
                && l.contains("model=\"unknown\"")
        })
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.ends_with(" 2"), "{line}");
}
