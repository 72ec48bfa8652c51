//! What a partition leader does with the answer to an ISR change it sent the controller
//! (Kafka's `Partition.handleAlterPartitionError` and `AlterPartitionManager`).
//!
//! While a change is pending, the leader counts the union of the committed ISR and the
//! proposed one (Kafka's "maximal ISR") for the high watermark: a replica being added may
//! already be in the committed ISR the next leader is chosen from. So a pending change is
//! dropped only when the answer proves the controller did not make it, or when the metadata
//! image shows a newer partition epoch (the change, or another, committed). An answer that
//! leaves the outcome open (a timeout, a lost connection, a controller election) keeps the
//! change pending and the same request is sent again. Pure, so the broker's runtime and the
//! cluster simulation share the rule.

use sluice_storage::LeaderEpoch;

use crate::controller::ControllerError;

/// An ISR change sent to the controller whose outcome the leader does not know yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingIsr {
    /// Tells this change from earlier ones of the same partition: an answer to an earlier
    /// request must not settle it.
    pub id: u64,
    /// The leader epoch the request was sent at.
    pub leader_epoch: LeaderEpoch,
    /// The partition epoch the request was based on.
    pub partition_epoch: i32,
    /// The ISR proposed.
    pub isr: Vec<i32>,
}

/// The answer to one AlterIsr request, as the leader received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterIsrAnswer {
    /// The controller committed the change.
    Altered,
    /// The request was never sent (its topic is gone from the image): nothing changed.
    NotSent,
    /// The controller refused it, or failed to decide.
    Refused(ControllerError),
    /// No answer: the request timed out, the connection failed or no controller was found.
    Unanswered,
}

/// What the leader does with its pending ISR change after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAnswer {
    /// The answer is to another request than the pending change's (an older one, or the
    /// change was already settled): nothing changes.
    Ignore,
    /// Keep the change pending, send nothing more: the metadata image will show the
    /// outcome (a new partition epoch, leader epoch or topic) and settle it.
    AwaitImage,
    /// The controller made no change: forget the pending change; the next ISR check
    /// proposes afresh from the committed ISR.
    Revert,
    /// The outcome is unknown: keep the change pending and send the same request again.
    Retry,
}

/// What the answer to request `answered` means for the change `pending` (if any), as
/// Kafka's `Partition.handleAlterPartitionError` decides it:
/// - An ineligible replica says the partition epoch was current and the request was not
///   applied, by this or any controller; a request never sent changed nothing: revert.
/// - A stale epoch, an unknown topic or partition, another leader: not applied now, but an
///   earlier send of the same change may have been (a timed-out request that committed
///   leaves a newer partition epoch behind), so the image must tell: await it.
/// - Anything else, no answer included, leaves the outcome open: retry.
pub fn after_answer(
    pending: Option<&PendingIsr>,
    answered: u64,
    answer: AlterIsrAnswer,
) -> AfterAnswer {
    if pending.is_none_or(|p| p.id != answered) {
        return AfterAnswer::Ignore;
    }
    match answer {
        // The image carrying the new partition epoch settles it; until then the added
        // replicas keep counting for the high watermark.
        AlterIsrAnswer::Altered => AfterAnswer::AwaitImage,
        AlterIsrAnswer::NotSent => AfterAnswer::Revert,
        AlterIsrAnswer::Unanswered => AfterAnswer::Retry,
        // No `_` arm: a new refusal must be placed in one of the three.
        AlterIsrAnswer::Refused(e) => match e {
            ControllerError::IneligibleReplica(_) => AfterAnswer::Revert,
            ControllerError::UnknownTopicOrPartition(_)
            | ControllerError::NotLeader(_)
            | ControllerError::FencedLeaderEpoch(_)
            | ControllerError::InvalidUpdateVersion(_) => AfterAnswer::AwaitImage,
            // The controller timing out its own commit, or failing it, does not say it did
            // not commit; the rest are not answers an ISR change gets, and prove nothing.
            ControllerError::NotCommitted(_)
            | ControllerError::RecordsRejected(_)
            | ControllerError::QuorumFailed(_)
            | ControllerError::TopicAlreadyExists(_)
            | ControllerError::InvalidPartitions(_)
            | ControllerError::InvalidReplicationFactor(_)
            | ControllerError::InvalidReplicaAssignment(_)
            | ControllerError::NoReassignmentInProgress(_)
            | ControllerError::InvalidRequest(_)
            | ControllerError::BrokerNotRegistered(_)
            | ControllerError::StaleBrokerEpoch(_)
            | ControllerError::DuplicateBrokerRegistration(_) => AfterAnswer::Retry,
        },
    }
}

/// Whether the image's view of the partition settles the pending change: a partition epoch
/// other than the one the change was based on means the controller changed the partition
/// (with this change or another), and a new leader epoch means this leadership is over.
pub fn settled_by_image(
    pending: &PendingIsr,
    leader_epoch: LeaderEpoch,
    partition_epoch: i32,
) -> bool {
    pending.partition_epoch != partition_epoch || pending.leader_epoch != leader_epoch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(id: u64) -> PendingIsr {
        PendingIsr {
            id,
            leader_epoch: LeaderEpoch(4),
            partition_epoch: 9,
            isr: vec![1, 2, 3],
        }
    }

    #[test]
    fn an_unanswered_change_stays_pending_and_is_sent_again() {
        let p = pending(1);
        assert_eq!(
            after_answer(Some(&p), 1, AlterIsrAnswer::Unanswered),
            AfterAnswer::Retry
        );
        // The controller timing out its own commit, or failing it, does not say it did not
        // commit.
        for e in [
            ControllerError::NotCommitted("8 s".into()),
            ControllerError::QuorumFailed("disk".into()),
            ControllerError::RecordsRejected("epoch".into()),
        ] {
            assert_eq!(
                after_answer(Some(&p), 1, AlterIsrAnswer::Refused(e.clone())),
                AfterAnswer::Retry,
                "{e:?}"
            );
        }
    }

    #[test]
    fn only_an_answer_proving_no_change_reverts() {
        let p = pending(1);
        for answer in [
            AlterIsrAnswer::Refused(ControllerError::IneligibleReplica("3".into())),
            AlterIsrAnswer::NotSent,
        ] {
            assert_eq!(after_answer(Some(&p), 1, answer), AfterAnswer::Revert);
        }
    }

    #[test]
    fn a_stale_epoch_answer_waits_for_the_image() {
        // A retry of a change whose first send committed is refused for its old partition
        // epoch: the change may be in the ISR already, so it must keep counting.
        let p = pending(1);
        for e in [
            ControllerError::InvalidUpdateVersion("9".into()),
            ControllerError::FencedLeaderEpoch("4".into()),
            ControllerError::NotLeader("2".into()),
            ControllerError::UnknownTopicOrPartition("t".into()),
        ] {
            assert_eq!(
                after_answer(Some(&p), 1, AlterIsrAnswer::Refused(e.clone())),
                AfterAnswer::AwaitImage,
                "{e:?}"
            );
        }
        assert_eq!(
            after_answer(Some(&p), 1, AlterIsrAnswer::Altered),
            AfterAnswer::AwaitImage
        );
    }

    #[test]
    fn a_late_answer_to_an_older_request_leaves_the_newer_change_alone() {
        let newer = pending(2);
        for answer in [
            AlterIsrAnswer::Unanswered,
            AlterIsrAnswer::Altered,
            AlterIsrAnswer::Refused(ControllerError::IneligibleReplica("3".into())),
        ] {
            assert_eq!(
                after_answer(Some(&newer), 1, answer.clone()),
                AfterAnswer::Ignore
            );
            assert_eq!(after_answer(None, 1, answer), AfterAnswer::Ignore);
        }
    }

    #[test]
    fn a_new_partition_or_leader_epoch_in_the_image_settles_the_change() {
        let p = pending(1);
        assert!(!settled_by_image(&p, LeaderEpoch(4), 9));
        assert!(settled_by_image(&p, LeaderEpoch(4), 10));
        assert!(settled_by_image(&p, LeaderEpoch(5), 10));
    }
}
