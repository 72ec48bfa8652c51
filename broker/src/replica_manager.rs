//! `ReplicaManager`: the partitions this node hosts, their logs and replica roles, and the
//! topic catalogue as the metadata image last said.
//!
//! An engine: it takes and returns domain types (`TopicPartition`, `Offset`, record bytes,
//! `BrokerError`), never protocol structs. Topics change only through
//! [`ReplicaManager::apply_image`], from committed metadata; the data path (append, read,
//! follower progress, the high watermark) is here.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use sluice_replication::image::{MetadataImage, NO_LEADER};
use sluice_storage::{
    AppendOptions, AppendOrigin, FetchData, LeaderEpoch, LogConfig, LogManager, LogManagerConfig,
    Offset, ReadOptions, StorageError, TopicPartition,
};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::log_dirs::LogDirHealth;

mod appended;
mod partition;

pub use appended::Appended;
pub use partition::{FollowerFetch, FoundOffset, OffsetQuery, Partition, Replica};

/// Largest topic name Kafka accepts.
const MAX_TOPIC_NAME: usize = 249;
/// Kafka's file naming the topic id a partition directory belongs to (KIP-516).
const PARTITION_METADATA: &str = "partition.metadata";
/// Topic configs about replication rather than the log.
pub const REPLICATION_KEYS: &[&str] = &["min.insync.replicas", "unclean.leader.election.enable"];

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
    /// Which log directories fail to be written.
    dir_health: LogDirHealth,
}

impl std::fmt::Debug for ReplicaManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaManager")
            .field("topics", &self.topics.read().len())
            .finish()
    }
}

pub use crate::clock::now_ms;

impl ReplicaManager {
    /// Opens the log directories. Topics appear as metadata is applied.
    pub fn open(config: BrokerConfig) -> Result<ReplicaManager, BrokerError> {
        let logs = LogManager::open(LogManagerConfig {
            log_dirs: config.log_dirs.clone(),
            default_config: config.log_defaults.clone(),
            max_mapped_segments: sluice_storage::MapBudget::DEFAULT_MAX_MAPPED,
        })?;
        Ok(ReplicaManager {
            dir_health: LogDirHealth::new(&config.log_dirs),
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

    /// The health of the log directories.
    pub fn log_dir_health(&self) -> &LogDirHealth {
        &self.dir_health
    }

    /// Tells the log directories' health how a write to `partition` went.
    fn note_write<T>(
        &self,
        partition: &Partition,
        result: Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        match &result {
            Ok(_) => self.dir_health.write_succeeded(partition.log.dir()),
            Err(e) => self.dir_health.write_failed(partition.log.dir(), e),
        };
        result
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
        );
        let info = self.note_write(&partition, info)?;
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
            let appended = partition.log.append(
                records,
                &AppendOptions {
                    leader_epoch: LeaderEpoch(-1),
                    origin: AppendOrigin::Replication,
                    now_ms: 0,
                },
            );
            self.note_write(partition, appended)?;
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
        self.dir_health.measure_free_space();
        let result = self.logs.housekeeping(now_ms);
        let uncleanable = self
            .logs
            .logs()
            .iter()
            .filter(|l| l.uncleanable().is_some())
            .count();
        metrics::gauge!(crate::observability::names::UNCLEANABLE_PARTITIONS)
            .set(uncleanable as f64);
        result
    }

    /// Flushes and closes every log.
    pub fn close(&self) -> Result<(), StorageError> {
        self.logs.close()
    }
}

#[cfg(test)]
pub(crate) mod follower_tests;
#[cfg(test)]
mod tests;
