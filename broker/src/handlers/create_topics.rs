//! CreateTopics: validate (name, partitions, replication factor, configs) and create, or only
//! validate when `validate_only`.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::{str_bytes, Context};
use crate::error::BrokerError;
use crate::error_map;

/// DescribeConfigs/CreateTopics config source: the topic's own override.
const SOURCE_TOPIC: i8 = 1;
/// ... or the broker default.
const SOURCE_DEFAULT: i8 = 5;

pub(super) fn handle(ctx: &Context, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
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
            let outcome = if !t.assignments.is_empty() {
                Err(BrokerError::InvalidRequest(
                    "manual replica assignment is not supported".into(),
                ))
            } else if req.validate_only {
                ctx.rm
                    .validate_new_topic(&name, t.num_partitions, t.replication_factor, &configs)
                    .map(|(p, rf)| (p, rf, None))
            } else {
                ctx.rm
                    .create_topic(
                        &name,
                        t.num_partitions,
                        t.replication_factor,
                        configs.clone(),
                    )
                    .map(|topic| (topic.partitions.len() as i32, 1, Some(topic)))
            };
            match outcome {
                Ok((partitions, rf, topic)) => {
                    let effective = match &topic {
                        Some(t) => t.config.describe(),
                        None => Vec::new(),
                    };
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
                    r.with_topic_id(topic.map(|t| t.meta.id).unwrap_or_default())
                        .with_num_partitions(partitions)
                        .with_replication_factor(rf)
                        .with_configs(Some(cfgs))
                }
                Err(e) => r
                    .with_error_code(error_map::code(&e))
                    .with_error_message(Some(str_bytes(e.to_string())))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}
