//! Helpers the workspace's tests and benches share: a real `nats-server` and a
//! real Prometheus server, each started on a free loopback port, and
//! `promtool check metrics` / `check config`. (They come from the Debian
//! packages `nats-server` and `prometheus`, which `scripts/test.sh` installs.)
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (free when asked; another process may take it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Where `nats-server` is installed, if it is.
pub fn nats_server_binary() -> Option<PathBuf> {
    [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// A `nats-server` with JetStream, on a free loopback port, in its own
/// store directory; stopped and cleaned up when dropped.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    dir: PathBuf,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
}

impl NatsServer {
    /// Starts one; `None` when nats-server is not installed or does not come up.
    pub fn try_start() -> Option<Self> {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("dynamo-nats-{}-{port}", std::process::id()));
        let child = Self::spawn(port, &dir)?;
        Some(NatsServer {
            child,
            dir,
            url: format!("nats://127.0.0.1:{port}"),
        })
    }

    fn spawn(port: u16, dir: &Path) -> Option<Child> {
        let binary = nats_server_binary()?;
        let child = Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Some(child)
    }

    /// Kills the server (as a crash would) and starts a new one on the same
    /// port and store directory; memory-stored JetStream state is gone.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port: u16 = self
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the URL ends with the port");
        self.child = Self::spawn(port, &self.dir).expect("nats-server restarts on its port");
    }

    /// Starts one, or panics saying how to get nats-server.
    pub fn start() -> Self {
        Self::try_start()
            .expect("nats-server runs (scripts/test.sh installs the Debian package nats-server)")
    }

    /// The server's store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What `promtool check metrics` said of a text.
#[derive(Debug)]
pub struct Promtool {
    /// The text parsed (exit code 0, or 3 for lint findings only).
    pub parsed: bool,
    /// Everything it printed: lint findings, or the parse error.
    pub output: String,
}

impl Promtool {
    /// Lint findings about the project's own metrics (`dynamo_*`).
    pub fn own_lint(&self) -> Vec<&str> {
        self.output
            .lines()
            .filter(|l| l.starts_with("dynamo_"))
            .collect()
    }

    /// Asserts the text parsed and nothing of ours was flagged.
    pub fn assert_clean(&self, text: &str) {
        assert!(
            self.parsed,
            "promtool could not parse: {}\n{text}",
            self.output
        );
        assert!(
            self.own_lint().is_empty(),
            "promtool lint: {:?}\n{text}",
            self.own_lint()
        );
    }
}

/// Runs `promtool check metrics` on the text.
pub fn promtool_check(text: &str) -> Promtool {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/test.sh installs the Debian package prometheus)");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool ran");
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    Promtool {
        parsed: matches!(out.status.code(), Some(0) | Some(3)),
        output,
    }
}

/// Runs `promtool check config` on a Prometheus configuration file; `Err`
/// carries what promtool printed.
pub fn promtool_check_config(path: &Path) -> Result<String, String> {
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(path)
        .output()
        .expect("promtool is installed (scripts/test.sh installs the Debian package prometheus)");
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        Ok(output)
    } else {
        Err(output)
    }
}

/// A Prometheus server running a given configuration file, listening on a
/// free loopback port, with its storage in a fresh directory; stopped and
/// cleaned up when dropped.
#[derive(Debug)]
pub struct PrometheusServer {
    child: Child,
    dir: PathBuf,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl PrometheusServer {
    /// Starts `prometheus --config.file=<config>` and waits until it answers
    /// `/-/ready`. Panics saying what went wrong, with the server's log.
    pub fn start(config: &Path) -> Self {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("dynamo-prometheus-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a Prometheus storage directory");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("a Prometheus log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect(
                "prometheus is installed (scripts/test.sh installs the Debian package prometheus)",
            );
        let server = PrometheusServer {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::Read;
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let req = format!("GET /-/ready HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
                let mut reply = String::new();
                if s.write_all(req.as_bytes()).is_ok()
                    && s.read_to_string(&mut reply).is_ok()
                    && reply.lines().next().is_some_and(|l| l.contains(" 200 "))
                {
                    return server;
                }
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus did not become ready in 30 s:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
