//! The entries of the controller quorum's log: every change to cluster metadata is one of
//! these, proposed by the active controller and applied by every broker once committed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_storage::ProducerId;
use uuid::Uuid;

use crate::acl::AclBinding;

/// A listener as clients and other brokers reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Listener name, e.g. `PLAINTEXT`.
    pub name: String,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: u16,
}

/// A change to one partition. Fields left `None` keep their value. Applying bumps the
/// partition epoch on any change and the leader epoch when the leader changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionChange {
    /// Topic id.
    pub topic: Uuid,
    /// Partition index.
    pub partition: i32,
    /// New leader ([`crate::image::NO_LEADER`] for offline).
    pub leader: Option<i32>,
    /// New in-sync replica set.
    pub isr: Option<Vec<i32>>,
    /// New replica set (reassignment).
    pub replicas: Option<Vec<i32>>,
    /// Replicas being added by a reassignment (empty when none is in progress).
    #[serde(default)]
    pub adding: Option<Vec<i32>>,
    /// Replicas being removed by a reassignment.
    #[serde(default)]
    pub removing: Option<Vec<i32>>,
    /// The partition epoch the controller decided this change at. Applied to a partition at
    /// another epoch, the change is refused: it was decided over a state that is gone (a
    /// proposal that committed late, a controller that had not replayed the whole log).
    /// `None` (records written before this field existed) applies at any epoch.
    #[serde(default)]
    pub partition_epoch: Option<i32>,
}

/// One entry of the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// A broker process started (a new incarnation: `epoch` grows). It starts fenced.
    RegisterBroker {
        /// `node.id`.
        id: i32,
        /// Incarnation.
        epoch: i64,
        /// Advertised listeners.
        endpoints: Vec<Endpoint>,
        /// `broker.rack`.
        rack: Option<String>,
        /// The process's incarnation id (Kafka's `incarnationId`): a registration retried by
        /// the same process is recognised as such.
        #[serde(default)]
        incarnation: Option<Uuid>,
    },
    /// The broker's lease ran out (or it shut down).
    FenceBroker {
        /// The broker.
        id: i32,
        /// Its incarnation.
        epoch: i64,
    },
    /// The broker caught up and heartbeats: it may lead and rejoin ISRs.
    UnfenceBroker {
        /// The broker.
        id: i32,
        /// Its incarnation.
        epoch: i64,
    },
    /// The broker asked for a controlled shutdown: its leaderships move away first.
    BeginShutdown {
        /// The broker.
        id: i32,
        /// Its incarnation.
        epoch: i64,
    },
    /// The broker left the cluster for good.
    UnregisterBroker {
        /// The broker.
        id: i32,
    },
    /// A topic, with the replicas of each partition (the first replica leads, all are in
    /// sync).
    CreateTopic {
        /// Topic id.
        id: Uuid,
        /// Name.
        name: String,
        /// Configs set on the topic.
        configs: BTreeMap<String, String>,
        /// Replicas per partition.
        assignments: Vec<Vec<i32>>,
    },
    /// A topic and all its partitions are gone.
    DeleteTopic {
        /// Topic id.
        id: Uuid,
    },
    /// Partitions added to a topic.
    CreatePartitions {
        /// Topic id.
        id: Uuid,
        /// Replicas of each new partition.
        assignments: Vec<Vec<i32>>,
    },
    /// Topic configs set (`Some`) or removed (`None`).
    AlterTopicConfigs {
        /// Topic id.
        id: Uuid,
        /// The changes.
        changes: Vec<(String, Option<String>)>,
    },
    /// A partition's leader, ISR or replicas changed.
    ChangePartition(PartitionChange),
    /// Records applied together or not at all: one controller decision (a fence and the
    /// leaderships it moves, a registration and the ISRs it leaves) is never half applied.
    Batch(Vec<MetadataRecord>),
    /// A block of producer ids handed to a broker for InitProducerId.
    AllocateProducerIds {
        /// The broker.
        broker: i32,
        /// First id of the block.
        first: ProducerId,
        /// Ids in the block.
        count: i64,
    },
    /// An ACL binding was created (Kafka's `AccessControlEntryRecord`).
    AccessControlEntry {
        /// Its id, by which it is removed.
        id: Uuid,
        /// The binding.
        acl: AclBinding,
    },
    /// An ACL binding was deleted (Kafka's `RemoveAccessControlEntryRecord`).
    RemoveAccessControlEntry {
        /// The id it was created with.
        id: Uuid,
    },
}

impl std::fmt::Display for MetadataRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetadataRecord::RegisterBroker { id, epoch, .. } => {
                write!(f, "register broker {id} epoch {epoch}")
            }
            MetadataRecord::FenceBroker { id, epoch } => {
                write!(f, "fence broker {id} epoch {epoch}")
            }
            MetadataRecord::UnfenceBroker { id, epoch } => {
                write!(f, "unfence broker {id} epoch {epoch}")
            }
            MetadataRecord::BeginShutdown { id, epoch } => {
                write!(f, "shut down broker {id} epoch {epoch}")
            }
            MetadataRecord::UnregisterBroker { id } => write!(f, "unregister broker {id}"),
            MetadataRecord::CreateTopic {
                name,
                id,
                assignments,
                ..
            } => {
                write!(
                    f,
                    "create topic {name} ({id}) with {} partitions",
                    assignments.len()
                )
            }
            MetadataRecord::DeleteTopic { id } => write!(f, "delete topic {id}"),
            MetadataRecord::CreatePartitions { id, assignments } => {
                write!(f, "add {} partitions to topic {id}", assignments.len())
            }
            MetadataRecord::AlterTopicConfigs { id, changes } => {
                write!(f, "alter {} configs of topic {id}", changes.len())
            }
            MetadataRecord::ChangePartition(c) => write!(
                f,
                "change partition {}-{}: leader {:?} isr {:?} replicas {:?}",
                c.topic, c.partition, c.leader, c.isr, c.replicas
            ),
            MetadataRecord::AllocateProducerIds {
                broker,
                first,
                count,
            } => {
                write!(f, "producer ids {first}+{count} to broker {broker}")
            }
            MetadataRecord::AccessControlEntry { id, acl } => write!(f, "add ACL {id}: {acl}"),
            MetadataRecord::RemoveAccessControlEntry { id } => write!(f, "remove ACL {id}"),
            MetadataRecord::Batch(records) => {
                write!(f, "batch of {}:", records.len())?;
                for r in records {
                    write!(f, " [{r}]")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_producer_id_block_reads_and_writes_as_the_bare_integer_logs_already_hold() {
        // Written by a controller from before ProducerId was a newtype.
        let on_disk = r#"{"AllocateProducerIds":{"broker":1,"first":1000,"count":10}}"#;
        let r: MetadataRecord = serde_json::from_str(on_disk).expect("reads");
        assert_eq!(
            r,
            MetadataRecord::AllocateProducerIds {
                broker: 1,
                first: ProducerId(1000),
                count: 10
            }
        );
        assert_eq!(serde_json::to_string(&r).expect("writes"), on_disk);
    }
}
