//! Sparse, memory-mapped segment indexes in Kafka's entry formats.
//!
//! Both indexes are derived data: never checksummed, always rebuildable from the `.log` by
//! [`crate::segment::LogSegment`] recovery. The active segment's index files are preallocated
//! to `segment.index.bytes` and trimmed when the segment rolls or the log closes.
//!
//! Concurrency: one writer appends entries; readers binary-search the published entries
//! without locks. Truncation is logical (`entries` shrinks; bytes are not rewritten because a
//! truncated segment is sealed and the log rolls to a new one).

mod offset_index;
mod time_index;

pub(crate) use offset_index::OffsetIndex;
pub(crate) use time_index::TimeIndex;

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::error::{Result, StorageError};
use crate::mmap::MappedFile;

/// Fixed-size entries stored in a memory-mapped file.
#[derive(Debug)]
pub(crate) struct EntryFile {
    file: Arc<MappedFile>,
    entry_size: usize,
    entries: AtomicUsize,
}

impl EntryFile {
    /// Opens (or creates) an index file. `entries` valid entries are kept from its start;
    /// the file may grow up to `capacity_bytes`.
    pub(crate) fn open(
        path: &Path,
        entry_size: usize,
        capacity_bytes: usize,
        keep: Option<usize>,
    ) -> Result<EntryFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| StorageError::io(path, e))?;
        let len = file
            .metadata()
            .map_err(|e| StorageError::io(path, e))?
            .len() as usize;
        let stored = len / entry_size;
        let entries = keep.unwrap_or(stored).min(stored);
        let capacity = capacity_bytes.max(len) / entry_size * entry_size;
        let map = MappedFile::map(file, path, capacity.max(entry_size), entries * entry_size)?;
        Ok(EntryFile {
            file: Arc::new(map),
            entry_size,
            entries: AtomicUsize::new(entries),
        })
    }

    /// The index file's path (for errors).
    pub(crate) fn path(&self) -> &Path {
        self.file.path()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.load(Ordering::Acquire)
    }

    pub(crate) fn is_full(&self) -> bool {
        (self.len() + 1) * self.entry_size > self.file.capacity()
    }

    pub(crate) fn entry(&self, i: usize) -> Option<&[u8]> {
        if i >= self.len() {
            return None;
        }
        self.file
            .slice(i * self.entry_size..(i + 1) * self.entry_size)
    }

    /// Appends one entry. Fails (without side effects) when the file is full.
    pub(crate) fn push(&self, entry: &[u8], chunk: usize) -> Result<()> {
        debug_assert_eq!(entry.len(), self.entry_size);
        let n = self.len();
        let pos = n * self.entry_size;
        if pos < self.file.published() {
            // A logically truncated index: its bytes stay published, so it takes no more entries.
            return Err(StorageError::Corrupt {
                path: self.file.path().to_path_buf(),
                position: pos as u64,
                reason: "append to a truncated index".into(),
            });
        }
        let end = pos + self.entry_size;
        match self.file.ensure_allocated(end, chunk, false) {
            Ok(_) if end <= self.file.allocated() => self.file.write(pos, entry)?,
            // No fallocate(2) on this filesystem: pwrite(2) extends the file safely.
            Ok(_) => self.file.write_through(pos, entry)?,
            Err(_) if !self.file.can_preallocate() => self.file.write_through(pos, entry)?,
            Err(e) => return Err(e),
        }
        self.file.publish(pos + self.entry_size);
        self.entries.store(n + 1, Ordering::Release);
        Ok(())
    }

    /// Keeps the first `n` entries.
    pub(crate) fn truncate_entries(&self, n: usize) {
        self.entries.fetch_min(n, Ordering::AcqRel);
    }

    /// Binary search: the last entry `i` with `key(i) <= target`, if any.
    pub(crate) fn floor<K: Ord>(&self, target: K, key: impl Fn(&[u8]) -> K) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.entry(mid) {
                Some(e) if key(e) <= target => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo.checked_sub(1)
    }

    /// Trims the file to its entries and stops further growth.
    pub(crate) fn seal(&self) -> Result<()> {
        if self.len() * self.entry_size == self.file.published() {
            self.file.seal()
        } else {
            Ok(())
        }
    }

    pub(crate) fn flush(&self) -> Result<()> {
        self.file.flush()
    }
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(x)
}
