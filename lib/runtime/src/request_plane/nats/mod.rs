//! The NATS transport of the request plane, in three parts, each a type of
//! its own: [`transport::NatsTransport`] carries requests and their streamed
//! responses, [`instances::InstanceRegistry`] keeps the leased list of live
//! instances in JetStream, and the discovery records (`crate::discovery`)
//! are gathered over the same connection. [`NatsPlane`] is the connection
//! and the three.

pub(crate) mod instances;
pub(crate) mod transport;

use super::endpoint_metrics::EndpointMetrics;
use super::handler::RawHandler;
use super::{EndpointPath, InstanceId, TransportError};
use crate::discovery::NatsRecords;
use instances::{InstanceRecord, InstanceRegistry, NatsServing};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use transport::NatsTransport;

/// The NATS connection of one runtime and what runs over it.
pub(crate) struct NatsPlane {
    pub transport: NatsTransport,
    pub instances: Arc<InstanceRegistry>,
    pub records: Arc<NatsRecords>,
}

impl NatsPlane {
    /// Connects to the NATS server at `url` and opens the instance bucket.
    pub(crate) async fn connect(
        url: &str,
        liveness: Duration,
    ) -> Result<Arc<Self>, TransportError> {
        let client = async_nats::ConnectOptions::new()
            .name("dynamo-runtime")
            .connect(url)
            .await
            .map_err(|source| TransportError::Connect {
                url: url.to_owned(),
                source,
            })?;
        let instances = Arc::new(InstanceRegistry::open(client.clone()).await?);
        tracing::info!(url, "request plane: NATS");
        Ok(Arc::new(Self {
            transport: NatsTransport::new(client.clone(), liveness),
            instances,
            records: Arc::new(NatsRecords::new(client)),
        }))
    }

    /// Serves `handler` as instance `id` of `path`: subscribes its subjects,
    /// then lists it in the instance bucket.
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
        match self
            .instances
            .register(path, id, &record, stop.clone(), in_flight)
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
