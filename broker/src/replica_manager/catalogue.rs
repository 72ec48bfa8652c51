//! The topic catalogue as the metadata image last said, and making the hosted partitions
//! match it (Kafka's `ReplicaManager.applyDelta` with the `LogManager` work it asks for):
//! logs created for replicas assigned here, deleted for topics gone or replicas moved away,
//! roles and ISRs updated. One image is applied at a time (`applying`).

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use sluice_replication::image::{MetadataImage, NO_LEADER};
use sluice_storage::{LeaderEpoch, LogConfig, TopicPartition};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{now_ms, Partition, Replica, ReplicaManager};
use crate::error::BrokerError;

/// Largest topic name Kafka accepts.
const MAX_TOPIC_NAME: usize = 249;
/// Kafka's file naming the topic id a partition directory belongs to (KIP-516).
const PARTITION_METADATA: &str = "partition.metadata";

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

impl ReplicaManager {
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
    /// updated.
    pub fn apply_image(&self, image: &MetadataImage) {
        let _one_at_a_time = self.applying.lock();
        let node = self.node_id();
        let lag = self.config.cluster.replica_lag_time_max_ms;
        let now = now_ms();
        let current = self.topics.read().clone();
        let mut next = BTreeMap::new();
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
                part.update(node, p, lag, now);
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
                leader_epoch: LeaderEpoch(-1),
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
}
