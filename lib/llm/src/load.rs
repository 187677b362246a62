//! `dynamo load`: real HTTP traffic against the frontend, with a progress bar
//! and a summary (requests/s, tokens/s, TTFT, ITL and end-to-end p50/p90/p99),
//! set beside what the frontend's `/metrics` measured for the same run.

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The system prompt of every request `dynamo load` sends.
const SYSTEM_PROMPT: &str = "You are a concise assistant for the operators of an LLM serving \
    deployment. Explain what the metrics of the frontend and the workers mean, and how time to \
    first token, inter-token latency and the KV cache relate to each other under load.";

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Base URL of the frontend, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// The model to ask for.
    pub model: String,
    /// Requests in all.
    pub requests: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Tokens per request.
    pub max_tokens: u32,
    /// Stream (server-sent events) or not.
    pub stream: bool,
    /// Show a progress bar.
    pub progress: bool,
}

/// One request's measurements.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Time to the first token (streaming), or to the response (unary).
    pub ttft: Duration,
    /// Mean time between tokens after the first (streaming only).
    pub itl: Option<Duration>,
    /// End to end.
    pub e2e: Duration,
    /// Output tokens.
    pub tokens: u64,
}

/// The run's results.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Successful requests' samples.
    pub samples: Vec<Sample>,
    /// Failed requests.
    pub failed: usize,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// `/metrics` deltas over the run: frontend requests, TTFT sum and count, ITL sum and count.
    pub server: HashMap<&'static str, f64>,
    /// CPU seconds this process (the load generator) used during the run,
    /// where the system says (Linux).
    pub cpu: Option<f64>,
}

/// What `load` reads of a streamed chunk (the rest is skipped unparsed).
#[derive(serde::Deserialize)]
struct StreamChunk {
    #[serde(default)]
    choices: Vec<StreamChoice>,
    #[serde(default)]
    usage: Option<StreamUsage>,
}

#[derive(serde::Deserialize)]
struct StreamChoice {
    #[serde(default)]
    finish_reason: Option<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct StreamUsage {
    completion_tokens: Option<u64>,
}

/// Where the first `\n\n` (the end of a server-sent event) starts.
fn find_blank_line(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\n\n")
}

async fn one(client: &reqwest::Client, cfg: &LoadConfig, i: usize) -> anyhow::Result<Sample> {
    let body = json!({
        "model": cfg.model,
        // A system prompt every request shares, as applications have: the
        // engine's prefix cache reuses its blocks.
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": format!("Request {i}: tell me a story about metrics.")}
        ],
        "max_tokens": cfg.max_tokens,
        "stream": cfg.stream,
        "stream_options": if cfg.stream { json!({"include_usage": true}) } else { Value::Null },
    });
    let start = Instant::now();
    let resp = client
        .post(format!("{}/v1/chat/completions", cfg.url))
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    if !status.is_success() {
        anyhow::bail!("HTTP {status}: {}", resp.text().await.unwrap_or_default());
    }
    if !cfg.stream {
        let v: Value = resp.json().await?;
        let e2e = start.elapsed();
        let tokens = v["usage"]["completion_tokens"].as_u64().unwrap_or(0);
        return Ok(Sample {
            ttft: e2e,
            itl: None,
            e2e,
            tokens,
        });
    }
    let (mut first, mut last, mut tokens, mut chunks) = (None, None, 0u64, 0u64);
    let mut buf: Vec<u8> = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(bytes) = body.next().await {
        // Only the new bytes (and the one before them) can complete an event.
        let searched = buf.len().saturating_sub(1);
        buf.extend_from_slice(&bytes?);
        let mut start = 0;
        let mut from = searched;
        while let Some(at) = find_blank_line(&buf[from..]) {
            let end = from + at;
            let event = &buf[start..end];
            start = end + 2;
            from = start;
            let Some(data) = event.strip_prefix(b"data: ") else {
                continue;
            };
            if data == b"[DONE]" {
                continue;
            }
            let chunk: StreamChunk = serde_json::from_slice(data)?;
            if let Some(u) = chunk.usage.and_then(|u| u.completion_tokens) {
                tokens = u;
            }
            if chunk
                .choices
                .first()
                .is_some_and(|c| c.finish_reason.is_none())
            {
                let now = Instant::now();
                first.get_or_insert(now);
                last = Some(now);
                chunks += 1;
            }
        }
        buf.drain(..start);
    }
    let e2e = start.elapsed();
    let first = first.ok_or_else(|| anyhow::anyhow!("no token in the stream"))?;
    let tokens = if tokens > 0 { tokens } else { chunks };
    let itl = (tokens > 1).then(|| (last.unwrap_or(first) - first) / (tokens - 1) as u32);
    Ok(Sample {
        ttft: first - start,
        itl,
        e2e,
        tokens,
    })
}

/// Reads the frontend's counters that `load` compares with.
pub async fn scrape_frontend(client: &reqwest::Client, url: &str) -> HashMap<&'static str, f64> {
    use dynamo_runtime::prometheus_names::frontend as f;
    let mut out = HashMap::new();
    let Ok(resp) = client.get(format!("{url}/metrics")).send().await else {
        return out;
    };
    let Ok(text) = resp.text().await else {
        return out;
    };
    let wanted = [
        (
            "requests_success",
            format!("{}{{", f::REQUESTS_TOTAL),
            "status=\"success\"",
        ),
        (
            "ttft_sum",
            format!("{}_sum{{", f::TIME_TO_FIRST_TOKEN_SECONDS),
            "",
        ),
        (
            "ttft_count",
            format!("{}_count{{", f::TIME_TO_FIRST_TOKEN_SECONDS),
            "",
        ),
        (
            "itl_sum",
            format!("{}_sum{{", f::INTER_TOKEN_LATENCY_SECONDS),
            "",
        ),
        (
            "itl_count",
            format!("{}_count{{", f::INTER_TOKEN_LATENCY_SECONDS),
            "",
        ),
    ];
    for line in text.lines() {
        for (key, prefix, must) in &wanted {
            if line.starts_with(prefix.as_str()) && line.contains(must) {
                if let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                    *out.entry(*key).or_default() += v;
                }
            }
        }
    }
    out
}

/// Runs the load.
pub async fn run(cfg: LoadConfig) -> anyhow::Result<LoadReport> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let before = scrape_frontend(&client, &cfg.url).await;
    let bar = if cfg.progress {
        ProgressBar::new(cfg.requests as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} requests ({per_sec}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let cfg = Arc::new(cfg);
    let cpu_before = process_cpu_seconds();
    let start = Instant::now();
    // One task per concurrent client, each taking the next request number:
    // the tasks spread over the runtime's threads (one task polling every
    // request would keep the generator on one core).
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..cfg.concurrency.clamp(1, cfg.requests.max(1)))
        .map(|_| {
            let (client, cfg, bar, next) = (client.clone(), cfg.clone(), bar.clone(), next.clone());
            tokio::spawn(async move {
                let mut results = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= cfg.requests {
                        return results;
                    }
                    results.push(one(&client, &cfg, i).await);
                    bar.inc(1);
                }
            })
        })
        .collect();
    let mut results: Vec<anyhow::Result<Sample>> = Vec::with_capacity(cfg.requests);
    for task in clients {
        match task.await {
            Ok(r) => results.extend(r),
            Err(e) => anyhow::bail!("a load client task failed: {e}"),
        }
    }
    let elapsed = start.elapsed();
    let cpu = process_cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    bar.finish_and_clear();
    let after = scrape_frontend(&client, &cfg.url).await;
    let server = after
        .iter()
        .map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0.0)))
        .collect();
    let mut samples = Vec::new();
    let mut failed = 0;
    for r in results {
        match r {
            Ok(s) => samples.push(s),
            Err(e) => {
                failed += 1;
                tracing::warn!(error = %e, "request failed");
            }
        }
    }
    Ok(LoadReport {
        samples,
        failed,
        elapsed,
        server,
        cpu,
    })
}

/// This process's CPU time so far (user + system, every thread), in
/// seconds, from `/proc/self/stat` (clock ticks of 1/100 s); `None` where
/// there is no such file.
pub fn process_cpu_seconds() -> Option<f64> {
    cpu_seconds_of("self")
}

/// The CPU time of process `pid` (`"self"` for this one), as
/// [`process_cpu_seconds`] reads it.
pub fn cpu_seconds_of(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces, in parentheses):
    // utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

impl LoadReport {
    /// The summary table.
    pub fn table(&self) -> String {
        let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
        let ttft: Vec<f64> = self.samples.iter().map(|s| ms(&s.ttft)).collect();
        let itl: Vec<f64> = self
            .samples
            .iter()
            .filter_map(|s| s.itl.as_ref().map(ms))
            .collect();
        let e2e: Vec<f64> = self.samples.iter().map(|s| ms(&s.e2e)).collect();
        let tokens: u64 = self.samples.iter().map(|s| s.tokens).sum();
        let secs = self.elapsed.as_secs_f64();
        let mut out = String::new();
        out.push_str(&format!(
            "requests: {} ok, {} failed in {:.2} s  |  {:.1} requests/s  |  {:.0} output tokens/s\n",
            self.samples.len(),
            self.failed,
            secs,
            self.samples.len() as f64 / secs,
            tokens as f64 / secs
        ));
        if let Some(cpu) = self.cpu {
            out.push_str(&format!(
                "load generator CPU: {cpu:.2} s ({:.2} cores of {}); near that many cores, the generator may be the limit\n",
                cpu / secs.max(1e-9),
                std::thread::available_parallelism().map_or(1, |n| n.get())
            ));
        }
        out.push_str(&format!(
            "{:<14}{:>10}{:>10}{:>10}{:>10}\n",
            "(ms)", "mean", "p50", "p90", "p99"
        ));
        for (name, v) in [("TTFT", &ttft), ("ITL", &itl), ("end-to-end", &e2e)] {
            if v.is_empty() {
                continue;
            }
            out.push_str(&format!(
                "{:<14}{:>10.2}{:>10.2}{:>10.2}{:>10.2}\n",
                name,
                mean(v),
                pct(v.clone(), 0.5),
                pct(v.clone(), 0.9),
                pct(v.clone(), 0.99)
            ));
        }
        let s = &self.server;
        if let Some(n) = s.get("requests_success") {
            out.push_str(&format!(
                "frontend /metrics for this run: {n:.0} successful requests"
            ));
            if let (Some(sum), Some(count)) = (s.get("ttft_sum"), s.get("ttft_count")) {
                if *count > 0.0 {
                    out.push_str(&format!(", mean TTFT {:.2} ms", sum / count * 1000.0));
                }
            }
            if let (Some(sum), Some(count)) = (s.get("itl_sum"), s.get("itl_count")) {
                if *count > 0.0 {
                    out.push_str(&format!(", mean ITL {:.2} ms", sum / count * 1000.0));
                }
            }
            out.push('\n');
        }
        out
    }
}
