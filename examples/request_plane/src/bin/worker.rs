//! A worker serving `dynamo/backend/generate` with a mock engine.
//!
//! ```text
//! NATS_SERVER=nats://127.0.0.1:4222 DYN_SYSTEM_PORT=8081 cargo run -p request_plane --bin worker
//! ```
//!
//! Without `NATS_SERVER` it serves in-process only (useful only with the
//! `inprocess` example). Stops on Ctrl-C or SIGTERM, deregistering first.

use clap::Parser;
use dynamo_runtime::DistributedRuntime;
use request_plane::{init_logging, mock_engine, COMPONENT, ENDPOINT, NAMESPACE};
use std::time::Duration;

#[derive(Parser)]
struct Args {
    /// Delay between streamed tokens, in milliseconds.
    #[arg(long, default_value_t = 5)]
    token_delay_ms: u64,
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
    let served = endpoint
        .serve(mock_engine(Duration::from_millis(args.token_delay_ms)))
        .await?;
    if let Some(addr) = drt.system_server_addr() {
        println!("metrics on http://{addr}/metrics");
    }
    println!("serving instance {:016x}", served.instance_id());
    shutdown_signal().await;
    served.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
