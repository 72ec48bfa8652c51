//! The broker's domain errors. `error_map.rs` turns them into Kafka error codes.

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
    /// The storage engine refused or failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}
