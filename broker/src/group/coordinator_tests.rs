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

fn image() -> MetadataImage {
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
                    leader_epoch: 0,
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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

#[test]
fn offset_commit_racing_unload_and_delete_does_not_deadlock() {
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
        ..GroupConfig::default()
    };
    let groups = Arc::new(GroupCoordinator::open(Arc::clone(&rm), config));
    let part = rm
        .partition(&TopicPartition::new(OFFSETS_TOPIC, 0))
        .expect("hosted");
    groups.load_partition(&part).expect("load");
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
                let _ = groups.load_partition(&part);
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
