//! CreatePartitions: raise a topic's partition count, the new replicas placed by the
//! controller or assigned in the request, answering per topic.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use sluice_replication::controller;

use super::registry::{Operation, Resource};
use super::{str_bytes, Context};
use crate::error::BrokerError;
use crate::error_map;

pub(super) async fn handle(ctx: Context, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let assignments: Option<Vec<Vec<i32>>> = t.assignments.as_ref().map(|a| {
            a.iter()
                .map(|p| p.broker_ids.iter().map(|b| b.0).collect())
                .collect()
        });
        let allowed = ctx.authorized(Resource::Topic, t.name.as_str(), Operation::Alter);
        let outcome = if !allowed {
            Err(BrokerError::TopicAuthorizationFailed)
        } else if req.validate_only {
            // What the controller would decide, decided here over this broker's image.
            controller::create_partitions(
                &ctx.cluster.image(),
                t.name.as_str(),
                t.count,
                assignments.as_deref(),
                0,
            )
            .map(|_| ())
            .map_err(BrokerError::from)
        } else {
            ctx.cluster
                .create_partitions(t.name.as_str(), t.count, assignments)
                .await
        };
        results.push(match outcome {
            Ok(()) => r,
            Err(e) => r
                .with_error_code(error_map::code(&e))
                .with_error_message(Some(str_bytes(e.to_string()))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
