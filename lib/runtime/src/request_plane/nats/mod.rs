//! The NATS transport of the request plane, in parts that are each a type
//! of their own: [`transport::NatsTransport`] carries requests and their
//! streamed responses, [`instances::InstanceRegistry`] reads the live
//! instances from discovery, and the discovery records
//! (`crate::discovery`) live either in etcd (`ETCD_ENDPOINTS`) or are
//! announced over the same NATS connection. [`NatsPlane`] is the connection
//! and the parts.

mod in_flight;
pub(crate) mod instances;
mod replies;
pub(crate) mod transport;
mod wire;

use super::endpoint_metrics::EndpointMetrics;
use super::handler::RawHandler;
use super::{EndpointPath, InstanceId, TransportError};
use crate::discovery::{EtcdRecords, NatsRecords, RemoteRecords};
use instances::{InstanceRecord, InstanceRegistry, NatsServing};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use transport::NatsTransport;

/// The NATS connection of one runtime and what runs over it.
pub(crate) struct NatsPlane {
    pub transport: NatsTransport,
    pub instances: InstanceRegistry,
    pub records: RemoteRecords,
}

impl NatsPlane {
    /// Connects to the NATS server at `url` (and to etcd at `etcd`, when
    /// given, for discovery), and starts watching the instances.
    pub(crate) async fn connect(
        url: &str,
        etcd: Option<&[String]>,
        liveness: Duration,
    ) -> Result<Arc<Self>, TransportError> {
        let info_stale = Arc::new(AtomicBool::new(false));
        let on_event = info_stale.clone();
        let client = async_nats::ConnectOptions::new()
            .name("dynamo-runtime")
            .reconnect_delay_callback(reconnect_delay)
            .event_callback(move |event| {
                if matches!(event, async_nats::Event::Connected) {
                    on_event.store(true, Ordering::Relaxed);
                }
                async {}
            })
            .connect(url)
            .await
            .map_err(|source| TransportError::Connect {
                url: url.to_owned(),
                source,
            })?;
        let records = match etcd {
            Some(endpoints) => RemoteRecords::Etcd(EtcdRecords::connect(endpoints).await?),
            None => RemoteRecords::Nats(Arc::new(NatsRecords::new(client.clone()))),
        };
        let instances = InstanceRegistry::new();
        tracing::info!(
            url,
            discovery = if etcd.is_some() { "etcd" } else { "nats" },
            "request plane: NATS"
        );
        Ok(Arc::new(Self {
            transport: NatsTransport::new(client, liveness, info_stale),
            instances,
            records,
        }))
    }

    /// Serves `handler` as instance `id` of `path`: subscribes its subjects,
    /// then lists it in discovery.
    pub(crate) async fn serve(
        &self,
        path: &EndpointPath,
        id: InstanceId,
        handler: Arc<dyn RawHandler>,
        metrics: Option<Arc<EndpointMetrics>>,
        system_addr: Option<SocketAddr>,
    ) -> Result<NatsServing, TransportError> {
        let subject = transport::subject(path, id);
        let (stop, in_flight) = self.transport.serve(&subject, handler, metrics).await?;
        let record = InstanceRecord {
            endpoint: path.to_string(),
            instance: format!("{id:016x}"),
            subject,
            system_addr: system_addr.map(|a| a.to_string()),
        };
        match InstanceRegistry::register(&self.records, path, id, &record, stop.clone(), in_flight)
            .await
        {
            Ok(serving) => Ok(serving),
            Err(e) => {
                stop.cancel();
                Err(e)
            }
        }
    }
}

/// The pause before reconnection attempt `attempts`: none for the first,
/// then doubling from 50 ms up to [`MAX_RECONNECT_DELAY`], with up to 20%
/// jitter so that a fleet does not reconnect in step. (The client's default
/// grows to 4 s, which kept processes off a restarted server for seconds.)
fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exp = u32::try_from(attempts - 2).unwrap_or(u32::MAX).min(16);
    let base = (Duration::from_millis(50) * 2u32.pow(exp)).min(MAX_RECONNECT_DELAY);
    base + base.mul_f64(fastrand::f64() * 0.2)
}

/// The longest pause between reconnection attempts to NATS.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// A name as one token of a NATS subject and key: `[A-Za-z0-9_-]` kept, every
/// other byte as `=XX`.
pub(crate) fn token(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// `ns.comp.ep.` with each name as a [`token`]: the start of every subject and
/// key of one endpoint.
pub(crate) fn key_prefix(path: &EndpointPath) -> String {
    format!(
        "{}.{}.{}.",
        token(&path.namespace),
        token(&path.component),
        token(&path.endpoint)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnection_pauses_grow_to_a_second() {
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        let second = reconnect_delay(2);
        assert!(second >= Duration::from_millis(50) && second <= Duration::from_millis(60));
        for attempts in [10, 100, usize::MAX] {
            let d = reconnect_delay(attempts);
            assert!(
                d >= MAX_RECONNECT_DELAY && d <= MAX_RECONNECT_DELAY.mul_f64(1.2),
                "{d:?}"
            );
        }
    }

    #[test]
    fn tokens_are_subject_and_key_safe() {
        assert_eq!(token("my-ns_1"), "my-ns_1");
        assert_eq!(token("a.b c*>"), "a=2Eb=20c=2A=3E");
        assert_eq!(token("ü"), "=C3=BC");
        let path = EndpointPath {
            namespace: "n.s".into(),
            component: "c".into(),
            endpoint: "e".into(),
        };
        assert_eq!(
            transport::subject(&path, 255),
            "dynamo.rq.n=2Es.c.e.00000000000000ff"
        );
    }
}
