//! Committed offsets: OffsetCommit, OffsetFetch and OffsetDelete on `GroupCoordinator`.
//! Each change is appended to the group's `__consumer_offsets` partition before it is
//! acknowledged or applied in memory.

use kafka_protocol::error::ResponseError;
use sluice_storage::TopicPartition;

use super::records::{CommittedOffset, OffsetsRecord};
use super::state::{Group, GroupState};
use super::{now_ms, FetchedOffset, GroupCoordinator};
use crate::error::BrokerError;
use crate::replica_manager::Appended;

impl GroupCoordinator {
    /// OffsetCommit. `generation == -1` with no member id is a standalone (assign-mode) commit.
    pub fn commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        offsets: Vec<(TopicPartition, i64, i32, Option<String>)>,
    ) -> (Vec<(TopicPartition, i16)>, Option<Appended>) {
        let fail = |code: i16, offsets: Vec<(TopicPartition, i64, i32, Option<String>)>| {
            (offsets.into_iter().map(|o| (o.0, code)).collect(), None)
        };
        if let Err(e) = self.owns(group_id) {
            return fail(e.code(), offsets);
        }
        {
            let groups = self.groups.lock();
            match groups.get(group_id) {
                Some(g) if !g.members.is_empty() || generation >= 0 => {
                    if !g.members.contains_key(member_id) {
                        return fail(ResponseError::UnknownMemberId.code(), offsets);
                    }
                    if generation != g.generation {
                        return fail(ResponseError::IllegalGeneration.code(), offsets);
                    }
                    if g.state == GroupState::PreparingRebalance {
                        return fail(ResponseError::RebalanceInProgress.code(), offsets);
                    }
                }
                None if generation >= 0 => {
                    return fail(ResponseError::IllegalGeneration.code(), offsets)
                }
                _ => {}
            }
        }
        let now = now_ms();
        let mut results = Vec::with_capacity(offsets.len());
        let mut records = Vec::new();
        let mut accepted = Vec::new();
        for (tp, offset, epoch, metadata) in offsets {
            let exists = self
                .rm
                .topic(&tp.topic)
                .is_some_and(|t| (0..t.meta.partitions).contains(&tp.partition));
            if !exists {
                results.push((tp, ResponseError::UnknownTopicOrPartition.code()));
                continue;
            }
            let value = CommittedOffset {
                offset,
                leader_epoch: epoch,
                metadata: metadata.unwrap_or_default(),
                commit_timestamp: now,
            };
            records.push(OffsetsRecord::Offset {
                group: group_id.to_string(),
                topic: tp.topic.clone(),
                partition: tp.partition,
                value: Some(value.clone()),
            });
            accepted.push((tp, value));
        }
        let mut written = None;
        if !records.is_empty() {
            match self.persist(group_id, &records) {
                Ok(w) => written = Some(w),
                Err(e) => {
                    tracing::warn!(group = group_id, error = %e, "offset commit not persisted");
                    let code = commit_error(&e).code();
                    results.extend(accepted.into_iter().map(|(tp, _)| (tp, code)));
                    return (results, None);
                }
            }
            let mut all = self.offsets.lock();
            let g = all.entry(group_id.to_string()).or_default();
            for (tp, v) in accepted {
                g.insert((tp.topic.clone(), tp.partition), v);
                results.push((tp, 0));
            }
            self.groups
                .lock()
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id));
        }
        (results, written)
    }

    /// OffsetFetch: committed offsets of `group` (all when `partitions` is `None`).
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<TopicPartition>>,
    ) -> Result<Vec<FetchedOffset>, i16> {
        self.owns(group_id).map_err(|e| e.code())?;
        let all = self.offsets.lock();
        let g = all.get(group_id);
        Ok(match partitions {
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
        })
    }

    /// OffsetDelete: refuses partitions the group is consuming (GROUP_SUBSCRIBED_TO_TOPIC).
    pub fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<TopicPartition>,
    ) -> (i16, Vec<(TopicPartition, i16)>) {
        if let Err(e) = self.owns(group_id) {
            return (e.code(), Vec::new());
        }
        let groups = self.groups.lock();
        if !groups.contains_key(group_id) && !self.offsets.lock().contains_key(group_id) {
            return (ResponseError::GroupIdNotFound.code(), Vec::new());
        }
        let active = groups.get(group_id).is_some_and(|g| !g.members.is_empty());
        drop(groups);
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
        if !records.is_empty() {
            if let Err(e) = self.persist(group_id, &records).map(drop) {
                let code = crate::error_map::code(&e);
                return (0, results.into_iter().map(|(tp, _)| (tp, code)).collect());
            }
            let mut all = self.offsets.lock();
            if let Some(g) = all.get_mut(group_id) {
                for (tp, code) in &results {
                    if *code == 0 {
                        g.remove(&(tp.topic.clone(), tp.partition));
                    }
                }
            }
        }
        (0, results)
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
