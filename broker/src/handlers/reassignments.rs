//! AlterPartitionReassignments and ListPartitionReassignments (KIP-455): move partitions to
//! other replicas. The controller adds the new replicas, which catch up as followers and join
//! the ISR; then the old ones leave and leadership follows the new preferred replica.

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use sluice_replication::quorum::service::{ControllerRequest, ControllerResponse};

use super::{str_bytes, Context};
use crate::error::BrokerError;
use crate::error_map;

fn ids(v: &[i32]) -> Vec<BrokerId> {
    v.iter().copied().map(BrokerId).collect()
}

pub(super) async fn alter(
    ctx: Context,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let partitions: Vec<(String, i32, Option<Vec<i32>>)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.as_str().to_string(),
                    p.partition_index,
                    p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect()),
                )
            })
        })
        .collect();
    let answer = ctx
        .cluster
        .decide(ControllerRequest::AlterReassignments {
            partitions: partitions.clone(),
        })
        .await;
    let results: Vec<(i16, Option<String>)> = match answer {
        Ok(ControllerResponse::Reassigned { results }) => results
            .into_iter()
            .map(|r| match r {
                Ok(()) => (0, None),
                Err(e) => (error_map::controller_error(&e).code(), Some(e.to_string())),
            })
            .collect(),
        Ok(other) => {
            let e = BrokerError::Metadata(format!("unexpected controller answer {other:?}"));
            vec![(error_map::code(&e), Some(e.to_string())); partitions.len()]
        }
        Err(e) => vec![(error_map::code(&e), Some(e.to_string())); partitions.len()],
    };
    let mut results = results.into_iter();
    let responses = req
        .topics
        .iter()
        .map(|t| {
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    let (code, msg) = results.next().unwrap_or((-1, None));
                    ReassignablePartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                        .with_error_message(msg.map(str_bytes))
                })
                .collect();
            ReassignableTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(parts)
        })
        .collect();
    AlterPartitionReassignmentsResponse::default().with_responses(responses)
}

pub(super) fn list(
    ctx: &Context,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let image = ctx.cluster.image();
    let wanted = |topic: &str, p: i32| {
        req.topics.as_ref().is_none_or(|ts| {
            ts.iter()
                .any(|t| t.name.as_str() == topic && t.partition_indexes.contains(&p))
        })
    };
    let topics = image
        .topics
        .values()
        .filter_map(|t| {
            let parts: Vec<OngoingPartitionReassignment> = t
                .partitions
                .iter()
                .enumerate()
                .filter(|(i, p)| {
                    (!p.adding.is_empty() || !p.removing.is_empty()) && wanted(&t.name, *i as i32)
                })
                .map(|(i, p)| {
                    OngoingPartitionReassignment::default()
                        .with_partition_index(i as i32)
                        .with_replicas(ids(&p.replicas))
                        .with_adding_replicas(ids(&p.adding))
                        .with_removing_replicas(ids(&p.removing))
                })
                .collect();
            (!parts.is_empty()).then(|| {
                OngoingTopicReassignment::default()
                    .with_name(TopicName(str_bytes(t.name.clone())))
                    .with_partitions(parts)
            })
        })
        .collect();
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}
