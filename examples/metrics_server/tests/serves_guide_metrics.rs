//! Runs the example as a user would (`DYN_SYSTEM_PORT=0`) and reads its
//! `/metrics` over HTTP.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn example_serves_the_guide_metrics() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_metrics_server"))
        .env("DYN_SYSTEM_PORT", "0")
        .env("DYN_SYSTEM_HOST", "127.0.0.1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = Kill(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("serving metrics on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let first = reqwest::blocking::get(&url).unwrap().text().unwrap();
    let labels = r#"dynamo_component="my_component",dynamo_endpoint="my_endpoint",dynamo_namespace="my_namespace""#;
    for expected in [
        format!("dynamo_component_requests_total{{{labels}}} 1"),
        format!("dynamo_component_requests_total{{{labels},env=\"prod\",region=\"us-west\"}} 1"),
        format!("dynamo_component_active_connections{{{labels}}} 42"),
        format!("dynamo_component_latency_seconds_bucket{{{labels},le=\"0.1\"}} 1"),
        format!("dynamo_component_requests_by_model{{{labels},model_size=\"7b\",model_type=\"llama\"}} 1"),
        format!("dynamo_component_gpu_memory_bytes{{{labels},gpu_id=\"0\",memory_type=\"allocated\"}} 8192"),
    ] {
        assert!(first.contains(&expected), "missing {expected}\n{first}");
    }
    assert!(first.contains("dynamo_component_system_uptime_seconds "));
    // It keeps serving and its numbers move.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = reqwest::blocking::get(&url).unwrap().text().unwrap();
        if !now.contains(&format!("dynamo_component_requests_total{{{labels}}} 1\n")) {
            break;
        }
        assert!(Instant::now() < deadline, "metrics did not move");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(child);
}

/// Runs the example with these environment variables and returns its exit
/// code and stderr; it must stop by itself.
fn run_expecting_exit(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_metrics_server"));
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = Kill(cmd.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut child = child;
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
            return (status.code(), err);
        }
        assert!(Instant::now() < deadline, "the example did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_port_is_a_clear_startup_error() {
    let (code, err) = run_expecting_exit(&[("DYN_SYSTEM_PORT", "eighty")]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("DYN_SYSTEM_PORT") && err.contains("\"eighty\""),
        "{err}"
    );
}

#[test]
fn port_in_use_is_a_clear_startup_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, err) =
        run_expecting_exit(&[("DYN_SYSTEM_PORT", &port), ("DYN_SYSTEM_HOST", "127.0.0.1")]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
