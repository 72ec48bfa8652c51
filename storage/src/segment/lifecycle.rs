//! The end of a segment's life: truncation (logical first, the file shrunk once no view of
//! its mapping is alive), sealing, flushing and Kafka's renamed-then-unlinked deletion.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use super::FileBatches;
use super::{deleted_path, open_existing, LogSegment};
use crate::error::{Result, StorageError};
use crate::map_budget::Unmappable;
use crate::types::Offset;

impl LogSegment {
    /// Where a cut at `offset` falls: the position of the first batch at or after it, or
    /// `None` when the segment holds nothing there. An error when `offset` lies inside a batch.
    pub(crate) fn cut_position(&self, offset: Offset) -> Result<Option<usize>> {
        match self.find(offset)? {
            Some((pos, h)) if h.base_offset < offset.0 => Err(self.corrupt(
                pos,
                &format!(
                    "cannot truncate to {offset} inside batch {}..={}",
                    h.base_offset,
                    h.last_offset()
                ),
            )),
            Some((pos, _)) => Ok(Some(pos)),
            None => Ok(None),
        }
    }

    /// Logically drops every batch at or after `offset` and seals the segment. The file is
    /// shrunk later, once no reader holds a view of the dropped bytes.
    pub(crate) fn truncate_to(&self, offset: Offset) -> Result<()> {
        let files = self.files()?;
        let Some(cut) = self.cut_position(offset)? else {
            return Ok(());
        };
        // Read what is kept before changing anything: a read error leaves the segment whole.
        let (mut next, mut max_ts) = (self.base.0, -1);
        let mut kept = FileBatches::new(files.log.file(), &self.log_path, cut, 0);
        while let Some((_, h)) = kept.next_header()? {
            next = h.next_offset();
            max_ts = max_ts.max(h.max_timestamp);
        }
        if self.active.load(Ordering::Acquire) {
            // Trim the preallocated space past the data now (always safe: no view reaches
            // past `published`). Once this segment is no longer the last, zeros after its
            // batches would read, after a crash, as lost data and cost every later segment.
            files.log.seal()?;
        }
        files.index.truncate_to(offset);
        files.time_index.truncate_to(offset);
        self.size.store(cut as u32, Ordering::Release);
        self.next_offset.store(next, Ordering::Release);
        self.max_timestamp.store(max_ts, Ordering::Release);
        self.flushed.fetch_min(cut as u32, Ordering::AcqRel);
        self.active.store(false, Ordering::Release);
        self.pending_shrink.store(true, Ordering::Release);
        drop(files);
        self.maybe_shrink();
        Ok(())
    }

    /// Shrinks a logically truncated segment's file to its size once no mapping of it is
    /// alive, so no view can touch a page past the new end (SIGBUS).
    ///
    /// The segment's own mapping is released first when nothing else holds it (no reader is
    /// inside a call with it, no view was made from it; both need the `SegmentFiles` that the
    /// write lock keeps to ourselves), and the next read maps the file again. Whether the file
    /// may shrink is then [`FileMappings::shrink`]'s decision, over every mapping this segment
    /// ever made: a view of one the budget unmapped earlier keeps the file whole until dropped.
    pub(crate) fn maybe_shrink(&self) {
        if !self.pending_shrink.load(Ordering::Acquire) || self.deleted.load(Ordering::Acquire) {
            return;
        }
        let _g = self.map_lock.lock();
        {
            let mut slot = self.files.write();
            if let Some(files) = slot.as_ref() {
                if Arc::strong_count(files) > 1 || Arc::strong_count(&files.log) > 1 {
                    return; // read now; housekeeping tries again
                }
                *slot = None;
            }
        }
        let shrunk = open_existing(&self.log_path).and_then(|f| {
            self.log_maps
                .shrink(&f, &self.log_path, u64::from(self.size()))
        });
        match shrunk {
            Ok(true) => self.pending_shrink.store(false, Ordering::Release),
            Ok(false) => {} // an older mapping is still read
            Err(e) => {
                tracing::warn!(segment = %self.log_path.display(), error = %e, "could not trim a truncated segment; will retry");
            }
        }
    }

    /// Trims preallocated space and stops growth (roll or clean close). Does not flush: the
    /// log decides when a sealed segment is made durable.
    pub(crate) fn seal(&self) -> Result<()> {
        let files = self.files()?;
        if !self.pending_shrink.load(Ordering::Acquire) {
            files.log.seal()?;
        }
        files.index.seal()?;
        files.time_index.seal()?;
        if self.active.swap(false, Ordering::AcqRel) {
            let me: Weak<dyn Unmappable> = self.me.clone();
            self.budget
                .mapped(me, self.generation.load(Ordering::Acquire));
        }
        Ok(())
    }

    /// Makes appended bytes durable (msync + fdatasync) and the indexes too.
    pub(crate) fn flush(&self) -> Result<()> {
        let size = self.size();
        if self.flushed.load(Ordering::Acquire) >= size && !self.active.load(Ordering::Acquire) {
            return Ok(());
        }
        let files = self.files()?;
        files.log.flush()?;
        files.index.flush()?;
        files.time_index.flush()?;
        self.flushed.fetch_max(size, Ordering::AcqRel);
        Ok(())
    }

    /// Flushes only the log bytes written since the last flush (the fast path for
    /// `flush.messages=1`); indexes are derived data rebuilt by recovery.
    pub(crate) fn flush_log(&self) -> Result<()> {
        let size = self.size();
        let from = self.flushed.load(Ordering::Acquire);
        if from >= size {
            return Ok(());
        }
        let files = self.files()?;
        files.log.flush_range(from as usize, size as usize)?;
        self.flushed.fetch_max(size, Ordering::AcqRel);
        Ok(())
    }

    /// Deletes the segment as Kafka does: renames its files `<name>.deleted` and returns the
    /// new names, for the log to unlink after `file.delete.delay.ms`.
    ///
    /// The mapping is pinned first (mapped now if the budget had unmapped it), under
    /// `map_lock` so no reader is halfway through mapping by name: a reader that took this
    /// segment before it left the log reads it from the mapping, whatever happens to the files.
    pub(crate) fn delete(&self) -> Result<Vec<PathBuf>> {
        #[cfg(feature = "failpoints")]
        fail::fail_point!("storage::segment::delete", |_| Err(StorageError::io(
            &self.log_path,
            std::io::Error::other("injected failure to delete a segment")
        )));
        {
            let _g = self.map_lock.lock();
            if self.files.read().is_none() {
                match self.map_existing() {
                    Ok(files) => {
                        self.generation.fetch_add(1, Ordering::AcqRel);
                        *self.files.write() = Some(files);
                    }
                    Err(e) => {
                        tracing::warn!(segment = %self.log_path.display(), error = %e, "could not map a segment being deleted; its readers will get this error");
                    }
                }
            }
            self.deleted.store(true, Ordering::Release);
        }
        let mut renamed = Vec::with_capacity(3);
        for p in [&self.log_path, &self.index_path, &self.time_path] {
            let to = deleted_path(p);
            match fs::rename(p, &to) {
                Ok(()) => renamed.push(to),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io(p, e)),
            }
        }
        Ok(renamed)
    }
}
