//! A worker and a client in one process, over the in-process request plane:
//! the client keeps sending requests, and `/metrics` shows the endpoint's
//! automatic metrics move.
//!
//! ```text
//! DYN_SYSTEM_PORT=8081 cargo run -p request_plane --bin inprocess
//! curl localhost:8081/metrics | grep dynamo_component_requests_total
//! ```

use clap::Parser;
use dynamo_runtime::DistributedRuntime;
use futures::StreamExt;
use request_plane::{
    init_logging, mock_engine, GenerateRequest, Token, COMPONENT, ENDPOINT, NAMESPACE,
};
use std::time::Duration;

#[derive(Parser)]
struct Args {
    /// Stop after this many requests (default: run until Ctrl-C).
    #[arg(long)]
    requests: Option<u64>,
    /// Pause between requests, in milliseconds.
    #[arg(long, default_value_t = 200)]
    interval_ms: u64,
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
    let _served = endpoint
        .serve(mock_engine(Duration::from_millis(2)))
        .await?;
    let client = endpoint.client::<GenerateRequest, Token>().await?;
    if let Some(addr) = drt.system_server_addr() {
        println!("metrics on http://{addr}/metrics");
    }
    let mut sent = 0u64;
    while args.requests.is_none_or(|n| sent < n) {
        let request = GenerateRequest {
            prompt: "the quick brown fox".to_owned(),
            max_tokens: 4 + (sent % 13) as u32,
        };
        let mut stream = client.round_robin(request).await?;
        // Every tenth request is abandoned half way, so cancellations show too.
        let mut n = 0;
        while let Some(token) = stream.next().await {
            token?;
            n += 1;
            if sent % 10 == 9 && n == 2 {
                break;
            }
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
    }
    println!("sent {sent} requests");
    Ok(())
}
