//! Sequences a review of the controller found unsafe, each driven over the metadata image:
//! a broker re-registering while it led, a controlled shutdown that kept the broker in its
//! ISRs, decisions applied over a state that had moved on, offline partitions that never
//! got the unclean leader their topic allowed.

mod common;

use common::{check_invariants, cluster, leader_alters_isr, topic};
use sluice_replication::controller::{self, ControllerError};
use sluice_replication::image::{MetadataImage, NO_LEADER};
use sluice_replication::record::{MetadataRecord, PartitionChange};
use uuid::Uuid;

/// Every partition that has a live in-sync replica has a leader.
fn every_partition_with_a_live_isr_member_leads(image: &MetadataImage) {
    for t in image.topics.values() {
        for p in &t.partitions {
            if p.isr.iter().any(|r| image.is_live(*r)) {
                assert_ne!(p.leader, NO_LEADER, "{p:?}");
            }
        }
    }
}

fn led_by(image: &MetadataImage, id: i32) -> usize {
    image
        .topics
        .values()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.leader == id)
        .count()
}

#[test]
fn another_process_cannot_take_a_broker_id_whose_session_is_valid() {
    let image = cluster(3);
    let me = Some(Uuid::new_v4());
    let mut with_incarnation = image.clone();
    apply!(
        with_incarnation,
        controller::register_broker(&image, 1, me, Vec::new(), None, false)
            .unwrap()
            .records,
    );
    let epoch = with_incarnation.brokers[&1].epoch;
    let other = controller::register_broker(
        &with_incarnation,
        1,
        Some(Uuid::new_v4()),
        Vec::new(),
        None,
        true,
    );
    assert!(matches!(
        other.unwrap_err(),
        ControllerError::DuplicateBrokerRegistration(_)
    ));
    let anonymous = controller::register_broker(&with_incarnation, 1, None, Vec::new(), None, true);
    assert!(matches!(
        anonymous.unwrap_err(),
        ControllerError::DuplicateBrokerRegistration(_)
    ));
    let retried =
        controller::register_broker(&with_incarnation, 1, me, Vec::new(), None, true).unwrap();
    assert_eq!(
        retried.epoch, epoch,
        "the same process retrying keeps its epoch"
    );
    assert!(retried.records.is_empty());
    let after_session =
        controller::register_broker(&with_incarnation, 1, None, Vec::new(), None, false).unwrap();
    assert_eq!(after_session.epoch, epoch + 1);
}

#[test]
fn a_new_incarnation_gives_up_its_predecessors_leaderships_and_isr_places() {
    let mut image = cluster(3);
    let t = topic(&mut image, "t", 6, 3, false);
    assert_eq!(led_by(&image, 1), 2);
    // Broker 1 restarts within its session (its lease has not run out yet, so it was never
    // fenced) and registers again once that session ended.
    let reg = controller::register_broker(&image, 1, None, Vec::new(), None, false).unwrap();
    apply!(image, reg.records);
    assert!(image.brokers[&1].fenced, "a new incarnation starts fenced");
    assert_eq!(led_by(&image, 1), 0, "a fenced broker leads nothing");
    for p in &image.topics[&t].partitions {
        assert!(!p.isr.contains(&1), "{p:?}");
    }
    check_invariants(&image);
    every_partition_with_a_live_isr_member_leads(&image);
}

#[test]
fn a_fenced_broker_left_leading_by_an_unfinished_decision_is_moved_by_the_next_check() {
    // What an older controller left: the registration record alone, so the new incarnation
    // is fenced yet leads. If it dies again before unfencing, its lease is not what moves
    // its partitions: the check finishes the fence.
    let mut image = cluster(3);
    topic(&mut image, "t", 6, 3, false);
    image
        .apply(&MetadataRecord::RegisterBroker {
            id: 1,
            epoch: 2,
            endpoints: Vec::new(),
            rack: None,
            incarnation: None,
        })
        .unwrap();
    assert_eq!(led_by(&image, 1), 2);
    assert_eq!(controller::fenced_with_duties(&image), vec![1]);
    for records in controller::repair(&image) {
        apply!(image, records);
    }
    assert_eq!(led_by(&image, 1), 0);
    assert!(controller::fenced_with_duties(&image).is_empty());
    check_invariants(&image);
    every_partition_with_a_live_isr_member_leads(&image);
    assert!(controller::repair(&image).is_empty(), "nothing left to do");
}

#[test]
fn a_controlled_shutdown_leaves_every_isr_and_fences_once_it_leads_nothing() {
    let mut image = cluster(3);
    let t = topic(&mut image, "t", 6, 3, false);
    apply!(image, controller::begin_shutdown(&image, 2, 1).unwrap(),);
    for p in &image.topics[&t].partitions {
        assert!(!p.isr.contains(&2), "acks=all must not wait for it: {p:?}");
        assert_ne!(p.leader, 2);
    }
    // It may not rejoin while it shuts down.
    let p = image.topics[&t].partitions[0].clone();
    let mut isr = p.isr.clone();
    isr.push(2);
    let rejoin = leader_alters_isr(&image, t, 0, &isr);
    assert!(matches!(
        rejoin.unwrap_err(),
        ControllerError::IneligibleReplica(_)
    ));
    apply!(image, controller::finish_shutdown(&image, 2, 1).unwrap(),);
    assert!(
        image.brokers[&2].fenced,
        "fenced at once, not at lease expiry"
    );
    assert!(controller::finish_shutdown(&image, 2, 1)
        .unwrap()
        .is_empty());
    check_invariants(&image);
}

#[test]
fn a_change_decided_over_an_older_partition_epoch_is_refused_whole() {
    let mut image = cluster(3);
    let t = topic(&mut image, "t", 1, 3, false);
    let p = image.topics[&t].partitions[0].clone();
    // The leader drops 3 from the ISR...
    let shrink = leader_alters_isr(&image, t, 0, &[1, 2]).unwrap();
    // ...while a decision taken before (a preferred-leader move, say) is still in flight.
    let late = vec![
        MetadataRecord::FenceBroker { id: 3, epoch: 1 },
        MetadataRecord::ChangePartition(PartitionChange {
            topic: t,
            partition: 0,
            isr: Some(vec![1, 2, 3]),
            partition_epoch: Some(p.partition_epoch),
            ..Default::default()
        }),
    ];
    apply!(image, shrink);
    let before = image.clone();
    let err = image.apply(&MetadataRecord::Batch(late)).unwrap_err();
    assert!(err.to_string().contains("partition epoch"), "{err}");
    assert_eq!(
        image, before,
        "nothing of the batch applied, the fence included"
    );
}

#[test]
fn a_reassignment_whose_targets_are_in_sync_completes_at_the_next_check() {
    let mut image = cluster(4);
    let t = topic(&mut image, "t", 1, 3, false);
    let p = image.topics[&t].partitions[0].clone();
    let mut target = p.replicas.clone();
    let leaving = target.pop().unwrap();
    let joining = (1..=4).find(|b| !p.replicas.contains(b)).unwrap();
    target.push(joining);
    apply!(
        image,
        controller::alter_reassignment(&image, "t", 0, Some(&target)).unwrap(),
    );
    // The new replica joins the ISR, but the completion proposed after that AlterIsr did
    // not commit (the controller failed over).
    let p = image.topics[&t].partitions[0].clone();
    let mut isr = p.isr.clone();
    isr.push(joining);
    apply!(image, leader_alters_isr(&image, t, 0, &isr).unwrap(),);
    assert!(image.topics[&t].partitions[0].replicas.contains(&leaving));
    for records in controller::repair(&image) {
        apply!(image, records);
    }
    let p = &image.topics[&t].partitions[0];
    assert!(!p.replicas.contains(&leaving), "{p:?}");
    assert!(p.adding.is_empty() && p.removing.is_empty());
}

/// A partition of a topic without unclean election whose only in-sync replica (1) is lost
/// while replica 2, out of sync, is fenced too.
fn offline_partition() -> (MetadataImage, Uuid) {
    let mut image = cluster(3);
    let t = topic(&mut image, "t", 1, 3, false);
    let p = image.topics[&t].partitions[0].clone();
    let isr: Vec<i32> = vec![p.leader];
    apply!(image, leader_alters_isr(&image, t, 0, &isr).unwrap(),);
    let others: Vec<i32> = p
        .replicas
        .iter()
        .copied()
        .filter(|r| *r != p.leader)
        .collect();
    for id in others.iter().chain([&p.leader]) {
        apply!(image, controller::fence_broker(&image, *id).unwrap());
    }
    assert_eq!(image.topics[&t].partitions[0].leader, NO_LEADER);
    (image, t)
}

#[test]
fn turning_unclean_election_on_elects_a_live_replica_of_an_offline_partition() {
    let (mut image, t) = offline_partition();
    let p = image.topics[&t].partitions[0].clone();
    let returning = *p.replicas.iter().find(|r| !p.isr.contains(r)).unwrap();
    let epoch = image.brokers[&returning].epoch;
    apply!(
        image,
        controller::unfence_broker(&image, returning, epoch).unwrap(),
    );
    assert_eq!(
        image.topics[&t].partitions[0].leader, NO_LEADER,
        "clean election only: it waits for its in-sync replica"
    );
    assert!(controller::repair(&image).is_empty());
    image
        .apply(&MetadataRecord::AlterTopicConfigs {
            id: t,
            changes: vec![("unclean.leader.election.enable".into(), Some("true".into()))],
        })
        .unwrap();
    for records in controller::repair(&image) {
        apply!(image, records);
    }
    let p = &image.topics[&t].partitions[0];
    assert_eq!(p.leader, returning, "{p:?}");
    assert_eq!(p.isr, vec![returning]);
}

#[test]
fn an_out_of_sync_replica_returning_leads_an_offline_partition_that_allows_unclean_election() {
    let (mut image, t) = offline_partition();
    image
        .apply(&MetadataRecord::AlterTopicConfigs {
            id: t,
            changes: vec![("unclean.leader.election.enable".into(), Some("true".into()))],
        })
        .unwrap();
    let p = image.topics[&t].partitions[0].clone();
    let returning = *p.replicas.iter().find(|r| !p.isr.contains(r)).unwrap();
    let epoch = image.brokers[&returning].epoch;
    apply!(
        image,
        controller::unfence_broker(&image, returning, epoch).unwrap(),
    );
    assert_eq!(image.topics[&t].partitions[0].leader, returning);
    check_invariants(&image);
}

#[test]
fn only_the_registered_incarnation_acts_on_the_leaderships_of_its_node() {
    let mut image = cluster(3);
    let t = topic(&mut image, "t", 3, 3, false);
    let led: Vec<usize> = (0..3)
        .filter(|i| image.topics[&t].partitions[*i].leader == 1)
        .collect();
    assert!(!led.is_empty());
    assert!(matches!(
        image.as_led_by(1, Some(1)),
        std::borrow::Cow::Borrowed(_)
    ));
    // Broker 1 restarted: until the image shows its new registration it leads nothing.
    for epoch in [None, Some(2)] {
        let view = image.as_led_by(1, epoch);
        for i in &led {
            assert_eq!(view.topics[&t].partitions[*i].leader, NO_LEADER);
        }
        assert_eq!(
            view.topics[&t].partitions[0].isr,
            image.topics[&t].partitions[0].isr
        );
    }
    // Other brokers' leaderships are theirs to act on whatever broker 1 does.
    let view = image.as_led_by(1, None);
    for (i, p) in view.topics[&t].partitions.iter().enumerate() {
        if !led.contains(&i) {
            assert_eq!(p.leader, image.topics[&t].partitions[i].leader);
        }
    }
}

#[test]
fn a_replica_that_fetched_as_an_earlier_incarnation_cannot_join_an_isr() {
    let mut image = cluster(3);
    topic(&mut image, "t", 1, 3, false);
    assert!(controller::check_isr_epochs(&image, &[(2, 1), (3, 1)]).is_ok());
    // Broker 3 restarts and registers again: what it fetched as epoch 1 no longer counts.
    let reg = controller::register_broker(&image, 3, None, Vec::new(), None, false).unwrap();
    apply!(image, reg.records);
    let err = controller::check_isr_epochs(&image, &[(2, 1), (3, 1)]).unwrap_err();
    assert!(matches!(err, ControllerError::IneligibleReplica(_)));
    assert!(controller::check_isr_epochs(&image, &[(3, 2)]).is_ok());
    let unknown = controller::check_isr_epochs(&image, &[(9, 1)]).unwrap_err();
    assert!(matches!(unknown, ControllerError::IneligibleReplica(_)));
}

#[test]
fn an_offline_partition_whose_in_sync_replica_is_live_gets_it_as_leader_at_the_next_check() {
    let (mut image, t) = offline_partition();
    let p = image.topics[&t].partitions[0].clone();
    let last = p.isr[0];
    // Unfenced by a record alone (an older controller's decision, cut short).
    let epoch = image.brokers[&last].epoch;
    image
        .apply(&MetadataRecord::UnfenceBroker { id: last, epoch })
        .unwrap();
    assert_eq!(image.topics[&t].partitions[0].leader, NO_LEADER);
    for records in controller::repair(&image) {
        apply!(image, records);
    }
    assert_eq!(image.topics[&t].partitions[0].leader, last);
    every_partition_with_a_live_isr_member_leads(&image);
}
