//! The leader's side of a partition over a real log in a temporary directory: follower
//! progress, the high watermark, ISR changes and ListOffsets, driven step by step through
//! metadata images and follower fetches (no network, no timers).

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_replication::controller::ControllerError;
use sluice_replication::image::{self, Broker, MetadataImage, Topic};
use sluice_replication::isr;
use sluice_replication::pending_isr::{AfterAnswer, AlterIsrAnswer, PendingIsr};
use sluice_storage::record::BatchBuilder;
use uuid::Uuid;

use super::*;
use crate::error_map;
use kafka_protocol::error::ResponseError;

const TOPIC: &str = "t";

struct Setup {
    _dir: tempfile::TempDir,
    rm: ReplicaManager,
    topic: Uuid,
}

impl Setup {
    fn new(node: i32) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = BrokerConfig {
            node_id: node,
            log_dirs: vec![dir.path().to_path_buf()],
            metrics_listener: None,
            ..BrokerConfig::default()
        };
        Setup {
            rm: ReplicaManager::open(config).expect("open"),
            _dir: dir,
            topic: Uuid::from_u128(7),
        }
    }

    /// Applies an image where partition 0 of the topic is `p`, brokers 1-3 registered.
    fn apply(&self, p: image::Partition) -> Arc<Partition> {
        let mut image = MetadataImage::default();
        for id in 1..=3 {
            image.brokers.insert(id, broker(id));
        }
        image.topics.insert(
            self.topic,
            Topic {
                id: self.topic,
                name: TOPIC.into(),
                configs: BTreeMap::new(),
                partitions: vec![p],
            },
        );
        image.topic_ids.insert(TOPIC.into(), self.topic);
        self.rm.apply_image(&image);
        self.partition()
    }

    fn partition(&self) -> Arc<Partition> {
        self.rm
            .partition(&TopicPartition::new(TOPIC, 0))
            .expect("hosted")
    }

    /// Appends one record per timestamp as leader.
    fn produce(&self, timestamps: &[i64]) {
        let mut b = BatchBuilder::new();
        for ts in timestamps {
            b = b.record(None, Some(b"v"), *ts);
        }
        self.rm
            .append(
                &TopicPartition::new(TOPIC, 0),
                &b.build(),
                AppendOrigin::Client,
                false,
            )
            .expect("append");
    }
}

fn broker(id: i32) -> Broker {
    Broker {
        id,
        epoch: 100 + i64::from(id),
        endpoints: Vec::new(),
        rack: None,
        fenced: false,
        shutting_down: false,
        incarnation: None,
    }
}

fn part(leader: i32, leader_epoch: i32, replicas: &[i32], isr: &[i32]) -> image::Partition {
    image::Partition {
        replicas: replicas.to_vec(),
        isr: isr.to_vec(),
        leader,
        leader_epoch: sluice_storage::LeaderEpoch(leader_epoch),
        partition_epoch: leader_epoch,
        adding: Vec::new(),
        removing: Vec::new(),
    }
}

/// A fetch from `replica` at `offset` with the broker epoch `broker` gives it.
fn fetch(p: &Partition, leader: i32, replica: i32, offset: i64) -> Result<(), BrokerError> {
    let fetch = FollowerFetch {
        replica,
        broker_epoch: broker(replica).epoch,
        fetch_offset: Offset(offset),
        log_start_offset: Offset(0),
        current_leader_epoch: -1,
    };
    p.on_follower_fetch(leader, &fetch, Some(broker(replica).epoch), now_ms())
}

/// Every broker may join the ISR.
fn any(_: i32, _: Option<i64>) -> bool {
    true
}

fn hw(p: &Partition) -> i64 {
    p.log.offsets().high_watermark.0
}

#[test]
fn a_new_leader_proposes_no_replica_it_has_not_heard_from() {
    // Replicas [3, 1, 2]: 2 leads with ISR {1, 2}; 3 is far behind (it never fetched).
    let s = Setup::new(2);
    let p = s.apply(part(2, 0, &[3, 1, 2], &[1, 2]));
    s.produce(&[1, 2, 3, 4, 5]);
    fetch(&p, 2, 1, 5).expect("fetch");
    assert_eq!(hw(&p), 5);
    // Leadership moves to 1 and back to 2: the new leadership has heard from nobody.
    s.apply(part(1, 1, &[3, 1, 2], &[1, 2]));
    let p = s.apply(part(2, 2, &[3, 1, 2], &[1, 2]));
    assert_eq!(p.isr_change_to_propose(now_ms(), any), None);
    // It joins once it has fetched up to the high watermark and this epoch's start.
    let end = p.log.offsets().log_end.0;
    fetch(&p, 2, 1, end).expect("fetch");
    fetch(&p, 2, 3, end).expect("fetch");
    assert_eq!(
        p.isr_change_to_propose(now_ms(), any).map(|c| c.isr),
        Some(vec![1, 2, 3])
    );
}

/// Leader 1 with ISR {1}; 2 has caught up and the change adding it is pending.
fn adding_2(s: &Setup) -> (Arc<Partition>, PendingIsr) {
    let p = s.apply(part(1, 0, &[1, 2], &[1]));
    s.produce(&[1, 2, 3, 4, 5]);
    assert_eq!(hw(&p), 5);
    fetch(&p, 1, 2, 5).expect("fetch");
    let change = p.isr_change_to_propose(now_ms(), any).expect("2 caught up");
    assert_eq!(change.isr, vec![1, 2]);
    (p, change)
}

#[test]
fn an_isr_change_whose_answer_is_lost_still_counts_for_the_high_watermark() {
    let s = Setup::new(1);
    let (p, change) = adding_2(&s);
    // The request times out: the controller may have committed it.
    assert_eq!(
        p.isr_change_answered(change.id, AlterIsrAnswer::Unanswered),
        AfterAnswer::Retry
    );
    s.produce(&[6, 7]);
    assert_eq!(
        hw(&p),
        5,
        "2 may be in the ISR: the high watermark waits for it"
    );
    assert_eq!(
        p.isr_change_to_propose(now_ms(), any),
        None,
        "still pending"
    );
    // A retry is refused for the old partition epoch: its first send committed.
    assert_eq!(
        p.isr_change_answered(
            change.id,
            AlterIsrAnswer::Refused(ControllerError::InvalidUpdateVersion("9".into()))
        ),
        AfterAnswer::AwaitImage
    );
    assert_eq!(hw(&p), 5);
    fetch(&p, 1, 2, 7).expect("fetch");
    assert_eq!(hw(&p), 7);
    // The image shows it: settled.
    let mut committed = part(1, 0, &[1, 2], &[1, 2]);
    committed.partition_epoch = 1;
    s.apply(committed);
    assert_eq!(p.replica().pending_isr, None);
}

#[test]
fn an_isr_change_the_controller_did_not_make_is_forgotten() {
    let s = Setup::new(1);
    let (p, change) = adding_2(&s);
    assert_eq!(
        p.isr_change_answered(
            change.id,
            AlterIsrAnswer::Refused(ControllerError::IneligibleReplica("3".into()))
        ),
        AfterAnswer::Revert,
        "INELIGIBLE_REPLICA"
    );
    assert_eq!(p.replica().pending_isr, None);
    s.produce(&[6, 7]);
    assert_eq!(hw(&p), 7, "2 is not in the ISR");
}

#[test]
fn a_late_answer_to_an_older_isr_change_leaves_the_newer_one_pending() {
    let s = Setup::new(1);
    let (p, first) = adding_2(&s);
    // The first change commits and the image shows it before its answer arrives.
    let mut committed = part(1, 0, &[1, 2], &[1, 2]);
    committed.partition_epoch = 1;
    s.apply(committed);
    // A newer change: shrinking back to {1} once 2 lags (as if 40 s passed without a fetch).
    let second = p
        .isr_change_to_propose(now_ms() + 40_000, any)
        .expect("2 lags");
    assert_eq!(second.isr, vec![1]);
    assert_eq!(
        p.isr_change_answered(first.id, AlterIsrAnswer::Unanswered),
        AfterAnswer::Ignore
    );
    assert_eq!(p.replica().pending_isr, Some(second));
}

#[test]
fn the_high_watermark_waits_for_isr_followers_a_new_leader_has_not_heard_from() {
    let s = Setup::new(1);
    let p = s.apply(part(1, 0, &[1, 2], &[1, 2]));
    s.produce(&[1, 2, 3]);
    fetch(&p, 1, 2, 3).expect("fetch");
    assert_eq!(hw(&p), 3);
    s.apply(part(2, 1, &[1, 2], &[1, 2]));
    let p = s.apply(part(1, 2, &[1, 2], &[1, 2]));
    s.produce(&[4, 5]);
    assert_eq!(hw(&p), 3, "2 has not fetched from this leadership");
    fetch(&p, 1, 2, 4).expect("fetch");
    assert_eq!(hw(&p), 4);
}

#[test]
fn a_fetch_is_a_followers_only_from_a_replica_with_its_current_broker_epoch() {
    let s = Setup::new(1);
    let p = s.apply(part(1, 0, &[1, 2], &[1]));
    s.produce(&[1, 2, 3]);
    let at = |replica, broker_epoch| FollowerFetch {
        replica,
        broker_epoch,
        fetch_offset: Offset(3),
        log_start_offset: Offset(0),
        current_leader_epoch: -1,
    };
    let registered = Some(broker(2).epoch);
    // A client claiming to be replica 2 with an older fetch version carries no epoch.
    for refused in [
        at(2, -1),
        at(2, broker(2).epoch - 1),
        at(3, broker(3).epoch),
    ] {
        assert!(
            matches!(
                p.on_follower_fetch(1, &refused, registered, now_ms()),
                Err(BrokerError::NotLeaderOrFollower)
            ),
            "{refused:?}"
        );
    }
    assert_eq!(
        p.replica().followers.and_then(|t| t.log_end_offset(2)),
        None
    );
    // A newer epoch than the image's is taken (the image lags), but joins the ISR only once
    // the image shows it.
    p.on_follower_fetch(1, &at(2, broker(2).epoch + 1), registered, now_ms())
        .expect("follower");
    let image_says = |_: i32, fetched: Option<i64>| isr::broker_epoch_eligible(fetched, registered);
    assert_eq!(p.isr_change_to_propose(now_ms(), image_says), None);
    p.on_follower_fetch(1, &at(2, broker(2).epoch), registered, now_ms())
        .expect("follower");
    assert_eq!(
        p.isr_change_to_propose(now_ms(), image_says).map(|c| c.isr),
        Some(vec![1, 2])
    );
}

#[test]
fn list_offsets_finds_nothing_at_or_above_the_high_watermark() {
    let s = Setup::new(1);
    let p = s.apply(part(1, 0, &[1, 2], &[1, 2]));
    s.produce(&[100, 200, 300]);
    fetch(&p, 1, 2, 1).expect("fetch");
    assert_eq!(hw(&p), 1);
    let find = |q| p.offset_for(1, -1, q, false).expect("lookup");
    assert_eq!(find(OffsetQuery::Timestamp(50)).offset, Offset(0));
    assert_eq!(find(OffsetQuery::Latest).offset, Offset(1));
    let none = (-1, Offset(-1));
    let found = find(OffsetQuery::Timestamp(150));
    assert_eq!(
        (found.timestamp, found.offset),
        none,
        "offset 1 is not committed"
    );
    let found = find(OffsetQuery::MaxTimestamp);
    assert_eq!(
        (found.timestamp, found.offset),
        none,
        "offset 2 is not committed"
    );
}

#[test]
fn list_offsets_is_not_available_while_the_high_watermark_is_below_the_epoch_start() {
    let s = Setup::new(1);
    let p = s.apply(part(1, 0, &[1, 2], &[1, 2]));
    s.produce(&[100, 200, 300]);
    fetch(&p, 1, 2, 1).expect("fetch");
    // Re-elected at a new epoch, which starts at 3 while the high watermark is 1.
    let p = s.apply(part(1, 1, &[1, 2], &[1, 2]));
    assert_eq!(hw(&p), 1);
    let code = |q| {
        p.offset_for(1, -1, q, false)
            .map_err(|e| error_map::code(&e))
    };
    assert_eq!(code(OffsetQuery::Latest), Err(78), "OFFSET_NOT_AVAILABLE");
    assert_eq!(code(OffsetQuery::Timestamp(300)), Err(78));
    assert_eq!(
        code(OffsetQuery::Timestamp(50)).map(|f| f.offset),
        Ok(Offset(0))
    );
    assert_eq!(code(OffsetQuery::Earliest).map(|f| f.offset), Ok(Offset(0)));
}

#[test]
fn list_offsets_answers_the_latest_offset_with_the_current_leader_epoch() {
    let s = Setup::new(1);
    let p = s.apply(part(1, 0, &[1, 2], &[1, 2]));
    s.produce(&[100, 200]);
    fetch(&p, 1, 2, 2).expect("fetch");
    // Re-elected at epoch 3 with nothing written in it yet; the follower has everything.
    let p = s.apply(part(1, 3, &[1, 2], &[1, 2]));
    fetch(&p, 1, 2, 2).expect("fetch");
    let find = |q| p.offset_for(1, -1, q, false).expect("lookup");
    let latest = find(OffsetQuery::Latest);
    assert_eq!(
        (latest.offset, latest.leader_epoch),
        (Offset(2), LeaderEpoch(3))
    );
    let earliest = find(OffsetQuery::Earliest);
    assert_eq!(
        (earliest.offset, earliest.leader_epoch),
        (Offset(0), LeaderEpoch(0)),
        "the record's own epoch"
    );
}

#[test]
fn a_partition_being_reassigned_is_under_replicated_only_below_its_original_size() {
    let s = Setup::new(1);
    let mut moving = part(1, 0, &[1, 2, 3], &[1, 2]);
    moving.adding = vec![3];
    s.apply(moving);
    assert_eq!(s.rm.under_replicated_count(), 0, "3 is being added");
    let mut shrunk = part(1, 1, &[1, 2, 3], &[1]);
    shrunk.adding = vec![3];
    s.apply(shrunk);
    assert_eq!(s.rm.under_replicated_count(), 1);
    s.apply(part(2, 2, &[1, 2, 3], &[2]));
    assert_eq!(s.rm.under_replicated_count(), 0, "led elsewhere");
}

#[test]
fn a_client_claiming_a_replica_id_does_not_move_the_high_watermark() {
    let s = Setup::new(1);
    let p = s.apply(part(1, 0, &[1, 2], &[1, 2]));
    s.produce(&[1, 2]);
    // What the fetch handler passes for a Fetch below v15 with replica_id 2: no broker epoch.
    let claim = FollowerFetch {
        replica: 2,
        broker_epoch: -1,
        fetch_offset: Offset(2),
        log_start_offset: Offset(0),
        current_leader_epoch: -1,
    };
    assert!(matches!(
        p.on_follower_fetch(1, &claim, Some(broker(2).epoch), now_ms()),
        Err(BrokerError::NotLeaderOrFollower)
    ));
    assert_eq!(hw(&p), 0, "broker 2 has nothing yet");
}

/// A request waiting on a partition (DeleteRecords here) is woken by the follower fetch that
/// completes it, not by a timer: the clock is paused, so only the wake-up can end the wait.
#[tokio::test(start_paused = true)]
async fn a_delayed_request_completes_on_the_follower_fetch_that_moves_the_low_watermark() {
    let s = Setup::new(1);
    let p = s.apply(part(1, 0, &[1, 2], &[1, 2]));
    s.produce(&[1, 2, 3]);
    fetch(&p, 1, 2, 3).expect("fetch");
    p.log.delete_records_before(Offset(2)).expect("delete");
    let waiting = {
        let p = Arc::clone(&p);
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
            crate::delayed::wait_on(std::slice::from_ref(&p), deadline, || {
                let low = p.low_watermark(1, |_| true).expect("leads");
                (low >= Offset(2)).then_some(low)
            })
            .await
        })
    };
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished(), "the follower still starts at 0");
    // The follower reports its new log start.
    let moved = FollowerFetch {
        replica: 2,
        broker_epoch: broker(2).epoch,
        fetch_offset: Offset(3),
        log_start_offset: Offset(2),
        current_leader_epoch: -1,
    };
    let woken_at = tokio::time::Instant::now();
    p.on_follower_fetch(1, &moved, Some(broker(2).epoch), now_ms())
        .expect("follower");
    assert_eq!(waiting.await.expect("task"), Some(Offset(2)));
    assert_eq!(
        woken_at.elapsed(),
        Duration::ZERO,
        "woken by the fetch, not found at the deadline"
    );
}

/// With nothing to wait on, a delayed request waits out its deadline and is checked once more.
#[tokio::test(start_paused = true)]
async fn a_delayed_request_on_no_partition_waits_out_its_deadline() {
    let started = tokio::time::Instant::now();
    let mut checks = 0;
    let done = crate::delayed::wait_on(&[], started + Duration::from_millis(500), || {
        checks += 1;
        None::<()>
    })
    .await;
    assert_eq!(done, None);
    assert_eq!(checks, 2, "once at the start, once at the deadline");
    assert_eq!(started.elapsed(), Duration::from_millis(500));
}

#[test]
fn a_disk_failure_takes_its_directory_offline_and_fails_the_logs_in_it() {
    let s = Setup::new(1);
    let p = s.apply(part(1, 0, &[1], &[1]));
    s.produce(&[1, 2]);
    let tp = TopicPartition::new(TOPIC, 0);
    let signal = s.rm.log_dir_health().offline_signal();
    let full = StorageError::Io {
        path: p.log.dir().join("00000000000000000000.log"),
        source: std::io::Error::from_raw_os_error(28),
    };
    s.rm.storage_error(&full);
    assert!(
        !*signal.borrow(),
        "a full disk is cured by space, not a restart"
    );
    assert!(s.rm.partition(&tp).is_ok());

    let media = StorageError::Io {
        path: p.log.dir().join("00000000000000000000.log"),
        source: std::io::Error::from_raw_os_error(5),
    };
    s.rm.storage_error(&media);
    assert!(*signal.borrow(), "the server is told to stop");
    let refused = s.rm.partition(&tp).map(|_| ()).unwrap_err();
    assert_eq!(
        error_map::code(&refused),
        ResponseError::KafkaStorageError.code()
    );
    let append = s.rm.append(
        &tp,
        &BatchBuilder::new().record(None, Some(b"v"), 3).build(),
        AppendOrigin::Client,
        false,
    );
    assert_eq!(
        append.map(|_| ()).map_err(|e| error_map::code(&e)),
        Err(ResponseError::KafkaStorageError.code())
    );
    assert_eq!(p.log.offsets().log_end, Offset(2), "nothing appended");
    assert!(
        s.rm.close().is_err(),
        "a failed log does not close cleanly: the next start recovers it"
    );
}
