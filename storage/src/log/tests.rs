//! Behaviour tests of `Log` against small, fast configurations.

use std::path::Path;

use super::*;
use crate::batch::test_support::{batch_with_producer, values};
use crate::batch::{BatchHeader, BatchIter};
use crate::config::LogConfig;
use crate::segment::file_name;
use crate::types::{Offset, TopicPartition};
use crate::{AppendOptions, ReadOptions};

pub(crate) fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        segment_index_bytes: 4096,
        index_interval_bytes: 256,
        preallocate_chunk_bytes: 4096,
        ..LogConfig::default()
    }
}

pub(crate) fn open(dir: &Path, config: LogConfig) -> Log {
    Log::open(&dir.join("t-0"), TopicPartition::new("t", 0), config).expect("open")
}

fn opts(now: i64) -> AppendOptions {
    AppendOptions {
        now_ms: now,
        ..AppendOptions::default()
    }
}

/// Every (offset, record count) of the batches readable from `from`, following next offsets.
pub(crate) fn read_all(log: &Log, from: Offset) -> Vec<(i64, i32)> {
    let mut out = Vec::new();
    let mut at = from;
    loop {
        let data = log
            .read(&ReadOptions {
                from: at,
                max_bytes: 1 << 20,
                max_offset: None,
                min_one_batch: true,
            })
            .expect("read");
        if data.records.is_empty() {
            return out;
        }
        let mut it = BatchIter::new(&data.records);
        for (_, h) in it.by_ref() {
            out.push((h.base_offset, h.record_count));
            at = Offset(h.next_offset());
        }
        assert!(it.stop().1.is_none(), "served a bad batch");
    }
}

#[test]
fn offsets_count_records_and_reads_start_at_the_containing_batch() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), small_config());
    let a = log.append(&values(3, 10, 1000), &opts(1)).expect("append");
    let b = log.append(&values(2, 10, 2000), &opts(1)).expect("append");
    assert_eq!((a.first_offset, a.last_offset), (Offset(0), Offset(2)));
    assert_eq!((b.first_offset, b.last_offset), (Offset(3), Offset(4)));
    assert_eq!(log.offsets().log_end, Offset(5));
    let data = log.read(&ReadOptions::from(Offset(1))).expect("read");
    let h = BatchHeader::parse(&data.records).expect("batch");
    assert_eq!(
        h.base_offset, 0,
        "a read inside a batch returns the whole batch"
    );
    assert!(log
        .read(&ReadOptions::from(Offset(5)))
        .expect("at end")
        .records
        .is_empty());
    assert!(matches!(
        log.read(&ReadOptions::from(Offset(6))),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn max_offset_and_max_bytes_bound_reads_but_one_batch_always_comes() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), small_config());
    for _ in 0..4 {
        log.append(&values(1, 100, 0), &opts(1)).expect("append");
    }
    let r = |from, max_bytes, max_offset| {
        let d = log
            .read(&ReadOptions {
                from: Offset(from),
                max_bytes,
                max_offset,
                min_one_batch: true,
            })
            .expect("read");
        BatchIter::new(&d.records).count()
    };
    assert_eq!(r(0, 1 << 20, Some(Offset(2))), 2);
    assert_eq!(r(0, 1, None), 1);
    assert_eq!(r(3, 1 << 20, Some(Offset(3))), 0);
}

#[test]
fn segments_roll_by_size_and_survive_a_clean_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), small_config());
    for i in 0..40 {
        log.append(&values(2, 100, i), &opts(1)).expect("append");
    }
    assert!(
        log.segment_count() > 2,
        "rolled into {} segments",
        log.segment_count()
    );
    let before = read_all(&log, Offset(0));
    assert_eq!(before.len(), 40);
    log.close().expect("close");
    drop(log);
    for entry in std::fs::read_dir(dir.path().join("t-0")).expect("dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".log") {
            assert!(
                entry.metadata().expect("meta").len() <= 4096 + 300,
                "{name} not trimmed"
            );
        }
    }
    let log = open(dir.path(), small_config());
    assert_eq!(read_all(&log, Offset(0)), before);
    assert_eq!(log.offsets().log_end, Offset(80));
    log.append(&values(1, 1, 0), &opts(1))
        .expect("append after reopen");
    assert_eq!(log.offsets().log_end, Offset(81));
}

#[test]
fn unclean_stop_recovers_every_appended_batch() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), small_config());
    for i in 0..30 {
        log.append(&values(1, 200, i), &opts(1)).expect("append");
    }
    drop(log); // no close: preallocated tails and no checkpoints
    let log = open(dir.path(), small_config());
    assert_eq!(read_all(&log, Offset(0)).len(), 30);
    assert_eq!(log.offsets().log_end, Offset(30));
}

#[test]
fn segments_sealed_by_a_roll_are_flushed_by_housekeeping_which_moves_the_recovery_point() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), small_config());
    for i in 0..30 {
        log.append(&values(1, 200, i), &opts(1)).expect("append");
    }
    let active = log.active().expect("active").base_offset();
    assert!(active > Offset(0), "the log rolled");
    assert_eq!(
        log.offsets().recovery_point,
        Offset(0),
        "the recovery point waits for the sealed segment's flush"
    );
    assert!(log.housekeeping(1).expect("hk").sealed_flushed);
    assert_eq!(log.offsets().recovery_point, active);
    assert!(!log.housekeeping(2).expect("hk").sealed_flushed);

    // A truncation seals the segment it cuts: flushing it moves the point up to the cut only.
    log.truncate_to(Offset(25)).expect("truncate");
    assert_eq!(log.offsets().recovery_point, active.min(Offset(25)));
    log.append(&values(1, 200, 0), &opts(1)).expect("append");
    assert!(log.housekeeping(3).expect("hk").sealed_flushed);
    assert_eq!(log.offsets().recovery_point, Offset(25));
    log.flush().expect("flush");
    assert_eq!(log.offsets().recovery_point, Offset(26));
}

#[test]
fn truncate_to_drops_the_tail_even_while_a_reader_holds_a_view() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), small_config());
    for _ in 0..10 {
        log.append(&values(1, 50, 0), &opts(1)).expect("append");
    }
    let view = log
        .read(&ReadOptions::from(Offset(0)))
        .expect("read")
        .records;
    let snapshot = view.to_vec();
    log.truncate_to(Offset(4)).expect("truncate");
    assert_eq!(log.offsets().log_end, Offset(4));
    log.append(&values(1, 50, 0), &opts(1)).expect("append");
    assert_eq!(&view[..], &snapshot[..], "a live view never changes");
    assert_eq!(
        read_all(&log, Offset(0))
            .iter()
            .map(|b| b.0)
            .collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    drop(view);
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(read_all(&log, Offset(0)).len(), 5);
}

#[test]
fn idempotent_retries_are_deduplicated_and_survive_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), small_config());
    let one: &[crate::batch::test_support::Kv<'_>] = &[(None, Some(b"v"))];
    let b0 = batch_with_producer(one, 0, 42, 0, 0);
    let first = log.append(&b0, &opts(1)).expect("append");
    let retry = log.append(&b0, &opts(1)).expect("retry");
    assert!(retry.duplicate);
    assert_eq!(retry.first_offset, first.first_offset);
    assert_eq!(log.offsets().log_end, Offset(1));
    let gap = batch_with_producer(one, 0, 42, 0, 5);
    assert!(matches!(
        log.append(&gap, &opts(1)),
        Err(StorageError::OutOfOrderSequence { expected: 1, .. })
    ));
    log.close().expect("close");
    drop(log);
    let log = open(dir.path(), small_config());
    assert!(
        log.append(&b0, &opts(1))
            .expect("retry after restart")
            .duplicate
    );
    let old_epoch = batch_with_producer(one, 0, 42, -1, 1);
    assert!(matches!(
        log.append(&old_epoch, &opts(1)),
        Err(StorageError::InvalidProducerEpoch { .. })
    ));
}

#[test]
fn retention_by_time_and_size_deletes_whole_old_segments() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = small_config();
    config.retention_ms = 1000;
    let log = open(dir.path(), config.clone());
    for i in 0..20 {
        log.append(&values(2, 100, 10_000 + i), &opts(1))
            .expect("append");
    }
    let segments = log.segment_count();
    assert_eq!(
        log.housekeeping(10_500).expect("hk").segments_deleted,
        0,
        "nothing is old yet"
    );
    let report = log.housekeeping(20_000).expect("hk");
    assert_eq!(
        report.segments_deleted,
        segments - 1,
        "all but the active segment"
    );
    assert!(log.offsets().log_start > Offset(0));
    assert!(matches!(
        log.read(&ReadOptions::from(Offset(0))),
        Err(StorageError::OffsetOutOfRange { .. })
    ));

    let dir = tempfile::tempdir().expect("tmp");
    config.retention_ms = -1;
    config.retention_bytes = 4096;
    let log = open(dir.path(), config);
    for i in 0..40 {
        log.append(&values(2, 100, i), &opts(1)).expect("append");
    }
    log.housekeeping(1).expect("hk");
    assert!(log.size_bytes() <= 4096 + 4096, "size {}", log.size_bytes());
    assert!(log.offsets().log_start > Offset(0));
}

#[test]
fn delete_records_moves_the_log_start_and_persists_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), small_config());
    for _ in 0..30 {
        log.append(&values(1, 200, 0), &opts(1)).expect("append");
    }
    assert!(
        log.delete_records_before(Offset(31)).is_err(),
        "beyond the high watermark"
    );
    assert_eq!(
        log.delete_records_before(Offset(17)).expect("delete"),
        Offset(17)
    );
    assert!(log.segment_count() < 10);
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(log.offsets().log_start, Offset(17));
    let first = read_all(&log, Offset(17));
    assert!(first[0].0 <= 17 && first.last().map(|b| b.0) == Some(29));
}

#[test]
fn log_append_time_overwrites_timestamps_and_keeps_the_crc_valid() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = small_config();
    config.message_timestamp_type = crate::TimestampType::LogAppendTime;
    let log = open(dir.path(), config);
    let info = log
        .append(&values(2, 5, 7), &opts(123_456))
        .expect("append");
    assert_eq!(info.log_append_time, Some(123_456));
    let data = log.read(&ReadOptions::from(Offset(0))).expect("read");
    let h = crate::batch::check_batch(&data.records, usize::MAX).expect("valid crc");
    assert!(h.is_log_append_time());
    assert_eq!(h.max_timestamp, 123_456);
}

#[test]
fn leader_epochs_are_tracked_and_answer_end_offset_queries() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), small_config());
    for (epoch, n) in [(1, 3), (3, 2)] {
        for _ in 0..n {
            let o = AppendOptions {
                leader_epoch: crate::LeaderEpoch(epoch),
                ..opts(1)
            };
            log.append(&values(1, 5, 0), &o).expect("append");
        }
    }
    use crate::LeaderEpoch as E;
    assert_eq!(log.end_offset_for_epoch(E(2)), Some((E(1), Offset(3))));
    assert_eq!(log.end_offset_for_epoch(E(3)), Some((E(3), Offset(5))));
    assert_eq!(log.epoch_of(Offset(2)), Some(E(1)));
    assert_eq!(log.epoch_of(Offset(3)), Some(E(3)));
    assert_eq!(
        log.epoch_of(Offset(5)),
        Some(E(3)),
        "the log end: the latest epoch"
    );
    log.close().expect("close");
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(log.end_offset_for_epoch(E(1)), Some((E(1), Offset(3))));
    log.truncate_to(Offset(3)).expect("truncate");
    assert_eq!(
        log.end_offset_for_epoch(E(3)),
        None,
        "newer than every epoch left: undefined, as in Kafka"
    );
    // A new leader records its epoch before appending: an older epoch ends where it began.
    log.assign_epoch(E(5)).expect("assign");
    assert_eq!(log.end_offset_for_epoch(E(3)), Some((E(1), Offset(3))));
    assert_eq!(log.end_offset_for_epoch(E(4)), Some((E(1), Offset(3))));
    assert_eq!(log.latest_epoch(), Some(E(5)));
    log.assign_epoch(E(2))
        .expect("an older epoch changes nothing");
    assert_eq!(log.latest_epoch(), Some(E(5)));
    log.close().expect("close");
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(
        log.latest_epoch(),
        Some(E(5)),
        "the assignment was checkpointed"
    );
}

#[test]
fn a_managed_high_watermark_is_checkpointed_and_recovered() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), small_config());
    for _ in 0..5 {
        log.append(&values(1, 5, 0), &opts(1)).expect("append");
    }
    log.close().expect("close");
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(log.checkpointed_high_watermark(), None, "never managed");
    log.set_high_watermark(Offset(3));
    log.close().expect("close");
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(log.checkpointed_high_watermark(), Some(Offset(3)));
    log.truncate_to(Offset(2)).expect("truncate");
    assert_eq!(
        log.checkpointed_high_watermark(),
        Some(Offset(2)),
        "never past the log end"
    );
}

#[test]
fn a_follower_log_can_restart_beyond_its_end() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), small_config());
    for _ in 0..3 {
        log.append(&values(1, 5, 0), &opts(1)).expect("append");
    }
    log.truncate_fully_and_start_at(Offset(100))
        .expect("restart");
    let o = log.offsets();
    assert_eq!((o.log_start, o.log_end), (Offset(100), Offset(100)));
    assert!(read_all(&log, Offset(100)).is_empty());
    log.append(&values(1, 5, 0), &opts(1))
        .expect("append after");
    assert_eq!(read_all(&log, Offset(100)), vec![(100, 1)]);
    log.close().expect("close");
    drop(log);
    let log = open(dir.path(), small_config());
    let o = log.offsets();
    assert_eq!((o.log_start, o.log_end), (Offset(100), Offset(101)));
}

#[test]
fn bad_input_is_refused_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), small_config());
    log.append(&values(1, 5, 0), &opts(1)).expect("append");
    let mut bad = values(1, 5, 0);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(
        log.append(&bad, &opts(1)),
        Err(StorageError::CorruptRecord(_))
    ));
    let mut two = values(1, 5, 0);
    two.extend_from_slice(&values(1, 5, 0)[..30]);
    assert!(
        log.append(&two, &opts(1)).is_err(),
        "trailing partial batch"
    );
    assert!(
        log.append(&values(10, 1000, 0), &opts(1)).is_ok(),
        "bigger than a segment still fits an empty one"
    );
    assert_eq!(read_all(&log, Offset(0)).len(), 2);
}

/// `batch` with its header's record count and last offset delta replaced, CRC recomputed: a
/// producer's batch that says it holds other records than it does.
fn with_counts(mut batch: Vec<u8>, record_count: i32, last_offset_delta: i32) -> Vec<u8> {
    batch[23..27].copy_from_slice(&last_offset_delta.to_be_bytes());
    batch[57..61].copy_from_slice(&record_count.to_be_bytes());
    let crc = crate::batch::compute_crc(&batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

#[test]
fn a_batch_whose_header_counts_other_records_than_it_holds_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), small_config());
    log.append(&values(1, 5, 0), &opts(1)).expect("append");
    let invalid = |b: &[u8]| {
        matches!(
            log.append(b, &opts(1)),
            Err(StorageError::InvalidRecord { .. })
        )
    };
    // The example: a bare 61-byte header claiming 2^31 - 1 records.
    let mut bare = values(1, 5, 0);
    bare.truncate(crate::batch::HEADER_LEN);
    bare[8..12].copy_from_slice(&(crate::batch::HEADER_LEN as i32 - 12).to_be_bytes());
    assert!(invalid(&with_counts(bare, i32::MAX, i32::MAX - 1)));
    // Three records declared, one carried.
    assert!(invalid(&with_counts(values(1, 5, 0), 3, 2)));
    // One declared, three carried.
    assert!(invalid(&with_counts(values(3, 5, 0), 1, 0)));
    // Offset deltas that are not 0, 1, 2...
    let gaps = crate::record::BatchBuilder::new()
        .record_at(0, None, Some(b"a"), &[], 1)
        .record_at(5, None, Some(b"b"), &[], 1)
        .last_offset_delta(1)
        .build();
    assert!(invalid(&gaps));
    assert_eq!(log.offsets().log_end, Offset(1), "nothing appended");
    assert_eq!(read_all(&log, Offset(0)), vec![(0, 1)]);
}

#[test]
fn segment_ms_rolls_and_flush_ms_flushes_on_the_embedders_clock() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = small_config();
    config.segment_ms = 1000;
    config.flush_ms = 500;
    config.retention_ms = -1;
    let log = open(dir.path(), config);
    // As in Kafka, an append rolls when its timestamp is segment.ms past the first batch's.
    log.append(&values(1, 5, 10_000), &opts(10_000))
        .expect("append");
    log.append(&values(1, 5, 10_999), &opts(10_000))
        .expect("append");
    assert_eq!(log.segment_count(), 1);
    log.append(&values(1, 5, 11_000), &opts(10_000))
        .expect("append");
    assert_eq!(log.segment_count(), 2);
    assert_eq!(log.offsets().recovery_point, Offset(0));
    let r = log.housekeeping(10_100).expect("hk");
    assert!(!r.flushed);
    let r = log.housekeeping(10_600).expect("hk");
    assert!(r.flushed);
    assert_eq!(log.offsets().recovery_point, Offset(3));
    // Housekeeping rolls an active segment that has existed for segment.ms.
    let later = super::open::now_ms() + 1000;
    assert!(log.housekeeping(later).expect("hk").rolled);
    assert_eq!(log.segment_count(), 3);
    // An empty active segment is not rolled again.
    assert!(!log.housekeeping(later + 5000).expect("hk").rolled);
}

#[test]
fn sealed_segments_are_unmapped_beyond_the_budget_and_still_readable() {
    let dir = tempfile::tempdir().expect("tmp");
    let budget = crate::MapBudget::new(2);
    let log = Log::open_with_budget(
        &dir.path().join("t-0"),
        TopicPartition::new("t", 0),
        small_config(),
        budget,
    )
    .expect("open");
    for i in 0..60 {
        log.append(&values(2, 200, i), &opts(1)).expect("append");
    }
    assert!(log.segment_count() > 6);
    let mapped = || {
        log.segments
            .read()
            .values()
            .filter(|s| s.is_mapped())
            .count()
    };
    // Reading everything maps every segment in turn; the budget keeps at most 2 sealed + active.
    assert_eq!(read_all(&log, Offset(0)).len(), 60);
    assert!(mapped() <= 3, "{} segments mapped", mapped());
}

#[test]
fn readers_run_concurrently_with_the_writer_and_never_see_partial_batches() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = std::sync::Arc::new(open(dir.path(), small_config()));
    let writer = {
        let log = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for i in 0..500 {
                log.append(&values(1 + i % 4, 64, i as i64), &opts(1))
                    .expect("append");
            }
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let log = std::sync::Arc::clone(&log);
            std::thread::spawn(move || {
                let mut seen = 0;
                while seen < 500 {
                    let got = read_all(&log, Offset(0));
                    // Offsets are contiguous: every batch starts where the previous ended.
                    for w in got.windows(2) {
                        assert_eq!(w[0].0 + w[0].1 as i64, w[1].0);
                    }
                    seen = got.len();
                }
            })
        })
        .collect();
    writer.join().expect("writer");
    for r in readers {
        r.join().expect("reader");
    }
}

#[test]
fn offsets_for_times_answer_the_first_record_at_or_after_the_target() {
    use crate::compression::Compression;
    use crate::record::BatchBuilder;
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), small_config());
    // Offsets 0..=2 at t=100,300,200 (compressed); 3..=4 at t=400,500.
    let a = BatchBuilder::new()
        .compression(Compression::Snappy)
        .record(None, Some(b"a"), 100)
        .record(None, Some(b"b"), 300)
        .record(None, Some(b"c"), 200)
        .build();
    let b = BatchBuilder::new()
        .record(None, Some(b"d"), 400)
        .record(None, Some(b"e"), 500)
        .build();
    log.append(&a, &opts(1)).expect("append");
    log.append(&b, &opts(1)).expect("append");
    let at = |ts| {
        log.offset_for_timestamp(ts)
            .expect("search")
            .map(|t| (t.offset.0, t.timestamp))
    };
    assert_eq!(at(0), Some((0, 100)));
    assert_eq!(at(250), Some((1, 300)));
    assert_eq!(at(301), Some((3, 400)));
    assert_eq!(at(500), Some((4, 500)));
    assert_eq!(at(501), None);
    let max = log.max_timestamp().expect("max").expect("some");
    assert_eq!((max.offset, max.timestamp), (Offset(4), 500));
}

/// `VmFlags` of the mappings of `file` in this process (one line per VMA).
fn vm_flags_of(file: &Path) -> Vec<String> {
    vmas_of(file).into_iter().map(|(_, flags)| flags).collect()
}

/// The mappings of `file` in this process: each VMA's file offset and `VmFlags`.
fn vmas_of(file: &Path) -> Vec<(u64, String)> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
    let name = file.to_str().expect("utf-8 path");
    let mut vmas = Vec::new();
    let mut in_file = None;
    for line in smaps.lines() {
        if let Some(rest) = line.strip_prefix("VmFlags:") {
            if let Some(offset) = in_file {
                vmas.push((offset, rest.trim().to_string()));
            }
        } else if line.contains('-') && line.split_whitespace().count() >= 5 {
            // A VMA header: `start-end perms offset dev inode [path]`.
            in_file = line
                .ends_with(name)
                .then(|| line.split_whitespace().nth(2))
                .flatten()
                .and_then(|hex| u64::from_str_radix(hex, 16).ok());
        }
    }
    vmas
}

fn has_flag(flags: &str, flag: &str) -> bool {
    flags.split_whitespace().any(|f| f == flag)
}

#[test]
fn a_fast_writer_gets_huge_pages_for_the_active_segment() {
    let tmp = tempfile::tempdir().expect("tmp");
    let log = open(tmp.path(), LogConfig::default());
    let b = values(16, 1024, 0);
    // 8 MiB at memory speed: far above the 1 MiB/s threshold, past several file growths.
    for _ in 0..512 {
        log.append(&b, &AppendOptions::default()).expect("append");
    }
    let file = tmp.path().join("t-0").join(file_name(Offset(0), "log"));
    let flags = vm_flags_of(&file);
    assert!(!flags.is_empty(), "the active segment is mapped");
    assert!(
        flags.iter().any(|f| has_flag(f, "hg")),
        "some of the segment is advised huge: {flags:?}"
    );
    assert!(
        flags.iter().any(|f| has_flag(f, "rr")),
        "no read-ahead over the unwritten tail: {flags:?}"
    );
    let len = std::fs::metadata(&file).expect("stat").len();
    let chunk = u64::from(LogConfig::default().preallocate_chunk_bytes);
    assert!(
        len >= (b.len() * 512) as u64 + chunk / 2,
        "a fast writer's file is allocated half a chunk ahead or more: {len}"
    );
}

#[test]
fn a_segment_rolled_from_a_fast_one_gets_huge_pages_from_its_start() {
    let tmp = tempfile::tempdir().expect("tmp");
    let config = LogConfig {
        segment_bytes: 4 << 20,
        preallocate_chunk_bytes: 1 << 20,
        ..LogConfig::default()
    };
    let log = open(tmp.path(), config.clone());
    let b = values(16, 1024, 0);
    // The append that rolls is the new segment's first.
    while log.segment_count() < 2 {
        log.append(&b, &AppendOptions::default()).expect("append");
    }
    let active = log.active().expect("active").base_offset();
    let file = tmp.path().join("t-0").join(file_name(active, "log"));
    let vmas = vmas_of(&file);
    assert!(
        vmas.iter().any(|(at, f)| *at == 0 && has_flag(f, "hg")),
        "the new segment is advised huge from its first append: {vmas:?}"
    );
    let len = std::fs::metadata(&file).expect("stat").len();
    assert!(
        len >= u64::from(config.preallocate_chunk_bytes),
        "and allocated in a whole chunk at once: {len}"
    );
    let sealed = vmas_of(&tmp.path().join("t-0").join(file_name(Offset(0), "log")));
    assert!(
        sealed.iter().any(|(at, f)| *at == 0 && !has_flag(f, "rr")),
        "a sealed segment's data is read with read-ahead again: {sealed:?}"
    );
}

#[test]
fn a_flush_policy_writes_through_without_preallocating_or_huge_pages() {
    let tmp = tempfile::tempdir().expect("tmp");
    let config = LogConfig {
        flush_messages: 2,
        ..LogConfig::default()
    };
    let log = open(tmp.path(), config);
    let b = values(16, 1024, 0);
    for _ in 0..512 {
        log.append(&b, &AppendOptions::default()).expect("append");
    }
    let file = tmp.path().join("t-0").join(file_name(Offset(0), "log"));
    let len = std::fs::metadata(&file).expect("stat").len();
    assert_eq!(
        len,
        (b.len() * 512) as u64,
        "the file holds the data, no preallocated tail"
    );
    let flags = vm_flags_of(&file);
    assert!(!flags.is_empty(), "the active segment is mapped for reads");
    assert!(
        flags
            .iter()
            .all(|f| !f.split_whitespace().any(|f| f == "hg")),
        "{flags:?}"
    );
    let read = log
        .read(&ReadOptions::from(Offset(16 * 300)))
        .expect("read");
    assert_eq!(
        BatchIter::new(&read.records)
            .next()
            .map(|(_, h)| h.base_offset),
        Some(16 * 300),
        "written batches read back through the mapping"
    );
}

#[test]
fn create_time_timestamps_outside_the_topics_bounds_are_refused_with_the_records_at_fault() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = small_config();
    config
        .set("message.timestamp.before.max.ms", "1000")
        .expect("before");
    config
        .set("message.timestamp.after.max.ms", "500")
        .expect("after");
    let log = open(dir.path(), config.clone());
    let now = 1_700_000_000_000;
    let at = |now_ms| AppendOptions {
        now_ms,
        ..AppendOptions::default()
    };
    let batch = |ts: &[i64]| {
        let mut b = crate::record::BatchBuilder::new();
        for t in ts {
            b = b.record(Some(b"k"), Some(b"v"), *t);
        }
        b.build()
    };
    log.append(&batch(&[now - 1000, now, now + 500, -1]), &at(now))
        .expect("within the bounds, and no timestamp");
    let refused = log.append(&batch(&[now, now - 1001, now + 501]), &at(now));
    match refused {
        Err(StorageError::InvalidTimestamp { records, .. }) => {
            assert_eq!(records.len(), 2, "{records:?}");
            assert_eq!(records[0].0, 1);
            assert_eq!(
                records[0].1,
                format!(
                    "Timestamp {} of message with offset 1 is out of range. The timestamp should be within [{}, {}]",
                    now - 1001,
                    now - 1000,
                    now + 500
                )
            );
            assert_eq!(records[1].0, 2);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        log.offsets().log_end,
        Offset(4),
        "nothing of the batch appended"
    );

    // LogAppendTime topics stamp the broker's time instead: nothing to check.
    config
        .set("message.timestamp.type", "LogAppendTime")
        .expect("type");
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), config);
    log.append(&batch(&[1]), &at(now))
        .expect("stamped, not checked");
}
