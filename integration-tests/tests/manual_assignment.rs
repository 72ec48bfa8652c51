//! Manual replica assignment on three nodes: CreateTopics and CreatePartitions place replicas
//! exactly as assigned, each partition led by its first replica, and refuse an invalid
//! assignment with Kafka's codes, creating nothing.

mod cluster;

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use sluice_client::admin::NewTopic;
use sluice_client::{Admin, Cluster};

/// (replicas, leader) of each partition of `topic`, once every partition has a leader.
async fn placement(view: &Cluster, topic: &str, partitions: usize) -> Vec<(Vec<i32>, i32)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m = view.refresh(None, false).await.unwrap();
        if let Some(t) = m.topics.get(topic) {
            if t.partitions.len() == partitions && t.partitions.iter().all(|p| p.leader >= 0) {
                let mut ps = t.partitions.clone();
                ps.sort_by_key(|p| p.partition);
                return ps.into_iter().map(|p| (p.replicas, p.leader)).collect();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{topic} never settled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assigned(name: &str, replicas: Vec<Vec<i32>>) -> NewTopic {
    NewTopic {
        name: name.into(),
        partitions: -1,
        replication_factor: -1,
        configs: Vec::new(),
        replica_assignment: replicas,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_assignments_are_honoured_and_invalid_ones_refused() {
    cluster::trace_to_test_output();
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster::cluster(dir.path()).await;
    let ids: Vec<i32> = nodes.iter().map(|n| n.id).collect();
    assert_eq!(ids, [1, 2, 3], "the assignments below name these nodes");
    let client = cluster::client_config(&nodes);
    let admin = Admin::new(client.clone()).unwrap();
    let view = Cluster::new(client).unwrap();

    admin
        .create_topics(&[assigned("m", vec![vec![3, 1], vec![2, 3], vec![1, 2]])])
        .await
        .unwrap();
    assert_eq!(
        placement(&view, "m", 3).await,
        vec![(vec![3, 1], 3), (vec![2, 3], 2), (vec![1, 2], 1)],
        "exactly the assigned replicas, the first of each leading"
    );
    admin
        .create_partitions_assigned("m", 5, Some(&[vec![2, 1], vec![3, 2]]))
        .await
        .unwrap();
    assert_eq!(
        placement(&view, "m", 5).await[3..].to_vec(),
        vec![(vec![2, 1], 2), (vec![3, 2], 3)]
    );

    let refused = |e: sluice_client::Error| e.kafka();
    let cases: Vec<(NewTopic, ResponseError)> = vec![
        (
            assigned("bad", vec![vec![1, 9]]),
            ResponseError::InvalidReplicaAssignment,
        ),
        (
            assigned("bad", vec![vec![1, 1]]),
            ResponseError::InvalidReplicaAssignment,
        ),
        (
            assigned("bad", vec![vec![1, 2], vec![3]]),
            ResponseError::InvalidReplicaAssignment,
        ),
        (
            NewTopic {
                partitions: 2,
                ..assigned("bad", vec![vec![1]])
            },
            ResponseError::InvalidRequest,
        ),
    ];
    for (topic, code) in cases {
        let what = format!("{topic:?}");
        let e = admin.create_topics(&[topic]).await.unwrap_err();
        assert_eq!(refused(e), Some(code), "{what}");
    }
    let e = admin
        .create_partitions_assigned("m", 7, Some(&[vec![1, 2]]))
        .await
        .unwrap_err();
    assert_eq!(refused(e), Some(ResponseError::InvalidReplicaAssignment));
    let m = view.refresh(None, false).await.unwrap();
    assert!(!m.topics.contains_key("bad"), "a refused topic was created");
    assert_eq!(
        m.topics["m"].partitions.len(),
        5,
        "refused partitions were added"
    );

    for n in nodes {
        n.stop().await;
    }
}
