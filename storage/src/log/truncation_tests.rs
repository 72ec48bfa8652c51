//! Truncation (a follower cutting its log to its leader's): all or nothing, and never a file
//! shrunk under a reader's view.

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
fn a_view_of_an_unmapped_generation_keeps_its_file_from_shrinking() {
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
    // A fetch response on a slow socket holds a view of the sealed segment (mapping #1)...
    let view = log
        .read(&crate::ReadOptions::from(seg.base_offset()))
        .expect("read")
        .records;
    let snapshot = view.to_vec();
    // ...while reads elsewhere unmap it and a later read maps it again (mapping #2).
    read_all(&log, next);
    assert!(!seg.is_mapped());
    assert_eq!(read_all(&log, seg.base_offset())[0].0, seg.base_offset().0);
    // A follower truncation cuts that segment: mapping #2 is unshared, #1 is still read.
    let cut = seg.base_offset().plus(2);
    log.truncate_to(cut).expect("truncate");
    let file_len = || std::fs::metadata(seg.log_path()).expect("stat").len();
    assert!(
        file_len() >= view.len() as u64,
        "the file shrank to {} under a live view of {} bytes",
        file_len(),
        view.len()
    );
    log.housekeeping(1).expect("hk");
    assert!(
        file_len() >= view.len() as u64,
        "nor later, while the view lives"
    );
    assert_eq!(
        &view[..],
        &snapshot[..],
        "the view reads what it read (no SIGBUS)"
    );
    drop(view);
    log.housekeeping(2).expect("hk");
    assert_eq!(
        file_len(),
        u64::from(seg.size()),
        "shrunk once no view is left"
    );
    assert_eq!(
        read_all(&log, Offset(0)).last().map(|b| b.0 + 2),
        Some(cut.0)
    );
}
