use std::sync::atomic::{AtomicUsize, Ordering};

use sluice_storage::AppendOptions;
use uuid::Uuid;

use super::*;
use crate::replica_manager::follower_tests::{image, leader_batches, replica_manager, LEADER};

const BACKOFF: Duration = Duration::from_secs(1);

fn answer(epoch: i32, end: i64) -> EpochEndOffset {
    EpochEndOffset {
        leader_epoch: LeaderEpoch(epoch),
        end_offset: Offset(end),
    }
}

/// A follower partition at `epoch` whose log holds `n` records of epoch 1 and then an epoch
/// 3 it assigned as leader and never wrote in.
fn diverged_follower(
    dir: &std::path::Path,
    n: i64,
    epoch: i32,
) -> (ReplicaManager, Arc<Partition>, Uuid) {
    let rm = replica_manager(dir);
    let id = Uuid::new_v4();
    rm.apply_image(&image(id, LEADER, 1));
    let p = rm.partition(&TopicPartition::new("t", 0)).expect("hosted");
    p.log
        .append(
            &leader_batches(1, 0, n),
            &AppendOptions {
                leader_epoch: LeaderEpoch(1),
                origin: sluice_storage::AppendOrigin::Replication,
                now_ms: 1,
            },
        )
        .expect("append");
    p.log.assign_epoch(LeaderEpoch(3)).expect("assign");
    rm.apply_image(&image(id, LEADER, epoch));
    assert!(p.replica().needs_truncation);
    (rm, p, id)
}

#[test]
fn an_empty_trailing_epoch_makes_the_follower_ask_again_and_drop_what_diverged() {
    let dir = tempfile::tempdir().expect("tmp");
    let (_rm, p, _) = diverged_follower(dir.path(), 10, 4);
    // The leader (epoch 4) wrote epoch 2 from offset 8 on: our 8 and 9 are not its records.
    let rest = on_epoch_answer(&p, LeaderEpoch(4), 0, answer(2, 12), BACKOFF);
    assert_eq!(rest, None);
    assert_eq!(p.log.offsets().log_end, Offset(10), "nothing cut yet");
    assert_eq!(
        p.log.latest_epoch(),
        Some(LeaderEpoch(1)),
        "epoch 3 dropped"
    );
    assert!(p.replica().needs_truncation, "must ask again, with epoch 1");

    assert_eq!(
        on_epoch_answer(&p, LeaderEpoch(4), 0, answer(1, 8), BACKOFF),
        None
    );
    assert_eq!(p.log.offsets().log_end, Offset(8));
    assert!(!p.replica().needs_truncation, "done: fetching may start");
}

#[test]
fn an_offset_for_leader_epoch_refusal_rests_the_partition() {
    let dir = tempfile::tempdir().expect("tmp");
    let (_rm, p, _) = diverged_follower(dir.path(), 10, 4);
    let not_leader = ResponseError::NotLeaderOrFollower.code();
    assert_eq!(
        on_epoch_answer(&p, LeaderEpoch(4), not_leader, answer(-1, -1), BACKOFF),
        Some(METADATA_RACE_BACKOFF),
        "a metadata race rests briefly"
    );
    let storage = ResponseError::KafkaStorageError.code();
    assert_eq!(
        on_epoch_answer(&p, LeaderEpoch(4), storage, answer(-1, -1), BACKOFF),
        Some(BACKOFF)
    );
    assert_eq!(
        p.log.offsets().log_end,
        Offset(10),
        "a refusal cuts nothing"
    );
    assert!(p.replica().needs_truncation);
}

#[test]
fn an_answer_for_an_older_leader_epoch_cuts_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let (rm, p, id) = diverged_follower(dir.path(), 10, 4);
    // Asked at epoch 4; epoch 5 arrived before the answer.
    rm.apply_image(&image(id, LEADER, 5));
    assert_eq!(
        on_epoch_answer(&p, LeaderEpoch(4), 0, answer(1, 3), BACKOFF),
        None
    );
    assert_eq!(p.log.offsets().log_end, Offset(10));
    assert!(
        p.replica().needs_truncation,
        "epoch 5 truncates on its own answer"
    );
}

#[tokio::test]
async fn a_task_that_found_nothing_to_follow_is_replaced_when_its_leader_is_followed_again() {
    let tasks = FetcherTasks::default();
    let spawned = AtomicUsize::new(0);
    // Tasks that never end by themselves: what matters is what the set counts.
    let spawn = |_| {
        spawned.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(std::future::pending::<()>())
    };
    tasks.start_missing([LEADER], spawn);
    assert_eq!(spawned.load(Ordering::SeqCst), 1);

    // The task finds nothing to follow and leaves; it has not returned yet.
    assert_eq!(tasks.leave_unless_followed(LEADER, || None::<()>), None);
    assert!(!tasks.has(LEADER));
    // The leader is followed again before the old task is finished: a new task starts.
    tasks.start_missing([LEADER], spawn);
    assert_eq!(spawned.load(Ordering::SeqCst), 2);

    // A task that still has partitions stays, and no second one starts.
    assert_eq!(tasks.leave_unless_followed(LEADER, || Some(7)), Some(7));
    tasks.start_missing([LEADER], spawn);
    assert_eq!(spawned.load(Ordering::SeqCst), 2);
    for t in tasks.drain() {
        t.abort();
    }
}

#[test]
fn a_follower_whose_log_knows_no_epoch_keeps_only_what_was_committed() {
    let dir = tempfile::tempdir().expect("tmp");
    let rm = replica_manager(dir.path());
    let id = Uuid::new_v4();
    rm.apply_image(&image(id, LEADER, 1));
    let p = rm.partition(&TopicPartition::new("t", 0)).expect("hosted");
    // Records written without a leader epoch (-1): nothing to ask the new leader about.
    p.log
        .append(
            &leader_batches(-1, 0, 5),
            &AppendOptions {
                leader_epoch: LeaderEpoch(1),
                origin: sluice_storage::AppendOrigin::Replication,
                now_ms: 1,
            },
        )
        .expect("append");
    assert_eq!(p.log.latest_epoch(), None);
    p.log.set_high_watermark(Offset(2));
    rm.apply_image(&image(id, LEADER, 4));
    assert!(p.replica().needs_truncation);

    assert_eq!(
        truncate_to_high_watermark(&p, LeaderEpoch(4), BACKOFF),
        None
    );
    assert_eq!(
        p.log.offsets().log_end,
        Offset(2),
        "cut to the high watermark"
    );
    assert!(!p.replica().needs_truncation, "fetching may start");
}

#[test]
fn an_out_of_range_answer_to_an_older_epoch_does_not_truncate_again() {
    let dir = tempfile::tempdir().expect("tmp");
    let (rm, p, id) = diverged_follower(dir.path(), 10, 4);
    rm.apply_image(&image(id, LEADER, 5));
    p.truncated(LeaderEpoch(5));
    // The answer to a fetch sent at epoch 4 arrives now.
    p.mark_needs_truncation(LeaderEpoch(4));
    assert!(!p.replica().needs_truncation, "epoch 5 already truncated");
    p.mark_needs_truncation(LeaderEpoch(5));
    assert!(p.replica().needs_truncation);
}
