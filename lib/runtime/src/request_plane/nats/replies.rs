//! The replies of every call a process makes, on one subscription: a
//! wildcard inbox `_INBOX.<id>.*` per connection, and a route per call (the
//! last token of its reply subject, 128 random bits in hex) to that call's
//! frames. A subscription per call cost a SUB and an UNSUB on the server
//! each, about 30 us of a 140 us round trip on loopback.
//!
//! A route is a small queue of its own (a lock, the messages not read yet
//! and the reader's waker), not a channel: a bounded tokio channel allocates
//! a kilobyte-sized block per call, which showed in a unary call's profile.
//! Each route holds at most [`ROUTE_CAPACITY`] messages the caller has not
//! read yet: a caller that stops reading loses its route (its stream ends
//! with an error), and the other calls never wait on it. A route is removed
//! when its receiver is dropped, on every path.

use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};

use crate::prehashed::PreHashed;
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

/// What the dispatcher and one call's reader share.
#[derive(Default)]
struct Queue {
    replies: VecDeque<Reply>,
    reader: Option<Waker>,
    /// The route was dropped for overflowing: the reader sees the end.
    closed: bool,
}

/// Route keys are 128 random bits this process drew itself, already a good
/// hash (what arrives from the wire is only looked up).
type Routes = Mutex<HashMap<u128, Arc<Mutex<Queue>>, BuildHasherDefault<PreHashed>>>;

/// The key of a reply subject's last token (32 hex digits), if it is one.
fn route_key(subject: &str) -> Option<u128> {
    let token = subject.rsplit('.').next()?;
    if token.len() != 32 {
        return None;
    }
    u128::from_str_radix(token, 16).ok()
}

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
                let Some(key) = route_key(&msg.subject) else {
                    continue;
                };
                let reply = if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                    Reply::NoResponders
                } else {
                    Reply::Message(msg.payload)
                };
                deliver(&routes, key, reply);
            }
        });
        Ok(Self { prefix, routes })
    }

    /// A new route: the reply subject to publish the request with, and the
    /// receiver of its replies (dropping it removes the route).
    pub(crate) fn route(&self) -> (String, Route) {
        let key = u128::from(fastrand::u64(..)) << 64 | u128::from(fastrand::u64(..));
        let queue = Arc::new(Mutex::new(Queue::default()));
        self.routes.lock().insert(key, queue.clone());
        let mut inbox = String::with_capacity(self.prefix.len() + 33);
        inbox.push_str(&self.prefix);
        inbox.push('.');
        push_hex(&mut inbox, key);
        (
            inbox,
            Route {
                queue,
                key,
                routes: Arc::downgrade(&self.routes),
            },
        )
    }

    /// Routes open now (calls whose replies are still read).
    pub(crate) fn open(&self) -> usize {
        self.routes.lock().len()
    }
}

/// `key` as 32 lowercase hex digits.
fn push_hex(out: &mut String, key: u128) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..32).rev() {
        out.push(char::from(DIGITS[(key >> (shift * 4)) as usize & 0xf]));
    }
}

/// Hands `reply` to route `key`'s reader, if the route is still there. The
/// reader is woken after every lock is released (a reader that runs at once
/// and drops its route would wait for them otherwise).
fn deliver(routes: &Routes, key: u128, reply: Reply) {
    let waker = {
        let mut routes = routes.lock();
        let Some(queue) = routes.get(&key) else {
            return;
        };
        let mut queue = queue.lock();
        if queue.replies.len() >= ROUTE_CAPACITY {
            // The caller stopped reading: the route goes, and its reader
            // sees the end once it has read what it holds.
            queue.closed = true;
            let waker = queue.reader.take();
            drop(queue);
            routes.remove(&key);
            waker
        } else {
            queue.replies.push_back(reply);
            queue.reader.take()
        }
    };
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// The replies of one call.
pub(crate) struct Route {
    queue: Arc<Mutex<Queue>>,
    key: u128,
    routes: Weak<Routes>,
}

impl Route {
    /// The next reply; `None` once the route was dropped for overflowing.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Reply>> {
        let mut queue = self.queue.lock();
        if let Some(reply) = queue.replies.pop_front() {
            return Poll::Ready(Some(reply));
        }
        if queue.closed {
            return Poll::Ready(None);
        }
        match &mut queue.reader {
            Some(w) if w.will_wake(cx.waker()) => {}
            reader => *reader = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Route {
    fn drop(&mut self) {
        if let Some(routes) = self.routes.upgrade() {
            routes.lock().remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::noop_waker_ref;

    fn routes_with(key: u128) -> (Arc<Routes>, Route) {
        let routes: Arc<Routes> = Arc::default();
        let queue = Arc::new(Mutex::new(Queue::default()));
        routes.lock().insert(key, queue.clone());
        let route = Route {
            queue,
            key,
            routes: Arc::downgrade(&routes),
        };
        (routes, route)
    }

    #[test]
    fn reply_subjects_name_their_route() {
        let mut inbox = String::from("_INBOX.abc.");
        push_hex(&mut inbox, 0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(inbox, "_INBOX.abc.0123456789abcdef0011223344556677");
        assert_eq!(
            route_key(&inbox),
            Some(0x0123_4567_89ab_cdef_0011_2233_4455_6677)
        );
        for foreign in ["_INBOX.abc", "_INBOX.abc.xyz", "_INBOX.abc.0123", ""] {
            assert_eq!(route_key(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn replies_arrive_in_order_and_a_dropped_route_is_removed() {
        let (routes, mut route) = routes_with(7);
        let mut cx = Context::from_waker(noop_waker_ref());
        assert!(route.poll_recv(&mut cx).is_pending());
        deliver(&routes, 7, Reply::Message(Bytes::from_static(b"a")));
        deliver(&routes, 7, Reply::NoResponders);
        deliver(&routes, 8, Reply::NoResponders); // no such route: dropped
        assert!(
            matches!(route.poll_recv(&mut cx), Poll::Ready(Some(Reply::Message(m))) if m == "a")
        );
        assert!(matches!(
            route.poll_recv(&mut cx),
            Poll::Ready(Some(Reply::NoResponders))
        ));
        assert!(route.poll_recv(&mut cx).is_pending());
        drop(route);
        assert!(routes.lock().is_empty());
    }

    #[test]
    fn a_route_its_caller_stops_reading_ends_after_what_it_holds() {
        let (routes, mut route) = routes_with(1);
        for _ in 0..=ROUTE_CAPACITY {
            deliver(&routes, 1, Reply::NoResponders);
        }
        assert!(routes.lock().is_empty(), "the overflowing route is gone");
        let mut cx = Context::from_waker(noop_waker_ref());
        let mut read = 0;
        while let Poll::Ready(Some(_)) = route.poll_recv(&mut cx) {
            read += 1;
        }
        assert_eq!(read, ROUTE_CAPACITY);
        assert!(matches!(route.poll_recv(&mut cx), Poll::Ready(None)));
    }
}
