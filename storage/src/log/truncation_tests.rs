//! Truncation (a follower cutting its log to its leader's): all or nothing, and never a file
//! shrunk under a reader's view.

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
