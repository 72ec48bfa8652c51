//! Committed offsets on a `GroupShard`: OffsetCommit, OffsetFetch and OffsetDelete. A commit
//! returns its records; the shard applies them once appended (`GroupShard::applied`) and the
//! runtime answers once they are on the ISR.

use kafka_protocol::error::ResponseError;
use sluice_storage::TopicPartition;

use super::records::{CommittedOffset, OffsetsRecord};
use super::shard::{check_group_id, Effect, FetchedOffset, GroupShard, Now, Pending};
use super::state::{Group, GroupState};
use crate::error::BrokerError;

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
        let fail = |e: ResponseError| {
            Effect::now(offsets.iter().map(|o| (o.0.clone(), e.code())).collect())
        };
        if let Err(e) = check_group_id(&group_id) {
            return fail(e);
        }
        // Kafka's validateOffsetCommit: a commit of the current generation is accepted while
        // the group prepares a rebalance (its members may commit what they processed before
        // their partitions move); only a group completing its rebalance refuses (defect 8).
        match self.groups.get(&group_id) {
            Some(g) if !g.members.is_empty() || generation >= 0 => {
                if g.fenced(&member_id, instance_id.as_deref()) {
                    return fail(ResponseError::FencedInstanceId);
                }
                if !g.members.contains_key(&member_id) {
                    return fail(ResponseError::UnknownMemberId);
                }
                if generation != g.generation {
                    return fail(ResponseError::IllegalGeneration);
                }
                if g.state == GroupState::CompletingRebalance {
                    return fail(ResponseError::RebalanceInProgress);
                }
            }
            None if generation >= 0 => return fail(ResponseError::IllegalGeneration),
            _ => {}
        }
        let max_metadata = self.config.offset_metadata_max_bytes;
        let mut results = Vec::with_capacity(offsets.len());
        let mut records = Vec::new();
        for (tp, offset, epoch, metadata) in offsets {
            if !exists(&tp) {
                results.push((tp, ResponseError::UnknownTopicOrPartition.code()));
                continue;
            }
            let metadata = metadata.unwrap_or_default();
            if metadata.len() > max_metadata {
                results.push((tp, ResponseError::OffsetMetadataTooLarge.code()));
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
            let emptied = gone.len() == offsets.len()
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

    /// OffsetDelete: refuses partitions the group is consuming (GROUP_SUBSCRIBED_TO_TOPIC).
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        partitions: Vec<TopicPartition>,
    ) -> Effect<(i16, CommitResults)> {
        if !self.groups.contains_key(group_id) && !self.offsets.contains_key(group_id) {
            return Effect::now((ResponseError::GroupIdNotFound.code(), Vec::new()));
        }
        let active = self
            .groups
            .get(group_id)
            .is_some_and(|g| !g.members.is_empty());
        let mut results = Vec::new();
        let mut records = Vec::new();
        for tp in partitions {
            if active {
                results.push((tp, ResponseError::GroupSubscribedToTopic.code()));
                continue;
            }
            records.push(OffsetsRecord::Offset {
                group: group_id.to_string(),
                topic: tp.topic.clone(),
                partition: tp.partition,
                value: None,
            });
            results.push((tp, 0));
        }
        Effect {
            records,
            deferred: Vec::new(),
            answer: Pending::Now((0, results)),
        }
    }
}

/// The error an offset commit answers when writing its records failed, as Kafka maps them:
/// the client then looks for the coordinator again or retries.
pub fn commit_error(e: &BrokerError) -> ResponseError {
    match e {
        BrokerError::NotLeaderOrFollower | BrokerError::Storage(_) => ResponseError::NotCoordinator,
        BrokerError::NotEnoughReplicas { .. }
        | BrokerError::NotEnoughReplicasAfterAppend
        | BrokerError::ReplicationTimedOut
        | BrokerError::UnknownTopicOrPartition => ResponseError::CoordinatorNotAvailable,
        other => crate::error_map::response_error(other),
    }
}
