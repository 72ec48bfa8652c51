//! `GroupShard`: the groups and committed offsets of one `__consumer_offsets` partition, as a
//! state machine in the shape of Kafka's `CoordinatorShard` (KIP-848's coordinator runtime).
//!
//! Each operation takes a request in domain terms and the time, changes the shard's state and
//! returns an [`Effect`]: the records to append to the partition and the answer, which the
//! runtime (`GroupCoordinator`) releases only once the records are on the ISR. The shard owns
//! plain structs (no locks inside) and does no I/O, so it is tested without log dirs or time
//! passing. Loading a partition is `replay` of its records into a fresh shard. On the live
//! path what the shard appends takes effect once the ISR has it ([`GroupShard::appended`],
//! then [`GroupShard::replicated_to`]), in the log's order, as Kafka's cache of committed
//! offsets is filled only from replicated appends: an OffsetFetch never shows a commit a
//! coordinator move could lose, and a slow commit never overwrites a later one.
//!
//! Membership operations are in `membership.rs`, offset operations in `offsets.rs`.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::error::GroupError;
use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::{Duration, Instant};

use super::records::{check_len, CommittedOffset, OffsetsRecord};
use super::state::{Group, GroupState, JoinResult, SyncResult};
use super::GroupConfig;

/// A group's committed offsets by (topic, partition).
pub(super) type GroupOffsets = BTreeMap<(String, i32), CommittedOffset>;

/// The time an operation runs at: the monotonic clock for timers, the wall clock for what is
/// written (commit timestamps).
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Monotonic time.
    pub at: Instant,
    /// Milliseconds since the Unix epoch.
    pub ms: i64,
}

impl Now {
    /// The current time.
    pub fn current() -> Now {
        Now {
            at: Instant::now(),
            ms: crate::replica_manager::now_ms(),
        }
    }
}

/// An answer now, or later.
pub enum Pending<T> {
    /// Ready (sent once the effect's records are replicated).
    Now(T),
    /// Resolved when the group moves on.
    Later(oneshot::Receiver<T>),
}

/// An answer to a request that is waiting on the group, held back until the records of the
/// same effect are on the ISR.
pub enum Delivery {
    /// A JoinGroup's answer.
    Join(oneshot::Sender<JoinResult>, JoinResult),
    /// A SyncGroup's answer.
    Sync(oneshot::Sender<SyncResult>, SyncResult),
}

impl Delivery {
    /// Sends the answer. A closed channel only means the requester went away.
    pub fn send(self) {
        match self {
            Delivery::Join(tx, r) => drop(tx.send(r)),
            Delivery::Sync(tx, r) => drop(tx.send(r)),
        }
    }

    /// Sends `e` instead: the records could not be written or replicated.
    pub fn fail(self, e: GroupError) {
        match self {
            Delivery::Join(tx, r) => drop(tx.send(JoinResult::error(e, &r.member_id))),
            Delivery::Sync(tx, _) => drop(tx.send((e.code(), Bytes::new()))),
        }
    }
}

/// What an operation decided: records to append, answers held until they are replicated, and
/// the requester's answer.
pub struct Effect<T> {
    /// Records for the shard's partition, in order.
    pub records: Vec<OffsetsRecord>,
    /// Answers to other waiting requests, sent once `records` are replicated.
    pub deferred: Vec<Delivery>,
    /// This request's answer.
    pub answer: Pending<T>,
}

impl<T> Effect<T> {
    /// An answer with nothing to write.
    pub fn now(answer: T) -> Effect<T> {
        Effect {
            records: Vec::new(),
            deferred: Vec::new(),
            answer: Pending::Now(answer),
        }
    }
}

/// A committed offset as OffsetFetch returns it.
pub type FetchedOffset = (sluice_storage::TopicPartition, i64, i32, Option<String>);

/// What DescribeGroups shows of a group.
pub struct GroupDescription {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    /// (member id, instance id, client id, client host, metadata, assignment)
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

/// The groups of one `__consumer_offsets` partition.
pub struct GroupShard {
    pub(super) partition: i32,
    pub(super) config: GroupConfig,
    pub(super) groups: HashMap<String, Group>,
    pub(super) offsets: HashMap<String, GroupOffsets>,
    /// False once unloaded: a request that found the shard before then is NOT_COORDINATOR.
    pub(super) active: bool,
    /// The partition's log end after the last record this shard replayed or appended.
    pub(super) log_end: i64,
    /// Appended records the ISR may not have yet, with the log end after each append, oldest
    /// first: applied in this order once the high watermark passes them.
    unreplicated: VecDeque<(i64, Vec<OffsetsRecord>)>,
    /// When offsets next expire (`offsets.retention.check.interval.ms`); set on the first tick.
    next_retention_check: Option<Instant>,
}

impl GroupShard {
    /// An empty shard for offsets partition `partition`.
    pub fn new(partition: i32, config: GroupConfig) -> GroupShard {
        GroupShard {
            partition,
            config,
            groups: HashMap::new(),
            offsets: HashMap::new(),
            active: true,
            log_end: 0,
            unreplicated: VecDeque::new(),
            next_retention_check: None,
        }
    }

    /// The offsets partition this shard owns.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Whether requests may still use this shard.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Loads one record of the partition (oldest first), as Kafka's loader does: the last
    /// group record and the last commit of each partition win; tombstones delete.
    pub fn replay(&mut self, record: OffsetsRecord, now: Now) {
        match record {
            OffsetsRecord::Group {
                group,
                value: Some(v),
            } => {
                let g = Group::from_value(&group, v, now.at);
                self.groups.insert(group, g);
            }
            other => self.apply(other),
        }
    }

    /// Records this shard decided were appended, the log ending at `end`: they take effect
    /// once the high watermark reaches `end` ([`GroupShard::replicated_to`]).
    pub fn appended(&mut self, records: Vec<OffsetsRecord>, end: i64) {
        self.log_end = end;
        self.unreplicated.push_back((end, records));
    }

    /// The ISR has the log up to `high_watermark`: the appends it covers take effect, oldest
    /// first (offsets and deletions; group metadata values are already the live state).
    pub fn replicated_to(&mut self, high_watermark: i64) {
        while self
            .unreplicated
            .front()
            .is_some_and(|(end, _)| *end <= high_watermark)
        {
            let Some((_, records)) = self.unreplicated.pop_front() else {
                break;
            };
            for r in records {
                if !matches!(r, OffsetsRecord::Group { value: Some(_), .. }) {
                    self.apply(r);
                }
            }
        }
    }

    /// Whether records of `group` were appended and are not yet replicated.
    pub(super) fn unreplicated_for(&self, group: &str) -> bool {
        self.unreplicated
            .iter()
            .flat_map(|(_, rs)| rs)
            .any(|r| match r {
                OffsetsRecord::Offset { group: g, .. } | OffsetsRecord::Group { group: g, .. } => {
                    g == group
                }
            })
    }

    fn apply(&mut self, record: OffsetsRecord) {
        match record {
            OffsetsRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => {
                // Kafka lists a group known only by its offsets as Empty.
                self.groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(&group));
                let g = self.offsets.entry(group).or_default();
                match value {
                    Some(v) => g.insert((topic, partition), v),
                    None => g.remove(&(topic, partition)),
                };
            }
            OffsetsRecord::Group { group, value: None } => {
                // Members that joined after the deletion was decided (live path) keep the
                // group they recreated.
                if self.groups.get(&group).is_none_or(|g| g.members.is_empty()) {
                    self.groups.remove(&group);
                }
                self.offsets.remove(&group);
            }
            OffsetsRecord::Group {
                group,
                value: Some(_),
            } => {
                self.groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(&group));
            }
        }
    }

    /// Another broker leads the partition now: every waiting request is answered
    /// NOT_COORDINATOR and the shard takes no more requests.
    pub fn unload(&mut self) {
        self.active = false;
        for g in self.groups.values_mut() {
            g.fail_waiters(GroupError::NotCoordinator);
        }
        self.groups.clear();
        self.offsets.clear();
    }

    /// The record of `g`'s current metadata.
    pub(super) fn group_record(g: &Group, now: Now) -> OffsetsRecord {
        OffsetsRecord::Group {
            group: g.id.clone(),
            value: Some(g.to_value(now.ms)),
        }
    }

    /// Timers: session expiry, rebalance deadlines and offset expiry. Returns the records to
    /// append: the metadata of groups left empty, the tombstones of expired offsets and groups.
    pub fn tick(&mut self, now: Now) -> Vec<OffsetsRecord> {
        let mut records = Vec::new();
        let interval = Duration::from_millis(self.config.offsets_retention_check_interval_ms);
        match self.next_retention_check {
            None => self.next_retention_check = Some(now.at + interval),
            Some(at) if now.at >= at => {
                self.next_retention_check = Some(now.at + interval);
                let expired = self.expire_offsets(now.ms);
                if !expired.is_empty() {
                    tracing::info!(
                        partition = self.partition,
                        records = expired.len(),
                        "expiring committed offsets and empty groups"
                    );
                }
                records.extend(expired);
            }
            Some(_) => {}
        }
        for g in self.groups.values_mut() {
            let was_empty = g.members.is_empty();
            let expired: Vec<String> = g
                .members
                .values()
                .filter(|m| {
                    m.join_waiter.is_none()
                        && now.at.saturating_duration_since(m.last_seen)
                            > Duration::from_millis(m.session_timeout_ms.max(0) as u64)
                })
                .map(|m| m.id.clone())
                .collect();
            for id in expired {
                tracing::info!(group = %g.id, member = %id, "member session expired");
                g.remove_member(&id, now.at);
            }
            g.pending.retain(|id, expires| {
                let keep = now.at <= *expires;
                if !keep {
                    tracing::info!(group = %g.id, member = %id, "a member id handed out was never used");
                }
                keep
            });
            // The join completes at its deadline, or as soon as every member left has
            // rejoined: one that stopped heartbeating is not waited for (a member loaded
            // from the log whose process died with the old coordinator, say).
            let due = g.state == GroupState::PreparingRebalance
                && (g.rebalance_deadline.is_some_and(|d| now.at >= d)
                    || (g.all_joined() && !g.initial_delay));
            if due {
                g.complete_join(now.at);
            }
            if !was_empty && g.members.is_empty() {
                g.empty_since_ms = Some(now.ms);
                records.push(Self::group_record(g, now));
            }
        }
        records
    }

    /// ListGroups: (group id, protocol type, state).
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        self.groups
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
    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let g = self.groups.get(group_id)?;
        let protocol = g.protocol.clone().unwrap_or_default();
        let members = if g.state == GroupState::Empty {
            Vec::new()
        } else {
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
        };
        Some(GroupDescription {
            state: g.state.name(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol,
            members,
        })
    }

    /// DeleteGroups for one group: NON_EMPTY_GROUP while it has members; otherwise the
    /// tombstones of its offsets and metadata, applied once replicated.
    pub fn delete_group(&mut self, group_id: &str) -> Effect<i16> {
        if !self.groups.contains_key(group_id) && !self.offsets.contains_key(group_id) {
            return Effect::now(GroupError::GroupIdNotFound.code());
        }
        if self
            .groups
            .get(group_id)
            .is_some_and(|g| !g.members.is_empty())
        {
            return Effect::now(GroupError::NonEmptyGroup.code());
        }
        let mut records: Vec<OffsetsRecord> = self
            .offsets
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
        Effect {
            records,
            deferred: Vec::new(),
            answer: Pending::Now(0),
        }
    }
}

/// INVALID_GROUP_ID for a group id Kafka refuses (empty) or the offsets topic's schema cannot
/// hold (issue 12, defect 5).
pub(super) fn check_group_id(group_id: &str) -> Result<(), GroupError> {
    if group_id.is_empty() || check_len("group id", group_id).is_err() {
        return Err(GroupError::InvalidGroupId);
    }
    Ok(())
}
