//! Opening a log directory: find segments, recover those past the recovery point, enforce that
//! segments do not overlap, and rebuild producer and leader-epoch state from batch headers.
//!
//! What is read follows Kafka's `LogLoader`: after a clean stop (the `clean-shutdown` marker
//! that [`Log::close`] writes last) no segment is recovered, each is opened from its indexes
//! (reading the bytes after its last index entry to find its end), and producer and epoch
//! state come from the snapshot and checkpoint written at close. After an unclean stop the
//! segments from the one holding the recovery point on are recovered, and batch headers are
//! replayed only from the recovery point (epochs) and the newest producer snapshot.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};

use super::{
    params, LoadStats, Log, LogOffsets, Writer, CLEAN_SHUTDOWN_FILE, HIGH_WATERMARK_FILE,
    LEADER_EPOCH_FILE, LOG_START_FILE, RECOVERY_POINT_FILE, SNAPSHOT_EXT,
};
use crate::checkpoint;
use crate::config::LogConfig;
use crate::error::{Result, StorageError};
use crate::leader_epoch::LeaderEpochCache;
use crate::map_budget::MapBudget;
use crate::producer_state::ProducerStateManager;
use crate::segment::LogSegment;
use crate::types::{LeaderEpoch, Offset, TopicPartition};

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Reads a single-partition offset checkpoint (`topic partition offset`), tolerating damage:
/// a damaged checkpoint is logged and treated as absent, which only costs a longer recovery.
pub(crate) fn read_offset_checkpoint(path: &Path, tp: &TopicPartition) -> Option<Offset> {
    match checkpoint::read(path) {
        Ok(Some(lines)) => lines.iter().find_map(|l| {
            let mut f = l.rsplitn(3, ' ');
            let offset: i64 = f.next()?.parse().ok()?;
            let partition: i32 = f.next()?.parse().ok()?;
            (f.next()? == tp.topic && partition == tp.partition).then_some(Offset(offset))
        }),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring damaged checkpoint");
            None
        }
    }
}

pub(crate) fn open(
    dir: &Path,
    tp: TopicPartition,
    config: LogConfig,
    budget: Arc<MapBudget>,
) -> Result<Log> {
    fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
    let now = now_ms();
    let scanned_before = crate::segment::bytes_scanned_by_this_thread();
    let clean_marker = dir.join(CLEAN_SHUTDOWN_FILE);
    let clean = clean_marker.exists();
    let mut bases = Vec::new();
    let mut snapshots = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))? {
        let entry = entry.map_err(|e| StorageError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((stem, ext)) = name.rsplit_once('.') else {
            continue;
        };
        let base = stem.parse::<i64>().ok().filter(|_| stem.len() == 20);
        match (base, ext) {
            (Some(b), "log") => bases.push(b),
            (Some(b), SNAPSHOT_EXT) => snapshots.push(b),
            (_, "tmp" | "cleaned" | "swap" | crate::segment::DELETED_SUFFIX) => {
                // Leftovers of an interrupted atomic write or compaction, and deleted segments'
                // files waiting for `file.delete.delay.ms` at the last stop: never valid data.
                let p = entry.path();
                fs::remove_file(&p).map_err(|e| StorageError::io(&p, e))?;
            }
            _ => {}
        }
    }
    bases.sort_unstable();
    // Index files without a log file are orphans of a deleted segment.
    for entry in fs::read_dir(dir)
        .map_err(|e| StorageError::io(dir, e))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((stem, "index" | "timeindex")) = name.rsplit_once('.') {
            if stem
                .parse::<i64>()
                .map_or(true, |b| bases.binary_search(&b).is_err())
            {
                if let Err(e) = fs::remove_file(entry.path()) {
                    tracing::warn!(file = %entry.path().display(), error = %e, "could not remove orphan index");
                }
            }
        }
    }

    let recovery_point =
        read_offset_checkpoint(&dir.join(RECOVERY_POINT_FILE), &tp).unwrap_or(Offset(0));
    let checkpoint_start = read_offset_checkpoint(&dir.join(LOG_START_FILE), &tp);
    let recovered_hw = read_offset_checkpoint(&dir.join(HIGH_WATERMARK_FILE), &tp);
    let p = params(&config);
    let mut segments: BTreeMap<i64, Arc<LogSegment>> = BTreeMap::new();
    for (i, base) in bases.iter().enumerate() {
        let next_base = bases.get(i + 1).copied().unwrap_or(i64::MAX);
        let recover = !clean && next_base > recovery_point.0;
        let later = &bases[i + 1..];
        let (seg, report) = LogSegment::open(
            dir,
            Offset(*base),
            p,
            Arc::clone(&budget),
            recover,
            now,
            &mut || delete_segments_at_open(dir, &tp, later),
        )?;
        if let Some(reason) = &report.reason {
            tracing::warn!(partition = %tp, segment = %seg.log_path().display(), truncated = report.truncated_bytes, %reason, "recovery truncated a segment");
        }
        // A segment may not reach into the next one: the next was created by a truncation that
        // had not yet shrunk this file when the process stopped.
        if seg.next_offset().0 > next_base {
            seg.truncate_to(Offset(next_base))?;
            seg.maybe_shrink();
        }
        segments.insert(*base, seg);
        if report.truncated_bytes > 0 && !later.is_empty() {
            // Kafka's rule (`LogLoader.recoverLog`): once recovery truncated a segment, the
            // segments after it are gone (`before_cut` deleted them): they would follow a hole.
            break;
        }
    }

    let mut log_start = checkpoint_start.unwrap_or(Offset(0));
    if let Some((first, _)) = segments.iter().next() {
        log_start = log_start.max(Offset(*first));
    }
    match segments.values().next_back() {
        Some(last) => last.activate()?,
        None => {
            let seg = LogSegment::create(dir, log_start, p, Arc::clone(&budget), now, 0, false)?;
            segments.insert(log_start.0, seg);
        }
    }
    let log_end = segments
        .values()
        .next_back()
        .map_or(log_start, |s| s.next_offset());
    let log_start = log_start.min(log_end);

    let recovery_point = recovery_point.min(log_end);
    let (producers, epochs, batches_replayed) = rebuild_state(
        dir,
        &tp,
        &segments,
        &snapshots,
        (log_start, recovery_point, log_end),
        now,
    )?;
    if clean {
        // From the first append on, this stop's marker would hide data a crash could tear.
        fs::remove_file(&clean_marker).map_err(|e| StorageError::io(&clean_marker, e))?;
        crate::io::fsync_dir(dir)?;
    }
    let load_stats = LoadStats {
        clean_shutdown: clean,
        bytes_scanned: crate::segment::bytes_scanned_by_this_thread() - scanned_before,
        batches_replayed,
        ..LoadStats::default()
    };
    tracing::debug!(partition = %tp, ?load_stats, "log opened");
    // Sealed segments past the recovery point were recovered, not flushed: the next flush
    // makes them durable before the recovery point passes them (Kafka flushes every segment
    // between the recovery point and the new one).
    let active_base = segments.keys().next_back().copied().map(Offset);
    let sealed_unflushed_upto = active_base.filter(|base| {
        segments
            .range(..base.0)
            .any(|(_, s)| s.next_offset() > recovery_point)
    });
    let offsets = LogOffsets {
        log_start,
        high_watermark: log_end,
        last_stable: log_end,
        log_end,
        recovery_point,
    };
    Ok(Log {
        dir: dir.to_path_buf(),
        tp,
        config: RwLock::new(config),
        segments: RwLock::new(segments),
        writer: Mutex::new(Writer {
            producers,
            epochs,
            unflushed_records: 0,
            first_unflushed_ms: None,
            checkpointed: (recovery_point, log_start),
            last_checkpoint_ms: now,
            checkpointed_hw: (recovered_hw.unwrap_or(Offset(-1)), now),
            cleaned_upto: Offset(0),
            next_delete_horizon: None,
            sealed_unflushed_upto,
            truncations: 0,
            pending_deletes: Vec::new(),
            uncleanable: None,
            truncation_replayed: 0,
        }),
        offsets: ArcSwap::from_pointee(offsets),
        poison: RwLock::new(None),
        closed: AtomicBool::new(false),
        hw_managed: AtomicBool::new(false),
        recovered_hw,
        budget,
        load_stats,
        cleaning: Mutex::new(()),
        #[cfg(test)]
        test_hooks: super::TestHooks::default(),
    })
}

/// Deletes the files of the segments at `bases` (at open, when recovery is about to cut the
/// segment before them), the highest first and then the directory entry made durable: a crash
/// half way leaves a log whose last segments are gone, never one with a hole in the middle.
fn delete_segments_at_open(dir: &Path, tp: &TopicPartition, bases: &[i64]) -> Result<()> {
    for base in bases.iter().rev() {
        tracing::warn!(partition = %tp, base, "deleting a segment after one that recovery cuts");
        for ext in ["log", "index", "timeindex"] {
            let p = dir.join(crate::segment::file_name(Offset(*base), ext));
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io(&p, e)),
            }
        }
    }
    if bases.is_empty() {
        return Ok(());
    }
    crate::io::fsync_dir(dir)
}

/// Loads the newest usable producer snapshot and leader-epoch checkpoint, then replays batch
/// headers after them (headers only: no record is decoded). Returns the batches replayed too.
fn rebuild_state(
    dir: &Path,
    tp: &TopicPartition,
    segments: &BTreeMap<i64, Arc<LogSegment>>,
    snapshots: &[i64],
    (log_start, recovery_point, log_end): (Offset, Offset, Offset),
    now: i64,
) -> Result<(ProducerStateManager, LeaderEpochCache, u64)> {
    let mut snapshots = snapshots.to_vec();
    snapshots.sort_unstable();
    let mut producers = None;
    let mut replay_producers_from = log_start;
    for s in snapshots.iter().rev() {
        let path = dir.join(crate::segment::file_name(Offset(*s), SNAPSHOT_EXT));
        if producers.is_none() && *s <= log_end.0 {
            if let Some(state) = read_snapshot(&path, now) {
                producers = Some(state);
                replay_producers_from = Offset(*s);
                continue;
            }
        }
        if producers.is_some() && *s <= log_end.0 {
            continue; // older than the one loaded: kept for a truncation to reload from
        }
        // Past the log end, the snapshot describes records this log lost: once the log grows
        // past it again it would load as the state of other history (Kafka's
        // `truncateAndReload` deletes it too). An unreadable one is of no use either.
        tracing::warn!(partition = %tp, snapshot = %path.display(), %log_end, "deleting a producer snapshot past the log end or unreadable");
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io(&path, e)),
        }
    }
    let mut producers = producers.unwrap_or_default();

    let (mut epochs, replay_epochs_from) = match checkpoint::read(&dir.join(LEADER_EPOCH_FILE)) {
        Ok(Some(lines)) => {
            let entries = lines
                .iter()
                .filter_map(|l| {
                    let (e, o) = l.split_once(' ')?;
                    Some((LeaderEpoch(e.parse().ok()?), Offset(o.parse().ok()?)))
                })
                .collect();
            let mut cache = LeaderEpochCache::from_entries(entries);
            // Entries past the log end lost their records in a crash; one at the log end is an
            // epoch a leader began before appending anything, and stays.
            cache.truncate_from_end(Offset(log_end.0 + 1));
            // The checkpoint is written before the recovery point (`write_checkpoints`), so it
            // holds every epoch of the batches below the recovery point; only those after it
            // may carry epochs it lacks (Kafka trusts the checkpoint the same way).
            (cache, recovery_point.max(log_start))
        }
        Ok(None) => (LeaderEpochCache::default(), log_start),
        Err(e) => {
            tracing::warn!(partition = %tp, error = %e, "rebuilding leader epochs from batches");
            (LeaderEpochCache::default(), log_start)
        }
    };

    let from = replay_producers_from.min(replay_epochs_from);
    let mut replayed = 0u64;
    for seg in segments.values() {
        if seg.next_offset() <= from || from >= log_end {
            continue;
        }
        for h in seg.headers_from(from)? {
            replayed += 1;
            if h.base_offset >= replay_producers_from.0 && !h.is_control() {
                producers.update(
                    &h,
                    Offset(h.base_offset),
                    Offset(h.last_offset()),
                    h.max_timestamp,
                );
            }
            if h.base_offset >= replay_epochs_from.0 {
                epochs.assign(LeaderEpoch(h.partition_leader_epoch), Offset(h.base_offset));
            }
        }
    }
    Ok((producers, epochs, replayed))
}

pub(crate) fn read_snapshot(path: &Path, now: i64) -> Option<ProducerStateManager> {
    let data = fs::read(path).ok()?;
    if data.len() < 4 {
        return None;
    }
    let (body, crc) = data.split_at(data.len() - 4);
    if crc32fast::hash(body).to_be_bytes() != crc {
        return None;
    }
    ProducerStateManager::decode(body, now)
}
