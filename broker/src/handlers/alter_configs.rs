//! AlterConfigs (replace a topic's overrides) and IncrementalAlterConfigs (KIP-339: set,
//! delete, append, subtract). Broker configs are static in Sluice and refused.

use std::collections::BTreeMap;

use kafka_protocol::messages::{alter_configs_response, incremental_alter_configs_response};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::describe_configs::{config_refusal, TOPIC};
use super::registry::Operation;
use super::{str_bytes, Context};
use crate::error::BrokerError;
use crate::error_map;

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

async fn apply(
    ctx: &Context,
    resource_type: i8,
    name: &StrBytes,
    validate_only: bool,
    edit: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), BrokerError>,
) -> (i16, Option<StrBytes>) {
    let refused = config_refusal(ctx, resource_type, name.as_str(), Operation::AlterConfigs);
    if let Some(e) = refused {
        return (error_map::code(&e), Some(str_bytes(e.to_string())));
    }
    if resource_type != TOPIC {
        return (
            error_map::code(&BrokerError::InvalidRequest(String::new())),
            Some(str_bytes(
                "only topic configs can be altered; broker configs are static",
            )),
        );
    }
    let planned = ctx
        .rm
        .topic(name.as_str())
        .ok_or(BrokerError::UnknownTopicOrPartition)
        .and_then(|t| {
            let mut configs = t.meta.configs.clone();
            edit(&mut configs)?;
            ctx.rm.topic_config(&configs)?;
            let old = &t.meta.configs;
            let mut changes: Vec<(String, Option<String>)> = configs
                .iter()
                .filter(|(k, v)| old.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect();
            changes.extend(
                old.keys()
                    .filter(|k| !configs.contains_key(*k))
                    .map(|k| (k.clone(), None)),
            );
            Ok(changes)
        });
    let result = match planned {
        Ok(changes) if !validate_only && !changes.is_empty() => {
            ctx.cluster
                .alter_topic_configs(name.as_str(), changes)
                .await
        }
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => (0, None),
        Err(e) => (error_map::code(&e), Some(str_bytes(e.to_string()))),
    }
}

pub(super) async fn handle(ctx: Context, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        responses.push({
            let (code, msg) = apply(
                &ctx,
                r.resource_type,
                &r.resource_name,
                req.validate_only,
                |c| {
                    *c = r
                        .configs
                        .iter()
                        .filter_map(|e| Some((e.name.to_string(), e.value.as_ref()?.to_string())))
                        .collect();
                    Ok(())
                },
            )
            .await;
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name)
                .with_error_code(code)
                .with_error_message(msg)
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}

pub(super) async fn handle_incremental(
    ctx: Context,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        responses.push({
            let (code, msg) = apply(
                &ctx,
                r.resource_type,
                &r.resource_name,
                req.validate_only,
                |c| {
                    for e in &r.configs {
                        let key = e.name.to_string();
                        let value = e.value.as_ref().map(|v| v.to_string());
                        match (e.config_operation, value) {
                            (SET, Some(v)) => {
                                c.insert(key, v);
                            }
                            (DELETE, _) => {
                                c.remove(&key);
                            }
                            (APPEND | SUBTRACT, Some(v)) if key == "cleanup.policy" => {
                                let mut items: Vec<String> = c.get(&key).map_or_else(
                                    || vec!["delete".to_string()],
                                    |cur| cur.split(',').map(str::to_string).collect(),
                                );
                                if e.config_operation == APPEND {
                                    items.extend(
                                        v.split(',')
                                            .map(str::to_string)
                                            .filter(|x| !items.contains(x))
                                            .collect::<Vec<_>>(),
                                    );
                                } else {
                                    items.retain(|x| !v.split(',').any(|s| s == x));
                                }
                                c.insert(key, items.join(","));
                            }
                            (op, _) => {
                                return Err(BrokerError::InvalidConfig(format!(
                                    "operation {op} is not valid for {key}"
                                )))
                            }
                        }
                    }
                    Ok(())
                },
            )
            .await;
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name)
                .with_error_code(code)
                .with_error_message(msg)
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
