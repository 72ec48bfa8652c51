//! The group coordinator's error codes over the wire (kafka-protocol requests against a broker
//! on port 0): MEMBER_ID_REQUIRED, UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS,
//! INVALID_SESSION_TIMEOUT, INCONSISTENT_GROUP_PROTOCOL, NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND.

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tokio::net::TcpStream;

mod common;

use common::Conn;

fn join(member: &str, session_ms: i32, protocol: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(StrBytes::from_string(member.to_string()))
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(StrBytes::from_string(protocol.to_string()))
            .with_metadata(Bytes::from_static(b"md"))])
}

#[tokio::test(flavor = "multi_thread")]
async fn group_error_codes_follow_kafka() {
    let (addr, _dir, _stop) = common::start(&[
        ("offsets.topic.num.partitions", "3"),
        ("group.initial.rebalance.delay.ms", "0"),
    ])
    .await;
    let mut c = Conn {
        s: TcpStream::connect(addr).await.expect("connect"),
        corr: 0,
    };
    // As clients do: find the coordinator first, which creates the offsets topic.
    let find = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"));
    let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, 3, &find).await;
    assert_eq!((r.error_code, r.node_id.0), (0, 1), "this node coordinates");
    common::wait_for_coordinator_load(&mut c, "g").await;
    let r: JoinGroupResponse = c.call(ApiKey::JoinGroup, 5, &join("", 1000, "range")).await;
    assert_eq!(
        r.error_code, 26,
        "INVALID_SESSION_TIMEOUT below group.min.session.timeout.ms"
    );
    let r: JoinGroupResponse = c
        .call(ApiKey::JoinGroup, 5, &join("", 10_000, "range"))
        .await;
    assert_eq!(r.error_code, 79, "MEMBER_ID_REQUIRED (KIP-394)");
    let id = r.member_id.to_string();
    assert!(!id.is_empty());
    let r: JoinGroupResponse = c
        .call(ApiKey::JoinGroup, 5, &join(&id, 10_000, "range"))
        .await;
    assert_eq!(
        (r.error_code, r.generation_id, r.leader.as_str()),
        (0, 1, id.as_str())
    );
    assert_eq!(r.members.len(), 1, "the leader gets the member list");

    let hb = |member: &str, generation: i32| {
        HeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_generation_id(generation)
            .with_member_id(StrBytes::from_string(member.to_string()))
    };
    let r: HeartbeatResponse = c.call(ApiKey::Heartbeat, 4, &hb("nobody", 1)).await;
    assert_eq!(r.error_code, 25, "UNKNOWN_MEMBER_ID");
    let sync = |generation: i32| {
        SyncGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_generation_id(generation)
            .with_member_id(StrBytes::from_string(id.clone()))
    };
    let r: SyncGroupResponse = c.call(ApiKey::SyncGroup, 3, &sync(7)).await;
    assert_eq!(r.error_code, 22, "ILLEGAL_GENERATION");
    let r: SyncGroupResponse = c.call(ApiKey::SyncGroup, 3, &sync(1)).await;
    assert_eq!(r.error_code, 0);
    let r: HeartbeatResponse = c.call(ApiKey::Heartbeat, 4, &hb(&id, 1)).await;
    assert_eq!(r.error_code, 0);
    let r: JoinGroupResponse = c
        .call(ApiKey::JoinGroup, 5, &join("", 10_000, "roundrobin"))
        .await;
    assert_eq!(
        r.error_code, 23,
        "INCONSISTENT_GROUP_PROTOCOL: no protocol in common"
    );

    // A second member starts a rebalance: the first member's heartbeat says so.
    let mut c2 = Conn {
        s: TcpStream::connect(addr).await.expect("connect"),
        corr: 0,
    };
    let r: JoinGroupResponse = c2
        .call(ApiKey::JoinGroup, 5, &join("", 10_000, "range"))
        .await;
    let id2 = r.member_id.to_string();
    let joining = tokio::spawn(async move {
        let r: JoinGroupResponse = c2
            .call(ApiKey::JoinGroup, 5, &join(&id2, 10_000, "range"))
            .await;
        r
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let r: HeartbeatResponse = c.call(ApiKey::Heartbeat, 4, &hb(&id, 1)).await;
    assert_eq!(r.error_code, 27, "REBALANCE_IN_PROGRESS");
    let r: JoinGroupResponse = c
        .call(ApiKey::JoinGroup, 5, &join(&id, 10_000, "range"))
        .await;
    assert_eq!((r.error_code, r.generation_id), (0, 2));
    let r2 = joining.await.expect("second join");
    assert_eq!(
        (r2.error_code, r2.generation_id, r2.members.len()),
        (0, 2, 0)
    );

    let del = DeleteGroupsRequest::default().with_groups_names(vec![
        GroupId(StrBytes::from_static_str("g")),
        GroupId(StrBytes::from_static_str("nope")),
    ]);
    let r: DeleteGroupsResponse = c.call(ApiKey::DeleteGroups, 2, &del).await;
    let codes: Vec<i16> = r.results.iter().map(|g| g.error_code).collect();
    assert_eq!(codes, vec![68, 69], "NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread")]
async fn leave_group_v3_carries_the_groups_error_at_the_top_level() {
    // Issue 22 item 10: v3+ answers per member, but a group-level error (here
    // INVALID_GROUP_ID; NOT_COORDINATOR and COORDINATOR_LOAD_IN_PROGRESS alike) goes in the
    // top-level field, where clients look for it. It was written per member, top level NONE.
    let (addr, _dir, _stop) = common::start(&[("offsets.topic.num.partitions", "3")]).await;
    let mut c = Conn {
        s: TcpStream::connect(addr).await.expect("connect"),
        corr: 0,
    };
    let find = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"));
    let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, 3, &find).await;
    assert_eq!(r.error_code, 0);
    common::wait_for_coordinator_load(&mut c, "g").await;
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("")))
        .with_members(vec![leave_group_request::MemberIdentity::default()
            .with_member_id(StrBytes::from_static_str("m"))]);
    let r: LeaveGroupResponse = c.call(ApiKey::LeaveGroup, 3, &leave).await;
    assert_eq!(r.error_code, 24, "INVALID_GROUP_ID");
    assert!(r.members.is_empty(), "{r:?}");
    let leave = leave.with_group_id(GroupId(StrBytes::from_static_str("g")));
    let r: LeaveGroupResponse = c.call(ApiKey::LeaveGroup, 3, &leave).await;
    assert_eq!(r.error_code, 0, "an unknown group: per member, as Kafka");
    assert_eq!(r.members[0].error_code, 25, "UNKNOWN_MEMBER_ID");
}
