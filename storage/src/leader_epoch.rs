//! `LeaderEpochCache`: which leader epoch started at which offset (KIP-101, KIP-279), so a
//! follower can ask the leader where its epoch ended and truncate instead of diverging.

use crate::types::{LeaderEpoch, Offset};

/// Ordered `(epoch, start offset)` pairs, both strictly increasing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LeaderEpochCache {
    entries: Vec<(LeaderEpoch, Offset)>,
}

impl LeaderEpochCache {
    pub(crate) fn from_entries(mut entries: Vec<(LeaderEpoch, Offset)>) -> Self {
        entries.sort();
        entries.dedup_by_key(|e| e.0);
        LeaderEpochCache { entries }
    }

    pub(crate) fn entries(&self) -> &[(LeaderEpoch, Offset)] {
        &self.entries
    }

    /// Records that `epoch` starts at `offset` if it is newer than the latest epoch.
    /// Returns true when the cache changed.
    pub(crate) fn assign(&mut self, epoch: LeaderEpoch, offset: Offset) -> bool {
        if epoch.0 < 0 {
            return false;
        }
        match self.entries.last() {
            Some((e, _)) if *e >= epoch => false,
            _ => {
                // An epoch never starts before an earlier one's start.
                self.entries.retain(|(_, o)| *o < offset);
                self.entries.push((epoch, offset));
                true
            }
        }
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
        assert!(!c.assign(LeaderEpoch(2), Offset(12)));
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
}
