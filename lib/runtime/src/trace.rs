//! What a caller tells the handler of a request about it, besides its
//! payload: the request's id and its W3C trace context (`traceparent`).
//! The frontend sets both; the request plane carries them to the worker
//! (NATS headers), where the handler's [`Context`](crate::request_plane::Context)
//! has them and the endpoint's request-duration histogram uses them as its
//! exemplar.

use crate::metrics::Exemplar;
use std::sync::Arc;

/// The most bytes of a request id kept; longer ids are cut (at a character
/// boundary).
pub const MAX_REQUEST_ID_BYTES: usize = 64;

/// A W3C `traceparent` header value, validated:
/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, lower case,
/// neither id all zeros.
///
/// ```
/// use dynamo_runtime::TraceParent;
///
/// let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// assert_eq!(tp.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(tp.parent_id(), "00f067aa0ba902b7");
/// assert!(TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
/// assert!(TraceParent::parse("not a traceparent").is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// The whole header value, 55 characters.
    value: String,
}

impl TraceParent {
    /// Parses a header value; `None` when it is not a valid version-00
    /// `traceparent` (a later version's longer value is read by its first
    /// four fields, as the W3C spec asks).
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let fields: Vec<&str> = value.splitn(5, '-').collect();
        let [version, trace_id, parent_id, flags, rest @ ..] = fields.as_slice() else {
            return None;
        };
        let hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let zero = |s: &str| s.bytes().all(|b| b == b'0');
        let ok = hex(version, 2)
            && *version != "ff"
            && hex(trace_id, 32)
            && !zero(trace_id)
            && hex(parent_id, 16)
            && !zero(parent_id)
            && hex(flags, 2)
            && (rest.is_empty() || *version != "00");
        ok.then(|| Self {
            value: format!("00-{trace_id}-{parent_id}-{flags}"),
        })
    }

    /// The 32 hex characters of the trace id.
    pub fn trace_id(&self) -> &str {
        &self.value[3..35]
    }

    /// The 16 hex characters of the parent (span) id.
    pub fn parent_id(&self) -> &str {
        &self.value[36..52]
    }

    /// The header value, as version 00.
    pub fn as_str(&self) -> &str {
        &self.value
    }
}

/// A request's id (bounded, see [`MAX_REQUEST_ID_BYTES`]) and trace context.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestMeta {
    request_id: Option<String>,
    traceparent: Option<TraceParent>,
}

impl RequestMeta {
    /// A request id (cut to [`MAX_REQUEST_ID_BYTES`]) and maybe a trace
    /// context. An empty id is none.
    ///
    /// ```
    /// use dynamo_runtime::{RequestMeta, TraceParent};
    ///
    /// let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    /// let meta = RequestMeta::new("chatcmpl-1", tp);
    /// assert_eq!(meta.request_id(), Some("chatcmpl-1"));
    /// assert_eq!(meta.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    /// let e = meta.exemplar().unwrap();
    /// assert_eq!(e.label_text(), r#"request_id="chatcmpl-1",trace_id="4bf92f3577b34da6a3ce929d0e0e4736""#);
    /// ```
    pub fn new(request_id: &str, traceparent: Option<TraceParent>) -> Self {
        let request_id = bounded(request_id);
        Self {
            request_id: (!request_id.is_empty()).then(|| request_id.to_owned()),
            traceparent,
        }
    }

    /// This meta with `id` (bounded like any other) as its request id when
    /// the caller gave none: the request plane's own id for the request.
    pub(crate) fn or_request_id(mut self, mut id: String) -> Self {
        if self.request_id.is_none() && !id.is_empty() {
            id.truncate(bounded(&id).len());
            self.request_id = Some(id);
        }
        self
    }

    /// The request's id.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The trace context.
    pub fn traceparent(&self) -> Option<&TraceParent> {
        self.traceparent.as_ref()
    }

    /// The trace id, if the request came with a trace context.
    pub fn trace_id(&self) -> Option<&str> {
        self.traceparent.as_ref().map(TraceParent::trace_id)
    }

    /// True when it holds neither an id nor a trace context.
    pub fn is_empty(&self) -> bool {
        self.request_id.is_none() && self.traceparent.is_none()
    }

    /// The exemplar labels of this request: `request_id` and, with a trace
    /// context, `trace_id`. `None` when it has neither.
    pub fn exemplar(&self) -> Option<Exemplar> {
        Exemplar::of_request(&Arc::new(self.clone()))
    }

    /// [`Self::exemplar`] of a shared meta: no copy, the labels written out
    /// only when a scrape reads them (what the request paths record).
    pub fn shared_exemplar(self: &Arc<Self>) -> Option<Exemplar> {
        Exemplar::of_request(self)
    }
}

/// `id` cut to at most [`MAX_REQUEST_ID_BYTES`] bytes at a character boundary.
fn bounded(id: &str) -> &str {
    if id.len() <= MAX_REQUEST_ID_BYTES {
        return id;
    }
    let mut end = MAX_REQUEST_ID_BYTES;
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    &id[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_values() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(TraceParent::parse(good).unwrap().as_str(), good);
        assert_eq!(
            TraceParent::parse(&format!(" {good} ")).unwrap().as_str(),
            good
        );
        // A later version with more fields is read by its first four.
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever";
        assert_eq!(TraceParent::parse(later).unwrap().as_str(), good);
        for bad in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-4bf92f3577b34da6a3ce929d0e0e47é6-00f067aa0ba902b7-01",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn request_ids_are_bounded_and_make_valid_exemplars() {
        let long = "é".repeat(100);
        let meta = RequestMeta::new(&long, None);
        let id = meta.request_id().unwrap();
        assert!(id.len() <= MAX_REQUEST_ID_BYTES && long.starts_with(id));
        let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let x = "é\"x\n".repeat(100);
        // The longest id and a trace id, written out when read, are what the
        // checking constructor makes of the same labels (so within its limit).
        let longest = RequestMeta::new(&x, tp.clone()).exemplar().unwrap();
        let bounded_id = RequestMeta::new(&x, None).request_id().unwrap().to_owned();
        let checked = Exemplar::new(&[
            ("request_id", &bounded_id),
            ("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ])
        .unwrap();
        assert_eq!(longest.label_text(), checked.label_text());
        assert_eq!(longest, checked);
        let mut written = String::from("{");
        longest.write_labels(&mut written);
        assert_eq!(written, format!("{{{}", checked.label_text()));
        assert!(RequestMeta::new("", None).is_empty());
        assert!(RequestMeta::new("", None).exemplar().is_none());
        // The request plane's id fills in only where the caller gave none,
        // bounded the same way.
        let given = RequestMeta::new("mine", None).or_request_id("plane".to_owned());
        assert_eq!(given.request_id(), Some("mine"));
        let filled = RequestMeta::default().or_request_id("é".repeat(40));
        assert_eq!(filled.request_id(), Some("é".repeat(32).as_str()));
        assert!(RequestMeta::default()
            .or_request_id(String::new())
            .is_empty());
        let quoted = RequestMeta::new("a\"b", None).exemplar().unwrap();
        assert_eq!(quoted.label_text(), r#"request_id="a\"b""#);
    }
}
