//! Fetch v12+ truncation detection (KIP-320): a fetcher that says which leader epoch its last
//! record had learns, from the diverging epoch in the response, that the log it reads ended
//! that epoch earlier, instead of silently reading past the divergence.
//!
//! Three brokers in this process; stopping the partition's leader moves the leader epoch, which
//! gives the new leader's log two epochs to check fetches against.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_broker::config::BrokerConfig;
use sluice_broker::server::Server;
use sluice_client::admin::NewTopic;
use sluice_client::connection::Connection;
use sluice_client::{Admin, ClientConfig, Cluster, Producer, ProducerConfig, ProducerRecord};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const OFFSET_OUT_OF_RANGE: i16 = 1;

/// Fast failure detection, as in the Python cluster tests.
const FAST: [(&str, &str); 4] = [
    ("broker.session.timeout.ms", "3000"),
    ("broker.heartbeat.interval.ms", "300"),
    ("replica.lag.time.max.ms", "4000"),
    ("replica.fetch.backoff.ms", "200"),
];

/// `n` distinct ports below Linux's ephemeral range, free right now.
fn free_ports(n: usize) -> Vec<u16> {
    let first = 20000 + (std::process::id() % 5000) as u16;
    // Held until all are found, so the same port is not handed out twice.
    let held: Vec<std::net::TcpListener> = (first..32000)
        .filter_map(|p| std::net::TcpListener::bind(("127.0.0.1", p)).ok())
        .take(n)
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

struct Node {
    id: i32,
    port: u16,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Starts nodes 1..=3 (every one a voter and a broker) and returns once all serve.
async fn cluster(dir: &Path) -> Vec<Node> {
    let free = free_ports(6);
    let ports: Vec<(u16, u16)> = free.chunks(2).map(|p| (p[0], p[1])).collect();
    let voters = ports
        .iter()
        .enumerate()
        .map(|(i, (_, raft))| format!("{}@127.0.0.1:{raft}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes = Vec::new();
    let mut ready = Vec::new();
    for (i, (port, raft)) in ports.into_iter().enumerate() {
        let id = i as i32 + 1;
        let mut c = BrokerConfig::default();
        c.set("node.id", &id.to_string()).unwrap();
        c.set(
            "listeners",
            &format!("PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{raft}"),
        )
        .unwrap();
        c.set("controller.quorum.voters", &voters).unwrap();
        c.set(
            "log.dirs",
            &dir.join(format!("node{id}")).display().to_string(),
        )
        .unwrap();
        c.set("sluice.metrics.listener", "").unwrap();
        for (k, v) in FAST {
            c.set(k, v).unwrap();
        }
        let (stop, rx) = watch::channel(false);
        let (up, is_up) = tokio::sync::oneshot::channel();
        // All bind at once: a node serves only once a quorum of voters has formed.
        let task = tokio::spawn(async move {
            let server = Server::bind(c).await.expect("bind");
            let _ = up.send(());
            server.run(rx).await.expect("broker runs");
        });
        ready.push(is_up);
        nodes.push(Node {
            id,
            port,
            stop,
            task,
        });
    }
    for r in ready {
        r.await.expect("node up");
    }
    nodes
}

impl Node {
    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
    }
}

async fn produce(client: &ClientConfig, values: &[&str]) {
    let producer = Producer::new(ProducerConfig {
        client: client.clone(),
        ..ProducerConfig::default()
    })
    .await
    .unwrap();
    for v in values {
        // One record per batch, so each offset carries its own batch header.
        producer
            .send(ProducerRecord::new("d", v.to_string()).partition(0))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    producer.close().await;
}

/// Partition 0 of topic `d` fetched at `version`, with `last_fetched_epoch` (v12+).
async fn fetch(
    conn: &Connection,
    version: i16,
    offset: i64,
    last_fetched_epoch: i32,
) -> PartitionData {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("d")))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                // Not a field before v12: the encoder refuses it set.
                .with_last_fetched_epoch(if version >= 12 {
                    last_fetched_epoch
                } else {
                    -1
                })
                .with_partition_max_bytes(1 << 20)])]);
    let mut resp = conn.call_at(&req, version).await.unwrap();
    resp.responses.remove(0).partitions.remove(0)
}

/// `(base offset, partition leader epoch)` of each batch in `records`.
fn batch_epochs(records: &Bytes) -> Vec<(i64, i32)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 61 <= records.len() {
        let b = &records[at..];
        let base = i64::from_be_bytes(b[0..8].try_into().unwrap());
        let len = i32::from_be_bytes(b[8..12].try_into().unwrap()) as usize;
        let epoch = i32::from_be_bytes(b[12..16].try_into().unwrap());
        out.push((base, epoch));
        at += 12 + len;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_past_where_its_last_epoch_ended_gets_the_diverging_epoch() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(dir.path()).await;
    let bootstrap = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect::<Vec<_>>()
        .join(",");
    let client = ClientConfig {
        api_timeout: Duration::from_secs(30),
        ..ClientConfig::new(&bootstrap)
    };
    let admin = Admin::new(client.clone()).unwrap();
    admin
        .create_topics(&[NewTopic {
            name: "d".into(),
            partitions: 1,
            replication_factor: 3,
            configs: Vec::new(),
        }])
        .await
        .unwrap();
    produce(&client, &["a", "b", "c"]).await;
    let leader = admin.describe_topics(&["d".into()]).await.unwrap()[0].partitions[0].leader;
    let i = nodes.iter().position(|n| n.id == leader).unwrap();
    nodes.remove(i).stop().await;
    produce(&client, &["d", "e"]).await;

    let cluster = Cluster::new(client.clone()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let new_leader = loop {
        let p = &cluster.refresh(None, false).await.unwrap().topics["d"].partitions[0];
        if p.leader >= 0 && p.leader != leader {
            break p.leader;
        }
        assert!(std::time::Instant::now() < deadline, "no new leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let conn = cluster.broker(new_leader).await.unwrap();
    let fetch = |version, offset, last_fetched_epoch| {
        let conn = conn.clone();
        async move { fetch(&conn, version, offset, last_fetched_epoch).await }
    };

    let all = fetch(12, 0, -1).await;
    let epochs = batch_epochs(all.records.as_ref().unwrap());
    assert_eq!(epochs.len(), 5, "{epochs:?}");
    let (old, new) = (epochs[0].1, epochs[4].1);
    assert!(
        epochs[..3].iter().all(|e| e.1 == old) && epochs[3..].iter().all(|e| e.1 == new),
        "{epochs:?}"
    );
    assert!(new > old, "the leader change moved the epoch: {epochs:?}");

    // Consistent: the old epoch ended at 3, where this fetch continues.
    let ok = fetch(12, 3, old).await;
    assert_eq!((ok.error_code, ok.diverging_epoch.epoch), (0, -1));
    assert_eq!(batch_epochs(ok.records.as_ref().unwrap()).len(), 2);
    let latest = fetch(12, 5, new).await;
    assert_eq!((latest.error_code, latest.diverging_epoch.epoch), (0, -1));

    // The fetcher claims offset 3 was written in the old epoch: this log ended it at 3.
    let diverged = fetch(12, 4, old).await;
    assert_eq!(diverged.error_code, 0);
    assert_eq!(
        (
            diverged.diverging_epoch.epoch,
            diverged.diverging_epoch.end_offset
        ),
        (old, 3)
    );
    assert!(diverged.records.as_ref().unwrap().is_empty());
    assert_eq!(diverged.high_watermark, 5);

    // An epoch between the two never wrote here: the divergence is at the older one's end.
    if new - old > 1 {
        let between = fetch(12, 3, old + 1).await;
        assert_eq!(
            (
                between.diverging_epoch.epoch,
                between.diverging_epoch.end_offset
            ),
            (old, 3)
        );
    }

    // An epoch newer than the log's latest cannot be placed.
    let future = fetch(12, 5, new + 1).await;
    assert_eq!(future.error_code, OFFSET_OUT_OF_RANGE);

    // Before v12 there is no last fetched epoch to check: the same fetch reads on.
    let v11 = fetch(11, 4, old).await;
    assert_eq!(v11.error_code, 0);
    assert_eq!(
        batch_epochs(v11.records.as_ref().unwrap())
            .first()
            .map(|e| e.0),
        Some(4)
    );

    for n in nodes {
        n.stop().await;
    }
}
