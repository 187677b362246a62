//! Where Prometheus finds every process's metrics: each process publishes the
//! address of its system status server (the runtime does it when the server
//! starts) as a discovery record, and anyone can list them, e.g. to serve a
//! Prometheus HTTP service-discovery endpoint (the frontend does, at
//! `/discovery/prometheus`).
//!
//! ```
//! use dynamo_runtime::{DistributedRuntime, ScrapeTarget};
//!
//! # tokio_test_block_on(async {
//! let drt = DistributedRuntime::from_config(Default::default())?;
//! let target = ScrapeTarget::new("127.0.0.1:9100".parse()?, None, "exporter");
//! let _lease = drt.publish_scrape_target(&target).await?;
//! let targets = drt.scrape_targets().await?;
//! assert_eq!(targets, vec![target]);
//! let sd = ScrapeTarget::http_sd_groups(&targets);
//! assert_eq!(sd[0]["targets"][0], "127.0.0.1:9100");
//! assert_eq!(sd[0]["labels"]["dynamo_server"], "exporter");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

use crate::{DiscoveryError, DistributedRuntime, RecordLease};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The discovery bucket of scrape targets.
pub const SCRAPE_TARGETS_BUCKET: &str = "dynamo_scrape_targets";

/// The target label that says what serves at an address (`system` for a
/// system status server, `frontend` for an HTTP frontend's `/metrics`).
const SERVER_LABEL: &str = "dynamo_server";

/// One address serving `/metrics`, as published for Prometheus.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ScrapeTarget {
    /// `host:port`, as Prometheus should dial it.
    pub address: String,
    /// What serves there (the value of the `dynamo_server` target label).
    pub server: String,
}

impl ScrapeTarget {
    /// The target for a server bound to `bound`: `advertise_host` when given,
    /// else the bound IP, except that a server bound to every interface
    /// (`0.0.0.0` or `::`) is published as `127.0.0.1` (set
    /// `DYN_SYSTEM_ADVERTISE_HOST` when Prometheus runs on another machine).
    pub fn new(bound: SocketAddr, advertise_host: Option<&str>, server: &str) -> Self {
        let port = bound.port();
        let address = match advertise_host {
            Some(host) if host.contains(':') && !host.starts_with('[') => {
                format!("[{host}]:{port}")
            }
            Some(host) => format!("{host}:{port}"),
            None if bound.ip().is_unspecified() => {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port).to_string()
            }
            None => bound.to_string(),
        };
        Self {
            address,
            server: server.to_owned(),
        }
    }

    /// The targets as the JSON body of a Prometheus HTTP service-discovery
    /// endpoint: one group per kind of server, with a `dynamo_server` label.
    pub fn http_sd_groups(targets: &[ScrapeTarget]) -> serde_json::Value {
        let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for t in targets {
            groups.entry(&t.server).or_default().push(&t.address);
        }
        groups
            .into_iter()
            .map(|(server, addresses)| {
                serde_json::json!({"targets": addresses, "labels": {SERVER_LABEL: server}})
            })
            .collect()
    }
}

/// Publishes `target` (see `DistributedRuntime::publish_scrape_target`).
pub(crate) async fn publish(
    drt: &DistributedRuntime,
    target: &ScrapeTarget,
) -> Result<RecordLease, DiscoveryError> {
    let value = serde_json::to_vec(target).map_err(|source| DiscoveryError::Encode {
        bucket: SCRAPE_TARGETS_BUCKET.to_owned(),
        what: format!("{target:?}"),
        source,
    })?;
    drt.register_record(SCRAPE_TARGETS_BUCKET, &target.address, value)
        .await
}

/// Every published target, sorted and without duplicates (see
/// `DistributedRuntime::scrape_targets`). A record that does not decode is
/// skipped with a warning.
pub(crate) async fn list(drt: &DistributedRuntime) -> Result<Vec<ScrapeTarget>, DiscoveryError> {
    let mut targets: Vec<ScrapeTarget> = drt
        .list_records(SCRAPE_TARGETS_BUCKET)
        .await?
        .into_iter()
        .filter_map(|raw| match serde_json::from_slice(&raw) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(
                    record = %String::from_utf8_lossy(&raw),
                    error = %e,
                    "skipping a malformed scrape target record"
                );
                None
            }
        })
        .collect();
    targets.sort();
    targets.dedup();
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_addresses() {
        let any: SocketAddr = "0.0.0.0:8081".parse().unwrap();
        assert_eq!(
            ScrapeTarget::new(any, None, "system").address,
            "127.0.0.1:8081"
        );
        let any6: SocketAddr = "[::]:8081".parse().unwrap();
        assert_eq!(
            ScrapeTarget::new(any6, None, "system").address,
            "127.0.0.1:8081"
        );
        let specific: SocketAddr = "10.1.2.3:8081".parse().unwrap();
        assert_eq!(
            ScrapeTarget::new(specific, None, "system").address,
            "10.1.2.3:8081"
        );
        assert_eq!(
            ScrapeTarget::new(any, Some("worker-3.cluster"), "system").address,
            "worker-3.cluster:8081"
        );
        assert_eq!(
            ScrapeTarget::new(any, Some("fd00::1"), "system").address,
            "[fd00::1]:8081"
        );
    }

    #[test]
    fn http_sd_groups_by_server_kind() {
        let t = |a: &str, s: &str| ScrapeTarget {
            address: a.into(),
            server: s.into(),
        };
        let sd = ScrapeTarget::http_sd_groups(&[
            t("h:1", "system"),
            t("h:2", "frontend"),
            t("h:3", "system"),
        ]);
        assert_eq!(
            sd,
            serde_json::json!([
                {"targets": ["h:2"], "labels": {"dynamo_server": "frontend"}},
                {"targets": ["h:1", "h:3"], "labels": {"dynamo_server": "system"}},
            ])
        );
        assert_eq!(ScrapeTarget::http_sd_groups(&[]), serde_json::json!([]));
    }

    #[tokio::test]
    async fn the_runtime_publishes_its_system_server_and_lists_leased_targets() {
        let drt = DistributedRuntime::from_config(crate::RuntimeConfig {
            system_server: crate::SystemServerConfig::Enabled {
                host: "127.0.0.1".into(),
                port: 0,
            },
            ..Default::default()
        })
        .unwrap();
        let port = drt.system_server_addr().unwrap().port();
        let expected = vec![ScrapeTarget {
            address: format!("127.0.0.1:{port}"),
            server: "system".into(),
        }];
        let mut targets = Vec::new();
        for _ in 0..100 {
            targets = drt.scrape_targets().await.unwrap();
            if !targets.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(targets, expected);

        let extra = ScrapeTarget::new("0.0.0.0:9999".parse().unwrap(), None, "frontend");
        let lease = drt.publish_scrape_target(&extra).await.unwrap();
        assert_eq!(drt.scrape_targets().await.unwrap().len(), 2);
        drop(lease);
        assert_eq!(drt.scrape_targets().await.unwrap(), expected);
        let _junk = drt
            .register_record(SCRAPE_TARGETS_BUCKET, "junk", b"not json".to_vec())
            .await
            .unwrap();
        assert_eq!(
            drt.scrape_targets().await.unwrap(),
            expected,
            "junk is skipped"
        );
    }
}
