//! The follower's side of a hosted partition: appends of fetched records against the leader
//! epoch they were fetched at, and truncation before fetching.

use std::collections::BTreeMap;

use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use sluice_replication::image::{self, MetadataImage};
use sluice_storage::{Offset, TopicPartition};
use uuid::Uuid;

use super::*;

pub(crate) const NODE: i32 = 1;
pub(crate) const LEADER: i32 = 2;

pub(crate) fn replica_manager(dir: &std::path::Path) -> ReplicaManager {
    let mut c = BrokerConfig::default();
    c.set("node.id", &NODE.to_string()).expect("node.id");
    c.set("log.dirs", &dir.display().to_string())
        .expect("log.dirs");
    ReplicaManager::open(c).expect("open")
}

/// An image with topic `t`, one partition on nodes 1 and 2 led by `leader` at `epoch`.
pub(crate) fn image(id: Uuid, leader: i32, epoch: i32) -> MetadataImage {
    let mut img = MetadataImage::default();
    img.topic_ids.insert("t".into(), id);
    img.topics.insert(
        id,
        image::Topic {
            id,
            name: "t".into(),
            configs: BTreeMap::new(),
            partitions: vec![image::Partition {
                replicas: vec![LEADER, NODE],
                isr: vec![LEADER, NODE],
                leader,
                leader_epoch: sluice_storage::LeaderEpoch(epoch),
                partition_epoch: epoch,
                adding: Vec::new(),
                removing: Vec::new(),
            }],
        },
    );
    img
}

/// What a leader sends: one-record batches at offsets `from..to`, written at `epoch`.
pub(crate) fn leader_batches(epoch: i32, from: i64, to: i64) -> Vec<u8> {
    let mut buf = bytes::BytesMut::new();
    for offset in from..to {
        let record = Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: epoch,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: -1,
            timestamp: 1,
            key: None,
            value: Some(bytes::Bytes::from(format!("v{offset}"))),
            headers: Default::default(),
        };
        RecordBatchEncoder::encode(
            &mut buf,
            [&record],
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .expect("encode");
    }
    buf.to_vec()
}

#[test]
fn a_partition_that_needs_truncation_takes_no_replicated_records() {
    let dir = tempfile::tempdir().expect("tmp");
    let rm = replica_manager(&dir.path().join("node"));
    let id = Uuid::new_v4();
    rm.apply_image(&image(id, LEADER, 5));
    let p = rm.partition(&TopicPartition::new("t", 0)).expect("hosted");
    assert!(
        p.replica().needs_truncation,
        "a new follower truncates first"
    );
    let records = leader_batches(5, 0, 3);

    // Records fetched before the truncation (or by a fetch that read the epoch only after
    // the jump that set it) must not land.
    let appended = rm.append_replicated(&p, LeaderEpoch(5), &records, Offset(3), Offset(0));
    assert!(
        matches!(appended, Ok(false)),
        "refused until truncated: {appended:?}"
    );
    assert_eq!(p.log.offsets().log_end, Offset(0));

    p.truncated(LeaderEpoch(5));
    assert!(matches!(
        rm.append_replicated(&p, LeaderEpoch(5), &records, Offset(3), Offset(0)),
        Ok(true)
    ));
    assert_eq!(p.log.offsets().log_end, Offset(3));
}

#[test]
fn a_fetch_answered_after_a_leader_epoch_change_is_dropped() {
    let dir = tempfile::tempdir().expect("tmp");
    let rm = replica_manager(&dir.path().join("node"));
    let id = Uuid::new_v4();
    rm.apply_image(&image(id, LEADER, 5));
    let p = rm.partition(&TopicPartition::new("t", 0)).expect("hosted");
    p.truncated(LeaderEpoch(5));
    // The fetch goes out at epoch 5; before its answer, the leader changes epoch (same node).
    let fetched_at = p.replica().leader_epoch;
    rm.apply_image(&image(id, LEADER, 6));
    let appended = rm.append_replicated(
        &p,
        fetched_at,
        &leader_batches(5, 0, 2),
        Offset(2),
        Offset(0),
    );
    assert!(matches!(appended, Ok(false)), "{appended:?}");
    assert_eq!(p.log.offsets().log_end, Offset(0));
    // Even once truncated at epoch 6, bytes fetched at epoch 5 stay out.
    p.truncated(LeaderEpoch(6));
    let appended = rm.append_replicated(
        &p,
        fetched_at,
        &leader_batches(5, 0, 2),
        Offset(2),
        Offset(0),
    );
    assert!(matches!(appended, Ok(false)), "{appended:?}");
    assert!(matches!(
        rm.append_replicated(
            &p,
            LeaderEpoch(6),
            &leader_batches(5, 0, 2),
            Offset(2),
            Offset(0)
        ),
        Ok(true)
    ));
}
