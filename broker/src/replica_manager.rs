//! `ReplicaManager`: the partitions this node hosts, their logs, and the topic catalogue.
//!
//! An engine: it takes and returns domain types (`TopicPartition`, `Offset`, record bytes,
//! `BrokerError`), never protocol structs. On a single node every partition is led here with
//! leader epoch 0, and the high watermark follows the log end.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use sluice_storage::{
    AppendInfo, AppendOptions, AppendOrigin, FetchData, LeaderEpoch, Log, LogConfig, LogManager,
    LogManagerConfig, ReadOptions, StorageError, TopicPartition,
};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::metadata_store::{Metadata, MetadataStore, TopicMeta};

/// Largest topic name Kafka accepts.
const MAX_TOPIC_NAME: usize = 249;
/// Producer ids are persisted in blocks so a restart never hands one out twice.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// One hosted partition.
#[derive(Debug)]
pub struct Partition {
    /// Its log.
    pub log: Arc<Log>,
    /// Woken after every append, for fetches waiting for data.
    pub appended: Notify,
}

/// A topic and its partitions.
#[derive(Debug)]
pub struct Topic {
    /// Name, id, partition count, overrides.
    pub meta: TopicMeta,
    /// The effective log configuration.
    pub config: LogConfig,
    /// Partitions by index.
    pub partitions: Vec<Arc<Partition>>,
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
    store: MetadataStore,
    metadata: Mutex<Metadata>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    producer_ids: Mutex<(i64, i64)>,
}

impl std::fmt::Debug for ReplicaManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaManager")
            .field("topics", &self.topics.read().len())
            .finish()
    }
}

impl ReplicaManager {
    /// Opens the log directories and every known topic.
    pub fn open(config: BrokerConfig) -> Result<ReplicaManager, BrokerError> {
        let logs = LogManager::open(LogManagerConfig {
            log_dirs: config.log_dirs.clone(),
            default_config: config.log_defaults.clone(),
            max_mapped_segments: sluice_storage::MapBudget::DEFAULT_MAX_MAPPED,
        })?;
        let store = MetadataStore::new(&config.log_dirs[0]);
        let metadata = store.load().map_err(BrokerError::Metadata)?;
        let rm = ReplicaManager {
            config,
            logs,
            store,
            metadata: Mutex::new(metadata.clone()),
            topics: RwLock::new(BTreeMap::new()),
            producer_ids: Mutex::new((metadata.next_producer_id, metadata.next_producer_id)),
        };
        for meta in metadata.topics.values() {
            rm.install(meta.clone())?;
        }
        // Logs on disk that no topic claims are left over from a deletion interrupted by a crash.
        for log in rm.logs.logs() {
            let tp = log.topic_partition().clone();
            let known = rm
                .topics
                .read()
                .get(&tp.topic)
                .is_some_and(|t| (tp.partition as usize) < t.partitions.len());
            if !known {
                tracing::warn!(partition = %tp, "deleting a log that belongs to no topic");
                rm.logs.delete(&tp)?;
            }
        }
        Ok(rm)
    }

    fn save(&self, md: &Metadata) -> Result<(), BrokerError> {
        self.store
            .save(md)
            .map_err(|e| BrokerError::Metadata(e.to_string()))
    }

    /// The broker configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    fn log_config(&self, overrides: &BTreeMap<String, String>) -> Result<LogConfig, BrokerError> {
        let mut c = self.config.log_defaults.clone();
        for (k, v) in overrides {
            c.set(k, v)
                .map_err(|e| BrokerError::InvalidConfig(e.to_string()))?;
        }
        Ok(c)
    }

    fn install(&self, meta: TopicMeta) -> Result<Arc<Topic>, BrokerError> {
        let config = self.log_config(&meta.configs)?;
        let mut partitions = Vec::with_capacity(meta.partitions as usize);
        for p in 0..meta.partitions {
            let log = self
                .logs
                .get_or_create(&TopicPartition::new(meta.name.clone(), p), config.clone())?;
            log.update_config(config.clone());
            partitions.push(Arc::new(Partition {
                log,
                appended: Notify::new(),
            }));
        }
        let topic = Arc::new(Topic {
            meta: meta.clone(),
            config,
            partitions,
        });
        self.topics
            .write()
            .insert(meta.name.clone(), Arc::clone(&topic));
        Ok(topic)
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

    /// The partition `tp`, or UNKNOWN_TOPIC_OR_PARTITION.
    pub fn partition(&self, tp: &TopicPartition) -> Result<Arc<Partition>, BrokerError> {
        self.topic(&tp.topic)
            .and_then(|t| {
                usize::try_from(tp.partition)
                    .ok()
                    .and_then(|p| t.partitions.get(p).cloned())
            })
            .ok_or(BrokerError::UnknownTopicOrPartition)
    }

    /// Validates a creation request without creating anything.
    pub fn validate_new_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &BTreeMap<String, String>,
    ) -> Result<(i32, i16), BrokerError> {
        validate_topic_name(name)?;
        let partitions = if partitions == -1 {
            self.config.num_partitions
        } else {
            partitions
        };
        let rf = if replication_factor == -1 {
            self.config.default_replication_factor
        } else {
            replication_factor
        };
        if partitions < 1 {
            return Err(BrokerError::InvalidPartitions(format!(
                "number of partitions must be at least 1, got {partitions}"
            )));
        }
        if rf != 1 {
            return Err(BrokerError::InvalidReplicationFactor(format!(
                "replication factor {rf} is not possible with 1 live broker"
            )));
        }
        self.log_config(configs)?;
        if self.topic(name).is_some() {
            return Err(BrokerError::TopicAlreadyExists(format!(
                "topic {name:?} already exists"
            )));
        }
        Ok((partitions, rf))
    }

    /// Creates a topic (-1 partitions or replication factor = the broker default).
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, BrokerError> {
        let mut md = self.metadata.lock();
        let (partitions, _) =
            self.validate_new_topic(name, partitions, replication_factor, &configs)?;
        let meta = TopicMeta {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions,
            configs,
        };
        md.topics.insert(name.to_string(), meta.clone());
        self.save(&md)?;
        tracing::info!(topic = name, partitions, "created topic");
        self.install(meta)
    }

    /// Creates an internal topic (`__consumer_offsets`) with its own settings.
    pub fn create_internal_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, BrokerError> {
        self.create_topic(name, partitions, 1, configs)
    }

    /// Creates `name` with broker defaults if auto-creation is enabled.
    pub fn auto_create(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        if let Some(t) = self.topic(name) {
            return Ok(t);
        }
        match self.create_topic(name, -1, -1, BTreeMap::new()) {
            Err(BrokerError::TopicAlreadyExists(_)) => {
                self.topic(name).ok_or(BrokerError::UnknownTopicOrPartition)
            }
            other => other,
        }
    }

    /// Deletes a topic and its logs.
    pub fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        let mut md = self.metadata.lock();
        let topic = self
            .topics
            .write()
            .remove(name)
            .ok_or(BrokerError::UnknownTopicOrPartition)?;
        md.topics.remove(name);
        self.save(&md)?;
        for p in 0..topic.partitions.len() {
            self.logs.delete(&TopicPartition::new(name, p as i32))?;
        }
        for p in &topic.partitions {
            p.appended.notify_waiters();
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Raises a topic's partition count to `count`.
    pub fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        let mut md = self.metadata.lock();
        let topic = self
            .topic(name)
            .ok_or(BrokerError::UnknownTopicOrPartition)?;
        let current = topic.partitions.len() as i32;
        if count <= current {
            return Err(BrokerError::InvalidPartitions(format!(
                "topic {name} has {current} partitions; the new count {count} must be larger"
            )));
        }
        if validate_only {
            return Ok(());
        }
        let meta = TopicMeta {
            partitions: count,
            ..topic.meta.clone()
        };
        md.topics.insert(name.to_string(), meta.clone());
        self.save(&md)?;
        self.install(meta)?;
        Ok(())
    }

    /// Replaces a topic's config overrides (AlterConfigs semantics: the full set).
    pub fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        let mut md = self.metadata.lock();
        let topic = self
            .topic(name)
            .ok_or(BrokerError::UnknownTopicOrPartition)?;
        let config = self.log_config(&configs)?;
        if validate_only {
            return Ok(());
        }
        let meta = TopicMeta {
            configs,
            ..topic.meta.clone()
        };
        md.topics.insert(name.to_string(), meta.clone());
        self.save(&md)?;
        for p in &topic.partitions {
            p.log.update_config(config.clone());
        }
        self.topics.write().insert(
            name.to_string(),
            Arc::new(Topic {
                meta,
                config,
                partitions: topic.partitions.clone(),
            }),
        );
        Ok(())
    }

    /// Appends a produce request's records to `tp` and wakes waiting fetches.
    pub fn append(&self, tp: &TopicPartition, records: &[u8]) -> Result<AppendInfo, BrokerError> {
        let partition = self.partition(tp)?;
        let info = partition.log.append(
            records,
            &AppendOptions {
                leader_epoch: LeaderEpoch(0),
                origin: AppendOrigin::Client,
                now_ms: 0,
            },
        )?;
        partition.appended.notify_waiters();
        Ok(info)
    }

    /// Appends records written by the broker itself (coordinators).
    pub fn append_internal(
        &self,
        tp: &TopicPartition,
        records: &[u8],
    ) -> Result<AppendInfo, BrokerError> {
        let partition = self.partition(tp)?;
        let info = partition.log.append(
            records,
            &AppendOptions {
                leader_epoch: LeaderEpoch(0),
                origin: AppendOrigin::Coordinator,
                now_ms: 0,
            },
        )?;
        partition.appended.notify_waiters();
        Ok(info)
    }

    /// Reads from `tp`.
    pub fn read(&self, tp: &TopicPartition, opts: &ReadOptions) -> Result<FetchData, BrokerError> {
        Ok(self.partition(tp)?.log.read(opts)?)
    }

    /// Hands out a new producer id, persisting a block first so ids survive restarts.
    pub fn next_producer_id(&self) -> Result<i64, BrokerError> {
        let mut ids = self.producer_ids.lock();
        if ids.0 >= ids.1 {
            let mut md = self.metadata.lock();
            md.next_producer_id = ids.1 + PRODUCER_ID_BLOCK;
            self.save(&md)?;
            ids.1 = md.next_producer_id;
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// Size on disk, follower lag and data directory of every partition (DescribeLogDirs).
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
