//! Sends requests to `dynamo/backend/generate` and prints a JSON summary.
//!
//! ```text
//! NATS_SERVER=nats://127.0.0.1:4222 cargo run -p request_plane --bin client -- --requests 20
//! ```

use clap::Parser;
use dynamo_runtime::DistributedRuntime;
use futures::StreamExt;
use request_plane::{init_logging, GenerateRequest, Token, COMPONENT, ENDPOINT, NAMESPACE};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Parser)]
struct Args {
    /// How many requests to send, one after the other.
    #[arg(long, default_value_t = 10)]
    requests: u32,
    /// Tokens per request.
    #[arg(long, default_value_t = 8)]
    max_tokens: u32,
    /// How long to wait for a worker to appear, in seconds.
    #[arg(long, default_value_t = 10)]
    wait_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    let args = Args::parse();
    let drt = DistributedRuntime::new()?;
    let endpoint = drt
        .namespace(NAMESPACE)
        .component(COMPONENT)
        .endpoint(ENDPOINT);
    let client = endpoint.client::<GenerateRequest, Token>().await?;
    client
        .wait_for_instances(Duration::from_secs(args.wait_secs))
        .await?;
    let (mut ok, mut failed, mut tokens) = (0u32, 0u32, 0u32);
    let mut by_instance: BTreeMap<String, u32> = BTreeMap::new();
    let mut errors: Vec<String> = Vec::new();
    for i in 0..args.requests {
        let request = GenerateRequest {
            prompt: format!("request {i} says hello"),
            max_tokens: args.max_tokens,
        };
        match client.round_robin(request).await {
            Ok(mut stream) => {
                let instance = format!("{:016x}", stream.instance());
                let mut n = 0;
                let mut failure = None;
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(_) => n += 1,
                        Err(e) => failure = Some(e.to_string()),
                    }
                }
                match failure {
                    None if n == args.max_tokens => {
                        ok += 1;
                        tokens += n;
                        *by_instance.entry(instance).or_default() += 1;
                    }
                    None => {
                        failed += 1;
                        errors.push(format!("{n} of {} tokens", args.max_tokens));
                    }
                    Some(e) => {
                        failed += 1;
                        errors.push(e);
                    }
                }
            }
            Err(e) => {
                failed += 1;
                errors.push(e.to_string());
            }
        }
    }
    let summary = serde_json::json!({
        "ok": ok, "failed": failed, "tokens": tokens, "by_instance": by_instance, "errors": errors,
    });
    println!("{summary}");
    Ok(())
}
