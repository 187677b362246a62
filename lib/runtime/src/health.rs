//! Readiness of a process: ready when every endpoint it serves is ready.

use parking_lot::RwLock;
use serde::Serialize;
use std::collections::BTreeMap;

/// Ready or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Serving.
    Ready,
    /// Not (yet) serving.
    #[serde(rename = "notready")]
    NotReady,
}

/// The body of `GET /health`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    /// `ready` when every endpoint is ready.
    pub status: HealthStatus,
    /// Seconds since the runtime started.
    pub uptime: f64,
    /// Each served endpoint (`namespace/component/endpoint`) and its status.
    pub endpoints: BTreeMap<String, HealthStatus>,
}

/// The health state shared by the runtime and its system server.
#[derive(Default)]
pub(crate) struct Health {
    endpoints: RwLock<BTreeMap<String, HealthStatus>>,
}

impl Health {
    /// Records the status of an endpoint.
    #[allow(dead_code)] // used once endpoints are served
    pub(crate) fn set_endpoint(&self, name: String, status: HealthStatus) {
        self.endpoints.write().insert(name, status);
    }

    pub(crate) fn report(&self, uptime: f64) -> HealthReport {
        let endpoints = self.endpoints.read().clone();
        let status = if endpoints.values().all(|s| *s == HealthStatus::Ready) {
            HealthStatus::Ready
        } else {
            HealthStatus::NotReady
        };
        HealthReport {
            status,
            uptime,
            endpoints,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_all_endpoints_are() {
        let h = Health::default();
        assert_eq!(h.report(1.0).status, HealthStatus::Ready);
        h.set_endpoint("ns/c/a".into(), HealthStatus::Ready);
        h.set_endpoint("ns/c/b".into(), HealthStatus::NotReady);
        let r = h.report(2.5);
        assert_eq!(r.status, HealthStatus::NotReady);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["status"], "notready");
        assert_eq!(json["endpoints"]["ns/c/a"], "ready");
        assert_eq!(json["uptime"], 2.5);
    }
}
