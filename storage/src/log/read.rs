//! The read path: whole batches copied with `pread(2)`, and lookups by timestamp.

use bytes::Bytes;

use super::Log;
use crate::error::{Result, StorageError};
use crate::record;
use crate::types::{Offset, TimestampOffset};

/// Parameters of one read.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Read from the batch containing this offset.
    pub from: Offset,
    /// Stop before exceeding this many bytes.
    pub max_bytes: usize,
    /// Only batches starting below this offset (e.g. the high watermark); default: log end.
    pub max_offset: Option<Offset>,
    /// Return the first batch even if it is larger than `max_bytes` (Kafka's KIP-74 rule).
    pub min_one_batch: bool,
}

impl ReadOptions {
    /// Reads from `from`, up to 1 MiB, at least one batch, bounded by the log end.
    pub fn from(from: Offset) -> ReadOptions {
        ReadOptions {
            from,
            max_bytes: 1 << 20,
            max_offset: None,
            min_one_batch: true,
        }
    }
}

/// The result of a read.
#[derive(Debug, Clone)]
pub struct FetchData {
    /// Whole record batches, as stored; empty when nothing is available.
    pub records: Bytes,
    /// The log's offsets when the read was served.
    pub offsets: super::LogOffsets,
}

impl Log {
    /// Reads whole batches starting with the one that contains `opts.from` (as Kafka does,
    /// the first batch may start before it). Errors with `OffsetOutOfRange` when `from` is
    /// below the log start or beyond the log end; at the log end the result is empty.
    pub fn read(&self, opts: &ReadOptions) -> Result<FetchData> {
        let offsets = self.offsets();
        if opts.from < offsets.log_start || opts.from > offsets.log_end {
            return Err(StorageError::OffsetOutOfRange {
                partition: self.tp.clone(),
                requested: opts.from,
                log_start: offsets.log_start,
                log_end: offsets.log_end,
            });
        }
        let max_offset = opts
            .max_offset
            .unwrap_or(offsets.log_end)
            .min(offsets.log_end);
        let mut records = Bytes::new();
        if opts.from < max_offset {
            for seg in self.segments_from(opts.from) {
                if seg.next_offset() <= opts.from {
                    continue;
                }
                if let Some(b) =
                    seg.read(opts.from, opts.max_bytes, max_offset, opts.min_one_batch)?
                {
                    records = b;
                    break;
                }
            }
        }
        Ok(FetchData { records, offsets })
    }

    /// The first record whose timestamp is at or after `ts` (ListOffsets by timestamp).
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<TimestampOffset>> {
        let log_start = self.offsets().log_start;
        for seg in self.segments_from(log_start) {
            let Some((pos, h)) = seg.find_by_timestamp(ts)? else {
                continue;
            };
            let batch = seg.batch_at(pos, h.size())?;
            let found = if h.is_log_append_time() {
                Some(TimestampOffset {
                    timestamp: h.max_timestamp,
                    offset: Offset(h.base_offset),
                })
            } else {
                record::first_at_or_after(&batch, ts)
                    .map_err(|e| self.corrupt_batch(&seg, pos, e))?
            };
            if let Some(mut t) = found {
                t.offset = t.offset.max(log_start);
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    /// The record with the largest timestamp (ListOffsets MAX_TIMESTAMP, KIP-734); the first
    /// such record when several share it.
    pub fn max_timestamp(&self) -> Result<Option<TimestampOffset>> {
        let log_start = self.offsets().log_start;
        let segs = self.segments_from(log_start);
        let Some(max) = segs
            .iter()
            .map(|s| s.max_timestamp())
            .max()
            .filter(|t| *t >= 0)
        else {
            return Ok(None);
        };
        self.offset_for_timestamp(max)
    }

    fn corrupt_batch(
        &self,
        seg: &crate::segment::LogSegment,
        pos: usize,
        e: record::RecordError,
    ) -> StorageError {
        StorageError::Corrupt {
            path: seg.log_path().to_path_buf(),
            position: pos as u64,
            reason: e.to_string(),
        }
    }
}
