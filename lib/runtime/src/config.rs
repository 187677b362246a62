//! Runtime configuration, read from the environment.

use crate::RuntimeError;

/// Environment variable: port of the system status server (-1 disabled, 0 any free port).
pub const ENV_SYSTEM_PORT: &str = "DYN_SYSTEM_PORT";
/// Environment variable: address the system status server listens on (default `0.0.0.0`).
pub const ENV_SYSTEM_HOST: &str = "DYN_SYSTEM_HOST";
/// Environment variable: the host name or IP other machines (Prometheus) reach
/// this process's metrics at, published for service discovery. Unset, a
/// server bound to a specific address publishes that address, and one bound
/// to all interfaces (`0.0.0.0`, `::`) publishes `127.0.0.1`.
pub const ENV_SYSTEM_ADVERTISE_HOST: &str = "DYN_SYSTEM_ADVERTISE_HOST";
/// Default of [`ENV_SYSTEM_HOST`].
pub const DEFAULT_SYSTEM_HOST: &str = "0.0.0.0";

/// Environment variable: how many series a labelled family holds before it
/// sends new label sets to its overflow series (default
/// [`crate::prometheus_names::series_limit::DEFAULT`]).
pub const ENV_METRICS_SERIES_LIMIT: &str = "DYN_METRICS_SERIES_LIMIT";

/// Environment variable: how long, in milliseconds, a caller waits for the
/// next frame of a streamed response over NATS (instances send a heartbeat
/// every 500 ms while they work) before it gives the instance up: the
/// request then ends with an error (default [`DEFAULT_STREAM_LIVENESS`]).
pub const ENV_STREAM_LIVENESS_MS: &str = "DYN_STREAM_LIVENESS_MS";
/// Default of [`ENV_STREAM_LIVENESS_MS`]: 3 s, six missed heartbeats.
pub const DEFAULT_STREAM_LIVENESS: std::time::Duration = std::time::Duration::from_secs(3);

/// Environment variable: URL of the NATS server; when set, the request plane
/// is NATS (requests and instance discovery across processes), else in-process.
pub const ENV_NATS_SERVER: &str = "NATS_SERVER";

/// Environment variable: etcd endpoints, comma separated (e.g.
/// `http://127.0.0.1:2379`); when set beside [`ENV_NATS_SERVER`], discovery
/// (instances, model cards, scrape targets) lives in etcd under leases,
/// followed by watches. Unset, discovery is announced over NATS.
pub const ENV_ETCD_ENDPOINTS: &str = "ETCD_ENDPOINTS";

/// The transport of requests between endpoints and clients.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RequestPlaneConfig {
    /// Within this process only (the default; needs no external service).
    #[default]
    InProcess,
    /// Over NATS. Discovery records (live instances among them) are
    /// announced over NATS, or kept in etcd when `etcd_endpoints` is given.
    Nats {
        /// e.g. `nats://127.0.0.1:4222`.
        url: String,
        /// etcd endpoints for discovery ([`ENV_ETCD_ENDPOINTS`]); `None`
        /// announces the records over NATS.
        etcd_endpoints: Option<Vec<String>>,
    },
}

/// Whether and where the system status server (`/metrics`, `/health`, `/live`) listens.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SystemServerConfig {
    /// No server (`DYN_SYSTEM_PORT=-1`, the default).
    #[default]
    Disabled,
    /// Listen on `host:port`; port 0 picks a free port (the bound address is
    /// logged and returned by `DistributedRuntime::system_server_addr`).
    Enabled {
        /// Host name or IP address.
        host: String,
        /// TCP port, 0 for any free port.
        port: u16,
    },
}

/// Configuration of a [`crate::DistributedRuntime`].
///
/// ```
/// use dynamo_runtime::{DistributedRuntime, RuntimeConfig, SystemServerConfig};
/// let config = RuntimeConfig {
///     system_server: SystemServerConfig::Enabled { host: "127.0.0.1".into(), port: 0 },
///     ..Default::default()
/// };
/// let drt = DistributedRuntime::from_config(config)?;
/// assert!(drt.system_server_addr().is_some());
/// # Ok::<(), dynamo_runtime::RuntimeError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuntimeConfig {
    /// The system status server.
    pub system_server: SystemServerConfig,
    /// The request plane.
    pub request_plane: RequestPlaneConfig,
    /// The host published for Prometheus service discovery
    /// ([`ENV_SYSTEM_ADVERTISE_HOST`]); `None` derives it from the bound address.
    pub advertise_host: Option<String>,
    /// The series limit of every labelled family ([`ENV_METRICS_SERIES_LIMIT`]);
    /// `None` is [`crate::prometheus_names::series_limit::DEFAULT`].
    pub metrics_series_limit: Option<usize>,
    /// How long a caller waits for the next frame of a response over NATS
    /// ([`ENV_STREAM_LIVENESS_MS`]); `None` is [`DEFAULT_STREAM_LIVENESS`].
    pub stream_liveness: Option<std::time::Duration>,
}

impl RuntimeConfig {
    /// Reads `DYN_SYSTEM_PORT`, `DYN_SYSTEM_HOST`, `DYN_SYSTEM_ADVERTISE_HOST`,
    /// `DYN_METRICS_SERIES_LIMIT`, `DYN_STREAM_LIVENESS_MS`, `NATS_SERVER`
    /// and `ETCD_ENDPOINTS`.
    pub fn from_env() -> Result<Self, RuntimeError> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    /// Like [`RuntimeConfig::from_env`], with variables looked up by `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, RuntimeError> {
        let port = match lookup(ENV_SYSTEM_PORT) {
            None => None,
            Some(v) if v.trim().is_empty() => None,
            Some(v) => parse_port(&v)?,
        };
        let system_server = match port {
            None => SystemServerConfig::Disabled,
            Some(port) => {
                let host = lookup(ENV_SYSTEM_HOST)
                    .filter(|h| !h.trim().is_empty())
                    .unwrap_or_else(|| DEFAULT_SYSTEM_HOST.to_owned());
                SystemServerConfig::Enabled {
                    host: host.trim().to_owned(),
                    port,
                }
            }
        };
        let etcd = lookup(ENV_ETCD_ENDPOINTS).filter(|e| !e.trim().is_empty());
        let request_plane = match lookup(ENV_NATS_SERVER).filter(|u| !u.trim().is_empty()) {
            Some(url) => RequestPlaneConfig::Nats {
                url: url.trim().to_owned(),
                etcd_endpoints: etcd.as_deref().map(parse_etcd_endpoints).transpose()?,
            },
            None => match etcd {
                Some(value) => return Err(RuntimeError::InvalidEnv {
                    var: ENV_ETCD_ENDPOINTS,
                    value,
                    reason:
                        "etcd holds discovery only: set NATS_SERVER too (requests travel over NATS)",
                }),
                None => RequestPlaneConfig::InProcess,
            },
        };
        let advertise_host = lookup(ENV_SYSTEM_ADVERTISE_HOST)
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty());
        let metrics_series_limit = match lookup(ENV_METRICS_SERIES_LIMIT) {
            Some(v) if !v.trim().is_empty() => Some(parse_series_limit(&v)?),
            _ => None,
        };
        let stream_liveness = match lookup(ENV_STREAM_LIVENESS_MS) {
            Some(v) if !v.trim().is_empty() => Some(parse_liveness(&v)?),
            _ => None,
        };
        Ok(Self {
            system_server,
            request_plane,
            advertise_host,
            metrics_series_limit,
            stream_liveness,
        })
    }
}

/// Reads etcd endpoints as [`ENV_ETCD_ENDPOINTS`] holds them: comma
/// separated, at least one, each `host:port` or a URL.
///
/// ```
/// let e = dynamo_runtime::parse_etcd_endpoints("127.0.0.1:2379, http://etcd:2379")?;
/// assert_eq!(e, ["127.0.0.1:2379", "http://etcd:2379"]);
/// assert!(dynamo_runtime::parse_etcd_endpoints("").is_err());
/// # Ok::<(), dynamo_runtime::RuntimeError>(())
/// ```
pub fn parse_etcd_endpoints(value: &str) -> Result<Vec<String>, RuntimeError> {
    let endpoints: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect();
    let bad = endpoints.is_empty()
        || endpoints
            .iter()
            .any(|e| e.chars().any(char::is_whitespace) || !e.contains(':'));
    if bad {
        return Err(RuntimeError::InvalidEnv {
            var: ENV_ETCD_ENDPOINTS,
            value: value.to_owned(),
            reason: "expected comma-separated host:port or http://host:port endpoints",
        });
    }
    Ok(endpoints)
}

/// At least 1 s: twice the heartbeat, so a busy instance is never given up.
fn parse_liveness(value: &str) -> Result<std::time::Duration, RuntimeError> {
    match value.trim().parse::<u64>() {
        Ok(ms) if ms >= 1000 => Ok(std::time::Duration::from_millis(ms)),
        _ => Err(RuntimeError::InvalidEnv {
            var: ENV_STREAM_LIVENESS_MS,
            value: value.to_owned(),
            reason: "expected milliseconds, at least 1000",
        }),
    }
}

fn parse_series_limit(value: &str) -> Result<usize, RuntimeError> {
    match value.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(RuntimeError::InvalidEnv {
            var: ENV_METRICS_SERIES_LIMIT,
            value: value.to_owned(),
            reason: "expected a number of series, at least 1",
        }),
    }
}

/// `-1` is `None` (disabled); `0..=65535` is the port.
fn parse_port(value: &str) -> Result<Option<u16>, RuntimeError> {
    match value.trim().parse::<i64>() {
        Ok(-1) => Ok(None),
        Ok(p) if (0..=i64::from(u16::MAX)).contains(&p) => Ok(Some(p as u16)),
        _ => Err(RuntimeError::InvalidEnv {
            var: ENV_SYSTEM_PORT,
            value: value.to_owned(),
            reason: "expected -1 (disabled), 0 (any free port) or a port from 1 to 65535",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(port: Option<&str>, host: Option<&str>) -> Result<RuntimeConfig, RuntimeError> {
        RuntimeConfig::from_lookup(|var| match var {
            ENV_SYSTEM_PORT => port.map(str::to_owned),
            ENV_SYSTEM_HOST => host.map(str::to_owned),
            _ => None,
        })
    }

    #[test]
    fn nats_server_selects_the_nats_plane() {
        let c = RuntimeConfig::from_lookup(|v| {
            (v == ENV_NATS_SERVER).then(|| " nats://h:4222 ".to_owned())
        })
        .unwrap();
        assert_eq!(
            c.request_plane,
            RequestPlaneConfig::Nats {
                url: "nats://h:4222".into(),
                etcd_endpoints: None,
            }
        );
        assert_eq!(
            config(None, None).unwrap().request_plane,
            RequestPlaneConfig::InProcess
        );
    }

    #[test]
    fn etcd_endpoints_select_etcd_discovery_beside_nats() {
        let get = |nats: Option<&str>, etcd: &str| {
            RuntimeConfig::from_lookup(|var| match var {
                ENV_NATS_SERVER => nats.map(str::to_owned),
                ENV_ETCD_ENDPOINTS => Some(etcd.to_owned()),
                _ => None,
            })
        };
        assert_eq!(
            get(Some("nats://h:4222"), " http://e1:2379, e2:2379 ")
                .unwrap()
                .request_plane,
            RequestPlaneConfig::Nats {
                url: "nats://h:4222".into(),
                etcd_endpoints: Some(vec!["http://e1:2379".into(), "e2:2379".into()]),
            }
        );
        let e = get(None, "e1:2379").unwrap_err().to_string();
        assert!(
            e.contains("ETCD_ENDPOINTS") && e.contains("NATS_SERVER"),
            "{e}"
        );
        for bad in [",", "e1", "e1:2379, e 2:1"] {
            let e = get(Some("nats://h:4222"), bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn series_limit_values() {
        let limit = |v: &str| {
            RuntimeConfig::from_lookup(|var| {
                (var == ENV_METRICS_SERIES_LIMIT).then(|| v.to_owned())
            })
        };
        assert_eq!(limit(" 50 ").unwrap().metrics_series_limit, Some(50));
        assert_eq!(limit("").unwrap().metrics_series_limit, None);
        for bad in ["0", "-1", "many", "1.5"] {
            let e = limit(bad).unwrap_err().to_string();
            assert!(
                e.contains(ENV_METRICS_SERIES_LIMIT) && e.contains(&format!("{bad:?}")),
                "{e}"
            );
        }
    }

    #[test]
    fn stream_liveness_values() {
        let get = |v: &str| {
            RuntimeConfig::from_lookup(|var| (var == ENV_STREAM_LIVENESS_MS).then(|| v.to_owned()))
        };
        assert_eq!(
            get("1500").unwrap().stream_liveness,
            Some(std::time::Duration::from_millis(1500))
        );
        assert_eq!(get("").unwrap().stream_liveness, None);
        for bad in ["999", "-1", "soon"] {
            let e = get(bad).unwrap_err().to_string();
            assert!(
                e.contains(ENV_STREAM_LIVENESS_MS) && e.contains(&format!("{bad:?}")),
                "{e}"
            );
        }
    }

    #[test]
    fn port_values() {
        assert_eq!(
            config(None, None).unwrap().system_server,
            SystemServerConfig::Disabled
        );
        assert_eq!(
            config(Some("-1"), None).unwrap().system_server,
            SystemServerConfig::Disabled
        );
        assert_eq!(
            config(Some(""), None).unwrap().system_server,
            SystemServerConfig::Disabled
        );
        assert_eq!(
            config(Some("0"), None).unwrap().system_server,
            SystemServerConfig::Enabled {
                host: "0.0.0.0".into(),
                port: 0
            }
        );
        assert_eq!(
            config(Some(" 8081 "), Some("127.0.0.1"))
                .unwrap()
                .system_server,
            SystemServerConfig::Enabled {
                host: "127.0.0.1".into(),
                port: 8081
            }
        );
        for bad in ["-2", "65536", "abc", "80.5", "0x50"] {
            let e = config(Some(bad), None).unwrap_err().to_string();
            assert!(
                e.contains("DYN_SYSTEM_PORT") && e.contains(&format!("{bad:?}")),
                "{e}"
            );
        }
    }
}
