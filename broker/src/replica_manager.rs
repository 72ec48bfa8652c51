//! `ReplicaManager`: the partitions this node hosts, their logs and replica roles, and the
//! topic catalogue as the metadata image last said.
//!
//! An engine: it takes and returns domain types (`TopicPartition`, `Offset`, record bytes,
//! `BrokerError`), never protocol structs. Topics change only through
//! [`ReplicaManager::apply_image`], from committed metadata; the data path (append, read,
//! follower progress, the high watermark) is here.
//!
//! Over 600 lines because `Partition` (one partition's replica state, leader and follower
//! sides under one lock) still lives beside the catalogue; it moves to its own file once the
//! replication fixes being made on both sides of it have merged.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use sluice_replication::image::{self, MetadataImage, NO_LEADER};
use sluice_replication::isr::{self, acks_all, AcksAll, IsrTracker, LeaderLog};
use sluice_replication::pending_isr::{self, AfterAnswer, AlterIsrAnswer, PendingIsr};
use sluice_storage::{
    AppendInfo, AppendOptions, AppendOrigin, FetchData, LeaderEpoch, Log, LogConfig, LogManager,
    LogManagerConfig, Offset, ReadOptions, StorageError, TopicPartition,
};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::error::BrokerError;

/// Largest topic name Kafka accepts.
const MAX_TOPIC_NAME: usize = 249;
/// Kafka's file naming the topic id a partition directory belongs to (KIP-516).
const PARTITION_METADATA: &str = "partition.metadata";
/// Topic configs about replication rather than the log.
pub const REPLICATION_KEYS: &[&str] = &["min.insync.replicas", "unclean.leader.election.enable"];

/// This node's part in one partition, as the metadata image last said.
#[derive(Debug, Clone)]
pub struct Replica {
    /// The leader's node id, or -1.
    pub leader: i32,
    /// The leader epoch.
    pub leader_epoch: i32,
    /// Bumped by the controller on every change of the partition.
    pub partition_epoch: i32,
    /// Assigned replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// In-sync replicas, as committed.
    pub isr: Vec<i32>,
    /// During a reassignment: replicas joining, not counted in the replication factor.
    pub adding: Vec<i32>,
    /// While this node leads: its followers' progress.
    pub followers: Option<IsrTracker>,
    /// While this node leads: its log end when it became leader, where its epoch starts.
    pub epoch_start: Option<i64>,
    /// An ISR change sent to the controller whose outcome is not known yet.
    pub pending_isr: Option<PendingIsr>,
    /// Numbers ISR changes, so an answer to an older one is told apart.
    next_isr_change: u64,
    /// A follower that has not yet truncated its log to the new leader's.
    pub needs_truncation: bool,
}

/// What a follower's fetch says about it (Fetch v15+ for the broker epoch, KIP-903).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerFetch {
    /// The follower's broker id.
    pub replica: i32,
    /// The broker epoch it registered with, -1 if the fetch carried none.
    pub broker_epoch: i64,
    /// Where it fetches from: its log end.
    pub fetch_offset: i64,
    /// Its log start.
    pub log_start_offset: i64,
    /// The leader epoch it believes current (KIP-320), -1 if none.
    pub current_leader_epoch: i32,
}

/// One hosted partition.
#[derive(Debug)]
pub struct Partition {
    /// Topic and index.
    pub tp: TopicPartition,
    /// Its log.
    pub log: Arc<Log>,
    /// Woken after every append and high-watermark advance: long-polling fetches and
    /// acks=all produces wait on it.
    pub appended: Notify,
    replica: Mutex<Replica>,
}

impl Partition {
    /// A copy of the replica state.
    pub fn replica(&self) -> Replica {
        self.replica.lock().clone()
    }

    /// The leader epoch if `node` leads, checking a client's epoch (KIP-320) when it sent one.
    pub fn leader_epoch_for(&self, node: i32, client_epoch: i32) -> Result<i32, BrokerError> {
        let r = self.replica.lock();
        check_epoch(client_epoch, r.leader_epoch)?;
        if r.leader != node {
            return Err(BrokerError::NotLeaderOrFollower);
        }
        Ok(r.leader_epoch)
    }

    /// Records a follower's fetch (its log end and log start) and advances the high
    /// watermark if it can. `registered_epoch` is the follower's broker epoch in the metadata
    /// image: a fetch from an older incarnation, or one naming no incarnation, is refused as
    /// not from a follower.
    pub fn on_follower_fetch(
        &self,
        node: i32,
        fetch: &FollowerFetch,
        registered_epoch: Option<i64>,
        now_ms: i64,
    ) -> Result<(), BrokerError> {
        let mut r = self.replica.lock();
        check_epoch(fetch.current_leader_epoch, r.leader_epoch)?;
        if r.leader != node {
            return Err(BrokerError::NotLeaderOrFollower);
        }
        // Kafka's `followerReplicaOrThrow`: only an assigned replica fetches as a follower.
        if !r.replicas.contains(&fetch.replica) || fetch.replica == node {
            return Err(BrokerError::NotLeaderOrFollower);
        }
        if !isr::follower_fetch_accepted(fetch.broker_epoch, registered_epoch) {
            return Err(BrokerError::NotLeaderOrFollower);
        }
        let end = self.log.offsets().log_end.0;
        // An offset past this log's end is a follower that has not truncated yet: its records
        // there are not ours, so they count for nothing (the read answers OFFSET_OUT_OF_RANGE).
        if let Some(t) = r.followers.as_mut() {
            if fetch.fetch_offset <= end {
                t.on_fetch(fetch.replica, fetch.fetch_offset, end, now_ms);
            }
            t.on_log_start(fetch.replica, fetch.log_start_offset);
            t.on_broker_epoch(fetch.replica, fetch.broker_epoch);
        }
        self.advance_high_watermark(&r);
        Ok(())
    }

    /// As leader: the lowest log start offset over this log and the replicas `alive` says
    /// count (DeleteRecords is done when it reaches the requested offset). `None` elsewhere.
    pub fn low_watermark(&self, node: i32, alive: impl Fn(i32) -> bool) -> Option<i64> {
        let r = self.replica.lock();
        if r.leader != node {
            return None;
        }
        let start = self.log.offsets().log_start.0;
        Some(
            r.followers
                .as_ref()
                .map_or(start, |t| t.low_watermark(start, alive)),
        )
    }

    /// As leader: the high watermark is the lowest log end over the ISR, counting replicas
    /// being added (Kafka's "maximal ISR"), and never moves back.
    fn advance_high_watermark(&self, r: &Replica) {
        let Some(t) = &r.followers else { return };
        let mut isr = r.isr.clone();
        if let Some(p) = &r.pending_isr {
            isr.extend(p.isr.iter().filter(|x| !r.isr.contains(x)));
        }
        let o = self.log.offsets();
        // None: an ISR follower has not fetched from this leader yet, so nothing more is
        // known to be on it.
        let Some(hw) = t.high_watermark(&isr, o.log_end.0) else {
            return;
        };
        if hw > o.high_watermark.0 {
            self.log.set_high_watermark(Offset(hw));
            self.appended.notify_waiters();
        }
    }

    /// As leader: the ISR change to propose to the controller, if the ISR should change and
    /// no change is pending; marks it pending. Only replicas `eligible` says may join are
    /// added: it is given the replica and the broker epoch its fetches carried (Kafka leaves
    /// fenced, shutting-down and re-registered brokers out, KIP-841 and KIP-903).
    pub fn isr_change_to_propose(
        &self,
        now_ms: i64,
        eligible: impl Fn(i32, Option<i64>) -> bool,
    ) -> Option<PendingIsr> {
        let mut r = self.replica.lock();
        if r.pending_isr.is_some() {
            return None;
        }
        let o = self.log.offsets();
        let leader = LeaderLog {
            log_end: o.log_end.0,
            high_watermark: o.high_watermark.0,
            epoch_start: r.epoch_start?,
        };
        let isr = r
            .followers
            .as_ref()?
            .proposed_isr(&r.isr, &leader, now_ms, eligible)?;
        r.next_isr_change += 1;
        let change = PendingIsr {
            id: r.next_isr_change,
            leader_epoch: r.leader_epoch,
            partition_epoch: r.partition_epoch,
            isr,
        };
        r.pending_isr = Some(change.clone());
        Some(change)
    }

    /// Takes the answer to ISR change `id`; says whether to send it again
    /// ([`pending_isr::after_answer`]). The change stays pending unless the answer proves
    /// the controller did not make it.
    pub fn isr_change_answered(&self, id: u64, answer: AlterIsrAnswer) -> AfterAnswer {
        let mut r = self.replica.lock();
        let after = pending_isr::after_answer(r.pending_isr.as_ref(), id, answer);
        if after == AfterAnswer::Revert {
            r.pending_isr = None;
            // The replicas it would have added no longer count for the high watermark.
        }
        after
    }

    /// ListOffsets as Kafka's `Partition.fetchOffsetForTimestamp` answers it for a client, if
    /// `node` leads (checking the client's epoch, KIP-320).
    pub fn offset_for(
        &self,
        node: i32,
        client_epoch: i32,
        query: OffsetQuery,
        read_committed: bool,
    ) -> Result<FoundOffset, BrokerError> {
        let epoch_start = {
            let r = self.replica.lock();
            check_epoch(client_epoch, r.leader_epoch)?;
            if r.leader != node {
                return Err(BrokerError::NotLeaderOrFollower);
            }
            r.epoch_start
        };
        let log = &self.log;
        let o = log.offsets();
        // A client reads up to here; nothing at or past it is answered.
        let last_fetchable = if read_committed {
            o.last_stable.0
        } else {
            o.high_watermark.0
        };
        // A new leader's high watermark below the start of its epoch: what it ends up
        // committing is not known yet, so neither is the end (Kafka's OFFSET_NOT_AVAILABLE).
        let lagging = epoch_start.is_some_and(|start| start > o.high_watermark.0);
        let found = match query {
            OffsetQuery::Latest if lagging => return Err(BrokerError::OffsetNotAvailable),
            OffsetQuery::Latest => Some((-1, last_fetchable)),
            OffsetQuery::Earliest => Some((-1, o.log_start.0)),
            OffsetQuery::MaxTimestamp => log.max_timestamp()?.map(|t| (t.timestamp, t.offset.0)),
            OffsetQuery::Timestamp(ts) => log
                .offset_for_timestamp(ts)?
                .map(|t| (t.timestamp, t.offset.0)),
        };
        let (timestamp, offset) = match found {
            Some(found) if matches!(query, OffsetQuery::Earliest | OffsetQuery::Latest) => found,
            Some((ts, offset)) if offset < last_fetchable => (ts, offset),
            _ if lagging => return Err(BrokerError::OffsetNotAvailable),
            _ => (-1, -1),
        };
        // The epoch of the record found, as Kafka answers it: consumers validate their
        // position against it after a leader change (KIP-320).
        let leader_epoch = if offset >= 0 {
            log.epoch_of(Offset(offset)).map_or(-1, |e| e.0)
        } else {
            -1
        };
        Ok(FoundOffset {
            timestamp,
            offset,
            leader_epoch,
        })
    }

    /// Whether this node leads the partition with fewer in-sync replicas than replicas
    /// (`sluice_under_replicated_partitions`).
    pub fn is_under_replicated(&self, node: i32) -> bool {
        let r = self.replica.lock();
        // Kafka's replication factor: a reassignment's joining replicas do not count.
        let replication_factor = r.replicas.len().saturating_sub(r.adding.len());
        r.leader == node && r.isr.len() < replication_factor
    }

    /// As follower: truncate again before fetching (the leader refused our offset).
    pub fn mark_needs_truncation(&self) {
        let mut r = self.replica.lock();
        r.needs_truncation = r.followers.is_none();
    }

    /// As follower: the truncation done, fetching may start.
    pub fn truncated(&self, leader_epoch: i32) {
        let mut r = self.replica.lock();
        if r.leader_epoch == leader_epoch {
            r.needs_truncation = false;
        }
    }

    /// As follower still truncating at `leader_epoch`: truncates the log to `offset` (which
    /// trims the epoch cache even when no record goes) and, when `done`, lets fetching
    /// start. Returns false, changing nothing, if the partition has moved on: an answer to
    /// an older epoch's OffsetForLeaderEpoch must not cut records fetched since. The replica
    /// state stays locked throughout, so no leader change interleaves.
    pub fn truncate_as_follower(
        &self,
        leader_epoch: i32,
        offset: Offset,
        done: bool,
    ) -> Result<bool, StorageError> {
        let mut r = self.replica.lock();
        if r.leader_epoch != leader_epoch || !r.needs_truncation || r.followers.is_some() {
            return Ok(false);
        }
        self.log.truncate_to(offset)?;
        if done {
            r.needs_truncation = false;
        }
        Ok(true)
    }

    /// As follower at `leader_epoch`: empties the log and restarts it at `offset`, the
    /// leader's log start beyond this log's end. False, changing nothing, if the partition
    /// has moved on since the fetch that found it.
    pub fn restart_as_follower(
        &self,
        leader_epoch: i32,
        offset: Offset,
    ) -> Result<bool, StorageError> {
        let r = self.replica.lock();
        if r.leader_epoch != leader_epoch || r.needs_truncation || r.followers.is_some() {
            return Ok(false);
        }
        self.log.truncate_fully_and_start_at(offset)?;
        Ok(true)
    }

    /// Takes the image's view of the partition; returns whether leadership changed.
    fn update(&self, node: i32, p: &image::Partition, lag_max_ms: i64, now_ms: i64) -> bool {
        let mut r = self.replica.lock();
        let changed = r.leader != p.leader || r.leader_epoch != p.leader_epoch;
        if r.pending_isr
            .as_ref()
            .is_some_and(|c| pending_isr::settled_by_image(c, p.leader_epoch, p.partition_epoch))
        {
            r.pending_isr = None;
        }
        let replicas_changed = r.replicas != p.replicas;
        r.replicas = p.replicas.clone();
        r.isr = p.isr.clone();
        r.adding = p.adding.clone();
        r.partition_epoch = p.partition_epoch;
        if !changed {
            if r.leader == node {
                if replicas_changed {
                    if let Some(t) = r.followers.as_mut() {
                        t.set_replicas(&p.replicas, now_ms);
                    }
                }
                self.advance_high_watermark(&r);
            }
            return false;
        }
        r.leader = p.leader;
        r.leader_epoch = p.leader_epoch;
        r.pending_isr = None;
        if p.leader == node {
            r.followers = Some(IsrTracker::new(node, &p.replicas, lag_max_ms, now_ms));
            r.needs_truncation = false;
            // Followers asking where an older epoch ended are told: here.
            if let Err(e) = self.log.assign_epoch(LeaderEpoch(p.leader_epoch)) {
                tracing::error!(partition = %self.tp, error = %e, "cannot record the new leader epoch");
            }
            r.epoch_start = Some(self.log.offsets().log_end.0);
            self.advance_high_watermark(&r);
        } else {
            r.followers = None;
            r.epoch_start = None;
            r.needs_truncation = p.leader != NO_LEADER;
        }
        // Waiters re-check their leadership.
        self.appended.notify_waiters();
        true
    }
}

/// What a ListOffsets lookup asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetQuery {
    /// The log start (-2).
    Earliest,
    /// The end a consumer may read to (-1).
    Latest,
    /// The record with the largest timestamp (-3, KIP-734).
    MaxTimestamp,
    /// The first record whose timestamp is at or after this one.
    Timestamp(i64),
}

/// A ListOffsets answer; -1 where there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundOffset {
    /// The record's timestamp.
    pub timestamp: i64,
    /// Its offset.
    pub offset: i64,
    /// The leader epoch it was written at.
    pub leader_epoch: i32,
}

fn check_epoch(client: i32, current: i32) -> Result<(), BrokerError> {
    if client < 0 || client == current {
        Ok(())
    } else if client < current {
        Err(BrokerError::FencedLeaderEpoch {
            got: client,
            current,
        })
    } else {
        Err(BrokerError::UnknownLeaderEpoch {
            got: client,
            current,
        })
    }
}

/// What is known about one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    /// Topic name.
    pub name: String,
    /// Topic id (KIP-516).
    pub id: Uuid,
    /// Number of partitions.
    pub partitions: i32,
    /// Topic-level config overrides (Kafka keys).
    pub configs: BTreeMap<String, String>,
}

/// A topic and the partitions of it this node hosts.
#[derive(Debug)]
pub struct Topic {
    /// Name, id, partition count, overrides.
    pub meta: TopicMeta,
    /// The effective log configuration.
    pub config: LogConfig,
    /// `min.insync.replicas` in effect.
    pub min_insync_replicas: i32,
    /// Partitions by index; `None` where this node holds no replica.
    pub partitions: Vec<Option<Arc<Partition>>>,
}

/// Checks a topic name as Kafka does (`Topic.validate`).
pub fn validate_topic_name(name: &str) -> Result<(), BrokerError> {
    let bad = |why: &str| {
        Err(BrokerError::InvalidTopic(format!(
            "topic name {name:?} {why}"
        )))
    };
    if name.is_empty() {
        return bad("is empty");
    }
    if name == "." || name == ".." {
        return bad("cannot be '.' or '..'");
    }
    if name.len() > MAX_TOPIC_NAME {
        return bad("is longer than 249 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
    {
        return bad("contains characters other than ASCII alphanumerics, '.', '_' and '-'");
    }
    Ok(())
}

/// The partitions of this node and the topic catalogue.
pub struct ReplicaManager {
    config: BrokerConfig,
    logs: LogManager,
    /// Serializes catalogue changes.
    applying: Mutex<()>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Hosted partitions by leader (`NO_LEADER` included), rebuilt with each image: replica
    /// fetchers and the ISR check ask every round, which must not walk every partition.
    by_leader: RwLock<Arc<BTreeMap<i32, Vec<Arc<Partition>>>>>,
}

impl std::fmt::Debug for ReplicaManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaManager")
            .field("topics", &self.topics.read().len())
            .finish()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl ReplicaManager {
    /// Opens the log directories. Topics appear as metadata is applied.
    pub fn open(config: BrokerConfig) -> Result<ReplicaManager, BrokerError> {
        let logs = LogManager::open(LogManagerConfig {
            log_dirs: config.log_dirs.clone(),
            default_config: config.log_defaults.clone(),
            max_mapped_segments: sluice_storage::MapBudget::DEFAULT_MAX_MAPPED,
        })?;
        Ok(ReplicaManager {
            config,
            logs,
            applying: Mutex::new(()),
            topics: RwLock::new(BTreeMap::new()),
            by_leader: RwLock::new(Arc::new(BTreeMap::new())),
        })
    }

    /// The broker configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// This node's id.
    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// The log configuration and `min.insync.replicas` of a topic with these overrides.
    pub fn topic_config(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<(LogConfig, i32), BrokerError> {
        let mut c = self.config.log_defaults.clone();
        let mut min_insync = self.config.cluster.min_insync_replicas;
        for (k, v) in overrides {
            match k.as_str() {
                "min.insync.replicas" => {
                    min_insync = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        BrokerError::InvalidConfig(format!(
                            "min.insync.replicas={v:?} is not a positive integer"
                        ))
                    })?
                }
                "unclean.leader.election.enable" => {
                    if v != "true" && v != "false" {
                        return Err(BrokerError::InvalidConfig(format!(
                            "unclean.leader.election.enable={v:?}: expected true or false"
                        )));
                    }
                }
                _ => c
                    .set(k, v)
                    .map_err(|e| BrokerError::InvalidConfig(e.to_string()))?,
            }
        }
        Ok((c, min_insync))
    }

    /// The topic named `name`.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    /// The topic with id `id`.
    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .values()
            .find(|t| t.meta.id == id)
            .cloned()
    }

    /// Every topic.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    /// Every hosted partition.
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.topics
            .read()
            .values()
            .flat_map(|t| t.partitions.iter().flatten().cloned())
            .collect()
    }

    /// The partition `tp` if hosted here; UNKNOWN_TOPIC_OR_PARTITION if it does not exist,
    /// NOT_LEADER_OR_FOLLOWER if it lives on other brokers.
    pub fn partition(&self, tp: &TopicPartition) -> Result<Arc<Partition>, BrokerError> {
        let topic = self
            .topic(&tp.topic)
            .ok_or(BrokerError::UnknownTopicOrPartition)?;
        usize::try_from(tp.partition)
            .ok()
            .and_then(|p| topic.partitions.get(p))
            .ok_or(BrokerError::UnknownTopicOrPartition)?
            .clone()
            .ok_or(BrokerError::NotLeaderOrFollower)
    }

    /// The partition `tp` if this node leads it, with its leader epoch.
    pub fn leader_partition(
        &self,
        tp: &TopicPartition,
        client_epoch: i32,
    ) -> Result<(Arc<Partition>, i32), BrokerError> {
        let p = self.partition(tp)?;
        let epoch = p.leader_epoch_for(self.node_id(), client_epoch)?;
        Ok((p, epoch))
    }

    /// Validates a topic name and configs before asking the controller.
    pub fn validate_new_topic(
        &self,
        name: &str,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), BrokerError> {
        validate_topic_name(name)?;
        self.topic_config(configs)?;
        Ok(())
    }

    /// Appends a producer's (or, with `Coordinator`, this broker's) records as leader;
    /// checks `min.insync.replicas` first when `acks_all`.
    pub fn append(
        &self,
        tp: &TopicPartition,
        records: &[u8],
        origin: AppendOrigin,
        acks_all: bool,
    ) -> Result<Appended, BrokerError> {
        let topic = self
            .topic(&tp.topic)
            .ok_or(BrokerError::UnknownTopicOrPartition)?;
        let (partition, epoch) = self.leader_partition(tp, -1)?;
        let min = topic.min_insync_replicas.max(1) as usize;
        if acks_all {
            let isr = partition.replica.lock().isr.len();
            if isr < min {
                return Err(BrokerError::NotEnoughReplicas { isr, min });
            }
        }
        let info = partition.log.append(
            records,
            &AppendOptions {
                leader_epoch: LeaderEpoch(epoch),
                origin,
                now_ms: 0,
            },
        )?;
        {
            let r = partition.replica.lock();
            partition.advance_high_watermark(&r);
        }
        partition.appended.notify_waiters();
        Ok(Appended {
            node: self.node_id(),
            partition,
            leader_epoch: epoch,
            min_insync: min,
            info,
        })
    }

    /// Appends records fetched from the leader at `fetched_at_epoch` (offsets and epochs as
    /// the leader wrote them) and takes the leader's high watermark and log start as far as
    /// this log reaches. Returns false, appending nothing, when the partition has moved on
    /// since the fetch was sent: another leader epoch, or a truncation still to do. The check
    /// and the append hold the replica state's lock, so a leader change applied meanwhile
    /// comes wholly before (the fetch is dropped) or after (the new epoch truncates it away).
    pub fn append_replicated(
        &self,
        partition: &Partition,
        fetched_at_epoch: i32,
        records: &[u8],
        leader_high_watermark: i64,
        leader_log_start: i64,
    ) -> Result<bool, BrokerError> {
        let r = partition.replica.lock();
        if r.leader_epoch != fetched_at_epoch || r.needs_truncation || r.followers.is_some() {
            return Ok(false);
        }
        if !records.is_empty() {
            partition.log.append(
                records,
                &AppendOptions {
                    leader_epoch: LeaderEpoch(-1),
                    origin: AppendOrigin::Replication,
                    now_ms: 0,
                },
            )?;
        }
        let o = partition.log.offsets();
        partition
            .log
            .set_high_watermark(Offset(leader_high_watermark.min(o.log_end.0)));
        if leader_log_start > o.log_start.0
            && leader_log_start <= leader_high_watermark.min(o.log_end.0)
        {
            partition
                .log
                .delete_records_before(Offset(leader_log_start))?;
        }
        drop(r);
        Ok(true)
    }

    /// Reads from `tp`.
    pub fn read(&self, tp: &TopicPartition, opts: &ReadOptions) -> Result<FetchData, BrokerError> {
        Ok(self.partition(tp)?.log.read(opts)?)
    }

    /// The leaders this node follows partitions of.
    pub fn leaders_followed(&self) -> Vec<i32> {
        let node = self.node_id();
        self.by_leader
            .read()
            .keys()
            .copied()
            .filter(|l| *l != node && *l != NO_LEADER)
            .collect()
    }

    /// Partitions this node follows `leader` for, if any.
    pub fn followed_from(&self, leader: i32) -> Option<Vec<Arc<Partition>>> {
        if leader == self.node_id() || leader == NO_LEADER {
            return None;
        }
        self.by_leader.read().get(&leader).cloned()
    }

    /// Partitions this node leads.
    pub fn led(&self) -> Vec<Arc<Partition>> {
        self.by_leader
            .read()
            .get(&self.node_id())
            .cloned()
            .unwrap_or_default()
    }

    /// Partitions led here with fewer in-sync replicas than replicas
    /// (`sluice_under_replicated_partitions`).
    pub fn under_replicated_count(&self) -> usize {
        let node = self.node_id();
        self.led()
            .iter()
            .filter(|p| p.is_under_replicated(node))
            .count()
    }

    /// Rebuilds the index by leader; only `apply_image`, which alone changes leaders, calls it.
    fn index_by_leader(&self, topics: &BTreeMap<String, Arc<Topic>>) {
        let mut by_leader: BTreeMap<i32, Vec<Arc<Partition>>> = BTreeMap::new();
        for p in topics.values().flat_map(|t| t.partitions.iter().flatten()) {
            let leader = p.replica.lock().leader;
            by_leader.entry(leader).or_default().push(Arc::clone(p));
        }
        *self.by_leader.write() = Arc::new(by_leader);
    }

    /// Makes the catalogue and the hosted partitions match `image`: logs created for new
    /// replicas here, deleted for topics gone or replicas moved away; roles and ISRs
    /// updated. Returns the partitions whose leadership changed.
    pub fn apply_image(&self, image: &MetadataImage) -> Vec<Arc<Partition>> {
        let _one_at_a_time = self.applying.lock();
        let node = self.node_id();
        let lag = self.config.cluster.replica_lag_time_max_ms;
        let now = now_ms();
        let current = self.topics.read().clone();
        let mut next = BTreeMap::new();
        let mut changed = Vec::new();
        for t in image.topics.values() {
            let existing = current.get(&t.name).filter(|e| e.meta.id == t.id);
            if let Some(old) = current.get(&t.name).filter(|e| e.meta.id != t.id) {
                self.drop_partitions(old.partitions.iter().flatten());
            }
            let (config, min_insync) = self.topic_config(&t.configs).unwrap_or_else(|e| {
                tracing::error!(topic = %t.name, error = %e, "topic configs refused; using defaults");
                (self.config.log_defaults.clone(), self.config.cluster.min_insync_replicas)
            });
            let mut parts = Vec::with_capacity(t.partitions.len());
            for (i, p) in t.partitions.iter().enumerate() {
                let old = existing.and_then(|e| e.partitions.get(i).cloned().flatten());
                if !p.replicas.contains(&node) {
                    if let Some(old) = old {
                        self.drop_partitions([&old]);
                    }
                    parts.push(None);
                    continue;
                }
                let part = match old {
                    Some(part) => {
                        if existing.is_some_and(|e| e.config != config) {
                            part.log.update_config(config.clone());
                        }
                        part
                    }
                    None => match self.host(
                        TopicPartition::new(t.name.clone(), i as i32),
                        t.id,
                        &config,
                    ) {
                        Ok(part) => part,
                        Err(e) => {
                            tracing::error!(topic = %t.name, partition = i, error = %e, "cannot open the partition's log");
                            parts.push(None);
                            continue;
                        }
                    },
                };
                if part.update(node, p, lag, now) {
                    changed.push(Arc::clone(&part));
                }
                parts.push(Some(part));
            }
            next.insert(
                t.name.clone(),
                Arc::new(Topic {
                    meta: TopicMeta {
                        name: t.name.clone(),
                        id: t.id,
                        partitions: t.partitions.len() as i32,
                        configs: t.configs.clone(),
                    },
                    config,
                    min_insync_replicas: min_insync,
                    partitions: parts,
                }),
            );
        }
        for (name, t) in &current {
            if !next.contains_key(name) {
                tracing::info!(topic = %name, "topic deleted");
                self.drop_partitions(t.partitions.iter().flatten());
            }
        }
        self.index_by_leader(&next);
        *self.topics.write() = next;
        changed
    }

    /// Deletes logs on disk that committed metadata no longer assigns to this node (topics
    /// deleted or replicas moved while it was down). Only for an up-to-date image: the caller
    /// runs it once this broker has caught up.
    pub fn delete_strays(&self, image: &MetadataImage) -> usize {
        let _one_at_a_time = self.applying.lock();
        let node = self.node_id();
        let mut deleted = 0;
        for log in self.logs.logs() {
            let tp = log.topic_partition().clone();
            let assigned = image
                .topic_by_name(&tp.topic)
                .and_then(|t| t.partitions.get(usize::try_from(tp.partition).ok()?))
                .is_some_and(|p| p.replicas.contains(&node));
            if !assigned {
                tracing::warn!(partition = %tp, "deleting a log the cluster no longer assigns here");
                match self.logs.delete(&tp) {
                    Ok(()) => deleted += 1,
                    Err(e) => {
                        tracing::error!(partition = %tp, error = %e, "deleting a stray log failed")
                    }
                }
            }
        }
        deleted
    }

    /// Opens (or creates) the log of a replica assigned here. A directory left by an older
    /// topic of the same name (deleted while this node was away) is removed first.
    fn host(
        &self,
        tp: TopicPartition,
        id: Uuid,
        config: &LogConfig,
    ) -> Result<Arc<Partition>, BrokerError> {
        if let Some(log) = self.logs.get(&tp) {
            let marker = log.dir().join(PARTITION_METADATA);
            let recorded = std::fs::read_to_string(&marker).ok();
            let same = recorded
                .as_deref()
                .and_then(|s| s.lines().find_map(|l| l.strip_prefix("topic_id: ")))
                .is_some_and(|r| r.trim() == id.simple().to_string());
            if recorded.is_some() && !same {
                tracing::warn!(partition = %tp, "deleting the log of an older topic with the same name");
                self.logs.delete(&tp)?;
            }
        }
        let log = self.logs.get_or_create(&tp, config.clone())?;
        log.update_config(config.clone());
        let marker = log.dir().join(PARTITION_METADATA);
        if !marker.exists() {
            let text = format!("version: 0\ntopic_id: {}\n", id.simple());
            std::fs::write(&marker, text)
                .map_err(|e| BrokerError::Metadata(format!("{}: {e}", marker.display())))?;
        }
        // From here on the high watermark is replication's to move. It resumes from its
        // checkpoint (at most what the ISR held), or from the log start: never beyond what is
        // known to be replicated. As a follower it then takes its leader's; as a leader it
        // rises as the ISR confirms.
        let start = log
            .checkpointed_high_watermark()
            .unwrap_or(log.offsets().log_start);
        log.set_high_watermark(start);
        Ok(Arc::new(Partition {
            tp,
            log,
            appended: Notify::new(),
            replica: Mutex::new(Replica {
                leader: NO_LEADER,
                leader_epoch: -1,
                partition_epoch: -1,
                replicas: Vec::new(),
                isr: Vec::new(),
                adding: Vec::new(),
                followers: None,
                epoch_start: None,
                pending_isr: None,
                next_isr_change: 0,
                needs_truncation: false,
            }),
        }))
    }

    fn drop_partitions<'a>(&self, parts: impl IntoIterator<Item = &'a Arc<Partition>>) {
        for p in parts {
            if let Err(e) = self.logs.delete(&p.tp) {
                tracing::error!(partition = %p.tp, error = %e, "deleting the log failed");
            }
            {
                let mut r = p.replica.lock();
                r.leader = NO_LEADER;
                r.followers = None;
                r.epoch_start = None;
            }
            p.appended.notify_waiters();
        }
    }

    /// Size on disk, lag behind the high watermark and data directory of every partition
    /// (DescribeLogDirs).
    pub fn log_sizes(&self) -> Vec<(TopicPartition, u64, i64, String)> {
        self.logs
            .logs()
            .iter()
            .map(|l| {
                let o = l.offsets();
                let dir = l
                    .dir()
                    .parent()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default();
                (
                    l.topic_partition().clone(),
                    l.size_bytes(),
                    o.log_end.0 - o.high_watermark.0,
                    dir,
                )
            })
            .collect()
    }

    /// Periodic storage work (retention, compaction, flush.ms, segment.ms).
    pub fn housekeeping(&self, now_ms: i64) -> Result<(), StorageError> {
        self.logs.housekeeping(now_ms)
    }

    /// Flushes and closes every log.
    pub fn close(&self) -> Result<(), StorageError> {
        self.logs.close()
    }
}

/// Records appended as leader, to wait on until the ISR has them (acks=all).
pub struct Appended {
    node: i32,
    /// The partition.
    pub partition: Arc<Partition>,
    /// The leader epoch they were appended at.
    pub leader_epoch: i32,
    /// The topic's `min.insync.replicas`.
    pub min_insync: usize,
    /// What the append did.
    pub info: AppendInfo,
}

impl Appended {
    /// Waits until the records are replicated to the ISR: the high watermark passes them.
    /// Fails if leadership moves, the ISR shrinks below `min.insync.replicas`, or `timeout`
    /// passes.
    pub async fn replicated(&self, timeout: Duration) -> Result<(), BrokerError> {
        let (partition, node, leader_epoch) = (&self.partition, self.node, self.leader_epoch);
        let (end, min_insync) = (self.info.last_offset.0 + 1, self.min_insync);
        let wait = async {
            loop {
                let notified = partition.appended.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                {
                    let r = partition.replica.lock();
                    if r.leader != node || r.leader_epoch != leader_epoch {
                        return Err(BrokerError::NotLeaderOrFollower);
                    }
                    let hw = partition.log.offsets().high_watermark.0;
                    match acks_all(end - 1, hw, r.isr.len(), min_insync) {
                        AcksAll::Done => return Ok(()),
                        AcksAll::NotEnoughReplicas => {
                            return Err(BrokerError::NotEnoughReplicasAfterAppend)
                        }
                        AcksAll::Waiting => {}
                    }
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or(Err(BrokerError::ReplicationTimedOut))
    }
}

#[cfg(test)]
pub(crate) mod follower_tests;
#[cfg(test)]
mod tests;
