//! Compaction through the log: tombstones and the KIP-534 delete horizon, and what the cleaner
//! keeps of an idempotent producer's batches.

use super::tests::{open, small_config};
use super::*;
use crate::batch::BatchIter;
use crate::config::CleanupPolicy;
use crate::record::{records_section, BatchBuilder, RecordIter};
use crate::{AppendOptions, ReadOptions};

pub(super) fn compacted_config(delete_retention_ms: i64) -> LogConfig {
    LogConfig {
        cleanup_policy: CleanupPolicy::Compact,
        delete_retention_ms,
        ..small_config()
    }
}

pub(super) fn opts() -> AppendOptions {
    AppendOptions {
        now_ms: 1,
        ..AppendOptions::default()
    }
}

/// Seals the active segment so everything appended so far may be compacted.
pub(super) fn roll(log: &Log) {
    let mut w = log.writer.lock();
    let end = log.offsets().log_end;
    log.roll(&mut w, end, 0, 1).expect("roll");
}

/// One served record: (offset, key, value, timestamp).
type Served = (i64, Vec<u8>, Option<Vec<u8>>, i64);

/// Every record served from the log start, with its timestamp as a consumer computes it
/// (base timestamp + delta), and the headers of the batches served.
pub(super) fn served(log: &Log) -> (Vec<Served>, Vec<crate::batch::BatchHeader>) {
    let (mut out, mut headers) = (Vec::new(), Vec::new());
    let mut at = log.offsets().log_start;
    while at < log.offsets().log_end {
        let d = log.read(&ReadOptions::from(at)).expect("read");
        if d.records.is_empty() {
            break;
        }
        let mut it = BatchIter::new(&d.records);
        for (pos, h) in it.by_ref() {
            let (_, recs) =
                records_section(&d.records[pos..pos + h.size()], 1 << 20).expect("batch");
            for r in RecordIter::new(&recs, h.record_count as usize) {
                let r = r.expect("record");
                out.push((
                    h.base_offset + r.offset_delta as i64,
                    r.key.expect("key").to_vec(),
                    r.value.map(<[u8]>::to_vec),
                    h.base_timestamp + r.timestamp_delta,
                ));
            }
            headers.push(h);
            at = Offset(h.next_offset());
        }
        assert!(it.stop().1.is_none(), "served a bad batch");
    }
    (out, headers)
}

#[test]
fn a_tombstone_with_an_old_or_missing_timestamp_outlives_the_first_clean_by_delete_retention() {
    for ts in [-1, 5] {
        let dir = tempfile::tempdir().expect("tmp");
        let log = open(dir.path(), compacted_config(1000));
        let put = |k: &[u8], v: Option<&[u8]>, ts: i64| {
            let b = BatchBuilder::new().record(Some(k), v, ts).build();
            log.append(&b, &opts()).expect("append");
        };
        put(b"k", Some(b"old"), ts);
        put(b"k", None, ts); // the tombstone: latest of its key
        put(b"j", Some(b"other"), ts);
        roll(&log);

        // First clean at t=10_000: the tombstone stays and its batch gets the horizon.
        log.housekeeping(10_000).expect("clean");
        let (records, headers) = served(&log);
        assert_eq!(
            records
                .iter()
                .map(|r| (r.0, r.2.clone()))
                .collect::<Vec<_>>(),
            vec![(1, None), (2, Some(b"other".to_vec()))],
            "timestamp {ts}: the first clean removed the tombstone"
        );
        let stamped = headers
            .iter()
            .find(|h| h.base_offset == 1)
            .expect("tombstone batch");
        assert_eq!(stamped.delete_horizon_ms(), Some(11_000));
        assert!(
            records.iter().all(|r| r.3 == ts),
            "consumers still see each record's own timestamp: {records:?}"
        );

        // Before the horizon the tombstone stays; at it, it goes (nothing else is dirty).
        log.housekeeping(10_999).expect("clean");
        assert_eq!(served(&log).0.len(), 2, "removed before its horizon");
        log.housekeeping(11_000).expect("clean");
        assert_eq!(
            served(&log)
                .0
                .iter()
                .map(|r| (r.0, r.2.clone()))
                .collect::<Vec<_>>(),
            vec![(2, Some(b"other".to_vec()))],
            "the tombstone outlived its delete horizon"
        );
    }
}

#[test]
fn compaction_keeps_a_producers_emptied_last_batch_so_its_next_sequence_is_accepted() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), compacted_config(1000));
    let idempotent = |key: &[u8], seq: i32| {
        BatchBuilder::new()
            .producer(9, 0, seq)
            .record(Some(key), Some(b"v"), 1000)
            .build()
    };
    log.append(&idempotent(b"a", 0), &opts()).expect("append");
    log.append(&idempotent(b"b", 1), &opts()).expect("append");
    // Another writer supersedes the producer's last record.
    let plain = BatchBuilder::new()
        .record(Some(b"b"), Some(b"w"), 1000)
        .build();
    log.append(&plain, &opts()).expect("append");
    roll(&log);
    log.housekeeping(10_000).expect("clean");
    let (records, headers) = served(&log);
    assert_eq!(
        records.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![0, 2],
        "offset 1 is superseded"
    );
    assert!(
        headers
            .iter()
            .any(|h| h.base_offset == 1 && h.record_count == 0 && h.base_sequence == 1),
        "the producer's last batch is kept empty: {headers:?}"
    );
    // A follower's truncation rebuilds producer state from the batches in the log.
    log.append(&plain, &opts()).expect("append");
    log.truncate_to(Offset(3)).expect("truncate");
    let next = log.append(&idempotent(b"c", 2), &opts());
    assert!(
        next.is_ok(),
        "the producer's next sequence is refused: {next:?}"
    );
}

/// Appends `n` records over keys `k0..k{keys}` at timestamp `ts`, then seals the segment.
fn overwrite(log: &Log, n: usize, keys: usize, ts: i64) {
    for i in 0..n {
        let key = format!("k{}", i % keys);
        let b = BatchBuilder::new()
            .record(Some(key.as_bytes()), Some(b"v"), ts)
            .build();
        log.append(&b, &opts()).expect("append");
    }
    roll(log);
}

#[test]
fn a_log_is_compacted_once_its_dirty_ratio_passes_min_cleanable_dirty_ratio() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), compacted_config(1000));
    assert_eq!(
        log.config().min_cleanable_dirty_ratio.get(),
        0.5,
        "Kafka's default"
    );
    overwrite(&log, 40, 4, 1000);
    log.housekeeping(10_000)
        .expect("first pass: all of it is dirty");
    assert_eq!(served(&log).0.len(), 4);
    // A little written since: dirty bytes are far below half of the cleanable bytes.
    overwrite(&log, 2, 4, 1000);
    log.housekeeping(10_001).expect("housekeeping");
    assert_eq!(served(&log).0.len(), 6, "compacted below the ratio");
    overwrite(&log, 8, 4, 1000);
    log.housekeeping(10_002).expect("housekeeping");
    assert_eq!(served(&log).0.len(), 4, "not compacted above the ratio");
}

#[test]
fn max_compaction_lag_compacts_a_log_below_its_dirty_ratio() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = compacted_config(1000);
    config.set("max.compaction.lag.ms", "5000").expect("lag");
    let log = open(dir.path(), config);
    overwrite(&log, 40, 4, 1000);
    log.housekeeping(2_000).expect("first pass");
    assert_eq!(served(&log).0.len(), 4);
    overwrite(&log, 2, 4, 3_000);
    log.housekeeping(7_999).expect("housekeeping");
    assert_eq!(
        served(&log).0.len(),
        6,
        "the dirty segment began less than 5 s ago"
    );
    log.housekeeping(8_001).expect("housekeeping");
    assert_eq!(
        served(&log).0.len(),
        4,
        "overdue: compacted below the dirty ratio"
    );
}

#[test]
fn the_cleaner_configs_take_kafkas_values_and_refuse_others() {
    let mut c = LogConfig::default();
    assert_eq!(c.get("min.cleanable.dirty.ratio").as_deref(), Some("0.5"));
    assert_eq!(
        c.get("max.compaction.lag.ms").as_deref(),
        Some(i64::MAX.to_string().as_str())
    );
    c.set("min.cleanable.dirty.ratio", "0.1").expect("ratio");
    assert_eq!(c.get("min.cleanable.dirty.ratio").as_deref(), Some("0.1"));
    for bad in ["1.5", "-0.1", "NaN", "half"] {
        assert!(c.set("min.cleanable.dirty.ratio", bad).is_err(), "{bad}");
    }
    assert!(
        c.set("max.compaction.lag.ms", "0").is_err(),
        "Kafka's minimum is 1"
    );
}
