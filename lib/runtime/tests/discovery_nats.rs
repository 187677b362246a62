//! Discovery records across two runtimes over a real nats-server started here.

use dynamo_runtime::{DistributedRuntime, RequestPlaneConfig, RuntimeConfig};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child, std::path::PathBuf);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn start_nats() -> (Server, String) {
    let binary = [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .unwrap_or("nats-server");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("dynamo-discovery-{}-{port}", std::process::id()));
    let child = Command::new(binary)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server (scripts/test.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    (Server(child, dir), format!("nats://127.0.0.1:{port}"))
}

fn nats_runtime(url: &str) -> DistributedRuntime {
    DistributedRuntime::from_config(RuntimeConfig {
        request_plane: RequestPlaneConfig::Nats {
            url: url.to_owned(),
        },
        ..Default::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_published_by_one_runtime_is_listed_by_another_until_revoked() {
    let (_server, url) = start_nats();
    let a = nats_runtime(&url);
    let b = nats_runtime(&url);
    let lease = a
        .register_record("models", "m.1 x", b"card".to_vec())
        .await
        .unwrap();
    assert_eq!(
        b.list_records("models").await.unwrap(),
        vec![b"card".to_vec()]
    );
    assert_eq!(
        a.list_records("models").await.unwrap(),
        vec![b"card".to_vec()]
    );
    lease.revoke().await;
    assert!(b.list_records("models").await.unwrap().is_empty());
}
