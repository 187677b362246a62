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
    /// Each endpoint's status and how many instances of it this process serves.
    endpoints: RwLock<BTreeMap<String, (HealthStatus, usize)>>,
    /// Set once the process drains: it answers `notready` from then on.
    draining: std::sync::atomic::AtomicBool,
}

impl Health {
    /// Records the status of an endpoint.
    #[cfg(test)]
    pub(crate) fn set_endpoint(&self, name: String, status: HealthStatus) {
        self.endpoints.write().entry(name).or_insert((status, 1)).0 = status;
    }

    /// Sets the status of an endpoint this process serves (no effect on
    /// one it no longer serves).
    pub(crate) fn set_endpoint_status(&self, name: &str, status: HealthStatus) {
        if let Some(entry) = self.endpoints.write().get_mut(name) {
            entry.0 = status;
        }
    }

    /// An instance of the endpoint is serving.
    pub(crate) fn add_instance(&self, name: String) {
        let mut endpoints = self.endpoints.write();
        let entry = endpoints.entry(name).or_insert((HealthStatus::Ready, 0));
        entry.0 = HealthStatus::Ready;
        entry.1 += 1;
    }

    /// An instance of the endpoint stopped; the endpoint is no longer listed
    /// when none is left.
    pub(crate) fn remove_instance(&self, name: &str) {
        let mut endpoints = self.endpoints.write();
        if let Some(entry) = endpoints.get_mut(name) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                endpoints.remove(name);
            }
        }
    }

    /// From now on the process is draining: `/health` says `notready`.
    pub(crate) fn set_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn report(&self, uptime: f64) -> HealthReport {
        let endpoints: BTreeMap<String, HealthStatus> = self
            .endpoints
            .read()
            .iter()
            .map(|(k, (status, _))| (k.clone(), *status))
            .collect();
        let draining = self.draining.load(std::sync::atomic::Ordering::Relaxed);
        let status = if !draining && endpoints.values().all(|s| *s == HealthStatus::Ready) {
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
    fn endpoints_are_listed_while_an_instance_serves() {
        let h = Health::default();
        h.add_instance("a".into());
        h.add_instance("a".into());
        h.remove_instance("a");
        assert_eq!(h.report(0.0).endpoints.get("a"), Some(&HealthStatus::Ready));
        h.remove_instance("a");
        assert!(h.report(0.0).endpoints.is_empty());
    }

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
