//! Offsets a segment can hold: Kafka stores an offset as 4 bytes relative to the segment's
//! base, so an append whose offsets would not fit rolls a new segment, and recovery cuts a
//! batch that does not fit its segment instead of indexing a wrapped offset.

use super::tests::{open, read_all, small_config};
use super::*;
use crate::record::BatchBuilder;
use crate::segment::file_name;
use crate::{AppendOptions, AppendOrigin};

fn replicated_at(offset: i64) -> Vec<u8> {
    BatchBuilder::new()
        .base_offset(offset)
        .leader_epoch(0)
        .record(None, Some(b"v"), 1000)
        .build()
}

fn replication() -> AppendOptions {
    AppendOptions {
        origin: AppendOrigin::Replication,
        now_ms: 1,
        ..AppendOptions::default()
    }
}

fn bases(log: &Log) -> Vec<i64> {
    log.segments.read().keys().copied().collect()
}

#[test]
fn an_append_whose_offsets_do_not_fit_the_active_segment_as_i32_rolls_a_new_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), small_config());
    let max = i32::MAX as i64;
    log.append(&replicated_at(0), &replication())
        .expect("append");
    // A follower copies a compacted leader: offsets jump. Relative i32::MAX still fits.
    log.append(&replicated_at(max - 1), &replication())
        .expect("append");
    let client = AppendOptions {
        now_ms: 1,
        ..AppendOptions::default()
    };
    let b = BatchBuilder::new().record(None, Some(b"c"), 1000).build();
    assert_eq!(
        log.append(&b, &client).expect("append").first_offset,
        Offset(max)
    );
    assert_eq!(bases(&log), vec![0], "relative offset i32::MAX fits");
    // The next client record would be i32::MAX + 1 past the base: a new segment.
    log.append(&b, &client).expect("append");
    assert_eq!(
        bases(&log),
        vec![0, max + 1],
        "the client append did not roll"
    );
    // The same for replication, within one append of two batches: the second rolls.
    let mut two = replicated_at(max + 2);
    two.extend_from_slice(&replicated_at(2 * max + 3));
    log.append(&two, &replication()).expect("append");
    assert_eq!(
        bases(&log),
        vec![0, max + 1, 2 * max + 3],
        "the replicated batch did not roll"
    );
    let want = vec![
        (0, 1),
        (max - 1, 1),
        (max, 1),
        (max + 1, 1),
        (max + 2, 1),
        (2 * max + 3, 1),
    ];
    assert_eq!(read_all(&log, Offset(0)), want);
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(read_all(&log, Offset(0)), want, "after recovery");
}

#[test]
fn recovery_cuts_a_batch_whose_offsets_do_not_fit_its_segment() {
    let dir = tempfile::tempdir().expect("tmp");
    let part = dir.path().join("t-0");
    std::fs::create_dir_all(&part).expect("dir");
    // Written by hand: a batch 2^32 offsets past the segment base, which no 4-byte relative
    // offset can index, and one after it.
    let mut data = replicated_at(0);
    data.extend_from_slice(&replicated_at(1 << 32));
    data.extend_from_slice(&replicated_at((1 << 32) + 1));
    std::fs::write(part.join(file_name(Offset(0), "log")), &data).expect("write");
    let log = open(dir.path(), small_config());
    assert_eq!(log.offsets().log_end, Offset(1), "the batch was kept");
    assert_eq!(read_all(&log, Offset(0)), vec![(0, 1)]);
    log.append(&replicated_at(1 << 32), &replication())
        .expect("it is appended again in a segment of its own");
    assert_eq!(bases(&log), vec![0, 1 << 32]);
}

#[test]
fn recovery_cuts_a_batch_whose_last_offset_would_overflow_without_panicking() {
    let dir = tempfile::tempdir().expect("tmp");
    let part = dir.path().join("t-0");
    std::fs::create_dir_all(&part).expect("dir");
    let mut data = replicated_at(0);
    let mut wild = BatchBuilder::new()
        .base_offset(i64::MAX - 1)
        .record(None, Some(b"v"), 1000)
        .record(None, Some(b"w"), 1000)
        .record(None, Some(b"x"), 1000)
        .build();
    crate::batch::set_offset_and_epoch(&mut wild, i64::MAX - 1, 0);
    data.extend_from_slice(&wild);
    std::fs::write(part.join(file_name(Offset(0), "log")), &data).expect("write");
    let log = open(dir.path(), small_config());
    assert_eq!(read_all(&log, Offset(0)), vec![(0, 1)]);
}
