//! Segment recovery: validate every batch (CRC-32C included) from the start of the file or
//! from the last index entry, cut the file at the first bad byte, rebuild the indexes.
//!
//! The scan reads the file with `pread(2)` ([`FileBatches`]), not through a mapping, so a
//! media error met while recovering fails the open with an I/O error instead of a SIGBUS.

use std::fs;
use std::sync::atomic::Ordering;

use super::{open_existing, BeforeCut, LogSegment, RecoveryReport, SegmentFiles, INDEX_GROWTH};

use super::file_batches::{count_scanned, FileBatches};
use crate::batch::{BatchHeader, HEADER_LEN};
use crate::error::{Result, StorageError};
use crate::index::{OffsetIndex, TimeIndex};
use crate::types::{FilePosition, Offset};

/// The largest offset past its base a segment found on disk may hold: what an index entry's
/// 4-byte relative offset can represent. Appends stop at `i32::MAX` as Kafka does (they roll
/// first); recovery accepts up to `u32::MAX` so that segments written before that rule still
/// open whole, and cuts a batch beyond it rather than index a wrapped offset.
pub(crate) const MAX_INDEXABLE_OFFSET: i64 = u32::MAX as i64;

/// What one validating scan learned, so that indexing after it need not read the file again.
struct Summary {
    /// The scan covered the batches in `[from, upto)`.
    from: usize,
    upto: usize,
    next: i64,
    /// Largest batch max timestamp in the range (-1 if none).
    max_ts: i64,
    first_ts: Option<i64>,
    /// The index entries a rebuild from `from` makes: offset, position, time-index timestamp.
    entries: Vec<(i64, u32, i64)>,
    since_index: u32,
}

impl Summary {
    fn new(from: usize, base: Offset) -> Summary {
        Summary {
            from,
            upto: from,
            next: base.0,
            max_ts: -1,
            first_ts: None,
            entries: Vec::new(),
            since_index: 0,
        }
    }

    fn add(&mut self, at: usize, h: &BatchHeader, interval: u32) {
        self.first_ts.get_or_insert(h.max_timestamp);
        if self.since_index >= interval {
            self.entries
                .push((h.base_offset, at as u32, self.max_ts.max(h.max_timestamp)));
            self.since_index = 0;
        }
        self.since_index += h.size() as u32;
        self.max_ts = self.max_ts.max(h.max_timestamp);
        self.next = h.next_offset();
        self.upto = at + h.size();
    }
}

impl LogSegment {
    /// Opens the `.log` file for a scan, with its length.
    fn open_for_scan(&self) -> Result<(fs::File, usize)> {
        let file = open_existing(&self.log_path)?;
        let file_len = file
            .metadata()
            .map_err(|e| StorageError::io(&self.log_path, e))?
            .len() as usize;
        Ok((file, file_len))
    }

    /// Scans the whole file, cuts it at the first invalid batch, rebuilds indexes.
    pub(super) fn recover(&self, before_cut: BeforeCut<'_>) -> Result<RecoveryReport> {
        let (file, file_len) = self.open_for_scan()?;
        let (valid, reason, summary) = self.scan_valid_prefix(&file, file_len, 0)?;
        // Zeros after the last batch are preallocated space, not damage.
        let zero_tail = FileBatches::new(&file, &self.log_path, file_len, valid)
            .counted()
            .zeros_from(valid)?;
        drop(file);
        let reason = if zero_tail { None } else { reason };
        let report = self.cut_and_index(valid, file_len, reason, true, before_cut, summary)?;
        // Read back whole is not on disk: a killed process leaves its writes in the page
        // cache, where recovery reads them. Only a flush makes them durable.
        self.flushed.store(0, Ordering::Release);
        Ok(report)
    }

    /// Opens a segment written before the recovery point: trusts its indexes when they are
    /// consistent and scans only the tail after the last index entry.
    pub(super) fn load(&self, before_cut: BeforeCut<'_>) -> Result<RecoveryReport> {
        let (file, file_len) = self.open_for_scan()?;
        let index = OffsetIndex::open(&self.index_path, self.base, 0, None)?;
        let time_index = TimeIndex::open(&self.time_path, self.base, 0, None)?;
        let consistent = index.is_consistent(file_len as u32) && time_index.is_consistent();
        let start = if consistent {
            index.last().map_or(0, |(_, p)| p.0 as usize)
        } else {
            0
        };
        let (valid, reason, summary) = self.scan_valid_prefix(&file, file_len, start)?;
        drop((file, index, time_index));
        if !consistent || valid < file_len {
            if let Some(r) = &reason {
                tracing::warn!(segment = %self.log_path.display(), valid, file_len, reason = %r, "segment before the recovery point is damaged; truncating");
            }
            return self.cut_and_index(valid, file_len, reason, true, before_cut, summary);
        }
        self.cut_and_index(valid, file_len, None, false, before_cut, summary)
    }

    /// Finds the longest valid prefix of `file` from `start`: offsets must also increase and
    /// fit the segment (see [`MAX_INDEXABLE_OFFSET`]).
    fn scan_valid_prefix(
        &self,
        file: &fs::File,
        file_len: usize,
        start: usize,
    ) -> Result<(usize, Option<String>, Summary)> {
        let mut it = FileBatches::new(file, &self.log_path, file_len, start).counted();
        let mut summary = Summary::new(start, self.base);
        let mut next = self.base.0;
        while let Some((at, h)) = it.next_batch()? {
            if h.base_offset < next {
                let why = format!("batch at {at} has offset {} below {next}", h.base_offset);
                return Ok((at, Some(why), summary));
            }
            let last = h.base_offset as i128 + h.last_offset_delta as i128;
            if last - self.base.0 as i128 > MAX_INDEXABLE_OFFSET as i128 {
                let why = format!(
                    "batch at {at} ends at offset {last}, beyond what segment {} can index",
                    self.base
                );
                return Ok((at, Some(why), summary));
            }
            next = h.next_offset();
            summary.add(at, &h, self.params.index_interval_bytes);
        }
        let reason = it.defect().map(|d| format!("{d} at byte {}", it.pos()));
        Ok((it.pos(), reason, summary))
    }

    /// Cuts the log file to `valid` bytes and (re)builds in-memory state and, if asked, indexes.
    fn cut_and_index(
        &self,
        valid: usize,
        file_len: usize,
        reason: Option<String>,
        rebuild: bool,
        before_cut: BeforeCut<'_>,
        summary: Summary,
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
        let scan_file = open_existing(&self.log_path)?;
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
        if !rebuild && valid >= HEADER_LEN {
            // Only the first header: the segment was validated when it was written or
            // recovered, and reading its first batch whole would read up to a chunk per segment.
            let mut head = [0u8; HEADER_LEN];
            crate::io::pread(&scan_file, &self.log_path, &mut head, 0)?;
            count_scanned(HEADER_LEN);
            first_ts = BatchHeader::parse(&head).map(|h| h.max_timestamp);
        }
        if summary.from == scan_from && summary.upto == valid {
            // The validating scan already read this range: index from what it learned.
            if rebuild {
                first_ts = summary.first_ts;
                for (offset, at, ts) in &summary.entries {
                    if index.is_full() || time_index.is_full() {
                        break;
                    }
                    index.append(Offset(*offset), FilePosition(*at), chunk)?;
                    time_index.maybe_append(*ts, Offset(*offset), chunk)?;
                }
                since_index = summary.since_index;
            }
            if summary.upto > summary.from {
                next = summary.next;
            }
            max_ts = max_ts.max(summary.max_ts);
        }
        let rescan_from = if summary.from == scan_from && summary.upto == valid {
            valid
        } else {
            scan_from
        };
        let mut batches =
            FileBatches::new(&scan_file, &self.log_path, valid, rescan_from).counted();
        while let Some((at, h)) = batches.next_batch()? {
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
