//! A compaction pass as Kafka's cleaner runs it: without the writer lock (appends, truncation
//! and retention go on and win), with a bounded key map (several passes reach the same
//! result), and marking a log it cannot decode uncleanable instead of stopping housekeeping.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::compaction_tests::{compacted_config, opts, roll, served};
use super::tests::open;
use super::*;
use crate::batch::{compute_crc, BatchIter};
use crate::compression::Compression;
use crate::record::BatchBuilder;
use crate::{AppendOptions, AppendOrigin};

/// Appends `rounds` values for each of `keys` keys, one record a batch, rolling every
/// `per_segment` records; returns the latest (offset, value) per key.
fn fill(log: &Log, keys: usize, rounds: usize, per_segment: usize) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut latest = BTreeMap::new();
    for i in 0..keys * rounds {
        let key = format!("key-{}", i % keys).into_bytes();
        let value = format!("value-{i}").into_bytes();
        let b = BatchBuilder::new()
            .record(Some(&key), Some(&value), 1000)
            .build();
        log.append(&b, &opts()).expect("append");
        latest.insert(key, value);
        if (i + 1) % per_segment == 0 {
            roll(log);
        }
    }
    roll(log);
    latest
}

/// Key -> value of every record served, with the number of records.
fn contents(log: &Log) -> (BTreeMap<Vec<u8>, Vec<u8>>, usize) {
    let (records, _) = served(log);
    let n = records.len();
    let map = records
        .into_iter()
        .map(|(_, k, v, _)| (k, v.expect("no tombstones here")))
        .collect();
    (map, n)
}

fn staged_files(log: &Log) -> Vec<String> {
    std::fs::read_dir(log.dir())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cleaned"))
        .collect()
}

#[test]
fn appends_go_on_while_a_pass_cleans_and_the_pass_keeps_them() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), compacted_config(1000));
    let mut latest = fill(&log, 5, 6, 8);
    let hook: Hook = Box::new(|log: &Log| {
        assert!(
            log.writer.try_lock().is_some(),
            "the pass holds the writer lock while it cleans"
        );
        let b = BatchBuilder::new()
            .record(Some(b"key-0"), Some(b"during the pass"), 1000)
            .build();
        log.append(&b, &opts()).expect("append during the pass");
    });
    *log.test_hooks.mid_pass.lock() = Some(hook);
    let removed = log.housekeeping(10_000).expect("clean").records_compacted;
    assert!(removed > 0, "nothing compacted");
    latest.insert(b"key-0".to_vec(), b"during the pass".to_vec());
    let (got, n) = contents(&log);
    assert_eq!(got, latest);
    assert!(n < 5 * 6, "{n} records left");
    assert!(staged_files(&log).is_empty(), "{:?}", staged_files(&log));
}

#[test]
fn a_truncation_during_a_pass_wins_and_the_cleaned_files_are_dropped() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), compacted_config(1000));
    fill(&log, 4, 6, 6);
    let before = served(&log).0;
    let hook: Hook = Box::new(|log: &Log| {
        // A follower truncating to its new leader, below the segments being cleaned.
        log.truncate_to(Offset(9))
            .expect("truncate during the pass");
    });
    *log.test_hooks.mid_pass.lock() = Some(hook);
    assert_eq!(
        log.housekeeping(10_000).expect("clean").records_compacted,
        0
    );
    let after = served(&log).0;
    assert_eq!(after, before[..9].to_vec(), "the log is the truncated one");
    assert_eq!(log.offsets().log_end, Offset(9));
    assert!(staged_files(&log).is_empty(), "{:?}", staged_files(&log));
    // The next pass cleans the truncated log from scratch, and a reopen agrees.
    log.housekeeping(10_001).expect("clean");
    let cleaned = served(&log).0;
    assert!(cleaned.len() < 9, "{cleaned:?}");
    log.close().expect("close");
    drop(log);
    let log = open(dir.path(), compacted_config(1000));
    assert_eq!(served(&log).0, cleaned);
}

#[test]
fn a_segment_deleted_during_a_pass_is_not_brought_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), compacted_config(1000));
    fill(&log, 4, 6, 6);
    let first_base = *log.segments.read().keys().next().expect("segment");
    let hook: Hook = Box::new(|log: &Log| {
        log.delete_records_before(Offset(6))
            .expect("DeleteRecords during the pass");
    });
    *log.test_hooks.mid_pass.lock() = Some(hook);
    log.housekeeping(10_000).expect("clean");
    assert_eq!(log.offsets().log_start, Offset(6));
    assert!(
        !log.segments.read().contains_key(&first_base),
        "the deleted segment came back"
    );
    assert!(served(&log).0.iter().all(|r| r.0 >= 6));
    assert!(staged_files(&log).is_empty(), "{:?}", staged_files(&log));
}

#[test]
fn a_key_map_smaller_than_the_dirty_keys_cleans_in_several_passes_to_the_same_result() {
    let (keys, rounds, per_segment) = (40, 5, 20);
    let reference = {
        let dir = tempfile::tempdir().expect("tmp");
        let log = open(dir.path(), compacted_config(1000));
        fill(&log, keys, rounds, per_segment);
        log.housekeeping(10_000).expect("clean");
        served(&log).0
    };
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = compacted_config(1000);
    // Room for 7 keys: a pass maps a few segments' worth of the dirty section at most.
    config.cleaner_dedupe_buffer_bytes = 8 * 25;
    // Every pass goes on however little is left dirty (by default it waits for half).
    config.set("min.cleanable.dirty.ratio", "0").expect("ratio");
    assert_eq!(crate::cleaner::OffsetMap::keys_fitting(8 * 25), 7);
    let log = open(dir.path(), config);
    let latest = fill(&log, keys, rounds, per_segment);
    log.housekeeping(10_000).expect("first pass");
    let after_one = served(&log).0.len();
    assert!(
        after_one > reference.len(),
        "one pass with a 7-key map cleaned everything: {after_one} records"
    );
    let mut passes = 1;
    let mut now = 10_000;
    loop {
        now += 1;
        let before = served(&log).0.len();
        log.housekeeping(now).expect("pass");
        passes += 1;
        if served(&log).0.len() == before && passes > keys * rounds {
            break;
        }
        if served(&log).0 == reference {
            break;
        }
    }
    assert_eq!(served(&log).0, reference, "after {passes} passes");
    assert_eq!(contents(&log).0, latest);
}

/// A batch whose CRC is right but whose gzip payload is garbage: replication copies it as it
/// is (a follower does not decompress), and only the cleaner finds out.
fn undecodable_batch(base_offset: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new()
        .base_offset(base_offset)
        .compression(Compression::Gzip)
        .record(Some(b"k"), Some(&[7u8; 200][..]), 1000)
        .build()
        .to_vec();
    let n = b.len();
    for byte in &mut b[crate::batch::HEADER_LEN + 10..n - 8] {
        *byte ^= 0x5a;
    }
    let crc = compute_crc(&b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

#[test]
fn records_the_cleaner_cannot_decode_make_the_log_uncleanable_and_housekeeping_goes_on() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = compacted_config(1000);
    config.retention_ms = 50_000;
    config.cleanup_policy = crate::config::CleanupPolicy::CompactDelete;
    let log = open(dir.path(), config);
    fill(&log, 3, 4, 4);
    let end = log.offsets().log_end.0;
    let bad = undecodable_batch(end);
    assert_eq!(BatchIter::new(&bad).count(), 1);
    let replicated = AppendOptions {
        origin: AppendOrigin::Replication,
        ..opts()
    };
    log.append(&bad, &replicated)
        .expect("a follower appends it");
    roll(&log);
    let before = served_len_without_decoding(&log);

    let report = log.housekeeping(10_000).expect("housekeeping survives");
    assert_eq!(report.records_compacted, 0);
    let why = log.uncleanable().expect("marked uncleanable");
    assert!(why.contains("cannot decode"), "{why}");
    assert_eq!(
        served_len_without_decoding(&log),
        before,
        "nothing was rewritten"
    );
    assert!(staged_files(&log).is_empty(), "{:?}", staged_files(&log));

    // The rest of housekeeping still runs: retention deletes by time, appends go on.
    let later = log.housekeeping(1_000_000).expect("housekeeping");
    assert!(later.segments_deleted > 0, "{later:?}");
    let b = BatchBuilder::new()
        .record(Some(b"k"), Some(b"v"), 1)
        .build();
    log.append(&b, &opts()).expect("append");
}

/// Batches served from the log start, counted by header (the bad batch cannot be decoded).
fn served_len_without_decoding(log: &Log) -> usize {
    let mut at = log.offsets().log_start;
    let mut n = 0;
    while at < log.offsets().log_end {
        let d = log.read(&crate::ReadOptions::from(at)).expect("read");
        let batches: Vec<_> = BatchIter::new(&d.records).collect();
        let Some((_, last)) = batches.last() else {
            break;
        };
        n += batches.len();
        at = Offset(last.next_offset());
    }
    n
}

#[test]
fn a_framing_defect_inside_a_segment_makes_it_uncleanable_instead_of_dropping_what_follows() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), compacted_config(1000));
    fill(&log, 3, 4, 6);
    let first = Arc::clone(log.segments.read().values().next().expect("segment"));
    // The second batch's length field says it runs past the segment: the media changed under
    // a sealed segment, and the batches after it are still there.
    let second = BatchIter::new(&std::fs::read(first.log_path()).expect("bytes"))
        .nth(1)
        .expect("two batches")
        .0;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(first.log_path())
        .expect("open");
    f.write_all_at(&i32::MAX.to_be_bytes(), (second + 8) as u64)
        .expect("write");
    drop(f);

    assert_eq!(
        log.housekeeping(10_000)
            .expect("housekeeping")
            .records_compacted,
        0
    );
    let why = log.uncleanable().expect("marked uncleanable");
    assert!(why.contains("compaction found"), "{why}");
    assert!(
        Arc::ptr_eq(
            &first,
            log.segments.read().values().next().expect("segment")
        ),
        "the damaged segment was replaced"
    );
    assert!(staged_files(&log).is_empty(), "{:?}", staged_files(&log));
}
