//! The group APIs refused without READ, DESCRIBE or DELETE on the group, and nothing changed.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_apis_are_refused_without_their_acl_on_the_group() {
    let broker = secured().await;
    let b = &broker;
    b.create_topic("orders").await;
    b.coordinator_ready("app", "orders").await;
    assert_eq!(b.commit("admin", "app", "orders", 3).await, 0);
    b.grant(
        Res::Group,
        Literal,
        "app",
        "User:alice",
        Op::Describe,
        Allow,
    )
    .await;

    let find = |user: &'static str| async move {
        let req = FindCoordinatorRequest::default().with_key("app".into());
        match b
            .call(
                user,
                ApiKey::FindCoordinator,
                3,
                RequestKind::FindCoordinator(req),
            )
            .await
        {
            ResponseKind::FindCoordinator(r) => r.error_code,
            _ => panic!("not FindCoordinator"),
        }
    };
    assert_eq!(find("bob").await, GROUP_AUTH);
    assert_eq!(find("alice").await, 0);

    // v4 batches keys: each answered on its own.
    let batch = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec!["app".into(), "other".into()]);
    let ResponseKind::FindCoordinator(r) = b
        .call(
            "alice",
            ApiKey::FindCoordinator,
            4,
            RequestKind::FindCoordinator(batch),
        )
        .await
    else {
        panic!()
    };
    let mut codes: Vec<(String, i16)> = r
        .coordinators
        .iter()
        .map(|c| (c.key.to_string(), c.error_code))
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        [("app".to_string(), 0), ("other".to_string(), GROUP_AUTH)]
    );

    // OffsetFetch v8 batches groups: bob may not see app's offsets.
    let fetch = OffsetFetchRequest::default().with_groups(vec![
        offset_fetch_request::OffsetFetchRequestGroup::default()
            .with_group_id(GroupId("app".into()))
            .with_topics(None),
    ]);
    for (user, code, offsets) in [("bob", GROUP_AUTH, 0), ("alice", 0, 0), ("admin", 0, 1)] {
        let ResponseKind::OffsetFetch(r) = b
            .call(
                user,
                ApiKey::OffsetFetch,
                8,
                RequestKind::OffsetFetch(fetch.clone()),
            )
            .await
        else {
            panic!()
        };
        assert_eq!(r.groups[0].error_code, code, "{user}");
        // alice may describe the group but not the topic: its offset is left out.
        assert_eq!(r.groups[0].topics.len(), offsets, "{user}");
    }

    // Joining needs READ, which DESCRIBE does not give.
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId("app".into()))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type("consumer".into());
    let ResponseKind::JoinGroup(r) = b
        .call("alice", ApiKey::JoinGroup, 7, RequestKind::JoinGroup(join))
        .await
    else {
        panic!()
    };
    assert_eq!(r.error_code, GROUP_AUTH);
    let hb = HeartbeatRequest::default()
        .with_group_id(GroupId("app".into()))
        .with_generation_id(1)
        .with_member_id("m".into());
    let ResponseKind::Heartbeat(r) = b
        .call("alice", ApiKey::Heartbeat, 4, RequestKind::Heartbeat(hb))
        .await
    else {
        panic!()
    };
    assert_eq!(r.error_code, GROUP_AUTH);

    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId("app".into()))
        .with_generation_id(1)
        .with_member_id("m".into());
    let ResponseKind::SyncGroup(r) = b
        .call("alice", ApiKey::SyncGroup, 5, RequestKind::SyncGroup(sync))
        .await
    else {
        panic!()
    };
    assert_eq!(r.error_code, GROUP_AUTH);
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId("app".into()))
        .with_members(vec![
            leave_group_request::MemberIdentity::default().with_member_id("m".into())
        ]);
    let ResponseKind::LeaveGroup(r) = b
        .call(
            "alice",
            ApiKey::LeaveGroup,
            5,
            RequestKind::LeaveGroup(leave),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(r.error_code, GROUP_AUTH);

    // OffsetDelete needs DELETE on the group: refused, the offset stays.
    let od = OffsetDeleteRequest::default()
        .with_group_id(GroupId("app".into()))
        .with_topics(vec![
            offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(TopicName("orders".into()))
                .with_partitions(vec![
                    offset_delete_request::OffsetDeleteRequestPartition::default()
                        .with_partition_index(0),
                ]),
        ]);
    let ResponseKind::OffsetDelete(r) = b
        .call(
            "alice",
            ApiKey::OffsetDelete,
            0,
            RequestKind::OffsetDelete(od),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(r.error_code, GROUP_AUTH);
    assert_eq!(b.committed("admin", "app", "orders").await, (0, 0, 3));

    // Describing needs DESCRIBE: alice may, bob may not.
    let describe = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId("app".into())])
        .with_include_authorized_operations(true);
    let ResponseKind::DescribeGroups(r) = b
        .call(
            "bob",
            ApiKey::DescribeGroups,
            5,
            RequestKind::DescribeGroups(describe.clone()),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(r.groups[0].error_code, GROUP_AUTH);
    let ResponseKind::DescribeGroups(r) = b
        .call(
            "alice",
            ApiKey::DescribeGroups,
            5,
            RequestKind::DescribeGroups(describe),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(r.groups[0].error_code, 0);
    assert_eq!(r.groups[0].authorized_operations, 1 << Op::Describe.code());

    // Listing: only the groups the caller may describe.
    let list = |user: &'static str| async move {
        match b
            .call(
                user,
                ApiKey::ListGroups,
                4,
                RequestKind::ListGroups(ListGroupsRequest::default()),
            )
            .await
        {
            ResponseKind::ListGroups(r) => r
                .groups
                .iter()
                .map(|g| g.group_id.to_string())
                .collect::<Vec<_>>(),
            _ => panic!("not ListGroups"),
        }
    };
    assert_eq!(list("alice").await, ["app"]);
    assert!(list("bob").await.is_empty());

    // Deleting needs DELETE: refused, and the group's offset is still there.
    let delete = DeleteGroupsRequest::default().with_groups_names(vec![GroupId("app".into())]);
    let ResponseKind::DeleteGroups(r) = b
        .call(
            "alice",
            ApiKey::DeleteGroups,
            2,
            RequestKind::DeleteGroups(delete),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(r.results[0].error_code, GROUP_AUTH);
    assert_eq!(b.committed("admin", "app", "orders").await, (0, 0, 3));
}
