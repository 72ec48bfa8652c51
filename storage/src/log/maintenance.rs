//! Flushing, checkpoints, retention, DeleteRecords, truncation and close.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::open::now_ms;
use super::{
    params, Log, Writer, CLEAN_SHUTDOWN_FILE, HIGH_WATERMARK_FILE, LEADER_EPOCH_FILE,
    LOG_START_FILE, RECOVERY_POINT_FILE, SNAPSHOT_EXT,
};
use crate::checkpoint;
use crate::error::{Result, StorageError};
use crate::segment::{file_name, LogSegment};
use crate::types::Offset;

/// How often the recovery-point and log-start checkpoints are rewritten by housekeeping
/// (Kafka's `log.flush.offset.checkpoint.interval.ms` default). A stale checkpoint only makes
/// recovery scan more, so writing it on every flush would cost two fsyncs for nothing.
const CHECKPOINT_INTERVAL_MS: i64 = 60_000;
/// How often a changed high watermark is checkpointed (Kafka's
/// `replica.high.watermark.checkpoint.interval.ms`).
const HW_CHECKPOINT_INTERVAL_MS: i64 = 5_000;

/// What one housekeeping pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HousekeepingReport {
    /// Segments deleted by retention or log-start advance.
    pub segments_deleted: usize,
    /// True if the active segment was rolled by `segment.ms`.
    pub rolled: bool,
    /// True if unflushed data was flushed by `flush.ms`.
    pub flushed: bool,
    /// True if segments sealed since the last flush (by a roll or a truncation) were made
    /// durable and the recovery point moved past them.
    pub sealed_flushed: bool,
    /// Records removed by compaction.
    pub records_compacted: u64,
}

/// The renamed files of a deleted segment, waiting for `file.delete.delay.ms` (Kafka's
/// asynchronous delete; the next open removes any left by a stop).
#[derive(Debug)]
pub(crate) struct PendingDelete {
    files: Vec<PathBuf>,
    /// When they may be unlinked, on the embedder's clock. Deletions happen on paths without
    /// that clock (truncation, DeleteRecords), so the first housekeeping pass after one sets it.
    due: Option<i64>,
}

impl Log {
    /// Deletes `seg`'s files Kafka's way (renamed `.deleted`, unlinked by housekeeping after
    /// `file.delete.delay.ms`). The caller has removed it from the segment map.
    pub(crate) fn delete_segment(&self, w: &mut Writer, seg: &LogSegment) -> Result<()> {
        let files = seg.delete()?;
        if !files.is_empty() {
            w.pending_deletes.push(PendingDelete { files, due: None });
        }
        Ok(())
    }

    /// Unlinks the files of segments deleted at least `file.delete.delay.ms` ago. A failure is
    /// logged and left to the next open, which removes every `.deleted` file.
    fn unlink_deleted(&self, w: &mut Writer, now: i64, delay_ms: i64) {
        for p in &mut w.pending_deletes {
            p.due.get_or_insert(now.saturating_add(delay_ms));
        }
        w.pending_deletes.retain(|p| {
            if p.due.is_some_and(|due| due > now) {
                return true;
            }
            for f in &p.files {
                match std::fs::remove_file(f) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(file = %f.display(), error = %e, "could not remove a deleted segment's file")
                    }
                }
            }
            false
        });
    }

    /// Makes everything appended so far durable and advances the recovery point.
    pub fn flush(&self) -> Result<()> {
        let mut w = self.writer.lock();
        self.check_writable()?;
        self.flush_locked(&mut w, now_ms(), true)
    }

    pub(crate) fn flush_locked(&self, w: &mut Writer, _now: i64, with_indexes: bool) -> Result<()> {
        self.flush_sealed_locked(w)?;
        let active = self.active()?;
        let res = if with_indexes {
            active.flush()
        } else {
            active.flush_log()
        };
        res.map_err(|e| self.poison_with(e))?;
        w.unflushed_records = 0;
        w.first_unflushed_ms = None;
        let end = active.next_offset();
        self.publish(|o| o.recovery_point = o.recovery_point.max(end.min(o.log_end)));
        Ok(())
    }

    /// Makes the segments sealed since the last flush durable, with the writer lock held.
    fn flush_sealed_locked(&self, w: &mut Writer) -> Result<()> {
        let Some(upto) = w.sealed_unflushed_upto else {
            return Ok(());
        };
        for seg in self.sealed_above_recovery_point(upto) {
            seg.flush().map_err(|e| self.poison_with(e))?;
        }
        w.sealed_unflushed_upto = None;
        Ok(())
    }

    /// Segments below `upto` that may hold records at or above the recovery point.
    fn sealed_above_recovery_point(&self, upto: Offset) -> Vec<Arc<LogSegment>> {
        let rp = self.offsets().recovery_point;
        self.segments
            .read()
            .range(..upto.0)
            .map(|(_, seg)| seg)
            .filter(|seg| seg.next_offset() > rp)
            .cloned()
            .collect()
    }

    /// Kafka's `flush-log` task after a roll: makes the segments sealed since the last flush
    /// durable and moves the recovery point up to the first segment after them, so recovery
    /// after an unclean stop scans only what came later. Sealed segments no longer change, so
    /// the flushing runs without the writer lock and appends go on meanwhile.
    fn flush_rolled(&self) -> Result<bool> {
        let (upto, truncations) = {
            let w = self.writer.lock();
            match w.sealed_unflushed_upto {
                Some(upto) if self.poison.read().is_none() => (upto, w.truncations),
                _ => return Ok(false),
            }
        };
        for seg in self.sealed_above_recovery_point(upto) {
            if let Err(e) = seg.flush() {
                // Retention or a truncation may have deleted the segment meanwhile; only a
                // failure to flush a segment still in the log counts.
                let live = self
                    .segments
                    .read()
                    .get(&seg.base_offset().0)
                    .is_some_and(|s| Arc::ptr_eq(s, &seg));
                if live {
                    return Err(self.poison_with(e));
                }
            }
        }
        let mut w = self.writer.lock();
        if w.truncations != truncations {
            // What was flushed may have been cut off and rewritten; the truncation asked again.
            return Ok(false);
        }
        if w.sealed_unflushed_upto == Some(upto) {
            w.sealed_unflushed_upto = None;
        }
        self.publish(|o| o.recovery_point = o.recovery_point.max(upto.min(o.log_end)));
        Ok(true)
    }

    /// Periodic work, driven by the embedder's clock: `flush.ms`, `segment.ms`, expiry of
    /// producer ids idle past `producer.id.expiration.ms`, retention by time and size, compaction, unlinking deleted segments' files after
    /// `file.delete.delay.ms`, deferred file shrinking and checkpoints.
    pub fn housekeeping(&self, now: i64) -> Result<HousekeepingReport> {
        let mut report = HousekeepingReport {
            sealed_flushed: self.flush_rolled()?,
            ..HousekeepingReport::default()
        };
        let mut w = self.writer.lock();
        if self.closed.load(Ordering::Acquire) {
            return Ok(report);
        }
        let config = self.config();
        let active = self.active()?;
        if self.poison.read().is_none() {
            if w.first_unflushed_ms
                .is_some_and(|t| now.saturating_sub(t) >= config.flush_ms)
            {
                self.flush_locked(&mut w, now, false)?;
                report.flushed = true;
            }
            if !active.is_empty() && active.age_ms(now) >= config.segment_ms {
                let end = self.offsets().log_end;
                self.roll(&mut w, end, 0, now)?;
                report.rolled = true;
            }
        }
        let expired = w
            .producers
            .remove_expired(now, config.producer_id_expiration_ms);
        if expired > 0 {
            tracing::debug!(partition = %self.tp, expired, "producer ids expired");
        }
        if config.cleanup_policy.deletes() {
            report.segments_deleted += self.apply_retention(&mut w, now)?;
        }
        report.segments_deleted += self.delete_below_log_start(&mut w)?;
        self.unlink_deleted(&mut w, now, config.file_delete_delay_ms);
        for seg in self.segments.read().values() {
            seg.maybe_shrink();
        }
        if now.saturating_sub(w.last_checkpoint_ms) >= CHECKPOINT_INTERVAL_MS {
            self.write_checkpoints(&mut w, now)?;
        } else if now.saturating_sub(w.checkpointed_hw.1) >= HW_CHECKPOINT_INTERVAL_MS {
            self.write_hw_checkpoint(&mut w, now)?;
        }
        drop(w);
        if config.cleanup_policy.compacts() {
            report.records_compacted += self.compact(now)?;
        }
        Ok(report)
    }

    /// Deletes sealed segments past `retention.ms` (by their newest timestamp) and, oldest
    /// first, while the log exceeds `retention.bytes`. The active segment is never deleted.
    fn apply_retention(&self, w: &mut Writer, now: i64) -> Result<usize> {
        let config = self.config();
        let segs: Vec<Arc<LogSegment>> = self.segments.read().values().cloned().collect();
        let Some((_, sealed)) = segs.split_last() else {
            return Ok(0);
        };
        let mut total: i64 = segs.iter().map(|s| s.size() as i64).sum();
        let hw = self.offsets().high_watermark;
        let mut new_start = None;
        for seg in sealed {
            // Only data below the high watermark may go: consumers may not have it yet otherwise.
            if seg.next_offset() > hw {
                break;
            }
            let newest = if seg.max_timestamp() >= 0 {
                seg.max_timestamp()
            } else {
                seg.created_ms()
            };
            let by_time =
                config.retention_ms >= 0 && now.saturating_sub(newest) > config.retention_ms;
            let by_size =
                config.retention_bytes >= 0 && total - seg.size() as i64 >= config.retention_bytes;
            if !(by_time || by_size) {
                break;
            }
            total -= seg.size() as i64;
            new_start = Some(seg.next_offset());
        }
        match new_start {
            Some(start) => {
                self.advance_log_start(start);
                self.delete_below_log_start(w)
            }
            None => Ok(0),
        }
    }

    fn advance_log_start(&self, start: Offset) {
        self.publish(|o| {
            o.log_start = o.log_start.max(start.min(o.log_end));
            o.high_watermark = o.high_watermark.max(o.log_start);
            o.last_stable = o.last_stable.max(o.log_start);
        });
    }

    /// Removes sealed segments that lie wholly below the log start offset.
    fn delete_below_log_start(&self, w: &mut Writer) -> Result<usize> {
        let start = self.offsets().log_start;
        let doomed: Vec<Arc<LogSegment>> = {
            let mut segs = self.segments.write();
            let n = segs.len();
            let victims: Vec<i64> = segs
                .iter()
                .take(n.saturating_sub(1))
                .filter(|(_, s)| s.next_offset() <= start)
                .map(|(b, _)| *b)
                .collect();
            victims.iter().filter_map(|b| segs.remove(b)).collect()
        };
        for seg in &doomed {
            self.delete_segment(w, seg)?;
        }
        if !doomed.is_empty() {
            w.epochs.truncate_from_start(start);
            // Snapshots below the first segment describe records no truncation can reach.
            if let Some(first) = self.segments.read().keys().next().copied() {
                self.remove_snapshots(|b| b < first)?;
            }
        }
        Ok(doomed.len())
    }

    /// DeleteRecords: makes `offset` the new log start (it must not pass the high watermark)
    /// and deletes the segments wholly below it. Returns the new log start.
    pub fn delete_records_before(&self, offset: Offset) -> Result<Offset> {
        let mut w = self.writer.lock();
        self.check_writable()?;
        let o = self.offsets();
        if offset > o.high_watermark || offset.0 < 0 {
            return Err(StorageError::OffsetOutOfRange {
                partition: self.tp.clone(),
                requested: offset,
                log_start: o.log_start,
                log_end: o.high_watermark,
            });
        }
        if offset > o.log_start {
            self.advance_log_start(offset);
            // DeleteRecords must survive a restart: persist the new start at once.
            self.write_checkpoints(&mut w, now_ms())?;
            self.delete_below_log_start(&mut w)?;
        }
        Ok(self.offsets().log_start)
    }

    /// Removes every record at or after `offset` (a follower truncating to its leader).
    /// Truncating below the log start empties the log and restarts it at `offset`.
    pub fn truncate_to(&self, offset: Offset) -> Result<()> {
        let mut w = self.writer.lock();
        self.check_writable()?;
        let o = self.offsets();
        if offset >= o.log_end {
            // No record to remove, but the epoch cache may still end with an epoch this
            // broker assigned as leader and never wrote in. Kept, it would be the latest epoch
            // the next OffsetForLeaderEpoch asks with, and the truncation would stop before
            // the records that diverge from the new leader (Kafka's `UnifiedLog.truncateTo`
            // truncates the cache from the log end in this case too).
            if w.epochs.truncate_from_end(o.log_end) {
                self.write_checkpoints(&mut w, now_ms())?;
            }
            return Ok(());
        }
        // Nothing changes until the cut is known to fall between batches (Kafka truncates to
        // batch boundaries only): a truncation refused here leaves the log as it was.
        let cut_in = if offset < o.log_start {
            None
        } else {
            self.segments
                .read()
                .range(..offset.0)
                .next_back()
                .map(|(_, s)| Arc::clone(s))
        };
        if let Some(seg) = &cut_in {
            seg.cut_position(offset)?;
        }
        // From here on files change. Readers stop at the new end first, so whatever fails
        // below, no reader is ever served a hole: the published log is a prefix of the old one.
        self.publish(|o| {
            if offset < o.log_start {
                o.log_start = offset;
            }
            o.log_end = offset;
            o.high_watermark = o.high_watermark.min(offset);
            o.last_stable = o.last_stable.min(offset);
            o.recovery_point = o.recovery_point.min(offset);
        });
        w.truncations += 1;
        // A failure now leaves the files neither before nor after the cut; as Kafka takes the
        // log directory offline, the log refuses writes until it is reopened (and recovered).
        self.cut_files_locked(&mut w, offset, cut_in.as_ref(), now_ms())
            .map_err(|e| self.poison_with(e))
    }

    /// The file work of [`Log::truncate_to`], after its offsets were published: deletes the
    /// segments at or after `offset` (all of them when `cut_in` is `None`), cuts `cut_in`,
    /// starts the new active segment at `offset`, and rebuilds the state derived from batches.
    fn cut_files_locked(
        &self,
        w: &mut Writer,
        offset: Offset,
        cut_in: Option<&Arc<LogSegment>>,
        now: i64,
    ) -> Result<()> {
        let doomed: Vec<Arc<LogSegment>> = {
            let mut segs = self.segments.write();
            let cut = match cut_in {
                None => std::mem::take(&mut *segs),
                Some(_) => segs.split_off(&offset.0),
            };
            cut.into_values().collect()
        };
        for seg in &doomed {
            self.delete_segment(w, seg)?;
        }
        if let Some(seg) = cut_in {
            seg.truncate_to(offset)?;
        }
        self.start_segment_at(offset, now)?;
        w.cleaned_upto = w.cleaned_upto.min(offset);
        w.epochs.truncate_from_end(offset);
        self.remove_snapshots(|b| b > offset.0)?;
        self.reload_producers(w, offset, cut_in.is_some())?;
        // The segment cut (now sealed) and any sealed before it may still be unflushed.
        w.sealed_unflushed_upto = Some(offset);
        // A crash before the truncated file shrinks must rescan it: persist the lower point now.
        self.write_checkpoints(w, now)
    }

    /// Empties the log and restarts it at `offset`, which may lie beyond its end: a follower
    /// whose whole log is older than its leader's log start (retention ran on the leader)
    /// continues from there.
    pub fn truncate_fully_and_start_at(&self, offset: Offset) -> Result<()> {
        let mut w = self.writer.lock();
        self.check_writable()?;
        let now = now_ms();
        self.start_over_locked(&mut w, offset, now)?;
        self.publish(|o| {
            o.log_start = offset;
            o.log_end = offset;
            o.high_watermark = offset;
            o.last_stable = offset;
            o.recovery_point = offset;
        });
        self.write_checkpoints(&mut w, now)
    }

    /// Deletes every segment and starts an empty one at `offset`, with the epoch cache and
    /// producer state cleared. Publishes nothing: the caller publishes the offsets that
    /// follow, once they hold the `LogOffsets` invariant again, and checkpoints them.
    pub(crate) fn start_over_locked(&self, w: &mut Writer, offset: Offset, now: i64) -> Result<()> {
        let doomed: Vec<Arc<LogSegment>> = std::mem::take(&mut *self.segments.write())
            .into_values()
            .collect();
        for seg in &doomed {
            self.delete_segment(w, seg)?;
        }
        self.start_segment_at(offset, now)?;
        w.epochs.truncate_from_end(Offset(i64::MIN));
        w.producers = crate::producer_state::ProducerStateManager::default();
        self.remove_snapshots(|_| true)?;
        w.truncations += 1;
        w.cleaned_upto = w.cleaned_upto.min(offset);
        w.sealed_unflushed_upto = None;
        Ok(())
    }

    /// A new, empty active segment at `offset`.
    fn start_segment_at(&self, offset: Offset, now: i64) -> Result<()> {
        let seg = LogSegment::create(
            &self.dir,
            offset,
            params(&self.config()),
            Arc::clone(&self.budget),
            now,
            0,
            false,
        )?;
        self.segments.write().insert(offset.0, seg);
        Ok(())
    }

    /// Flushes, trims the active segment's preallocation and writes every checkpoint, so the
    /// next open needs no recovery. The log refuses further use afterwards.
    pub fn close(&self) -> Result<()> {
        let mut w = self.writer.lock();
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if let Some(reason) = self.poison.read().clone() {
            return Err(StorageError::Poisoned {
                partition: self.tp.clone(),
                reason,
            });
        }
        self.flush_sealed_locked(&mut w)?;
        let active = self.active()?;
        active.seal().map_err(|e| self.poison_with(e))?;
        active.flush().map_err(|e| self.poison_with(e))?;
        self.publish(|o| o.recovery_point = o.log_end);
        let end = self.offsets().log_end;
        self.write_producer_snapshot(&w, end)?;
        self.write_checkpoints(&mut w, now_ms())?;
        // Last: everything the next open trusts instead of reading the log is durable now.
        crate::io::write_atomic(&self.dir.join(CLEAN_SHUTDOWN_FILE), b"")
    }

    pub(crate) fn write_checkpoints(&self, w: &mut Writer, now: i64) -> Result<()> {
        let o = self.offsets();
        let line = |off: Offset| vec![format!("{} {} {}", self.tp.topic, self.tp.partition, off.0)];
        // The epochs first: the next open trusts them for every batch below the recovery
        // point it reads, so they must never be older than that recovery point.
        let epochs: Vec<String> = w
            .epochs
            .entries()
            .iter()
            .map(|(e, off)| format!("{} {}", e.0, off.0))
            .collect();
        checkpoint::write(&self.dir.join(LEADER_EPOCH_FILE), &epochs)?;
        if w.checkpointed.0 != o.recovery_point {
            checkpoint::write(&self.dir.join(RECOVERY_POINT_FILE), &line(o.recovery_point))?;
        }
        if w.checkpointed.1 != o.log_start {
            checkpoint::write(&self.dir.join(LOG_START_FILE), &line(o.log_start))?;
        }
        w.checkpointed = (o.recovery_point, o.log_start);
        w.last_checkpoint_ms = now;
        self.write_hw_checkpoint(w, now)
    }

    /// Writes the high watermark if a replication layer manages it and it changed.
    fn write_hw_checkpoint(&self, w: &mut Writer, now: i64) -> Result<()> {
        let hw = self.offsets().high_watermark;
        if self.hw_managed.load(Ordering::Acquire) && w.checkpointed_hw.0 != hw {
            let line = vec![format!("{} {} {}", self.tp.topic, self.tp.partition, hw.0)];
            checkpoint::write(&self.dir.join(HIGH_WATERMARK_FILE), &line)?;
        }
        w.checkpointed_hw = (hw, now);
        Ok(())
    }

    /// Writes the producer state as of `offset`. Older snapshots stay while their segments
    /// do (one per roll): a truncation reloads the newest one at or below its cut.
    pub(crate) fn write_producer_snapshot(&self, w: &Writer, offset: Offset) -> Result<()> {
        let mut data = w.producers.encode();
        let crc = crc32fast::hash(&data);
        data.extend_from_slice(&crc.to_be_bytes());
        let path = self.dir.join(file_name(offset, SNAPSHOT_EXT));
        crate::io::write_atomic(&path, &data)
    }

    /// Rebuilds producer state after a truncation to `offset` (Kafka's `truncateAndReload`):
    /// the newest snapshot at or below it, then the batch headers from there to the cut.
    /// Without `keep_history` (the whole log went) the state starts empty.
    fn reload_producers(&self, w: &mut Writer, offset: Offset, keep_history: bool) -> Result<()> {
        let mut from = Offset(i64::MIN);
        let mut producers = crate::producer_state::ProducerStateManager::default();
        if keep_history {
            let mut bases = self.snapshot_bases()?;
            bases.sort_unstable();
            for base in bases.iter().rev().filter(|b| **b <= offset.0) {
                let path = self.dir.join(file_name(Offset(*base), SNAPSHOT_EXT));
                if let Some(state) = super::open::read_snapshot(&path, now_ms()) {
                    producers = state;
                    from = Offset(*base);
                    break;
                }
            }
        }
        let mut replayed = 0;
        let segments: Vec<Arc<LogSegment>> = self.segments.read().values().cloned().collect();
        for seg in segments.iter().filter(|s| s.next_offset() > from) {
            for h in seg.headers_from(from)? {
                if h.base_offset < from.0 || h.is_control() {
                    continue;
                }
                replayed += 1;
                producers.update(
                    &h,
                    Offset(h.base_offset),
                    Offset(h.last_offset()),
                    h.max_timestamp,
                );
            }
        }
        w.producers = producers;
        w.truncation_replayed = replayed;
        Ok(())
    }

    fn snapshot_bases(&self) -> Result<Vec<i64>> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| StorageError::io(&self.dir, e))?;
        Ok(entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let (stem, ext) = name.rsplit_once('.')?;
                (ext == SNAPSHOT_EXT).then(|| stem.parse::<i64>().ok())?
            })
            .collect())
    }

    fn remove_snapshots(&self, doomed: impl Fn(i64) -> bool) -> Result<()> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| StorageError::io(&self.dir, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some((stem, SNAPSHOT_EXT)) = name.rsplit_once('.') {
                if stem.parse::<i64>().is_ok_and(&doomed) {
                    let p = entry.path();
                    std::fs::remove_file(&p).map_err(|e| StorageError::io(&p, e))?;
                }
            }
        }
        Ok(())
    }
}
