//! The exposition formats a scrape can be written in, and the choice of one
//! from a scraper's `Accept` header.

/// An exposition format of `/metrics`.
///
/// ```
/// use dynamo_runtime::ExpositionFormat;
///
/// // What Prometheus 2.x sends: OpenMetrics first.
/// let prometheus = "application/openmetrics-text;version=1.0.0,\
///     application/openmetrics-text;version=0.0.1;q=0.75,\
///     text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
/// assert_eq!(ExpositionFormat::negotiate(prometheus), ExpositionFormat::OpenMetrics);
/// // A plain curl (`*/*`), or no header: text format 0.0.4.
/// assert_eq!(ExpositionFormat::negotiate("*/*"), ExpositionFormat::Text);
/// assert_eq!(ExpositionFormat::negotiate(""), ExpositionFormat::Text);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ExpositionFormat {
    /// Prometheus text format 0.0.4: the default.
    #[default]
    Text,
    /// OpenMetrics 1.0.0 text (exemplars, `# EOF`).
    OpenMetrics,
    /// Prometheus's protobuf exposition (length-delimited
    /// `io.prometheus.client.MetricFamily` messages): native histograms.
    Protobuf,
}

impl ExpositionFormat {
    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            ExpositionFormat::Text => super::encoder::text::CONTENT_TYPE,
            ExpositionFormat::OpenMetrics => super::encoder::openmetrics::CONTENT_TYPE,
            ExpositionFormat::Protobuf => super::encoder::protobuf::CONTENT_TYPE,
        }
    }

    /// The format to answer an `Accept` header with: the one of highest
    /// `q` among those the header names (OpenMetrics as
    /// `application/openmetrics-text` of version 1.0.0 or 0.0.1, or no
    /// version; text as `text/plain` of version 0.0.4 or no version;
    /// protobuf as `application/vnd.google.protobuf` with
    /// `proto=io.prometheus.client.MetricFamily` and `encoding=delimited`);
    /// text when it names none, and the earlier of text, OpenMetrics,
    /// protobuf when they tie.
    pub fn negotiate(accept: &str) -> Self {
        // Text until a range ranks OpenMetrics higher; text wins a tie.
        let mut best = (0.0_f32, ExpositionFormat::Text);
        for (format, q) in accept.split(',').filter_map(media_range) {
            if q > best.0 || (q == best.0 && format.tie_rank() < best.1.tie_rank()) {
                best = (q, format);
            }
        }
        best.1
    }
}

impl ExpositionFormat {
    /// Which format wins a tie of `q`: the lower.
    fn tie_rank(self) -> u8 {
        match self {
            ExpositionFormat::Text => 0,
            ExpositionFormat::OpenMetrics => 1,
            ExpositionFormat::Protobuf => 2,
        }
    }
}

/// The format one media range of an `Accept` header names, and its `q`;
/// `None` for any other media type, version or protobuf message.
fn media_range(range: &str) -> Option<(ExpositionFormat, f32)> {
    let mut parts = range.split(';').map(str::trim);
    let media = parts.next()?;
    let format = if media.eq_ignore_ascii_case("application/openmetrics-text") {
        ExpositionFormat::OpenMetrics
    } else if media.eq_ignore_ascii_case("text/plain") {
        ExpositionFormat::Text
    } else if media.eq_ignore_ascii_case("application/vnd.google.protobuf") {
        ExpositionFormat::Protobuf
    } else {
        return None;
    };
    // Protobuf must name the message and the delimited encoding.
    let (mut proto, mut delimited) = (false, false);
    let mut q = 1.0;
    for param in parts {
        let (key, value) = param.split_once('=')?;
        let (key, value) = (key.trim(), value.trim().trim_matches('"'));
        if key.eq_ignore_ascii_case("q") {
            q = value
                .parse::<f32>()
                .ok()
                .filter(|q| (0.0..=1.0).contains(q))?;
        } else if key.eq_ignore_ascii_case("version") {
            let known = match format {
                ExpositionFormat::OpenMetrics => ["1.0.0", "0.0.1"].contains(&value),
                ExpositionFormat::Text => value == "0.0.4",
                ExpositionFormat::Protobuf => false,
            };
            if !known {
                return None;
            }
        } else if key.eq_ignore_ascii_case("proto") {
            proto = value == "io.prometheus.client.MetricFamily";
        } else if key.eq_ignore_ascii_case("encoding") {
            delimited = value == "delimited";
        }
    }
    if format == ExpositionFormat::Protobuf && !(proto && delimited) {
        return None;
    }
    Some((format, q))
}

#[cfg(test)]
mod tests {
    use super::ExpositionFormat::{OpenMetrics, Protobuf, Text};
    use super::*;

    #[test]
    fn accept_headers() {
        for (accept, want) in [
            ("application/openmetrics-text", OpenMetrics),
            ("application/openmetrics-text; version=1.0.0; charset=utf-8", OpenMetrics),
            ("application/openmetrics-text;version=0.0.1", OpenMetrics),
            // Prometheus 2.x with scrape_classic_histograms / 3.x defaults.
            (
                "application/openmetrics-text;version=1.0.0;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                OpenMetrics,
            ),
            ("text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5", Text),
            ("application/openmetrics-text;q=0.5,text/plain;q=0.5", Text),
            ("application/openmetrics-text;version=2.0.0", Text),
            ("application/openmetrics-text;q=0", Text),
            ("application/openmetrics-text;q=abc", Text),
            ("text/plain", Text),
            ("application/json", Text),
            // Prometheus 2.42 with --enable-feature=native-histograms.
            (
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                Protobuf,
            ),
            ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text", Text),
            ("application/vnd.google.protobuf;encoding=delimited", Text),
            (
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5,application/openmetrics-text;q=0.5",
                OpenMetrics,
            ),
            ("*/*", Text),
            ("", Text),
            (",;,=;", Text),
        ] {
            assert_eq!(ExpositionFormat::negotiate(accept), want, "{accept}");
        }
    }
}
