//! Reads of a segment: finding a batch by offset or timestamp through the indexes, and views
//! of whole batches.

use bytes::Bytes;

use super::LogSegment;
use crate::batch::{self, BatchHeader, BatchIter};
use crate::error::Result;
use crate::mmap;
use crate::types::Offset;

impl LogSegment {
    /// The first batch whose last offset is at or after `offset`: its position and header.
    pub(crate) fn find(&self, offset: Offset) -> Result<Option<(usize, BatchHeader)>> {
        let files = self.files()?;
        let size = self.size() as usize;
        let (_, pos) = files.index.lookup(offset);
        let data = files.log.slice(0..size).unwrap_or(&[]);
        let mut at = (pos.0 as usize).min(size);
        while at + batch::HEADER_LEN <= size {
            let Some(h) = BatchHeader::parse(&data[at..]) else {
                break;
            };
            if h.batch_length < 0 || at + h.size() > size {
                return Err(self.corrupt(at, "batch framing broken"));
            }
            if h.last_offset() >= offset.0 {
                return Ok(Some((at, h)));
            }
            at += h.size();
        }
        Ok(None)
    }

    /// Whole batches starting with the one holding `from`, up to `max_bytes` (at least one
    /// batch when `min_one`), stopping before any batch starting at or after `max_offset`.
    pub(crate) fn read(
        &self,
        from: Offset,
        max_bytes: usize,
        max_offset: Offset,
        min_one: bool,
    ) -> Result<Option<Bytes>> {
        let Some((start, first)) = self.find(from)? else {
            return Ok(None);
        };
        if first.base_offset >= max_offset.0 {
            return Ok(Some(Bytes::new()));
        }
        let files = self.files()?;
        let size = self.size() as usize;
        let data = files.log.slice(0..size).unwrap_or(&[]);
        let mut end = start;
        while end + batch::HEADER_LEN <= size {
            let Some(h) = BatchHeader::parse(&data[end..]) else {
                break;
            };
            if h.base_offset >= max_offset.0 || h.batch_length < 0 || end + h.size() > size {
                break;
            }
            let would = end + h.size() - start;
            if would > max_bytes && !(min_one && end == start) {
                break;
            }
            end += h.size();
        }
        Ok(Some(mmap::view(&files.log, start..end).unwrap_or_default()))
    }

    /// The first batch whose max timestamp is at or after `ts`.
    pub(crate) fn find_by_timestamp(&self, ts: i64) -> Result<Option<(usize, BatchHeader)>> {
        if self.max_timestamp() < ts {
            return Ok(None);
        }
        let files = self.files()?;
        let start = match files.time_index.last_before(ts) {
            Some(t) => files.index.lookup(t.offset).1 .0 as usize,
            None => 0,
        };
        let size = self.size() as usize;
        let data = files.log.slice(0..size).unwrap_or(&[]);
        for (at, h) in BatchIter::new(&data[start.min(size)..]) {
            if h.max_timestamp >= ts {
                return Ok(Some((start + at, h)));
            }
        }
        Ok(None)
    }

    /// A zero-copy view of the batch at `pos` (found by `find`/`find_by_timestamp`).
    pub(crate) fn batch_at(&self, pos: usize, len: usize) -> Result<Bytes> {
        let files = self.files()?;
        mmap::view(&files.log, pos..pos + len)
            .ok_or_else(|| self.corrupt(pos, "batch beyond segment end"))
    }

    /// The headers of the batches from the one holding `from` on, found through the index
    /// (replaying state from an offset reads only what lies after it).
    pub(crate) fn headers_from(&self, from: Offset) -> Result<Vec<BatchHeader>> {
        let start = match self.find(from)? {
            Some((at, _)) => at,
            None => return Ok(Vec::new()),
        };
        let files = self.files()?;
        let data = files.log.slice(start..self.size() as usize).unwrap_or(&[]);
        Ok(BatchIter::new(data).map(|(_, h)| h).collect())
    }
}
