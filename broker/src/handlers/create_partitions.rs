//! CreatePartitions: raise a topic's partition count, answering per topic.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::registry::{Operation, Resource};
use super::{str_bytes, Context};
use crate::error::BrokerError;
use crate::error_map;

pub(super) async fn handle(ctx: Context, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let allowed = ctx.authorized(Resource::Topic, t.name.as_str(), Operation::Alter);
        let outcome = match ctx.rm.topic(t.name.as_str()) {
            _ if !allowed => Err(BrokerError::TopicAuthorizationFailed),
            _ if t.assignments.is_some() => Err(BrokerError::InvalidRequest(
                "manual replica assignment is not supported".into(),
            )),
            None => Err(BrokerError::UnknownTopicOrPartition),
            Some(topic) if t.count <= topic.meta.partitions => {
                Err(BrokerError::InvalidPartitions(format!(
                    "topic {} has {} partitions; the new count {} must be larger",
                    t.name.as_str(),
                    topic.meta.partitions,
                    t.count
                )))
            }
            Some(_) if req.validate_only => Ok(()),
            Some(_) => {
                ctx.cluster
                    .create_partitions(t.name.as_str(), t.count)
                    .await
            }
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
