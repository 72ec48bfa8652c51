//! Reads of a segment: finding a batch by offset or timestamp through the indexes, and copies
//! of whole batches. Every byte is read with `pread(2)` (see [`FileBatches`]).

use bytes::Bytes;

use super::file_batches::{FileBatches, HEADER_WINDOW};
use super::{LogSegment, SegmentFiles};
use crate::batch::{BatchHeader, HEADER_LEN, MIN_BATCH_LENGTH};
use crate::error::Result;
use crate::types::Offset;

impl LogSegment {
    /// The batches of `files` from byte `from` up to this segment's valid size.
    pub(crate) fn file_batches<'f>(
        &'f self,
        files: &'f SegmentFiles,
        from: usize,
    ) -> FileBatches<'f> {
        FileBatches::new(files.log.file(), &self.log_path, self.size() as usize, from)
    }

    /// The first batch whose last offset is at or after `offset`: its position and header.
    pub(crate) fn find(&self, offset: Offset) -> Result<Option<(usize, BatchHeader)>> {
        let files = self.files()?;
        let (_, pos) = files.index.lookup(offset);
        let mut headers = self
            .file_batches(&files, pos.0 as usize)
            .window(HEADER_WINDOW);
        while let Some((at, h)) = headers.next_header()? {
            if h.last_offset() >= offset.0 {
                return Ok(Some((at, h)));
            }
        }
        match headers.defect() {
            Some(_) => Err(self.corrupt(headers.pos(), "batch framing broken")),
            None => Ok(None),
        }
    }

    /// Whole batches starting with the one holding `from`, up to `max_bytes` (at least one
    /// batch when `min_one`), stopping before any batch starting at or after `max_offset`.
    ///
    /// One `pread(2)` usually serves the whole read: it starts at the index entry below
    /// `from` and covers the index interval (where the batch holding `from` starts) plus
    /// `max_bytes`. Only a batch found further on, or a first batch larger than that, costs a
    /// second read.
    pub(crate) fn read(
        &self,
        from: Offset,
        max_bytes: usize,
        max_offset: Offset,
        min_one: bool,
    ) -> Result<Option<Bytes>> {
        let files = self.files()?;
        let size = self.size() as usize;
        let (_, pos) = files.index.lookup(from);
        let pos = (pos.0 as usize).min(size);
        let guess = (self.params.index_interval_bytes as usize + HEADER_LEN)
            .saturating_add(max_bytes.max(1));
        let head = files.log.read(pos..size.min(pos.saturating_add(guess)))?;
        let (start, first) = match first_holding(&head, from) {
            Some((at, h)) if h.batch_length >= MIN_BATCH_LENGTH && pos + at + h.size() <= size => {
                (pos + at, h)
            }
            Some((at, _)) => return Err(self.corrupt(pos + at, "batch framing broken")),
            // Not within the first read: look further with the headers alone.
            None => match self.find(from)? {
                Some(found) => found,
                None => return Ok(None),
            },
        };
        if first.base_offset >= max_offset.0 {
            return Ok(Some(Bytes::new()));
        }
        let mut want = max_bytes.min(size - start);
        if min_one {
            want = want.max(first.size());
        }
        let data = if start + want <= pos + head.len() {
            head.slice(start - pos..start - pos + want)
        } else {
            files.log.read(start..start + want)?
        };
        let mut end = 0;
        while end + HEADER_LEN <= data.len() {
            let Some(h) = BatchHeader::parse(&data[end..]) else {
                break;
            };
            if h.base_offset >= max_offset.0 || h.batch_length < 0 || end + h.size() > data.len() {
                break;
            }
            if end + h.size() > max_bytes && !(min_one && end == 0) {
                break;
            }
            end += h.size();
        }
        Ok(Some(data.slice(0..end)))
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
        let mut headers = self.file_batches(&files, start).window(HEADER_WINDOW);
        while let Some((at, h)) = headers.next_header()? {
            if h.max_timestamp >= ts {
                return Ok(Some((at, h)));
            }
        }
        Ok(None)
    }

    /// A copy of the batch at `pos` (found by `find`/`find_by_timestamp`).
    pub(crate) fn batch_at(&self, pos: usize, len: usize) -> Result<Bytes> {
        let files = self.files()?;
        if pos + len > self.size() as usize {
            return Err(self.corrupt(pos, "batch beyond segment end"));
        }
        files.log.read(pos..pos + len)
    }

    /// The headers of the batches from the one holding `from` on, found through the index
    /// (replaying state from an offset reads only what lies after it).
    pub(crate) fn headers_from(&self, from: Offset) -> Result<Vec<BatchHeader>> {
        let start = match self.find(from)? {
            Some((at, _)) => at,
            None => return Ok(Vec::new()),
        };
        let files = self.files()?;
        let mut headers = self.file_batches(&files, start).window(HEADER_WINDOW);
        let mut out = Vec::new();
        while let Some((_, h)) = headers.next_header()? {
            out.push(h);
        }
        Ok(out)
    }
}

/// The first batch in `buf` (read from an index position) whose last offset is at or after
/// `from`: its position in `buf` and header. `None` when `buf` ends first; a header whose
/// length is broken is returned as found, for the caller to refuse.
fn first_holding(buf: &[u8], from: Offset) -> Option<(usize, BatchHeader)> {
    let mut at = 0;
    while at + HEADER_LEN <= buf.len() {
        let h = BatchHeader::parse(&buf[at..])?;
        if h.batch_length < MIN_BATCH_LENGTH {
            return Some((at, h));
        }
        if h.last_offset() >= from.0 {
            return Some((at, h));
        }
        at += h.size();
    }
    None
}
