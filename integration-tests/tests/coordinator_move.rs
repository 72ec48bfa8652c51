//! A group coordinator moved by a reassignment of its `__consumer_offsets` partition (issue 22
//! item 7): the node that lost the replica gives the group up (no longer lists it), and the
//! new leader loads it and serves the committed offset.

mod cluster;

use std::time::{Duration, Instant};

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, FindCoordinatorRequest, GroupId,
    ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_broker::group::records::partition_for;
use sluice_broker::group::OFFSETS_TOPIC;
use sluice_client::admin::NewTopic;
use sluice_client::{Admin, Cluster};

const GROUP: &str = "moved";

fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Retries `f` until it returns `Some`, for at most a minute (a loaded machine must not fail
/// this; the defects it pins never succeed at all).
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(t) = f().await {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_whose_offsets_replica_moves_away_gives_up_its_groups() {
    cluster::trace_to_test_output();
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster::cluster(dir.path()).await;
    let client = cluster::client_config(&nodes);
    let admin = Admin::new(client.clone()).unwrap();
    admin
        .create_topics(&[NewTopic {
            name: "t".into(),
            partitions: 1,
            replication_factor: 1,
            configs: Vec::new(),
            replica_assignment: Vec::new(),
        }])
        .await
        .unwrap();
    let view = Cluster::new(client.clone()).unwrap();
    let any = view.broker(nodes[0].id).await.unwrap();
    let find = FindCoordinatorRequest::default().with_key(name(GROUP));
    let coordinator = || async {
        let r = any.call_at(&find, 3).await.ok()?;
        (r.error_code == 0).then_some(r.node_id.0)
    };
    let old = eventually("a coordinator", coordinator).await;
    let old_conn = view.broker(old).await.unwrap();

    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(name(GROUP)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(name("t")))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(42)])]);
    eventually("the commit", || async {
        let r = old_conn.call_at(&commit, 8).await.ok()?;
        (r.topics[0].partitions[0].error_code == 0).then_some(())
    })
    .await;
    let listed_on = |conn: std::sync::Arc<sluice_client::connection::Connection>| async move {
        let r = conn
            .call_at(&ListGroupsRequest::default(), 4)
            .await
            .unwrap();
        assert_eq!(r.error_code, 0);
        r.groups.iter().any(|g| g.group_id.as_str() == GROUP)
    };
    assert!(
        listed_on(old_conn.clone()).await,
        "listed by its coordinator"
    );

    // Move the group's offsets partition to another node alone.
    let offsets = view.refresh(None, false).await.unwrap().topics[OFFSETS_TOPIC]
        .partitions
        .len() as i32;
    let p = partition_for(GROUP, offsets);
    let new = nodes.iter().map(|n| n.id).find(|id| *id != old).unwrap();
    let req = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![ReassignableTopic::default()
            .with_name(TopicName(name(OFFSETS_TOPIC)))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(p)
                .with_replicas(Some(vec![BrokerId(new)]))])]);
    let r = old_conn.call_at(&req, 0).await.unwrap();
    assert_eq!(r.error_code, 0, "{r:?}");
    assert_eq!(r.responses[0].partitions[0].error_code, 0, "{r:?}");
    eventually("the reassignment", || async {
        let m = view.refresh(None, false).await.ok()?;
        let part = &m.topics[OFFSETS_TOPIC].partitions[p as usize];
        (part.leader == new && part.replicas == vec![new]).then_some(())
    })
    .await;

    // The old node gave the group up; the new one serves its offset.
    eventually("the old coordinator to stop listing the group", || {
        let conn = old_conn.clone();
        async move { (!listed_on(conn).await).then_some(()) }
    })
    .await;
    let found = eventually("the new coordinator", coordinator).await;
    assert_eq!(found, new);
    let new_conn = view.broker(new).await.unwrap();
    let fetch = OffsetFetchRequest::default()
        .with_group_id(GroupId(name(GROUP)))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(name("t")))
            .with_partition_indexes(vec![0])]));
    let offset = eventually("the offset from the new coordinator", || async {
        let r = new_conn.call_at(&fetch, 1).await.ok()?;
        let p = &r.topics[0].partitions[0];
        (p.error_code == 0).then_some(p.committed_offset)
    })
    .await;
    assert_eq!(offset, 42);
    assert!(listed_on(new_conn).await, "listed by the new coordinator");
    for n in nodes {
        n.stop().await;
    }
}
