//! The API registry: which APIs and versions Sluice serves, and the dispatch to one handler
//! module per API. `ApiVersions` is generated from the same table (intersected with what the
//! protocol crate speaks), so it can never advertise an API that is not routed here.

mod alter_configs;
mod api_versions;
mod create_partitions;
mod create_topics;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod describe_log_dirs;
mod elect_leaders;
mod fetch;
mod groups;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod offset_for_leader_epoch;
mod produce;
mod reassignments;

use std::sync::Arc;

use futures::future::BoxFuture;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use sluice_replication::image::Broker;
use sluice_replication::record::Endpoint;

use crate::replica_manager::ReplicaManager;

pub use api_versions::unsupported_version_response;

/// What a handler answers.
pub enum Reply {
    /// A response, ready now. Boxed: responses are large and most replies are this variant.
    Now(Box<ResponseKind>),
    /// A response that needs waiting (long-poll fetch); resolved off the connection's task.
    Later(BoxFuture<'static, ResponseKind>),
    /// No response at all (produce with acks=0).
    Nothing,
}

impl Reply {
    /// A response ready now.
    pub fn now(r: ResponseKind) -> Reply {
        Reply::Now(Box::new(r))
    }
}

/// Everything a handler may use.
#[derive(Clone)]
pub struct Context {
    /// Partitions and topics.
    pub rm: Arc<ReplicaManager>,
    /// The listener the request came in on: Metadata answers with its addresses.
    pub listener: &'static str,
    /// API version of the request being handled.
    pub version: i16,
    /// The client's id from the request header.
    pub client_id: Option<String>,
    /// The group coordinator.
    pub groups: Arc<crate::group::GroupCoordinator>,
    /// The cluster: metadata image and controller.
    pub cluster: Arc<crate::cluster::Cluster>,
    /// The client's address, as DescribeGroups reports it.
    pub peer: String,
}

/// (API, lowest, highest version) served. Lower bounds are the protocol crate's; upper bounds
/// are what the handlers implement and the tests exercise.
pub const APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 16),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 0),
    (ApiKey::ListPartitionReassignments, 0, 0),
];

/// The served version range of `key`, if served at all.
pub fn versions(key: ApiKey) -> Option<(i16, i16)> {
    let valid = key.valid_versions();
    APIS.iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, lo, hi)| ((*lo).max(valid.min), (*hi).min(valid.max)))
        .filter(|(lo, hi)| lo <= hi)
}

/// Routes a decoded request to its handler.
pub fn dispatch(ctx: Context, req: RequestKind) -> Reply {
    match req {
        RequestKind::ApiVersions(r) => {
            Reply::now(ResponseKind::ApiVersions(api_versions::handle(&ctx, r)))
        }
        RequestKind::Metadata(r) => metadata::handle(ctx, r),
        RequestKind::Produce(r) => produce::handle(ctx, r),
        RequestKind::ElectLeaders(r) => {
            later(async move { ResponseKind::ElectLeaders(elect_leaders::handle(ctx, r).await) })
        }
        RequestKind::AlterPartitionReassignments(r) => later(async move {
            ResponseKind::AlterPartitionReassignments(reassignments::alter(ctx, r).await)
        }),
        RequestKind::ListPartitionReassignments(r) => Reply::now(
            ResponseKind::ListPartitionReassignments(reassignments::list(&ctx, r)),
        ),
        RequestKind::OffsetForLeaderEpoch(r) => Reply::now(ResponseKind::OffsetForLeaderEpoch(
            offset_for_leader_epoch::handle(&ctx, r),
        )),
        RequestKind::Fetch(r) => fetch::handle(ctx, r),
        RequestKind::ListOffsets(r) => {
            Reply::now(ResponseKind::ListOffsets(list_offsets::handle(&ctx, r)))
        }
        RequestKind::CreateTopics(r) => {
            later(async move { ResponseKind::CreateTopics(create_topics::handle(ctx, r).await) })
        }
        RequestKind::DeleteTopics(r) => {
            later(async move { ResponseKind::DeleteTopics(delete_topics::handle(ctx, r).await) })
        }
        RequestKind::InitProducerId(r) => {
            later(
                async move { ResponseKind::InitProducerId(init_producer_id::handle(ctx, r).await) },
            )
        }
        RequestKind::CreatePartitions(r) => {
            later(
                async move { ResponseKind::CreatePartitions(create_partitions::handle(ctx, r).await) },
            )
        }
        RequestKind::DescribeConfigs(r) => Reply::now(ResponseKind::DescribeConfigs(
            describe_configs::handle(&ctx, r),
        )),
        RequestKind::AlterConfigs(r) => {
            later(async move { ResponseKind::AlterConfigs(alter_configs::handle(ctx, r).await) })
        }
        RequestKind::IncrementalAlterConfigs(r) => later(async move {
            ResponseKind::IncrementalAlterConfigs(alter_configs::handle_incremental(ctx, r).await)
        }),
        RequestKind::DescribeCluster(r) => Reply::now(ResponseKind::DescribeCluster(
            describe_cluster::handle(&ctx, r),
        )),
        RequestKind::DeleteRecords(r) => {
            later(async move { ResponseKind::DeleteRecords(delete_records::handle(ctx, r).await) })
        }
        RequestKind::DescribeLogDirs(r) => Reply::now(ResponseKind::DescribeLogDirs(
            describe_log_dirs::handle(&ctx, r),
        )),
        RequestKind::FindCoordinator(r) => {
            later(
                async move { ResponseKind::FindCoordinator(groups::find_coordinator(ctx, r).await) },
            )
        }
        RequestKind::JoinGroup(r) => groups::join(&ctx, r),
        RequestKind::SyncGroup(r) => groups::sync(&ctx, r),
        RequestKind::Heartbeat(r) => {
            Reply::now(ResponseKind::Heartbeat(groups::heartbeat(&ctx, r)))
        }
        RequestKind::LeaveGroup(r) => groups::leave(&ctx, r),
        RequestKind::OffsetCommit(r) => groups::offset_commit(&ctx, r),
        RequestKind::OffsetFetch(r) => {
            Reply::now(ResponseKind::OffsetFetch(groups::offset_fetch(&ctx, r)))
        }
        RequestKind::ListGroups(r) => {
            Reply::now(ResponseKind::ListGroups(groups::list_groups(&ctx, r)))
        }
        RequestKind::DescribeGroups(r) => Reply::now(ResponseKind::DescribeGroups(
            groups::describe_groups(&ctx, r),
        )),
        RequestKind::DeleteGroups(r) => groups::delete_groups(&ctx, r),
        RequestKind::OffsetDelete(r) => groups::offset_delete(&ctx, r),
        other => {
            // Unreachable through `Connection`, which only decodes APIs listed in `APIS`.
            tracing::error!(request = ?std::mem::discriminant(&other), "request for an API without a handler");
            Reply::Nothing
        }
    }
}

/// Every live broker's (id, host, port, rack) on `listener`, as Metadata and
/// DescribeCluster list them.
pub(crate) fn live_brokers(
    image: &sluice_replication::image::MetadataImage,
    listener: &str,
) -> Vec<(i32, String, i32, Option<String>)> {
    image
        .live_brokers()
        .filter_map(|b| {
            let e = endpoint(b, listener)?;
            Some((b.id, e.host.clone(), e.port as i32, b.rack.clone()))
        })
        .collect()
}

/// Broker `b`'s address on `listener` (its client address if it has none there).
pub(crate) fn endpoint<'a>(b: &'a Broker, listener: &str) -> Option<&'a Endpoint> {
    b.endpoints
        .iter()
        .find(|e| e.name == listener)
        .or(b.endpoints.first())
}

/// A reply that needs waiting (the controller, replication), resolved off the connection.
fn later(f: impl std::future::Future<Output = ResponseKind> + Send + 'static) -> Reply {
    Reply::Later(Box::pin(f))
}

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
