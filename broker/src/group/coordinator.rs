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
//! Lifecycle: [`GroupCoordinator::load_partition`] replays a partition into a fresh shard
//! (requests meanwhile get COORDINATOR_LOAD_IN_PROGRESS; it runs on the metadata reconciler's
//! blocking task, not on the request path) and [`GroupCoordinator::unload_partition`] drops
//! it, answering its waiting requests NOT_COORDINATOR.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use parking_lot::{Mutex, RwLock};
use sluice_storage::record::{records_section, BatchBuilder, RecordIter};
use sluice_storage::{AppendOrigin, Offset, ReadOptions, TopicPartition};

use super::membership::{JoinParams, SyncParams};
use super::offsets::{commit_error, CommitParams, CommitResults};
use super::records::{partition_for, OffsetsRecord};
use super::shard::{Effect, FetchedOffset, GroupDescription, GroupShard, Now, Pending};
use super::state::{JoinResult, SyncResult};
use super::{GroupConfig, OFFSETS_TOPIC};
use crate::error::BrokerError;
use crate::replica_manager::{Appended, Partition, ReplicaManager};

/// How long an answer waits for its records to reach the ISR (`offsets.commit.timeout.ms`).
const OFFSETS_COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// `e`, or `instead` if `e` is COORDINATOR_LOAD_IN_PROGRESS.
fn while_loading(e: ResponseError, instead: ResponseError) -> ResponseError {
    match e {
        ResponseError::CoordinatorLoadInProgress => instead,
        other => other,
    }
}

/// The coordinator of every group on this node.
pub struct GroupCoordinator {
    rm: Arc<ReplicaManager>,
    config: GroupConfig,
    /// The loaded shards by offsets partition. Never locked while a shard is.
    shards: RwLock<HashMap<i32, Arc<Mutex<GroupShard>>>>,
}

impl GroupCoordinator {
    /// A coordinator with no groups yet: it takes on the groups of each `__consumer_offsets`
    /// partition this node comes to lead ([`GroupCoordinator::load_partition`]).
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
    /// partition, COORDINATOR_LOAD_IN_PROGRESS while its groups are being loaded.
    fn shard(&self, group: &str) -> Result<Arc<Mutex<GroupShard>>, ResponseError> {
        let p = self.partition_of(group);
        let tp = TopicPartition::new(OFFSETS_TOPIC, p);
        if self.rm.leader_partition(&tp, -1).is_err() {
            return Err(ResponseError::NotCoordinator);
        }
        self.shards
            .read()
            .get(&p)
            .cloned()
            .ok_or(ResponseError::CoordinatorLoadInProgress)
    }

    /// Runs `op` on `group`'s shard, appends its records, waits until the ISR has them and
    /// answers; `fail` builds the answer for an error.
    async fn run<T, F, O>(&self, group: &str, fail: F, op: O) -> T
    where
        F: Fn(ResponseError) -> T,
        O: FnOnce(&mut GroupShard, Now) -> Effect<T>,
    {
        let shard = match self.shard(group) {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
        let (written, effect) = {
            let mut s = shard.lock();
            if !s.is_active() {
                return fail(ResponseError::NotCoordinator);
            }
            let effect = op(&mut s, Now::current());
            if effect.records.is_empty() {
                (None, effect)
            } else {
                let written = self.append(s.partition(), &effect.records);
                if written.is_ok() {
                    s.applied(&effect.records);
                }
                (Some(written), effect)
            }
        };
        let Effect {
            deferred, answer, ..
        } = effect;
        let outcome = match written {
            None => Ok(()),
            Some(Ok(w)) => w.replicated(OFFSETS_COMMIT_TIMEOUT).await,
            Some(Err(e)) => Err(e),
        };
        match outcome {
            Ok(()) => deferred.into_iter().for_each(|d| d.send()),
            Err(e) => {
                tracing::warn!(group, error = %e, "group coordinator records not written");
                let code = commit_error(&e);
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
                .unwrap_or_else(|_| fail(ResponseError::NotCoordinator)),
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

    /// Gives up the groups of offsets partition `p` (another broker leads it now): waiting
    /// requests are answered NOT_COORDINATOR and members find the new coordinator.
    pub fn unload_partition(&self, p: i32) {
        let shard = self.shards.write().remove(&p);
        if let Some(shard) = shard {
            let mut s = shard.lock();
            let groups = s.groups.len();
            s.unload();
            tracing::info!(partition = p, groups, "gave up consumer groups");
        }
    }

    /// Takes on the groups of an offsets partition this node now leads: replays its log into
    /// a fresh shard, which then takes requests.
    pub fn load_partition(&self, part: &Partition) -> Result<(), BrokerError> {
        let p = part.tp.partition;
        self.unload_partition(p);
        let mut shard = GroupShard::new(p, self.config.clone());
        let now = Now::current();
        let mut at = part.log.offsets().log_start;
        let end = part.log.offsets().log_end;
        let mut loaded = 0usize;
        while at < end {
            let data = part.log.read(&ReadOptions {
                from: at,
                max_bytes: 8 << 20,
                max_offset: None,
                min_one_batch: true,
            })?;
            if data.records.is_empty() {
                break;
            }
            for (pos, h) in sluice_storage::batch::BatchIter::new(&data.records) {
                at = Offset(h.next_offset());
                if h.is_control() {
                    continue;
                }
                let (_, body) = records_section(&data.records[pos..pos + h.size()], 64 << 20)
                    .map_err(|e| BrokerError::Metadata(format!("{OFFSETS_TOPIC}: {e}")))?;
                for r in RecordIter::new(&body, h.record_count.max(0) as usize) {
                    let r =
                        r.map_err(|e| BrokerError::Metadata(format!("{OFFSETS_TOPIC}: {e}")))?;
                    let Some(key) = r.key else { continue };
                    if let Some(record) = OffsetsRecord::decode(key, r.value) {
                        loaded += 1;
                        shard.replay(record, now);
                    }
                }
            }
        }
        let groups = shard.groups.len();
        self.shards.write().insert(p, Arc::new(Mutex::new(shard)));
        tracing::info!(
            partition = p,
            records = loaded,
            groups,
            "took on consumer groups"
        );
        Ok(())
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
                    while_loading(e, ResponseError::RebalanceInProgress).code(),
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
            Err(ResponseError::CoordinatorLoadInProgress) => return 0,
            Err(e) => return e.code(),
        };
        let mut s = shard.lock();
        if !s.is_active() {
            return ResponseError::NotCoordinator.code();
        }
        s.heartbeat(group_id, generation, member_id, instance_id, Now::current())
    }

    /// LeaveGroup: per-member error codes.
    pub async fn leave(&self, group_id: &str, members: &[(String, Option<String>)]) -> Vec<i16> {
        let n = members.len().max(1);
        self.run(
            group_id,
            |e| vec![e.code(); n],
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
            return Err(ResponseError::NotCoordinator.code());
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
        let shards: Vec<_> = self.shards.read().values().cloned().collect();
        shards.iter().flat_map(|s| s.lock().list()).collect()
    }

    /// DescribeGroups for one group; `None` for an unknown group (reported as Dead).
    pub fn describe(&self, group_id: &str) -> Result<Option<GroupDescription>, i16> {
        let shard = self.shard(group_id).map_err(|e| e.code())?;
        let s = shard.lock();
        if !s.is_active() {
            return Err(ResponseError::NotCoordinator.code());
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
        let shards: Vec<_> = self.shards.read().values().cloned().collect();
        for shard in shards {
            let mut s = shard.lock();
            if !s.is_active() {
                continue;
            }
            let records = s.tick(Now::current());
            self.append_unawaited(&mut s, &records);
        }
    }

    /// Topics were deleted (or recreated under a new id): every loaded shard writes the
    /// tombstones of the groups' committed offsets on them (Kafka's `onPartitionsDeleted`).
    /// Nothing waits on those records.
    pub fn delete_topic_offsets(&self, deleted: &dyn Fn(&str) -> bool) {
        let shards: Vec<_> = self.shards.read().values().cloned().collect();
        for shard in shards {
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
            self.append_unawaited(&mut s, &records);
        }
    }

    /// Appends and applies records no request waits on (timers, topic deletions).
    fn append_unawaited(&self, s: &mut GroupShard, records: &[OffsetsRecord]) {
        if records.is_empty() {
            return;
        }
        match self.append(s.partition(), records) {
            Ok(_) => s.applied(records),
            Err(e) => {
                tracing::warn!(partition = s.partition(), error = %e, "could not persist group metadata")
            }
        }
    }
}
