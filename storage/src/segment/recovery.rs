//! Segment recovery: validate every batch (CRC-32C included) from the start of the file or
//! from the last index entry, cut the file at the first bad byte, rebuild the indexes.

use std::fs;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{open_existing, BeforeCut, LogSegment, RecoveryReport, SegmentFiles, INDEX_GROWTH};
use crate::batch::BatchIter;
use crate::error::{Result, StorageError};
use crate::index::{OffsetIndex, TimeIndex};
use crate::mmap::MappedFile;
use crate::types::{FilePosition, Offset};

/// The largest offset past its base a segment found on disk may hold: what an index entry's
/// 4-byte relative offset can represent. Appends stop at `i32::MAX` as Kafka does (they roll
/// first); recovery accepts up to `u32::MAX` so that segments written before that rule still
/// open whole, and cuts a batch beyond it rather than index a wrapped offset.
pub(crate) const MAX_INDEXABLE_OFFSET: i64 = u32::MAX as i64;

impl LogSegment {
    /// Maps the whole `.log` file read-only for a scan, with its length.
    fn map_whole_file(&self) -> Result<(Arc<MappedFile>, usize)> {
        let file = open_existing(&self.log_path)?;
        let file_len = file
            .metadata()
            .map_err(|e| StorageError::io(&self.log_path, e))?
            .len() as usize;
        Ok((
            self.log_maps
                .map(file, &self.log_path, file_len, file_len)?,
            file_len,
        ))
    }

    /// Scans the whole file, cuts it at the first invalid batch, rebuilds indexes.
    pub(super) fn recover(&self, before_cut: BeforeCut<'_>) -> Result<RecoveryReport> {
        let (map, file_len) = self.map_whole_file()?;
        let data = map.slice(0..file_len).unwrap_or(&[]);
        let (valid, reason) = self.scan_valid_prefix(data, 0);
        // Zeros after the last batch are preallocated space, not damage.
        let zero_tail = data.get(valid..).is_some_and(|t| t.iter().all(|b| *b == 0));
        drop(map);
        let reason = if zero_tail { None } else { reason };
        let report = self.cut_and_index(valid, file_len, reason, true, before_cut)?;
        // Read back whole is not on disk: a killed process leaves its writes in the page
        // cache, where recovery reads them. Only a flush makes them durable.
        self.flushed.store(0, Ordering::Release);
        Ok(report)
    }

    /// Opens a segment written before the recovery point: trusts its indexes when they are
    /// consistent and scans only the tail after the last index entry.
    pub(super) fn load(&self, before_cut: BeforeCut<'_>) -> Result<RecoveryReport> {
        let (map, file_len) = self.map_whole_file()?;
        let index = OffsetIndex::open(&self.index_path, self.base, 0, None)?;
        let time_index = TimeIndex::open(&self.time_path, self.base, 0, None)?;
        let consistent = index.is_consistent(file_len as u32) && time_index.is_consistent();
        let start = if consistent {
            index.last().map_or(0, |(_, p)| p.0 as usize)
        } else {
            0
        };
        let data = map.slice(0..file_len).unwrap_or(&[]);
        let (valid, reason) = self.scan_valid_prefix(data, start);
        drop((map, index, time_index));
        if !consistent || valid < file_len {
            if let Some(r) = &reason {
                tracing::warn!(segment = %self.log_path.display(), valid, file_len, reason = %r, "segment before the recovery point is damaged; truncating");
            }
            return self.cut_and_index(valid, file_len, reason, true, before_cut);
        }
        self.cut_and_index(valid, file_len, None, false, before_cut)
    }

    /// Finds the longest valid prefix from `start`: offsets must also increase and fit the
    /// segment (see [`MAX_INDEXABLE_OFFSET`]).
    fn scan_valid_prefix(&self, data: &[u8], start: usize) -> (usize, Option<String>) {
        let mut it = BatchIter::new(data.get(start..).unwrap_or(&[]));
        let mut next = self.base.0;
        let mut end = 0;
        for (at, h) in it.by_ref() {
            if h.base_offset < next {
                return (
                    start + at,
                    Some(format!(
                        "batch at {} has offset {} below {}",
                        start + at,
                        h.base_offset,
                        next
                    )),
                );
            }
            let last = h.base_offset as i128 + h.last_offset_delta as i128;
            let relative_last = last - self.base.0 as i128;
            if relative_last > MAX_INDEXABLE_OFFSET as i128 {
                return (
                    start + at,
                    Some(format!(
                        "batch at {} ends at offset {}, beyond what segment {} can index",
                        start + at,
                        last,
                        self.base
                    )),
                );
            }
            next = h.next_offset();
            end = at + h.size();
        }
        let (stop, defect) = it.stop();
        debug_assert!(stop >= end);
        let reason = defect.map(|d| format!("{d} at byte {}", start + stop));
        (start + stop, reason)
    }

    /// Cuts the log file to `valid` bytes and (re)builds in-memory state and, if asked, indexes.
    fn cut_and_index(
        &self,
        valid: usize,
        file_len: usize,
        reason: Option<String>,
        rebuild: bool,
        before_cut: BeforeCut<'_>,
    ) -> Result<RecoveryReport> {
        if valid < file_len {
            before_cut()?;
            let f = open_existing(&self.log_path)?;
            // The scan's mapping was dropped before: none of this file can be alive.
            if !self.log_maps.shrink(&f, &self.log_path, valid as u64)? {
                return Err(self.corrupt(valid, "file still mapped when recovery cuts it"));
            }
            f.sync_all()
                .map_err(|e| StorageError::io(&self.log_path, e))?;
        }
        if rebuild {
            for p in [&self.index_path, &self.time_path] {
                if p.exists() {
                    fs::remove_file(p).map_err(|e| StorageError::io(p, e))?;
                }
            }
        }
        let file = open_existing(&self.log_path)?;
        let log = self.log_maps.map(file, &self.log_path, valid, valid)?;
        let cap = if rebuild {
            self.params.index_bytes as usize
        } else {
            0
        };
        let index = OffsetIndex::open(&self.index_path, self.base, cap, None)?;
        let time_index = TimeIndex::open(&self.time_path, self.base, cap, None)?;
        let data = log.slice(0..valid).unwrap_or(&[]);
        let mut max_ts = time_index.last().map_or(-1, |t| t.timestamp);
        let mut next = self.base.0;
        let mut first_ts = None;
        let mut since_index = 0u32;
        let chunk = INDEX_GROWTH;
        let scan_from = if rebuild {
            0
        } else {
            index.last().map_or(0, |(_, p)| p.0 as usize)
        };
        if !rebuild {
            if let Some((_, h)) = BatchIter::new(data).next() {
                first_ts = Some(h.max_timestamp);
            }
        }
        for (at, h) in BatchIter::new(&data[scan_from..]) {
            let at = scan_from + at;
            if rebuild {
                if first_ts.is_none() {
                    first_ts = Some(h.max_timestamp);
                }
                if since_index >= self.params.index_interval_bytes
                    && !index.is_full()
                    && !time_index.is_full()
                {
                    index.append(Offset(h.base_offset), FilePosition(at as u32), chunk)?;
                    time_index.maybe_append(
                        max_ts.max(h.max_timestamp),
                        Offset(h.base_offset),
                        chunk,
                    )?;
                    since_index = 0;
                }
                since_index += h.size() as u32;
            }
            max_ts = max_ts.max(h.max_timestamp);
            next = h.next_offset();
        }
        self.size.store(valid as u32, Ordering::Release);
        self.flushed.store(valid as u32, Ordering::Release);
        self.next_offset.store(next, Ordering::Release);
        self.max_timestamp.store(max_ts, Ordering::Release);
        self.bytes_since_index.store(since_index, Ordering::Release);
        self.first_batch_ts
            .store(first_ts.unwrap_or(-1), Ordering::Release);
        if let Ok(Ok(m)) = fs::metadata(&self.log_path).map(|m| m.modified()) {
            let ms = m
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            self.created_ms.store(ms, Ordering::Release);
        }
        if rebuild {
            index.seal()?;
            time_index.seal()?;
        }
        self.install(SegmentFiles {
            log,
            index,
            time_index,
        });
        Ok(RecoveryReport {
            truncated_bytes: (file_len - valid) as u64,
            reason: if valid < file_len { reason } else { None },
        })
    }
}
