//! `LogSegment`: one `.log` file of record batches plus its `.index` and `.timeindex`.
//!
//! Lifecycle: created active (files preallocated, mapped over `segment.bytes` of address space),
//! appended to by the log's single writer, sealed on roll (files trimmed to their contents),
//! then read until retention deletes it. Sealed segments map their files lazily and may be
//! unmapped again under the [`MapBudget`].
//!
//! Deletion (retention, truncation, compaction) is Kafka's: the files are renamed
//! `<name>.deleted` and unlinked by the log after `file.delete.delay.ms`. A segment never
//! reopens its files by name once deletion began: its mapping is pinned first, so a reader
//! that took the segment before it left the log keeps reading it, and no reader can create
//! an empty file where a deleted segment was (an empty `.log` above the active segment would
//! be taken for the log's end at the next open). While a segment is live its paths name its
//! files (only deletion renames them; compaction replaces a file only after pinning the old
//! segment's mapping with `retire`), and remapping opens them without `O_CREAT`.
//!
//! Concurrency: readers load `size`/`next_offset` (Acquire) and read below them without locks;
//! the writer publishes bytes in the mapping before raising `size` (Release). Truncation is
//! logical: `size` shrinks, the segment is sealed, and the file is shrunk only when no view of
//! its mapping is alive (`maybe_shrink`), because touching a truncated mapped page is SIGBUS.

mod file_batches;
mod lifecycle;
mod pace;
mod read;
mod recovery;

use pace::Pace;
pub(crate) use pace::WriteMode;

pub(crate) use file_batches::bytes_scanned_by_this_thread;
pub(crate) use file_batches::FileBatches;

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

use crate::error::{Result, StorageError};
use crate::index::{OffsetIndex, TimeIndex};
use crate::map_budget::{MapBudget, Unmappable};
use crate::mmap::{FileMappings, MappedFile};
use crate::types::{FilePosition, Offset};

/// Sizes that shape a segment's files, from the log's config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentParams {
    pub(crate) segment_bytes: u32,
    pub(crate) index_bytes: u32,
    pub(crate) index_interval_bytes: u32,
    pub(crate) preallocate_chunk: u32,
}

/// The mapped files of a segment.
#[derive(Debug)]
pub(crate) struct SegmentFiles {
    pub(crate) log: Arc<MappedFile>,
    pub(crate) index: OffsetIndex,
    pub(crate) time_index: TimeIndex,
}

/// One batch placed by the writer: where it sits in the appended bytes and its offsets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlacedBatch {
    pub(crate) at: usize,
    pub(crate) len: usize,
    pub(crate) base_offset: Offset,
    pub(crate) last_offset: Offset,
    pub(crate) max_timestamp: i64,
}

/// What recovery found in a segment.
#[derive(Debug, Clone, Default)]
pub(crate) struct RecoveryReport {
    /// Bytes cut off the end of the `.log`: preallocated zeros of an active segment, or a
    /// torn or corrupt tail.
    pub(crate) truncated_bytes: u64,
    /// Why the cut was made, unless it removed only zeros.
    pub(crate) reason: Option<String>,
}

/// Called by recovery once it knows the `.log` must be cut, before cutting it (see
/// [`LogSegment::open`]).
pub(crate) type BeforeCut<'a> = &'a mut dyn FnMut() -> Result<()>;

/// A segment of a partition log.
#[derive(Debug)]
pub(crate) struct LogSegment {
    base: Offset,
    log_path: PathBuf,
    index_path: PathBuf,
    time_path: PathBuf,
    params: SegmentParams,
    size: AtomicU32,
    next_offset: AtomicI64,
    max_timestamp: AtomicI64,
    /// Max timestamp of the first batch, or -1 (Kafka's `rollingBasedTimestamp`).
    first_batch_ts: AtomicI64,
    /// When the segment was created (or its file last modified, once reopened).
    created_ms: AtomicI64,
    active: AtomicBool,
    pending_shrink: AtomicBool,
    /// Replaced by compaction: keep the old mapping for readers still holding this segment.
    retired: AtomicBool,
    /// Deleted: the mapping is pinned and the files are never opened by name again.
    deleted: AtomicBool,
    bytes_since_index: AtomicU32,
    flushed: AtomicU32,
    pace: Mutex<Pace>,
    generation: AtomicU64,
    files: RwLock<Option<Arc<SegmentFiles>>>,
    /// Every mapping of the `.log` made by this segment: a shrink waits for all of them.
    log_maps: FileMappings,
    map_lock: Mutex<()>,
    budget: Arc<MapBudget>,
    me: Weak<LogSegment>,
}

/// Bytes by which an index file grows (it may reach `segment.index.bytes`): small, because
/// every active partition holds two index files.
const INDEX_GROWTH: usize = 64 * 1024;

/// The file names of the segment with base offset `base`.
pub(crate) fn file_name(base: Offset, ext: &str) -> String {
    format!("{:020}.{ext}", base.0)
}

/// The name of one of the files of segment `base` as the cleaner stages it before the swap:
/// `<base>.<ext>.cleaned` (the next open removes any left by a crash).
pub(crate) fn staged_name(base: Offset, ext: &str) -> String {
    format!("{}.{CLEANED_SUFFIX}", file_name(base, ext))
}

/// Suffix of the files a compaction pass writes before it swaps them in.
pub(crate) const CLEANED_SUFFIX: &str = "cleaned";

impl LogSegment {
    fn new_arc(
        dir: &Path,
        base: Offset,
        params: SegmentParams,
        budget: Arc<MapBudget>,
        now_ms: i64,
    ) -> Arc<LogSegment> {
        Self::new_arc_named(dir, base, params, budget, now_ms, file_name)
    }

    fn new_arc_named(
        dir: &Path,
        base: Offset,
        params: SegmentParams,
        budget: Arc<MapBudget>,
        now_ms: i64,
        name: fn(Offset, &str) -> String,
    ) -> Arc<LogSegment> {
        Arc::new_cyclic(|me| LogSegment {
            base,
            log_path: dir.join(name(base, "log")),
            index_path: dir.join(name(base, "index")),
            time_path: dir.join(name(base, "timeindex")),
            params,
            size: AtomicU32::new(0),
            next_offset: AtomicI64::new(base.0),
            max_timestamp: AtomicI64::new(-1),
            first_batch_ts: AtomicI64::new(-1),
            created_ms: AtomicI64::new(now_ms),
            active: AtomicBool::new(false),
            pending_shrink: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            deleted: AtomicBool::new(false),
            bytes_since_index: AtomicU32::new(0),
            flushed: AtomicU32::new(0),
            pace: Mutex::new(Pace::default()),
            generation: AtomicU64::new(0),
            files: RwLock::new(None),
            log_maps: FileMappings::default(),
            map_lock: Mutex::new(()),
            budget,
            me: me.clone(),
        })
    }

    /// Creates a new, empty active segment. `min_capacity` makes room for one oversized batch.
    pub(crate) fn create(
        dir: &Path,
        base: Offset,
        params: SegmentParams,
        budget: Arc<MapBudget>,
        now_ms: i64,
        min_capacity: usize,
        fast: bool,
    ) -> Result<Arc<LogSegment>> {
        let seg = LogSegment::new_arc(dir, base, params, budget, now_ms);
        *seg.pace.lock() = Pace::starting(fast);
        for p in [&seg.log_path, &seg.index_path, &seg.time_path] {
            // A leftover file of a segment that was truncated away is replaced.
            if p.exists() {
                fs::remove_file(p).map_err(|e| StorageError::io(p, e))?;
            }
        }
        let log = open_new(&seg.log_path)?;
        let cow = crate::io::is_copy_on_write(&log);
        let capacity = (params.segment_bytes as usize).max(min_capacity);
        let log = seg.log_maps.map(log, &seg.log_path, capacity, 0)?;
        if cow {
            log.distrust_preallocation();
        }
        log.advise_unwritten_tail(0);
        let files = SegmentFiles {
            log,
            index: OffsetIndex::open(&seg.index_path, base, params.index_bytes as usize, Some(0))?,
            time_index: TimeIndex::open(
                &seg.time_path,
                base,
                params.index_bytes as usize,
                Some(0),
            )?,
        };
        *seg.files.write() = Some(Arc::new(files));
        seg.active.store(true, Ordering::Release);
        crate::io::fsync_dir(dir)?;
        Ok(seg)
    }

    /// Opens an existing segment. With `recover`, every batch is validated (CRC-32C included),
    /// the file is cut at the first bad one, and both indexes are rebuilt.
    ///
    /// `before_cut` runs once the scan found bytes to cut and before the file is cut: the log
    /// deletes the segments after this one there (Kafka's rule: whatever the cut removes,
    /// the later segments would start past a hole), so a crash in between leaves this file
    /// uncut and the next open repeats both steps, never a cut file followed by a hole.
    pub(crate) fn open(
        dir: &Path,
        base: Offset,
        params: SegmentParams,
        budget: Arc<MapBudget>,
        recover: bool,
        now_ms: i64,
        before_cut: BeforeCut<'_>,
    ) -> Result<(Arc<LogSegment>, RecoveryReport)> {
        let seg = LogSegment::new_arc(dir, base, params, budget, now_ms);
        let report = if recover {
            seg.recover(before_cut)?
        } else {
            seg.load(before_cut)?
        };
        Ok((seg, report))
    }

    /// Builds the indexes of a compacted segment staged as [`staged_name`] files and makes
    /// all three durable, so that the swap is renames alone and the segment then opens from
    /// its indexes without reading its records again.
    pub(crate) fn index_staged(
        dir: &Path,
        base: Offset,
        params: SegmentParams,
        budget: Arc<MapBudget>,
        now_ms: i64,
    ) -> Result<()> {
        let seg = Self::new_arc_named(dir, base, params, budget, now_ms, staged_name);
        let report = seg.recover(&mut || Ok(()))?;
        if let Some(reason) = report.reason {
            // The cleaner wrote these bytes a moment ago from validated batches.
            return Err(seg.corrupt(0, &format!("cleaned segment does not read back: {reason}")));
        }
        seg.flush()
    }

    fn install(&self, files: SegmentFiles) {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        *self.files.write() = Some(Arc::new(files));
        if !self.active.load(Ordering::Acquire) {
            let me: Weak<dyn Unmappable> = self.me.clone();
            self.budget.mapped(me, generation);
        }
    }

    /// Turns a freshly opened last segment into the active one: remaps over `segment.bytes`
    /// of address space and reopens the indexes for growth.
    pub(crate) fn activate(&self) -> Result<()> {
        let _g = self.map_lock.lock();
        let size = self.size() as usize;
        *self.files.write() = None;
        let file = open_existing(&self.log_path)?;
        let cow = crate::io::is_copy_on_write(&file);
        let log = self.log_maps.map(
            file,
            &self.log_path,
            (self.params.segment_bytes as usize).max(size),
            size,
        )?;
        if cow {
            log.distrust_preallocation();
        }
        log.advise_unwritten_tail(size);
        let cap = self.params.index_bytes as usize;
        let files = SegmentFiles {
            log,
            index: OffsetIndex::open(&self.index_path, self.base, cap, None)?,
            time_index: TimeIndex::open(&self.time_path, self.base, cap, None)?,
        };
        self.active.store(true, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        *self.files.write() = Some(Arc::new(files));
        Ok(())
    }

    /// The mapped files, mapping them first if the budget unmapped them.
    pub(crate) fn files(&self) -> Result<Arc<SegmentFiles>> {
        if let Some(f) = self.files.read().as_ref() {
            return Ok(Arc::clone(f));
        }
        let _g = self.map_lock.lock();
        if let Some(f) = self.files.read().as_ref() {
            return Ok(Arc::clone(f));
        }
        if self.deleted.load(Ordering::Acquire) {
            // Only when pinning the mapping failed at deletion: never reopen by name.
            return Err(StorageError::io(
                &self.log_path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "segment was deleted"),
            ));
        }
        let files = self.map_existing()?;
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        *self.files.write() = Some(Arc::clone(&files));
        // Register after releasing `map_lock`: eviction may call `unmap` on this very segment.
        drop(_g);
        let me: Weak<dyn Unmappable> = self.me.clone();
        self.budget.mapped(me, generation);
        Ok(files)
    }

    /// Maps a live sealed segment's files by name (see the module doc for why the names are
    /// its own), creating none. The caller holds `map_lock`.
    fn map_existing(&self) -> Result<Arc<SegmentFiles>> {
        let size = self.size() as usize;
        let log = self
            .log_maps
            .map(open_existing(&self.log_path)?, &self.log_path, size, size)?;
        let index = OffsetIndex::open(&self.index_path, self.base, 0, None)?;
        let time_index = TimeIndex::open(&self.time_path, self.base, 0, None)?;
        // A logically truncated segment's files may still hold entries past its end.
        index.truncate_to(self.next_offset());
        time_index.truncate_to(self.next_offset());
        Ok(Arc::new(SegmentFiles {
            log,
            index,
            time_index,
        }))
    }

    /// True while the segment's files are mapped.
    #[cfg(test)]
    pub(crate) fn is_mapped(&self) -> bool {
        self.files.read().is_some()
    }

    pub(crate) fn base_offset(&self) -> Offset {
        self.base
    }

    /// Valid bytes in the `.log`.
    pub(crate) fn size(&self) -> u32 {
        self.size.load(Ordering::Acquire)
    }

    /// Offset after the last batch.
    pub(crate) fn next_offset(&self) -> Offset {
        Offset(self.next_offset.load(Ordering::Acquire))
    }

    /// Largest batch timestamp, or -1 when empty.
    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp.load(Ordering::Acquire)
    }

    /// The first batch's max timestamp, or -1 when empty or unknown.
    pub(crate) fn first_batch_timestamp(&self) -> i64 {
        self.first_batch_ts.load(Ordering::Acquire)
    }

    /// Kafka's `timeWaitedForRoll`: how far an incoming batch with timestamp `incoming_ts` is
    /// from the first batch's timestamp, or, for a segment without timestamps, its age.
    pub(crate) fn time_waited_for_roll(&self, now: i64, incoming_ts: i64) -> i64 {
        match self.first_batch_ts.load(Ordering::Acquire) {
            ts if ts >= 0 => incoming_ts.saturating_sub(ts),
            _ => self.age_ms(now),
        }
    }

    /// Time since the segment was created (on the caller's clock).
    pub(crate) fn age_ms(&self, now: i64) -> i64 {
        now.saturating_sub(self.created_ms.load(Ordering::Acquire))
    }

    /// Creation time (or last modification, after a reopen).
    pub(crate) fn created_ms(&self) -> i64 {
        self.created_ms.load(Ordering::Acquire)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.size() == 0
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// True when `len` more bytes fit under `segment.bytes` (an empty segment takes any batch
    /// its mapping can hold) and both indexes have room.
    pub(crate) fn has_room(&self, len: usize) -> Result<bool> {
        let files = self.files()?;
        if files.index.is_full() || files.time_index.is_full() {
            return Ok(false);
        }
        let size = self.size() as usize;
        let end = size + len;
        if end > files.log.capacity() || end > u32::MAX as usize {
            return Ok(false);
        }
        Ok(size == 0 || end <= self.params.segment_bytes as usize)
    }

    /// Writer only: copies already validated `data` to the end, lets `patch` set each batch's
    /// header fields, indexes the batches, then publishes them to readers.
    pub(crate) fn append(
        &self,
        data: &[u8],
        placed: &[PlacedBatch],
        mode: WriteMode,
        patch: impl Fn(&mut [u8], &PlacedBatch),
    ) -> Result<()> {
        let files = self.files()?;
        let start = self.size() as usize;
        let end = start + data.len();
        let mode = match mode {
            WriteMode::Mapped if !self.preallocate(&files, end)? => WriteMode::Written,
            mode => mode,
        };
        match mode {
            WriteMode::Mapped => {
                files.log.write(start, data)?;
                for p in placed {
                    files
                        .log
                        .with_unpublished(start + p.at..start + p.at + p.len, |b| patch(b, p))?;
                }
            }
            WriteMode::Written => {
                // Patched before the write: patching through the mapping afterwards would
                // dirty whole folios, which is what this mode avoids.
                let mut patched = data.to_vec();
                for p in placed {
                    patch(&mut patched[p.at..p.at + p.len], p);
                }
                files.log.write_through(start, &patched)?;
            }
        }
        let chunk = INDEX_GROWTH;
        let mut since = self.bytes_since_index.load(Ordering::Acquire);
        let mut max_ts = self.max_timestamp();
        for p in placed {
            if since >= self.params.index_interval_bytes {
                files
                    .index
                    .append(p.base_offset, FilePosition((start + p.at) as u32), chunk)?;
                files
                    .time_index
                    .maybe_append(max_ts.max(p.max_timestamp), p.base_offset, chunk)?;
                since = 0;
            }
            since += p.len as u32;
            max_ts = max_ts.max(p.max_timestamp);
        }
        if start == 0 {
            if let Some(first) = placed.first() {
                self.first_batch_ts
                    .store(first.max_timestamp, Ordering::Release);
            }
        }
        files.log.publish(end);
        self.bytes_since_index.store(since, Ordering::Release);
        self.max_timestamp.store(max_ts, Ordering::Release);
        if let Some(last) = placed.last() {
            self.next_offset
                .store(last.last_offset.0 + 1, Ordering::Release);
        }
        self.size.store(end as u32, Ordering::Release);
        Ok(())
    }

    /// Makes sure the `.log` has real blocks up to `end` for a mapped write. False when the
    /// filesystem has no `fallocate(2)`: the append then goes through `pwrite(2)`, which
    /// extends the file itself, so a full disk is still that call's error and never a SIGBUS.
    fn preallocate(&self, files: &SegmentFiles, end: usize) -> Result<bool> {
        if !files.log.can_preallocate() {
            return Ok(false);
        }
        let mut pace = self.pace.lock();
        let chunk = self.params.preallocate_chunk as usize;
        match files.log.ensure_allocated(end, chunk, pace.fast) {
            Ok(Some(grown)) => {
                if pace.grew(grown.start, Instant::now()) {
                    files.log.advise_huge_pages(grown);
                }
                Ok(true)
            }
            Ok(None) => Ok(end <= files.log.allocated()),
            Err(_) if !files.log.can_preallocate() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// True while appends come fast (see `pace::FAST_BYTES_PER_SEC`).
    pub(crate) fn is_fast(&self) -> bool {
        self.pace.lock().fast
    }

    /// Pins the current mapping for good: the files are about to be replaced on disk, and
    /// readers still holding this segment must keep reading the old ones.
    pub(crate) fn retire(&self) -> Result<()> {
        let _files = self.files()?;
        self.retired.store(true, Ordering::Release);
        Ok(())
    }

    fn corrupt(&self, at: usize, why: &str) -> StorageError {
        StorageError::Corrupt {
            path: self.log_path.clone(),
            position: at as u64,
            reason: why.to_string(),
        }
    }
}

impl Unmappable for LogSegment {
    fn unmap(&self, generation: u64) {
        if self.active.load(Ordering::Acquire)
            || self.pending_shrink.load(Ordering::Acquire)
            || self.retired.load(Ordering::Acquire)
            || self.deleted.load(Ordering::Acquire)
        {
            return;
        }
        let _g = self.map_lock.lock();
        if self.generation.load(Ordering::Acquire) == generation {
            *self.files.write() = None;
        }
    }
}

/// The suffix of a deleted segment's files until they are unlinked (Kafka's).
pub(crate) const DELETED_SUFFIX: &str = "deleted";

/// Where a deleted segment's file waits for `file.delete.delay.ms`.
fn deleted_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(DELETED_SUFFIX);
    PathBuf::from(name)
}

/// Opens an existing file read-write; a missing file is an error, never created.
pub(crate) fn open_existing(path: &Path) -> Result<fs::File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| StorageError::io(path, e))
}

/// Creates (or opens) a new segment's `.log`.
fn open_new(path: &Path) -> Result<fs::File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| StorageError::io(path, e))
}
