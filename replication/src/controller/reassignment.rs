//! Partition reassignment (KIP-455): new replicas join outside the ISR, and once all are in
//! sync the leaving ones go, leadership moving if the leader leaves.

use super::ControllerError;
use crate::image::{MetadataImage, NO_LEADER};
use crate::record::{MetadataRecord, PartitionChange};

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
    super::replication_control::validate_manual_assignment(image, target, None)?;
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
