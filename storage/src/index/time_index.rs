//! `.timeindex`: sparse map from the largest timestamp seen so far (i64) to the relative
//! offset (u32) of the batch that carried it, 12-byte big-endian entries as in Kafka's TimeIndex.

use std::path::Path;

use super::{i64_at, u32_at, EntryFile};
use crate::error::Result;
use crate::types::{Offset, RelativeOffset, TimestampOffset};

const ENTRY: usize = 12;

/// A segment's time index.
#[derive(Debug)]
pub(crate) struct TimeIndex {
    entries: EntryFile,
    base: Offset,
}

impl TimeIndex {
    pub(crate) fn open(
        path: &Path,
        base: Offset,
        capacity: usize,
        keep: Option<usize>,
    ) -> Result<Self> {
        Ok(TimeIndex {
            entries: EntryFile::open(path, ENTRY, capacity, keep)?,
            base,
        })
    }

    fn decode(&self, e: &[u8]) -> TimestampOffset {
        TimestampOffset {
            timestamp: i64_at(e, 0),
            offset: self.base.plus(u32_at(e, 8) as i64),
        }
    }

    /// The last entry whose timestamp is strictly below `ts`: every record before its offset
    /// is older than `ts`, so a search for `ts` may start there.
    pub(crate) fn last_before(&self, ts: i64) -> Option<TimestampOffset> {
        let i = self.entries.floor(ts.saturating_sub(1), |e| i64_at(e, 0))?;
        self.entries.entry(i).map(|e| self.decode(e))
    }

    pub(crate) fn last(&self) -> Option<TimestampOffset> {
        let n = self.entries.len();
        n.checked_sub(1)
            .and_then(|i| self.entries.entry(i))
            .map(|e| self.decode(e))
    }

    /// Appends an entry if `ts` exceeds the last one (entries increase in both fields).
    pub(crate) fn maybe_append(&self, ts: i64, offset: Offset, chunk: usize) -> Result<()> {
        if let Some(last) = self.last() {
            if ts <= last.timestamp || offset <= last.offset {
                return Ok(());
            }
        }
        let mut e = [0u8; ENTRY];
        e[..8].copy_from_slice(&ts.to_be_bytes());
        e[8..].copy_from_slice(
            &RelativeOffset::between(self.base, offset)
                .ok_or_else(|| crate::error::StorageError::Corrupt {
                    path: self.entries.path().to_path_buf(),
                    position: 0,
                    reason: format!(
                        "offset {offset} cannot be indexed relative to base {}",
                        self.base
                    ),
                })?
                .0
                .to_be_bytes(),
        );
        self.entries.push(&e, chunk)
    }

    pub(crate) fn is_full(&self) -> bool {
        self.entries.is_full()
    }

    /// Drops entries for offsets at or after `offset`.
    pub(crate) fn truncate_to(&self, offset: Offset) {
        let mut keep = self.entries.len();
        while keep > 0 {
            match self.entries.entry(keep - 1) {
                Some(e) if self.decode(e).offset >= offset => keep -= 1,
                _ => break,
            }
        }
        self.entries.truncate_entries(keep);
    }

    pub(crate) fn is_consistent(&self) -> bool {
        let mut prev: Option<TimestampOffset> = None;
        for i in 0..self.entries.len() {
            let Some(e) = self.entries.entry(i) else {
                return false;
            };
            let cur = self.decode(e);
            if let Some(p) = prev {
                if cur.timestamp <= p.timestamp || cur.offset <= p.offset {
                    return false;
                }
            }
            prev = Some(cur);
        }
        true
    }

    pub(crate) fn seal(&self) -> Result<()> {
        self.entries.seal()
    }

    pub(crate) fn flush(&self) -> Result<()> {
        self.entries.flush()
    }
}
