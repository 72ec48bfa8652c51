//! The one place a Sluice error becomes a Kafka error code. Exhaustive on purpose: a new
//! error variant does not compile until someone decides its code.

use kafka_protocol::error::ResponseError;
use sluice_replication::controller::ControllerError;
use sluice_storage::StorageError;

use crate::error::BrokerError;
use crate::group::GroupError;

/// The Kafka error for a broker error.
pub fn response_error(e: &BrokerError) -> ResponseError {
    match e {
        BrokerError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        BrokerError::InvalidTopic(_) => ResponseError::InvalidTopicException,
        BrokerError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
        BrokerError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        BrokerError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        BrokerError::InvalidConfig(_) => ResponseError::InvalidConfig,
        BrokerError::InvalidRequest(_) => ResponseError::InvalidRequest,
        BrokerError::Metadata(_) => ResponseError::UnknownServerError,
        BrokerError::NotLeaderOrFollower => ResponseError::NotLeaderOrFollower,
        BrokerError::LeaderNotAvailable => ResponseError::LeaderNotAvailable,
        BrokerError::OffsetNotAvailable => ResponseError::OffsetNotAvailable,
        BrokerError::FencedLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch,
        BrokerError::UnknownLeaderEpoch { .. } => ResponseError::UnknownLeaderEpoch,
        BrokerError::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas,
        BrokerError::NotEnoughReplicasAfterAppend => ResponseError::NotEnoughReplicasAfterAppend,
        BrokerError::ReplicationTimedOut | BrokerError::ControllerUnavailable(_) => {
            ResponseError::RequestTimedOut
        }
        BrokerError::Controller(c) => controller_error(c),
        BrokerError::Storage(s) => storage_error(s),
        BrokerError::UnknownTopicId => ResponseError::UnknownTopicId,
        BrokerError::InvalidRequiredAcks(_) => ResponseError::InvalidRequiredAcks,
        BrokerError::UnsupportedVersion(_) => ResponseError::UnsupportedVersion,
        BrokerError::OffsetOutOfRange(_) => ResponseError::OffsetOutOfRange,
        BrokerError::ElectionNotNeeded(_) => ResponseError::ElectionNotNeeded,
        BrokerError::EligibleLeadersNotAvailable(_) => ResponseError::EligibleLeadersNotAvailable,
        BrokerError::PreferredLeaderNotAvailable(_) => ResponseError::PreferredLeaderNotAvailable,
        BrokerError::CoordinatorNotAvailable(_) => ResponseError::CoordinatorNotAvailable,
        BrokerError::TimedOut(_) => ResponseError::RequestTimedOut,
        BrokerError::LogDirOffline(_) => ResponseError::KafkaStorageError,
        BrokerError::TopicAuthorizationFailed => ResponseError::TopicAuthorizationFailed,
        BrokerError::GroupAuthorizationFailed => ResponseError::GroupAuthorizationFailed,
        BrokerError::ClusterAuthorizationFailed => ResponseError::ClusterAuthorizationFailed,
        BrokerError::TransactionalIdAuthorizationFailed => {
            ResponseError::TransactionalIdAuthorizationFailed
        }
        BrokerError::SecurityDisabled => ResponseError::SecurityDisabled,
    }
}

/// The Kafka error for a group coordinator's refusal.
pub fn group_error(e: GroupError) -> ResponseError {
    match e {
        GroupError::NotCoordinator => ResponseError::NotCoordinator,
        GroupError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
        GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
        GroupError::InvalidRequest => ResponseError::InvalidRequest,
        GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::MemberIdRequired => ResponseError::MemberIdRequired,
        GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
        GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
        GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound,
        GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup,
        GroupError::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
        GroupError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        GroupError::OffsetMetadataTooLarge => ResponseError::OffsetMetadataTooLarge,
        GroupError::UnknownServerError => ResponseError::UnknownServerError,
    }
}

/// Whether a client may retry what failed with `e` and succeed (Kafka's retriable errors:
/// a leader moved, a replica caught up, a disk freed), as the protocol defines it for the
/// code `e` maps to.
pub fn retriable(e: &BrokerError) -> bool {
    response_error(e).is_retriable()
}

/// The Kafka error for a controller refusal or failure.
pub fn controller_error(e: &ControllerError) -> ResponseError {
    match e {
        ControllerError::UnknownTopicOrPartition(_) => ResponseError::UnknownTopicOrPartition,
        ControllerError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
        ControllerError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        ControllerError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        ControllerError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
        ControllerError::InvalidRequest(_) => ResponseError::InvalidRequest,
        ControllerError::NoReassignmentInProgress(_) => ResponseError::NoReassignmentInProgress,
        ControllerError::BrokerNotRegistered(_) => ResponseError::BrokerNotAvailable,
        ControllerError::StaleBrokerEpoch(_) => ResponseError::StaleBrokerEpoch,
        ControllerError::DuplicateBrokerRegistration(_) => {
            ResponseError::DuplicateBrokerRegistration
        }
        ControllerError::NotLeader(_) => ResponseError::NotLeaderOrFollower,
        ControllerError::FencedLeaderEpoch(_) => ResponseError::FencedLeaderEpoch,
        ControllerError::InvalidUpdateVersion(_) => ResponseError::InvalidUpdateVersion,
        ControllerError::IneligibleReplica(_) => ResponseError::IneligibleReplica,
        // The controller could not commit: as when no controller answers, the request may
        // be retried (it may even have committed).
        ControllerError::NotCommitted(_) | ControllerError::QuorumFailed(_) => {
            ResponseError::RequestTimedOut
        }
        ControllerError::RecordsRejected(_) => ResponseError::UnknownServerError,
    }
}

/// The Kafka error for a storage error.
pub fn storage_error(e: &StorageError) -> ResponseError {
    match e {
        StorageError::Io { .. }
        | StorageError::Corrupt { .. }
        | StorageError::Poisoned { .. }
        | StorageError::Closed(_) => ResponseError::KafkaStorageError,
        StorageError::CorruptRecord(_) => ResponseError::CorruptMessage,
        StorageError::InvalidRecord { .. } => ResponseError::InvalidRecord,
        StorageError::InvalidTimestamp { .. } => ResponseError::InvalidTimestamp,
        StorageError::UnsupportedMagic(_) => ResponseError::UnsupportedForMessageFormat,
        StorageError::RecordTooLarge { .. } => ResponseError::MessageTooLarge,
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StorageError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        StorageError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        StorageError::InvalidConfig { .. } => ResponseError::InvalidConfig,
    }
}

/// The numeric code of a broker error.
pub fn code(e: &BrokerError) -> i16 {
    response_error(e).code()
}

#[cfg(test)]
mod retriable_tests {
    use super::*;

    #[test]
    fn what_a_client_may_retry_follows_the_protocol() {
        for e in [
            BrokerError::NotLeaderOrFollower,
            BrokerError::LogDirOffline("/data".into()),
            BrokerError::NotEnoughReplicas { isr: 1, min: 2 },
            BrokerError::Storage(StorageError::CorruptRecord("crc".into())),
            BrokerError::TimedOut("election".into()),
            // A controller whose quorum cannot commit answers as an absent one does.
            BrokerError::Controller(ControllerError::QuorumFailed("log store".into())),
            BrokerError::Controller(ControllerError::NotCommitted("8 s".into())),
        ] {
            assert!(retriable(&e), "{e}");
        }
        for e in [
            BrokerError::InvalidRequiredAcks(2),
            BrokerError::Storage(StorageError::InvalidRecord {
                reason: "keyless".into(),
                records: Vec::new(),
            }),
            BrokerError::InvalidConfig("retention.ms=-5".into()),
            BrokerError::InvalidTopic("a/b".into()),
            BrokerError::Controller(ControllerError::TopicAlreadyExists("t".into())),
            BrokerError::Controller(ControllerError::InvalidReplicationFactor("3 > 1".into())),
        ] {
            assert!(!retriable(&e), "{e}");
        }
    }
}
