//! Batches of a `.log` file read with `pread(2)`, a window at a time.
//!
//! Every read of log data goes through here (recovery, fetches, lookups, the cleaner), never
//! through the segment's mapping, which only the writer uses: a media error (a bad sector)
//! is then an `EIO` the broker answers with KAFKA_STORAGE_ERROR and reports for the log
//! directory, where a read fault on a mapped page would be a SIGBUS that kills the process.
//! Kafka reads its log files with `FileChannel` reads for the same reason.

use std::fs::File;
use std::path::Path;

use crate::batch::{check_batch, BatchDefect, BatchHeader, HEADER_LEN, MIN_BATCH_LENGTH};
use crate::error::Result;
use crate::io;

/// Bytes read per `pread(2)` by a scan that reads whole batches.
pub(crate) const BATCH_WINDOW: usize = 1 << 20;

/// Bytes read per `pread(2)` by a scan that reads only headers: a page, which holds the
/// headers of the few batches between an index entry and its neighbour
/// (`index.interval.bytes`, 4096) and costs little more to copy than one header.
pub(crate) const HEADER_WINDOW: usize = 4 << 10;

thread_local! {
    /// Bytes this thread has read from `.log` files to open or recover segments: opening a log
    /// runs on one thread, which reports the difference (see `Log::load_stats`).
    static SCANNED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Bytes of `.log` files the calling thread has read to open segments so far.
pub(crate) fn bytes_scanned_by_this_thread() -> u64 {
    SCANNED.with(std::cell::Cell::get)
}

/// Counts `n` bytes read to open a segment (see [`bytes_scanned_by_this_thread`]).
pub(crate) fn count_scanned(n: usize) {
    SCANNED.with(|s| s.set(s.get() + n as u64));
}

/// Whole batches (or only their headers) of the first `len` bytes of a `.log` file, from a
/// position on, as [`crate::batch::BatchIter`] finds them in memory.
pub(crate) struct FileBatches<'f> {
    file: &'f File,
    path: &'f Path,
    len: usize,
    window: usize,
    /// Whether reads count as opening the segment (recovery scans do; serving reads do not).
    counted: bool,
    buf: Vec<u8>,
    buf_start: usize,
    pos: usize,
    defect: Option<BatchDefect>,
}

impl<'f> FileBatches<'f> {
    /// Batches of `file` (of `len` valid bytes) from position `from`, read [`BATCH_WINDOW`]
    /// bytes at a time.
    pub(crate) fn new(file: &'f File, path: &'f Path, len: usize, from: usize) -> Self {
        FileBatches {
            file,
            path,
            len,
            window: BATCH_WINDOW,
            counted: false,
            buf: Vec::new(),
            buf_start: 0,
            pos: from.min(len),
            defect: None,
        }
    }

    /// Reads `window` bytes at a time instead.
    pub(crate) fn window(mut self, window: usize) -> Self {
        self.window = window.max(HEADER_LEN);
        self
    }

    /// Counts what it reads as bytes scanned to open a segment.
    pub(crate) fn counted(mut self) -> Self {
        self.counted = true;
        self
    }

    /// Where the scan stopped (or stands): the first byte not yet returned.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Why the scan stopped before the end, if it did.
    pub(crate) fn defect(&self) -> Option<&BatchDefect> {
        self.defect.as_ref()
    }

    /// The bytes `[at, at + n)` (clamped to the valid length), read from disk if not buffered.
    pub(crate) fn bytes(&mut self, at: usize, n: usize) -> Result<&[u8]> {
        let at = at.min(self.len);
        let n = n.min(self.len - at);
        let buffered = self.buf_start..self.buf_start + self.buf.len();
        if !(buffered.contains(&at) && at + n <= buffered.end) {
            self.buf.resize(n.max(self.window).min(self.len - at), 0);
            io::pread(self.file, self.path, &mut self.buf, at as u64)?;
            if self.counted {
                count_scanned(self.buf.len());
            }
            self.buf_start = at;
        }
        let from = at - self.buf_start;
        Ok(&self.buf[from..from + n])
    }

    /// The next valid batch (framing, magic and CRC-32C checked): its position and header;
    /// `None` at the end or at the first defect (see [`FileBatches::defect`]).
    pub(crate) fn next_batch(&mut self) -> Result<Option<(usize, BatchHeader)>> {
        if self.defect.is_some() || self.pos >= self.len {
            return Ok(None);
        }
        let (at, len) = (self.pos, self.len);
        let head = self.bytes(at, HEADER_LEN)?;
        let size = BatchHeader::parse(head).map_or(0, |h| h.size());
        let bytes = if size > HEADER_LEN && size <= len - at {
            self.bytes(at, size)?
        } else {
            // A declared size past the end is not read: `check_batch` finds the header alone
            // truncated.
            head
        };
        match check_batch(bytes, usize::MAX) {
            Ok(h) => {
                self.pos += h.size();
                Ok(Some((at, h)))
            }
            Err(d) => {
                self.defect = Some(d);
                Ok(None)
            }
        }
    }

    /// The next batch's header, its framing checked but not its contents (bytes the writer
    /// or recovery already validated): its position and header; `None` at the end (fewer
    /// bytes left than a header) or at a framing defect.
    pub(crate) fn next_header(&mut self) -> Result<Option<(usize, BatchHeader)>> {
        if self.defect.is_some() || self.pos + HEADER_LEN > self.len {
            return Ok(None);
        }
        let at = self.pos;
        let Some(h) = BatchHeader::parse(self.bytes(at, HEADER_LEN)?) else {
            return Ok(None);
        };
        if h.batch_length < MIN_BATCH_LENGTH || h.size() > self.len - at {
            self.defect = Some(BatchDefect::Length(h.batch_length));
            return Ok(None);
        }
        self.pos += h.size();
        Ok(Some((at, h)))
    }

    /// True when every byte from `at` to the end is zero (preallocated space).
    pub(crate) fn zeros_from(&mut self, mut at: usize) -> Result<bool> {
        while at < self.len {
            let window = self.window;
            let chunk = self.bytes(at, window)?;
            if chunk.iter().any(|b| *b != 0) {
                return Ok(false);
            }
            at += chunk.len();
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{set_offset_and_epoch, test_support::values};

    fn batch_bytes(base: i64, n: usize, size: usize) -> Vec<u8> {
        let mut b = values(n, size, 0);
        set_offset_and_epoch(&mut b, base, 0);
        b
    }

    fn file_with(batches: &[Vec<u8>], tail: &[u8]) -> (tempfile::NamedTempFile, usize) {
        use std::io::Write;
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        for b in batches {
            f.write_all(b).expect("write");
        }
        f.write_all(tail).expect("write");
        let len = f.as_file().metadata().expect("meta").len() as usize;
        (f, len)
    }

    #[test]
    fn headers_and_batches_agree_across_window_edges() {
        let batches: Vec<Vec<u8>> = (0..40).map(|i| batch_bytes(i * 3, 3, 200)).collect();
        let (f, len) = file_with(&batches, &[]);
        for window in [HEADER_LEN, 100, 1000, BATCH_WINDOW] {
            let whole: Vec<_> = {
                let mut it = FileBatches::new(f.as_file(), f.path(), len, 0).window(window);
                std::iter::from_fn(|| it.next_batch().expect("read")).collect()
            };
            let headers: Vec<_> = {
                let mut it = FileBatches::new(f.as_file(), f.path(), len, 0).window(window);
                std::iter::from_fn(|| it.next_header().expect("read")).collect()
            };
            assert_eq!(whole.len(), 40, "window {window}");
            assert_eq!(whole, headers, "window {window}");
        }
    }

    #[test]
    fn a_length_past_the_end_is_a_defect_not_a_read_beyond() {
        let good = batch_bytes(0, 1, 10);
        let mut bad = batch_bytes(1, 1, 10);
        bad[8..12].copy_from_slice(&(1_000_000i32).to_be_bytes());
        let (f, len) = file_with(&[good.clone(), bad], &[]);
        let mut it = FileBatches::new(f.as_file(), f.path(), len, 0);
        assert!(it.next_header().expect("read").is_some());
        assert_eq!(it.next_header().expect("read"), None);
        assert_eq!(it.pos(), good.len());
        assert!(matches!(it.defect(), Some(BatchDefect::Length(1_000_000))));
    }
}
