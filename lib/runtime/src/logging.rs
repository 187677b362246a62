//! Logging setup for the project's programs: `tracing` to stderr, the level
//! from `DYN_LOG` (or `RUST_LOG`), `info` by default. Libraries never call it.

/// Installs the subscriber; does nothing if one is installed already.
///
/// ```
/// dynamo_runtime::logging::init();
/// tracing::info!("ready");
/// ```
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DYN_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
