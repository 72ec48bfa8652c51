//! A Sluice broker in this process, on a free port, for the tests in this directory.

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use sluice_broker::config::BrokerConfig;
use sluice_broker::server::Server;

pub struct Broker {
    pub addr: String,
    pub dir: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
}

pub async fn broker() -> Broker {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = BrokerConfig::default();
    c.set("listeners", "PLAINTEXT://127.0.0.1:0")
        .expect("listeners");
    c.set("log.dirs", &dir.path().display().to_string())
        .expect("dirs");
    c.set("sluice.metrics.listener", "").expect("metrics");
    // Rebalances in tests should not wait out Kafka's 3 s initial delay.
    c.set("group.initial.rebalance.delay.ms", "0")
        .expect("delay");
    let server = Server::bind(c).await.expect("bind");
    let addr = server.local_addr().expect("addr").to_string();
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(server.run(rx));
    Broker {
        addr,
        dir,
        _stop: tx,
    }
}

/// Creates `topic` with `partitions` partitions on the broker at `addr`.
pub async fn create_topic(addr: &str, topic: &str, partitions: i32) {
    sluice_client::Admin::new(sluice_client::ClientConfig::new(addr))
        .unwrap()
        .create_topics(&[sluice_client::admin::NewTopic {
            name: topic.into(),
            partitions,
            replication_factor: 1,
            configs: Vec::new(),
            replica_assignment: Vec::new(),
        }])
        .await
        .expect("create topic");
}
