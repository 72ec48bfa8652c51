//! The broker's domain errors. `error_map.rs` turns them into Kafka error codes.

use sluice_replication::controller::ControllerError;
use sluice_storage::StorageError;

/// Why a broker operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// No such topic or partition.
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// A topic name Kafka would refuse.
    #[error("{0}")]
    InvalidTopic(String),
    /// The topic exists already.
    #[error("{0}")]
    TopicAlreadyExists(String),
    /// A bad partition count.
    #[error("{0}")]
    InvalidPartitions(String),
    /// A replication factor the cluster cannot satisfy.
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// A bad topic or broker configuration.
    #[error("{0}")]
    InvalidConfig(String),
    /// A request that is malformed for its purpose.
    #[error("{0}")]
    InvalidRequest(String),
    /// The persisted metadata could not be read or written.
    #[error("metadata store: {0}")]
    Metadata(String),
    /// This broker does not lead the partition (or, for followers' fetches, host it).
    #[error("this broker is not the leader of the partition")]
    NotLeaderOrFollower,
    /// A new leader's high watermark has not reached the start of its epoch: offsets near
    /// the end cannot be answered yet (ListOffsets).
    #[error("the high watermark has not reached the start of the leader's epoch")]
    OffsetNotAvailable,
    /// The partition has no leader right now.
    #[error("the partition has no leader")]
    LeaderNotAvailable,
    /// The request carries an older leader epoch than the partition's.
    #[error("leader epoch {got} is older than the current {current}")]
    FencedLeaderEpoch {
        /// The request's epoch.
        got: i32,
        /// This replica's.
        current: i32,
    },
    /// The request carries a newer leader epoch than this replica knows yet.
    #[error("leader epoch {got} is newer than the known {current}")]
    UnknownLeaderEpoch {
        /// The request's epoch.
        got: i32,
        /// This replica's.
        current: i32,
    },
    /// acks=all with fewer in-sync replicas than `min.insync.replicas`.
    #[error("{isr} in-sync replica(s), fewer than min.insync.replicas={min}")]
    NotEnoughReplicas {
        /// ISR size.
        isr: usize,
        /// The topic's minimum.
        min: usize,
    },
    /// The ISR shrank below `min.insync.replicas` after the records were appended.
    #[error("the ISR shrank below min.insync.replicas after the append")]
    NotEnoughReplicasAfterAppend,
    /// The records were not replicated in time.
    #[error("the records were not replicated within the request timeout")]
    ReplicationTimedOut,
    /// No active controller answered.
    #[error("no active controller: {0}")]
    ControllerUnavailable(String),
    /// The controller refused the request, or could not decide it.
    #[error(transparent)]
    Controller(#[from] ControllerError),
    /// The storage engine refused or failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A request naming a topic by an id no topic has (KIP-516).
    #[error("unknown topic id")]
    UnknownTopicId,
    /// Produce with an `acks` other than -1, 0 or 1.
    #[error("acks={0} is not -1, 0 or 1")]
    InvalidRequiredAcks(i16),
    /// A request this version of the API cannot express.
    #[error("{0}")]
    UnsupportedVersion(String),
    /// An offset outside the log, or an epoch the log does not know.
    #[error("{0}")]
    OffsetOutOfRange(String),
    /// An election asked for where the wanted leader already leads.
    #[error("{0}")]
    ElectionNotNeeded(String),
    /// An unclean election with no live replica to elect.
    #[error("{0}")]
    EligibleLeadersNotAvailable(String),
    /// A preferred election whose preferred replica cannot lead now.
    #[error("{0}")]
    PreferredLeaderNotAvailable(String),
    /// The coordinator for the request is not available (yet).
    #[error("{0}")]
    CoordinatorNotAvailable(String),
    /// What the request waited for did not happen within its timeout.
    #[error("{0}")]
    TimedOut(String),
    /// A log directory whose writes fail, or that went offline after a disk failure.
    #[error("log directory {0} failed")]
    LogDirOffline(String),
    /// The session may not do this on the topic (or the topic's existence is hidden from it).
    #[error("Topic authorization failed.")]
    TopicAuthorizationFailed,
    /// The session may not do this on the group.
    #[error("Group authorization failed.")]
    GroupAuthorizationFailed,
    /// The session may not do this on the cluster.
    #[error("Cluster authorization failed.")]
    ClusterAuthorizationFailed,
    /// The session may not use the transactional id.
    #[error("Transactional Id authorization failed.")]
    TransactionalIdAuthorizationFailed,
    /// The ACL APIs without an authorizer configured.
    #[error("No Authorizer is configured.")]
    SecurityDisabled,
}
