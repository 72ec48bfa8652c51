//! Metadata: the live brokers and every topic's partitions with leader, leader epoch,
//! replicas and ISR, from the committed metadata image. Auto-creates topics (through the
//! controller) only when the request allows it and `auto.create.topics.enable` is on.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, MetadataRequest, MetadataResponse, ResponseKind, TopicName,
};
use sluice_replication::image::{MetadataImage, Topic, NO_LEADER};
use uuid::Uuid;

use super::{str_bytes, Context, Reply};
use crate::error::BrokerError;
use crate::error_map;
use crate::replica_manager::validate_topic_name;

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

fn respond(ctx: &Context, req: &MetadataRequest) -> MetadataResponse {
    let image = ctx.cluster.image();
    let all = req.topics.is_none()
        || (ctx.version == 0 && req.topics.as_ref().is_some_and(Vec::is_empty));
    let topics = if all {
        image
            .topics
            .values()
            .map(|t| topic_response(&image, t))
            .collect()
    } else {
        req.topics
            .iter()
            .flatten()
            .map(|rt| match &rt.name {
                Some(name) => match image.topic_by_name(name.as_str()) {
                    Some(t) => topic_response(&image, t),
                    None => {
                        let e = validate_topic_name(name.as_str())
                            .err()
                            .unwrap_or(BrokerError::UnknownTopicOrPartition);
                        error_topic(Some(name.clone()), Uuid::nil(), e)
                    }
                },
                None => match image.topics.get(&rt.topic_id) {
                    Some(t) => topic_response(&image, t),
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
    MetadataResponse::default()
        .with_brokers(brokers)
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
        .collect();
    if !allow_auto || missing.is_empty() {
        return Reply::now(ResponseKind::Metadata(respond(&ctx, &req)));
    }
    Reply::Later(Box::pin(async move {
        for name in &missing {
            if let Err(e) = ctx.cluster.auto_create(&ctx.rm, name).await {
                tracing::info!(topic = %name, error = %e, "auto-creation failed");
            }
        }
        ResponseKind::Metadata(respond(&ctx, &req))
    }))
}
