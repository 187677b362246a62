//! Helpers shared by the integration tests: a real exposition parser
//! (Python's prometheus_client, from the venv the test script builds),
//! `promtool`, and an HTTP client.
#![allow(dead_code)]

use dynamo_runtime::{DistributedRuntime, RuntimeConfig, SystemServerConfig};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The Python interpreter with prometheus_client: `DYN_TEST_PYTHON`, set by
/// scripts/test.sh to its venv, else the repo's `.venv`, else `python3`.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("DYN_TEST_PYTHON") {
        return p.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if venv.exists() {
        return venv;
    }
    "python3".into()
}

#[derive(Debug, Deserialize)]
pub struct Parsed {
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub families: BTreeMap<String, String>,
    #[serde(default)]
    pub samples: Vec<(String, BTreeMap<String, String>, serde_json::Value)>,
    /// OpenMetrics only: (sample name, sample labels, exemplar labels,
    /// exemplar value, exemplar timestamp).
    #[serde(default)]
    pub exemplars: Vec<Exemplar>,
}

/// An exemplar the OpenMetrics parser read.
pub type Exemplar = (
    String,
    BTreeMap<String, String>,
    BTreeMap<String, String>,
    f64,
    Option<f64>,
);

impl Parsed {
    /// The value of the one sample with that name and exactly those labels.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let found: Vec<_> = self
            .samples
            .iter()
            .filter(|(n, l, _)| n == name && *l == want)
            .collect();
        assert!(
            found.len() <= 1,
            "{name} {want:?} appears {} times",
            found.len()
        );
        found.first().map(|(_, _, v)| match v {
            serde_json::Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
            serde_json::Value::String(s) => s.parse().unwrap_or(f64::NAN),
            other => panic!("unexpected value {other}"),
        })
    }

    /// All samples with that name.
    pub fn samples_named(&self, name: &str) -> Vec<&BTreeMap<String, String>> {
        self.samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, l, _)| l)
            .collect()
    }
}

/// Parses several texts with one interpreter run.
pub fn parse_many(texts: &[String]) -> Vec<Parsed> {
    let items: Vec<serde_json::Value> = texts.iter().map(|t| t.as_str().into()).collect();
    run_parser(&items)
}

/// Parses OpenMetrics text with prometheus_client's OpenMetrics parser and
/// asserts it parsed.
pub fn parse_openmetrics(text: &str) -> Parsed {
    let item = serde_json::json!({"format": "openmetrics", "text": text});
    let parsed = run_parser(&[item]).pop().unwrap();
    assert!(
        parsed.ok,
        "OpenMetrics parse failed: {:?}\n{text}",
        parsed.error
    );
    parsed
}

fn run_parser(items: &[serde_json::Value]) -> Vec<Parsed> {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/parse_exposition.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/test.sh sets DYN_TEST_PYTHON)");
    let input = serde_json::to_vec(items).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "the parser failed (is prometheus_client installed? run scripts/test.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Parses one text and asserts it parsed.
pub fn parse(text: &str) -> Parsed {
    let parsed = parse_many(&[text.to_owned()]).pop().unwrap();
    assert!(parsed.ok, "parse failed: {:?}\n{text}", parsed.error);
    parsed
}

#[allow(unused_imports)] // not every test file that includes this module checks with promtool
pub use dynamo_testing::promtool_check;

/// A runtime with its system server on an ephemeral loopback port.
pub fn runtime_with_server() -> DistributedRuntime {
    DistributedRuntime::from_config(RuntimeConfig {
        system_server: SystemServerConfig::Enabled {
            host: "127.0.0.1".into(),
            port: 0,
        },
        ..Default::default()
    })
    .unwrap()
}

/// A runtime without a server.
pub fn runtime() -> DistributedRuntime {
    DistributedRuntime::from_config(RuntimeConfig::default()).unwrap()
}

/// GET a path of the runtime's system server: (status, content type, body).
pub fn get(drt: &DistributedRuntime, path: &str) -> (u16, String, String) {
    get_accepting(drt, path, "")
}

/// What Prometheus 2.42 sends as `Accept` on a scrape.
pub const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// GET a path with an `Accept` header (none when empty): (status, content
/// type, body).
pub fn get_accepting(drt: &DistributedRuntime, path: &str, accept: &str) -> (u16, String, String) {
    let addr = drt.system_server_addr().expect("server running");
    let mut req = reqwest::blocking::Client::new().get(format!("http://{addr}{path}"));
    if !accept.is_empty() {
        req = req.header("accept", accept);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ctype, resp.text().unwrap())
}

/// Captures what the runtime logs at warn level while `f` runs.
pub fn warnings_during<T>(f: impl FnOnce() -> T) -> (T, String) {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    (out, text)
}
