//! Taking on and giving up offsets partitions over a real `ReplicaManager` (issue 22 item 7):
//! a new leader epoch keeps live members, a failed load answers NOT_COORDINATOR until a newer
//! epoch, a load overtaken by a leadership change takes no requests, and a partition whose
//! replica leaves this node is unloaded.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use sluice_replication::image::{self, MetadataImage};
use sluice_storage::record::BatchBuilder;
use sluice_storage::{AppendOptions, AppendOrigin, LeaderEpoch, TopicPartition};

use super::coordinator_tests::{image, load, setup, Setup};
use super::records::{CommittedOffset, OffsetsRecord};
use super::*;

fn join(member: &str) -> JoinParams {
    JoinParams {
        group_id: "g".into(),
        member_id: member.into(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), bytes::Bytes::from_static(b"sub"))],
        require_known_member_id: false,
    }
}

fn commit(group: &str, offset: i64) -> CommitParams {
    CommitParams {
        group_id: group.into(),
        generation: -1,
        member_id: String::new(),
        instance_id: None,
        offsets: vec![(TopicPartition::new("t", 0), offset, -1, None)],
    }
}

/// The test image with `__consumer_offsets-0` on `replicas`, led by `leader` at `epoch`.
fn offsets_at(replicas: Vec<i32>, leader: i32, epoch: i32) -> MetadataImage {
    let mut image = image();
    let mut broker2 = image.brokers[&1].clone();
    broker2.id = 2;
    image.brokers.insert(2, broker2);
    let id = image.topic_ids[OFFSETS_TOPIC];
    let p = &mut image.topics.get_mut(&id).expect("offsets topic").partitions[0];
    *p = image::Partition {
        isr: replicas.clone(),
        replicas,
        leader,
        leader_epoch: sluice_storage::LeaderEpoch(epoch),
        partition_epoch: epoch,
        adding: Vec::new(),
        removing: Vec::new(),
    };
    image
}

fn offsets_partition(s: &Setup) -> Arc<crate::replica_manager::Partition> {
    s.rm.partition(&TopicPartition::new(OFFSETS_TOPIC, 0))
        .expect("hosted")
}

#[tokio::test]
async fn a_new_leader_epoch_with_nothing_written_since_keeps_live_members() {
    // Images can be skipped (leader 1 -> none -> 1): the epoch moves while the shard's
    // members are live. Before, the reconciler reloaded the partition and wiped them.
    let s = setup();
    let j = s.groups.join(join("")).await;
    assert_eq!((j.error, j.generation), (0, 1));
    s.rm.apply_image(&offsets_at(vec![1], 1, 2));
    assert!(s.groups.follow_leadership().is_empty(), "nothing to replay");
    assert_eq!(s.groups.heartbeat("g", 1, &j.member_id, None), 0);
    let d = s.groups.describe("g").expect("owned").expect("known");
    assert_eq!((d.state, d.members.len()), ("CompletingRebalance", 1));
}

#[tokio::test]
async fn a_new_leader_epoch_after_another_leaders_writes_replays_the_log() {
    let s = setup();
    assert_eq!(s.groups.commit(commit("h", 42)).await[0].1, 0);
    // Another leader (epoch 1) committed 43 while this node did not see the images.
    let record = OffsetsRecord::Offset {
        group: "h".into(),
        topic: "t".into(),
        partition: 0,
        value: Some(CommittedOffset {
            offset: 43,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp: 1,
        }),
    };
    let (k, v) = record.encode().expect("encode");
    let batch = BatchBuilder::new()
        .record(Some(&k), v.as_deref(), 1)
        .build();
    let opts = AppendOptions {
        leader_epoch: LeaderEpoch(1),
        origin: AppendOrigin::Coordinator,
        now_ms: 0,
    };
    offsets_partition(&s)
        .log
        .append(&batch, &opts)
        .expect("append");
    s.rm.apply_image(&offsets_at(vec![1], 1, 2));
    load(&s.groups);
    let fetched = s.groups.fetch_offsets("h", None).expect("owned");
    assert_eq!(fetched[0].1, 43, "replayed");
}

#[tokio::test]
async fn a_load_that_fails_answers_not_coordinator_until_a_new_leader_epoch() {
    let s = setup();
    s.groups.unload_partition(0);
    // An offset commit key (version 1) cut short: a record of a known type that does not
    // decode. Before, the partition answered COORDINATOR_LOAD_IN_PROGRESS for good.
    let batch = BatchBuilder::new()
        .record(Some(&[0, 1, 0, 5, b'g']), Some(&[0, 1]), 1)
        .build();
    s.rm.append(
        &TopicPartition::new(OFFSETS_TOPIC, 0),
        &batch,
        AppendOrigin::Coordinator,
        false,
    )
    .expect("append");
    load(&s.groups);
    let not_coordinator = Err(ResponseError::NotCoordinator.code());
    assert_eq!(s.groups.fetch_offsets("g", None), not_coordinator);
    assert!(
        s.groups.follow_leadership().is_empty(),
        "not retried within the epoch"
    );
    s.rm.apply_image(&offsets_at(vec![1], 1, 3));
    let loads = s.groups.follow_leadership();
    assert_eq!(loads.len(), 1, "a new epoch loads again");
    loads.into_iter().for_each(Load::run);
    assert_eq!(s.groups.fetch_offsets("g", None), not_coordinator);
}

#[tokio::test]
async fn a_load_that_stops_without_an_outcome_marks_the_partition_failed() {
    let s = setup();
    s.groups.unload_partition(0);
    drop(s.groups.follow_leadership()); // as if its thread panicked
    assert_eq!(
        s.groups.fetch_offsets("g", None),
        Err(ResponseError::NotCoordinator.code())
    );
}

#[tokio::test]
async fn a_load_overtaken_by_a_leadership_change_takes_no_requests() {
    let s = setup();
    assert_eq!(s.groups.commit(commit("h", 42)).await[0].1, 0);
    s.groups.unload_partition(0);
    let loads = s.groups.follow_leadership();
    assert_eq!(loads.len(), 1);
    // Node 2 leads before the replay ends; node 1 stays a follower.
    s.rm.apply_image(&offsets_at(vec![1, 2], 2, 1));
    assert!(s.groups.follow_leadership().is_empty());
    loads.into_iter().for_each(Load::run);
    assert!(s.groups.list().is_empty(), "the late load was dropped");
    assert!(s.groups.shards.read().is_empty());
}

#[tokio::test]
async fn a_partition_whose_replica_leaves_this_node_is_unloaded() {
    // Before, only leadership changes unloaded: a replica moved away by a reassignment kept
    // its groups listed, its timers running and its waiters waiting.
    let s = setup();
    let a = s.groups.join(join("")).await;
    assert_eq!(a.error, 0);
    let waiting = {
        let groups = Arc::clone(&s.groups);
        tokio::spawn(async move { groups.join(join("")).await })
    };
    while s.groups.describe("g").expect("owned").expect("known").state != "PreparingRebalance" {
        tokio::task::yield_now().await;
    }
    assert_eq!(s.groups.list().len(), 1);
    s.rm.apply_image(&offsets_at(vec![2], 2, 1));
    assert!(s.groups.follow_leadership().is_empty());
    let b = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting join is answered")
        .expect("join task");
    assert_eq!(b.error, ResponseError::NotCoordinator.code());
    assert!(s.groups.list().is_empty(), "no longer listed");
    assert!(s.groups.shards.read().is_empty(), "no timers left to run");
}

#[tokio::test]
async fn offsets_of_a_topic_deleted_while_the_partition_was_not_loaded_are_removed_on_load() {
    // The reconciler no longer waits for loads, so a deletion can pass while a partition
    // loads (or while another node led it); the load catches up on it.
    let s = setup();
    assert_eq!(s.groups.commit(commit("h", 42)).await[0].1, 0);
    s.groups.unload_partition(0);
    let mut without_t = image();
    let id = without_t.topic_ids.remove("t").expect("t");
    without_t.topics.remove(&id);
    s.rm.apply_image(&without_t);
    load(&s.groups);
    assert!(s.groups.fetch_offsets("h", None).expect("owned").is_empty());
    assert!(
        s.groups.describe("h").expect("owned").is_none(),
        "nothing else was left"
    );
}
