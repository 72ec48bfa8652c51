//! Topics, partitions and ISRs, as Kafka's ReplicationControlManager decides them: creating
//! topics and partitions with their replicas placed, and ISR changes from partition leaders
//! (KIP-497, KIP-903).

use std::collections::{BTreeMap, BTreeSet};

use sluice_storage::LeaderEpoch;
use uuid::Uuid;

use super::{change, shutting_down, ControllerError};
use crate::image::MetadataImage;
use crate::placement::place_replicas;
use crate::record::{MetadataRecord, PartitionChange};

/// How many partitions a new topic has and where their replicas go.
#[derive(Debug, Clone, Default)]
pub struct TopicShape {
    /// Partitions (ignored, and -1 in a valid request, with a manual assignment).
    pub partitions: i32,
    /// Replication factor (likewise).
    pub replication_factor: i16,
    /// A manual assignment: (partition index, replicas), in request order; empty to place
    /// replicas automatically.
    pub assignments: Vec<(i32, Vec<i32>)>,
}

impl TopicShape {
    /// `partitions` partitions of `replication_factor` replicas, placed automatically.
    pub fn placed(partitions: i32, replication_factor: i16) -> TopicShape {
        TopicShape {
            partitions,
            replication_factor,
            assignments: Vec::new(),
        }
    }
}

/// The records that create topic `name`, its replicas placed over the live brokers or as
/// assigned. `start` rotates placement (Kafka picks it at random) so topics do not all lead
/// on one broker.
pub fn create_topic(
    image: &MetadataImage,
    id: Uuid,
    name: &str,
    shape: TopicShape,
    configs: BTreeMap<String, String>,
    start: usize,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    if image.topic_ids.contains_key(name) {
        return Err(ControllerError::TopicAlreadyExists(format!(
            "topic {name:?} already exists"
        )));
    }
    if !shape.assignments.is_empty() {
        let assignments = manual_topic_assignment(image, &shape)?;
        return Ok(with_live_leaders(
            image,
            id,
            0,
            MetadataRecord::CreateTopic {
                id,
                name: name.to_string(),
                configs,
                assignments: assignments.clone(),
            },
            &assignments,
        ));
    }
    if shape.partitions < 1 {
        return Err(ControllerError::InvalidPartitions(format!(
            "number of partitions must be at least 1, got {}",
            shape.partitions
        )));
    }
    let assignments = place(image, shape.partitions, shape.replication_factor, start)?;
    Ok(vec![MetadataRecord::CreateTopic {
        id,
        name: name.to_string(),
        configs,
        assignments,
    }])
}

/// A manual assignment checked as Kafka's controller checks it, in its order: both counts
/// -1; then, assignment by assignment, no partition assigned twice, a valid replica list and
/// an active replica; then the partitions `0..n`. The replica lists in partition order.
fn manual_topic_assignment(
    image: &MetadataImage,
    shape: &TopicShape,
) -> Result<Vec<Vec<i32>>, ControllerError> {
    if shape.replication_factor != -1 {
        return Err(ControllerError::InvalidRequest(
            "A manual partition assignment was specified, but replication factor was not set to -1."
                .into(),
        ));
    }
    if shape.partitions != -1 {
        return Err(ControllerError::InvalidRequest(
            "A manual partition assignment was specified, but numPartitions was not set to -1."
                .into(),
        ));
    }
    let mut by_partition: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    let mut replication_factor = None;
    for (index, replicas) in &shape.assignments {
        if by_partition.contains_key(index) {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "Found multiple manual partition assignments for partition {index}"
            )));
        }
        validate_manual_assignment(image, replicas, replication_factor)?;
        replication_factor = Some(replicas.len());
        if !replicas.iter().any(|r| is_active(image, *r)) {
            return Err(all_inactive(*index));
        }
        by_partition.insert(*index, replicas.clone());
    }
    if !by_partition
        .keys()
        .copied()
        .eq(0..by_partition.len() as i32)
    {
        return Err(ControllerError::InvalidReplicaAssignment(
            "partitions should be a consecutive 0-based integer sequence".into(),
        ));
    }
    Ok(by_partition.into_values().collect())
}

/// Kafka's check of one manually assigned replica list (CreateTopics, CreatePartitions,
/// reassignments): not empty, every broker registered, none twice, and as many replicas as
/// the topic's other partitions have when that is known.
pub(super) fn validate_manual_assignment(
    image: &MetadataImage,
    replicas: &[i32],
    replication_factor: Option<usize>,
) -> Result<(), ControllerError> {
    if replicas.is_empty() {
        return Err(ControllerError::InvalidReplicaAssignment(
            "The manual partition assignment includes an empty replica list.".into(),
        ));
    }
    let mut sorted = replicas.to_vec();
    sorted.sort_unstable();
    for (i, broker) in sorted.iter().enumerate() {
        if !image.brokers.contains_key(broker) {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "The manual partition assignment includes broker {broker}, but no such broker is registered."
            )));
        }
        if i > 0 && sorted[i - 1] == *broker {
            return Err(ControllerError::InvalidReplicaAssignment(format!(
                "The manual partition assignment includes the broker {broker} more than once."
            )));
        }
    }
    match replication_factor {
        Some(rf) if rf != replicas.len() => Err(ControllerError::InvalidReplicaAssignment(format!(
            "The manual partition assignment includes a partition with {} replica(s), but this is not consistent with previous partitions, which have {rf} replica(s).",
            replicas.len()
        ))),
        _ => Ok(()),
    }
}

/// Whether broker `id` may be in a new partition's ISR: registered, unfenced, not shutting
/// down (Kafka's `isActive`).
fn is_active(image: &MetadataImage, id: i32) -> bool {
    image.is_live(id) && !shutting_down(image, id)
}

fn all_inactive(partition: i32) -> ControllerError {
    ControllerError::InvalidReplicaAssignment(format!(
        "All brokers specified in the manual partition assignment for partition {partition} are fenced or in controlled shutdown."
    ))
}

/// `create` (which makes partitions `first..` of `topic` from `assignments`, each led by its
/// first replica with every replica in sync) followed, in one batch, by the changes that
/// leave only active replicas in each ISR and give each partition the first of them as
/// leader, as Kafka builds a manually assigned partition.
fn with_live_leaders(
    image: &MetadataImage,
    topic: Uuid,
    first: usize,
    create: MetadataRecord,
    assignments: &[Vec<i32>],
) -> Vec<MetadataRecord> {
    let mut changes = Vec::new();
    for (i, replicas) in assignments.iter().enumerate() {
        let isr: Vec<i32> = replicas
            .iter()
            .copied()
            .filter(|r| is_active(image, *r))
            .collect();
        if isr.len() == replicas.len() {
            continue;
        }
        changes.push(MetadataRecord::ChangePartition(PartitionChange {
            topic,
            partition: (first + i) as i32,
            leader: isr.first().copied(),
            isr: Some(isr),
            partition_epoch: Some(0),
            ..PartitionChange::default()
        }));
    }
    if changes.is_empty() {
        return vec![create];
    }
    changes.insert(0, create);
    vec![MetadataRecord::Batch(changes)]
}

/// The records that grow a topic to `total` partitions, placed automatically or as assigned
/// (one replica list per new partition).
pub fn create_partitions(
    image: &MetadataImage,
    name: &str,
    total: i32,
    manual: Option<&[Vec<i32>]>,
    start: usize,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let t = image.topic_by_name(name).ok_or_else(|| {
        ControllerError::UnknownTopicOrPartition(format!("topic {name:?} does not exist"))
    })?;
    let have = t.partitions.len() as i32;
    if total == have {
        return Err(ControllerError::InvalidPartitions(format!(
            "Topic already has {have} partition(s)."
        )));
    }
    if total < have {
        return Err(ControllerError::InvalidPartitions(format!(
            "The topic {name} currently has {have} partition(s); {total} would not be an increase."
        )));
    }
    let rf = t.partitions.first().map_or(1, |p| p.replicas.len());
    let Some(manual) = manual else {
        let assignments = place(image, total - have, rf as i16, start + have as usize)?;
        return Ok(vec![MetadataRecord::CreatePartitions {
            id: t.id,
            assignments,
        }]);
    };
    let additional = total - have;
    if manual.len() as i32 != additional {
        return Err(ControllerError::InvalidReplicaAssignment(format!(
            "Attempted to add {additional} additional partition(s), but only {} assignment(s) were specified.",
            manual.len()
        )));
    }
    for (i, replicas) in manual.iter().enumerate() {
        validate_manual_assignment(image, replicas, Some(rf))?;
        if !replicas.iter().any(|r| is_active(image, *r)) {
            return Err(all_inactive(have + i as i32));
        }
    }
    Ok(with_live_leaders(
        image,
        t.id,
        have as usize,
        MetadataRecord::CreatePartitions {
            id: t.id,
            assignments: manual.to_vec(),
        },
        manual,
    ))
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
