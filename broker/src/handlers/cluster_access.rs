//! Authorization of the APIs whose resource is the cluster, in front of their handlers, as
//! Kafka's KafkaApis checks them: DESCRIBE on the cluster to describe log directories and
//! list reassignments, ALTER to elect leaders and reassign partitions, refused with
//! CLUSTER_AUTHORIZATION_FAILED before anything is read or changed. DescribeCluster is open
//! to all, as in Kafka; only its authorized-operations field depends on the ACLs.

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::*;
use sluice_replication::acl::{ResourceType, CLUSTER_NAME};

use super::registry::Operation;
use super::{
    describe_cluster, describe_log_dirs, elect_leaders, reassignments, str_bytes, Context,
};
use crate::error::BrokerError;
use crate::error_map;
use crate::security::access::CLUSTER_OPERATIONS;

fn refused() -> (i16, Option<kafka_protocol::protocol::StrBytes>) {
    let e = BrokerError::ClusterAuthorizationFailed;
    (error_map::code(&e), Some(str_bytes(e.to_string())))
}

pub(super) fn describe_cluster(
    ctx: &Context,
    req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let include = req.include_cluster_authorized_operations;
    let mut resp = describe_cluster::handle(ctx, req);
    if include {
        let image = ctx.cluster.image();
        resp.cluster_authorized_operations = if ctx.cluster_authorized(Operation::Describe) {
            ctx.authorized_operations(
                &image,
                ResourceType::Cluster,
                CLUSTER_NAME,
                CLUSTER_OPERATIONS,
            )
        } else {
            0
        };
    }
    resp
}

pub(super) fn describe_log_dirs(
    ctx: &Context,
    req: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    if !ctx.cluster_authorized(Operation::Describe) {
        return DescribeLogDirsResponse::default().with_error_code(refused().0);
    }
    describe_log_dirs::handle(ctx, req)
}

pub(super) async fn elect_leaders(ctx: Context, req: ElectLeadersRequest) -> ElectLeadersResponse {
    if ctx.cluster_authorized(Operation::Alter) {
        return elect_leaders::handle(ctx, req).await;
    }
    let (code, message) = refused();
    let results = req
        .topic_partitions
        .iter()
        .flatten()
        .map(|t| {
            ReplicaElectionResult::default()
                .with_topic(t.topic.clone())
                .with_partition_result(
                    t.partitions
                        .iter()
                        .map(|p| {
                            PartitionResult::default()
                                .with_partition_id(*p)
                                .with_error_code(code)
                                .with_error_message(message.clone())
                        })
                        .collect(),
                )
        })
        .collect();
    ElectLeadersResponse::default()
        .with_error_code(code)
        .with_replica_election_results(results)
}

pub(super) async fn alter_reassignments(
    ctx: Context,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    if ctx.cluster_authorized(Operation::Alter) {
        return reassignments::alter(ctx, req).await;
    }
    let (code, message) = refused();
    let responses = req
        .topics
        .iter()
        .map(|t| {
            ReassignableTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            ReassignablePartitionResponse::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                                .with_error_message(message.clone())
                        })
                        .collect(),
                )
        })
        .collect();
    AlterPartitionReassignmentsResponse::default()
        .with_error_code(code)
        .with_error_message(message)
        .with_responses(responses)
}

pub(super) fn list_reassignments(
    ctx: &Context,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    if !ctx.cluster_authorized(Operation::Describe) {
        let (code, message) = refused();
        return ListPartitionReassignmentsResponse::default()
            .with_error_code(code)
            .with_error_message(message);
    }
    reassignments::list(ctx, req)
}
