//! The Rust samples of the metrics developer guide, as written, in one
//! process that keeps serving them:
//!
//! ```text
//! DYN_SYSTEM_PORT=8081 cargo run -p metrics_server
//! curl localhost:8081/metrics
//! ```
//!
//! Every second it updates the metrics with simulated traffic, so what
//! `/metrics` shows moves. Stop it with Ctrl-C.

use dynamo_runtime::DistributedRuntime;
use std::time::Duration;

fn main() -> anyhow::Result<()> {
    dynamo_runtime::logging::init();

    // --- "Creating Metrics" ---
    let runtime = DistributedRuntime::new()?;
    let endpoint = runtime
        .namespace("my_namespace")
        .component("my_component")
        .endpoint("my_endpoint");

    // Simple metrics
    let requests_total =
        endpoint
            .metrics()
            .create_counter("requests_total", "Total requests", &[])?;

    let active_connections =
        endpoint
            .metrics()
            .create_gauge("active_connections", "Active connections", &[])?;

    let latency = endpoint.metrics().create_histogram(
        "latency_seconds",
        "Request latency",
        &[],
        Some(vec![0.001, 0.01, 0.1, 1.0, 10.0]),
    )?;

    // --- "Using Metrics" ---
    requests_total.inc();
    active_connections.set(42.0);
    active_connections.inc();
    active_connections.dec();
    latency.observe(0.023); // 23ms

    // --- "Vector Metrics with Labels" ---
    let requests_by_model = endpoint.metrics().create_countervec(
        "requests_by_model",
        "Requests by model",
        &["model_type", "model_size"],
        &[],
    )?;

    let memory_by_gpu = endpoint.metrics().create_gaugevec(
        "gpu_memory_bytes",
        "GPU memory by device",
        &["gpu_id", "memory_type"],
        &[],
    )?;

    requests_by_model.with_label_values(&["llama", "7b"]).inc();
    memory_by_gpu
        .with_label_values(&["0", "allocated"])
        .set(8192.0);

    // --- "Advanced Features": constant labels (another series of requests_total) ---
    let counter = endpoint.metrics().create_counter(
        "requests_total",
        "Total requests",
        &[("region", "us-west"), ("env", "prod")],
    )?;
    counter.inc();

    // A histogram with labels, which the guide lists among the methods.
    let step_seconds = endpoint.metrics().create_histogramvec(
        "step_seconds",
        "Time per engine step",
        &["phase"],
        &[],
        Some(vec![0.001, 0.01, 0.1, 1.0]),
    )?;

    match runtime.system_server_addr() {
        Some(addr) => println!("serving metrics on http://{addr}/metrics"),
        None => println!(
            "DYN_SYSTEM_PORT is not set: metrics are not served (try DYN_SYSTEM_PORT=8081)"
        ),
    }
    let _ = std::io::Write::flush(&mut std::io::stdout());

    // Keep serving, with traffic that moves the numbers.
    let mut tick: u64 = 0;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        tick += 1;
        requests_total.inc_by(3.0);
        counter.inc();
        active_connections.set((tick % 17) as f64);
        latency.observe(0.004 * (tick % 25) as f64);
        let size = if tick.is_multiple_of(3) { "70b" } else { "7b" };
        requests_by_model.with_label_values(&["llama", size]).inc();
        memory_by_gpu
            .with_label_values(&["0", "allocated"])
            .set(8192.0 + (tick % 64) as f64 * 128.0);
        step_seconds
            .with_label_values(&["prefill"])
            .observe(0.02 + 0.001 * (tick % 10) as f64);
        step_seconds.with_label_values(&["decode"]).observe(0.005);
    }
}
