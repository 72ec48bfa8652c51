//! `LeaderEpochCache`: which leader epoch started at which offset (KIP-101, KIP-279), so a
//! follower can ask the leader where its epoch ended and truncate instead of diverging.

use crate::types::{LeaderEpoch, Offset};

/// Ordered `(epoch, start offset)` pairs, both strictly increasing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LeaderEpochCache {
    entries: Vec<(LeaderEpoch, Offset)>,
}

impl LeaderEpochCache {
    /// The cache a checkpoint describes, read as Kafka reads it: each entry through
    /// [`LeaderEpochCache::assign`], so entries that contradict a later one are dropped.
    pub(crate) fn from_entries(entries: Vec<(LeaderEpoch, Offset)>) -> Self {
        let mut cache = LeaderEpochCache::default();
        for (epoch, offset) in entries {
            cache.assign(epoch, offset);
        }
        cache
    }

    pub(crate) fn entries(&self) -> &[(LeaderEpoch, Offset)] {
        &self.entries
    }

    /// Records that the log holds a batch of `epoch` at `offset` (Kafka's
    /// `LeaderEpochFileCache.assign`). Returns true when the cache changed.
    ///
    /// Batches are the truth the cache describes, so an entry they contradict goes: one that
    /// starts at or after `offset`, and one of `epoch` or a newer epoch (it cannot have ended
    /// before a batch of an older one). The second is how a *phantom* leaves: an epoch this
    /// replica began as leader at its log end ([`LeaderEpochCache::begin_epoch`]) without
    /// writing in it, followed by records of an older epoch copied from the next leader. Kept,
    /// it would answer OffsetForLeaderEpoch for epochs it never had.
    pub(crate) fn assign(&mut self, epoch: LeaderEpoch, offset: Offset) -> bool {
        if epoch.0 < 0 || offset.0 < 0 {
            return false;
        }
        // Kafka's `isUpdateNeeded`: a new epoch, or the latest one starting earlier.
        if let Some((e, o)) = self.entries.last() {
            if *e == epoch && *o <= offset {
                return false;
            }
        }
        let mut dropped = Vec::new();
        while let Some(&(e, o)) = self.entries.last() {
            if e < epoch && o < offset {
                break;
            }
            dropped.push((e, o));
            self.entries.pop();
        }
        // As Kafka: one entry dropped at the same start is an epoch begun without records,
        // which is expected; anything more means the log diverged from what the cache said.
        if dropped.len() > 1 || dropped.first().is_some_and(|(_, o)| *o != offset) {
            tracing::warn!(%epoch, %offset, ?dropped, "a batch's epoch contradicts leader epoch entries; dropped them");
        }
        self.entries.push((epoch, offset));
        true
    }

    /// Records that a new leader begins `epoch` at `offset`, its log end, before appending
    /// anything, so followers asking where an older epoch ended are told `offset`. Only an
    /// epoch newer than every known one is recorded: leadership moves to newer epochs only,
    /// and an older one here would be stale metadata, not a fact about the log.
    pub(crate) fn begin_epoch(&mut self, epoch: LeaderEpoch, offset: Offset) -> bool {
        if self.latest().is_some_and(|latest| latest >= epoch) {
            return false;
        }
        self.assign(epoch, offset)
    }

    /// Latest epoch, if any.
    pub(crate) fn latest(&self) -> Option<LeaderEpoch> {
        self.entries.last().map(|e| e.0)
    }

    /// The epoch in effect at `offset`: the latest whose start is at or before it.
    pub(crate) fn epoch_at(&self, offset: Offset) -> Option<LeaderEpoch> {
        self.entries
            .iter()
            .rev()
            .find(|(_, start)| *start <= offset)
            .map(|(e, _)| *e)
    }

    /// Kafka's `endOffsetFor`: the largest epoch <= `epoch` and the offset where it ended (the
    /// next epoch's start, or `log_end` for the latest). An epoch older than every entry (its
    /// records are gone) ends where the first known epoch starts. `None` (Kafka's undefined
    /// epoch and offset) for a negative epoch, one newer than the latest, or an empty cache.
    pub(crate) fn end_offset_for(
        &self,
        epoch: LeaderEpoch,
        log_end: Offset,
    ) -> Option<(LeaderEpoch, Offset)> {
        let (latest, _) = *self.entries.last()?;
        if epoch.0 < 0 || epoch > latest {
            return None;
        }
        let Some(i) = self.entries.iter().rposition(|(e, _)| *e <= epoch) else {
            return Some((epoch, self.entries[0].1));
        };
        let end = self.entries.get(i + 1).map_or(log_end, |(_, start)| *start);
        Some((self.entries[i].0, end))
    }

    /// Drops epochs starting at or after `offset` (log truncated to `offset`).
    pub(crate) fn truncate_from_end(&mut self, offset: Offset) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(_, o)| *o < offset);
        before != self.entries.len()
    }

    /// Moves the first entries' start up to `offset` (log start advanced).
    pub(crate) fn truncate_from_start(&mut self, offset: Offset) -> bool {
        let keep_from = self.entries.iter().rposition(|(_, o)| *o <= offset);
        match keep_from {
            Some(i) if i > 0 || self.entries[0].1 < offset => {
                self.entries.drain(..i);
                self.entries[0].1 = offset;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> LeaderEpochCache {
        let mut c = LeaderEpochCache::default();
        assert!(c.assign(LeaderEpoch(1), Offset(0)));
        assert!(c.assign(LeaderEpoch(3), Offset(10)));
        assert!(
            !c.begin_epoch(LeaderEpoch(2), Offset(12)),
            "not newer: stale"
        );
        c
    }

    #[test]
    fn end_offset_for_epoch_follows_kafka() {
        let c = cache();
        assert_eq!(c.end_offset_for(LeaderEpoch(-1), Offset(20)), None);
        assert_eq!(
            c.end_offset_for(LeaderEpoch(0), Offset(20)),
            Some((LeaderEpoch(0), Offset(0))),
            "older than every entry: ends where the first known epoch starts"
        );
        assert_eq!(
            c.end_offset_for(LeaderEpoch(1), Offset(20)),
            Some((LeaderEpoch(1), Offset(10)))
        );
        assert_eq!(
            c.end_offset_for(LeaderEpoch(2), Offset(20)),
            Some((LeaderEpoch(1), Offset(10)))
        );
        assert_eq!(
            c.end_offset_for(LeaderEpoch(3), Offset(20)),
            Some((LeaderEpoch(3), Offset(20)))
        );
        assert_eq!(c.end_offset_for(LeaderEpoch(9), Offset(20)), None);
        assert_eq!(
            LeaderEpochCache::default().end_offset_for(LeaderEpoch(0), Offset(20)),
            None
        );
    }

    #[test]
    fn truncation_from_both_ends() {
        let mut c = cache();
        assert!(c.truncate_from_end(Offset(10)));
        assert_eq!(c.entries(), &[(LeaderEpoch(1), Offset(0))]);
        let mut c = cache();
        assert!(c.truncate_from_start(Offset(12)));
        assert_eq!(c.entries(), &[(LeaderEpoch(3), Offset(12))]);
    }

    #[test]
    fn a_batch_of_an_older_epoch_removes_the_later_epochs_it_contradicts() {
        let (e, o) = (LeaderEpoch, Offset);
        // Epoch 3 was begun at offset 10 by a leader that wrote nothing in it (a phantom once
        // this replica follows again): the records it then copies from 10 on are epoch 2's.
        let mut c = LeaderEpochCache::default();
        assert!(c.assign(e(1), o(0)));
        assert!(c.assign(e(3), o(10)));
        assert!(
            c.assign(e(2), o(10)),
            "Kafka's assign: non-monotonic entries go"
        );
        assert_eq!(c.entries(), &[(e(1), o(0)), (e(2), o(10))]);
        assert!(
            !c.assign(e(2), o(12)),
            "the same epoch further on changes nothing"
        );
        // A new leader's epoch is only recorded when it is newer than every known one.
        assert!(!c.begin_epoch(e(1), o(14)));
        assert!(c.begin_epoch(e(4), o(14)));
        assert_eq!(c.entries(), &[(e(1), o(0)), (e(2), o(10)), (e(4), o(14))]);
        // A checkpoint is read as Kafka reads it: entry by entry through `assign`.
        let c = LeaderEpochCache::from_entries(vec![(e(1), o(0)), (e(3), o(10)), (e(2), o(10))]);
        assert_eq!(c.entries(), &[(e(1), o(0)), (e(2), o(10))]);
    }
}
