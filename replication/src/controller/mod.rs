//! What the active controller decides: the records it proposes in answer to requests and to
//! broker liveness. Pure functions of the current [`MetadataImage`], so every rule (placement,
//! clean election, ISR changes, fencing) is tested without a network or a quorum.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::image::{Broker, MetadataImage, Partition, NO_LEADER};
use crate::placement::place_replicas;
use crate::record::{MetadataRecord, PartitionChange};

mod error;

pub use error::ControllerError;

/// Whether a topic allows electing a leader from outside the ISR (losing records).
fn unclean_allowed(image: &MetadataImage, topic: Uuid) -> bool {
    image
        .topics
        .get(&topic)
        .and_then(|t| t.configs.get("unclean.leader.election.enable"))
        .is_some_and(|v| v == "true")
}

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

/// A new leader for `p` when its leader `lost` can no longer lead: the first live ISR member
/// in replica order, or with unclean election allowed any live replica; else offline.
/// Returns the new leader and ISR.
fn elect(image: &MetadataImage, topic: Uuid, p: &Partition, lost: i32) -> (i32, Vec<i32>) {
    let eligible = |r: &i32| *r != lost && image.is_live(*r);
    let isr: Vec<i32> = p.isr.iter().copied().filter(|r| *r != lost).collect();
    if let Some(l) = p
        .replicas
        .iter()
        .copied()
        .find(|r| isr.contains(r) && eligible(r) && !shutting_down(image, *r))
        .or_else(|| {
            p.replicas
                .iter()
                .copied()
                .find(|r| isr.contains(r) && eligible(r))
        })
    {
        return (l, isr);
    }
    if unclean_allowed(image, topic) {
        if let Some(l) = p.replicas.iter().copied().find(eligible) {
            // Records only the old ISR had are lost; the new leader's log is the truth.
            return (l, vec![l]);
        }
    }
    // Offline. Keep the last in-sync replica in the ISR, so that when it returns it can
    // lead again without losing anything.
    let isr = if isr.is_empty() { vec![lost] } else { isr };
    (NO_LEADER, isr)
}

/// Broker `id` as registered, checked to be incarnation `epoch` when one is given.
pub fn registered(
    image: &MetadataImage,
    id: i32,
    epoch: Option<i64>,
) -> Result<&Broker, ControllerError> {
    let b = image.brokers.get(&id).ok_or_else(|| {
        ControllerError::BrokerNotRegistered(format!("broker {id} is not registered"))
    })?;
    match epoch {
        Some(epoch) if epoch != b.epoch => Err(ControllerError::StaleBrokerEpoch(format!(
            "broker {id} epoch {epoch} is stale (current {})",
            b.epoch
        ))),
        _ => Ok(b),
    }
}

fn shutting_down(image: &MetadataImage, id: i32) -> bool {
    image.brokers.get(&id).is_some_and(|b| b.shutting_down)
}

/// What a registration decides: the broker's epoch and the records that make it so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The incarnation epoch the broker is to use.
    pub epoch: i64,
    /// The records to commit (none when a retried registration is answered again).
    pub records: Vec<MetadataRecord>,
}

/// Registers broker `id` as a new incarnation, as Kafka's ClusterControlManager does. While
/// the registered incarnation still holds a valid session (`session_valid`: unfenced, lease
/// not run out) another process may not take the id: DUPLICATE_BROKER_REGISTRATION; the same
/// process retrying (same `incarnation`) gets its epoch again. The new incarnation starts
/// fenced, so the old one's leaderships and ISR places go at once (the new process has not
/// caught up with anything yet).
pub fn register_broker(
    image: &MetadataImage,
    id: i32,
    incarnation: Option<Uuid>,
    endpoints: Vec<crate::record::Endpoint>,
    rack: Option<String>,
    session_valid: bool,
) -> Result<Registration, ControllerError> {
    let existing = image.brokers.get(&id);
    if let Some(b) = existing.filter(|_| session_valid) {
        if incarnation.is_some() && b.incarnation == incarnation {
            return Ok(Registration {
                epoch: b.epoch,
                records: Vec::new(),
            });
        }
        return Err(ControllerError::DuplicateBrokerRegistration(format!(
                "broker {id} is registered as epoch {} with a valid session; another process may not take its id before that session ends",
                b.epoch
            ),
        ));
    }
    let epoch = existing.map_or(0, |b| b.epoch) + 1;
    let mut records = vec![MetadataRecord::RegisterBroker {
        id,
        epoch,
        endpoints,
        rack,
        incarnation,
    }];
    let mut after = image.clone();
    after
        .apply(&records[0])
        .map_err(|e| ControllerError::RecordsRejected(e.to_string()))?;
    records.extend(move_away(&after, id));
    Ok(Registration { epoch, records })
}

/// Fences broker `id` (its lease ran out, or its controlled shutdown is done): it leaves
/// every ISR, and partitions it led get a new leader from the ISR (or go offline).
pub fn fence_broker(
    image: &MetadataImage,
    id: i32,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let b = registered(image, id, None)?;
    let mut out = Vec::new();
    if !b.fenced {
        out.push(MetadataRecord::FenceBroker { id, epoch: b.epoch });
    }
    let mut after = image.clone();
    for r in &out {
        // Applying our own record to a copy cannot fail: the broker and epoch came from it.
        after.apply(r).expect("fence applies");
    }
    out.extend(move_away(&after, id));
    Ok(out)
}

/// Partition changes that take broker `id` out of ISRs and leaderships (Kafka's
/// `generateLeaderAndIsrUpdates` with a broker to remove). The last member of an ISR stays
/// in it, so a partition that goes offline waits for that replica to return rather than
/// losing track of who holds its committed records.
fn move_away(image: &MetadataImage, id: i32) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for t in image.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            if p.leader == id {
                let (leader, isr) = elect(image, t.id, p, id);
                out.push(change(t.id, i, p, Some(leader), Some(isr)));
            } else if p.isr.contains(&id) && p.isr.len() > 1 {
                let isr: Vec<i32> = p.isr.iter().copied().filter(|r| *r != id).collect();
                out.push(change(t.id, i, p, None, Some(isr)));
            }
        }
    }
    out
}

/// Broker ids that led something or were in an ISR while fenced: a fence whose partition
/// changes did not all commit (a controller that failed over in between) is finished by
/// [`repair`].
pub fn fenced_with_duties(image: &MetadataImage) -> Vec<i32> {
    image
        .brokers
        .values()
        .filter(|b| b.fenced)
        .map(|b| b.id)
        .filter(|id| !move_away(image, *id).is_empty())
        .collect()
}

/// What the active controller does on its own, at every check: finish fences (fenced brokers
/// still leading or in ISRs), complete reassignments whose target replicas are in sync, and
/// elect leaders for offline partitions with a live in-sync replica or whose topic allows
/// unclean election (Kafka's periodic unclean election, so turning the setting on or a
/// replica returning is enough).
/// One batch of records per concern; each is decided over the image the previous left.
pub fn repair(image: &MetadataImage) -> Vec<Vec<MetadataRecord>> {
    let mut out = Vec::new();
    let mut after = image.clone();
    let mut push = |records: Vec<MetadataRecord>, after: &mut MetadataImage| {
        if !records.is_empty() {
            let batch = MetadataRecord::Batch(records.clone());
            match after.apply(&batch) {
                Ok(()) => out.push(records),
                // Decided over this very image, so it should always apply: say so if not.
                Err(e) => tracing::warn!(error = %e, "a repair does not fit the image; skipped"),
            }
        }
    };
    for id in fenced_with_duties(&after) {
        let records = move_away(&after, id);
        push(records, &mut after);
    }
    let records = complete_reassignments(&after);
    push(records, &mut after);
    let records = elect_offline_where_allowed(&after);
    push(records, &mut after);
    out
}

/// A change of partition `p` (index `partition` of `topic`), decided at its current
/// partition epoch.
fn change(
    topic: Uuid,
    partition: usize,
    p: &Partition,
    leader: Option<i32>,
    isr: Option<Vec<i32>>,
) -> MetadataRecord {
    MetadataRecord::ChangePartition(PartitionChange {
        topic,
        partition: partition as i32,
        leader,
        isr,
        partition_epoch: Some(p.partition_epoch),
        ..PartitionChange::default()
    })
}

/// Unfences broker `id` of incarnation `epoch`: it may lead again; offline partitions whose
/// last in-sync replica it is come back with it as leader, and offline partitions of topics
/// allowing unclean election take it as leader if it is a replica.
pub fn unfence_broker(
    image: &MetadataImage,
    id: i32,
    epoch: i64,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let b = registered(image, id, Some(epoch))?;
    let mut out = Vec::new();
    if b.fenced || b.shutting_down {
        out.push(MetadataRecord::UnfenceBroker { id, epoch });
    }
    for t in image.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            if p.leader != NO_LEADER || !p.replicas.contains(&id) {
                continue;
            }
            if p.isr.contains(&id) {
                out.push(change(t.id, i, p, Some(id), None));
            } else if unclean_allowed(image, t.id) {
                // Records only the lost ISR had are gone; this replica's log is the truth.
                out.push(change(t.id, i, p, Some(id), Some(vec![id])));
            }
        }
    }
    Ok(out)
}

/// Controlled shutdown of broker `id`, as Kafka's `handleBrokerInControlledShutdown`: it
/// leaves every ISR and its leaderships move to other in-sync replicas at once, so acks=all
/// producers stop waiting for it and clients switch leaders without waiting out a lease.
/// A partition it is the last in-sync replica of goes offline until it returns.
pub fn begin_shutdown(
    image: &MetadataImage,
    id: i32,
    epoch: i64,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    registered(image, id, Some(epoch))?;
    let mut out = vec![MetadataRecord::BeginShutdown { id, epoch }];
    let mut after = image.clone();
    after.apply(&out[0]).expect("epoch checked above");
    out.extend(move_away(&after, id));
    Ok(out)
}

/// Whether broker `id` leads no partition.
pub fn leads_nothing(image: &MetadataImage, id: i32) -> bool {
    image
        .topics
        .values()
        .all(|t| t.partitions.iter().all(|p| p.leader != id))
}

/// The end of a controlled shutdown: once broker `id` (incarnation `epoch`) leads nothing it
/// is fenced at once (Kafka's SHUTDOWN_NOW), rather than when its lease runs out.
pub fn finish_shutdown(
    image: &MetadataImage,
    id: i32,
    epoch: i64,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let b = registered(image, id, Some(epoch))?;
    if !b.shutting_down || b.fenced || !leads_nothing(image, id) {
        return Ok(Vec::new());
    }
    fence_broker(image, id)
}

/// An ISR change proposed by a partition's leader (Kafka's AlterPartition), checked as
/// KIP-497 does: only the current leader, at the current leader and partition epochs, with
/// an ISR of live replicas that contains the leader.
pub fn alter_isr(
    image: &MetadataImage,
    leader: i32,
    topic: Uuid,
    partition: i32,
    leader_epoch: i32,
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

/// Moves leadership back to each partition's preferred (first) replica where it is live and
/// in sync (Kafka's ElectLeaders with PREFERRED).
pub fn elect_preferred(image: &MetadataImage) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for t in image.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            let preferred = p.replicas[0];
            if p.leader != preferred
                && p.isr.contains(&preferred)
                && image.is_live(preferred)
                && !shutting_down(image, preferred)
            {
                out.push(change(t.id, i, p, Some(preferred), None));
            }
        }
    }
    out
}

/// A leader for each offline partition (ElectLeaders with UNCLEAN): a live in-sync replica if
/// one is back, else any live replica, which then forms the ISR alone. Records only the lost
/// replicas had are gone; the new leader's log is the truth from here on.
pub fn elect_unclean(image: &MetadataImage) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for t in image.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            if p.leader != NO_LEADER {
                continue;
            }
            if let Some(leader) = unclean_candidate(image, p) {
                let isr = if p.isr.contains(&leader) {
                    p.isr.clone()
                } else {
                    vec![leader]
                };
                out.push(change(t.id, i, p, Some(leader), Some(isr)));
            }
        }
    }
    out
}

/// A leader for each offline partition that may have one now: a live in-sync replica, or
/// where the topic allows unclean election any live replica.
pub fn elect_offline_where_allowed(image: &MetadataImage) -> Vec<MetadataRecord> {
    elect_unclean(image)
        .into_iter()
        .filter(|r| match r {
            MetadataRecord::ChangePartition(c) => {
                let clean = image
                    .partition(c.topic, c.partition)
                    .zip(c.leader)
                    .is_some_and(|(p, l)| p.isr.contains(&l));
                clean || unclean_allowed(image, c.topic)
            }
            _ => false,
        })
        .collect()
}

/// Who an unclean election of `p` would choose: live in-sync replicas first, then any live
/// replica, each in replica order and avoiding brokers that are shutting down.
pub fn unclean_candidate(image: &MetadataImage, p: &Partition) -> Option<i32> {
    let live = |r: &&i32| image.is_live(**r) && !shutting_down(image, **r);
    p.replicas
        .iter()
        .filter(live)
        .find(|r| p.isr.contains(r))
        .or_else(|| p.replicas.iter().find(live))
        .copied()
}

/// Kafka's automatic leader rebalance: for every broker that leads fewer than it prefers by
/// more than `imbalance_pct` percent, move its preferred partitions back to it (where it is a
/// live in-sync replica).
pub fn rebalance_leaders(image: &MetadataImage, imbalance_pct: u32) -> Vec<MetadataRecord> {
    let mut preferred: BTreeMap<i32, (usize, usize)> = BTreeMap::new();
    for t in image.topics.values() {
        for p in &t.partitions {
            let e = preferred.entry(p.replicas[0]).or_default();
            e.0 += 1;
            if p.leader != p.replicas[0] {
                e.1 += 1;
            }
        }
    }
    let imbalanced: BTreeSet<i32> = preferred
        .into_iter()
        .filter(|(_, (total, elsewhere))| elsewhere * 100 > total * imbalance_pct as usize)
        .map(|(b, _)| b)
        .collect();
    elect_preferred(image)
        .into_iter()
        .filter(|r| match r {
            MetadataRecord::ChangePartition(c) => c.leader.is_some_and(|l| imbalanced.contains(&l)),
            _ => false,
        })
        .collect()
}

/// Starts (or, with `target = None`, cancels) moving a partition to the replicas `target`
/// (Kafka's AlterPartitionReassignments, KIP-455): new replicas join as followers outside
/// the ISR; once every target replica is in sync, [`complete_reassignments`] drops the
/// others and moves leadership if its leader is leaving.
pub fn alter_reassignment(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    target: Option<&[i32]>,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let (t, p) = image
        .topic_by_name(topic)
        .and_then(|t| Some((t, t.partitions.get(usize::try_from(partition).ok()?)?)))
        .ok_or_else(|| {
            ControllerError::UnknownTopicOrPartition(format!("no partition {topic}-{partition}"))
        })?;
    let original = p.original();
    let in_progress = !p.adding.is_empty() || !p.removing.is_empty();
    let Some(target) = target else {
        if !in_progress {
            return Err(ControllerError::NoReassignmentInProgress(format!(
                "no reassignment of {topic}-{partition} is in progress"
            )));
        }
        // Back to the original replicas; replicas that were joining leave the ISR.
        let isr: Vec<i32> = p
            .isr
            .iter()
            .copied()
            .filter(|r| original.contains(r))
            .collect();
        let leader = if original.contains(&p.leader) {
            None
        } else {
            Some(
                original
                    .iter()
                    .copied()
                    .find(|r| isr.contains(r) && image.is_live(*r))
                    .unwrap_or(NO_LEADER),
            )
        };
        return Ok(vec![MetadataRecord::ChangePartition(PartitionChange {
            topic: t.id,
            partition,
            leader,
            isr: Some(isr),
            replicas: Some(original),
            adding: Some(Vec::new()),
            removing: Some(Vec::new()),
            partition_epoch: Some(p.partition_epoch),
        })]);
    };
    let distinct: BTreeSet<i32> = target.iter().copied().collect();
    if target.is_empty() || distinct.len() != target.len() {
        return Err(ControllerError::InvalidReplicaAssignment(format!(
            "replicas {target:?} must be distinct and not empty"
        )));
    }
    if let Some(unknown) = target.iter().find(|r| !image.brokers.contains_key(r)) {
        return Err(ControllerError::InvalidReplicaAssignment(format!(
            "broker {unknown} is not registered"
        )));
    }
    let adding: Vec<i32> = target
        .iter()
        .copied()
        .filter(|r| !original.contains(r))
        .collect();
    let removing: Vec<i32> = original
        .iter()
        .copied()
        .filter(|r| !target.contains(r))
        .collect();
    if adding.is_empty() && removing.is_empty() && !in_progress && p.replicas == target {
        return Ok(Vec::new());
    }
    let mut replicas = target.to_vec();
    replicas.extend(removing.iter().copied());
    let isr: Vec<i32> = p
        .isr
        .iter()
        .copied()
        .filter(|r| replicas.contains(r))
        .collect();
    let mut out = vec![MetadataRecord::ChangePartition(PartitionChange {
        topic: t.id,
        partition,
        leader: None,
        isr: Some(isr),
        replicas: Some(replicas),
        adding: Some(adding),
        removing: Some(removing),
        partition_epoch: Some(p.partition_epoch),
    })];
    // A reassignment that adds nothing (or whose new replicas are in sync) completes now.
    let mut after = image.clone();
    if after.apply(&out[0]).is_ok() {
        out.extend(complete_reassignments(&after));
    }
    Ok(out)
}

/// Finishes every reassignment whose target replicas are all in sync: the leaving replicas
/// go, and a leaving leader hands over to the first live in-sync target replica.
pub fn complete_reassignments(image: &MetadataImage) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for t in image.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            if p.adding.is_empty() && p.removing.is_empty() {
                continue;
            }
            let target = p.target();
            if !target.iter().all(|r| p.isr.contains(r)) {
                continue;
            }
            let isr: Vec<i32> = p
                .isr
                .iter()
                .copied()
                .filter(|r| target.contains(r))
                .collect();
            let leader = if target.contains(&p.leader) {
                None
            } else {
                Some(
                    target
                        .iter()
                        .copied()
                        .find(|r| isr.contains(r) && image.is_live(*r))
                        .unwrap_or(NO_LEADER),
                )
            };
            out.push(MetadataRecord::ChangePartition(PartitionChange {
                topic: t.id,
                partition: i as i32,
                leader,
                isr: Some(isr),
                replicas: Some(target),
                adding: Some(Vec::new()),
                removing: Some(Vec::new()),
                partition_epoch: Some(p.partition_epoch),
            }));
        }
    }
    out
}
