//! Who leads a partition: the clean election when a leader is lost, unclean election where
//! a topic allows it, ElectLeaders (KIP-460) and the automatic leader rebalance (Kafka's
//! PartitionChangeBuilder election rules and QuorumController's rebalance).

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::{change, shutting_down};
use crate::image::{MetadataImage, Partition, NO_LEADER};
use crate::record::MetadataRecord;

/// Whether a topic allows electing a leader from outside the ISR (losing records).
pub(super) fn unclean_allowed(image: &MetadataImage, topic: Uuid) -> bool {
    image
        .topics
        .get(&topic)
        .and_then(|t| t.configs.get("unclean.leader.election.enable"))
        .is_some_and(|v| v == "true")
}

/// A new leader for `p` when its leader `lost` can no longer lead: the first live ISR member
/// in replica order, or with unclean election allowed any live replica; else offline.
/// Returns the new leader and ISR.
pub(super) fn elect(
    image: &MetadataImage,
    topic: Uuid,
    p: &Partition,
    lost: i32,
) -> (i32, Vec<i32>) {
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
