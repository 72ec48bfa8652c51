//! Committed offsets on a `GroupShard`: OffsetCommit, OffsetFetch and OffsetDelete. A commit
//! returns its records; they take effect once the ISR has them (`GroupShard::replicated_to`),
//! and then the runtime answers.

use super::error::GroupError;
use sluice_storage::TopicPartition;

use super::records::{CommittedOffset, OffsetsRecord};
use super::shard::{check_group_id, Effect, FetchedOffset, GroupShard, Now, Pending};
use super::state::{Group, GroupState};

/// An OffsetCommit request, in domain terms.
#[derive(Debug, Clone)]
pub struct CommitParams {
    pub group_id: String,
    /// -1 with an empty member id: a standalone (assign-mode) commit.
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    /// (partition, offset, leader epoch, metadata)
    pub offsets: Vec<(TopicPartition, i64, i32, Option<String>)>,
}

/// Per-partition answers of an OffsetCommit.
pub type CommitResults = Vec<(TopicPartition, i16)>;

impl GroupShard {
    /// OffsetCommit. `exists` says whether a partition exists (UNKNOWN_TOPIC_OR_PARTITION).
    pub fn commit(
        &mut self,
        req: CommitParams,
        exists: &dyn Fn(&TopicPartition) -> bool,
        now: Now,
    ) -> Effect<CommitResults> {
        let CommitParams {
            group_id,
            generation,
            member_id,
            instance_id,
            offsets,
        } = req;
        let fail =
            |e: GroupError| Effect::now(offsets.iter().map(|o| (o.0.clone(), e.code())).collect());
        if let Err(e) = check_group_id(&group_id) {
            return fail(e);
        }
        // Kafka's validateOffsetCommit: a commit of the current generation is accepted while
        // the group prepares a rebalance (its members may commit what they processed before
        // their partitions move); only a group completing its rebalance refuses (defect 8).
        match self.groups.get(&group_id) {
            Some(g) if !g.members.is_empty() || generation >= 0 => {
                if g.fenced(&member_id, instance_id.as_deref()) {
                    return fail(GroupError::FencedInstanceId);
                }
                if !g.members.contains_key(&member_id) {
                    return fail(GroupError::UnknownMemberId);
                }
                if generation != g.generation {
                    return fail(GroupError::IllegalGeneration);
                }
                if g.state == GroupState::CompletingRebalance {
                    return fail(GroupError::RebalanceInProgress);
                }
            }
            None if generation >= 0 => return fail(GroupError::IllegalGeneration),
            _ => {}
        }
        let max_metadata = self.config.offset_metadata_max_bytes;
        let mut results = Vec::with_capacity(offsets.len());
        let mut records = Vec::new();
        for (tp, offset, epoch, metadata) in offsets {
            if !exists(&tp) {
                results.push((tp, GroupError::UnknownTopicOrPartition.code()));
                continue;
            }
            let metadata = metadata.unwrap_or_default();
            if metadata.len() > max_metadata {
                results.push((tp, GroupError::OffsetMetadataTooLarge.code()));
                continue;
            }
            records.push(OffsetsRecord::Offset {
                group: group_id.clone(),
                topic: tp.topic.clone(),
                partition: tp.partition,
                value: Some(CommittedOffset {
                    offset,
                    leader_epoch: epoch,
                    metadata,
                    commit_timestamp: now.ms,
                }),
            });
            results.push((tp, 0));
        }
        if !records.is_empty() {
            self.groups
                .entry(group_id.clone())
                .or_insert_with(|| Group::new(&group_id));
        }
        Effect {
            records,
            deferred: Vec::new(),
            answer: Pending::Now(results),
        }
    }

    /// OffsetFetch: committed offsets of `group` (all when `partitions` is `None`).
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<TopicPartition>>,
    ) -> Vec<FetchedOffset> {
        let g = self.offsets.get(group_id);
        match partitions {
            Some(ps) => ps
                .into_iter()
                .map(
                    |tp| match g.and_then(|g| g.get(&(tp.topic.clone(), tp.partition))) {
                        Some(c) => (tp, c.offset, c.leader_epoch, Some(c.metadata.clone())),
                        None => (tp, -1, -1, Some(String::new())),
                    },
                )
                .collect(),
            None => g
                .map(|g| {
                    g.iter()
                        .map(|((t, p), c)| {
                            (
                                TopicPartition::new(t.clone(), *p),
                                c.offset,
                                c.leader_epoch,
                                Some(c.metadata.clone()),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Topics were deleted: the tombstones of every group's committed offsets on them, so a
    /// topic recreated under the same name starts from `auto.offset.reset` (Kafka's
    /// `onPartitionsDeleted`; issue 22 item 6). A group left with no members and no offsets
    /// is deleted too, as Kafka moves it to Dead. Applied once appended, like any record.
    pub fn delete_topics(&self, deleted: &dyn Fn(&str) -> bool) -> Vec<OffsetsRecord> {
        let mut records = Vec::new();
        for (group, offsets) in &self.offsets {
            let gone: Vec<&(String, i32)> =
                offsets.keys().filter(|(topic, _)| deleted(topic)).collect();
            if gone.is_empty() {
                continue;
            }
            records.extend(gone.iter().map(|(topic, partition)| OffsetsRecord::Offset {
                group: group.clone(),
                topic: topic.clone(),
                partition: *partition,
                value: None,
            }));
            // A commit appended and not yet replicated is an offset the cache does not show
            // yet: a group tombstone after it would erase an acknowledged commit.
            let emptied = gone.len() == offsets.len()
                && !self.unreplicated_for(group)
                && self
                    .groups
                    .get(group)
                    .is_none_or(|g| g.members.is_empty() && g.state == GroupState::Empty);
            if emptied {
                records.push(OffsetsRecord::Group {
                    group: group.clone(),
                    value: None,
                });
            }
        }
        records
    }

    /// OffsetDelete, as Kafka's `deleteOffsets`: a group with members deletes only through
    /// the `consumer` protocol, and refuses the partitions of topics its members subscribe to
    /// (GROUP_SUBSCRIBED_TO_TOPIC); the others' offsets are deleted even while it runs.
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        partitions: Vec<TopicPartition>,
    ) -> Effect<(i16, CommitResults)> {
        let group = self.groups.get(group_id);
        if group.is_none() && !self.offsets.contains_key(group_id) {
            return Effect::now((GroupError::GroupIdNotFound.code(), Vec::new()));
        }
        if group.is_some_and(|g| {
            g.state != GroupState::Empty && g.protocol_type.as_deref() != Some("consumer")
        }) {
            return Effect::now((GroupError::NonEmptyGroup.code(), Vec::new()));
        }
        let committed = self.offsets.get(group_id);
        let mut results = Vec::new();
        let mut records = Vec::new();
        for tp in partitions {
            if group.is_some_and(|g| g.subscribed_to(&tp.topic)) {
                results.push((tp, GroupError::GroupSubscribedToTopic.code()));
                continue;
            }
            if committed.is_some_and(|c| c.contains_key(&(tp.topic.clone(), tp.partition))) {
                records.push(OffsetsRecord::Offset {
                    group: group_id.to_string(),
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    value: None,
                });
            }
            results.push((tp, 0));
        }
        Effect {
            records,
            deferred: Vec::new(),
            answer: Pending::Now((0, results)),
        }
    }

    /// Kafka's offset expiry (`offsets.retention.minutes`, checked every
    /// `offsets.retention.check.interval.ms`): the tombstones of committed offsets kept longer
    /// than the retention, counted from when their group became Empty (or, without that
    /// time, from the commit), from the commit for a group that only commits (no protocol
    /// type), and from the commit for topics a Stable consumer group no longer subscribes
    /// to; then of each Empty group left with no offsets.
    pub fn expire_offsets(&self, now_ms: i64) -> Vec<OffsetsRecord> {
        let retention = self.config.offsets_retention_ms;
        let mut records = Vec::new();
        let mut names: Vec<&String> = self.groups.keys().chain(self.offsets.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            if self.unreplicated_for(name) {
                // A commit on its way would come after the tombstones in the log.
                continue;
            }
            let g = self.groups.get(name);
            let empty = g.is_none_or(|g| g.state == GroupState::Empty);
            // The time each offset's retention counts from, or None if it does not expire.
            let base = |c: &CommittedOffset| -> Option<i64> {
                match g {
                    Some(g) if g.protocol_type.is_some() => {
                        if g.state == GroupState::Empty {
                            Some(g.empty_since_ms.unwrap_or(c.commit_timestamp))
                        } else if g.state == GroupState::Stable
                            && g.protocol_type.as_deref() == Some("consumer")
                            && g.subscribed_topics().is_some()
                        {
                            Some(c.commit_timestamp)
                        } else {
                            None
                        }
                    }
                    _ => Some(c.commit_timestamp),
                }
            };
            let committed = self.offsets.get(name);
            let expired: Vec<&(String, i32)> = committed
                .iter()
                .flat_map(|o| o.iter())
                .filter(|((topic, _), c)| {
                    base(c).is_some_and(|b| now_ms.saturating_sub(b) >= retention)
                        && !g.is_some_and(|g| g.subscribed_to(topic))
                })
                .map(|(k, _)| k)
                .collect();
            let all_gone = expired.len() == committed.map_or(0, |o| o.len());
            records.extend(
                expired
                    .into_iter()
                    .map(|(topic, partition)| OffsetsRecord::Offset {
                        group: name.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                        value: None,
                    }),
            );
            if empty && all_gone {
                records.push(OffsetsRecord::Group {
                    group: name.clone(),
                    value: None,
                });
            }
        }
        records
    }
}
