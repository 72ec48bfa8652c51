//! Metadata: the live brokers and every topic's partitions with leader, leader epoch,
//! replicas and ISR, from the committed metadata image. Auto-creates topics (through the
//! controller) only when the request allows it and `auto.create.topics.enable` is on.
//!
//! Authorization as Kafka's: topics the session may not DESCRIBE are left out of an
//! all-topics answer and answered TOPIC_AUTHORIZATION_FAILED when named (whether or not they
//! exist); auto-creation needs CREATE on the cluster or the topic.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, MetadataRequest, MetadataResponse, ResponseKind, TopicName,
};
use sluice_replication::acl::{ResourceType, CLUSTER_NAME};
use sluice_replication::image::{MetadataImage, Topic, NO_LEADER};
use uuid::Uuid;

use super::registry::{Operation, Resource};
use super::{str_bytes, Context, Reply};
use crate::error::BrokerError;
use crate::error_map;
use crate::replica_manager::validate_topic_name;
use crate::security::access::{CLUSTER_OPERATIONS, TOPIC_OPERATIONS};

fn ids(v: &[i32]) -> Vec<BrokerId> {
    v.iter().copied().map(BrokerId).collect()
}

fn topic_response(image: &MetadataImage, t: &Topic) -> MetadataResponseTopic {
    let partitions = t
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let offline: Vec<i32> = p
                .replicas
                .iter()
                .copied()
                .filter(|r| !image.is_live(*r))
                .collect();
            let r = MetadataResponsePartition::default()
                .with_partition_index(i as i32)
                .with_leader_id(BrokerId(p.leader))
                .with_leader_epoch(p.leader_epoch.0)
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&p.isr))
                .with_offline_replicas(ids(&offline));
            if p.leader == NO_LEADER {
                r.with_error_code(error_map::code(&BrokerError::LeaderNotAvailable))
            } else {
                r
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(t.name.clone()))))
        .with_topic_id(t.id)
        .with_is_internal(t.name.starts_with("__"))
        .with_partitions(partitions)
}

fn error_topic(name: Option<TopicName>, id: Uuid, error: BrokerError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name)
        .with_topic_id(id)
        .with_error_code(error_map::code(&error))
}

fn describable(ctx: &Context, image: &MetadataImage, name: &str) -> bool {
    ctx.authorized_in(image, Resource::Topic, name, Operation::Describe)
}

/// Whether the session may auto-create `name`.
fn may_create(ctx: &Context, image: &MetadataImage, name: &str) -> bool {
    ctx.authorized_in(image, Resource::Cluster, CLUSTER_NAME, Operation::Create)
        || ctx.authorized_in(image, Resource::Topic, name, Operation::Create)
}

fn respond(ctx: &Context, req: &MetadataRequest, auto_create: bool) -> MetadataResponse {
    let image = ctx.cluster.image();
    let all = req.topics.is_none()
        || (ctx.version == 0 && req.topics.as_ref().is_some_and(Vec::is_empty));
    let described = |t: &Topic| {
        let mut r = topic_response(&image, t);
        if req.include_topic_authorized_operations {
            r.topic_authorized_operations =
                ctx.authorized_operations(&image, ResourceType::Topic, &t.name, TOPIC_OPERATIONS);
        }
        r
    };
    let denied = |name: Option<TopicName>, id: Uuid| {
        error_topic(name, id, BrokerError::TopicAuthorizationFailed)
    };
    let topics = if all {
        image
            .topics
            .values()
            .filter(|t| describable(ctx, &image, &t.name))
            .map(described)
            .collect()
    } else {
        req.topics
            .iter()
            .flatten()
            .map(|rt| match &rt.name {
                Some(name) if !describable(ctx, &image, name.as_str()) => {
                    denied(Some(name.clone()), Uuid::nil())
                }
                Some(name) => match image.topic_by_name(name.as_str()) {
                    Some(t) => described(t),
                    None if auto_create && !may_create(ctx, &image, name.as_str()) => {
                        denied(Some(name.clone()), Uuid::nil())
                    }
                    None => {
                        let e = validate_topic_name(name.as_str())
                            .err()
                            .unwrap_or(BrokerError::UnknownTopicOrPartition);
                        error_topic(Some(name.clone()), Uuid::nil(), e)
                    }
                },
                None => match image.topics.get(&rt.topic_id) {
                    Some(t) if !describable(ctx, &image, &t.name) => denied(None, rt.topic_id),
                    Some(t) => described(t),
                    None => error_topic(None, rt.topic_id, BrokerError::UnknownTopicId),
                },
            })
            .collect()
    };
    let brokers = super::live_brokers(&image, ctx.session.listener)
        .into_iter()
        .map(|(id, host, port, rack)| {
            let mut r = MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(str_bytes(host))
                .with_port(port);
            r.rack = rack.map(str_bytes);
            r
        })
        .collect();
    let mut resp = MetadataResponse::default();
    if req.include_cluster_authorized_operations {
        resp.cluster_authorized_operations = ctx.authorized_operations(
            &image,
            ResourceType::Cluster,
            CLUSTER_NAME,
            CLUSTER_OPERATIONS,
        );
    }
    resp.with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(ctx.rm.config().cluster_id.clone())))
        .with_controller_id(BrokerId(ctx.cluster.controller_id().unwrap_or(-1)))
        .with_topics(topics)
}

pub(super) fn handle(ctx: Context, req: MetadataRequest) -> Reply {
    let allow_auto = req.allow_auto_topic_creation && ctx.rm.config().auto_create_topics;
    let image = ctx.cluster.image();
    let missing: Vec<String> = req
        .topics
        .iter()
        .flatten()
        .filter_map(|t| t.name.as_ref())
        .map(|n| n.as_str().to_string())
        .filter(|n| image.topic_by_name(n).is_none() && validate_topic_name(n).is_ok())
        .filter(|n| describable(&ctx, &image, n) && may_create(&ctx, &image, n))
        .collect();
    if !allow_auto || missing.is_empty() {
        return Reply::now(ResponseKind::Metadata(respond(&ctx, &req, allow_auto)));
    }
    Reply::Later(Box::pin(async move {
        for name in &missing {
            if let Err(e) = ctx.cluster.auto_create(&ctx.rm, name).await {
                tracing::info!(topic = %name, error = %e, "auto-creation failed");
            }
        }
        ResponseKind::Metadata(respond(&ctx, &req, allow_auto))
    }))
}
