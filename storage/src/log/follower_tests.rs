//! A follower's log: copying its leader's batches as they are, restarting where the leader's
//! log starts, and truncating to the leader (with the leader-epoch cache) when they diverge.

use super::tests::{open, read_all, small_config};
use super::*;
use crate::batch::test_support::values;
use crate::types::{LeaderEpoch, Offset};
use crate::{AppendOptions, AppendOrigin, ReadOptions};

fn as_leader(epoch: i32) -> AppendOptions {
    AppendOptions {
        leader_epoch: LeaderEpoch(epoch),
        now_ms: 1,
        ..AppendOptions::default()
    }
}

const REPLICATED: AppendOptions = AppendOptions {
    leader_epoch: LeaderEpoch(-1),
    origin: AppendOrigin::Replication,
    now_ms: 1,
};

/// The bytes of every batch of `log` from `from` on, as a fetch from a follower gets them.
fn fetch(log: &Log, from: Offset) -> Vec<u8> {
    let data = log
        .read(&ReadOptions {
            from,
            max_bytes: 1 << 20,
            max_offset: None,
            min_one_batch: true,
        })
        .expect("read");
    data.records.to_vec()
}

#[test]
fn an_empty_follower_log_restarts_at_the_base_of_a_batch_its_log_start_falls_inside() {
    let dir = tempfile::tempdir().expect("tmp");
    let leader = open(&dir.path().join("leader"), small_config());
    leader
        .append(&values(8, 5, 0), &as_leader(1))
        .expect("append");
    leader
        .append(&values(2, 5, 0), &as_leader(1))
        .expect("append");
    // DeleteRecords moved the leader's log start inside the first batch (offsets 0..=7).
    assert_eq!(
        leader.delete_records_before(Offset(5)).expect("delete"),
        Offset(5)
    );

    // A new replica: the leader's log starts past its end, so it starts over there...
    let follower = open(&dir.path().join("follower"), small_config());
    follower
        .truncate_fully_and_start_at(Offset(5))
        .expect("restart");
    // ...and the fetch at 5 brings the whole batch that holds offset 5.
    let batches = fetch(&leader, Offset(5));
    follower
        .append(&batches, &REPLICATED)
        .expect("an empty log takes a batch its log start falls inside");

    let o = follower.offsets();
    assert_eq!(
        (o.log_start, o.log_end),
        (Offset(5), Offset(10)),
        "the log start stays where the leader said"
    );
    assert_eq!(read_all(&follower, Offset(5)), read_all(&leader, Offset(5)));
    assert_eq!(
        follower.end_offset_for_epoch(LeaderEpoch(1)),
        Some((LeaderEpoch(1), Offset(10)))
    );
    follower.close().expect("close");
    drop(follower);
    let follower = open(&dir.path().join("follower"), small_config());
    let o = follower.offsets();
    assert_eq!((o.log_start, o.log_end), (Offset(5), Offset(10)));
    assert_eq!(read_all(&follower, Offset(5)), vec![(0, 8), (8, 2)]);
}

#[test]
fn a_log_with_records_still_refuses_a_batch_below_its_end() {
    let dir = tempfile::tempdir().expect("tmp");
    let leader = open(&dir.path().join("leader"), small_config());
    leader
        .append(&values(8, 5, 0), &as_leader(1))
        .expect("append");
    let follower = open(&dir.path().join("follower"), small_config());
    follower
        .append(&fetch(&leader, Offset(0)), &REPLICATED)
        .expect("append");
    assert!(matches!(
        follower.append(&fetch(&leader, Offset(0)), &REPLICATED),
        Err(StorageError::CorruptRecord(_))
    ));
    // Empty but the batch ends before the log end: it holds nothing this log lacks.
    let empty = open(&dir.path().join("empty"), small_config());
    empty
        .truncate_fully_and_start_at(Offset(8))
        .expect("restart");
    assert!(matches!(
        empty.append(&fetch(&leader, Offset(0)), &REPLICATED),
        Err(StorageError::CorruptRecord(_))
    ));
    assert_eq!(empty.offsets().log_end, Offset(8));
}

#[test]
fn truncating_at_the_log_end_still_drops_an_empty_trailing_epoch() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path(), small_config());
    for _ in 0..3 {
        log.append(&values(1, 5, 0), &as_leader(1)).expect("append");
    }
    // This broker led epoch 3 and wrote nothing in it before it lost leadership.
    log.assign_epoch(LeaderEpoch(3)).expect("assign");
    assert_eq!(log.latest_epoch(), Some(LeaderEpoch(3)));

    log.truncate_to(Offset(3)).expect("truncate at the end");
    assert_eq!(log.offsets().log_end, Offset(3));
    assert_eq!(
        log.latest_epoch(),
        Some(LeaderEpoch(1)),
        "the epoch with no record is gone, so the next OffsetForLeaderEpoch asks with epoch 1"
    );
    log.close().expect("close");
    drop(log);
    let log = open(dir.path(), small_config());
    assert_eq!(log.latest_epoch(), Some(LeaderEpoch(1)), "and checkpointed");
}

#[test]
fn a_follower_copying_an_older_epoch_where_it_began_one_it_never_wrote_drops_that_epoch() {
    use crate::LeaderEpoch as E;
    let dir = tempfile::tempdir().expect("tmp");
    // The leader of epoch 4: records of epochs 1 (0..3), 2 (3..5) and 4 (5..6).
    let leader = open(&dir.path().join("leader"), small_config());
    for epoch in [1, 1, 1, 2, 2, 4] {
        leader
            .append(&values(1, 5, 0), &as_leader(epoch))
            .expect("append");
    }
    // This replica has the epoch-1 records, then led epoch 3 from offset 3 without writing.
    let follower = open(&dir.path().join("follower"), small_config());
    for _ in 0..3 {
        follower
            .append(&values(1, 5, 0), &as_leader(1))
            .expect("append");
    }
    follower.assign_epoch(E(3)).expect("assign");
    // Following the epoch-4 leader again, it copies the rest as the leader wrote it.
    follower
        .append(&fetch(&leader, Offset(3)), &REPLICATED)
        .expect("append");
    for epoch in 0..=5 {
        assert_eq!(
            follower.end_offset_for_epoch(E(epoch)),
            leader.end_offset_for_epoch(E(epoch)),
            "OffsetForLeaderEpoch({epoch}) answered as the leader does: epoch 3 has no record"
        );
    }
    follower.close().expect("close");
    drop(follower);
    let follower = open(&dir.path().join("follower"), small_config());
    assert_eq!(
        follower.end_offset_for_epoch(E(3)),
        Some((E(2), Offset(5))),
        "and checkpointed"
    );
}
