//! The one module with `unsafe`: memory-mapped segment and index files.
//!
//! A [`MappedFile`] maps a file over a fixed *capacity* that may exceed the file's length
//! (the kernel allows it; touching a page past end-of-file raises SIGBUS). Two watermarks make
//! every access provably inside real, stable bytes:
//!
//! - `allocated`: bytes backed by real blocks (`fallocate`d or already written). Writes through
//!   the mapping must end at or below it, so a full disk is an `ENOSPC` from `fallocate`,
//!   never a SIGBUS.
//! - `published`: bytes that readers may see. It only grows. Writes must start at or above
//!   it, so published bytes are never modified while a reader may be reading them; readers
//!   may only see below it.
//!
//! Truncation is therefore logical (the owner keeps its own, smaller valid length and rolls
//! to a new file), and a file is only shrunk with `ftruncate` once no view of the shrunk
//! range can exist: either the range was never published ([`MappedFile::seal`], to this
//! mapping's own published length, on a file that has no other mapping), or no mapping of
//! the file is alive at all ([`FileMappings::shrink`]). The last reference to *one* mapping
//! proves nothing: a file may be mapped several times over its life (a sealed segment is
//! unmapped under the map budget while a reader still holds it, then mapped again by a later
//! read), so every mapping of a file that may shrink is registered in its [`FileMappings`].
//!
//! Readers of `.log` data do not touch the mapping at all: they copy published bytes with
//! `pread(2)` ([`MappedFile::read`], [`crate::segment::FileBatches`]), so a media error is an
//! `EIO` they report rather than a SIGBUS for the whole process. Index files are read through
//! their mappings (small, and read on every lookup).
//!
//! Bytes reach the file one of two ways (the caller picks per append, see
//! [`crate::segment::WriteMode`]): copied into the mapping ([`MappedFile::write`]), or written
//! with `pwrite(2)` ([`MappedFile::write_through`]), which extends the file itself and so needs
//! no preallocation to be safe. Either way they are in the page cache that `pread(2)` reads.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{Advice, MmapOptions, MmapRaw};

use crate::error::{Result, StorageError};

/// Size of a PMD-mapped transparent huge page (x86-64, and arm64 with 4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;

/// A file mapped read-write over a fixed capacity, with an append-only published prefix.
#[derive(Debug)]
pub(crate) struct MappedFile {
    map: MmapRaw,
    file: File,
    path: PathBuf,
    capacity: usize,
    allocated: AtomicUsize,
    published: AtomicUsize,
    /// The filesystem refused `fallocate(2)` as unsupported: writes must extend the file
    /// with [`MappedFile::write_through`] instead of copying into the mapping.
    no_fallocate: std::sync::atomic::AtomicBool,
}

/// True for the errors of a filesystem that does not implement `fallocate(2)` at all.
fn is_unsupported(e: &StorageError) -> bool {
    let unsupported = [
        rustix::io::Errno::OPNOTSUPP.raw_os_error(),
        rustix::io::Errno::NOSYS.raw_os_error(),
    ];
    matches!(e, StorageError::Io { source, .. }
        if source.raw_os_error().is_some_and(|c| unsupported.contains(&c)))
}

impl MappedFile {
    /// Maps `file` over `capacity` bytes. Its current length counts as allocated; the first
    /// `published` bytes (which must lie within it) are visible to readers at once.
    pub(crate) fn map(
        file: File,
        path: &Path,
        capacity: usize,
        published: usize,
    ) -> Result<MappedFile> {
        let file_len = file
            .metadata()
            .map_err(|e| StorageError::io(path, e))?
            .len() as usize;
        let capacity = capacity.max(file_len).max(1);
        if published > file_len {
            return Err(StorageError::Corrupt {
                path: path.to_path_buf(),
                position: file_len as u64,
                reason: format!("valid length {published} beyond file length {file_len}"),
            });
        }
        let map = MmapOptions::new()
            .len(capacity)
            .map_raw(&file)
            .map_err(|e| StorageError::io(path, e))?;
        Ok(MappedFile {
            map,
            file,
            path: path.to_path_buf(),
            capacity,
            allocated: AtomicUsize::new(file_len),
            published: AtomicUsize::new(published),
            no_fallocate: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The file, for reads with `pread(2)` (see [`crate::segment::FileBatches`]): readers do
    /// not touch the mapping, so a media error is their `EIO`, not a SIGBUS.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// A copy of the published bytes in `range`, read with `pread(2)`.
    pub(crate) fn read(&self, range: Range<usize>) -> Result<Bytes> {
        if range.start > range.end || range.end > self.published() {
            return Err(StorageError::Corrupt {
                path: self.path.clone(),
                position: range.start as u64,
                reason: format!(
                    "read of {range:?} beyond the {} published bytes",
                    self.published()
                ),
            });
        }
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let buf = crate::io::pread_to_vec(&self.file, &self.path, range.len(), range.start as u64)?;
        Ok(Bytes::from(buf))
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn allocated(&self) -> usize {
        self.allocated.load(Ordering::Acquire)
    }

    pub(crate) fn published(&self) -> usize {
        self.published.load(Ordering::Acquire)
    }

    /// False once the filesystem refused `fallocate(2)` as unsupported (some network and FUSE
    /// filesystems, ZFS before 2.2), or on a copy-on-write filesystem: bytes past `allocated`
    /// must then be written with [`MappedFile::write_through`], never copied into the mapping.
    pub(crate) fn can_preallocate(&self) -> bool {
        !self.no_fallocate.load(Ordering::Acquire)
    }

    /// Stops writes into the mapping past what is allocated (see [`MappedFile::can_preallocate`]):
    /// for a filesystem whose preallocation cannot be trusted (copy on write).
    pub(crate) fn distrust_preallocation(&self) {
        self.no_fallocate.store(true, Ordering::Release);
    }

    /// Makes sure `[0, end)` is backed by real blocks. Returns the range it allocated, if it had
    /// to.
    ///
    /// A slow writer's file grows just in time, geometrically from 64 KiB up to `chunk`, so idle
    /// partitions hold little disk and busy ones amortize the call. A `fast` writer's file grows
    /// by `chunk` once the writer is within half a chunk of its end, so the writer never faults
    /// near the end of the file, where the kernel cannot place a huge page (it would reach past
    /// end-of-file) and falls back to small ones.
    pub(crate) fn ensure_allocated(
        &self,
        end: usize,
        chunk: usize,
        fast: bool,
    ) -> Result<Option<Range<usize>>> {
        if end > self.capacity {
            return Err(StorageError::Corrupt {
                path: self.path.clone(),
                position: end as u64,
                reason: format!("write past mapped capacity {}", self.capacity),
            });
        }
        let allocated = self.allocated();
        let chunk = chunk.max(64 * 1024);
        let (step, wanted) = if fast {
            (chunk, end.saturating_add(chunk / 2).min(self.capacity))
        } else {
            (allocated.clamp(64 * 1024, chunk), end)
        };
        if wanted <= allocated {
            return Ok(None);
        }
        let target = wanted
            .max(allocated.saturating_add(step))
            .min(self.capacity);
        if let Err(e) = crate::io::fallocate(
            &self.file,
            &self.path,
            allocated as u64,
            (target - allocated) as u64,
        ) {
            if is_unsupported(&e) {
                tracing::warn!(path = %self.path.display(), error = %e, "no fallocate on this filesystem: appends use pwrite(2)");
                self.no_fallocate.store(true, Ordering::Release);
            }
            if end <= allocated {
                // Only the growth ahead failed (a full disk, say): this append still fits.
                tracing::debug!(path = %self.path.display(), error = %e, "could not grow ahead");
                return Ok(None);
            }
            if target > end && !is_unsupported(&e) {
                // A nearly full disk may lack room for the chunk ahead but not for this
                // append: take only what it needs, so appends go on until the disk is full.
                tracing::debug!(path = %self.path.display(), error = %e, "could not grow ahead; growing by this append only");
                crate::io::fallocate(
                    &self.file,
                    &self.path,
                    allocated as u64,
                    (end - allocated) as u64,
                )?;
                self.allocated.store(end, Ordering::Release);
                return Ok(Some(allocated..end));
            }
            return Err(e);
        }
        self.allocated.store(target, Ordering::Release);
        Ok(Some(allocated..target))
    }

    /// Turns read-ahead off for the mapping past `from`, where the writer
    /// faults in pages that hold no data yet.
    ///
    /// Read-ahead there only costs: it zero-fills pages the writer may not reach for a while, and
    /// its small pages would keep a later stretch from getting huge ones (a huge page cannot be
    /// made where part of its range is cached already, and the kernel's fallback fills the rest of
    /// its read-ahead window with small pages, and so on down the file). Bytes below `from` are
    /// data a reader may want from disk, with read-ahead as usual.
    pub(crate) fn advise_unwritten_tail(&self, from: usize) {
        if from >= self.capacity {
            return;
        }
        if let Err(e) = self
            .map
            .advise_range(Advice::Random, from, self.capacity - from)
        {
            tracing::debug!(path = %self.path.display(), error = %e, "read-ahead advice refused");
        }
    }

    /// Asks the kernel to back `range`, rounded out to whole huge pages, with transparent huge
    /// pages: one page fault and one page-cache allocation per 2 MiB instead of per 4 KiB.
    ///
    /// The price is paid at writeback: a dirty huge page is written whole, however little of
    /// it changed, so only ranges that will be filled quickly should ask. Advice only: a kernel
    /// without THP (or with it disabled) keeps 4 KiB pages and the call's error is logged.
    pub(crate) fn advise_huge_pages(&self, range: Range<usize>) {
        let start = range.start - range.start % HUGE_PAGE;
        let end = range.end.next_multiple_of(HUGE_PAGE).min(self.capacity);
        if start >= end {
            return;
        }
        if let Err(e) = self.map.advise_range(Advice::HugePage, start, end - start) {
            tracing::debug!(path = %self.path.display(), error = %e, "huge page advice refused");
        }
    }

    /// Copies `data` to `pos`. The range must be allocated and not yet published.
    pub(crate) fn write(&self, pos: usize, data: &[u8]) -> Result<()> {
        let end = pos
            .checked_add(data.len())
            .filter(|end| *end <= self.allocated())
            .ok_or_else(|| self.bad_write(pos, data.len(), "beyond allocated length"))?;
        if pos < self.published() {
            return Err(self.bad_write(pos, data.len(), "over published bytes"));
        }
        debug_assert!(end <= self.capacity);
        // SAFETY: [pos, end) lies inside the mapping (end <= allocated <= capacity) and over
        // real file blocks (allocated). No reader can observe it: readers only see bytes below
        // `published`, and pos >= published. The single writer is serialized by the owner.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.map.as_mut_ptr().add(pos),
                data.len(),
            );
        }
        Ok(())
    }

    /// Writes `data` at `pos` with `pwrite(2)`, growing the file as needed. The range must lie
    /// inside the mapping and not be published.
    ///
    /// Unlike a copy into the mapping this dirties only the blocks written (a mapped write
    /// dirties its whole page-cache folio, up to 2 MiB, and a flush writes all of it back),
    /// and a full disk is this call's `ENOSPC` rather than a SIGBUS, so no preallocation is
    /// needed.
    pub(crate) fn write_through(&self, pos: usize, data: &[u8]) -> Result<()> {
        let end = pos
            .checked_add(data.len())
            .filter(|end| *end <= self.capacity)
            .ok_or_else(|| self.bad_write(pos, data.len(), "beyond mapped capacity"))?;
        if pos < self.published() {
            return Err(self.bad_write(pos, data.len(), "over published bytes"));
        }
        #[cfg(feature = "failpoints")]
        fail::fail_point!("storage::mmap::write_through", |_| Err(StorageError::io(
            &self.path,
            std::io::Error::from_raw_os_error(28)
        )));
        self.file
            .write_all_at(data, pos as u64)
            .map_err(|e| StorageError::io(&self.path, e))?;
        // Written bytes have blocks (delayed allocation reserves them in `pwrite`).
        self.allocated.fetch_max(end, Ordering::AcqRel);
        Ok(())
    }

    /// Reads back unpublished bytes the writer just wrote (to patch or checksum them).
    pub(crate) fn with_unpublished<R>(
        &self,
        range: Range<usize>,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R> {
        if range.start < self.published() || range.end > self.allocated() || range.start > range.end
        {
            return Err(self.bad_write(range.start, range.len(), "outside the unpublished region"));
        }
        // SAFETY: as in `write`: the range is allocated, inside the mapping, and unpublished,
        // so only the single writer (the caller) touches it.
        let slice = unsafe {
            std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(range.start), range.len())
        };
        Ok(f(slice))
    }

    /// Makes `[0, len)` visible to readers. Never lowers the watermark.
    pub(crate) fn publish(&self, len: usize) {
        debug_assert!(len <= self.allocated());
        self.published
            .fetch_max(len.min(self.allocated()), Ordering::AcqRel);
    }

    /// A borrowed slice of published bytes, or `None` when the range is not published.
    pub(crate) fn slice(&self, range: Range<usize>) -> Option<&[u8]> {
        if range.start > range.end || range.end > self.published() {
            return None;
        }
        // SAFETY: published bytes are inside the mapping and over allocated blocks, and are never
        // written again (writes start at or above `published`, which never decreases). The file
        // is only shrunk below `published` by `FileMappings::shrink`, which requires every
        // mapping of the file to be dropped, `self` included, so no borrow of `self` can
        // outlive it; `seal` shrinks only down to `published`.
        Some(unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(range.start), range.len()) })
    }

    /// Trims the file to its published length and forbids further writes (segment roll).
    pub(crate) fn seal(&self) -> Result<()> {
        let published = self.published();
        self.allocated.store(published, Ordering::Release);
        if published > 0 {
            // All data now: readers catching up from disk want read-ahead back.
            if let Err(e) = self.map.advise_range(Advice::Normal, 0, published) {
                tracing::debug!(path = %self.path.display(), error = %e, "read-ahead advice refused");
            }
        }
        self.file
            .set_len(published as u64)
            .map_err(|e| StorageError::io(&self.path, e))
    }

    /// Flushes `[0, len)` to disk (msync) and the file's metadata with fdatasync.
    pub(crate) fn flush(&self) -> Result<()> {
        let len = self.allocated().min(self.capacity);
        #[cfg(feature = "failpoints")]
        fail::fail_point!("storage::mmap::flush", |_| Err(StorageError::io(
            &self.path,
            std::io::Error::other("injected msync failure")
        )));
        if len > 0 {
            self.map
                .flush_range(0, len)
                .map_err(|e| StorageError::io(&self.path, e))?;
        }
        crate::io::fdatasync(&self.file, &self.path)
    }

    /// Flushes `[from, to)` with msync(MS_SYNC), which on Linux also syncs the file size.
    pub(crate) fn flush_range(&self, from: usize, to: usize) -> Result<()> {
        let to = to.min(self.allocated());
        if from >= to {
            return Ok(());
        }
        #[cfg(feature = "failpoints")]
        fail::fail_point!("storage::mmap::flush", |_| Err(StorageError::io(
            &self.path,
            std::io::Error::other("injected msync failure")
        )));
        self.map
            .flush_range(from, to - from)
            .map_err(|e| StorageError::io(&self.path, e))
    }

    fn bad_write(&self, pos: usize, len: usize, why: &str) -> StorageError {
        StorageError::Corrupt {
            path: self.path.clone(),
            position: pos as u64,
            reason: format!("refused write of {len} bytes {why}"),
        }
    }
}

/// Every mapping of one file that may still be read, so the file is shrunk only when none is.
///
/// A mapping is read through an `Arc<MappedFile>` (the owner's, or a [`Bytes`] view's). Once
/// its strong count is zero no reference can read it again (a `Weak` cannot be upgraded back),
/// even if the `munmap` itself is still running in the thread dropping it. The lock is held
/// from the check to the `ftruncate`, and every mapping registers under it, so none can appear
/// in between; a mapping made after the shrink sees the new length (and [`MappedFile::map`]
/// refuses a published length beyond it).
#[derive(Debug, Default)]
pub(crate) struct FileMappings {
    live: parking_lot::Mutex<Vec<std::sync::Weak<MappedFile>>>,
}

impl FileMappings {
    /// Maps `file` as [`MappedFile::map`] does and registers the mapping.
    pub(crate) fn map(
        &self,
        file: File,
        path: &Path,
        capacity: usize,
        published: usize,
    ) -> Result<Arc<MappedFile>> {
        let mut live = self.live.lock();
        live.retain(|m| m.strong_count() > 0);
        let map = Arc::new(MappedFile::map(file, path, capacity, published)?);
        live.push(Arc::downgrade(&map));
        Ok(map)
    }

    /// Shrinks `file` to `len` bytes if no registered mapping of it is alive. Returns whether
    /// it did; `false` means try again once the views are dropped.
    pub(crate) fn shrink(&self, file: &File, path: &Path, len: u64) -> Result<bool> {
        let mut live = self.live.lock();
        live.retain(|m| m.strong_count() > 0);
        if !live.is_empty() {
            return Ok(false);
        }
        file.set_len(len).map_err(|e| StorageError::io(path, e))?;
        Ok(true)
    }
}
