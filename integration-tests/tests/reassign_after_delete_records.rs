//! A replica added by reassignment to a partition whose log start DeleteRecords moved inside
//! a batch: the leader sends it the whole batch that holds the log start, and its empty log
//! must start at that batch's base (as Kafka's follower does) instead of refusing the batch
//! forever, so the reassignment completes and the new replica holds the leader's records.

mod cluster;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, DeleteRecordsRequest, FetchRequest,
    ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use sluice_client::admin::NewTopic;
use sluice_client::connection::Connection;
use sluice_client::{Admin, Cluster};

const TOPIC: &str = "r";

/// One batch of `n` records, as a producer sends it (offsets from 0).
fn batch(n: i64, tag: &str) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            // The encoder puts records in one batch while offset - sequence stays the same;
            // the batch's base sequence is then -1, no idempotent producer's.
            sequence: i as i32 - 1,
            timestamp: 1,
            key: None,
            value: Some(Bytes::from(format!("{tag}{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

async fn produce(conn: &Connection, records: Bytes) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let resp = conn.call_at(&req, 9).await.unwrap();
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0, "{p:?}");
}

/// The base offset of each batch in `records`.
fn batch_bases(records: &Bytes) -> Vec<i64> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 61 <= records.len() {
        let b = &records[at..];
        out.push(i64::from_be_bytes(b[0..8].try_into().unwrap()));
        at += 12 + i32::from_be_bytes(b[8..12].try_into().unwrap()) as usize;
    }
    out
}

/// A consumer's fetch of partition 0 from `offset`.
async fn fetch(conn: &Connection, offset: i64) -> PartitionData {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let mut resp = conn.call_at(&req, 12).await.unwrap();
    resp.responses.remove(0).partitions.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_added_after_delete_records_inside_a_batch_catches_up() {
    cluster::trace_to_test_output();
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster::cluster(dir.path()).await;
    let client = cluster::client_config(&nodes);
    let admin = Admin::new(client.clone()).unwrap();
    admin
        .create_topics(&[NewTopic {
            name: TOPIC.into(),
            partitions: 1,
            replication_factor: 1,
            configs: Vec::new(),
            replica_assignment: Vec::new(),
        }])
        .await
        .unwrap();
    let cluster_view = Cluster::new(client.clone()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let old = loop {
        // The node answering may not have applied the new topic yet.
        let m = cluster_view.refresh(None, false).await.unwrap();
        let leader = m.topics.get(TOPIC).map_or(-1, |t| t.partitions[0].leader);
        if leader >= 0 {
            break leader;
        }
        assert!(std::time::Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let leader = cluster_view.broker(old).await.unwrap();
    produce(&leader, batch(8, "a")).await;
    produce(&leader, batch(2, "b")).await;

    // The log start moves inside the first batch (offsets 0..=7).
    let req = DeleteRecordsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(5)])]);
    let resp = leader.call_at(&req, 2).await.unwrap();
    let p = &resp.topics[0].partitions[0];
    assert_eq!((p.error_code, p.low_watermark), (0, 5), "{p:?}");
    let before = fetch(&leader, 5).await;
    assert_eq!((before.error_code, before.log_start_offset), (0, 5));
    assert_eq!(
        batch_bases(before.records.as_ref().unwrap()),
        vec![0, 8],
        "the fetch at the log start gets the whole batch that holds it"
    );

    // Move the partition to another node: it must catch up from the log start first.
    let new = nodes.iter().map(|n| n.id).find(|id| *id != old).unwrap();
    let req = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![ReassignableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(0)
                .with_replicas(Some(vec![BrokerId(new)]))])]);
    let resp = leader.call_at(&req, 0).await.unwrap();
    assert_eq!(resp.error_code, 0, "{resp:?}");
    assert_eq!(resp.responses[0].partitions[0].error_code, 0, "{resp:?}");

    // Generous: a loaded machine must not fail this. The bug never completes at all.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let p = &cluster_view.refresh(None, false).await.unwrap().topics[TOPIC].partitions[0];
        if p.leader == new && p.replicas == vec![new] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the reassignment did not complete: {p:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let moved = cluster_view.broker(new).await.unwrap();
    let after = fetch(&moved, 5).await;
    assert_eq!(after.error_code, 0, "{after:?}");
    assert_eq!(after.log_start_offset, 5, "the log start the leader had");
    assert_eq!(after.high_watermark, 10);
    assert_eq!(
        after.records, before.records,
        "the same batches, byte for byte, from the log start on"
    );

    for n in nodes {
        n.stop().await;
    }
}
