//! The metadata image: the cluster's state as the controller quorum's log has made it.
//!
//! Every broker holds one, built by applying the committed [`MetadataRecord`]s in log
//! order. `apply` is deterministic and total, so every node that applies the same log holds
//! the same image; a record that does not fit the image (which the controller never proposes)
//! changes nothing and is reported, on every node alike.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_storage::{LeaderEpoch, ProducerId};
use uuid::Uuid;

use crate::acl::AclBinding;
use crate::record::{Endpoint, MetadataRecord, PartitionChange};

/// No leader: the partition is offline.
pub const NO_LEADER: i32 = -1;

/// A broker as it registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broker {
    /// `node.id`.
    pub id: i32,
    /// Incarnation: a new epoch each time the process registers, so a restarted broker's
    /// heartbeats cannot be confused with its previous life's.
    pub epoch: i64,
    /// Listeners as clients and other brokers reach them.
    pub endpoints: Vec<Endpoint>,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// Fenced brokers lead nothing and are left out of ISRs: their lease ran out.
    pub fenced: bool,
    /// Set by a controlled shutdown: leaderships are moving away.
    pub shutting_down: bool,
    /// The registering process's incarnation id, when it sent one.
    #[serde(default)]
    pub incarnation: Option<Uuid>,
}

/// One partition's replica set and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    /// Replicas in preference order: the first is the preferred leader.
    pub replicas: Vec<i32>,
    /// In-sync replicas, always a subset of `replicas` containing the leader (if any).
    pub isr: Vec<i32>,
    /// The leader, or [`NO_LEADER`].
    pub leader: i32,
    /// Bumped on every leader change; fences requests from deposed leaders.
    pub leader_epoch: LeaderEpoch,
    /// Bumped on every change; an ISR change proposed against an older one is refused.
    pub partition_epoch: i32,
    /// During a reassignment: replicas joining (in `replicas`, not yet caught up).
    #[serde(default)]
    pub adding: Vec<i32>,
    /// During a reassignment: replicas leaving once every target replica is in sync.
    #[serde(default)]
    pub removing: Vec<i32>,
}

impl Partition {
    /// Where a reassignment in progress is going: the replicas without those leaving.
    pub fn target(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing.contains(r))
            .collect()
    }

    /// The replicas before a reassignment in progress: without those joining.
    pub fn original(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.adding.contains(r))
            .collect()
    }
}

/// A topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topic {
    /// Topic id (KIP-516).
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Configs set on the topic (defaults are not stored).
    pub configs: BTreeMap<String, String>,
    /// Partitions by index.
    pub partitions: Vec<Partition>,
}

/// The whole cluster metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    /// Registered brokers by id.
    pub brokers: BTreeMap<i32, Broker>,
    /// Topics by id.
    pub topics: BTreeMap<Uuid, Topic>,
    /// Topic ids by name.
    pub topic_ids: BTreeMap<String, Uuid>,
    /// The first producer id not yet handed to a broker.
    pub next_producer_id: ProducerId,
    /// ACL bindings by id.
    #[serde(default)]
    pub acls: BTreeMap<Uuid, AclBinding>,
}

impl Default for MetadataImage {
    /// The image before the first record: no brokers, no topics, producer ids from 0.
    fn default() -> MetadataImage {
        MetadataImage {
            brokers: BTreeMap::new(),
            topics: BTreeMap::new(),
            topic_ids: BTreeMap::new(),
            next_producer_id: ProducerId(0),
            acls: BTreeMap::new(),
        }
    }
}

/// Why a record did not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The record names a broker that is not registered.
    #[error("broker {0} is not registered")]
    UnknownBroker(i32),
    /// The record is for an older incarnation of the broker.
    #[error("broker {id} epoch {got} is stale (current {current})")]
    StaleBrokerEpoch {
        /// The broker.
        id: i32,
        /// The record's epoch.
        got: i64,
        /// The registered epoch.
        current: i64,
    },
    /// The record names a topic that does not exist.
    #[error("topic {0} does not exist")]
    UnknownTopic(Uuid),
    /// A topic with that name or id exists already.
    #[error("topic {0} already exists")]
    TopicExists(String),
    /// The record names a partition the topic does not have.
    #[error("topic {0} has no partition {1}")]
    UnknownPartition(Uuid, i32),
    /// A partition change decided at another partition epoch than the partition's.
    #[error(
        "partition change decided at partition epoch {expected}, but the partition is at {current}"
    )]
    StalePartitionEpoch {
        /// The epoch the change was decided at.
        expected: i32,
        /// The partition's epoch.
        current: i32,
    },
    /// The change would break an invariant (ISR outside the replicas, leader outside the
    /// ISR, a replica listed twice, ...).
    #[error("invalid change: {0}")]
    Invalid(String),
}

impl MetadataImage {
    /// The topic named `name`.
    pub fn topic_by_name(&self, name: &str) -> Option<&Topic> {
        self.topic_ids.get(name).and_then(|id| self.topics.get(id))
    }

    /// A partition.
    pub fn partition(&self, topic: Uuid, partition: i32) -> Option<&Partition> {
        let t = self.topics.get(&topic)?;
        usize::try_from(partition)
            .ok()
            .and_then(|p| t.partitions.get(p))
    }

    /// Brokers that may lead and be in ISRs now.
    pub fn live_brokers(&self) -> impl Iterator<Item = &Broker> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Whether `id` is registered and not fenced.
    pub fn is_live(&self, id: i32) -> bool {
        self.brokers.get(&id).is_some_and(|b| !b.fenced)
    }

    /// The image as incarnation `epoch` of broker `node` may act on it: leaderships the image
    /// gives `node` belong to the incarnation it registers, so another one (a process started
    /// before it registered, or one whose registration the image does not show yet) leads
    /// none of them. It would otherwise serve as leader from a log that may have lost its
    /// unflushed tail, before the controller moved those leaderships away.
    pub fn as_led_by(&self, node: i32, epoch: Option<i64>) -> std::borrow::Cow<'_, MetadataImage> {
        let current = self.brokers.get(&node).map(|b| b.epoch);
        if current.is_some() && current == epoch {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut view = self.clone();
        for t in view.topics.values_mut() {
            for p in &mut t.partitions {
                if p.leader == node {
                    p.leader = NO_LEADER;
                }
            }
        }
        std::borrow::Cow::Owned(view)
    }

    /// Applies one committed record.
    pub fn apply(&mut self, record: &MetadataRecord) -> Result<(), ApplyError> {
        match record {
            MetadataRecord::RegisterBroker {
                id,
                epoch,
                endpoints,
                rack,
                incarnation,
            } => {
                if let Some(b) = self.brokers.get(id) {
                    if *epoch <= b.epoch {
                        return Err(ApplyError::StaleBrokerEpoch {
                            id: *id,
                            got: *epoch,
                            current: b.epoch,
                        });
                    }
                }
                // A new incarnation starts fenced: it is unfenced once it has caught up
                // with the metadata log and heartbeats.
                self.brokers.insert(
                    *id,
                    Broker {
                        id: *id,
                        epoch: *epoch,
                        endpoints: endpoints.clone(),
                        rack: rack.clone(),
                        fenced: true,
                        shutting_down: false,
                        incarnation: *incarnation,
                    },
                );
            }
            MetadataRecord::FenceBroker { id, epoch } => {
                self.broker_mut(*id, *epoch)?.fenced = true;
            }
            MetadataRecord::UnfenceBroker { id, epoch } => {
                let b = self.broker_mut(*id, *epoch)?;
                b.fenced = false;
                b.shutting_down = false;
            }
            MetadataRecord::BeginShutdown { id, epoch } => {
                self.broker_mut(*id, *epoch)?.shutting_down = true;
            }
            MetadataRecord::UnregisterBroker { id } => {
                self.brokers
                    .remove(id)
                    .ok_or(ApplyError::UnknownBroker(*id))?;
            }
            MetadataRecord::CreateTopic {
                id,
                name,
                configs,
                assignments,
            } => {
                if self.topic_ids.contains_key(name) || self.topics.contains_key(id) {
                    return Err(ApplyError::TopicExists(name.clone()));
                }
                let partitions = assignments
                    .iter()
                    .map(|r| new_partition(r))
                    .collect::<Result<Vec<_>, _>>()?;
                self.topic_ids.insert(name.clone(), *id);
                self.topics.insert(
                    *id,
                    Topic {
                        id: *id,
                        name: name.clone(),
                        configs: configs.clone(),
                        partitions,
                    },
                );
            }
            MetadataRecord::DeleteTopic { id } => {
                let t = self
                    .topics
                    .remove(id)
                    .ok_or(ApplyError::UnknownTopic(*id))?;
                self.topic_ids.remove(&t.name);
            }
            MetadataRecord::CreatePartitions { id, assignments } => {
                let added = assignments
                    .iter()
                    .map(|r| new_partition(r))
                    .collect::<Result<Vec<_>, _>>()?;
                let t = self
                    .topics
                    .get_mut(id)
                    .ok_or(ApplyError::UnknownTopic(*id))?;
                t.partitions.extend(added);
            }
            MetadataRecord::AlterTopicConfigs { id, changes } => {
                let t = self
                    .topics
                    .get_mut(id)
                    .ok_or(ApplyError::UnknownTopic(*id))?;
                for (k, v) in changes {
                    match v {
                        Some(v) => t.configs.insert(k.clone(), v.clone()),
                        None => t.configs.remove(k),
                    };
                }
            }
            MetadataRecord::ChangePartition(change) => self.change_partition(change)?,
            MetadataRecord::Batch(records) => {
                // All or nothing: applied to a copy, which replaces the image only whole.
                let mut next = self.clone();
                for r in records {
                    if matches!(r, MetadataRecord::Batch(_)) {
                        return Err(ApplyError::Invalid("a batch inside a batch".into()));
                    }
                    next.apply(r)?;
                }
                *self = next;
            }
            MetadataRecord::AllocateProducerIds { first, count, .. } => {
                if *first != self.next_producer_id || *count <= 0 {
                    return Err(ApplyError::Invalid(format!(
                        "producer id block {first}+{count} does not start at {}",
                        self.next_producer_id
                    )));
                }
                self.next_producer_id = ProducerId(first.0 + count);
            }
            MetadataRecord::AccessControlEntry { id, acl } => {
                if let Some(why) = acl.invalid() {
                    return Err(ApplyError::Invalid(format!("ACL {id}: {why}")));
                }
                if self.acls.contains_key(id) {
                    return Err(ApplyError::Invalid(format!("ACL {id} exists already")));
                }
                self.acls.insert(*id, acl.clone());
            }
            MetadataRecord::RemoveAccessControlEntry { id } => {
                if self.acls.remove(id).is_none() {
                    return Err(ApplyError::Invalid(format!("no ACL {id} to remove")));
                }
            }
        }
        Ok(())
    }

    fn broker_mut(&mut self, id: i32, epoch: i64) -> Result<&mut Broker, ApplyError> {
        let b = self
            .brokers
            .get_mut(&id)
            .ok_or(ApplyError::UnknownBroker(id))?;
        if b.epoch != epoch {
            return Err(ApplyError::StaleBrokerEpoch {
                id,
                got: epoch,
                current: b.epoch,
            });
        }
        Ok(b)
    }

    fn change_partition(&mut self, c: &PartitionChange) -> Result<(), ApplyError> {
        let t = self
            .topics
            .get_mut(&c.topic)
            .ok_or(ApplyError::UnknownTopic(c.topic))?;
        let p = usize::try_from(c.partition)
            .ok()
            .and_then(|i| t.partitions.get_mut(i))
            .ok_or(ApplyError::UnknownPartition(c.topic, c.partition))?;
        if let Some(expected) = c.partition_epoch {
            if expected != p.partition_epoch {
                return Err(ApplyError::StalePartitionEpoch {
                    expected,
                    current: p.partition_epoch,
                });
            }
        }
        let mut next = p.clone();
        if let Some(r) = &c.replicas {
            next.replicas = r.clone();
        }
        if let Some(isr) = &c.isr {
            next.isr = isr.clone();
        }
        if let Some(l) = c.leader {
            next.leader = l;
        }
        if let Some(a) = &c.adding {
            next.adding = a.clone();
        }
        if let Some(r) = &c.removing {
            next.removing = r.clone();
        }
        check_partition(&next)?;
        if next.leader != p.leader {
            next.leader_epoch.0 += 1;
        }
        if next != *p {
            next.partition_epoch += 1;
        }
        *p = next;
        Ok(())
    }
}

fn new_partition(replicas: &[i32]) -> Result<Partition, ApplyError> {
    let p = Partition {
        replicas: replicas.to_vec(),
        isr: replicas.to_vec(),
        leader: replicas.first().copied().unwrap_or(NO_LEADER),
        leader_epoch: LeaderEpoch(0),
        partition_epoch: 0,
        adding: Vec::new(),
        removing: Vec::new(),
    };
    check_partition(&p)?;
    Ok(p)
}

fn check_partition(p: &Partition) -> Result<(), ApplyError> {
    let mut seen = std::collections::BTreeSet::new();
    if p.replicas.is_empty() || !p.replicas.iter().all(|r| seen.insert(*r)) {
        return Err(ApplyError::Invalid(format!(
            "replicas {:?} must be distinct and not empty",
            p.replicas
        )));
    }
    let mut in_isr = std::collections::BTreeSet::new();
    if !p
        .isr
        .iter()
        .all(|r| p.replicas.contains(r) && in_isr.insert(*r))
    {
        return Err(ApplyError::Invalid(format!(
            "ISR {:?} must be distinct replicas of {:?}",
            p.isr, p.replicas
        )));
    }
    let in_replicas = |v: &[i32]| v.iter().all(|r| p.replicas.contains(r));
    if !in_replicas(&p.adding)
        || !in_replicas(&p.removing)
        || p.adding.iter().any(|r| p.removing.contains(r))
        || (!p.removing.is_empty() && p.target().is_empty())
    {
        return Err(ApplyError::Invalid(format!(
            "reassignment adding {:?} removing {:?} does not fit replicas {:?}",
            p.adding, p.removing, p.replicas
        )));
    }
    if p.leader != NO_LEADER && !p.isr.contains(&p.leader) {
        return Err(ApplyError::Invalid(format!(
            "leader {} is not in the ISR {:?}",
            p.leader, p.isr
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{AclOperation, AclPermissionType, PatternType, ResourceType};

    #[test]
    fn acls_survive_a_snapshot_and_an_older_snapshot_has_none() {
        let mut image = MetadataImage::default();
        let acl = AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: "t".into(),
            pattern_type: PatternType::Prefixed,
            principal: "User:a".into(),
            host: "*".into(),
            operation: AclOperation::Read,
            permission: AclPermissionType::Allow,
        };
        image
            .apply(&MetadataRecord::AccessControlEntry {
                id: Uuid::from_u128(7),
                acl: acl.clone(),
            })
            .expect("applies");
        let json = serde_json::to_string(&image).expect("writes");
        let back: MetadataImage = serde_json::from_str(&json).expect("reads");
        assert_eq!(back.acls.get(&Uuid::from_u128(7)), Some(&acl));
        // Written before ACLs existed.
        let old = r#"{"brokers":{},"topics":{},"topic_ids":{},"next_producer_id":0}"#;
        let old: MetadataImage = serde_json::from_str(old).expect("reads");
        assert!(old.acls.is_empty());
    }
}
