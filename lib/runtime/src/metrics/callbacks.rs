//! Scrape-time callbacks, run with failures isolated: an error, a panic or
//! malformed text is logged and counted, and the scrape goes on.

use super::expfmt::{self, ExternalFamilies};
use super::prometheus_names::callback as names;
use super::scope::ScopePath;
use super::vec::IntCounterVec;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// The error a callback may return: anything that converts into a boxed
/// error, so `anyhow::Error`, `std::io::Error` and `String` all work.
pub type CallbackError = Box<dyn std::error::Error + Send + Sync>;

type UpdateFn = dyn Fn() -> Result<(), CallbackError> + Send + Sync;
type ExpfmtFn = dyn Fn() -> Result<String, CallbackError> + Send + Sync;

#[derive(Clone)]
pub(crate) enum Callback {
    /// Updates metrics before a scrape.
    Update(Arc<UpdateFn>),
    /// Returns exposition text to merge into a scrape.
    Expfmt(Arc<ExpfmtFn>),
}

impl Callback {
    pub(crate) fn update<F, E>(f: F) -> Self
    where
        F: Fn() -> Result<(), E> + Send + Sync + 'static,
        E: Into<CallbackError>,
    {
        Callback::Update(Arc::new(move || f().map_err(Into::into)))
    }

    pub(crate) fn expfmt<F, E>(f: F) -> Self
    where
        F: Fn() -> Result<String, E> + Send + Sync + 'static,
        E: Into<CallbackError>,
    {
        Callback::Expfmt(Arc::new(move || f().map_err(Into::into)))
    }
}

/// Counts failures into [`names::FAILURES_TOTAL`].
#[derive(Clone)]
pub(crate) struct FailureCounter(pub IntCounterVec);

impl FailureCounter {
    pub(crate) fn count(&self, kind: &str, failure: &str) {
        self.0.with_label_values(&[kind, failure]).inc();
    }

    /// Makes every series exist from the start, at 0.
    pub(crate) fn touch_all(&self) {
        for failure in [names::FAILURE_ERROR, names::FAILURE_PANIC] {
            self.0.with_label_values(&[names::KIND_UPDATE, failure]);
        }
        for failure in [
            names::FAILURE_ERROR,
            names::FAILURE_PANIC,
            names::FAILURE_MALFORMED,
            names::FAILURE_CONFLICT,
        ] {
            self.0.with_label_values(&[names::KIND_EXPFMT, failure]);
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

/// Runs the callbacks and returns the text callbacks' families.
pub(crate) fn run(
    callbacks: &[(ScopePath, Callback)],
    failures: &FailureCounter,
) -> ExternalFamilies {
    let mut external = ExternalFamilies::default();
    for (scope, callback) in callbacks {
        match callback {
            Callback::Update(f) => match catch_unwind(AssertUnwindSafe(|| f())) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(scope = %scope, error = %e, "metrics callback failed");
                    failures.count(names::KIND_UPDATE, names::FAILURE_ERROR);
                }
                Err(p) => {
                    tracing::error!(scope = %scope, panic = %panic_message(&*p), "metrics callback panicked");
                    failures.count(names::KIND_UPDATE, names::FAILURE_PANIC);
                }
            },
            Callback::Expfmt(f) => {
                let text = match catch_unwind(AssertUnwindSafe(|| f())) {
                    Ok(Ok(text)) => text,
                    Ok(Err(e)) => {
                        tracing::warn!(scope = %scope, error = %e, "metrics text callback failed");
                        failures.count(names::KIND_EXPFMT, names::FAILURE_ERROR);
                        continue;
                    }
                    Err(p) => {
                        tracing::error!(scope = %scope, panic = %panic_message(&*p), "metrics text callback panicked");
                        failures.count(names::KIND_EXPFMT, names::FAILURE_PANIC);
                        continue;
                    }
                };
                match expfmt::parse(&text) {
                    Ok(families) => {
                        for name in external.merge(families) {
                            tracing::warn!(scope = %scope, family = %name, "text callback family dropped: its type differs from another callback's");
                            failures.count(names::KIND_EXPFMT, names::FAILURE_CONFLICT);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(scope = %scope, error = %e, "metrics text callback returned malformed text; dropped");
                        failures.count(names::KIND_EXPFMT, names::FAILURE_MALFORMED);
                    }
                }
            }
        }
    }
    external
}
