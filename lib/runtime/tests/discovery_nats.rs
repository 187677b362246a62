//! Discovery records across two runtimes over a real nats-server started here.

use dynamo_runtime::{DistributedRuntime, RequestPlaneConfig, RuntimeConfig};
use dynamo_testing::NatsServer;

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
    let server = NatsServer::start();
    let url = server.url.clone();
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
