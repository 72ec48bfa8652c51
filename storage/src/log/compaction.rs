//! Log compaction's file work: pick the cleanable segments, map the dirty section's keys in
//! bounded memory, clean each segment against the map (`cleaner`) and swap the result in.
//!
//! A pass runs when sealed segments were written since the last one, or when the delete
//! horizon of a kept tombstone has passed (KIP-534; see `cleaner::clean`).
//!
//! Cleanable: sealed segments wholly below the high watermark whose newest record is older
//! than `min.compaction.lag.ms`; the active segment is never compacted. The dirty section
//! starts where the last pass stopped; the map (`log.cleaner.dedupe.buffer.size`) takes as
//! much of it as fits and the pass cleans the segments up to there, leaving the rest to the
//! next pass (Kafka's cleaner works the same way).
//!
//! Like Kafka's cleaner, a pass runs without the writer lock: appends, truncations and
//! retention go on meanwhile. It writes each cleaned segment and its indexes as
//! `<base>.<ext>.cleaned` files, then takes the lock only to check that the segment is still
//! in the log and no truncation happened, and to swap the files in by renames: first the old
//! indexes go, then the cleaned log replaces the old one, then the cleaned indexes follow, so
//! a crash at any point leaves a whole segment (old or new) whose indexes are either its own
//! or missing (and then rebuilt). Readers holding the old segment keep reading its unlinked
//! file through their mapping.
//!
//! A segment whose records cannot be decoded makes the log *uncleanable* (Kafka's
//! `uncleanablePartitions`): compaction skips it until it is reopened, and every other part of
//! housekeeping goes on.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{params, Log};
use crate::cleaner::{self, CleanParams, CleanStats, OffsetMap};
use crate::error::{Result, StorageError};
use crate::segment::{file_name, staged_name, FileBatches, LogSegment};
use crate::types::Offset;

/// What a pass works from, taken under the writer lock at its start.
struct Plan {
    /// The cleanable segments, oldest first.
    segments: Vec<Arc<LogSegment>>,
    /// Where the dirty section starts: the previous passes cleaned everything below.
    first_dirty: Offset,
    /// The writer's truncation count: a swap after a truncation is abandoned.
    truncations: u64,
    params: CleanParams,
    dedupe_buffer_bytes: usize,
}

/// Why a pass stopped short.
enum PassError {
    /// Records that cannot be decoded: the log becomes uncleanable.
    Undecodable(String),
    Storage(StorageError),
}

impl From<StorageError> for PassError {
    fn from(e: StorageError) -> Self {
        PassError::Storage(e)
    }
}

/// The outcome of swapping one cleaned segment in.
enum Swap {
    Done,
    /// A truncation, retention or close changed the log since the pass began.
    Abandoned,
}

impl Log {
    /// One compaction pass, run without the writer lock; returns the number of records removed.
    pub(crate) fn compact(&self, now: i64) -> Result<u64> {
        let _one_pass_at_a_time = self.cleaning.lock();
        let Some(plan) = self.plan_compaction(now) else {
            return Ok(0);
        };
        match self.run_pass(&plan, now) {
            Ok(removed) => Ok(removed),
            Err(PassError::Undecodable(reason)) => {
                tracing::error!(partition = %self.tp, %reason, "log is uncleanable: compaction stops for it until it is reopened");
                self.writer.lock().uncleanable = Some(reason);
                Ok(0)
            }
            Err(PassError::Storage(e)) => Err(e),
        }
    }

    /// Why compaction skips this log, if it found records it cannot decode.
    pub fn uncleanable(&self) -> Option<String> {
        self.writer.lock().uncleanable.clone()
    }

    fn plan_compaction(&self, now: i64) -> Option<Plan> {
        let w = self.writer.lock();
        if w.uncleanable.is_some()
            || self.closed.load(Ordering::Acquire)
            || self.poison.read().is_some()
        {
            return None;
        }
        let config = self.config();
        let hw = self.offsets().high_watermark;
        let segments: Vec<Arc<LogSegment>> = {
            let all = self.segments.read();
            let n = all.len();
            all.values()
                .take(n.saturating_sub(1))
                .take_while(|s| {
                    s.next_offset() <= hw
                        && s.max_timestamp() <= now.saturating_sub(config.min_compaction_lag_ms)
                })
                .cloned()
                .collect()
        };
        let last = segments.last()?;
        let horizon_due = w.next_delete_horizon.is_some_and(|at| now >= at);
        // Kafka's cleaner picks a log whose dirty share of the cleanable bytes exceeds
        // `min.cleanable.dirty.ratio`, or whose oldest dirty segment began more than
        // `max.compaction.lag.ms` ago, or (KIP-534) whose delete horizon passed.
        let dirty = |s: &&Arc<LogSegment>| s.next_offset() > w.cleaned_upto;
        let dirty_bytes: u64 = segments
            .iter()
            .filter(dirty)
            .map(|s| u64::from(s.size()))
            .sum();
        let clean_bytes: u64 = self
            .segments
            .read()
            .values()
            .take_while(|s| s.next_offset() <= w.cleaned_upto)
            .map(|s| u64::from(s.size()))
            .sum();
        let ratio = dirty_bytes as f64 / (clean_bytes + dirty_bytes).max(1) as f64;
        let overdue = segments
            .iter()
            .filter(dirty)
            .map(|s| s.first_batch_timestamp())
            .filter(|ts| *ts > 0)
            .min()
            .is_some_and(|oldest| oldest < now.saturating_sub(config.max_compaction_lag_ms));
        let due = (dirty_bytes > 0 && (overdue || ratio > config.min_cleanable_dirty_ratio.get()))
            || horizon_due;
        if last.next_offset() <= w.cleaned_upto && !horizon_due || !due {
            return None;
        }
        Some(Plan {
            first_dirty: w.cleaned_upto,
            truncations: w.truncations,
            params: CleanParams {
                now_ms: now,
                delete_retention_ms: config.delete_retention_ms,
                last_batch_of_producer: w.producers.last_batch_offsets(),
            },
            dedupe_buffer_bytes: config.cleaner_dedupe_buffer_bytes,
            segments,
        })
    }

    fn run_pass(&self, plan: &Plan, now: i64) -> std::result::Result<u64, PassError> {
        let (map, mapped_upto) = self.map_dirty_section(plan)?;
        #[cfg(test)]
        self.test_hooks.run_mid_pass(self);
        let mut removed = 0;
        let mut next_horizon: Option<i64> = None;
        for seg in plan
            .segments
            .iter()
            .take_while(|s| s.base_offset() < mapped_upto)
        {
            let (stats, staged) = self.clean_segment(seg, &map, &plan.params)?;
            if let Some(at) = stats.next_delete_horizon {
                next_horizon = Some(next_horizon.map_or(at, |n| n.min(at)));
            }
            if !stats.changed() {
                continue;
            }
            match self.swap_in(plan, seg, staged.as_ref(), now)? {
                Swap::Done => removed += stats.removed,
                Swap::Abandoned => return Ok(removed),
            }
        }
        let mut w = self.writer.lock();
        if w.truncations == plan.truncations {
            w.cleaned_upto = mapped_upto;
            w.next_delete_horizon = next_horizon;
        }
        drop(w);
        if removed > 0 {
            tracing::info!(partition = %self.tp, removed, keys = map.len(), %mapped_upto, "compacted");
        }
        Ok(removed)
    }

    /// Maps the keys of the dirty section, as far as the map holds them; returns the map and
    /// the offset it reaches (the next pass starts there).
    fn map_dirty_section(
        &self,
        plan: &Plan,
    ) -> std::result::Result<(OffsetMap, Offset), PassError> {
        let end = plan
            .segments
            .last()
            .map_or(plan.first_dirty, |s| s.next_offset());
        // The dirty offsets bound the keys to map: the table is sized once and never grows.
        let span = end.0.saturating_sub(plan.first_dirty.0).max(0) as usize;
        let mut map = OffsetMap::bounded(plan.dedupe_buffer_bytes, span);
        let mut mapped_upto = plan.first_dirty;
        for seg in &plan.segments {
            if seg.next_offset() <= plan.first_dirty {
                continue;
            }
            let files = seg.files()?;
            let mut batches = seg.file_batches(&files, 0);
            while let Some((at, h)) = batches.next_batch()? {
                if h.next_offset() <= plan.first_dirty.0 {
                    continue;
                }
                if map.is_full_for(h.record_count.max(0) as usize) {
                    return Ok((map, mapped_upto));
                }
                map.add_batch(batches.bytes(at, h.size())?, &h)
                    .map_err(|e| undecodable(seg, e))?;
                mapped_upto = Offset(h.next_offset());
            }
            whole(seg, &batches)?;
            mapped_upto = mapped_upto.max(seg.next_offset());
        }
        Ok((map, mapped_upto))
    }

    /// Cleans `seg` into staged files (log and indexes); `None` when nothing of it survives.
    /// Unchanged segments leave no staged file.
    fn clean_segment(
        &self,
        seg: &LogSegment,
        map: &OffsetMap,
        params: &CleanParams,
    ) -> std::result::Result<(CleanStats, Option<Offset>), PassError> {
        let base = seg.base_offset();
        let result = self.write_cleaned(seg, map, params);
        if result.is_err() {
            self.remove_staged(base);
        }
        result
    }

    fn write_cleaned(
        &self,
        seg: &LogSegment,
        map: &OffsetMap,
        params: &CleanParams,
    ) -> std::result::Result<(CleanStats, Option<Offset>), PassError> {
        let base = seg.base_offset();
        let path = self.dir.join(staged_name(base, "log"));
        let files = seg.files()?;
        let mut batches = seg.file_batches(&files, 0);
        let mut stats = CleanStats::default();
        let mut out = Vec::new();
        let mut file = std::io::BufWriter::with_capacity(1 << 20, create_staged(&path)?);
        let mut written = 0usize;
        while let Some((at, h)) = batches.next_batch()? {
            out.clear();
            cleaner::clean_batch(
                batches.bytes(at, h.size())?,
                &h,
                map,
                params,
                &mut stats,
                &mut out,
            )
            .map_err(|e| undecodable(seg, e))?;
            file.write_all(&out)
                .map_err(|e| StorageError::io(&path, e))?;
            written += out.len();
        }
        whole(seg, &batches)?;
        file.into_inner()
            .map_err(|e| StorageError::io(&path, e.into_error()))?
            .sync_all()
            .map_err(|e| StorageError::io(&path, e))?;
        if !stats.changed() || written == 0 {
            self.remove_staged(base);
            return Ok((stats, None));
        }
        LogSegment::index_staged(
            &self.dir,
            base,
            params_of(self),
            Arc::clone(&self.budget),
            super::open::now_ms(),
        )?;
        Ok((stats, Some(base)))
    }

    /// Swaps the staged files of `old` in (or deletes `old` when `staged` is `None`: nothing
    /// of it survived), under the writer lock.
    fn swap_in(
        &self,
        plan: &Plan,
        old: &Arc<LogSegment>,
        staged: Option<&Offset>,
        now: i64,
    ) -> Result<Swap> {
        let base = old.base_offset();
        let mut w = self.writer.lock();
        let live = self
            .segments
            .read()
            .get(&base.0)
            .is_some_and(|s| Arc::ptr_eq(s, old));
        if !live || w.truncations != plan.truncations || self.closed.load(Ordering::Acquire) {
            drop(w);
            self.remove_staged(base);
            return Ok(Swap::Abandoned);
        }
        old.retire()?;
        if staged.is_none() {
            self.segments.write().remove(&base.0);
            self.delete_segment(&mut w, old)?;
            return Ok(Swap::Done);
        }
        for ext in ["index", "timeindex"] {
            remove_if_present(&self.dir.join(file_name(base, ext)))?;
        }
        crate::io::fsync_dir(&self.dir)?;
        rename(&self.dir, base, "log")?;
        crate::io::fsync_dir(&self.dir)?;
        for ext in ["index", "timeindex"] {
            rename(&self.dir, base, ext)?;
        }
        crate::io::fsync_dir(&self.dir)?;
        // The renamed indexes are consistent with the log, so this reads only the bytes
        // after the last index entry.
        let (seg, _) = LogSegment::open(
            &self.dir,
            base,
            params_of(self),
            Arc::clone(&self.budget),
            false,
            now,
            &mut || Ok(()),
        )?;
        self.segments.write().insert(base.0, seg);
        Ok(Swap::Done)
    }

    fn remove_staged(&self, base: Offset) {
        for ext in ["log", "index", "timeindex"] {
            let p = self.dir.join(staged_name(base, ext));
            if let Err(e) = remove_if_present(&p) {
                // The next open removes it.
                tracing::warn!(partition = %self.tp, error = %e, "could not remove a staged file of the cleaner");
            }
        }
    }
}

fn params_of(log: &Log) -> crate::segment::SegmentParams {
    params(&log.config())
}

/// Fails when `batches` stopped at a framing defect: the batches after it would be left out of
/// the cleaned segment, that is, deleted.
fn whole(seg: &LogSegment, batches: &FileBatches<'_>) -> std::result::Result<(), PassError> {
    match batches.defect() {
        Some(defect) => Err(PassError::Undecodable(format!(
            "{}: compaction found {defect} at byte {}",
            seg.log_path().display(),
            batches.pos()
        ))),
        None => Ok(()),
    }
}

fn undecodable(seg: &LogSegment, e: crate::record::RecordError) -> PassError {
    PassError::Undecodable(format!(
        "{}: compaction cannot decode records: {e}",
        seg.log_path().display()
    ))
}

fn create_staged(path: &PathBuf) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| StorageError::io(path, e))
}

fn rename(dir: &std::path::Path, base: Offset, ext: &str) -> Result<()> {
    let from = dir.join(staged_name(base, ext));
    let to = dir.join(file_name(base, ext));
    std::fs::rename(&from, &to).map_err(|e| StorageError::io(&to, e))
}

fn remove_if_present(p: &std::path::Path) -> Result<()> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(p, e)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::config::CleanupPolicy;
    use crate::log::tests::{open, small_config};
    use crate::record::{records_section, BatchBuilder, RecordIter};
    use crate::{AppendOptions, Offset, ReadOptions, StorageError};

    fn read_records(log: &crate::Log) -> Vec<(i64, Vec<u8>, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        let mut at = log.offsets().log_start;
        while at < log.offsets().log_end {
            let d = log.read(&ReadOptions::from(at)).expect("read");
            if d.records.is_empty() {
                break;
            }
            for (pos, h) in crate::batch::BatchIter::new(&d.records) {
                let (_, recs) =
                    records_section(&d.records[pos..pos + h.size()], 1 << 20).expect("batch");
                for r in RecordIter::new(&recs, h.record_count as usize) {
                    let r = r.expect("record");
                    out.push((
                        h.base_offset + r.offset_delta as i64,
                        r.key.expect("key").to_vec(),
                        r.value.map(<[u8]>::to_vec),
                    ));
                }
                at = Offset(h.next_offset());
            }
        }
        out
    }

    #[test]
    fn compaction_keeps_the_latest_value_per_key_across_segments_and_a_restart() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = small_config();
        config.cleanup_policy = CleanupPolicy::Compact;
        config.delete_retention_ms = 1000;
        let log = open(dir.path(), config.clone());
        let mut model = BTreeMap::new();
        for i in 0..200i64 {
            let key = format!("k{}", i % 7).into_bytes();
            let value = (i % 11 != 0).then(|| vec![b'v'; 100 + i as usize % 50]);
            let b = BatchBuilder::new()
                .record(Some(&key), value.as_deref(), 5_000 + i)
                .build();
            let info = log.append(&b, &AppendOptions::default()).expect("append");
            model.insert(key, (info.first_offset.0, value));
        }
        let before = log.segment_count();
        let active_base = log
            .segments
            .read()
            .keys()
            .next_back()
            .copied()
            .expect("active");
        let removed = log.housekeeping(6_000).expect("hk").records_compacted;
        assert!(removed > 100, "removed {removed}");
        let got = read_records(&log);
        // Below the active segment, exactly the latest record of each key survives.
        let cleaned: Vec<_> = got.iter().filter(|r| r.0 < active_base).cloned().collect();
        let mut keys = std::collections::BTreeSet::new();
        for (o, k, v) in &cleaned {
            assert!(keys.insert(k.clone()), "key {k:?} twice");
            let latest = &model[k];
            if latest.0 < active_base {
                assert_eq!((o, v), (&latest.0, &latest.1));
            }
        }
        assert!(log.segment_count() <= before);
        // Offsets never change; the log end is where it was.
        assert_eq!(log.offsets().log_end, Offset(200));
        drop(log);
        let log = open(dir.path(), config);
        assert_eq!(
            read_records(&log),
            got,
            "compacted log survives reopen unchanged"
        );
        let b = BatchBuilder::new().record(None, Some(b"no key"), 1).build();
        assert!(
            matches!(
                log.append(&b, &AppendOptions::default()),
                Err(StorageError::InvalidRecord { records, .. }) if records.len() == 1 && records[0].0 == 0
            ),
            "compacted topics need keys"
        );
    }
}
