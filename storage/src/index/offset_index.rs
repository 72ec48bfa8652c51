//! `.index`: sparse map from relative offset (u32) to file position (u32), 8-byte big-endian
//! entries as in Kafka's OffsetIndex.

use std::path::Path;

use super::{u32_at, EntryFile};
use crate::error::Result;
use crate::types::{FilePosition, Offset, RelativeOffset};

const ENTRY: usize = 8;

/// A segment's offset index.
#[derive(Debug)]
pub(crate) struct OffsetIndex {
    entries: EntryFile,
    base: Offset,
}

impl OffsetIndex {
    pub(crate) fn open(
        path: &Path,
        base: Offset,
        capacity: usize,
        keep: Option<usize>,
    ) -> Result<Self> {
        Ok(OffsetIndex {
            entries: EntryFile::open(path, ENTRY, capacity, keep)?,
            base,
        })
    }

    fn decode(&self, e: &[u8]) -> (Offset, FilePosition) {
        (
            self.base.plus(u32_at(e, 0) as i64),
            FilePosition(u32_at(e, 4)),
        )
    }

    /// The last entry at or before `target`, or the segment start.
    pub(crate) fn lookup(&self, target: Offset) -> (Offset, FilePosition) {
        let rel = target
            .0
            .saturating_sub(self.base.0)
            .clamp(0, u32::MAX as i64) as u32;
        self.entries
            .floor(rel, |e| u32_at(e, 0))
            .and_then(|i| self.entries.entry(i))
            .map(|e| self.decode(e))
            .unwrap_or((self.base, FilePosition(0)))
    }

    pub(crate) fn last(&self) -> Option<(Offset, FilePosition)> {
        let n = self.entries.len();
        n.checked_sub(1)
            .and_then(|i| self.entries.entry(i))
            .map(|e| self.decode(e))
    }

    pub(crate) fn append(
        &self,
        offset: Offset,
        position: FilePosition,
        chunk: usize,
    ) -> Result<()> {
        let rel =
            RelativeOffset::between(self.base, offset).ok_or_else(|| self.unindexable(offset))?;
        let mut e = [0u8; ENTRY];
        e[..4].copy_from_slice(&rel.0.to_be_bytes());
        e[4..].copy_from_slice(&position.0.to_be_bytes());
        self.entries.push(&e, chunk)
    }

    fn unindexable(&self, offset: Offset) -> crate::error::StorageError {
        crate::error::StorageError::Corrupt {
            path: self.entries.path().to_path_buf(),
            position: 0,
            reason: format!(
                "offset {offset} cannot be indexed relative to base {}",
                self.base
            ),
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.entries.is_full()
    }

    /// Drops entries for offsets at or after `offset`.
    pub(crate) fn truncate_to(&self, offset: Offset) {
        let keep = match offset.0.checked_sub(1) {
            Some(last) if last >= self.base.0 => self
                .entries
                .floor((last - self.base.0).min(u32::MAX as i64) as u32, |e| {
                    u32_at(e, 0)
                })
                .map_or(0, |i| i + 1),
            _ => 0,
        };
        self.entries.truncate_entries(keep);
    }

    /// Kafka's sanity check: entries strictly increase in offset and position.
    pub(crate) fn is_consistent(&self, log_len: u32) -> bool {
        let mut prev: Option<(Offset, FilePosition)> = None;
        for i in 0..self.entries.len() {
            let Some(e) = self.entries.entry(i) else {
                return false;
            };
            let cur = self.decode(e);
            if cur.1 .0 >= log_len.max(1) && cur.1 .0 != 0 {
                return false;
            }
            if let Some(p) = prev {
                if cur.0 <= p.0 || cur.1 <= p.1 {
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
