//! `GroupCoordinator`: the runtime around the `GroupShard`s, one per `__consumer_offsets`
//! partition this node leads (Kafka's `CoordinatorRuntime`).
//!
//! Concurrency, deadlock-free by construction: the shard map and each shard have their own
//! lock, and no code path holds two of them at once or holds any across an `.await`. A
//! request clones its shard's `Arc` out of the map, releases the map, locks the shard, runs the
//! operation, appends the records it returned (a synchronous local write) and applies them,
//! then releases the shard and only then awaits replication to the ISR before answering.
//! Appends happen under the shard's lock, so the partition's log order is the order in which
//! the shard decided.
//!
//! Lifecycle (loading, keeping, failing and unloading partitions) is `load.rs`'s.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::error::GroupError;
use parking_lot::{Mutex, RwLock};
use sluice_storage::record::BatchBuilder;
use sluice_storage::{AppendOrigin, TopicPartition};

use super::load::Slot;
use super::membership::{JoinParams, SyncParams};
use super::offsets::{CommitParams, CommitResults};
use super::records::{partition_for, OffsetsRecord};
use super::shard::{Effect, FetchedOffset, GroupDescription, GroupShard, Now, Pending};
use super::state::{JoinResult, SyncResult};
use super::{GroupConfig, OFFSETS_TOPIC};
use crate::error::BrokerError;
use crate::replica_manager::{Appended, ReplicaManager};

/// How long an answer waits for its records to reach the ISR (`offsets.commit.timeout.ms`).
const OFFSETS_COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// `e`, or `instead` if `e` is COORDINATOR_LOAD_IN_PROGRESS.
fn while_loading(e: GroupError, instead: GroupError) -> GroupError {
    match e {
        GroupError::CoordinatorLoadInProgress => instead,
        other => other,
    }
}

/// The coordinator of every group on this node.
pub struct GroupCoordinator {
    pub(super) rm: Arc<ReplicaManager>,
    config: GroupConfig,
    /// The offsets partitions led here, by partition. Never locked while a shard is.
    pub(super) shards: RwLock<HashMap<i32, Slot>>,
}

impl GroupCoordinator {
    /// A coordinator with no groups yet: it takes on the groups of each `__consumer_offsets`
    /// partition this node comes to lead ([`GroupCoordinator::follow_leadership`]).
    pub fn open(rm: Arc<ReplicaManager>, config: GroupConfig) -> GroupCoordinator {
        GroupCoordinator {
            rm,
            config,
            shards: RwLock::new(HashMap::new()),
        }
    }

    /// The coordinator's settings.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    fn offsets_partitions(&self) -> i32 {
        self.rm
            .topic(OFFSETS_TOPIC)
            .map_or(self.config.offsets_partitions, |t| t.meta.partitions)
    }

    /// The `__consumer_offsets` partition holding `group`.
    pub fn partition_of(&self, group: &str) -> i32 {
        partition_for(group, self.offsets_partitions())
    }

    /// The shard coordinating `group`: NOT_COORDINATOR if another broker leads its offsets
    /// partition or its load failed, COORDINATOR_LOAD_IN_PROGRESS while its groups are being
    /// loaded.
    fn shard(&self, group: &str) -> Result<Arc<Mutex<GroupShard>>, GroupError> {
        let p = self.partition_of(group);
        let tp = TopicPartition::new(OFFSETS_TOPIC, p);
        if self.rm.leader_partition(&tp, -1).is_err() {
            return Err(GroupError::NotCoordinator);
        }
        match self.shards.read().get(&p) {
            Some(Slot::Active { shard, .. }) => Ok(Arc::clone(shard)),
            Some(Slot::Failed { .. }) => Err(GroupError::NotCoordinator),
            Some(Slot::Loading { .. }) | None => Err(GroupError::CoordinatorLoadInProgress),
        }
    }

    /// The shards taking requests.
    fn active_shards(&self) -> Vec<Arc<Mutex<GroupShard>>> {
        self.shards
            .read()
            .values()
            .filter_map(|slot| match slot {
                Slot::Active { shard, .. } => Some(Arc::clone(shard)),
                _ => None,
            })
            .collect()
    }

    /// Runs `op` on `group`'s shard, appends its records, waits until the ISR has them and
    /// answers; `fail` builds the answer for an error.
    async fn run<T, F, O>(&self, group: &str, fail: F, op: O) -> T
    where
        F: Fn(GroupError) -> T,
        O: FnOnce(&mut GroupShard, Now) -> Effect<T>,
    {
        let shard = match self.shard(group) {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
        let (written, deferred, answer) = {
            let mut s = shard.lock();
            if !s.is_active() {
                return fail(GroupError::NotCoordinator);
            }
            let Effect {
                records,
                deferred,
                answer,
            } = op(&mut s, Now::current());
            if records.is_empty() {
                (None, deferred, answer)
            } else {
                let written = self.append(s.partition(), &records);
                if let Ok(w) = &written {
                    s.appended(records, w.info.last_offset.0 + 1);
                }
                (Some(written), deferred, answer)
            }
        };
        let outcome = match written {
            None => Ok(()),
            Some(Ok(w)) => {
                let replicated = w.replicated(OFFSETS_COMMIT_TIMEOUT).await;
                if replicated.is_ok() {
                    // Before the answer: a client reading what it was told is written sees it.
                    shard.lock().replicated_to(w.info.last_offset.0 + 1);
                }
                replicated
            }
            Some(Err(e)) => Err(e),
        };
        match outcome {
            Ok(()) => deferred.into_iter().for_each(|d| d.send()),
            Err(e) => {
                tracing::warn!(group, error = %e, "group coordinator records not written");
                let code = GroupError::not_written(&e);
                deferred.into_iter().for_each(|d| d.fail(code));
                if let Pending::Now(_) = answer {
                    return fail(code);
                }
            }
        }
        match answer {
            Pending::Now(t) => t,
            Pending::Later(rx) => rx
                .await
                .unwrap_or_else(|_| fail(GroupError::NotCoordinator)),
        }
    }

    /// Appends `records` to offsets partition `p` as its leader.
    fn append(&self, p: i32, records: &[OffsetsRecord]) -> Result<Appended, BrokerError> {
        let tp = TopicPartition::new(OFFSETS_TOPIC, p);
        let ts = crate::replica_manager::now_ms();
        let mut b = BatchBuilder::new();
        for r in records {
            // The shard checks every length before it emits a record; this is the last line.
            let (k, v) = r
                .encode()
                .map_err(|e| BrokerError::InvalidRequest(e.to_string()))?;
            b = b.record(Some(&k), v.as_deref(), ts);
        }
        self.rm
            .append(&tp, &b.build(), AppendOrigin::Coordinator, false)
    }

    /// JoinGroup.
    pub async fn join(&self, p: JoinParams) -> JoinResult {
        let group = p.group_id.clone();
        let member = p.member_id.clone();
        self.run(
            &group,
            |e| JoinResult::error(e, &member),
            |s, now| s.join(p, now),
        )
        .await
    }

    /// SyncGroup. While the group's partition loads it answers REBALANCE_IN_PROGRESS, as
    /// Kafka does: the member rejoins (and waits on JoinGroup's COORDINATOR_LOAD_IN_PROGRESS),
    /// where Java's and aiokafka's consumers would raise COORDINATOR_LOAD_IN_PROGRESS from
    /// `poll()` (issue 22 item 9).
    pub async fn sync(&self, req: SyncParams) -> SyncResult {
        let group = req.group_id.clone();
        self.run(
            &group,
            |e| {
                (
                    while_loading(e, GroupError::RebalanceInProgress).code(),
                    bytes::Bytes::new(),
                )
            },
            |s, now| s.sync(req, now),
        )
        .await
    }

    /// Heartbeat. Accepted (NONE) while the group's partition loads, as Kafka does: the
    /// member keeps its assignment, and the loaded group starts its session then.
    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        let shard = match self.shard(group_id) {
            Ok(s) => s,
            Err(GroupError::CoordinatorLoadInProgress) => return 0,
            Err(e) => return e.code(),
        };
        let mut s = shard.lock();
        if !s.is_active() {
            return GroupError::NotCoordinator.code();
        }
        s.heartbeat(group_id, generation, member_id, instance_id, Now::current())
    }

    /// LeaveGroup: per-member error codes, or the group's error (NOT_COORDINATOR, say), which
    /// LeaveGroup v3+ carries at the top level.
    pub async fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<i16>, i16> {
        self.run(
            group_id,
            |e| Err(e.code()),
            |s, now| s.leave(group_id, members, now),
        )
        .await
    }

    /// OffsetCommit: answered once the commit is on every in-sync replica, so a coordinator
    /// failover keeps it.
    pub async fn commit(&self, req: CommitParams) -> CommitResults {
        let group = req.group_id.clone();
        let tps: Vec<TopicPartition> = req.offsets.iter().map(|o| o.0.clone()).collect();
        let rm = Arc::clone(&self.rm);
        let exists = move |tp: &TopicPartition| {
            rm.topic(&tp.topic)
                .is_some_and(|t| (0..t.meta.partitions).contains(&tp.partition))
        };
        self.run(
            &group,
            |e| tps.iter().map(|tp| (tp.clone(), e.code())).collect(),
            |s, now| s.commit(req, &exists, now),
        )
        .await
    }

    /// OffsetFetch: committed offsets of `group` (all when `partitions` is `None`).
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<TopicPartition>>,
    ) -> Result<Vec<FetchedOffset>, i16> {
        let shard = self.shard(group_id).map_err(|e| e.code())?;
        let s = shard.lock();
        if !s.is_active() {
            return Err(GroupError::NotCoordinator.code());
        }
        Ok(s.fetch_offsets(group_id, partitions))
    }

    /// OffsetDelete: (group error, per-partition errors).
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<TopicPartition>,
    ) -> (i16, CommitResults) {
        self.run(
            group_id,
            |e| (e.code(), Vec::new()),
            |s, _| s.delete_offsets(group_id, partitions),
        )
        .await
    }

    /// ListGroups over every loaded shard: (group id, protocol type, state).
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        let shards = self.active_shards();
        shards.iter().flat_map(|s| s.lock().list()).collect()
    }

    /// DescribeGroups for one group; `None` for an unknown group (reported as Dead).
    pub fn describe(&self, group_id: &str) -> Result<Option<GroupDescription>, i16> {
        let shard = self.shard(group_id).map_err(|e| e.code())?;
        let s = shard.lock();
        if !s.is_active() {
            return Err(GroupError::NotCoordinator.code());
        }
        Ok(s.describe(group_id))
    }

    /// DeleteGroups for one group: NON_EMPTY_GROUP while it has members.
    pub async fn delete(&self, group_id: &str) -> i16 {
        self.run(group_id, |e| e.code(), |s, _| s.delete_group(group_id))
            .await
    }

    /// Drives every shard's timers (session expiry, rebalance deadlines), one shard at a time,
    /// appending what they decide; nothing waits on those records.
    pub fn tick(&self) {
        for shard in self.active_shards() {
            let mut s = shard.lock();
            if !s.is_active() {
                continue;
            }
            let tp = TopicPartition::new(OFFSETS_TOPIC, s.partition());
            if let Ok(p) = self.rm.partition(&tp) {
                // What no waiting request applied (it timed out, or nothing waits on it).
                s.replicated_to(p.log.offsets().high_watermark.0);
            }
            let records = s.tick(Now::current());
            self.append_unawaited(&mut s, records);
        }
    }

    /// Topics were deleted (or recreated under a new id): every loaded shard writes the
    /// tombstones of the groups' committed offsets on them (Kafka's `onPartitionsDeleted`).
    /// Nothing waits on those records.
    pub fn delete_topic_offsets(&self, deleted: &dyn Fn(&str) -> bool) {
        for shard in self.active_shards() {
            let mut s = shard.lock();
            if !s.is_active() {
                continue;
            }
            let records = s.delete_topics(deleted);
            if !records.is_empty() {
                tracing::info!(
                    partition = s.partition(),
                    records = records.len(),
                    "removing the offsets of deleted topics"
                );
            }
            self.append_unawaited(&mut s, records);
        }
    }

    /// Appends records no request waits on (timers, topic deletions); they take effect once
    /// the ISR has them (a later tick).
    pub(super) fn append_unawaited(&self, s: &mut GroupShard, records: Vec<OffsetsRecord>) {
        if records.is_empty() {
            return;
        }
        match self.append(s.partition(), &records) {
            Ok(w) => {
                s.appended(records, w.info.last_offset.0 + 1);
                // With no follower to wait for, they are replicated already.
                s.replicated_to(w.partition.log.offsets().high_watermark.0);
            }
            Err(e) => {
                tracing::warn!(partition = s.partition(), error = %e, "could not persist group metadata")
            }
        }
    }
}
