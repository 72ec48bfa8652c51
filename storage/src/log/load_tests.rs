//! What opening and truncating a log read (issue: restarts must not re-read terabyte logs):
//! nothing but index tails after a clean stop, what the recovery point requires after a
//! crash, and only the batches after the newest producer snapshot for a truncation.

use super::tests::{open, small_config};
use super::*;
use crate::record::BatchBuilder;
use crate::{AppendOptions, AppendOrigin};

const PRODUCER: i64 = 42;

fn append(log: &Log, seq: i32, epoch: i32) -> AppendInfo {
    let b = BatchBuilder::new()
        .producer(PRODUCER, 0, seq)
        .record(Some(b"key"), Some(&[b'v'; 120][..]), 1_000 + i64::from(seq))
        .build();
    log.append(
        &b,
        &AppendOptions {
            leader_epoch: LeaderEpoch(epoch),
            origin: AppendOrigin::Client,
            now_ms: 1,
        },
    )
    .expect("append")
}

/// Small segments, and no retention: the records carry 1970 timestamps.
fn config() -> LogConfig {
    LogConfig {
        retention_ms: -1,
        ..small_config()
    }
}

/// 120 idempotent batches of about 200 bytes over three leader epochs: six 4 KiB segments.
fn filled(dir: &std::path::Path) -> Log {
    let log = open(dir, config());
    for seq in 0..120 {
        let epoch = 1 + seq / 50;
        if seq % 50 == 0 {
            log.assign_epoch(LeaderEpoch(epoch)).expect("epoch");
        }
        append(&log, seq, epoch);
    }
    log
}

/// Everything a reopened log must have kept: offsets, epochs, and the producer's sequence
/// (the next one accepted, a retry of the last one a duplicate).
fn assert_same_state(log: &Log, end: Offset, epochs: Vec<(LeaderEpoch, Offset)>, next_seq: i32) {
    assert_eq!(log.offsets().log_end, end);
    assert_eq!(log.writer.lock().epochs.entries().to_vec(), epochs);
    assert!(
        append(log, next_seq - 1, 3).duplicate,
        "a retry is a duplicate"
    );
    assert!(
        !append(log, next_seq, 3).duplicate,
        "the next sequence is taken"
    );
}

#[test]
fn a_clean_stop_reopens_from_indexes_snapshot_and_checkpoints_without_reading_records() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = filled(dir.path());
    let (end, epochs) = (
        log.offsets().log_end,
        log.writer.lock().epochs.entries().to_vec(),
    );
    let segments = log.segment_count() as u64;
    assert!(segments >= 5, "{segments} segments");
    let total = log.size_bytes();
    log.close().expect("close");
    drop(log);

    let log = open(dir.path(), config());
    let stats = log.load_stats();
    assert!(stats.clean_shutdown, "{stats:?}");
    assert_eq!(stats.batches_replayed, 0, "{stats:?}");
    // Each segment's end is found from its last index entry (every 256 bytes here): at most
    // the bytes after it (an interval and a batch) and the first header are read.
    let per_segment = 256 + 200 + crate::batch::HEADER_LEN as u64;
    assert!(
        stats.bytes_scanned <= segments * per_segment,
        "{stats:?} for {segments} segments of {total} bytes"
    );
    assert!(
        !log.dir().join(CLEAN_SHUTDOWN_FILE).exists(),
        "the marker would hide the next crash"
    );
    assert_same_state(&log, end, epochs, 120);
}

#[test]
fn after_a_crash_open_reads_only_from_the_recovery_point_on() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = filled(dir.path());
    log.flush().expect("flush");
    // Housekeeping checkpoints the recovery point once a minute; this pass is that minute on.
    log.housekeeping(super::open::now_ms() + 120_000)
        .expect("checkpoints");
    let flushed_end = log.offsets().log_end;
    let active_before = log.active().expect("active").base_offset();
    for seq in 120..124 {
        append(&log, seq, 3);
    }
    let (end, epochs) = (
        log.offsets().log_end,
        log.writer.lock().epochs.entries().to_vec(),
    );
    let total = log.size_bytes();
    // A crash: no close, so no marker; the page cache keeps what was written.
    drop(log);

    let log = open(dir.path(), config());
    let stats = log.load_stats();
    assert!(!stats.clean_shutdown);
    assert!(
        stats.bytes_scanned < total / 2,
        "{stats:?}: sealed segments below the recovery point {flushed_end} were re-read ({total} bytes in all)"
    );
    let active_batches = (end.0 - active_before.0) as u64;
    assert!(
        stats.batches_replayed <= active_batches,
        "{stats:?}: replayed more than the {active_batches} batches since the last roll"
    );
    assert_same_state(&log, end, epochs, 124);
}

#[test]
fn a_marker_left_by_a_clean_stop_does_not_survive_into_the_next_crash() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = filled(dir.path());
    log.close().expect("close");
    drop(log);
    let log = open(dir.path(), config());
    assert!(log.load_stats().clean_shutdown);
    append(&log, 120, 3);
    drop(log); // crash
    let log = open(dir.path(), config());
    assert!(
        !log.load_stats().clean_shutdown,
        "the crash was taken for a clean stop"
    );
    assert_eq!(log.offsets().log_end, Offset(121));
}

#[test]
fn a_truncation_replays_only_from_the_newest_snapshot_at_or_below_the_cut() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = filled(dir.path());
    let bases: Vec<i64> = log.segments.read().keys().copied().collect();
    let cut_segment = bases[bases.len() - 3];
    let next_segment = bases[bases.len() - 2];
    let cut = Offset(cut_segment + (next_segment - cut_segment) / 2);
    log.truncate_to(cut).expect("truncate");
    let stats = log.load_stats();
    assert!(
        stats.batches_replayed_by_last_truncation <= (cut.0 - cut_segment) as u64,
        "{stats:?}: replayed from before the segment holding the cut ({cut_segment}..{cut})"
    );
    // One batch per offset: the producer's last kept sequence is cut - 1.
    let seq = cut.0 as i32;
    assert!(
        append(&log, seq - 1, 3).duplicate,
        "the last kept batch is a duplicate"
    );
    assert!(
        !append(&log, seq, 3).duplicate,
        "the next sequence is taken"
    );
    assert!(
        matches!(
            log.append(
                &BatchBuilder::new()
                    .producer(PRODUCER, 0, seq + 5)
                    .record(Some(b"k"), Some(b"v"), 1)
                    .build(),
                &AppendOptions::default()
            ),
            Err(StorageError::OutOfOrderSequence { .. })
        ),
        "a gap in sequences is still refused"
    );
}

#[test]
fn a_log_whose_directory_failed_refuses_writes_and_is_recovered_at_the_next_open() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = filled(dir.path());
    log.fail("EIO reading a segment");
    let refused = log.append(
        &BatchBuilder::new().record(None, Some(b"v"), 1).build(),
        &Default::default(),
    );
    assert!(
        matches!(refused, Err(StorageError::Poisoned { .. })),
        "{refused:?}"
    );
    assert!(log.close().is_err(), "a failed log does not close cleanly");
    drop(log);
    let log = open(dir.path(), config());
    assert!(
        !log.load_stats().clean_shutdown,
        "the next open trusted files on a directory that failed"
    );
    assert_eq!(log.offsets().log_end, Offset(120), "nothing lost");
}

#[test]
fn only_failures_that_space_cannot_cure_are_disk_failures() {
    let io = |code| StorageError::io("/data/t-0/0.log", std::io::Error::from_raw_os_error(code));
    assert!(io(rustix::io::Errno::IO.raw_os_error()).is_disk_failure());
    assert!(io(rustix::io::Errno::ROFS.raw_os_error()).is_disk_failure());
    assert!(!io(rustix::io::Errno::NOSPC.raw_os_error()).is_disk_failure());
    assert!(!io(rustix::io::Errno::DQUOT.raw_os_error()).is_disk_failure());
    let synthetic = StorageError::io(
        "/data/t-0/0.log",
        std::io::Error::new(std::io::ErrorKind::NotFound, "segment was deleted"),
    );
    assert!(
        !synthetic.is_disk_failure(),
        "a race with deletion, not the disk"
    );
}
