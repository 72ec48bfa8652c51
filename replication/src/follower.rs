//! A follower's truncation decision after a leader change (KIP-101, KIP-279): from the new
//! leader's OffsetForLeaderEpoch answer and the follower's own leader-epoch cache, where to
//! cut its log so it keeps no record the leader lacks, and whether it must ask again.
//!
//! Pure: the fetcher (and the cluster simulation) supplies the log's offsets and a lookup of
//! its epoch cache, performs the truncation and, if asked to, sends another request with the
//! latest epoch left in the cache.

use sluice_storage::{LeaderEpoch, Offset};

/// The leader's answer for one partition: the largest epoch it knows at or below the one
/// asked for, and where that epoch ends in its log. Both are -1 (Kafka's undefined epoch
/// and offset) when the leader knows no such epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEndOffset {
    /// The leader's epoch, or -1.
    pub leader_epoch: LeaderEpoch,
    /// Where it ends in the leader's log, or -1.
    pub end_offset: Offset,
}

/// What the follower does with its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// Truncate to `truncate_to` (nothing to do at or past the log end); fetching may start.
    Done {
        /// Offset of the first record to remove.
        truncate_to: Offset,
    },
    /// Truncate to `truncate_to`, then ask the leader again with `ask_with`, which is then
    /// the latest epoch in the follower's cache: the follower's nearest epoch was one the
    /// leader never had, so where the logs agree lies further back.
    Again {
        /// Offset of the first record to remove; the epoch cache loses every epoch starting
        /// at or after it (or after the log end) even when no record goes.
        truncate_to: Offset,
        /// The epoch of the next OffsetForLeaderEpoch request.
        ask_with: LeaderEpoch,
    },
}

/// Kafka's `AbstractFetcherThread.getOffsetTruncationState`: where a follower with this log
/// end and high watermark truncates after `leader` answered. `end_offset_for_epoch` is the
/// follower's own `Log::end_offset_for_epoch`: the largest epoch at or below the one given
/// and where it ends in the follower's log.
pub fn truncation(
    log_end: Offset,
    high_watermark: Offset,
    end_offset_for_epoch: impl Fn(LeaderEpoch) -> Option<(LeaderEpoch, Offset)>,
    leader: EpochEndOffset,
) -> Truncation {
    if leader.end_offset.0 < 0 {
        // The leader knows no epoch as old as ours: keep only what was committed.
        return Truncation::Done {
            truncate_to: high_watermark.min(log_end),
        };
    }
    if leader.leader_epoch.0 < 0 {
        // An offset without an epoch (a leader not tracking epochs): trust its end.
        return Truncation::Done {
            truncate_to: leader.end_offset.min(log_end),
        };
    }
    match end_offset_for_epoch(leader.leader_epoch) {
        // Both logs know the epoch: they agree up to where it ends in the shorter (KIP-101).
        Some((epoch, end)) if epoch == leader.leader_epoch => Truncation::Done {
            truncate_to: end.min(leader.end_offset).min(log_end),
        },
        // Our nearest older epoch may be one the leader never had: cut back to where it ends
        // and ask again with it (KIP-279). Always again, even when nothing is cut (an empty
        // epoch of ours followed it): it is the older epoch's records that may diverge.
        Some((epoch, end)) => Truncation::Again {
            truncate_to: end.min(log_end),
            ask_with: epoch,
        },
        // We know no epoch that old (nothing tracked then): the leader's end is the bound.
        None => Truncation::Done {
            truncate_to: leader.end_offset.min(log_end),
        },
    }
}

#[cfg(test)]
mod tests;
