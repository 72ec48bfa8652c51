//! `Log`: one partition's directory of segments, with a single writer and lock-free readers.
//!
//! Lifecycle: [`Log::open`] recovers the directory (see `open.rs`), appends go to the active
//! segment (`append.rs`), reads copy whole batches with `pread(2)` (`read.rs`), and retention, truncation,
//! flushing and checkpoints live in `maintenance.rs`. [`Log::close`] trims and checkpoints so
//! the next open skips recovery.
//!
//! Concurrency: the writer state is behind one mutex (appends, truncation, roll, maintenance);
//! the segment map is behind a read-mostly lock held only to clone `Arc`s; [`LogOffsets`] are
//! published through an `ArcSwap` after every change and read without any lock.

mod append;
mod compaction;
#[cfg(test)]
mod compaction_pass_tests;
#[cfg(test)]
mod compaction_tests;
#[cfg(test)]
mod crash_tests;
#[cfg(test)]
mod deletion_tests;
#[cfg(test)]
mod follower_tests;
#[cfg(test)]
mod load_tests;
mod maintenance;
#[cfg(test)]
mod offset_range_tests;
mod open;
#[cfg(test)]
mod producer_tests;
mod read;
mod recompress;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod truncation_tests;
mod validation;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};

use crate::config::LogConfig;
use crate::error::{Result, StorageError};
use crate::leader_epoch::LeaderEpochCache;
use crate::map_budget::MapBudget;
use crate::producer_state::ProducerStateManager;
use crate::segment::{LogSegment, SegmentParams};
use crate::types::{LeaderEpoch, Offset, TopicPartition};

pub use append::{AppendInfo, AppendOptions, AppendOrigin};
pub use maintenance::HousekeepingReport;
pub use read::{FetchData, ReadOptions};

/// The offsets that describe a log, published together after every change.
///
/// Invariant: `log_start <= high_watermark <= log_end`, `last_stable <= high_watermark`,
/// and `recovery_point <= log_end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogOffsets {
    /// First offset readable (raised by retention and DeleteRecords).
    pub log_start: Offset,
    /// Offset up to which records are committed (replicated); set by the embedder.
    pub high_watermark: Offset,
    /// Offset below which no transaction is open; equals the high watermark without transactions.
    pub last_stable: Offset,
    /// Offset the next appended record gets.
    pub log_end: Offset,
    /// Offset up to which data is known to be on disk.
    pub recovery_point: Offset,
}

pub(crate) struct Writer {
    pub(crate) producers: ProducerStateManager,
    pub(crate) epochs: LeaderEpochCache,
    pub(crate) unflushed_records: i64,
    /// When the oldest unflushed append happened (for `flush.ms`).
    pub(crate) first_unflushed_ms: Option<i64>,
    pub(crate) checkpointed: (Offset, Offset),
    pub(crate) last_checkpoint_ms: i64,
    /// The high watermark last written to its checkpoint, and when.
    pub(crate) checkpointed_hw: (Offset, i64),
    /// Compaction has cleaned every sealed segment below this offset.
    pub(crate) cleaned_upto: Offset,
    /// The earliest delete horizon of a tombstone the last compaction kept: a pass at or
    /// after it removes tombstones even when nothing new was written.
    pub(crate) next_delete_horizon: Option<i64>,
    /// Segments below this offset were sealed (by a roll or a truncation) and may not be durable
    /// yet: flushing them moves the recovery point up to it (see `Log::flush_rolled`).
    pub(crate) sealed_unflushed_upto: Option<Offset>,
    /// Bumped by every truncation, so a flush that ran without the writer lock can tell that
    /// what it flushed may no longer be the log.
    pub(crate) truncations: u64,
    /// Deleted segments' files not yet unlinked (see `Log::delete_segment`).
    pub(crate) pending_deletes: Vec<maintenance::PendingDelete>,
    /// Why compaction skips this log (records it could not decode), until it is reopened.
    pub(crate) uncleanable: Option<String>,
    /// Batch headers the last truncation replayed (see [`LoadStats`]).
    pub(crate) truncation_replayed: u64,
}

/// A partition log. Share it as `Arc<Log>`: every method takes `&self`.
pub struct Log {
    dir: PathBuf,
    tp: TopicPartition,
    config: RwLock<LogConfig>,
    segments: RwLock<BTreeMap<i64, Arc<LogSegment>>>,
    writer: Mutex<Writer>,
    offsets: ArcSwap<LogOffsets>,
    poison: RwLock<Option<String>>,
    closed: AtomicBool,
    hw_managed: AtomicBool,
    /// The high watermark checkpointed by a replication layer before the last stop.
    recovered_hw: Option<Offset>,
    budget: Arc<MapBudget>,
    load_stats: LoadStats,
    /// Held by a compaction pass, which runs without the writer lock: one pass at a time.
    cleaning: Mutex<()>,
    #[cfg(test)]
    pub(crate) test_hooks: TestHooks,
}

/// Points where tests act on a log while one of its operations is half way.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct TestHooks {
    /// Runs once, in a compaction pass after the keys are mapped and before any swap.
    pub(crate) mid_pass: Mutex<Option<Hook>>,
}

/// Code a test runs inside an operation of the log.
#[cfg(test)]
pub(crate) type Hook = Box<dyn FnOnce(&Log) + Send>;

#[cfg(test)]
impl TestHooks {
    pub(crate) fn run_mid_pass(&self, log: &Log) {
        let hook = self.mid_pass.lock().take();
        if let Some(f) = hook {
            f(log);
        }
    }
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("tp", &self.tp)
            .field("offsets", &self.offsets())
            .finish()
    }
}

pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";
pub(crate) const LOG_START_FILE: &str = "log-start-offset-checkpoint";
pub(crate) const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";
pub(crate) const HIGH_WATERMARK_FILE: &str = "replication-offset-checkpoint";
pub(crate) const SNAPSHOT_EXT: &str = "snapshot";
/// Written last by [`Log::close`], removed by the next open: the log needs no recovery.
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";

/// What opening the log read, and what its last truncation replayed: the cost of a restart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadStats {
    /// The log was closed cleanly before this open: nothing was recovered.
    pub clean_shutdown: bool,
    /// Bytes of `.log` files read to open the segments (recovery scans and the tails after
    /// each segment's last index entry).
    pub bytes_scanned: u64,
    /// Batch headers replayed to rebuild producer and leader-epoch state at open.
    pub batches_replayed: u64,
    /// Batch headers replayed to rebuild producer state by the last truncation.
    pub batches_replayed_by_last_truncation: u64,
}

fn params(config: &LogConfig) -> SegmentParams {
    SegmentParams {
        segment_bytes: config.segment_bytes,
        index_bytes: config.segment_index_bytes,
        index_interval_bytes: config.index_interval_bytes,
        preallocate_chunk: config.preallocate_chunk_bytes,
    }
}

impl Log {
    /// Opens (creating if needed) the log in directory `dir`, recovering after an unclean stop.
    pub fn open(dir: &Path, tp: TopicPartition, config: LogConfig) -> Result<Log> {
        Log::open_with_budget(
            dir,
            tp,
            config,
            MapBudget::new(MapBudget::DEFAULT_MAX_MAPPED),
        )
    }

    /// Like [`Log::open`], sharing a bound on mapped segments with other logs.
    pub fn open_with_budget(
        dir: &Path,
        tp: TopicPartition,
        config: LogConfig,
        budget: Arc<MapBudget>,
    ) -> Result<Log> {
        open::open(dir, tp, config, budget)
    }

    /// The partition this log holds.
    pub fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Current offsets, without locking.
    pub fn offsets(&self) -> LogOffsets {
        **self.offsets.load()
    }

    /// A copy of the current configuration.
    pub fn config(&self) -> LogConfig {
        self.config.read().clone()
    }

    /// Replaces the configuration; segment sizes apply from the next roll.
    pub fn update_config(&self, config: LogConfig) {
        *self.config.write() = config;
    }

    /// Sets the high watermark (clamped to `[log_start, log_end]`). Without transactions the
    /// last stable offset follows it. The first call hands the high watermark to the caller
    /// (a replication layer) for good; until then it follows the log end, as a standalone log
    /// has nothing to wait for.
    pub fn set_high_watermark(&self, hw: Offset) {
        let _w = self.writer.lock();
        self.hw_managed.store(true, Ordering::Release);
        let mut o = self.offsets();
        o.high_watermark = hw.clamp(o.log_start, o.log_end);
        o.last_stable = o.high_watermark;
        self.offsets.store(Arc::new(o));
    }

    /// The high watermark a replication layer had set when the log was last checkpointed
    /// (within `[log_start, log_end]`), if it ever set one: where it may resume serving.
    pub fn checkpointed_high_watermark(&self) -> Option<Offset> {
        let o = self.offsets();
        self.recovered_hw.map(|hw| hw.clamp(o.log_start, o.log_end))
    }

    /// What the last open read and the last truncation replayed.
    pub fn load_stats(&self) -> LoadStats {
        LoadStats {
            batches_replayed_by_last_truncation: self.writer.lock().truncation_replayed,
            ..self.load_stats
        }
    }

    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.read().values().map(|s| s.size() as u64).sum()
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.segments.read().len()
    }

    /// The leader epoch in effect at the log end and where each epoch began.
    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.writer.lock().epochs.latest()
    }

    /// The leader epoch of the record at `offset` (of the next record, at the log end), as
    /// ListOffsets reports it (KIP-320).
    pub fn epoch_of(&self, offset: Offset) -> Option<LeaderEpoch> {
        self.writer.lock().epochs.epoch_at(offset)
    }

    /// Records that leader epoch `epoch` starts at the current log end, as a new partition
    /// leader does before it appends anything: a follower asking where an older epoch ended
    /// is then told this offset. Does nothing if the log already knows `epoch` or a newer one.
    pub fn assign_epoch(&self, epoch: LeaderEpoch) -> Result<()> {
        self.check_writable()?;
        let mut w = self.writer.lock();
        if w.epochs.begin_epoch(epoch, self.offsets().log_end) {
            self.write_checkpoints(&mut w, open::now_ms())?;
        }
        Ok(())
    }

    /// Kafka's OffsetForLeaderEpoch answer: the largest epoch `<= epoch` this log knows and
    /// the offset where it ended (the log end for the latest epoch).
    pub fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        let w = self.writer.lock();
        w.epochs.end_offset_for(epoch, self.offsets().log_end)
    }

    fn check_writable(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed(self.tp.clone()));
        }
        if let Some(reason) = self.poison.read().as_ref() {
            return Err(StorageError::Poisoned {
                partition: self.tp.clone(),
                reason: reason.clone(),
            });
        }
        Ok(())
    }

    /// Marks the log unwritable after a failed flush or a truncation that failed half way:
    /// what reached the disk is unknown.
    /// Refuses every further write, and the clean close that would let the next open skip
    /// recovery: the log's directory failed (`reason`), so what is on disk is not known.
    pub fn fail(&self, reason: &str) {
        let mut poison = self.poison.write();
        if poison.is_none() {
            *poison = Some(format!("log directory failed: {reason}"));
        }
    }

    fn poison_with(&self, e: StorageError) -> StorageError {
        tracing::error!(partition = %self.tp, error = %e, "flush or truncation failed; log refuses further writes");
        *self.poison.write() = Some(e.to_string());
        e
    }

    fn publish(&self, f: impl FnOnce(&mut LogOffsets)) {
        let mut o = self.offsets();
        f(&mut o);
        if !self.hw_managed.load(Ordering::Acquire) {
            o.high_watermark = o.log_end;
            o.last_stable = o.log_end;
        }
        debug_assert!(
            o.log_start <= o.log_end
                && o.high_watermark <= o.log_end
                && o.recovery_point <= o.log_end,
            "{o:?}"
        );
        self.offsets.store(Arc::new(o));
    }

    fn active(&self) -> Result<Arc<LogSegment>> {
        self.segments
            .read()
            .values()
            .next_back()
            .cloned()
            .ok_or_else(|| StorageError::Closed(self.tp.clone()))
    }

    fn segments_from(&self, offset: Offset) -> Vec<Arc<LogSegment>> {
        let segs = self.segments.read();
        let start = segs
            .range(..=offset.0)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        segs.range(start..).map(|(_, s)| Arc::clone(s)).collect()
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        // Dropping without `close` is an unclean stop by design (the next open recovers), but
        // the files of the active segment still get their preallocation trimmed when possible.
        if !self.closed.load(Ordering::Acquire) {
            tracing::debug!(partition = %self.tp, "log dropped without close");
        }
    }
}
