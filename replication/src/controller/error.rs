//! Why the controller refuses a request or cannot answer it. Each variant says what went
//! wrong in the controller's own terms; the broker's `error_map.rs` alone turns it into the
//! Kafka error a client sees. Carried to brokers in the controller's answers, so it is
//! serializable.

use serde::{Deserialize, Serialize};

/// A controller refusal or failure; the message says which object and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ControllerError {
    /// No such topic, partition or topic id.
    #[error("{0}")]
    UnknownTopicOrPartition(String),
    /// CreateTopics of a name that exists.
    #[error("{0}")]
    TopicAlreadyExists(String),
    /// A partition count that is too small, or does not grow the topic.
    #[error("{0}")]
    InvalidPartitions(String),
    /// More replicas than live brokers, or fewer than one.
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// A manual assignment (topic creation, new partitions, reassignment) of replicas that
    /// are repeated, empty, unregistered, inactive or uneven.
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// A request Kafka refuses as malformed: fields that contradict each other (a manual
    /// assignment beside a partition count), an ACL binding with a filter-only value, an ACL
    /// filter with an unknown field.
    #[error("{0}")]
    InvalidRequest(String),
    /// A reassignment cancelled where none is in progress.
    #[error("{0}")]
    NoReassignmentInProgress(String),
    /// The broker id is not registered: it must register.
    #[error("{0}")]
    BrokerNotRegistered(String),
    /// The broker speaks as an incarnation that is no longer the registered one: it must
    /// register again.
    #[error("{0}")]
    StaleBrokerEpoch(String),
    /// Another process holds the broker id with a valid session.
    #[error("{0}")]
    DuplicateBrokerRegistration(String),
    /// An ISR change from a broker that does not lead the partition.
    #[error("{0}")]
    NotLeader(String),
    /// An ISR change at a leader epoch other than the current one.
    #[error("{0}")]
    FencedLeaderEpoch(String),
    /// An ISR change based on a partition epoch other than the current one (KIP-497).
    #[error("{0}")]
    InvalidUpdateVersion(String),
    /// An ISR that leaves out the leader, repeats a replica, or adds one that may not join.
    #[error("{0}")]
    IneligibleReplica(String),
    /// The records were proposed but not committed in time; they may still commit.
    #[error("not committed in time: {0}")]
    NotCommitted(String),
    /// The records committed but did not fit the image, which is unchanged.
    #[error("records not applied: {0}")]
    RecordsRejected(String),
    /// The quorum failed (shut down, or its storage broke); nothing is known to have
    /// committed.
    #[error("quorum failure: {0}")]
    QuorumFailed(String),
}

impl ControllerError {
    /// Whether the broker that sent the request has no valid registration: it must register
    /// (as a new incarnation) before anything else it asks can succeed.
    pub fn registration_lost(&self) -> bool {
        match self {
            ControllerError::BrokerNotRegistered(_) | ControllerError::StaleBrokerEpoch(_) => true,
            ControllerError::UnknownTopicOrPartition(_)
            | ControllerError::TopicAlreadyExists(_)
            | ControllerError::InvalidPartitions(_)
            | ControllerError::InvalidReplicationFactor(_)
            | ControllerError::InvalidReplicaAssignment(_)
            | ControllerError::InvalidRequest(_)
            | ControllerError::NoReassignmentInProgress(_)
            | ControllerError::DuplicateBrokerRegistration(_)
            | ControllerError::NotLeader(_)
            | ControllerError::FencedLeaderEpoch(_)
            | ControllerError::InvalidUpdateVersion(_)
            | ControllerError::IneligibleReplica(_)
            | ControllerError::NotCommitted(_)
            | ControllerError::RecordsRejected(_)
            | ControllerError::QuorumFailed(_) => false,
        }
    }
}
