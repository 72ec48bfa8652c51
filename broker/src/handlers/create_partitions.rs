//! CreatePartitions: raise a topic's partition count, answering per topic.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{str_bytes, Context};
use crate::error::BrokerError;
use crate::error_map;

pub(super) fn handle(ctx: &Context, req: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            let outcome = if t.assignments.is_some() {
                Err(BrokerError::InvalidRequest(
                    "manual replica assignment is not supported".into(),
                ))
            } else {
                ctx.rm
                    .create_partitions(t.name.as_str(), t.count, req.validate_only)
            };
            match outcome {
                Ok(()) => r,
                Err(e) => r
                    .with_error_code(error_map::code(&e))
                    .with_error_message(Some(str_bytes(e.to_string()))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
