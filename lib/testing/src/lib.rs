//! Helpers the workspace's tests and benches share: a real `nats-server`, a
//! real etcd and a real Prometheus server, each started on a free loopback
//! port, and `promtool check metrics` / `check config`. (They come from the
//! Debian packages `nats-server`, `etcd-server` and `prometheus`, which
//! `scripts/test.sh` installs.)
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

/// A `nats-server` with JetStream, on loopback ports it chose itself, in its
/// own store directory; stopped and cleaned up when dropped.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    dir: PathBuf,
    port: u16,
    monitor: u16,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
}

/// The ports a nats-server listens on, as its ports file reports them.
#[derive(Debug, Clone, Copy)]
struct NatsPorts {
    client: u16,
    monitor: u16,
}

impl NatsServer {
    /// Starts one; `None` when nats-server is not installed or does not come up.
    ///
    /// The server picks its own free ports (`-p -1 -m -1`) and reports them
    /// in a ports file, written once it listens on both: ports picked here
    /// and handed over could be taken in between (by another test's server,
    /// or an outgoing connection), and a server that then failed to bind its
    /// monitoring port would exit after its client port had answered.
    pub fn try_start() -> Option<Self> {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("dynamo-nats-{}-{n}", std::process::id()));
        let (child, ports) = Self::spawn_with(None, &dir, &[])?;
        Some(NatsServer {
            child,
            dir,
            port: ports.client,
            monitor: ports.monitor,
            url: format!("nats://127.0.0.1:{}", ports.client),
        })
    }

    /// How many per-request inbox subscriptions (`_INBOX.<id>`; not the
    /// client library's `_INBOX.<id>.*`) the server holds now, over every
    /// connection, from its monitoring endpoint.
    pub fn request_inboxes(&self) -> usize {
        let Some(body) = http_get_ok(self.monitor, "/connz?subs=1") else {
            panic!("nats-server's monitoring endpoint does not answer");
        };
        body.split('"')
            .filter(|s| s.starts_with("_INBOX.") && !s.ends_with(".*"))
            .count()
    }

    /// Starts nats-server on `ports` (its own choice when `None`) with
    /// `extra` arguments after ours, and waits (10 s at most) for its ports
    /// file: the server is up on the ports it names.
    fn spawn_with(
        ports: Option<NatsPorts>,
        dir: &Path,
        extra: &[&str],
    ) -> Option<(Child, NatsPorts)> {
        let binary = nats_server_binary()?;
        std::fs::create_dir_all(dir).ok()?;
        let (client, monitor) = match ports {
            Some(p) => (p.client.to_string(), p.monitor.to_string()),
            None => ("-1".to_owned(), "-1".to_owned()),
        };
        let mut child = Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &client, "-m", &monitor])
            .arg("-sd")
            .arg(dir)
            .arg("--ports_file_dir")
            .arg(dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let ports_file = dir.join(format!("nats-server_{}.ports", child.id()));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let reported = std::fs::read_to_string(&ports_file)
                .ok()
                .and_then(|text| parse_ports_file(&text));
            if let Some(ports) = reported {
                return Some((child, ports));
            }
            let exited = !matches!(child.try_wait(), Ok(None));
            if exited || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the server (as a crash would) and starts a new one on the same
    /// port and store directory; memory-stored JetStream state is gone.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    /// Kills the server (SIGKILL); [`NatsServer::start_again`] brings it back.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again after [`NatsServer::kill`], on the same port.
    pub fn start_again(&mut self) {
        self.start_again_with(&[]);
    }

    /// Starts the server again after [`NatsServer::kill`], on the same port,
    /// with a message size limit of `bytes` (a config file in its directory).
    pub fn start_again_with_max_payload(&mut self, bytes: usize) {
        let config = self.dir.join("max_payload.conf");
        std::fs::create_dir_all(&self.dir).expect("the server's directory");
        std::fs::write(&config, format!("max_payload: {bytes}\n")).expect("a config file");
        let config = config.to_string_lossy().into_owned();
        self.start_again_with(&["-c", &config]);
    }

    fn start_again_with(&mut self, extra: &[&str]) {
        let ports = NatsPorts {
            client: self.port,
            monitor: self.monitor,
        };
        let (child, _) = Self::spawn_with(Some(ports), &self.dir, extra)
            .expect("nats-server restarts on its ports");
        self.child = child;
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

/// An etcd server (`etcd`, Debian package `etcd-server`) on free loopback
/// ports, in its own data directory; stopped and cleaned up when dropped.
#[derive(Debug)]
pub struct EtcdServer {
    child: Child,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    /// `http://127.0.0.1:<port>`, for `ETCD_ENDPOINTS`.
    pub endpoint: String,
}

impl EtcdServer {
    /// Starts one; `None` when etcd is not installed or does not come up.
    pub fn try_start() -> Option<Self> {
        Self::try_start_with(free_port)
    }

    /// Starts one whose clients (and `/metrics`) are on `client_port`.
    pub fn try_start_on(client_port: u16) -> Option<Self> {
        Self::try_start_with(|| client_port)
    }

    /// Starts one, or panics saying how to get etcd.
    pub fn start() -> Self {
        Self::try_start()
            .expect("etcd runs (scripts/test.sh installs the Debian package etcd-server)")
    }

    /// Starts one on the client port `client_port()` gives and a free peer
    /// port. etcd cannot report ports it chose itself, and a port picked
    /// here may be taken before etcd binds it: etcd then exits, and up to
    /// two more pairs of ports are tried.
    fn try_start_with(client_port: impl Fn() -> u16) -> Option<Self> {
        for _ in 0..3 {
            let (client_port, peer_port) = (client_port(), free_port());
            let dir = std::env::temp_dir().join(format!(
                "dynamo-etcd-{}-{client_port}-{peer_port}",
                std::process::id()
            ));
            match Self::spawn(client_port, peer_port, &dir) {
                Ok(child) => {
                    return Some(EtcdServer {
                        child,
                        dir,
                        client_port,
                        peer_port,
                        endpoint: format!("http://127.0.0.1:{client_port}"),
                    })
                }
                Err(failure) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    if failure == EtcdFailure::NotUp {
                        return None;
                    }
                }
            }
        }
        None
    }

    /// Starts etcd and waits (20 s at most) until `/health` says it is up
    /// and the process is still running (a server on a taken port exits).
    fn spawn(client_port: u16, peer_port: u16, dir: &Path) -> Result<Child, EtcdFailure> {
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let binary = etcd_binary().ok_or(EtcdFailure::NotUp)?;
        let mut child = Command::new(binary)
            .arg("--data-dir")
            .arg(dir)
            .args(["--name", "dynamo-test"])
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("dynamo-test={peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|_| EtcdFailure::NotUp)?;
        // Ready when /health says so (it answers before a leader exists, with false).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let healthy =
                http_get_ok(client_port, "/health").is_some_and(|b| b.contains("\"true\""));
            if !matches!(child.try_wait(), Ok(None)) {
                return Err(EtcdFailure::Exited);
            }
            if healthy {
                return Ok(child);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(EtcdFailure::NotUp);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (SIGKILL, as a crash would) and starts it again on
    /// the same ports and data directory, waiting until it is healthy.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    /// Kills the server; [`EtcdServer::start_again`] brings it back.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again after [`EtcdServer::kill`], with its data.
    pub fn start_again(&mut self) {
        self.child = Self::spawn(self.client_port, self.peer_port, &self.dir)
            .unwrap_or_else(|failure| panic!("etcd restarts on its ports: {failure:?}"));
    }
}

/// Why an etcd did not come up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EtcdFailure {
    /// It exited (a port it was given was taken): worth another pair.
    Exited,
    /// Not installed, or not healthy within the deadline.
    NotUp,
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where `etcd` is installed, if it is.
pub fn etcd_binary() -> Option<PathBuf> {
    ["/usr/bin/etcd", "/usr/local/bin/etcd", "/usr/sbin/etcd"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// The body of `GET path` on 127.0.0.1:`port` when it answers 200, with a
/// one-second deadline (plain HTTP/1.0, for readiness checks).
fn http_get_ok(port: u16, path: &str) -> Option<String> {
    use std::io::Read;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_owned())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_owned()))
}

/// The client and monitoring ports of a nats-server ports file:
/// `{"nats":["nats://127.0.0.1:4222"],"monitoring":["http://127.0.0.1:8222"]}`.
fn parse_ports_file(text: &str) -> Option<NatsPorts> {
    let port_of = |key: &str| -> Option<u16> {
        let after = text.split_once(&format!("\"{key}\":[\""))?.1;
        let url = after.split('"').next()?;
        url.rsplit(':').next()?.parse().ok()
    };
    Some(NatsPorts {
        client: port_of("nats")?,
        monitor: port_of("monitoring")?,
    })
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
    /// A configuration file this server wrote for itself, removed with it.
    own_config: Option<PathBuf>,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl PrometheusServer {
    /// Starts one that scrapes `targets` (`host:port`) every second, as job
    /// `job`, with extra command-line `flags`; its configuration file is
    /// its own and goes with it.
    pub fn scraping(job: &str, targets: &[&str], flags: &[&str]) -> Self {
        let config = std::env::temp_dir().join(format!(
            "dynamo-prometheus-{}-{}.yml",
            std::process::id(),
            free_port()
        ));
        let quoted: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
                quoted.join(", ")
            ),
        )
        .expect("a Prometheus configuration file");
        let mut server = Self::start_with(&config, flags);
        server.own_config = Some(config);
        server
    }

    /// Starts `prometheus --config.file=<config>` and waits until it answers
    /// `/-/ready`. Panics saying what went wrong, with the server's log.
    pub fn start(config: &Path) -> Self {
        Self::start_with(config, &[])
    }

    /// [`Self::start`] with extra command-line flags (e.g.
    /// `--enable-feature=exemplar-storage`).
    pub fn start_with(config: &Path, flags: &[&str]) -> Self {
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
            .args(flags)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect(
                "prometheus is installed (scripts/test.sh installs the Debian package prometheus)",
            );
        let server = PrometheusServer {
            child,
            dir,
            own_config: None,
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
        if let Some(config) = &self.own_config {
            let _ = std::fs::remove_file(config);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ports_file_gives_the_client_and_monitoring_ports() {
        let text = r#"{"nats":["nats://127.0.0.1:34893"],"monitoring":["http://127.0.0.1:44939"]}"#;
        let ports = parse_ports_file(text).unwrap();
        assert_eq!((ports.client, ports.monitor), (34893, 44939));
        // A file read while the server was still writing it.
        assert!(parse_ports_file(r#"{"nats":["nats://127.0.0.1:34893"],"mon"#).is_none());
        assert!(parse_ports_file("").is_none());
    }

    #[test]
    fn servers_started_together_each_get_their_own_live_ports() {
        let servers: Vec<NatsServer> = std::thread::scope(|s| {
            let started: Vec<_> = (0..4).map(|_| s.spawn(NatsServer::start)).collect();
            started.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut ports: Vec<u16> = servers.iter().flat_map(|n| [n.port, n.monitor]).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 8, "every server has two ports of its own");
        for server in &servers {
            assert!(std::net::TcpStream::connect(("127.0.0.1", server.port)).is_ok());
            assert_eq!(
                server.request_inboxes(),
                0,
                "its monitoring endpoint answers"
            );
        }
    }
}
