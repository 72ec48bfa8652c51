//! DeleteTopics: by name (all versions) or by topic id (v6+).

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};

use super::registry::{Operation, Resource};
use super::{str_bytes, Context};
use crate::error::BrokerError;
use crate::error_map;

pub(super) async fn handle(ctx: Context, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut targets: Vec<(Option<TopicName>, uuid::Uuid)> = req
        .topic_names
        .into_iter()
        .map(|n| (Some(n), uuid::Uuid::nil()))
        .collect();
    targets.extend(req.topics.into_iter().map(|t| (t.name, t.topic_id)));
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        responses.push({
            let topic = match &name {
                Some(n) => ctx.rm.topic(n.as_str()),
                None => ctx.rm.topic_by_id(id),
            };
            let r = DeletableTopicResult::default()
                .with_name(name.clone())
                .with_topic_id(id);
            // Refused before existence, by name; by id an unknown id says nothing of a name.
            let denied = |n: &str| !ctx.authorized(Resource::Topic, n, Operation::Delete);
            let refused = match (&topic, &name) {
                (Some(t), _) => denied(&t.meta.name),
                (None, Some(n)) => denied(n.as_str()),
                (None, None) => false,
            };
            if refused {
                let e = BrokerError::TopicAuthorizationFailed;
                responses.push(r.with_error_code(error_map::code(&e)));
                continue;
            }
            let Some(topic) = topic else {
                let e = if name.is_none() {
                    BrokerError::UnknownTopicId
                } else {
                    BrokerError::UnknownTopicOrPartition
                };
                responses.push(r.with_error_code(error_map::code(&e)));
                continue;
            };
            let r = r
                .with_name(Some(TopicName(str_bytes(topic.meta.name.clone()))))
                .with_topic_id(topic.meta.id);
            match ctx.cluster.delete_topic(&topic.meta.name).await {
                Ok(()) => r,
                Err(e) => r
                    .with_error_code(error_map::code(&e))
                    .with_error_message(Some(str_bytes(e.to_string()))),
            }
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
