//! CreateTopics: validate (name, partitions, replication factor or a manual replica
//! assignment, configs) and create, or only validate when `validate_only`.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use sluice_replication::controller::{self, TopicShape};

use super::registry::{Operation, Resource};
use super::{str_bytes, Context};
use crate::error::BrokerError;
use crate::error_map;

/// DescribeConfigs/CreateTopics config source: the topic's own override.
const SOURCE_TOPIC: i8 = 1;
/// ... or the broker default.
const SOURCE_DEFAULT: i8 = 5;

pub(super) async fn handle(ctx: Context, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.as_str().to_string();
        let configs: BTreeMap<String, String> = t
            .configs
            .iter()
            .filter_map(|c| {
                Some((
                    c.name.as_str().to_string(),
                    c.value.as_ref()?.as_str().to_string(),
                ))
            })
            .collect();
        let r = CreatableTopicResult::default().with_name(t.name.clone());
        let assignments: Vec<(i32, Vec<i32>)> = t
            .assignments
            .iter()
            .map(|a| {
                (
                    a.partition_index,
                    a.broker_ids.iter().map(|b| b.0).collect(),
                )
            })
            .collect();
        // CREATE on the cluster covers every topic; on a topic (or prefix), that topic.
        let may_create = ctx.cluster_authorized(Operation::Create)
            || ctx.authorized(Resource::Topic, &name, Operation::Create);
        let outcome = if !may_create {
            Err(BrokerError::TopicAuthorizationFailed)
        } else if req.validate_only && !assignments.is_empty() {
            validate_manual(
                &ctx,
                &name,
                TopicShape {
                    partitions: t.num_partitions,
                    replication_factor: t.replication_factor,
                    assignments: assignments.clone(),
                },
                &configs,
            )
        } else if req.validate_only {
            validate(
                &ctx,
                &name,
                t.num_partitions,
                t.replication_factor,
                &configs,
            )
        } else {
            ctx.cluster
                .create_topic(
                    &ctx.rm,
                    &name,
                    t.num_partitions,
                    t.replication_factor,
                    configs.clone(),
                    assignments.clone(),
                )
                .await
                .map(|_| ())
        };
        topics.push(match outcome {
            Ok(()) => {
                let (partitions, rf) = match assignments.first() {
                    Some((_, replicas)) => (assignments.len() as i32, replicas.len() as i16),
                    None => ctx
                        .rm
                        .config()
                        .topic_shape(t.num_partitions, t.replication_factor),
                };
                let effective = ctx
                    .rm
                    .topic_config(&configs)
                    .map(|(log, _)| log.describe())
                    .unwrap_or_default();
                let cfgs = effective
                    .into_iter()
                    .map(|e| {
                        let source = if configs.contains_key(&e.name) {
                            SOURCE_TOPIC
                        } else {
                            SOURCE_DEFAULT
                        };
                        CreatableTopicConfigs::default()
                            .with_name(str_bytes(e.name))
                            .with_value(Some(str_bytes(e.value)))
                            .with_config_source(source)
                    })
                    .collect();
                let id = ctx.rm.topic(&name).map(|t| t.meta.id).unwrap_or_default();
                r.with_topic_id(if req.validate_only {
                    Default::default()
                } else {
                    id
                })
                .with_num_partitions(partitions)
                .with_replication_factor(rf)
                .with_configs(Some(cfgs))
            }
            Err(e) => r
                .with_error_code(error_map::code(&e))
                .with_error_message(Some(str_bytes(e.to_string())))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        });
    }
    CreateTopicsResponse::default().with_topics(topics)
}

/// What the controller would decide on a manual assignment, decided here over this
/// broker's image (validate_only creates nothing).
fn validate_manual(
    ctx: &Context,
    name: &str,
    shape: TopicShape,
    configs: &BTreeMap<String, String>,
) -> Result<(), BrokerError> {
    ctx.rm.validate_new_topic(name, configs)?;
    controller::create_topic(
        &ctx.cluster.image(),
        uuid::Uuid::nil(),
        name,
        shape,
        configs.clone(),
        0,
    )?;
    Ok(())
}

/// What the controller would check, checked here (validate_only creates nothing).
fn validate(
    ctx: &Context,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &BTreeMap<String, String>,
) -> Result<(), BrokerError> {
    ctx.rm.validate_new_topic(name, configs)?;
    let (partitions, rf) = ctx.rm.config().topic_shape(partitions, replication_factor);
    if partitions < 1 {
        return Err(BrokerError::InvalidPartitions(format!(
            "number of partitions must be at least 1, got {partitions}"
        )));
    }
    let live = ctx.cluster.image().live_brokers().count();
    if rf < 1 || rf as usize > live {
        return Err(BrokerError::InvalidReplicationFactor(format!(
            "replication factor {rf} must be between 1 and the {live} available broker(s)"
        )));
    }
    if ctx.rm.topic(name).is_some() {
        return Err(BrokerError::TopicAlreadyExists(format!(
            "topic {name:?} already exists"
        )));
    }
    Ok(())
}
