//! Topics, partitions and ISRs, as Kafka's ReplicationControlManager decides them: creating
//! topics and partitions with their replicas placed, and ISR changes from partition leaders
//! (KIP-497, KIP-903).

use std::collections::{BTreeMap, BTreeSet};

use sluice_storage::LeaderEpoch;
use uuid::Uuid;

use super::{change, shutting_down, ControllerError};
use crate::image::MetadataImage;
use crate::placement::place_replicas;
use crate::record::MetadataRecord;

/// The records that create topic `name`, its replicas placed over the live brokers.
/// `start` rotates placement (Kafka picks it at random) so topics do not all lead on one broker.
pub fn create_topic(
    image: &MetadataImage,
    id: Uuid,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: BTreeMap<String, String>,
    start: usize,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    if image.topic_ids.contains_key(name) {
        return Err(ControllerError::TopicAlreadyExists(format!(
            "topic {name:?} already exists"
        )));
    }
    if partitions < 1 {
        return Err(ControllerError::InvalidPartitions(format!(
            "number of partitions must be at least 1, got {partitions}"
        )));
    }
    let assignments = place(image, partitions, replication_factor, start)?;
    Ok(vec![MetadataRecord::CreateTopic {
        id,
        name: name.to_string(),
        configs,
        assignments,
    }])
}

/// The records that grow a topic to `total` partitions.
pub fn create_partitions(
    image: &MetadataImage,
    name: &str,
    total: i32,
    start: usize,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let t = image.topic_by_name(name).ok_or_else(|| {
        ControllerError::UnknownTopicOrPartition(format!("topic {name:?} does not exist"))
    })?;
    let have = t.partitions.len() as i32;
    if total <= have {
        return Err(ControllerError::InvalidPartitions(format!(
            "topic {name} has {have} partitions; the new count must be larger, got {total}"
        )));
    }
    let rf = t.partitions.first().map_or(1, |p| p.replicas.len()) as i16;
    let assignments = place(image, total - have, rf, start + have as usize)?;
    Ok(vec![MetadataRecord::CreatePartitions {
        id: t.id,
        assignments,
    }])
}

fn place(
    image: &MetadataImage,
    partitions: i32,
    replication_factor: i16,
    start: usize,
) -> Result<Vec<Vec<i32>>, ControllerError> {
    let live: Vec<(i32, Option<&str>)> = image
        .live_brokers()
        .filter(|b| !b.shutting_down)
        .map(|b| (b.id, b.rack.as_deref()))
        .collect();
    if replication_factor < 1 || replication_factor as usize > live.len() {
        return Err(ControllerError::InvalidReplicationFactor(format!(
                "replication factor {replication_factor} must be between 1 and the {} available broker(s)",
                live.len()
            ),
        ));
    }
    Ok(place_replicas(
        &live,
        partitions as usize,
        replication_factor as usize,
        start,
    ))
}

/// An ISR change proposed by a partition's leader (Kafka's AlterPartition), checked as
/// KIP-497 does: only the current leader, at the current leader and partition epochs, with
/// an ISR of live replicas that contains the leader.
pub fn alter_isr(
    image: &MetadataImage,
    leader: i32,
    topic: Uuid,
    partition: i32,
    leader_epoch: LeaderEpoch,
    partition_epoch: i32,
    new_isr: &[i32],
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let p = image.partition(topic, partition).ok_or_else(|| {
        ControllerError::UnknownTopicOrPartition(format!(
            "no partition {partition} of topic id {topic}"
        ))
    })?;
    if p.leader != leader {
        return Err(ControllerError::NotLeader(format!(
            "broker {leader} does not lead partition {partition} (leader {})",
            p.leader
        )));
    }
    if leader_epoch != p.leader_epoch {
        return Err(ControllerError::FencedLeaderEpoch(format!(
            "leader epoch {leader_epoch} is not the current {}",
            p.leader_epoch
        )));
    }
    if partition_epoch != p.partition_epoch {
        return Err(ControllerError::InvalidUpdateVersion(format!(
            "partition epoch {partition_epoch} is not the current {}",
            p.partition_epoch
        )));
    }
    let set: BTreeSet<i32> = new_isr.iter().copied().collect();
    if !set.contains(&leader) || set.len() != new_isr.len() {
        return Err(ControllerError::IneligibleReplica(format!(
            "ISR {new_isr:?} must hold the leader {leader} once"
        )));
    }
    let added: Vec<i32> = set.iter().copied().filter(|r| !p.isr.contains(r)).collect();
    if let Some(bad) = set.iter().find(|r| {
        !p.replicas.contains(r)
            || (added.contains(r) && (!image.is_live(**r) || shutting_down(image, **r)))
    }) {
        return Err(ControllerError::IneligibleReplica(format!(
            "broker {bad} cannot join the ISR of partition {partition}"
        )));
    }
    Ok(vec![change(
        topic,
        partition as usize,
        p,
        None,
        Some(new_isr.to_vec()),
    )])
}

/// KIP-903: each follower named in an ISR change must have fetched as the incarnation now
/// registered. A replica that fetched as an earlier incarnation may since have restarted with
/// a shorter log (unflushed bytes lost), so what its fetches showed no longer holds.
pub fn check_isr_epochs(
    image: &MetadataImage,
    broker_epochs: &[(i32, i64)],
) -> Result<(), ControllerError> {
    for (id, epoch) in broker_epochs {
        let registered = image.brokers.get(id).map(|b| b.epoch);
        if registered != Some(*epoch) {
            return Err(ControllerError::IneligibleReplica(format!(
                "broker {id} fetched as epoch {epoch}, but its registered epoch is {registered:?}"
            )));
        }
    }
    Ok(())
}
