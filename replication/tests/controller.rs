//! The controller's rules over the metadata image, without a network: placement, fencing and
//! clean or unclean election, ISR changes, controlled shutdown, preferred leaders.

mod common;

use std::collections::BTreeMap;

use common::{apply_all, check_invariants, cluster, topic};
use sluice_replication::controller::{self, ControllerError, TopicShape};
use sluice_replication::image::{MetadataImage, Partition, NO_LEADER};
use sluice_replication::record::MetadataRecord;
use sluice_storage::LeaderEpoch;
use uuid::Uuid;

#[test]
fn a_fenced_leader_is_replaced_from_the_isr_with_a_new_epoch() {
    let mut image = cluster(3);
    let t = topic(&mut image, "orders", 6, 3, false);
    let led_by_1: Vec<usize> = image.topics[&t]
        .partitions
        .iter()
        .enumerate()
        .filter(|(_, p)| p.leader == 1)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(led_by_1.len(), 2, "leaders balance over three brokers");
    let before = image.topics[&t].partitions.clone();

    let records = controller::fence_broker(&image, 1).unwrap();
    apply!(image, records);
    check_invariants(&image);
    for (i, p) in image.topics[&t].partitions.iter().enumerate() {
        assert!(!p.isr.contains(&1), "fenced broker left every ISR: {p:?}");
        assert!(p.partition_epoch > before[i].partition_epoch);
        if led_by_1.contains(&i) {
            assert_ne!(p.leader, 1);
            assert_eq!(p.leader_epoch.0, before[i].leader_epoch.0 + 1);
        } else {
            assert_eq!(p.leader, before[i].leader);
            assert_eq!(
                p.leader_epoch, before[i].leader_epoch,
                "an ISR change keeps the leader epoch"
            );
        }
    }
}

#[test]
fn with_every_replica_gone_a_partition_waits_offline_for_its_last_in_sync_replica() {
    let mut image = cluster(3);
    let t = topic(&mut image, "t", 1, 2, false);
    let replicas = image.topics[&t].partitions[0].replicas.clone();
    let (first, second) = (replicas[0], replicas[1]);
    apply!(image, controller::fence_broker(&image, first).unwrap());
    assert_eq!(image.topics[&t].partitions[0].leader, second);
    apply!(image, controller::fence_broker(&image, second).unwrap(),);
    let p = &image.topics[&t].partitions[0];
    assert_eq!(
        (p.leader, p.isr.clone()),
        (NO_LEADER, vec![second]),
        "offline, last ISR kept"
    );

    // The first replica returns: it was not in sync, so it may not lead (no unclean election).
    let epoch = 2;
    apply!(
        image,
        vec![MetadataRecord::RegisterBroker {
            id: first,
            epoch,
            endpoints: Vec::new(),
            rack: None,
            incarnation: None,
        }],
    );
    apply!(
        image,
        controller::unfence_broker(&image, first, epoch).unwrap(),
    );
    assert_eq!(image.topics[&t].partitions[0].leader, NO_LEADER);
    // The last in-sync replica returns and leads again, with a new leader epoch.
    apply!(
        image,
        vec![MetadataRecord::RegisterBroker {
            id: second,
            epoch,
            endpoints: Vec::new(),
            rack: None,
            incarnation: None,
        }],
    );
    apply!(
        image,
        controller::unfence_broker(&image, second, epoch).unwrap(),
    );
    let p = &image.topics[&t].partitions[0];
    assert_eq!(p.leader, second);
    assert_eq!(p.leader_epoch.0, 3);
    check_invariants(&image);
}

/// Partition 0 of `t`: its ISR shrinks to the leader alone, then the leader is lost (fenced).
/// Returns the partition as it was before.
fn lose_the_sole_in_sync_leader(image: &mut MetadataImage, t: Uuid) -> Partition {
    let p = image.topics[&t].partitions[0].clone();
    let records = controller::alter_isr(
        image,
        p.leader,
        t,
        0,
        p.leader_epoch,
        p.partition_epoch,
        &[p.leader],
    )
    .unwrap();
    apply_all(image, records);
    let fenced = controller::fence_broker(image, p.leader).unwrap();
    apply_all(image, fenced);
    p
}

#[test]
fn unclean_election_only_where_the_topic_allows_it() {
    for unclean in [false, true] {
        let mut image = cluster(3);
        let t = topic(&mut image, "u", 1, 3, unclean);
        let p = lose_the_sole_in_sync_leader(&mut image, t);
        let after = &image.topics[&t].partitions[0];
        if unclean {
            assert_ne!(after.leader, NO_LEADER);
            assert_eq!(after.isr, vec![after.leader]);
        } else {
            assert_eq!(after.leader, NO_LEADER);
            assert_eq!(after.isr, vec![p.leader]);
        }
        check_invariants(&image);
    }
}

#[test]
fn an_unclean_election_on_request_gives_an_offline_partition_a_live_replica() {
    let mut image = cluster(3);
    let t = topic(&mut image, "u", 2, 3, false);
    assert!(
        controller::elect_unclean(&image).is_empty(),
        "partitions with a leader need no election"
    );
    let p = lose_the_sole_in_sync_leader(&mut image, t);
    let offline = image.topics[&t].partitions[0].clone();
    assert_eq!(offline.leader, NO_LEADER, "no live in-sync replica");

    apply!(image, controller::elect_unclean(&image));
    let after = &image.topics[&t].partitions[0];
    let expected = p.replicas.iter().copied().find(|r| *r != p.leader).unwrap();
    assert_eq!(
        (after.leader, after.isr.clone()),
        (expected, vec![expected])
    );
    assert!(after.leader_epoch > offline.leader_epoch);
    check_invariants(&image);

    // With every replica gone there is no one to elect.
    let mut image = cluster(1);
    let t = topic(&mut image, "v", 1, 1, false);
    apply!(image, controller::fence_broker(&image, 1).unwrap());
    assert_eq!(image.topics[&t].partitions[0].leader, NO_LEADER);
    assert!(controller::elect_unclean(&image).is_empty());
}

#[test]
fn isr_changes_come_only_from_the_current_leader_at_the_current_epochs() {
    let mut image = cluster(3);
    let t = topic(&mut image, "isr", 1, 3, false);
    let p = image.topics[&t].partitions[0].clone();
    let follower = p.replicas[1];
    let shrunk: Vec<i32> = p.isr.iter().copied().filter(|r| *r != follower).collect();
    let err = |r: Result<Vec<MetadataRecord>, controller::ControllerError>| r.unwrap_err();
    let alter = |image: &MetadataImage, leader, le, pe, isr: &[i32]| {
        controller::alter_isr(image, leader, t, 0, LeaderEpoch(le), pe, isr)
    };

    assert!(matches!(
        err(alter(
            &image,
            follower,
            p.leader_epoch.0,
            p.partition_epoch,
            &shrunk
        )),
        ControllerError::NotLeader(_)
    ));
    assert!(matches!(
        err(alter(
            &image,
            p.leader,
            p.leader_epoch.0 - 1,
            p.partition_epoch,
            &shrunk
        )),
        ControllerError::FencedLeaderEpoch(_)
    ));
    assert!(matches!(
        err(alter(
            &image,
            p.leader,
            p.leader_epoch.0,
            p.partition_epoch + 1,
            &shrunk
        )),
        ControllerError::InvalidUpdateVersion(_)
    ));
    assert!(
        matches!(
            err(alter(
                &image,
                p.leader,
                p.leader_epoch.0,
                p.partition_epoch,
                &[follower]
            )),
            ControllerError::IneligibleReplica(_)
        ),
        "the leader must stay in its ISR"
    );
    apply!(
        image,
        alter(
            &image,
            p.leader,
            p.leader_epoch.0,
            p.partition_epoch,
            &shrunk
        )
        .unwrap(),
    );
    let q = image.topics[&t].partitions[0].clone();
    assert_eq!(
        (q.isr.clone(), q.leader_epoch),
        (shrunk.clone(), p.leader_epoch)
    );
    assert_eq!(q.partition_epoch, p.partition_epoch + 1);

    // A fenced replica cannot rejoin; a live one can.
    apply!(image, controller::fence_broker(&image, follower).unwrap(),);
    let q = image.topics[&t].partitions[0].clone();
    assert!(matches!(
        err(alter(
            &image,
            q.leader,
            q.leader_epoch.0,
            q.partition_epoch,
            &p.isr
        )),
        ControllerError::IneligibleReplica(_)
    ));
    apply!(
        image,
        controller::unfence_broker(&image, follower, 1).unwrap(),
    );
    let q = image.topics[&t].partitions[0].clone();
    apply!(
        image,
        alter(
            &image,
            q.leader,
            q.leader_epoch.0,
            q.partition_epoch,
            &p.isr
        )
        .unwrap(),
    );
    assert_eq!(image.topics[&t].partitions[0].isr, p.isr);
}

#[test]
fn controlled_shutdown_moves_leaders_away_and_preferred_election_brings_them_back() {
    let mut image = cluster(3);
    let t = topic(&mut image, "s", 6, 3, false);
    let single = topic(&mut image, "single", 3, 1, false);
    apply!(image, controller::begin_shutdown(&image, 2, 1).unwrap(),);
    for p in &image.topics[&t].partitions {
        assert_ne!(p.leader, 2, "{p:?}");
        assert!(!p.isr.contains(&2), "it leaves every ISR at once: {p:?}");
    }
    for p in image.topics[&single].partitions.iter() {
        if p.replicas == [2] {
            assert_eq!(p.leader, NO_LEADER, "no other replica may lead: offline");
            assert_eq!(p.isr, vec![2], "its last in-sync replica is remembered");
        }
    }
    assert!(controller::leads_nothing(&image, 2));
    // New topics avoid a broker that is shutting down.
    let records = controller::create_topic(
        &image,
        Uuid::new_v4(),
        "new",
        TopicShape::placed(3, 3),
        BTreeMap::new(),
        0,
    );
    assert!(matches!(
        records.unwrap_err(),
        ControllerError::InvalidReplicationFactor(_)
    ));

    // Leading nothing, it is fenced at once; its next incarnation registers and catches up,
    // and takes back the partitions only it had.
    apply!(image, controller::finish_shutdown(&image, 2, 1).unwrap());
    assert!(image.brokers[&2].fenced);
    let reg = controller::register_broker(&image, 2, None, Vec::new(), None, false).unwrap();
    assert_eq!(reg.epoch, 2);
    apply!(image, reg.records);
    apply!(image, controller::unfence_broker(&image, 2, 2).unwrap());
    for p in image.topics[&single].partitions.iter() {
        assert_ne!(p.leader, NO_LEADER, "{p:?}");
    }
    // Back in the ISRs (as the leaders would propose once it caught up).
    let t_id = t;
    for i in 0..6 {
        let p = image.topics[&t_id].partitions[i].clone();
        let mut isr = p.isr.clone();
        isr.push(2);
        apply!(
            image,
            controller::alter_isr(
                &image,
                p.leader,
                t_id,
                i as i32,
                p.leader_epoch,
                p.partition_epoch,
                &isr
            )
            .unwrap(),
        );
    }
    // Broker 2 prefers 2 of the 6 partitions and leads none: beyond any threshold below 100%.
    assert!(controller::rebalance_leaders(&image, 100).is_empty());
    let rebalance = controller::rebalance_leaders(&image, 10);
    assert!(!rebalance.is_empty());
    apply!(image, rebalance);
    assert!(
        controller::rebalance_leaders(&image, 0).is_empty(),
        "balanced now"
    );
    apply!(image, controller::elect_preferred(&image));
    for p in &image.topics[&t].partitions {
        assert_eq!(p.leader, p.replicas[0]);
    }
    assert!(controller::elect_preferred(&image).is_empty());
}

#[test]
fn records_that_do_not_fit_change_nothing() {
    let mut image = cluster(2);
    let t = topic(&mut image, "x", 1, 2, false);
    let before = image.clone();
    let stale = MetadataRecord::RegisterBroker {
        id: 1,
        epoch: 1,
        endpoints: Vec::new(),
        rack: None,
        incarnation: None,
    };
    assert!(image.apply(&stale).is_err());
    let dup = MetadataRecord::CreateTopic {
        id: Uuid::new_v4(),
        name: "x".into(),
        configs: BTreeMap::new(),
        assignments: vec![vec![1]],
    };
    assert!(image.apply(&dup).is_err());
    let bad = MetadataRecord::ChangePartition(sluice_replication::record::PartitionChange {
        topic: t,
        partition: 0,
        leader: Some(7),
        ..Default::default()
    });
    assert!(image.apply(&bad).is_err(), "leader outside the ISR");
    assert_eq!(image, before);
    assert!(matches!(
        controller::create_topic(
            &image,
            Uuid::new_v4(),
            "x",
            TopicShape::placed(1, 1),
            BTreeMap::new(),
            0
        )
        .unwrap_err(),
        ControllerError::TopicAlreadyExists(_)
    ));
    assert!(matches!(
        controller::create_partitions(&image, "x", 1, None, 0).unwrap_err(),
        ControllerError::InvalidPartitions(_)
    ));
    apply!(
        image,
        controller::create_partitions(&image, "x", 4, None, 0).unwrap(),
    );
    assert_eq!(image.topics[&t].partitions.len(), 4);
}

#[test]
fn random_failures_and_returns_keep_every_invariant() {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut image = cluster(5);
    let a = topic(&mut image, "a", 10, 3, false);
    let b = topic(&mut image, "b", 10, 2, true);
    let mut epochs: BTreeMap<i32, i64> = (1..=5).map(|id| (id, 1)).collect();
    let mut last_epochs: BTreeMap<(Uuid, usize), i32> = BTreeMap::new();
    for _ in 0..2000 {
        let id = next(5) as i32 + 1;
        let records = if image.is_live(id) {
            controller::fence_broker(&image, id).unwrap()
        } else {
            // A restart: a new incarnation registers (fenced), then catches up.
            let epoch = epochs[&id] + 1;
            epochs.insert(id, epoch);
            let mut r = vec![MetadataRecord::RegisterBroker {
                id,
                epoch,
                endpoints: Vec::new(),
                rack: None,
                incarnation: None,
            }];
            let mut after = image.clone();
            after.apply(&r[0]).unwrap();
            r.extend(controller::unfence_broker(&after, id, epoch).unwrap());
            r
        };
        apply!(image, records);
        check_invariants(&image);
        for t in [a, b] {
            for (i, p) in image.topics[&t].partitions.iter().enumerate() {
                let last = last_epochs.entry((t, i)).or_insert(p.leader_epoch.0);
                assert!(p.leader_epoch.0 >= *last, "leader epochs never go back");
                *last = p.leader_epoch.0;
            }
        }
    }
}

#[test]
fn a_reassignment_adds_replicas_then_drops_the_old_ones_once_the_new_are_in_sync() {
    let mut image = cluster(4);
    let t = topic(&mut image, "moving", 1, 2, false);
    let p = image.topics[&t].partitions[0].clone();
    let target: Vec<i32> = (1..=4).filter(|b| !p.replicas.contains(b)).collect();
    apply!(
        image,
        controller::alter_reassignment(&image, "moving", 0, Some(&target)).unwrap(),
    );
    let during = image.topics[&t].partitions[0].clone();
    assert_eq!(during.adding, target);
    assert_eq!(during.removing, p.replicas);
    assert_eq!(
        during.leader, p.leader,
        "the old leader leads until the move completes"
    );
    assert!(
        controller::complete_reassignments(&image).is_empty(),
        "new replicas not in sync"
    );
    // The new replicas catch up and the leader adds them to the ISR.
    let mut isr = during.isr.clone();
    isr.extend(&target);
    apply!(
        image,
        controller::alter_isr(
            &image,
            during.leader,
            t,
            0,
            during.leader_epoch,
            during.partition_epoch,
            &isr
        )
        .unwrap(),
    );
    apply!(image, controller::complete_reassignments(&image));
    let after = image.topics[&t].partitions[0].clone();
    assert_eq!(after.replicas, target);
    assert!(after.adding.is_empty() && after.removing.is_empty());
    assert!(target.contains(&after.leader) && after.leader_epoch > p.leader_epoch);
    assert!(after.isr.iter().all(|r| target.contains(r)));
    // Nothing in progress: cancelling is refused; bad targets too.
    let e = controller::alter_reassignment(&image, "moving", 0, None).unwrap_err();
    assert!(matches!(e, ControllerError::NoReassignmentInProgress(_)));
    let e = controller::alter_reassignment(&image, "moving", 0, Some(&[1, 1])).unwrap_err();
    assert!(matches!(e, ControllerError::InvalidReplicaAssignment(_)));
    let e = controller::alter_reassignment(&image, "moving", 0, Some(&[9])).unwrap_err();
    assert!(matches!(e, ControllerError::InvalidReplicaAssignment(_)));
}

#[test]
fn a_cancelled_reassignment_returns_to_the_original_replicas() {
    let mut image = cluster(3);
    let t = topic(&mut image, "back", 1, 1, false);
    let p = image.topics[&t].partitions[0].clone();
    let other = (1..=3).find(|b| !p.replicas.contains(b)).unwrap();
    apply!(
        image,
        controller::alter_reassignment(&image, "back", 0, Some(&[other])).unwrap(),
    );
    assert_eq!(image.topics[&t].partitions[0].adding, vec![other]);
    apply!(
        image,
        controller::alter_reassignment(&image, "back", 0, None).unwrap(),
    );
    let after = image.topics[&t].partitions[0].clone();
    assert_eq!(
        (after.replicas, after.leader),
        (p.replicas.clone(), p.leader)
    );
    assert!(after.adding.is_empty() && after.removing.is_empty());
}

fn manual(assignments: &[(i32, &[i32])]) -> TopicShape {
    TopicShape {
        partitions: -1,
        replication_factor: -1,
        assignments: assignments.iter().map(|(p, r)| (*p, r.to_vec())).collect(),
    }
}

fn refusal(image: &MetadataImage, shape: TopicShape) -> ControllerError {
    controller::create_topic(image, Uuid::new_v4(), "m", shape, BTreeMap::new(), 0).unwrap_err()
}

#[test]
fn a_manual_assignment_is_honoured_with_fenced_replicas_left_out_of_isr_and_leadership() {
    let mut image = cluster(3);
    apply_all(
        &mut image,
        vec![MetadataRecord::FenceBroker { id: 2, epoch: 1 }],
    );
    let records = controller::create_topic(
        &image,
        Uuid::new_v4(),
        "m",
        manual(&[(1, &[3, 1]), (0, &[2, 3])]),
        BTreeMap::new(),
        0,
    )
    .expect("created");
    apply_all(&mut image, records);
    check_invariants(&image);
    let t = image.topic_by_name("m").expect("topic");
    let got: Vec<(Vec<i32>, Vec<i32>, i32)> = t
        .partitions
        .iter()
        .map(|p| (p.replicas.clone(), p.isr.clone(), p.leader))
        .collect();
    assert_eq!(
        got,
        vec![(vec![2, 3], vec![3], 3), (vec![3, 1], vec![3, 1], 3)],
        "replicas exactly as assigned, by partition index; the fenced 2 neither leads nor is in sync"
    );
    let records =
        controller::create_partitions(&image, "m", 3, Some(&[vec![2, 1]]), 0).expect("grown");
    apply_all(&mut image, records);
    check_invariants(&image);
    let p = &image.topic_by_name("m").expect("topic").partitions[2];
    assert_eq!(
        (p.replicas.clone(), p.isr.clone(), p.leader),
        (vec![2, 1], vec![1], 1)
    );
}

#[test]
fn a_manual_assignment_is_refused_with_kafkas_errors() {
    let mut image = cluster(3);
    let invalid_request = |e: ControllerError, what: &str| match e {
        ControllerError::InvalidRequest(m) => assert!(m.contains(what), "{m}"),
        other => panic!("{other:?}"),
    };
    let invalid_assignment = |e: ControllerError, what: &str| match e {
        ControllerError::InvalidReplicaAssignment(m) => assert!(m.contains(what), "{m}"),
        other => panic!("{other:?}"),
    };
    let mut shape = manual(&[(0, &[1])]);
    shape.replication_factor = 1;
    invalid_request(
        refusal(&image, shape),
        "replication factor was not set to -1",
    );
    let mut shape = manual(&[(0, &[1])]);
    shape.partitions = 1;
    invalid_request(refusal(&image, shape), "numPartitions was not set to -1");
    invalid_assignment(
        refusal(&image, manual(&[(0, &[1]), (0, &[2])])),
        "multiple manual partition assignments for partition 0",
    );
    invalid_assignment(refusal(&image, manual(&[(0, &[])])), "empty replica list");
    invalid_assignment(
        refusal(&image, manual(&[(0, &[1, 9])])),
        "broker 9, but no such broker is registered",
    );
    invalid_assignment(
        refusal(&image, manual(&[(0, &[2, 1, 2])])),
        "the broker 2 more than once",
    );
    invalid_assignment(
        refusal(&image, manual(&[(0, &[1, 2]), (1, &[3])])),
        "a partition with 1 replica(s), but this is not consistent with previous partitions, which have 2",
    );
    invalid_assignment(
        refusal(&image, manual(&[(0, &[1]), (2, &[2])])),
        "consecutive 0-based integer sequence",
    );
    apply_all(
        &mut image,
        vec![MetadataRecord::FenceBroker { id: 3, epoch: 1 }],
    );
    invalid_assignment(
        refusal(&image, manual(&[(0, &[1]), (1, &[3])])),
        "partition 1 are fenced or in controlled shutdown",
    );
    assert!(image.topic_by_name("m").is_none(), "nothing created");

    topic(&mut image, "x", 2, 2, false);
    let grow = |total, assignments: &[Vec<i32>]| {
        controller::create_partitions(&image, "x", total, Some(assignments), 0).unwrap_err()
    };
    invalid_assignment(
        grow(4, &[vec![1, 2]]),
        "Attempted to add 2 additional partition(s), but only 1 assignment(s) were specified.",
    );
    invalid_assignment(grow(3, &[vec![1]]), "which have 2 replica(s)");
    invalid_assignment(grow(3, &[vec![3, 3]]), "more than once");
}
