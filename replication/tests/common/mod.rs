//! What the controller tests share: a cluster of live brokers, topics on it, and the
//! invariants every image must keep.
#![allow(dead_code, unused_macros)]

use std::collections::BTreeMap;

use sluice_replication::controller::{self, TopicShape};
use sluice_replication::image::{MetadataImage, NO_LEADER};
use sluice_replication::record::{Endpoint, MetadataRecord};
use uuid::Uuid;

/// Applies what an expression over the image proposes (evaluated before the image is borrowed
/// mutably).
#[macro_export]
macro_rules! apply {
    ($image:expr, $records:expr $(,)?) => {{
        let records = $records;
        $crate::common::apply_all(&mut $image, records)
    }};
}

/// Applies one decision's records as the quorum commits them: one batch, whole or not at all.
pub fn apply_all(image: &mut MetadataImage, mut records: Vec<MetadataRecord>) {
    let r = match records.len() {
        0 => return,
        1 => records.remove(0),
        _ => MetadataRecord::Batch(records),
    };
    image.apply(&r).unwrap_or_else(|e| panic!("{r:?}: {e}"));
}

/// A cluster of `n` live brokers (ids 1..=n, epoch 1).
pub fn cluster(n: i32) -> MetadataImage {
    let mut image = MetadataImage::default();
    for id in 1..=n {
        apply!(
            image,
            vec![MetadataRecord::RegisterBroker {
                id,
                epoch: 1,
                endpoints: vec![Endpoint {
                    name: "PLAINTEXT".into(),
                    host: format!("node{id}"),
                    port: 9092,
                }],
                rack: None,
                incarnation: None,
            }],
        );
        let unfence = controller::unfence_broker(&image, id, 1).unwrap();
        apply!(image, unfence);
    }
    image
}

pub fn topic(
    image: &mut MetadataImage,
    name: &str,
    partitions: i32,
    rf: i16,
    unclean: bool,
) -> Uuid {
    let id = Uuid::new_v4();
    let mut configs = BTreeMap::new();
    if unclean {
        configs.insert("unclean.leader.election.enable".into(), "true".into());
    }
    let records = controller::create_topic(
        image,
        id,
        name,
        TopicShape::placed(partitions, rf),
        configs,
        0,
    )
    .unwrap();
    apply_all(image, records);
    id
}

/// Every partition: leader in the ISR, leader live (or none), ISR within the replicas.
pub fn check_invariants(image: &MetadataImage) {
    for t in image.topics.values() {
        for p in &t.partitions {
            assert!(p.isr.iter().all(|r| p.replicas.contains(r)), "{p:?}");
            if p.leader != NO_LEADER {
                assert!(p.isr.contains(&p.leader), "{p:?}");
                assert!(image.is_live(p.leader), "fenced leader: {p:?}");
            }
        }
    }
}

/// The ISR change partition `partition` of `topic`'s current leader asks for, at the
/// partition's current epochs.
pub fn leader_alters_isr(
    image: &MetadataImage,
    topic: Uuid,
    partition: i32,
    isr: &[i32],
) -> Result<Vec<MetadataRecord>, controller::ControllerError> {
    let p = image.partition(topic, partition).expect("partition exists");
    controller::alter_isr(
        image,
        p.leader,
        topic,
        partition,
        p.leader_epoch,
        p.partition_epoch,
        isr,
    )
}
