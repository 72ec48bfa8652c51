//! What brokers ask the active controller and what it answers: the messages [`super::client`]
//! sends to any quorum node and [`super::service`] answers, serialized by
//! [`super::network`]'s framing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_storage::{LeaderEpoch, ProducerId};
use uuid::Uuid;

use crate::acl::{AclBinding, AclBindingFilter};
use crate::controller::ControllerError;
use crate::record::Endpoint;

/// A broker's request to the active controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerRequest {
    /// A broker process starts: it gets a new incarnation epoch and starts fenced.
    RegisterBroker {
        /// `node.id`.
        id: i32,
        /// Advertised listeners.
        endpoints: Vec<Endpoint>,
        /// `broker.rack`.
        rack: Option<String>,
        /// The process's incarnation id: a retried registration of the same process gets its
        /// epoch again instead of DUPLICATE_BROKER_REGISTRATION.
        #[serde(default)]
        incarnation: Option<Uuid>,
    },
    /// A broker is alive; once it has caught up with the metadata log it is unfenced. With
    /// `shutting_down`, its leaderships are moved away first.
    Heartbeat {
        /// The broker.
        id: i32,
        /// Its incarnation.
        epoch: i64,
        /// Whether it has applied the metadata log up to what the controller had when it
        /// registered.
        caught_up: bool,
        /// Whether it asks for a controlled shutdown.
        shutting_down: bool,
    },
    /// CreateTopics.
    CreateTopic {
        /// Name.
        name: String,
        /// Partitions.
        partitions: i32,
        /// Replication factor.
        replication_factor: i16,
        /// Topic configs.
        configs: BTreeMap<String, String>,
        /// A manual replica assignment, (partition index, replicas) as the request lists
        /// them; empty to place replicas automatically.
        #[serde(default)]
        assignments: Vec<(i32, Vec<i32>)>,
    },
    /// DeleteTopics.
    DeleteTopic {
        /// Name.
        name: String,
    },
    /// CreatePartitions: grow the topic to `total` partitions.
    CreatePartitions {
        /// Name.
        name: String,
        /// The new partition count.
        total: i32,
        /// The replicas of each new partition, when assigned by hand.
        #[serde(default)]
        assignments: Option<Vec<Vec<i32>>>,
    },
    /// AlterConfigs / IncrementalAlterConfigs: set (`Some`) or remove (`None`) topic configs.
    AlterTopicConfigs {
        /// Name.
        name: String,
        /// The changes.
        changes: Vec<(String, Option<String>)>,
    },
    /// A block of producer ids for InitProducerId.
    AllocateProducerIds {
        /// The broker asking.
        broker: i32,
        /// How many.
        count: i64,
    },
    /// A broker outside the voters follows the metadata log as a Raft learner.
    AddLearner {
        /// `node.id`.
        id: i32,
        /// Its Raft address.
        addr: String,
    },
    /// ElectLeaders (PREFERRED): move leadership to each partition's first replica where it is
    /// live and in sync. `None` means every partition.
    ElectPreferred {
        /// (topic, partition) pairs.
        partitions: Option<Vec<(String, i32)>>,
    },
    /// ElectLeaders (UNCLEAN): give each offline partition a leader, from outside the ISR if
    /// need be. `None` means every partition.
    ElectUnclean {
        /// (topic, partition) pairs.
        partitions: Option<Vec<(String, i32)>>,
    },
    /// AlterPartitionReassignments: (topic, partition, target replicas or `None` to cancel).
    AlterReassignments {
        /// The partitions.
        partitions: Vec<(String, i32, Option<Vec<i32>>)>,
    },
    /// CreateAcls.
    CreateAcls {
        /// The bindings, in request order.
        acls: Vec<AclBinding>,
    },
    /// DeleteAcls.
    DeleteAcls {
        /// The filters, in request order.
        filters: Vec<AclBindingFilter>,
    },
    /// AlterPartition (KIP-497) from a partition leader.
    AlterIsr {
        /// The leader asking.
        leader: i32,
        /// Topic id.
        topic: Uuid,
        /// Partition.
        partition: i32,
        /// The leader epoch it leads at.
        leader_epoch: LeaderEpoch,
        /// The partition epoch it knows.
        partition_epoch: i32,
        /// The ISR it proposes.
        isr: Vec<i32>,
        /// The broker epoch each follower in `isr` last fetched with, where the leader knows
        /// it (KIP-903: AlterPartition's `NewIsrWithEpochs`).
        #[serde(default)]
        broker_epochs: Vec<(i32, i64)>,
    },
}

/// The active controller's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerResponse {
    /// Registered with this incarnation epoch.
    Registered {
        /// The broker's new epoch.
        epoch: i64,
        /// The metadata log index the controller had applied: a broker that has applied up
        /// to here has caught up.
        metadata_offset: u64,
    },
    /// Heartbeat answered.
    Heartbeat {
        /// Whether the broker is fenced (may not lead or be in ISRs).
        fenced: bool,
        /// With a controlled shutdown asked: whether it leads nothing any more.
        shutdown_ready: bool,
    },
    /// A topic was created.
    Created {
        /// Its id.
        id: Uuid,
    },
    /// The ISR change is committed.
    Altered,
    /// The request's records are committed.
    Done,
    /// Per partition of an AlterReassignments request, whether it was refused.
    Reassigned {
        /// In request order.
        results: Vec<Result<(), ControllerError>>,
    },
    /// Per binding of a CreateAcls request, whether it was refused.
    AclsCreated {
        /// In request order.
        results: Vec<Result<(), ControllerError>>,
    },
    /// Per filter of a DeleteAcls request, the bindings it deleted or why it was refused.
    AclsDeleted {
        /// In request order.
        results: Vec<Result<Vec<AclBinding>, ControllerError>>,
    },
    /// A block of producer ids.
    ProducerIds {
        /// The first id.
        first: ProducerId,
        /// How many.
        count: i64,
    },
    /// Refused, or failed.
    Error(ControllerError),
    /// This node is not the active controller; the leader is, if known.
    NotController {
        /// Leader id and Raft address.
        leader: Option<(u64, String)>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_isr_change_carries_its_leader_epoch_as_the_bare_integer_older_brokers_send() {
        let req = ControllerRequest::AlterIsr {
            leader: 1,
            topic: Uuid::nil(),
            partition: 0,
            leader_epoch: LeaderEpoch(4),
            partition_epoch: 9,
            isr: vec![1, 2],
            broker_epochs: Vec::new(),
        };
        let json = serde_json::to_string(&req).expect("writes");
        assert!(json.contains(r#""leader_epoch":4,"#), "{json}");
        let back: ControllerRequest = serde_json::from_str(&json).expect("reads");
        assert!(matches!(
            back,
            ControllerRequest::AlterIsr {
                leader_epoch: LeaderEpoch(4),
                ..
            }
        ));
    }
}
