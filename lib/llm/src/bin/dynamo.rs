//! `dynamo serve`: the HTTP frontend (:8080) and a mock engine worker (system
//! server :8081) in one process, or, with `--nats` and `--role`, as separate
//! processes over NATS. `dynamo load`: real HTTP traffic against the frontend.
//! `dynamo top`: the deployment at a glance in the terminal.
//!
//! ```text
//! cargo run --release --bin dynamo -- serve
//! cargo run --release --bin dynamo -- load --requests 200 --concurrency 16
//! curl localhost:8080/metrics; curl localhost:8081/metrics
//!
//! nats-server -js &
//! dynamo serve --nats nats://127.0.0.1:4222 --role worker --system-port 8081 &
//! dynamo serve --nats nats://127.0.0.1:4222 --role frontend
//!
//! etcd --data-dir /tmp/etcd &   # discovery in etcd instead of over NATS
//! dynamo serve --nats nats://127.0.0.1:4222 --etcd 127.0.0.1:2379 --role worker
//! ```

use clap::{Parser, Subcommand};
use dynamo_llm::http::{Frontend, FrontendConfig};
use dynamo_llm::load::{run, LoadConfig};
use dynamo_llm::mocker::MockerConfig;
use dynamo_llm::registry::ModelRegistry;
use dynamo_llm::top::TopConfig;
use dynamo_runtime::{DistributedRuntime, RequestPlaneConfig, RuntimeConfig, SystemServerConfig};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "dynamo",
    about = "LLM serving with live metrics: frontend, mock engine, load generator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Role {
    /// Frontend and worker in this process.
    All,
    /// Only the HTTP frontend (its /metrics is on the HTTP port).
    Frontend,
    /// Only a mock engine worker (its /metrics is on the system port).
    Worker,
}

#[derive(Subcommand)]
enum Command {
    /// The frontend and a mock engine worker, in one process or (with --role) one of them.
    Serve {
        /// What this process runs: both, only the frontend, or only a worker.
        #[arg(long, value_enum, default_value_t = Role::All)]
        role: Role,
        /// NATS server URL: requests and model discovery go over NATS (as NATS_SERVER does).
        #[arg(long)]
        nats: Option<String>,
        /// etcd endpoints, comma separated: discovery (instances, models,
        /// scrape targets) lives in etcd, as ETCD_ENDPOINTS does. Needs --nats.
        #[arg(long)]
        etcd: Option<String>,
        /// Address of the HTTP frontend.
        #[arg(long, default_value = "0.0.0.0:8080")]
        http: SocketAddr,
        /// Port of the worker's system status server (DYN_SYSTEM_PORT wins when set).
        #[arg(long, default_value_t = 8081)]
        system_port: u16,
        /// The model name the mock engine serves.
        #[arg(long, default_value = "mock-model")]
        model: String,
        /// Mock engine: time to first token, ms.
        #[arg(long, default_value_t = 50)]
        ttft_ms: u64,
        /// Mock engine: delay between tokens, ms.
        #[arg(long, default_value_t = 10)]
        itl_ms: u64,
        /// Also drive streamed HTTP traffic at this process's frontend, in
        /// batches, printing a summary line per batch (the one-command demo).
        #[arg(long)]
        with_load: bool,
        /// The frontend's deadline for a client's request headers, which is
        /// also how long an idle keep-alive connection is kept, ms.
        #[arg(long, default_value_t = 10_000)]
        header_timeout_ms: u64,
        /// On SIGTERM or SIGINT, how long requests in progress may take to
        /// finish before the process exits anyway, ms.
        #[arg(long, default_value_t = 30_000)]
        drain_timeout_ms: u64,
    },
    /// Sends chat requests to a frontend and prints a summary.
    Load {
        /// Base URL of the frontend.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// The model to ask for.
        #[arg(long, default_value = "mock-model")]
        model: String,
        /// Requests in all.
        #[arg(long, default_value_t = 100)]
        requests: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Tokens per request.
        #[arg(long, default_value_t = 32)]
        max_tokens: u32,
        /// Ask for whole responses instead of streams.
        #[arg(long)]
        unary: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// The deployment at a glance in the terminal: per model and per worker,
    /// refreshed every interval (q quits, s sorts, arrows select a worker).
    Top {
        /// A frontend's base URL: its /discovery/prometheus lists every
        /// process (default http://127.0.0.1:8080 when no --target is given).
        #[arg(long)]
        url: Option<String>,
        /// A process's metrics address (host:port) to read, repeatable.
        #[arg(long = "target")]
        targets: Vec<String>,
        /// Between scrapes, ms.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// Deadline of each scrape, ms.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
        /// Print one frame as plain text (two scrapes an interval apart) and exit.
        #[arg(long)]
        once: bool,
        /// Columns of the --once frame.
        #[arg(long, default_value_t = 120)]
        width: u16,
    },
}

/// Batches of streamed requests against the local frontend, forever.
async fn demo_load(url: String, model: String) {
    let mut batch = 0u64;
    loop {
        batch += 1;
        let config = LoadConfig {
            url: url.clone(),
            model: model.clone(),
            requests: 40,
            concurrency: 4,
            max_tokens: 24 + (batch % 3) as u32 * 8,
            stream: true,
            progress: false,
        };
        match run(config).await {
            Ok(report) => println!(
                "load batch {batch}: {}",
                report.table().lines().next().unwrap_or_default()
            ),
            Err(e) => eprintln!("load batch {batch} failed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    dynamo_runtime::logging::init();
    match Cli::parse().command {
        Command::Serve {
            role,
            nats,
            etcd,
            http,
            system_port,
            model,
            ttft_ms,
            itl_ms,
            with_load,
            header_timeout_ms,
            drain_timeout_ms,
        } => {
            let drain_timeout = Duration::from_millis(drain_timeout_ms);
            let mut config = RuntimeConfig::from_env()?;
            if let Some(url) = nats {
                let etcd_endpoints = match &config.request_plane {
                    RequestPlaneConfig::Nats { etcd_endpoints, .. } => etcd_endpoints.clone(),
                    RequestPlaneConfig::InProcess => None,
                };
                config.request_plane = RequestPlaneConfig::Nats {
                    url,
                    etcd_endpoints,
                };
            }
            if let Some(etcd) = etcd {
                let endpoints = dynamo_runtime::parse_etcd_endpoints(&etcd)?;
                match &mut config.request_plane {
                    RequestPlaneConfig::Nats { etcd_endpoints, .. } => {
                        *etcd_endpoints = Some(endpoints)
                    }
                    RequestPlaneConfig::InProcess => anyhow::bail!(
                        "--etcd holds discovery only: give --nats URL (or NATS_SERVER) too; requests travel over NATS"
                    ),
                }
            }
            if role != Role::All && config.request_plane == RequestPlaneConfig::InProcess {
                anyhow::bail!(
                    "--role frontend/worker runs one side only: give --nats URL (or NATS_SERVER) so the other side can reach it"
                );
            }
            if std::env::var_os(dynamo_runtime::ENV_SYSTEM_PORT).is_none() {
                // The host the user gave (DYN_SYSTEM_HOST) with the port of --system-port.
                let host = std::env::var(dynamo_runtime::ENV_SYSTEM_HOST)
                    .ok()
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| dynamo_runtime::DEFAULT_SYSTEM_HOST.to_owned());
                config.system_server = match role {
                    Role::Frontend => SystemServerConfig::Disabled,
                    _ => SystemServerConfig::Enabled {
                        host,
                        port: system_port,
                    },
                };
            }
            let drt = DistributedRuntime::from_config(config)?;
            let registry = ModelRegistry::new(drt.clone());
            let mut worker = None;
            let mut frontend = None;
            if role != Role::Frontend {
                let mocker = MockerConfig {
                    ttft: Duration::from_millis(ttft_ms),
                    itl: Duration::from_millis(itl_ms),
                };
                worker =
                    Some(dynamo_llm::start_mock_worker(&drt, &registry, &model, mocker).await?);
            }
            if role != Role::Worker {
                let config = FrontendConfig {
                    http: dynamo_runtime::http_server::HttpLimits {
                        header_read_timeout: Duration::from_millis(header_timeout_ms),
                        drain_timeout,
                        ..Default::default()
                    },
                    ..Default::default()
                };
                let fe = Frontend::new(drt.clone(), registry, config)?;
                let bound = fe.serve(http).await?;
                frontend = Some(fe);
                println!("frontend on http://{bound}");
                if with_load {
                    tokio::spawn(demo_load(
                        format!("http://127.0.0.1:{}", bound.port()),
                        model.clone(),
                    ));
                }
            }
            if let Some(addr) = drt.system_server_addr() {
                match role {
                    Role::Frontend => println!("system server on http://{addr}/metrics"),
                    _ => println!("worker metrics on http://{addr}/metrics (model {model:?})"),
                }
            }
            let signal = stop_signal().await?;
            // Drain: say notready, leave discovery, take no new work, finish
            // what is in flight (up to --drain-timeout-ms), then exit.
            tracing::info!(signal, "draining");
            drt.start_draining();
            let started = std::time::Instant::now();
            // The frontend first: its requests in progress finish through the
            // worker (in one process), and no new ones come in.
            if let Some(f) = &frontend {
                f.drain().await;
            }
            if let Some(w) = worker.take() {
                // Withdraws the model card first, so frontends stop routing here.
                let left = w.drain(drain_timeout).await;
                if left > 0 {
                    tracing::warn!(left, "worker drain timed out");
                }
            }
            println!("drained in {:.2} s", started.elapsed().as_secs_f64());
            Ok(())
        }
        Command::Load {
            url,
            model,
            requests,
            concurrency,
            max_tokens,
            unary,
            quiet,
        } => {
            let report = run(LoadConfig {
                url,
                model,
                requests,
                concurrency,
                max_tokens,
                stream: !unary,
                progress: !quiet,
            })
            .await?;
            print!("{}", report.table());
            if report.failed > 0 {
                anyhow::bail!("{} requests failed", report.failed);
            }
            Ok(())
        }
        Command::Top {
            url,
            targets,
            interval_ms,
            timeout_ms,
            once,
            width,
        } => {
            let url = match (url, targets.is_empty()) {
                (Some(url), _) => Some(url),
                (None, true) => Some("http://127.0.0.1:8080".to_owned()),
                (None, false) => None,
            };
            let config = TopConfig {
                url,
                targets,
                interval: Duration::from_millis(interval_ms.max(100)),
                timeout: Duration::from_millis(timeout_ms.max(1)),
            };
            if once {
                print!("{}", dynamo_llm::top::once(config, width.max(60)).await?);
            } else {
                dynamo_llm::top::run(config).await?;
            }
            Ok(())
        }
    }
}

/// Waits for SIGTERM or SIGINT and says which came.
async fn stop_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => Ok("SIGTERM"),
        r = tokio::signal::ctrl_c() => {
            r?;
            Ok("SIGINT")
        }
    }
}
