//! DescribeConfigs: every config of a topic (value, source, sensitivity), or of this broker.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::registry::{Operation, Resource};
use super::{str_bytes, Context};
use crate::error::BrokerError;
use crate::error_map;

/// Kafka's ConfigResource types.
pub(super) const TOPIC: i8 = 2;
pub(super) const BROKER: i8 = 4;
const BROKER_LOGGER: i8 = 8;

/// Why the session may not `op` (describe or alter) the configs of a resource, as Kafka
/// checks it: a topic's on the topic, a broker's on the cluster.
pub(super) fn config_refusal(
    ctx: &Context,
    resource_type: i8,
    name: &str,
    op: Operation,
) -> Option<BrokerError> {
    match resource_type {
        TOPIC if !ctx.authorized(Resource::Topic, name, op) => {
            Some(BrokerError::TopicAuthorizationFailed)
        }
        BROKER | BROKER_LOGGER if !ctx.cluster_authorized(op) => {
            Some(BrokerError::ClusterAuthorizationFailed)
        }
        _ => None,
    }
}
/// Kafka's config sources.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;

pub(super) fn handle(ctx: &Context, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            // Null or empty keys mean "all", as Kafka treats them (kafka-python sends an empty list).
            let wanted = |k: &str| {
                r.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.is_empty() || keys.iter().any(|w| w.as_str() == k))
            };
            let base = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let refused = config_refusal(
                ctx,
                r.resource_type,
                r.resource_name.as_str(),
                Operation::DescribeConfigs,
            );
            if let Some(e) = refused {
                return base
                    .with_error_code(error_map::code(&e))
                    .with_error_message(Some(str_bytes(e.to_string())));
            }
            let entries: Vec<(String, String, i8, bool)> = match r.resource_type {
                TOPIC => match ctx.rm.topic(r.resource_name.as_str()) {
                    Some(t) => {
                        let mut entries: Vec<(String, String, bool)> = t
                            .config
                            .describe()
                            .into_iter()
                            .map(|e| (e.name, e.value, e.is_default))
                            .collect();
                        let broker_min = ctx.rm.config().cluster.min_insync_replicas;
                        entries.push((
                            "min.insync.replicas".into(),
                            t.min_insync_replicas.to_string(),
                            broker_min == 1,
                        ));
                        entries.push((
                            "unclean.leader.election.enable".into(),
                            t.meta
                                .configs
                                .get("unclean.leader.election.enable")
                                .cloned()
                                .unwrap_or_else(|| "false".into()),
                            true,
                        ));
                        entries.sort();
                        entries
                            .into_iter()
                            .map(|(name, value, is_default)| {
                                let source = if t.meta.configs.contains_key(&name) {
                                    DYNAMIC_TOPIC_CONFIG
                                } else if is_default {
                                    DEFAULT_CONFIG
                                } else {
                                    STATIC_BROKER_CONFIG
                                };
                                (name, value, source, false)
                            })
                            .collect()
                    }
                    None => {
                        return base.with_error_code(error_map::code(
                            &BrokerError::UnknownTopicOrPartition,
                        ))
                    }
                },
                BROKER
                    if r.resource_name.as_str().is_empty()
                        || r.resource_name.as_str() == ctx.rm.config().node_id.to_string() =>
                {
                    ctx.rm
                        .config()
                        .describe()
                        .into_iter()
                        .map(|(k, v)| (k, v, STATIC_BROKER_CONFIG, true))
                        .collect()
                }
                BROKER => {
                    let e = BrokerError::InvalidRequest("unknown broker id".into());
                    return base
                        .with_error_code(error_map::code(&e))
                        .with_error_message(Some(str_bytes(e.to_string())));
                }
                _ => {
                    let e = BrokerError::InvalidRequest("unsupported resource type".into());
                    return base
                        .with_error_code(error_map::code(&e))
                        .with_error_message(Some(str_bytes(e.to_string())));
                }
            };
            let configs = entries
                .into_iter()
                .filter(|(k, ..)| wanted(k))
                .map(|(k, v, source, read_only)| {
                    DescribeConfigsResourceResult::default()
                        .with_name(str_bytes(k))
                        .with_value(Some(str_bytes(v)))
                        .with_config_source(source)
                        .with_read_only(read_only)
                })
                .collect();
            base.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
