//! Authorization as clients meet it: requests dispatched to a real single-node broker under
//! a chosen principal, with `User:admin` as the super user that creates topics and ACLs.
//! Each refusal asserts the exact code the client gets and that nothing was written or
//! read.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use sluice_replication::acl::{AclOperation, AclPermissionType, PatternType, ResourceType};
use sluice_storage::TopicPartition;

use crate::config::BrokerConfig;
use crate::handlers::{dispatch, Reply};
use crate::security::{KafkaPrincipal, Session};
use crate::server::Server;

const TOPIC_AUTH: i16 = 29;
const GROUP_AUTH: i16 = 30;
const CLUSTER_AUTH: i16 = 31;

struct Broker {
    server: Server,
    _dir: tempfile::TempDir,
}

async fn broker(settings: &[(&str, &str)]) -> Broker {
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = BrokerConfig::default();
    c.set("listeners", "PLAINTEXT://127.0.0.1:0")
        .expect("listeners");
    c.set("log.dirs", &dir.path().display().to_string())
        .expect("dirs");
    c.set("sluice.metrics.listener", "").expect("metrics");
    c.set("auto.create.topics.enable", "false").expect("auto");
    c.set("group.initial.rebalance.delay.ms", "0")
        .expect("delay");
    c.set("offsets.topic.num.partitions", "1").expect("offsets");
    for (k, v) in settings {
        c.set(k, v).expect("setting");
    }
    let server = Server::bind(c).await.expect("bind");
    Broker { server, _dir: dir }
}

async fn secured() -> Broker {
    broker(&[
        (
            "authorizer.class.name",
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        ),
        ("super.users", "User:admin"),
    ])
    .await
}

impl Broker {
    async fn call(&self, user: &str, key: ApiKey, version: i16, req: RequestKind) -> ResponseKind {
        let session = Session {
            principal: KafkaPrincipal::user(user),
            listener: "PLAINTEXT",
            client_host: "/127.0.0.1".into(),
        };
        match dispatch(self.server.context(session, version), key, req) {
            Reply::Now(r) => *r,
            Reply::Later(f) => f.await,
            Reply::Nothing => panic!("{key:?} gave no response"),
            Reply::Refused(why) => panic!("{key:?} refused: {why}"),
        }
    }

    async fn create_topic(&self, name: &str) {
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(name.to_string().into()))
                .with_num_partitions(1)
                .with_replication_factor(1)]);
        let ResponseKind::CreateTopics(r) = self
            .call(
                "admin",
                ApiKey::CreateTopics,
                7,
                RequestKind::CreateTopics(req),
            )
            .await
        else {
            panic!("not a CreateTopics response")
        };
        assert_eq!(r.topics[0].error_code, 0, "{r:?}");
    }

    /// `principal` gets `perm` of `op` on the topic pattern `name`, from any host.
    async fn grant(
        &self,
        rt: ResourceType,
        pattern: PatternType,
        name: &str,
        principal: &str,
        op: AclOperation,
        perm: AclPermissionType,
    ) {
        let creation = AclCreation::default()
            .with_resource_type(rt.code())
            .with_resource_name(name.to_string().into())
            .with_resource_pattern_type(pattern.code())
            .with_principal(principal.to_string().into())
            .with_host("*".into())
            .with_operation(op.code())
            .with_permission_type(perm.code());
        let resp = self
            .call(
                "admin",
                ApiKey::CreateAcls,
                3,
                RequestKind::CreateAcls(
                    CreateAclsRequest::default().with_creations(vec![creation]),
                ),
            )
            .await;
        let ResponseKind::CreateAcls(r) = resp else {
            panic!("not a CreateAcls response")
        };
        assert_eq!(r.results[0].error_code, 0, "{r:?}");
    }

    fn log_end(&self, topic: &str) -> i64 {
        self.server
            .replica_manager()
            .partition(&TopicPartition::new(topic, 0))
            .expect("partition")
            .log
            .offsets()
            .log_end
            .0
    }

    async fn produce(&self, user: &str, topic: &str) -> i16 {
        self.produce_as(user, topic, None).await
    }

    async fn produce_as(&self, user: &str, topic: &str, txn: Option<&str>) -> i16 {
        let req = ProduceRequest::default()
            .with_transactional_id(txn.map(|t| TransactionalId(t.to_string().into())))
            .with_acks(1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(topic.to_string().into()))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch()))])]);
        let ResponseKind::Produce(r) = self
            .call(user, ApiKey::Produce, 9, RequestKind::Produce(req))
            .await
        else {
            panic!("not a Produce response")
        };
        r.responses[0].partition_responses[0].error_code
    }

    /// The error and the record bytes a fetch of `topic` from offset 0 gets.
    async fn fetch(&self, user: &str, topic: &str, replica_id: i32) -> (i16, usize) {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(replica_id))
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(topic.to_string().into()))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)])]);
        let ResponseKind::Fetch(r) = self
            .call(user, ApiKey::Fetch, 12, RequestKind::Fetch(req))
            .await
        else {
            panic!("not a Fetch response")
        };
        let p = &r.responses[0].partitions[0];
        (p.error_code, p.records.as_ref().map_or(0, Bytes::len))
    }

    async fn metadata(&self, user: &str, topics: Option<&[&str]>) -> MetadataResponse {
        let req = MetadataRequest::default().with_topics(topics.map(|ts| {
            ts.iter()
                .map(|t| {
                    MetadataRequestTopic::default().with_name(Some(TopicName(t.to_string().into())))
                })
                .collect()
        }));
        let ResponseKind::Metadata(r) = self
            .call(user, ApiKey::Metadata, 12, RequestKind::Metadata(req))
            .await
        else {
            panic!("not a Metadata response")
        };
        r
    }

    async fn commit(&self, user: &str, group: &str, topic: &str, offset: i64) -> i16 {
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(group.to_string().into()))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(topic.to_string().into()))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)])]);
        let ResponseKind::OffsetCommit(r) = self
            .call(
                user,
                ApiKey::OffsetCommit,
                8,
                RequestKind::OffsetCommit(req),
            )
            .await
        else {
            panic!("not an OffsetCommit response")
        };
        r.topics[0].partitions[0].error_code
    }

    /// Waits until `group`'s coordinator (this broker) has loaded it.
    async fn coordinator_ready(&self, group: &str, topic: &str) {
        for _ in 0..200 {
            let req = FindCoordinatorRequest::default().with_key(group.to_string().into());
            let ResponseKind::FindCoordinator(r) = self
                .call(
                    "admin",
                    ApiKey::FindCoordinator,
                    3,
                    RequestKind::FindCoordinator(req),
                )
                .await
            else {
                panic!("not a FindCoordinator response")
            };
            if r.error_code == 0 {
                let (code, _, _) = self.committed("admin", group, topic).await;
                if code == 0 {
                    return;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the coordinator of {group} never loaded");
    }

    /// (group error, partition error, committed offset) of `group`'s offset on `topic`.
    async fn committed(&self, user: &str, group: &str, topic: &str) -> (i16, i16, i64) {
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(group.to_string().into()))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(topic.to_string().into()))
                .with_partition_indexes(vec![0])]));
        let ResponseKind::OffsetFetch(r) = self
            .call(user, ApiKey::OffsetFetch, 7, RequestKind::OffsetFetch(req))
            .await
        else {
            panic!("not an OffsetFetch response")
        };
        match r.topics.first() {
            Some(t) => (
                r.error_code,
                t.partitions[0].error_code,
                t.partitions[0].committed_offset,
            ),
            None => (r.error_code, 0, -1),
        }
    }
}

fn batch() -> Bytes {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1,
        key: None,
        value: Some(Bytes::from_static(b"secret")),
        headers: Default::default(),
    };
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [&record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode");
    buf.freeze()
}

use AclOperation as Op;
use AclPermissionType::{Allow, Deny};
use PatternType::{Literal, Prefixed};
use ResourceType as Res;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_needs_write_and_a_deny_wins_over_an_allow() {
    let b = secured().await;
    for t in ["orders", "payments", "audit"] {
        b.create_topic(t).await;
    }
    b.grant(
        Res::Topic,
        Literal,
        "orders",
        "User:alice",
        Op::Write,
        Allow,
    )
    .await;
    b.grant(Res::Topic, Literal, "payments", "User:*", Op::Write, Allow)
        .await;
    b.grant(
        Res::Topic,
        Literal,
        "payments",
        "User:alice",
        Op::Write,
        Deny,
    )
    .await;

    assert_eq!(b.produce("alice", "orders").await, 0);
    assert_eq!(b.log_end("orders"), 1);

    // No ACL for bob on orders: refused, nothing appended.
    assert_eq!(b.produce("bob", "orders").await, TOPIC_AUTH);
    assert_eq!(b.log_end("orders"), 1);

    // DENY for alice over the ALLOW for everyone.
    assert_eq!(b.produce("alice", "payments").await, TOPIC_AUTH);
    assert_eq!(b.log_end("payments"), 0);
    assert_eq!(b.produce("bob", "payments").await, 0);
    assert_eq!(b.log_end("payments"), 1);

    // No ACL on the topic at all.
    assert_eq!(b.produce("alice", "audit").await, TOPIC_AUTH);
    assert_eq!(b.log_end("audit"), 0);

    // A transactional id without WRITE on it: refused before the topic is looked at.
    assert_eq!(
        b.produce_as("alice", "orders", Some("tx-1")).await,
        ResponseError::TransactionalIdAuthorizationFailed.code()
    );
    assert_eq!(b.log_end("orders"), 1);

    // A topic that does not exist is refused the same way: existence stays hidden.
    assert_eq!(b.produce("alice", "no-such-topic").await, TOPIC_AUTH);
    assert_eq!(
        b.produce("admin", "no-such-topic").await,
        ResponseError::UnknownTopicOrPartition.code()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_needs_read_and_a_prefix_that_does_not_match_opens_nothing() {
    let b = secured().await;
    b.create_topic("pay-in").await;
    b.create_topic("payments").await;
    assert_eq!(b.produce("admin", "pay-in").await, 0);
    assert_eq!(b.produce("admin", "payments").await, 0);
    b.grant(Res::Topic, Prefixed, "pay-", "User:alice", Op::Read, Allow)
        .await;

    let (code, bytes) = b.fetch("alice", "pay-in", -1).await;
    assert_eq!(code, 0);
    assert!(bytes > 0, "the record is read");

    // `pay-` is not a prefix of `payments`.
    assert_eq!(b.fetch("alice", "payments", -1).await, (TOPIC_AUTH, 0));
    assert_eq!(b.fetch("bob", "pay-in", -1).await, (TOPIC_AUTH, 0));
    // Existence is told only to who may read the name.
    assert_eq!(b.fetch("alice", "missing", -1).await, (TOPIC_AUTH, 0));
    assert_eq!(
        b.fetch("alice", "pay-missing", -1).await,
        (ResponseError::UnknownTopicOrPartition.code(), 0)
    );

    // A follower's fetch needs CLUSTER_ACTION, whatever its topic ACLs.
    assert_eq!(b.fetch("alice", "pay-in", 2).await, (TOPIC_AUTH, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_hides_topics_the_caller_may_not_describe() {
    let b = secured().await;
    b.create_topic("visible").await;
    b.create_topic("hidden").await;
    b.grant(
        Res::Topic,
        Literal,
        "visible",
        "User:alice",
        Op::Read,
        Allow,
    )
    .await;

    let all = b.metadata("alice", None).await;
    let names: Vec<String> = all
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
        .collect();
    assert_eq!(
        names,
        ["visible"],
        "READ implies DESCRIBE; hidden is left out"
    );

    let named = b
        .metadata("alice", Some(&["visible", "hidden", "absent"]))
        .await;
    let codes: Vec<(String, i16, bool)> = named
        .topics
        .iter()
        .map(|t| {
            (
                t.name.as_ref().map(|n| n.to_string()).unwrap_or_default(),
                t.error_code,
                t.partitions.is_empty(),
            )
        })
        .collect();
    assert_eq!(
        codes,
        [
            ("visible".to_string(), 0, false),
            ("hidden".to_string(), TOPIC_AUTH, true),
            ("absent".to_string(), TOPIC_AUTH, true),
        ]
    );
    assert!(
        named.topics[1].topic_id.is_nil(),
        "the hidden topic's id stays hidden"
    );

    let admin = b.metadata("admin", None).await;
    assert_eq!(admin.topics.len(), 2, "a super user sees everything");

    // Authorized operations, when asked: READ, and DESCRIBE which READ implies.
    let req = MetadataRequest::default()
        .with_topics(None)
        .with_include_topic_authorized_operations(true);
    let ResponseKind::Metadata(r) = b
        .call("alice", ApiKey::Metadata, 12, RequestKind::Metadata(req))
        .await
    else {
        panic!("not a Metadata response")
    };
    let bits = (1 << Op::Read.code()) | (1 << Op::Describe.code());
    assert_eq!(r.topics[0].topic_authorized_operations, bits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committing_needs_read_on_the_group_then_on_the_topic() {
    let b = secured().await;
    b.create_topic("orders").await;
    b.create_topic("secret").await;
    b.grant(Res::Topic, Literal, "orders", "User:*", Op::Read, Allow)
        .await;
    b.grant(Res::Group, Literal, "app", "User:alice", Op::Read, Allow)
        .await;
    b.coordinator_ready("app", "orders").await;

    // bob has no READ on the group: refused, nothing committed.
    assert_eq!(b.commit("bob", "app", "orders", 5).await, GROUP_AUTH);
    assert_eq!(b.committed("admin", "app", "orders").await, (0, 0, -1));
    assert_eq!(
        b.committed("bob", "app", "orders").await.0,
        GROUP_AUTH,
        "nor may bob read the group's offsets"
    );

    // alice may use the group, but not the topic `secret`.
    assert_eq!(b.commit("alice", "app", "secret", 7).await, TOPIC_AUTH);
    assert_eq!(b.committed("admin", "app", "secret").await, (0, 0, -1));

    assert_eq!(b.commit("alice", "app", "orders", 5).await, 0);
    assert_eq!(b.committed("alice", "app", "orders").await, (0, 0, 5));
    // An offset committed by someone allowed is still not shown for a topic alice may not
    // describe.
    assert_eq!(b.commit("admin", "app", "secret", 9).await, 0);
    assert_eq!(
        b.committed("alice", "app", "secret").await,
        (0, TOPIC_AUTH, -1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_admin_apis_need_the_cluster_and_an_authorizer() {
    let b = secured().await;
    let creation = AclCreation::default()
        .with_resource_type(Res::Topic.code())
        .with_resource_name("t".into())
        .with_resource_pattern_type(Literal.code())
        .with_principal("User:bob".into())
        .with_host("*".into())
        .with_operation(Op::Read.code())
        .with_permission_type(Allow.code());
    let create = |c: AclCreation| {
        RequestKind::CreateAcls(CreateAclsRequest::default().with_creations(vec![c]))
    };
    let ResponseKind::CreateAcls(r) = b
        .call("bob", ApiKey::CreateAcls, 3, create(creation.clone()))
        .await
    else {
        panic!()
    };
    assert_eq!(r.results[0].error_code, CLUSTER_AUTH);
    let list = DescribeAclsRequest::default()
        .with_resource_name_filter(None)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_resource_type_filter(Res::Any.code())
        .with_pattern_type_filter(PatternType::Any.code())
        .with_operation(Op::Any.code())
        .with_permission_type(AclPermissionType::Any.code());
    let described = |r: ResponseKind| match r {
        ResponseKind::DescribeAcls(r) => r,
        _ => panic!("not DescribeAcls"),
    };
    let r = described(
        b.call(
            "admin",
            ApiKey::DescribeAcls,
            3,
            RequestKind::DescribeAcls(list.clone()),
        )
        .await,
    );
    assert!(r.resources.is_empty(), "bob's creation was refused: {r:?}");
    let r = described(
        b.call(
            "bob",
            ApiKey::DescribeAcls,
            3,
            RequestKind::DescribeAcls(list.clone()),
        )
        .await,
    );
    assert_eq!(r.error_code, CLUSTER_AUTH);

    // Invalid bindings: each refused alone, with INVALID_REQUEST.
    let bad = [
        creation
            .clone()
            .with_resource_pattern_type(PatternType::Match.code()),
        creation.clone().with_principal("bob".into()),
        creation
            .clone()
            .with_resource_pattern_type(Prefixed.code())
            .with_resource_name("*".into()),
        creation.clone().with_operation(Op::Any.code()),
    ];
    let ResponseKind::CreateAcls(r) = b
        .call(
            "admin",
            ApiKey::CreateAcls,
            3,
            RequestKind::CreateAcls(
                CreateAclsRequest::default()
                    .with_creations([&bad[..], std::slice::from_ref(&creation)].concat()),
            ),
        )
        .await
    else {
        panic!()
    };
    let codes: Vec<i16> = r.results.iter().map(|r| r.error_code).collect();
    let invalid = ResponseError::InvalidRequest.code();
    assert_eq!(codes, [invalid, invalid, invalid, invalid, 0]);
    let r = described(
        b.call(
            "admin",
            ApiKey::DescribeAcls,
            3,
            RequestKind::DescribeAcls(list.clone()),
        )
        .await,
    );
    assert_eq!(r.resources.len(), 1);
    assert_eq!(
        r.resources[0].acls.len(),
        1,
        "only the valid binding: {r:?}"
    );

    // Deleting: bob may not; admin's filter removes it.
    let filter = DeleteAclsFilter::default()
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_resource_type_filter(Res::Topic.code())
        .with_pattern_type_filter(PatternType::Match.code())
        .with_resource_name_filter(Some("t".into()))
        .with_operation(Op::Any.code())
        .with_permission_type(AclPermissionType::Any.code());
    let delete =
        RequestKind::DeleteAcls(DeleteAclsRequest::default().with_filters(vec![filter.clone()]));
    let ResponseKind::DeleteAcls(r) = b.call("bob", ApiKey::DeleteAcls, 3, delete.clone()).await
    else {
        panic!()
    };
    assert_eq!(r.filter_results[0].error_code, CLUSTER_AUTH);
    let ResponseKind::DeleteAcls(r) = b.call("admin", ApiKey::DeleteAcls, 3, delete).await else {
        panic!()
    };
    assert_eq!(r.filter_results[0].error_code, 0);
    assert_eq!(r.filter_results[0].matching_acls.len(), 1);
    let r = described(
        b.call(
            "admin",
            ApiKey::DescribeAcls,
            3,
            RequestKind::DescribeAcls(list),
        )
        .await,
    );
    assert!(r.resources.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_authorizer_everything_is_allowed_and_acl_apis_are_disabled() {
    let b = broker(&[]).await;
    b.create_topic("t").await;
    assert_eq!(b.produce("bob", "t").await, 0);
    assert_eq!(b.fetch("bob", "t", -1).await.0, 0);
    let ResponseKind::CreateAcls(r) = b
        .call(
            "bob",
            ApiKey::CreateAcls,
            3,
            RequestKind::CreateAcls(CreateAclsRequest::default().with_creations(vec![
                AclCreation::default()
                    .with_resource_type(Res::Topic.code())
                    .with_resource_name("t".into())
                    .with_resource_pattern_type(Literal.code())
                    .with_principal("User:bob".into())
                    .with_host("*".into())
                    .with_operation(Op::Read.code())
                    .with_permission_type(Allow.code()),
            ])),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(
        r.results[0].error_code,
        ResponseError::SecurityDisabled.code()
    );
    assert!(b.server.replica_manager().topic("t").is_some());
}

mod admin;
mod groups;
