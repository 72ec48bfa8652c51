//! Truncation (a follower cutting its log to its leader's): all or nothing, and never a file
//! shrunk under a mapping a reader uses.

use std::sync::Arc;

use super::tests::{open, read_all, small_config};
use super::*;
use crate::batch::test_support::values;
use crate::types::Offset;
use crate::AppendOptions;

fn opts() -> AppendOptions {
    AppendOptions {
        now_ms: 1,
        ..AppendOptions::default()
    }
}

#[test]
fn a_truncation_that_cannot_cut_changes_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), small_config());
    // Batches of four records: offset 6 lies inside the batch 4..=7 of the first segment.
    for i in 0..30 {
        log.append(&values(4, 100, i), &opts()).expect("append");
    }
    assert!(log.segment_count() > 2, "{} segments", log.segment_count());
    let (before, offsets, segments) = (
        read_all(&log, Offset(0)),
        log.offsets(),
        log.segment_count(),
    );
    assert!(matches!(
        log.truncate_to(Offset(6)),
        Err(StorageError::Corrupt { .. })
    ));
    assert_eq!(log.offsets(), offsets, "nothing published");
    assert_eq!(log.segment_count(), segments, "no segment deleted");
    assert_eq!(read_all(&log, Offset(0)), before, "every record still read");

    // The log is still usable, and a cut between batches works.
    log.truncate_to(Offset(8))
        .expect("truncate between batches");
    assert_eq!(read_all(&log, Offset(0)), before[..2].to_vec());
    log.append(&values(4, 100, 0), &opts()).expect("append");
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(read_all(&log, Offset(0)), vec![(0, 4), (4, 4), (8, 4)]);
}

#[test]
fn a_read_is_a_copy_so_a_truncation_shrinks_the_file_at_once_under_a_slow_reader() {
    let dir = tempfile::tempdir().expect("tmp");
    // A budget of one sealed segment: reading another one unmaps the last.
    let log = Log::open_with_budget(
        &dir.path().join("t-0"),
        crate::TopicPartition::new("t", 0),
        small_config(),
        MapBudget::new(1),
    )
    .expect("open");
    for i in 0..80 {
        log.append(&values(2, 100, i), &opts()).expect("append");
    }
    let segs = log.segments_from(Offset(0));
    assert!(segs.len() > 3);
    let (seg, next) = (Arc::clone(&segs[1]), segs[2].base_offset());
    drop(segs);
    // A fetch response on a slow socket holds what it read of the sealed segment...
    let held = log
        .read(&crate::ReadOptions::from(seg.base_offset()))
        .expect("read")
        .records;
    let snapshot = held.to_vec();
    // ...while reads elsewhere unmap the segment and a later read maps it again.
    read_all(&log, next);
    assert!(!seg.is_mapped());
    assert_eq!(read_all(&log, seg.base_offset())[0].0, seg.base_offset().0);
    // A follower truncation cuts that segment: nothing the reader holds points into the file
    // (reads copy with pread(2)), so the file may shrink at once.
    let cut = seg.base_offset().plus(2);
    log.truncate_to(cut).expect("truncate");
    log.housekeeping(1).expect("hk");
    let file_len = std::fs::metadata(seg.log_path()).expect("stat").len();
    assert_eq!(
        file_len,
        u64::from(seg.size()),
        "shrunk under a live reader"
    );
    assert!(
        file_len < held.len() as u64,
        "the reader held more than is left"
    );
    assert_eq!(
        &held[..],
        &snapshot[..],
        "the reader still has what it read"
    );
    assert_eq!(
        read_all(&log, Offset(0)).last().map(|b| b.0 + 2),
        Some(cut.0)
    );
}
