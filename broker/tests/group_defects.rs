//! Regression tests for issue 12's group defects, over the wire against a broker on port 0:
//! 5 (bounded `__consumer_offsets` strings, `offset.metadata.max.bytes`), 7 (a static member
//! that restarts gets its assignment back without a rebalance) and 8 (a member of the current
//! generation commits while the group prepares a rebalance).

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

mod common;

use common::Conn;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A broker with one topic `t` of two partitions; the coordinator found (offsets topic made).
async fn broker() -> (
    std::net::SocketAddr,
    tempfile::TempDir,
    tokio::sync::watch::Sender<bool>,
) {
    let b = common::start(&[
        ("offsets.topic.num.partitions", "1"),
        ("group.initial.rebalance.delay.ms", "0"),
    ])
    .await;
    let mut c = Conn::connect(b.0).await;
    let create = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(s("t")))
            .with_num_partitions(2)
            .with_replication_factor(1)])
        .with_timeout_ms(10_000);
    let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 5, &create).await;
    assert_eq!(r.topics[0].error_code, 0, "topic created");
    let find = FindCoordinatorRequest::default().with_key(s("g"));
    let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, 3, &find).await;
    assert_eq!(r.error_code, 0, "this node coordinates");
    common::wait_for_coordinator_load(&mut c, "g").await;
    b
}

fn join(member: &str, instance: Option<&str>) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"subscription"))])
}

fn sync(
    member: &str,
    instance: Option<&str>,
    generation: i32,
    assignments: &[(&str, &'static [u8])],
) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::from_static(a))
                })
                .collect(),
        )
}

fn heartbeat(member: &str, instance: Option<&str>, generation: i32) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
}

fn commit(group: &str, member: &str, generation: i32, metadata: &str) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(5)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(s(metadata)))])])
}

fn commit_codes(r: &OffsetCommitResponse) -> Vec<i16> {
    r.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

/// One member joined and synced alone: (its connection, its id), generation 1, Stable.
async fn first_member(
    addr: std::net::SocketAddr,
    instance: Option<&str>,
    assignment: &'static [u8],
) -> (Conn, String) {
    let mut c = Conn::connect(addr).await;
    let mut r: JoinGroupResponse = c.call(ApiKey::JoinGroup, 5, &join("", instance)).await;
    if r.error_code == 79 {
        // MEMBER_ID_REQUIRED (KIP-394) for a dynamic member.
        let id = r.member_id.to_string();
        r = c.call(ApiKey::JoinGroup, 5, &join(&id, instance)).await;
    }
    assert_eq!((r.error_code, r.generation_id), (0, 1));
    let id = r.member_id.to_string();
    let r: SyncGroupResponse = c
        .call(
            ApiKey::SyncGroup,
            3,
            &sync(&id, instance, 1, &[(&id, assignment)]),
        )
        .await;
    assert_eq!(r.error_code, 0);
    (c, id)
}

#[tokio::test(flavor = "multi_thread")]
async fn offset_commit_enforces_metadata_max_bytes_and_bounds_group_ids() {
    let (addr, _dir, _stop) = broker().await;
    let mut c = Conn::connect(addr).await;
    // offset.metadata.max.bytes = 4096: at the limit is fine, one byte over is refused.
    let r: OffsetCommitResponse = c
        .call(
            ApiKey::OffsetCommit,
            8,
            &commit("g", "", -1, &"m".repeat(4096)),
        )
        .await;
    assert_eq!(commit_codes(&r), vec![0]);
    let r: OffsetCommitResponse = c
        .call(
            ApiKey::OffsetCommit,
            8,
            &commit("g", "", -1, &"m".repeat(4097)),
        )
        .await;
    assert_eq!(commit_codes(&r), vec![12], "OFFSET_METADATA_TOO_LARGE");
    // A group id the offsets topic's i16 string length cannot hold is refused, never written
    // with a wrapped length.
    let long = "g".repeat(40_000);
    let r: OffsetCommitResponse = c
        .call(ApiKey::OffsetCommit, 8, &commit(&long, "", -1, ""))
        .await;
    assert_eq!(commit_codes(&r), vec![24], "INVALID_GROUP_ID");
    let long_instance = "i".repeat(40_000);
    let r: JoinGroupResponse = c
        .call(ApiKey::JoinGroup, 7, &join("", Some(&long_instance)))
        .await;
    assert_ne!(
        r.error_code, 0,
        "an instance id too long to persist is refused"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn commit_during_preparing_rebalance_is_accepted_for_the_current_generation() {
    let (addr, _dir, _stop) = broker().await;
    let (mut a, a_id) = first_member(addr, None, b"a").await;
    // A second member starts a rebalance; its join waits for the first to rejoin.
    let mut b = Conn::connect(addr).await;
    let r: JoinGroupResponse = b.call(ApiKey::JoinGroup, 5, &join("", None)).await;
    assert_eq!(r.error_code, 79);
    let b_id = r.member_id.to_string();
    let joining = tokio::spawn(async move {
        let r: JoinGroupResponse = b.call(ApiKey::JoinGroup, 5, &join(&b_id, None)).await;
        r
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r: HeartbeatResponse = a
        .call(ApiKey::Heartbeat, 4, &heartbeat(&a_id, None, 1))
        .await;
    assert_eq!(r.error_code, 27, "the group is preparing a rebalance");
    // Kafka accepts a commit of the current generation while the group prepares a rebalance.
    let r: OffsetCommitResponse = a
        .call(ApiKey::OffsetCommit, 8, &commit("g", &a_id, 1, ""))
        .await;
    assert_eq!(
        commit_codes(&r),
        vec![0],
        "commit accepted during PreparingRebalance"
    );
    let r: OffsetCommitResponse = a
        .call(ApiKey::OffsetCommit, 8, &commit("g", &a_id, 0, ""))
        .await;
    assert_eq!(
        commit_codes(&r),
        vec![22],
        "an older generation is still refused"
    );
    let r: JoinGroupResponse = a.call(ApiKey::JoinGroup, 5, &join(&a_id, None)).await;
    assert_eq!((r.error_code, r.generation_id), (0, 2));
    let r = joining.await.expect("second join");
    assert_eq!((r.error_code, r.generation_id), (0, 2));
    // CompletingRebalance: the leader has not assigned yet; a commit must wait for it.
    let r: OffsetCommitResponse = a
        .call(ApiKey::OffsetCommit, 8, &commit("g", &a_id, 2, ""))
        .await;
    assert_eq!(
        commit_codes(&r),
        vec![27],
        "REBALANCE_IN_PROGRESS while completing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn static_member_restart_gets_its_assignment_back_without_a_rebalance() {
    let (addr, _dir, _stop) = broker().await;
    let (mut a, a_id) = first_member(addr, Some("a"), b"pa").await;
    // Static member b joins: generation 2 with both, a leads and assigns.
    let mut b = Conn::connect(addr).await;
    let b_join = tokio::spawn(async move {
        let r: JoinGroupResponse = b.call(ApiKey::JoinGroup, 5, &join("", Some("b"))).await;
        (b, r)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r: JoinGroupResponse = a.call(ApiKey::JoinGroup, 5, &join(&a_id, Some("a"))).await;
    assert_eq!(
        (r.error_code, r.generation_id, r.leader.as_str()),
        (0, 2, a_id.as_str())
    );
    let old_b_id = r
        .members
        .iter()
        .map(|m| m.member_id.to_string())
        .find(|m| *m != a_id)
        .expect("the leader sees b");
    let (mut b, r) = b_join.await.expect("b joins");
    assert_eq!((r.error_code, r.generation_id), (0, 2));
    assert_eq!(r.member_id.as_str(), old_b_id);
    let id = old_b_id.clone();
    let b_sync = tokio::spawn(async move {
        let r: SyncGroupResponse = b
            .call(ApiKey::SyncGroup, 3, &sync(&id, Some("b"), 2, &[]))
            .await;
        (b, r)
    });
    let r: SyncGroupResponse = a
        .call(
            ApiKey::SyncGroup,
            3,
            &sync(&a_id, Some("a"), 2, &[(&a_id, b"pa"), (&old_b_id, b"pb")]),
        )
        .await;
    assert_eq!((r.error_code, r.assignment.as_ref()), (0, &b"pa"[..]));
    let (b, r) = b_sync.await.expect("b syncs");
    assert_eq!((r.error_code, r.assignment.as_ref()), (0, &b"pb"[..]));
    drop(b); // b "crashes": no LeaveGroup (a static member never sends one).

    // b restarts with the same instance id and subscription: answered at once, generation
    // unchanged, its assignment back, and a's heartbeat sees no rebalance.
    let mut b = Conn::connect(addr).await;
    let r: JoinGroupResponse = tokio::time::timeout(
        Duration::from_secs(5),
        b.call(ApiKey::JoinGroup, 5, &join("", Some("b"))),
    )
    .await
    .expect("a restarted static member is answered without waiting for a rebalance");
    assert_eq!(r.error_code, 0);
    assert_eq!(r.generation_id, 2, "no new generation");
    assert_eq!(r.leader.as_str(), a_id, "the leader stays");
    let new_b_id = r.member_id.to_string();
    assert_ne!(
        new_b_id, old_b_id,
        "Kafka gives the restarted member a new id"
    );
    let r: HeartbeatResponse = a
        .call(ApiKey::Heartbeat, 4, &heartbeat(&a_id, Some("a"), 2))
        .await;
    assert_eq!(r.error_code, 0, "the other member is not made to rebalance");
    let r: SyncGroupResponse = b
        .call(ApiKey::SyncGroup, 3, &sync(&new_b_id, Some("b"), 2, &[]))
        .await;
    assert_eq!(
        (r.error_code, r.assignment.as_ref()),
        (0, &b"pb"[..]),
        "its previous assignment"
    );
    let r: HeartbeatResponse = b
        .call(ApiKey::Heartbeat, 4, &heartbeat(&old_b_id, Some("b"), 2))
        .await;
    assert_eq!(
        r.error_code, 82,
        "the old incarnation is fenced (FENCED_INSTANCE_ID)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn offset_fetch_v1_carries_coordinator_errors_on_every_partition() {
    // Issue 22 item 2. Before any FindCoordinator this node leads no `__consumer_offsets`
    // partition, so it is not the group's coordinator (as during a coordinator move).
    // OffsetFetch v0-1 (v0 is gone from Kafka 4 and our codec) have no top-level error field: kafka-python 2.0 and aiokafka would
    // read an empty answer as "nothing committed" and reset to auto.offset.reset.
    let (addr, _dir, _stop) = common::start(&[("offsets.topic.num.partitions", "1")]).await;
    let mut c = Conn::connect(addr).await;
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partition_indexes(vec![0, 1]),
        ]));
    for version in [1] {
        let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, version, &req).await;
        let got: Vec<(&str, i32, i64, i16)> = r
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    (
                        t.name.as_str(),
                        p.partition_index,
                        p.committed_offset,
                        p.error_code,
                    )
                })
            })
            .collect();
        assert_eq!(
            got,
            vec![("t", 0, -1, 16), ("t", 1, -1, 16)],
            "v{version}: NOT_COORDINATOR on every requested partition"
        );
    }
    let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 2, &req).await;
    assert_eq!(r.error_code, 16, "v2+ carry it at the top level");
}
