//! Deleted segments (retention, truncation, compaction): renamed `.deleted`, unlinked after
//! `file.delete.delay.ms`, and never reopened by name, so a reader that took a segment
//! before its deletion still reads it and no file comes back.

use std::path::Path;
use std::sync::Arc;

use super::tests::{read_all, small_config};
use super::*;
use crate::batch::test_support::values;
use crate::types::{Offset, TopicPartition};
use crate::AppendOptions;

fn opts() -> AppendOptions {
    AppendOptions {
        now_ms: 1,
        ..AppendOptions::default()
    }
}

/// A log whose budget keeps one sealed segment mapped, so sealed segments are unmapped often.
fn open_tight(dir: &Path, config: LogConfig) -> Log {
    Log::open_with_budget(
        &dir.join("t-0"),
        TopicPartition::new("t", 0),
        config,
        MapBudget::new(1),
    )
    .expect("open")
}

/// Segment file names in the partition directory, sorted.
pub(crate) fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".log") || n.contains("index"))
        .collect();
    names.sort();
    names
}

/// What a reader that took `seg` from the log reads from it, whole.
fn read_segment(seg: &LogSegment) -> crate::Result<Vec<u8>> {
    let from = seg.base_offset();
    Ok(seg
        .read(from, usize::MAX, Offset(i64::MAX), true)?
        .unwrap_or_default()
        .to_vec())
}

#[test]
fn a_reader_holding_a_segment_retention_deletes_still_reads_it_and_recreates_no_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let part = dir.path().join("t-0");
    let log = open_tight(dir.path(), small_config());
    for i in 0..80 {
        log.append(&values(2, 100, i), &opts()).expect("append");
    }
    assert!(log.segment_count() > 3);
    let first = Arc::clone(&log.segments_from(Offset(0))[0]);
    let expected = read_segment(&first).expect("read");
    // The reader took the segment (as `Log::read` does) and then lagged; meanwhile reads of
    // other segments unmapped it, and retention deleted it.
    read_all(&log, first.next_offset());
    assert!(!first.is_mapped());
    let mut config = small_config();
    config.retention_bytes = 4096;
    log.update_config(config.clone());
    assert!(log.housekeeping(1).expect("hk").segments_deleted > 0);
    assert!(log.offsets().log_start > Offset(0));

    assert_eq!(
        read_segment(&first).expect("a deleted segment is still read"),
        expected
    );
    let log_name = crate::segment::file_name(Offset(0), "log");
    assert!(
        !part.join(&log_name).exists(),
        "no file recreated: {:?}",
        segment_files(&part)
    );
    assert!(part.join(format!("{log_name}.deleted")).exists());
    // `file.delete.delay.ms` (60 s by default) after the pass that deleted it, it is unlinked.
    log.housekeeping(60_000).expect("hk");
    assert!(part.join(format!("{log_name}.deleted")).exists());
    log.housekeeping(60_001).expect("hk");
    assert!(
        segment_files(&part)
            .iter()
            .all(|n| !n.ends_with(".deleted")),
        "{:?}",
        segment_files(&part)
    );
    drop(first);
    let start = log.offsets().log_start;
    let records = read_all(&log, start);
    drop(log);
    let log = open_tight(dir.path(), config);
    assert_eq!(read_all(&log, start), records);
}

#[test]
fn a_reader_lagging_behind_a_truncation_leaves_no_segment_above_the_new_end() {
    let dir = tempfile::tempdir().expect("tmp");
    let part = dir.path().join("t-0");
    let log = open_tight(dir.path(), small_config());
    for i in 0..80 {
        log.append(&values(2, 100, i), &opts()).expect("append");
    }
    let segs = log.segments_from(Offset(0));
    assert!(segs.len() > 3);
    let lagging = Arc::clone(&segs[2]);
    let cut = segs[1].base_offset().plus(2);
    drop(segs);
    read_all(&log, Offset(0));
    assert!(!lagging.is_mapped());
    // A follower truncation crosses the rolls; the reader of a segment above the cut reads on.
    log.truncate_to(cut).expect("truncate");
    assert!(read_segment(&lagging).is_ok());
    for i in 0..3 {
        log.append(&values(2, 100, i), &opts()).expect("append");
    }
    let expected = read_all(&log, Offset(0));
    let end = log.offsets().log_end;
    assert!(end < lagging.base_offset());
    log.close().expect("close");
    drop(log);
    let log = open_tight(dir.path(), small_config());
    assert_eq!(
        (read_all(&log, Offset(0)), log.offsets().log_end),
        (expected, end),
        "{:?}",
        segment_files(&part)
    );
}
