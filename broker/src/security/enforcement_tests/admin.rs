//! The admin APIs refused without the ACL Kafka asks for, and nothing changed.

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};

use super::*;

fn name(s: &str) -> TopicName {
    TopicName(s.to_string().into())
}

impl Broker {
    async fn create_as(&self, user: &str, topic: &str) -> i16 {
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(name(topic))
                .with_num_partitions(1)
                .with_replication_factor(1)]);
        match self
            .call(
                user,
                ApiKey::CreateTopics,
                7,
                RequestKind::CreateTopics(req),
            )
            .await
        {
            ResponseKind::CreateTopics(r) => r.topics[0].error_code,
            _ => panic!("not CreateTopics"),
        }
    }

    fn partitions(&self, topic: &str) -> Option<i32> {
        self.server
            .replica_manager()
            .topic(topic)
            .map(|t| t.meta.partitions)
    }

    async fn init_producer_id(&self, user: &str) -> i16 {
        let req = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        match self
            .call(
                user,
                ApiKey::InitProducerId,
                4,
                RequestKind::InitProducerId(req),
            )
            .await
        {
            ResponseKind::InitProducerId(r) => r.error_code,
            _ => panic!("not InitProducerId"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_apis_are_refused_without_their_acl_and_change_nothing() {
    let b = secured().await;
    b.create_topic("orders").await;
    assert_eq!(b.produce("admin", "orders").await, 0);

    // CreateTopics: CREATE on the cluster or the topic.
    assert_eq!(b.create_as("alice", "alice-1").await, TOPIC_AUTH);
    assert_eq!(b.partitions("alice-1"), None);
    b.grant(
        Res::Topic,
        Prefixed,
        "alice-",
        "User:alice",
        Op::Create,
        Allow,
    )
    .await;
    assert_eq!(b.create_as("alice", "alice-1").await, 0);
    assert_eq!(b.create_as("alice", "bob-1").await, TOPIC_AUTH);

    // DeleteTopics: DELETE.
    let del = DeleteTopicsRequest::default()
        .with_topic_names(vec![name("orders")])
        .with_timeout_ms(5000);
    let ResponseKind::DeleteTopics(r) = b
        .call(
            "alice",
            ApiKey::DeleteTopics,
            5,
            RequestKind::DeleteTopics(del),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(r.responses[0].error_code, TOPIC_AUTH);
    assert_eq!(b.partitions("orders"), Some(1));

    // CreatePartitions: ALTER.
    let cp = CreatePartitionsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(name("orders"))
            .with_count(3)
            .with_assignments(None)]);
    let ResponseKind::CreatePartitions(r) = b
        .call(
            "alice",
            ApiKey::CreatePartitions,
            3,
            RequestKind::CreatePartitions(cp),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(r.results[0].error_code, TOPIC_AUTH);
    assert_eq!(b.partitions("orders"), Some(1));

    // DeleteRecords: DELETE.
    let dr = DeleteRecordsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(name("orders"))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(-1)])]);
    let ResponseKind::DeleteRecords(r) = b
        .call(
            "alice",
            ApiKey::DeleteRecords,
            2,
            RequestKind::DeleteRecords(dr),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(r.topics[0].partitions[0].error_code, TOPIC_AUTH);
    let log_start = b
        .server
        .replica_manager()
        .partition(&TopicPartition::new("orders", 0))
        .expect("partition")
        .log
        .offsets()
        .log_start;
    assert_eq!(log_start.0, 0, "no record was deleted");

    // DescribeConfigs: DESCRIBE_CONFIGS on the topic, or on the cluster for a broker.
    let dc = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name("orders".into())
            .with_configuration_keys(None),
        DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name("1".into())
            .with_configuration_keys(None),
    ]);
    let ResponseKind::DescribeConfigs(r) = b
        .call(
            "alice",
            ApiKey::DescribeConfigs,
            4,
            RequestKind::DescribeConfigs(dc),
        )
        .await
    else {
        panic!()
    };
    let codes: Vec<(i16, usize)> = r
        .results
        .iter()
        .map(|r| (r.error_code, r.configs.len()))
        .collect();
    assert_eq!(codes, [(TOPIC_AUTH, 0), (CLUSTER_AUTH, 0)]);

    // IncrementalAlterConfigs: ALTER_CONFIGS.
    let ac = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name("orders".into())
            .with_configs(vec![AlterableConfig::default()
                .with_name("retention.ms".into())
                .with_config_operation(0)
                .with_value(Some("1000".into()))]),
    ]);
    let ResponseKind::IncrementalAlterConfigs(r) = b
        .call(
            "alice",
            ApiKey::IncrementalAlterConfigs,
            1,
            RequestKind::IncrementalAlterConfigs(ac),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(r.responses[0].error_code, TOPIC_AUTH);
    let topic = b.server.replica_manager().topic("orders").expect("topic");
    assert!(!topic.meta.configs.contains_key("retention.ms"));

    // ListOffsets: DESCRIBE.
    let lo = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name("orders"))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]);
    let ResponseKind::ListOffsets(r) = b
        .call(
            "alice",
            ApiKey::ListOffsets,
            8,
            RequestKind::ListOffsets(lo),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(r.topics[0].partitions[0].error_code, TOPIC_AUTH);
    assert_eq!(r.topics[0].partitions[0].offset, -1, "no offset told");

    // OffsetForLeaderEpoch: DESCRIBE for a consumer, CLUSTER_ACTION for a follower.
    let epochs = |replica: i32| {
        RequestKind::OffsetForLeaderEpoch(
            OffsetForLeaderEpochRequest::default()
                .with_replica_id(BrokerId(replica))
                .with_topics(vec![OffsetForLeaderTopic::default()
                    .with_topic(name("orders"))
                    .with_partitions(vec![OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(-1)
                        .with_leader_epoch(0)])]),
        )
    };
    for (user, replica, expected) in [
        ("alice", -1, TOPIC_AUTH),
        ("alice", 2, TOPIC_AUTH),
        ("admin", -1, 0),
    ] {
        let ResponseKind::OffsetForLeaderEpoch(r) = b
            .call(user, ApiKey::OffsetForLeaderEpoch, 4, epochs(replica))
            .await
        else {
            panic!()
        };
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, expected, "{user} as replica {replica}");
        if expected != 0 {
            assert_eq!(p.end_offset, -1, "no offset told");
        }
    }

    // ElectLeaders: ALTER on the cluster.
    let elect = ElectLeadersRequest::default()
        .with_election_type(0)
        .with_timeout_ms(5000)
        .with_topic_partitions(Some(vec![TopicPartitions::default()
            .with_topic(name("orders"))
            .with_partitions(vec![0])]));
    let ResponseKind::ElectLeaders(r) = b
        .call(
            "alice",
            ApiKey::ElectLeaders,
            2,
            RequestKind::ElectLeaders(elect),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(r.error_code, CLUSTER_AUTH);
    assert_eq!(
        r.replica_election_results[0].partition_result[0].error_code,
        CLUSTER_AUTH
    );

    // Cluster APIs: DESCRIBE or ALTER on the cluster.
    let ResponseKind::DescribeLogDirs(r) = b
        .call(
            "alice",
            ApiKey::DescribeLogDirs,
            4,
            RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default().with_topics(None)),
        )
        .await
    else {
        panic!()
    };
    assert_eq!((r.error_code, r.results.len()), (CLUSTER_AUTH, 0));
    let ResponseKind::ListPartitionReassignments(r) = b
        .call(
            "alice",
            ApiKey::ListPartitionReassignments,
            0,
            RequestKind::ListPartitionReassignments(
                ListPartitionReassignmentsRequest::default().with_topics(None),
            ),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(r.error_code, CLUSTER_AUTH);
    let reassign = AlterPartitionReassignmentsRequest::default().with_topics(vec![
        ReassignableTopic::default()
            .with_name(name("orders"))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(0)
                .with_replicas(Some(vec![BrokerId(1)]))]),
    ]);
    let ResponseKind::AlterPartitionReassignments(r) = b
        .call(
            "alice",
            ApiKey::AlterPartitionReassignments,
            0,
            RequestKind::AlterPartitionReassignments(reassign),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(r.error_code, CLUSTER_AUTH);
    assert_eq!(r.responses[0].partitions[0].error_code, CLUSTER_AUTH);

    // DescribeCluster is open to all; its authorized operations follow the ACLs.
    let dc = DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
    let ResponseKind::DescribeCluster(r) = b
        .call(
            "alice",
            ApiKey::DescribeCluster,
            1,
            RequestKind::DescribeCluster(dc.clone()),
        )
        .await
    else {
        panic!()
    };
    assert_eq!((r.error_code, r.cluster_authorized_operations), (0, 0));
    let ResponseKind::DescribeCluster(r) = b
        .call(
            "admin",
            ApiKey::DescribeCluster,
            1,
            RequestKind::DescribeCluster(dc),
        )
        .await
    else {
        panic!()
    };
    let describe = 1 << Op::Describe.code();
    assert_eq!(r.cluster_authorized_operations & describe, describe);

    // InitProducerId: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic.
    assert_eq!(b.init_producer_id("alice").await, CLUSTER_AUTH);
    b.grant(
        Res::Topic,
        Literal,
        "orders",
        "User:alice",
        Op::Write,
        Allow,
    )
    .await;
    assert_eq!(b.init_producer_id("alice").await, 0);
    b.grant(
        Res::Cluster,
        Literal,
        "kafka-cluster",
        "User:bob",
        Op::IdempotentWrite,
        Allow,
    )
    .await;
    assert_eq!(b.init_producer_id("bob").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_creation_needs_create_on_the_cluster_or_the_topic() {
    let b = broker(&[
        (
            "authorizer.class.name",
            "kafka.security.authorizer.AclAuthorizer",
        ),
        ("super.users", "User:admin"),
        ("auto.create.topics.enable", "true"),
    ])
    .await;
    b.grant(Res::Topic, Prefixed, "new-", "User:alice", Op::Write, Allow)
        .await;
    let metadata = |topic: &'static str| {
        RequestKind::Metadata(
            MetadataRequest::default()
                .with_allow_auto_topic_creation(true)
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(name(topic)))
                ])),
        )
    };
    // WRITE implies DESCRIBE, but creating needs CREATE.
    let ResponseKind::Metadata(r) = b
        .call("alice", ApiKey::Metadata, 12, metadata("new-1"))
        .await
    else {
        panic!()
    };
    assert_eq!(r.topics[0].error_code, TOPIC_AUTH);
    assert_eq!(b.partitions("new-1"), None, "not created");
    // Nor does a produce create it: alice may write the name, so she hears it is unknown.
    assert_eq!(
        b.produce("alice", "new-1").await,
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert_eq!(b.partitions("new-1"), None, "not created");

    b.grant(
        Res::Topic,
        Prefixed,
        "new-",
        "User:alice",
        Op::Create,
        Allow,
    )
    .await;
    let ResponseKind::Metadata(r) = b
        .call("alice", ApiKey::Metadata, 12, metadata("new-1"))
        .await
    else {
        panic!()
    };
    assert_eq!(r.topics[0].error_code, 0);
    assert_eq!(b.partitions("new-1"), Some(1));
}
