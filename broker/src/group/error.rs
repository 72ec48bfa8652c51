//! What the group coordinator refuses, typed where it is decided; `error_map` alone turns it
//! into a Kafka error code (issue 12, shape 2).

use crate::error::BrokerError;

/// A group coordinator's refusal or failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupError {
    /// Another broker leads the group's offsets partition, or its load failed.
    NotCoordinator,
    /// The group's offsets partition is being loaded.
    CoordinatorLoadInProgress,
    /// The group's records could not reach the ISR (too few replicas, a timeout).
    CoordinatorNotAvailable,
    /// An empty group id, or one the offsets topic cannot hold.
    InvalidGroupId,
    /// A string longer than the offsets topic's schema holds.
    InvalidRequest,
    /// A session timeout outside `group.{min,max}.session.timeout.ms`.
    InvalidSessionTimeout,
    /// A protocol type or protocols the group's members do not share.
    InconsistentGroupProtocol,
    /// KIP-394: the member must join again with the member id it was given.
    MemberIdRequired,
    /// The member is not (or no longer) in the group.
    UnknownMemberId,
    /// KIP-345: the instance id belongs to another member id (an old incarnation).
    FencedInstanceId,
    /// The request's generation is not the group's.
    IllegalGeneration,
    /// The group is rebalancing: the member must rejoin.
    RebalanceInProgress,
    /// No such group.
    GroupIdNotFound,
    /// The group has members.
    NonEmptyGroup,
    /// OffsetDelete of a topic the group's members subscribe to.
    GroupSubscribedToTopic,
    /// A commit for a partition that does not exist.
    UnknownTopicOrPartition,
    /// Commit metadata longer than `offset.metadata.max.bytes`.
    OffsetMetadataTooLarge,
    /// Writing the records failed in a way none of the above says.
    UnknownServerError,
}

impl GroupError {
    /// Kafka's code for it (the mapping is `error_map::group_error`'s).
    pub fn code(self) -> i16 {
        crate::error_map::group_error(self).code()
    }

    /// What a request whose records could not be written or replicated answers, as Kafka's
    /// coordinator maps an append's error: the member looks for the coordinator again, or
    /// retries.
    pub fn not_written(e: &BrokerError) -> GroupError {
        match e {
            BrokerError::NotLeaderOrFollower
            | BrokerError::Storage(_)
            | BrokerError::LogDirOffline(_) => GroupError::NotCoordinator,
            BrokerError::NotEnoughReplicas { .. }
            | BrokerError::NotEnoughReplicasAfterAppend
            | BrokerError::ReplicationTimedOut
            | BrokerError::UnknownTopicOrPartition => GroupError::CoordinatorNotAvailable,
            _ => GroupError::UnknownServerError,
        }
    }
}
