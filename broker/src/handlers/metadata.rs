//! Metadata: brokers (this node) and topics with their partitions, leaders and topic ids;
//! auto-creates topics only when the request allows it and `auto.create.topics.enable` is on.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use uuid::Uuid;

use super::{str_bytes, Context};
use crate::error_map;
use crate::replica_manager::{validate_topic_name, Topic};

fn topic_response(t: &Topic, node: i32) -> MetadataResponseTopic {
    let partitions = (0..t.partitions.len() as i32)
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(BrokerId(node))
                .with_leader_epoch(0)
                .with_replica_nodes(vec![BrokerId(node)])
                .with_isr_nodes(vec![BrokerId(node)])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(t.meta.name.clone()))))
        .with_topic_id(t.meta.id)
        .with_is_internal(t.meta.name.starts_with("__"))
        .with_partitions(partitions)
}

fn error_topic(name: Option<TopicName>, id: Uuid, error: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name)
        .with_topic_id(id)
        .with_error_code(error.code())
}

pub(super) fn handle(ctx: &Context, req: MetadataRequest) -> MetadataResponse {
    let rm = &ctx.rm;
    let node = rm.config().node_id;
    // v0 has no "null = all topics"; an empty list means all there.
    let all = req.topics.is_none()
        || (ctx.version == 0 && req.topics.as_ref().is_some_and(Vec::is_empty));
    let allow_auto = req.allow_auto_topic_creation && rm.config().auto_create_topics;
    let topics = if all {
        rm.topics()
            .iter()
            .map(|t| topic_response(t, node))
            .collect()
    } else {
        req.topics
            .unwrap_or_default()
            .into_iter()
            .map(|rt| match rt.name {
                Some(name) => {
                    if let Some(t) = rm.topic(name.as_str()) {
                        return topic_response(&t, node);
                    }
                    if let Err(e) = validate_topic_name(name.as_str()) {
                        return error_topic(Some(name), Uuid::nil(), error_map::response_error(&e));
                    }
                    if !allow_auto {
                        return error_topic(
                            Some(name),
                            Uuid::nil(),
                            ResponseError::UnknownTopicOrPartition,
                        );
                    }
                    match rm.auto_create(name.as_str()) {
                        Ok(t) => topic_response(&t, node),
                        Err(e) => {
                            error_topic(Some(name), Uuid::nil(), error_map::response_error(&e))
                        }
                    }
                }
                None => match rm.topic_by_id(rt.topic_id) {
                    Some(t) => topic_response(&t, node),
                    None => error_topic(None, rt.topic_id, ResponseError::UnknownTopicId),
                },
            })
            .collect()
    };
    let (host, port) = ctx.advertised.clone();
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(node))
            .with_host(str_bytes(host))
            .with_port(port as i32)])
        .with_cluster_id(Some(str_bytes(rm.config().cluster_id.clone())))
        .with_controller_id(BrokerId(node))
        .with_topics(topics)
}
