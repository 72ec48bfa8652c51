//! `GroupCoordinator`: classic consumer groups (JoinGroup, SyncGroup, Heartbeat, LeaveGroup)
//! and committed offsets, persisted in the compacted internal topic `__consumer_offsets`.
//!
//! This node coordinates the groups whose `__consumer_offsets` partition it leads. Offsets
//! and group identities are written as Kafka-format records to that partition before a
//! commit is acknowledged, and replayed when this node becomes its leader. Membership is not
//! persisted: after a coordinator change members get UNKNOWN_MEMBER_ID or NOT_COORDINATOR on
//! their next request and rejoin.
//! Timers (session expiry, rebalance deadlines, the initial rebalance delay) run from `tick`.

pub mod offsets;
pub mod records;
pub mod state;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use parking_lot::Mutex;
use sluice_storage::record::{records_section, BatchBuilder, RecordIter};
use sluice_storage::{AppendOrigin, Offset, ReadOptions, TopicPartition};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::error::BrokerError;
use crate::replica_manager::{Appended, Partition, ReplicaManager};
use records::{partition_for, CommittedOffset, GroupValue, OffsetsRecord};
use state::{Group, GroupState, JoinResult, Member, SyncResult};

/// The internal offsets topic.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Group coordinator settings, Kafka's keys and defaults.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `offsets.topic.num.partitions` (50).
    pub offsets_partitions: i32,
    /// `group.initial.rebalance.delay.ms` (3000).
    pub initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms` (6000).
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms` (1800000).
    pub max_session_timeout_ms: i32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            offsets_partitions: 50,
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
        }
    }
}

/// A JoinGroup request, in domain terms.
#[derive(Debug, Clone)]
pub struct JoinParams {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// KIP-394 (JoinGroup v4+): a new member first gets its id with MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

/// An answer now, or later.
pub enum Pending<T> {
    /// Ready.
    Now(T),
    /// Resolved when the group moves on.
    Later(oneshot::Receiver<T>),
}

/// A group's committed offsets by (topic, partition).
type GroupOffsets = BTreeMap<(String, i32), CommittedOffset>;

/// A committed offset as OffsetFetch returns it.
pub type FetchedOffset = (TopicPartition, i64, i32, Option<String>);

/// What DescribeGroups shows of a group.
pub struct GroupDescription {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    /// (member id, instance id, client id, client host, metadata, assignment)
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

/// The coordinator of every group on this node.
pub struct GroupCoordinator {
    rm: Arc<ReplicaManager>,
    config: GroupConfig,
    groups: Mutex<HashMap<String, Group>>,
    offsets: Mutex<HashMap<String, GroupOffsets>>,
    /// Offsets partitions whose groups are loaded (this node leads them).
    loaded: Mutex<HashSet<i32>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl GroupCoordinator {
    /// A coordinator with no groups yet: it takes on the groups of each `__consumer_offsets`
    /// partition this node comes to lead ([`GroupCoordinator::load_partition`]).
    pub fn open(rm: Arc<ReplicaManager>, config: GroupConfig) -> GroupCoordinator {
        GroupCoordinator {
            rm,
            config,
            groups: Mutex::new(HashMap::new()),
            offsets: Mutex::new(HashMap::new()),
            loaded: Mutex::new(HashSet::new()),
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

    /// Whether this node coordinates `group`: NOT_COORDINATOR if another broker leads its
    /// offsets partition, COORDINATOR_LOAD_IN_PROGRESS while its groups are being loaded.
    pub fn owns(&self, group: &str) -> Result<(), ResponseError> {
        let p = self.partition_of(group);
        let tp = TopicPartition::new(OFFSETS_TOPIC, p);
        if self.rm.leader_partition(&tp, -1).is_err() {
            return Err(ResponseError::NotCoordinator);
        }
        if !self.loaded.lock().contains(&p) {
            return Err(ResponseError::CoordinatorLoadInProgress);
        }
        Ok(())
    }

    /// Gives up the groups of offsets partition `p` (another broker leads it now). Their
    /// members find the new coordinator and rejoin.
    pub fn unload_partition(&self, p: i32) {
        if !self.loaded.lock().remove(&p) {
            return;
        }
        let n = self.offsets_partitions();
        let mut groups = self.groups.lock();
        let before = groups.len();
        groups.retain(|id, _| partition_for(id, n) != p);
        self.offsets
            .lock()
            .retain(|id, _| partition_for(id, n) != p);
        tracing::info!(
            partition = p,
            groups = before - groups.len(),
            "gave up consumer groups"
        );
    }

    /// Takes on the groups of an offsets partition this node now leads, replaying its log.
    pub fn load_partition(&self, part: &Partition) -> Result<(), BrokerError> {
        let n = self.offsets_partitions();
        let mut groups = self.groups.lock();
        let mut offsets = self.offsets.lock();
        groups.retain(|id, _| partition_for(id, n) != part.tp.partition);
        offsets.retain(|id, _| partition_for(id, n) != part.tp.partition);
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
                    loaded += 1;
                    match OffsetsRecord::decode(key, r.value) {
                        Some(OffsetsRecord::Offset {
                            group,
                            topic,
                            partition,
                            value,
                        }) => {
                            let g = offsets.entry(group).or_default();
                            match value {
                                Some(v) => g.insert((topic, partition), v),
                                None => g.remove(&(topic, partition)),
                            };
                        }
                        Some(OffsetsRecord::Group {
                            group,
                            value: Some(v),
                        }) => {
                            let g = groups
                                .entry(group.clone())
                                .or_insert_with(|| Group::new(&group));
                            g.generation = v.generation;
                            g.protocol_type = Some(v.protocol_type);
                        }
                        Some(OffsetsRecord::Group { group, value: None }) => {
                            groups.remove(&group);
                            offsets.remove(&group);
                        }
                        None => {}
                    }
                }
            }
        }
        self.loaded.lock().insert(part.tp.partition);
        tracing::info!(
            partition = part.tp.partition,
            records = loaded,
            "took on consumer groups"
        );
        Ok(())
    }

    /// Appends records for `group` to its offsets partition (as its leader); returns where
    /// they end, for callers that wait until they are replicated.
    fn persist(&self, group: &str, records: &[OffsetsRecord]) -> Result<Appended, BrokerError> {
        let tp = TopicPartition::new(
            OFFSETS_TOPIC,
            partition_for(group, self.offsets_partitions()),
        );
        let ts = now_ms();
        let mut b = BatchBuilder::new();
        for r in records {
            let (k, v) = r.encode();
            b = b.record(Some(&k), v.as_deref(), ts);
        }
        self.rm
            .append(&tp, &b.build(), AppendOrigin::Coordinator, false)
    }

    fn group_value(g: &Group) -> OffsetsRecord {
        OffsetsRecord::Group {
            group: g.id.clone(),
            value: Some(GroupValue {
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                generation: g.generation,
                protocol: g.protocol.clone(),
                leader: g.leader.clone(),
            }),
        }
    }

    /// JoinGroup.
    pub fn join(&self, p: JoinParams) -> Pending<JoinResult> {
        if let Err(e) = self.owns(&p.group_id) {
            return Pending::Now(JoinResult::error(e, &p.member_id));
        }
        let now = Instant::now();
        if p.session_timeout_ms < self.config.min_session_timeout_ms
            || p.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return Pending::Now(JoinResult::error(
                ResponseError::InvalidSessionTimeout,
                &p.member_id,
            ));
        }
        if p.protocols.is_empty() || p.protocol_type.is_empty() {
            return Pending::Now(JoinResult::error(
                ResponseError::InconsistentGroupProtocol,
                &p.member_id,
            ));
        }
        let mut groups = self.groups.lock();
        let g = groups
            .entry(p.group_id.clone())
            .or_insert_with(|| Group::new(&p.group_id));
        if !g.members.is_empty()
            && g.protocol_type
                .as_deref()
                .is_some_and(|t| t != p.protocol_type)
        {
            return Pending::Now(JoinResult::error(
                ResponseError::InconsistentGroupProtocol,
                &p.member_id,
            ));
        }
        if !g.members.is_empty()
            && !p.protocols.iter().any(|(n, _)| {
                g.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(q, _)| q == n))
            })
        {
            return Pending::Now(JoinResult::error(
                ResponseError::InconsistentGroupProtocol,
                &p.member_id,
            ));
        }
        let mut member_id = p.member_id.clone();
        if member_id.is_empty() {
            let base = p.instance_id.clone().unwrap_or_else(|| {
                if p.client_id.is_empty() {
                    "member".into()
                } else {
                    p.client_id.clone()
                }
            });
            member_id = format!("{base}-{}", uuid::Uuid::new_v4());
            if let Some(inst) = &p.instance_id {
                // KIP-345: a static member rejoining with a new id replaces its old self.
                let old: Vec<String> = g
                    .members
                    .values()
                    .filter(|m| m.instance_id.as_ref() == Some(inst))
                    .map(|m| m.id.clone())
                    .collect();
                for o in old {
                    if let Some(m) = g.members.remove(&o) {
                        if let Some(w) = m.join_waiter {
                            let _ = w.send(JoinResult::error(ResponseError::FencedInstanceId, &o));
                        }
                    }
                    if g.leader.as_deref() == Some(o.as_str()) {
                        g.leader = None;
                    }
                }
            } else if p.require_known_member_id {
                g.pending.insert(member_id.clone());
                return Pending::Now(JoinResult::error(
                    ResponseError::MemberIdRequired,
                    &member_id,
                ));
            }
        } else if !g.members.contains_key(&member_id) && !g.pending.remove(&member_id) {
            return Pending::Now(JoinResult::error(
                ResponseError::UnknownMemberId,
                &member_id,
            ));
        } else if let (Some(inst), Some(m)) = (&p.instance_id, g.members.get(&member_id)) {
            if m.instance_id.as_ref() != Some(inst) {
                return Pending::Now(JoinResult::error(
                    ResponseError::FencedInstanceId,
                    &member_id,
                ));
            }
        }
        let (tx, rx) = oneshot::channel();
        let was_empty = g.members.is_empty() && g.state == GroupState::Empty;
        let member = g
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                id: member_id.clone(),
                instance_id: p.instance_id.clone(),
                client_id: p.client_id.clone(),
                client_host: p.client_host.clone(),
                session_timeout_ms: p.session_timeout_ms,
                rebalance_timeout_ms: p.rebalance_timeout_ms,
                protocols: Vec::new(),
                assignment: Bytes::new(),
                last_seen: now,
                join_waiter: None,
                sync_waiter: None,
            });
        member.protocols = p.protocols.clone();
        member.session_timeout_ms = p.session_timeout_ms;
        member.rebalance_timeout_ms = p.rebalance_timeout_ms;
        member.last_seen = now;
        if let Some(old) = member.join_waiter.replace(tx) {
            let _ = old.send(JoinResult::error(
                ResponseError::UnknownMemberId,
                &member_id,
            ));
        }
        g.protocol_type = Some(p.protocol_type.clone());
        if g.state != GroupState::PreparingRebalance {
            // An empty group waits group.initial.rebalance.delay.ms for more members (KIP-134)
            // before its first rebalance completes; a running one waits for its members.
            let delay = if was_empty {
                self.config
                    .initial_rebalance_delay_ms
                    .min(p.rebalance_timeout_ms.max(0) as u64)
            } else {
                0
            };
            let wait = if was_empty {
                delay
            } else {
                p.rebalance_timeout_ms.max(0) as u64
            };
            g.prepare_rebalance(now + Duration::from_millis(wait));
            g.initial_delay = delay > 0;
        }
        if g.all_joined() && !g.initial_delay {
            g.complete_join();
            let record = Self::group_value(g);
            drop(groups);
            if let Err(e) = self.persist(&p.group_id, &[record]) {
                tracing::warn!(group = %p.group_id, error = %e, "could not persist group metadata");
            }
        }
        Pending::Later(rx)
    }

    /// SyncGroup.
    pub fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> Pending<SyncResult> {
        if let Err(e) = self.owns(group_id) {
            return Pending::Now((e.code(), Bytes::new()));
        }
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return Pending::Now((ResponseError::UnknownMemberId.code(), Bytes::new()));
        };
        if !g.members.contains_key(member_id) {
            return Pending::Now((ResponseError::UnknownMemberId.code(), Bytes::new()));
        }
        if generation != g.generation {
            return Pending::Now((ResponseError::IllegalGeneration.code(), Bytes::new()));
        }
        match g.state {
            GroupState::Empty | GroupState::PreparingRebalance => {
                Pending::Now((ResponseError::RebalanceInProgress.code(), Bytes::new()))
            }
            GroupState::Stable => Pending::Now((
                0,
                g.members
                    .get(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default(),
            )),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = g.members.get_mut(member_id) {
                    m.last_seen = Instant::now();
                    m.sync_waiter = Some(tx);
                }
                if g.leader.as_deref() == Some(member_id) {
                    let assigned: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in g.members.values_mut() {
                        m.assignment = assigned.get(&m.id).cloned().unwrap_or_default();
                        if let Some(w) = m.sync_waiter.take() {
                            let _ = w.send((0, m.assignment.clone()));
                        }
                    }
                    g.state = GroupState::Stable;
                }
                Pending::Later(rx)
            }
        }
    }

    /// Heartbeat.
    pub fn heartbeat(&self, group_id: &str, generation: i32, member_id: &str) -> i16 {
        if let Err(e) = self.owns(group_id) {
            return e.code();
        }
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return ResponseError::UnknownMemberId.code();
        };
        let state = g.state;
        let current = g.generation;
        let Some(m) = g.members.get_mut(member_id) else {
            return ResponseError::UnknownMemberId.code();
        };
        m.last_seen = Instant::now();
        match state {
            GroupState::PreparingRebalance => ResponseError::RebalanceInProgress.code(),
            _ if generation != current => ResponseError::IllegalGeneration.code(),
            _ => 0,
        }
    }

    /// LeaveGroup: per-member error codes.
    pub fn leave(&self, group_id: &str, members: &[(String, Option<String>)]) -> Vec<i16> {
        if let Err(e) = self.owns(group_id) {
            return vec![e.code(); members.len().max(1)];
        }
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(group_id) else {
            return members
                .iter()
                .map(|_| ResponseError::UnknownMemberId.code())
                .collect();
        };
        let now = Instant::now();
        members
            .iter()
            .map(|(id, inst)| {
                let id = if id.is_empty() {
                    match inst.as_ref().and_then(|i| {
                        g.members
                            .values()
                            .find(|m| m.instance_id.as_ref() == Some(i))
                    }) {
                        Some(m) => m.id.clone(),
                        None => return ResponseError::UnknownMemberId.code(),
                    }
                } else {
                    id.clone()
                };
                if !g.members.contains_key(&id) {
                    return ResponseError::UnknownMemberId.code();
                }
                g.remove_member(&id, now);
                if g.state == GroupState::PreparingRebalance && g.all_joined() {
                    g.complete_join();
                }
                0
            })
            .collect()
    }

    /// ListGroups: (group id, protocol type, state).
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        let groups = self.groups.lock();
        groups
            .values()
            .map(|g| {
                (
                    g.id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state.name(),
                )
            })
            .collect()
    }

    /// DescribeGroups for one group; `None` for an unknown group (reported as Dead).
    pub fn describe(&self, group_id: &str) -> Result<Option<GroupDescription>, i16> {
        self.owns(group_id).map_err(|e| e.code())?;
        Ok(self.describe_owned(group_id))
    }

    fn describe_owned(&self, group_id: &str) -> Option<GroupDescription> {
        let groups = self.groups.lock();
        let g = groups.get(group_id)?;
        let protocol = g.protocol.clone().unwrap_or_default();
        let members = if g.state == GroupState::Stable
            || g.state == GroupState::CompletingRebalance
            || g.state == GroupState::PreparingRebalance
        {
            g.members
                .values()
                .map(|m| {
                    (
                        m.id.clone(),
                        m.instance_id.clone(),
                        m.client_id.clone(),
                        m.client_host.clone(),
                        m.metadata_for(&protocol),
                        m.assignment.clone(),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        Some(GroupDescription {
            state: g.state.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol,
            members,
        })
    }

    /// DeleteGroups for one group: NON_EMPTY_GROUP while it has members.
    pub fn delete(&self, group_id: &str) -> i16 {
        if let Err(e) = self.owns(group_id) {
            return e.code();
        }
        let mut groups = self.groups.lock();
        let known = groups.contains_key(group_id) || self.offsets.lock().contains_key(group_id);
        if !known {
            return ResponseError::GroupIdNotFound.code();
        }
        if groups.get(group_id).is_some_and(|g| !g.members.is_empty()) {
            return ResponseError::NonEmptyGroup.code();
        }
        let mut records: Vec<OffsetsRecord> = self
            .offsets
            .lock()
            .get(group_id)
            .map(|o| {
                o.keys()
                    .map(|(t, p)| OffsetsRecord::Offset {
                        group: group_id.to_string(),
                        topic: t.clone(),
                        partition: *p,
                        value: None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        records.push(OffsetsRecord::Group {
            group: group_id.to_string(),
            value: None,
        });
        if let Err(e) = self.persist(group_id, &records) {
            return crate::error_map::code(&e);
        }
        groups.remove(group_id);
        self.offsets.lock().remove(group_id);
        0
    }

    /// Drives timers: rebalance deadlines and session expiry.
    pub fn tick(&self, now: Instant) {
        let mut persist = Vec::new();
        {
            let mut groups = self.groups.lock();
            for g in groups.values_mut() {
                let expired: Vec<String> = g
                    .members
                    .values()
                    .filter(|m| {
                        m.join_waiter.is_none()
                            && now.duration_since(m.last_seen)
                                > Duration::from_millis(m.session_timeout_ms.max(0) as u64)
                    })
                    .map(|m| m.id.clone())
                    .collect();
                for id in expired {
                    tracing::info!(group = %g.id, member = %id, "member session expired");
                    g.remove_member(&id, now);
                }
                let due = g.state == GroupState::PreparingRebalance
                    && g.rebalance_deadline.is_some_and(|d| now >= d);
                if due {
                    g.complete_join();
                    persist.push((g.id.clone(), Self::group_value(g)));
                }
            }
        }
        for (group, record) in persist {
            if let Err(e) = self.persist(&group, &[record]) {
                tracing::warn!(%group, error = %e, "could not persist group metadata");
            }
        }
    }
}
