//! Fetch v12+ truncation detection (KIP-320): a fetcher that says which leader epoch its last
//! record had learns, from the diverging epoch in the response, that the log it reads ended
//! that epoch earlier, instead of silently reading past the divergence.
//!
//! Three brokers in this process; stopping the partition's leader moves the leader epoch, which
//! gives the new leader's log two epochs to check fetches against.

mod cluster;

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_client::admin::NewTopic;
use sluice_client::connection::Connection;
use sluice_client::{Admin, ClientConfig, Cluster, Producer, ProducerConfig, ProducerRecord};

const OFFSET_OUT_OF_RANGE: i16 = 1;

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
    cluster::trace_to_test_output();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster::cluster(dir.path()).await;
    let client = cluster::client_config(&nodes);
    let admin = Admin::new(client.clone()).unwrap();
    admin
        .create_topics(&[NewTopic {
            name: "d".into(),
            partitions: 1,
            replication_factor: 3,
            configs: Vec::new(),
            replica_assignment: Vec::new(),
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
        let m = cluster.refresh(None, false).await.unwrap();
        let now = m.topics.get("d").map_or(-1, |t| t.partitions[0].leader);
        if now >= 0 && now != leader {
            break now;
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
