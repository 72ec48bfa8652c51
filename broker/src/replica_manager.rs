//! `ReplicaManager`: the partitions this node hosts, their logs and replica roles, and the
//! topic catalogue as the metadata image last said.
//!
//! An engine: it takes and returns domain types (`TopicPartition`, `Offset`, record bytes,
//! `BrokerError`), never protocol structs. Topics change only through
//! [`ReplicaManager::apply_image`], from committed metadata (`catalogue.rs`, with the topic
//! types); the data path (append, read, follower progress, the high watermark) is here, and
//! one partition's leader and follower state in `partition.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use sluice_replication::image::NO_LEADER;
use sluice_storage::{
    AppendOptions, AppendOrigin, FetchData, LeaderEpoch, LogManager, LogManagerConfig, Offset,
    ReadOptions, StorageError, TopicPartition,
};
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::log_dirs::LogDirHealth;

mod appended;
mod catalogue;
mod partition;

pub use appended::Appended;
pub use catalogue::{validate_topic_name, Topic, TopicMeta};
pub use partition::{FollowerFetch, FoundOffset, OffsetQuery, Partition, Replica};

/// Topic configs about replication rather than the log.
pub const REPLICATION_KEYS: &[&str] = &["min.insync.replicas", "unclean.leader.election.enable"];

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
            Ok(_) => {
                self.dir_health.write_succeeded(partition.log.dir());
            }
            Err(e) if e.is_disk_failure() => self.disk_failed(partition.log.dir(), e),
            Err(e) => {
                self.dir_health.write_failed(partition.log.dir(), e);
            }
        };
        result
    }

    /// Takes the directory of `path` offline when `e` (met on any read or write under it) is
    /// a disk failure: its logs refuse writes and will not close cleanly (the next start
    /// recovers them), its partitions answer KAFKA_STORAGE_ERROR, and the server stops.
    pub fn disk_failed(&self, path: &Path, e: &StorageError) {
        let Some(dir) = self.dir_health.disk_failed(path, e) else {
            return;
        };
        let reason = e.to_string();
        for log in self.logs.logs() {
            if log.dir().starts_with(&dir) {
                log.fail(&reason);
            }
        }
    }

    /// Reports `e`, met reading or writing the storage, for the directory its path lies in.
    pub fn storage_error(&self, e: &StorageError) {
        if let Some(path) = e.path() {
            self.disk_failed(path, e);
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> i32 {
        self.config.node_id
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
            .and_then(|p| {
                if self.dir_health.is_offline(p.log.dir()) {
                    Err(BrokerError::LogDirOffline(
                        p.log.dir().display().to_string(),
                    ))
                } else {
                    Ok(p)
                }
            })
    }

    /// The partition `tp` if this node leads it, with its leader epoch.
    pub fn leader_partition(
        &self,
        tp: &TopicPartition,
        client_epoch: i32,
    ) -> Result<(Arc<Partition>, LeaderEpoch), BrokerError> {
        let p = self.partition(tp)?;
        let epoch = p.leader_epoch_for(self.node_id(), client_epoch)?;
        Ok((p, epoch))
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
                leader_epoch: epoch,
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
        fetched_at_epoch: LeaderEpoch,
        records: &[u8],
        leader_high_watermark: Offset,
        leader_log_start: Offset,
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
        let high_watermark = leader_high_watermark.min(o.log_end);
        partition.log.set_high_watermark(high_watermark);
        if leader_log_start > o.log_start && leader_log_start <= high_watermark {
            partition.log.delete_records_before(leader_log_start)?;
        }
        drop(r);
        Ok(true)
    }

    /// Reads from `tp`.
    pub fn read(&self, tp: &TopicPartition, opts: &ReadOptions) -> Result<FetchData, BrokerError> {
        let read = self.partition(tp)?.log.read(opts);
        if let Err(e) = &read {
            self.storage_error(e);
        }
        Ok(read?)
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
        if let Err(e) = &result {
            self.storage_error(e);
        }
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
