//! The runtime around the shards over a real `ReplicaManager` in a temporary directory: an
//! OffsetCommit racing a coordinator move or a DeleteGroups must not block its threads for
//! good (issue 12, defect 1), and a coordinator move keeps the group's generation, members and
//! assignments.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sluice_replication::image::{self, Broker, MetadataImage, Topic};
use sluice_storage::TopicPartition;
use uuid::Uuid;

use super::*;
use crate::config::BrokerConfig;
use crate::replica_manager::ReplicaManager;

pub(super) fn image() -> MetadataImage {
    let mut image = MetadataImage::default();
    image.brokers.insert(
        1,
        Broker {
            id: 1,
            epoch: 101,
            endpoints: Vec::new(),
            rack: None,
            fenced: false,
            shutting_down: false,
            incarnation: None,
        },
    );
    for (i, name) in [OFFSETS_TOPIC, "t"].into_iter().enumerate() {
        let id = Uuid::from_u128(i as u128 + 1);
        image.topics.insert(
            id,
            Topic {
                id,
                name: name.into(),
                configs: BTreeMap::new(),
                partitions: vec![image::Partition {
                    replicas: vec![1],
                    isr: vec![1],
                    leader: 1,
                    leader_epoch: sluice_storage::LeaderEpoch(0),
                    partition_epoch: 0,
                    adding: Vec::new(),
                    removing: Vec::new(),
                }],
            },
        );
        image.topic_ids.insert(name.into(), id);
    }
    image
}

/// Runs the loads leadership asks for, here and now.
pub(super) fn load(groups: &Arc<GroupCoordinator>) {
    groups.follow_leadership().into_iter().for_each(Load::run);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

pub(super) struct Setup {
    pub(super) _dir: tempfile::TempDir,
    pub(super) rm: Arc<ReplicaManager>,
    pub(super) groups: Arc<GroupCoordinator>,
}

/// A node leading `__consumer_offsets` (one partition) and topic `t`, its groups loaded.
pub(super) fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let rm = Arc::new(
        ReplicaManager::open(BrokerConfig {
            node_id: 1,
            log_dirs: vec![dir.path().to_path_buf()],
            metrics_listener: None,
            ..BrokerConfig::default()
        })
        .expect("open"),
    );
    rm.apply_image(&image());
    let config = GroupConfig {
        offsets_partitions: 1,
        initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    };
    let groups = Arc::new(GroupCoordinator::open(Arc::clone(&rm), config));
    load(&groups);
    Setup {
        _dir: dir,
        rm,
        groups,
    }
}

#[test]
fn offset_commit_racing_unload_and_delete_does_not_deadlock() {
    let Setup { _dir, groups, .. } = setup();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let committer = {
        let (groups, done) = (Arc::clone(&groups), done_tx.clone());
        std::thread::spawn(move || {
            let rt = runtime();
            let mut i = 0;
            while std::time::Instant::now() < deadline {
                i += 1;
                let _ = rt.block_on(groups.commit(CommitParams {
                    group_id: "g".into(),
                    generation: -1,
                    member_id: String::new(),
                    instance_id: None,
                    offsets: vec![(TopicPartition::new("t", 0), i, -1, None)],
                }));
            }
            let _ = done.send(());
        })
    };
    let mover = {
        let (groups, done) = (Arc::clone(&groups), done_tx);
        std::thread::spawn(move || {
            let rt = runtime();
            while std::time::Instant::now() < deadline {
                let _ = rt.block_on(groups.delete("g"));
                groups.unload_partition(0);
                load(&groups);
            }
            let _ = done.send(());
        })
    };
    for _ in 0..2 {
        done_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("commit and unload/delete deadlocked: a thread never finished");
    }
    committer.join().expect("committer");
    mover.join().expect("mover");
}

#[tokio::test]
async fn a_coordinator_move_keeps_generation_members_and_offsets() {
    let s = setup();
    let join = |member: &str| JoinParams {
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
    };
    let j = s.groups.join(join("")).await;
    assert_eq!((j.error, j.generation), (0, 1));
    let id = j.member_id;
    let r = s
        .groups
        .sync(SyncParams {
            group_id: "g".into(),
            generation: 1,
            member_id: id.clone(),
            instance_id: None,
            assignments: vec![(id.clone(), bytes::Bytes::from_static(b"pa"))],
        })
        .await;
    assert_eq!((r.0, r.1.as_ref()), (0, &b"pa"[..]));
    let r = s
        .groups
        .commit(CommitParams {
            group_id: "g".into(),
            generation: 1,
            member_id: id.clone(),
            instance_id: None,
            offsets: vec![(TopicPartition::new("t", 0), 42, -1, None)],
        })
        .await;
    assert_eq!(r[0].1, 0);
    // The partition moves away: requests are refused; then back: replayed from the log.
    s.groups.unload_partition(0);
    let r = s.groups.fetch_offsets("g", None).map(|_| ());
    assert_eq!(
        r,
        Err(kafka_protocol::error::ResponseError::CoordinatorLoadInProgress.code())
    );
    load(&s.groups);
    assert_eq!(s.groups.heartbeat("g", 1, &id, None), 0, "no rejoin needed");
    let d = s.groups.describe("g").expect("owned").expect("known");
    assert_eq!(d.state, "Stable");
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.members[0].5.as_ref(), b"pa");
    let offsets = s.groups.fetch_offsets("g", None).expect("owned");
    assert_eq!(offsets[0].1, 42);
}

#[tokio::test]
async fn while_loading_sync_is_rebalance_in_progress_and_heartbeat_is_none() {
    // Issue 22 item 9 (Kafka's handleSyncGroup and handleHeartbeat): Java and aiokafka raise
    // COORDINATOR_LOAD_IN_PROGRESS from SyncGroup out of poll(); REBALANCE_IN_PROGRESS makes
    // them rejoin, and a heartbeat is simply accepted until the groups are loaded.
    use kafka_protocol::error::ResponseError;
    let s = setup();
    s.groups.unload_partition(0); // led here, not loaded yet: as during the load
    let r = s
        .groups
        .sync(SyncParams {
            group_id: "g".into(),
            generation: 1,
            member_id: "m".into(),
            instance_id: None,
            assignments: Vec::new(),
        })
        .await;
    assert_eq!(r.0, ResponseError::RebalanceInProgress.code(), "sync");
    assert_eq!(s.groups.heartbeat("g", 1, "m", None), 0, "heartbeat");
    let leave = s.groups.leave("g", &[("m".into(), None)]).await;
    assert_eq!(leave, Err(ResponseError::CoordinatorLoadInProgress.code()));
}

#[tokio::test]
async fn a_deleted_topics_offsets_stay_deleted_across_a_coordinator_move() {
    let s = setup();
    let r = s
        .groups
        .commit(CommitParams {
            group_id: "h".into(),
            generation: -1,
            member_id: String::new(),
            instance_id: None,
            offsets: vec![(TopicPartition::new("t", 0), 42, -1, None)],
        })
        .await;
    assert_eq!(r[0].1, 0);
    s.groups.delete_topic_offsets(&|t| t == "t");
    assert!(s.groups.fetch_offsets("h", None).expect("owned").is_empty());
    s.groups.unload_partition(0);
    load(&s.groups);
    assert!(
        s.groups.fetch_offsets("h", None).expect("owned").is_empty(),
        "the tombstones are in the log"
    );
    assert!(
        s.groups.describe("h").expect("owned").is_none(),
        "h had nothing else"
    );
}
