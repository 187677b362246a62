//! The requests a serving instance is working on, by the caller's inbox (a
//! cancel names it), and the cancels that arrived before their request.
//!
//! Requests and cancels come on two subscriptions, read by two tasks, so a
//! caller that gives up at once can have its cancel read first: such a
//! cancel is kept (at most [`EARLY_CANCELS_MAX`], for [`EARLY_CANCEL_TTL`])
//! and the request, when it comes, starts cancelled and never reaches its
//! handler. A request answered at once, within the poll that received it,
//! is never registered at all (nothing could cancel it in between).

use async_nats::Subject;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Cancels kept for requests not seen yet, at most.
pub(crate) const EARLY_CANCELS_MAX: usize = 1024;
/// How long a cancel waits for its request.
pub(crate) const EARLY_CANCEL_TTL: Duration = Duration::from_secs(30);

/// A caller's inbox as a map key (found by the inbox as text): the
/// subject's own bytes, shared rather than copied.
#[derive(PartialEq, Eq)]
struct InboxKey(Subject);

impl std::hash::Hash for InboxKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.as_str().hash(state);
    }
}

impl std::borrow::Borrow<str> for InboxKey {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

#[derive(Default)]
struct State {
    running: HashMap<InboxKey, CancellationToken>,
    /// Cancels whose request had not arrived, and when they came.
    early: HashMap<String, Instant>,
}

/// See the module's documentation.
#[derive(Default)]
pub(crate) struct InFlight {
    state: Mutex<State>,
    /// Whether `early` may hold anything: a request checks it without the
    /// lock when it does not (the usual case).
    any_early: AtomicBool,
}

impl InFlight {
    /// Requests registered now.
    pub(crate) fn len(&self) -> usize {
        self.state.lock().running.len()
    }

    /// A cancel for `inbox`: its request is cancelled, or, not seen yet,
    /// will start cancelled.
    pub(crate) fn cancel(&self, inbox: &str) {
        let mut state = self.state.lock();
        if let Some(token) = state.running.get(inbox) {
            token.cancel();
            return;
        }
        let now = Instant::now();
        if state.early.len() >= EARLY_CANCELS_MAX {
            state
                .early
                .retain(|_, at| now.duration_since(*at) < EARLY_CANCEL_TTL);
        }
        if state.early.len() >= EARLY_CANCELS_MAX {
            tracing::debug!(inbox, "too many cancels for unknown requests; dropped");
            return;
        }
        state.early.insert(inbox.to_owned(), now);
        self.any_early.store(true, Ordering::Release);
    }

    /// Whether a cancel for `inbox` came before its request (taken out).
    pub(crate) fn cancelled_early(&self, inbox: &str) -> bool {
        if !self.any_early.load(Ordering::Acquire) {
            return false;
        }
        self.take_early(&mut self.state.lock(), inbox)
    }

    fn take_early(&self, state: &mut State, inbox: &str) -> bool {
        let found = state.early.remove(inbox).is_some();
        if state.early.is_empty() {
            self.any_early.store(false, Ordering::Release);
        }
        found
    }

    /// Registers a request that goes on after the poll that received it;
    /// a cancel that came meanwhile cancels it now.
    pub(crate) fn register(&self, inbox: Subject, token: CancellationToken) {
        let mut state = self.state.lock();
        if self.take_early(&mut state, inbox.as_str()) {
            token.cancel();
        }
        state.running.insert(InboxKey(inbox), token);
    }

    /// The request of `inbox` ended.
    pub(crate) fn remove(&self, inbox: &str) {
        self.state.lock().running.remove(inbox);
    }

    #[cfg(test)]
    pub(crate) fn early_len(&self) -> usize {
        self.state.lock().early.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_reaches_its_request_whichever_comes_first() {
        let in_flight = InFlight::default();
        // Request first.
        let token = CancellationToken::new();
        in_flight.register(Subject::from("_INBOX.a.1"), token.clone());
        assert_eq!(in_flight.len(), 1);
        in_flight.cancel("_INBOX.a.1");
        assert!(token.is_cancelled());
        in_flight.remove("_INBOX.a.1");
        assert_eq!(in_flight.len(), 0);
        // Cancel first, then a request answered at once.
        in_flight.cancel("_INBOX.a.2");
        assert!(!in_flight.cancelled_early("_INBOX.a.3"));
        assert!(in_flight.cancelled_early("_INBOX.a.2"));
        assert!(!in_flight.cancelled_early("_INBOX.a.2"), "taken out");
        // Cancel first, then a request that goes on.
        in_flight.cancel("_INBOX.a.4");
        let token = CancellationToken::new();
        in_flight.register(Subject::from("_INBOX.a.4"), token.clone());
        assert!(token.is_cancelled());
        assert_eq!(in_flight.early_len(), 0);
        assert!(!in_flight.any_early.load(Ordering::Acquire));
    }

    #[test]
    fn cancels_for_unknown_requests_are_bounded() {
        let in_flight = InFlight::default();
        for i in 0..EARLY_CANCELS_MAX + 500 {
            in_flight.cancel(&format!("_INBOX.flood.{i}"));
        }
        assert_eq!(in_flight.early_len(), EARLY_CANCELS_MAX);
        // The first ones are kept (within their time), the rest dropped.
        assert!(in_flight.cancelled_early("_INBOX.flood.0"));
        assert!(!in_flight.cancelled_early(&format!("_INBOX.flood.{}", EARLY_CANCELS_MAX + 1)));
    }
}
