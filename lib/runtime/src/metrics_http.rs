//! The HTTP side of a scrape, shared by every `/metrics` (the system server
//! and the frontend): the format the scraper's `Accept` header asks for
//! (OpenMetrics or text 0.0.4, see [`ExpositionFormat::negotiate`]),
//! gzip-compressed (fast level) when the scraper accepts it, as Prometheus
//! does by default.

use crate::ExpositionFormat;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::io::Write;

/// Whether an `Accept-Encoding` header accepts gzip (a `gzip` coding whose
/// `q` is not 0).
///
/// ```
/// use dynamo_runtime::metrics_http::accepts_gzip;
/// assert!(accepts_gzip("gzip"));
/// assert!(accepts_gzip("deflate, GZIP;q=0.5"));
/// assert!(!accepts_gzip("gzip;q=0"));
/// assert!(!accepts_gzip("identity"));
/// ```
pub fn accepts_gzip(accept_encoding: &str) -> bool {
    accept_encoding.split(',').any(|coding| {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        if !name.eq_ignore_ascii_case("gzip") {
            return false;
        }
        !parts.any(|p| {
            p.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("q") && v.trim().parse::<f32>() == Ok(0.0)
            })
        })
    })
}

/// Whether the request's headers accept gzip.
pub fn request_accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(accepts_gzip)
}

/// The exposition format the request's `Accept` headers ask for.
pub fn request_format(headers: &HeaderMap) -> ExpositionFormat {
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    ExpositionFormat::negotiate(&accept.join(","))
}

/// `text` gzip-compressed at the fast level.
pub fn gzip(text: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(text.len() / 4),
        flate2::Compression::fast(),
    );
    encoder.write_all(text)?;
    encoder.finish()
}

/// A scrape's body, ready to send: compressed or not.
#[derive(Debug)]
pub struct Body {
    bytes: Vec<u8>,
    gzipped: bool,
}

impl Body {
    /// Prepares an exposition for a scraper that does (`gzip`) or does not
    /// accept gzip. CPU work: call it off the async threads.
    pub fn new(exposition: Vec<u8>, gzip_accepted: bool) -> Self {
        if gzip_accepted {
            if let Ok(bytes) = gzip(&exposition) {
                return Self {
                    bytes,
                    gzipped: true,
                };
            }
        }
        Self {
            bytes: exposition,
            gzipped: false,
        }
    }

    /// The HTTP response, with `content_type`.
    pub fn into_response(self, content_type: &'static str) -> Response {
        let mut response = (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (
                    header::VARY,
                    HeaderValue::from_static("Accept, Accept-Encoding"),
                ),
            ],
            self.bytes,
        )
            .into_response();
        if self.gzipped {
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn gzip_round_trips_and_shrinks_a_scrape() {
        let text = "dynamo_component_requests_total{dynamo_endpoint=\"e\"} 1\n".repeat(200);
        let body = Body::new(text.clone().into_bytes(), true);
        assert!(body.gzipped && body.bytes.len() < text.len() / 10);
        let mut out = String::new();
        flate2::read::GzDecoder::new(&body.bytes[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, text);
        let plain = Body::new(text.clone().into_bytes(), false);
        assert!(!plain.gzipped && plain.bytes == text.as_bytes());
    }

    #[test]
    fn accept_encoding_values() {
        for yes in [
            "gzip",
            "gzip, deflate",
            "br;q=1.0, gzip;q=0.8",
            " x-gzip, GZip ",
        ] {
            assert!(accepts_gzip(yes), "{yes}");
        }
        for no in [
            "",
            "identity",
            "deflate",
            "gzip;q=0",
            "gzip; q=0.0",
            "xgzip",
        ] {
            assert!(!accepts_gzip(no), "{no}");
        }
    }
}
