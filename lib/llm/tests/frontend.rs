//! The frontend with a mock worker in one process, driven over real HTTP:
//! responses, errors, a client disconnect, and the LLM metrics checked exactly.

use dynamo_llm::http::{Frontend, FrontendConfig};
use dynamo_llm::mocker::MockerConfig;
use dynamo_llm::registry::{ModelEntry, ModelRegistry};
use dynamo_runtime::{DistributedRuntime, RuntimeConfig};
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;

const TTFT_MS: u64 = 30;
const ITL_MS: u64 = 5;

async fn setup() -> (String, dynamo_llm::MockWorker, ModelRegistry) {
    let drt = DistributedRuntime::from_config(RuntimeConfig::default()).unwrap();
    let registry = ModelRegistry::new(drt.clone());
    let mocker = MockerConfig {
        ttft: Duration::from_millis(TTFT_MS),
        itl: Duration::from_millis(ITL_MS),
    };
    let worker = dynamo_llm::start_mock_worker(&drt, &registry, "mock-model", mocker)
        .await
        .unwrap();
    let config = FrontendConfig {
        max_body_bytes: 64 * 1024,
        max_prompt_bytes: 32 * 1024,
        ..Default::default()
    };
    let frontend = Frontend::new(drt, registry.clone(), config).unwrap();
    let addr = frontend
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    (format!("http://{addr}"), worker, registry)
}

/// The value of the one sample with this name whose labels contain all of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    let found: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}\n{text}");
    found[0]
}

async fn metrics(url: &str) -> String {
    reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn settled(url: &str) -> String {
    for _ in 0..300 {
        let text = metrics(url).await;
        if sample(
            &text,
            "dynamo_frontend_inflight_requests",
            &["model=\"mock-model\""],
        ) == 0.0
        {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("inflight did not return to 0");
}

fn promtool_clean(text: &str) {
    dynamo_testing::promtool_check(text).assert_clean(text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_and_unary_responses_and_their_metrics() {
    let (url, _worker, _) = setup().await;
    let http = reqwest::Client::new();

    // Three streamed chats of 8 tokens, usage included.
    for _ in 0..3 {
        let resp = http
            .post(format!("{url}/v1/chat/completions"))
            .json(&json!({"model": "mock-model", "messages": [{"role": "user", "content": "hello"}],
                          "max_tokens": 8, "stream": true, "stream_options": {"include_usage": true}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let body = resp.text().await.unwrap();
        let events: Vec<&str> = body
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .collect();
        assert_eq!(*events.last().unwrap(), "[DONE]");
        let usage: Value = serde_json::from_str(events[events.len() - 2]).unwrap();
        assert_eq!(usage["usage"]["completion_tokens"], 8);
        let content: String = events[..events.len() - 2]
            .iter()
            .map(|e| {
                serde_json::from_str::<Value>(e).unwrap()["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        assert!(content.starts_with("The quick brown fox"), "{content}");
    }
    // Two unary completions of 5 tokens.
    for _ in 0..2 {
        let v: Value = http
            .post(format!("{url}/v1/completions"))
            .json(&json!({"model": "mock-model", "prompt": "hello there", "max_tokens": 5}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["usage"]["completion_tokens"], 5);
        assert_eq!(v["choices"][0]["finish_reason"], "length");
    }
    let models: Value = http
        .get(format!("{url}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "mock-model");

    let text = settled(&url).await;
    promtool_clean(&text);
    let m = "model=\"mock-model\"";
    let ok = "status=\"success\"";
    assert_eq!(
        sample(
            &text,
            "dynamo_frontend_requests_total",
            &[
                m,
                ok,
                "endpoint=\"chat_completions\"",
                "request_type=\"stream\""
            ]
        ),
        3.0
    );
    assert_eq!(
        sample(
            &text,
            "dynamo_frontend_requests_total",
            &[m, ok, "endpoint=\"completions\"", "request_type=\"unary\""]
        ),
        2.0
    );
    assert_eq!(
        sample(&text, "dynamo_frontend_output_sequence_tokens_sum", &[m]),
        3.0 * 8.0 + 2.0 * 5.0
    );
    assert_eq!(
        sample(&text, "dynamo_frontend_output_sequence_tokens_count", &[m]),
        5.0
    );
    assert_eq!(
        sample(&text, "dynamo_frontend_input_sequence_tokens_count", &[m]),
        5.0
    );
    assert_eq!(
        sample(
            &text,
            "dynamo_frontend_request_duration_seconds_count",
            &[m]
        ),
        5.0
    );
    assert_eq!(
        sample(
            &text,
            "dynamo_frontend_time_to_first_token_seconds_count",
            &[m]
        ),
        5.0
    );
    // One ITL observation per token after the first.
    assert_eq!(
        sample(
            &text,
            "dynamo_frontend_inter_token_latency_seconds_count",
            &[m]
        ),
        3.0 * 7.0 + 2.0 * 4.0
    );
    // Sums plausible against the mock's delays.
    let ttft_mean = sample(
        &text,
        "dynamo_frontend_time_to_first_token_seconds_sum",
        &[m],
    ) / 5.0;
    assert!(
        ttft_mean >= TTFT_MS as f64 / 1000.0 && ttft_mean < 1.0,
        "TTFT mean {ttft_mean}"
    );
    let itl_mean = sample(
        &text,
        "dynamo_frontend_inter_token_latency_seconds_sum",
        &[m],
    ) / 29.0;
    assert!(
        itl_mean >= ITL_MS as f64 / 1000.0 * 0.9 && itl_mean < 0.5,
        "ITL mean {itl_mean}"
    );
    let input_tokens = sample(&text, "dynamo_preprocessor_input_tokens_total", &[m]);
    assert_eq!(
        sample(&text, "dynamo_frontend_input_sequence_tokens_sum", &[m]),
        input_tokens
    );
    assert_eq!(
        sample(&text, "dynamo_preprocessor_output_tokens_total", &[m]),
        34.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_openai_errors_and_are_counted() {
    let (url, worker, registry) = setup().await;
    let http = reqwest::Client::new();
    let post = |body: String| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let r = http
                .post(format!("{url}/v1/chat/completions"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            assert!(v["error"]["message"].is_string(), "{v}");
            (status, v)
        }
    };
    let chat = |model: &str, max_tokens: i64| {
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}).to_string()
    };
    assert_eq!(post("{not json".to_owned()).await.0, 400);
    assert_eq!(
        post(json!({"model": "mock-model"}).to_string()).await.0,
        400
    );
    assert_eq!(
        post(json!({"model": "mock-model", "messages": []}).to_string())
            .await
            .0,
        400
    );
    assert_eq!(post(chat("mock-model", 0)).await.0, 400);
    assert_eq!(post(chat("mock-model", 1_000_000)).await.0, 400);
    // A prompt over its limit (32 KiB here) in a body under the body limit (64 KiB).
    let long = json!({"model": "mock-model", "messages": [{"role": "user", "content": " ".repeat(40_000)}]});
    let (status, v) = post(long.to_string()).await;
    assert_eq!(status, 400);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("32768"),
        "{v}"
    );
    assert_eq!(post("x".repeat(100 * 1024)).await.0, 413);
    let (status, v) = post(chat("nope", 4)).await;
    assert_eq!(status, 404);
    assert_eq!(v["error"]["code"], "model_not_found");
    // Registered, but no worker serves it.
    let _orphan = registry
        .register(
            "orphan",
            ModelEntry {
                namespace: "dynamo".into(),
                component: "gone".into(),
                endpoint: "generate".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(post(chat("orphan", 4)).await.0, 503);
    worker.served.stop().await;
    assert_eq!(post(chat("mock-model", 4)).await.0, 503);
    worker.card.revoke().await;
    // The frontend drops a model once it was missing from three listings
    // (500 ms apart): wait for /v1/models to stop listing it.
    let models_url = format!("{url}/v1/models");
    let mut gone = false;
    for _ in 0..200 {
        let v: Value = http
            .get(&models_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !v.to_string().contains("mock-model") {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the model left /v1/models within 10 s of its card");
    assert_eq!(
        post(chat("mock-model", 4)).await.0,
        404,
        "the model card is gone"
    );

    let text = settled(&url).await;
    eprintln!(
        "{}",
        text.lines()
            .filter(|l| l.starts_with("dynamo_frontend_request_errors_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let e = |model: &str, t: &str| {
        sample(
            &text,
            "dynamo_frontend_request_errors_total",
            &[
                &format!("model=\"{model}\""),
                &format!("error_type=\"{t}\""),
            ],
        )
    };
    assert_eq!(e("unknown", "invalid_request"), 1.0, "malformed JSON");
    assert_eq!(
        sample(
            &text,
            "dynamo_frontend_request_errors_total",
            &["model=\"mock-model\"", "error_type=\"invalid_request\""]
        ),
        5.0,
        "missing messages, empty messages, max_tokens 0 and too large, a prompt too long"
    );
    assert_eq!(e("unknown", "payload_too_large"), 1.0);
    // A model name that is not served never becomes a label value:
    // "nope", and "mock-model" once its card was gone.
    assert_eq!(e("unknown", "model_not_found"), 2.0);
    assert!(!text.contains("model=\"nope\""), "{text}");
    assert!(
        !text
            .lines()
            .any(|l| l.contains("model=\"mock-model\"")
                && l.contains("error_type=\"model_not_found\"")),
        "{text}"
    );
    assert_eq!(e("orphan", "no_worker"), 1.0);
    assert_eq!(e("mock-model", "no_worker"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_mid_stream_is_counted_and_inflight_returns_to_zero() {
    let (url, _worker, _) = setup().await;
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .json(&json!({"model": "mock-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2000, "stream": true}))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut seen = 0;
    while seen < 3 {
        let chunk = body.next().await.unwrap().unwrap();
        seen += chunk.windows(6).filter(|w| w == b"data: ").count();
    }
    assert_eq!(
        sample(
            &metrics(&url).await,
            "dynamo_frontend_inflight_requests",
            &["model=\"mock-model\""]
        ),
        1.0
    );
    drop(body);
    let text = settled(&url).await;
    let m = "model=\"mock-model\"";
    assert_eq!(
        sample(
            &text,
            "dynamo_frontend_request_errors_total",
            &[m, "error_type=\"client_disconnected\""]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "dynamo_frontend_requests_total",
            &[m, "status=\"error\"", "request_type=\"stream\""]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "dynamo_frontend_request_duration_seconds_count",
            &[m]
        ),
        1.0
    );
    // The worker was told: its request ended as cancelled.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = metrics(&url).await;
    assert_eq!(
        sample(
            &text,
            "dynamo_component_errors_total",
            &["error_type=\"cancelled\""]
        ),
        1.0
    );
    assert_eq!(
        sample(&text, "dynamo_component_concurrent_requests", &[]),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_system_server_the_frontend_publishes_its_own_metrics_for_prometheus() {
    let (url, _worker, _registry) = setup().await;
    let sd: Value = reqwest::get(format!("{url}/discovery/prometheus"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let addr = url.trim_start_matches("http://");
    assert_eq!(
        sd,
        json!([{"targets": [addr], "labels": {"dynamo_server": "frontend"}}])
    );
}

/// A zero-delay engine has many tokens ready at once: the frontend sends
/// them to the socket together, yet every token is its own event with its
/// own text, and the histograms count exactly what they count one by one
/// (one TTFT per request, one ITL per token after the first, the output
/// length).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_ready_together_are_batched_but_counted_one_by_one() {
    let drt = DistributedRuntime::from_config(RuntimeConfig::default()).unwrap();
    let registry = ModelRegistry::new(drt.clone());
    let mocker = MockerConfig {
        ttft: Duration::ZERO,
        itl: Duration::ZERO,
    };
    let _worker = dynamo_llm::start_mock_worker(&drt, &registry, "mock-model", mocker)
        .await
        .unwrap();
    let frontend = Frontend::new(drt, registry.clone(), FrontendConfig::default()).unwrap();
    let url = format!(
        "http://{}",
        frontend
            .serve("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap()
    );
    const TOKENS: usize = 300;
    const REQUESTS: usize = 4;
    let client = reqwest::Client::new();
    for _ in 0..REQUESTS {
        let resp = client
            .post(format!("{url}/v1/chat/completions"))
            .json(&json!({"model": "mock-model", "max_tokens": TOKENS, "stream": true,
                          "messages": [{"role": "user", "content": "count the tokens one by one please"}]}))
            .send()
            .await
            .unwrap();
        let mut raw = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            raw.extend_from_slice(&chunk.unwrap());
        }
        let text = String::from_utf8(raw).unwrap();
        let events: Vec<Value> = text
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let with_text = events
            .iter()
            .filter(|e| e["choices"][0]["finish_reason"].is_null())
            .count();
        assert_eq!(with_text, TOKENS, "one event per token");
        assert_eq!(
            events.last().unwrap()["choices"][0]["finish_reason"],
            "length"
        );
        assert!(text.ends_with("data: [DONE]\n\n"));
    }
    let text = settled(&url).await;
    let m = "model=\"mock-model\"";
    let count = |name: &str| sample(&text, name, &[m]);
    assert_eq!(
        count("dynamo_frontend_time_to_first_token_seconds_count"),
        REQUESTS as f64
    );
    assert_eq!(
        count("dynamo_frontend_inter_token_latency_seconds_count"),
        (REQUESTS * (TOKENS - 1)) as f64
    );
    assert_eq!(
        count("dynamo_frontend_output_sequence_tokens_sum"),
        (REQUESTS * TOKENS) as f64
    );
}
