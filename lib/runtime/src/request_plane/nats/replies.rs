//! The replies of every call a process makes, on one subscription: a
//! wildcard inbox `_INBOX.<id>.*` per connection, and a route per call (the
//! last token of its reply subject) to that call's frames. A subscription per
//! call cost a SUB and an UNSUB on the server each, about 30 us of a 140 us
//! round trip on loopback.
//!
//! Each route holds at most [`ROUTE_CAPACITY`] messages the caller has not
//! read yet: a caller that stops reading loses its route (its stream ends
//! with an error), and the other calls never wait on it. A route is removed
//! when its receiver is dropped, on every path.

use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use tokio::sync::mpsc;

use crate::request_plane::TransportError;

/// Messages a route holds before its caller reads them.
pub(crate) const ROUTE_CAPACITY: usize = 4096;

/// A message routed to one call: its payload, or the server's "no
/// responders" for the request.
#[derive(Debug)]
pub(crate) enum Reply {
    Message(Bytes),
    NoResponders,
}

type Routes = Mutex<HashMap<String, mpsc::Sender<Reply>>>;

/// The wildcard inbox of one connection and the routes of the calls in flight.
pub(crate) struct Replies {
    prefix: String,
    routes: Arc<Routes>,
}

impl Replies {
    /// Subscribes to a fresh wildcard inbox and starts the dispatcher.
    pub(crate) async fn start(client: &async_nats::Client) -> Result<Self, TransportError> {
        let prefix = client.new_inbox();
        let subject = format!("{prefix}.*");
        let mut sub = client
            .subscribe(subject.clone())
            .await
            .map_err(|source| TransportError::Subscribe { subject, source })?;
        let routes: Arc<Routes> = Arc::default();
        let weak: Weak<Routes> = Arc::downgrade(&routes);
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let Some(routes) = weak.upgrade() else { break };
                let Some(token) = msg.subject.rsplit('.').next() else {
                    continue;
                };
                let reply = if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                    Reply::NoResponders
                } else {
                    Reply::Message(msg.payload)
                };
                // The lock is not held while the caller is woken: a caller
                // that runs at once and drops its route would wait for it.
                let tx = routes.lock().get(token).cloned();
                if let Some(tx) = tx {
                    if tx.try_send(reply).is_err() {
                        // Full (the caller stopped reading) or closed: the
                        // route goes, and its receiver sees the end.
                        routes.lock().remove(token);
                    }
                }
            }
        });
        Ok(Self { prefix, routes })
    }

    /// A new route: the reply subject to publish the request with, and the
    /// receiver of its replies (dropping it removes the route).
    pub(crate) fn route(&self) -> (String, Route) {
        let token = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let (tx, rx) = mpsc::channel(ROUTE_CAPACITY);
        self.routes.lock().insert(token.clone(), tx);
        (
            format!("{}.{token}", self.prefix),
            Route {
                rx,
                token,
                routes: Arc::downgrade(&self.routes),
            },
        )
    }

    /// Routes open now (calls whose replies are still read).
    pub(crate) fn open(&self) -> usize {
        self.routes.lock().len()
    }
}

/// The replies of one call.
pub(crate) struct Route {
    rx: mpsc::Receiver<Reply>,
    token: String,
    routes: Weak<Routes>,
}

impl Route {
    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Reply>> {
        self.rx.poll_recv(cx)
    }

    pub(crate) async fn recv(&mut self) -> Option<Reply> {
        self.rx.recv().await
    }
}

impl Drop for Route {
    fn drop(&mut self) {
        if let Some(routes) = self.routes.upgrade() {
            routes.lock().remove(&self.token);
        }
    }
}
