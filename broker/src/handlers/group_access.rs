//! Authorization of the consumer-group APIs, in front of their adapters in `groups`, as
//! Kafka's KafkaApis checks them: READ on the group to join, sync, heartbeat, leave and
//! commit; DESCRIBE on it to find its coordinator, describe it and fetch its offsets;
//! DELETE on it to delete it or its offsets; then, per topic, READ to commit or delete an
//! offset and DESCRIBE to see one. A refused group is answered GROUP_AUTHORIZATION_FAILED
//! before the coordinator is asked anything; refused topics are left out of the request
//! and answered TOPIC_AUTHORIZATION_FAILED.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::*;

use sluice_replication::acl::ResourceType;

use super::registry::{Operation, Resource};
use super::{groups, Context, Reply};
use crate::error::BrokerError;
use crate::error_map;
use crate::security::access::GROUP_OPERATIONS;

/// FindCoordinator key type of a transactional id.
const KEY_TRANSACTION: i8 = 1;

fn group_denied(ctx: &Context, group: &str, op: Operation) -> bool {
    !ctx.authorized(Resource::Group, group, op)
}

fn code(e: BrokerError) -> i16 {
    error_map::code(&e)
}

fn group_failed() -> i16 {
    code(BrokerError::GroupAuthorizationFailed)
}

fn topic_failed() -> i16 {
    code(BrokerError::TopicAuthorizationFailed)
}

pub(super) async fn find_coordinator(
    ctx: Context,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let keys: Vec<String> = if ctx.version >= 4 {
        req.coordinator_keys.iter().map(|k| k.to_string()).collect()
    } else {
        vec![req.key.to_string()]
    };
    let (resource, failed) = if req.key_type == KEY_TRANSACTION {
        (
            Resource::TransactionalId,
            ResponseError::TransactionalIdAuthorizationFailed.code(),
        )
    } else {
        (Resource::Group, group_failed())
    };
    let denied: Vec<&String> = keys
        .iter()
        .filter(|k| !ctx.authorized(resource, k, Operation::Describe))
        .collect();
    if denied.is_empty() {
        return groups::find_coordinator(ctx, req).await;
    }
    if ctx.version < 4 {
        return FindCoordinatorResponse::default()
            .with_node_id(BrokerId(-1))
            .with_port(-1)
            .with_error_code(failed);
    }
    let version = ctx.version;
    let allowed: Vec<_> = req
        .coordinator_keys
        .iter()
        .filter(|k| !denied.iter().any(|d| d.as_str() == k.as_str()))
        .cloned()
        .collect();
    let refused: Vec<Coordinator> = denied
        .iter()
        .map(|k| {
            Coordinator::default()
                .with_key(super::str_bytes(k.as_str()))
                .with_node_id(BrokerId(-1))
                .with_port(-1)
                .with_error_code(failed)
        })
        .collect();
    let mut resp = if allowed.is_empty() {
        FindCoordinatorResponse::default()
    } else {
        let req = req.with_coordinator_keys(allowed);
        groups::find_coordinator(ctx, req).await
    };
    debug_assert!(version >= 4);
    resp.coordinators.extend(refused);
    resp
}

pub(super) fn join(ctx: &Context, req: JoinGroupRequest) -> Reply {
    if group_denied(ctx, &req.group_id, Operation::Read) {
        return Reply::now(ResponseKind::JoinGroup(
            JoinGroupResponse::default()
                .with_error_code(group_failed())
                .with_generation_id(-1),
        ));
    }
    groups::join(ctx, req)
}

pub(super) fn sync(ctx: &Context, req: SyncGroupRequest) -> Reply {
    if group_denied(ctx, &req.group_id, Operation::Read) {
        return Reply::now(ResponseKind::SyncGroup(
            SyncGroupResponse::default().with_error_code(group_failed()),
        ));
    }
    groups::sync(ctx, req)
}

pub(super) fn heartbeat(ctx: &Context, req: HeartbeatRequest) -> HeartbeatResponse {
    if group_denied(ctx, &req.group_id, Operation::Read) {
        return HeartbeatResponse::default().with_error_code(group_failed());
    }
    groups::heartbeat(ctx, req)
}

pub(super) fn leave(ctx: &Context, req: LeaveGroupRequest) -> Reply {
    if group_denied(ctx, &req.group_id, Operation::Read) {
        return Reply::now(ResponseKind::LeaveGroup(
            LeaveGroupResponse::default().with_error_code(group_failed()),
        ));
    }
    groups::leave(ctx, req)
}

/// Each partition of `topics` answered `error`.
fn commit_errors(
    topics: &[offset_commit_request::OffsetCommitRequestTopic],
    error: i16,
) -> Vec<OffsetCommitResponseTopic> {
    topics
        .iter()
        .map(|t| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(error)
                        })
                        .collect(),
                )
        })
        .collect()
}

pub(super) fn offset_commit(ctx: &Context, mut req: OffsetCommitRequest) -> Reply {
    if group_denied(ctx, &req.group_id, Operation::Read) {
        return Reply::now(ResponseKind::OffsetCommit(
            OffsetCommitResponse::default().with_topics(commit_errors(&req.topics, group_failed())),
        ));
    }
    let (allowed, refused): (Vec<_>, Vec<_>) = std::mem::take(&mut req.topics)
        .into_iter()
        .partition(|t| ctx.authorized(Resource::Topic, &t.name, Operation::Read));
    let refused = commit_errors(&refused, topic_failed());
    if allowed.is_empty() {
        return Reply::now(ResponseKind::OffsetCommit(
            OffsetCommitResponse::default().with_topics(refused),
        ));
    }
    req.topics = allowed;
    with_refused(groups::offset_commit(ctx, req), move |r| {
        if let ResponseKind::OffsetCommit(resp) = r {
            resp.topics.extend(refused);
        }
    })
}

/// `reply` with `add` applied to its response once it is ready.
fn with_refused(reply: Reply, add: impl FnOnce(&mut ResponseKind) + Send + 'static) -> Reply {
    match reply {
        Reply::Now(mut r) => {
            add(&mut r);
            Reply::Now(r)
        }
        Reply::Later(f) => Reply::Later(Box::pin(async move {
            let mut r = f.await;
            add(&mut r);
            r
        })),
        other @ (Reply::Nothing | Reply::Refused(_)) => other,
    }
}

pub(super) fn offset_fetch(ctx: &Context, req: OffsetFetchRequest) -> OffsetFetchResponse {
    if ctx.version < 8 {
        if group_denied(ctx, &req.group_id, Operation::Describe) {
            return OffsetFetchResponse::default().with_error_code(group_failed());
        }
        let named = req.topics.is_some();
        let mut resp = groups::offset_fetch(ctx, req);
        // Named topics the session may not see are answered refused; of all topics, they are
        // left out. Either way no offset of theirs leaves the broker.
        resp.topics
            .retain(|t| named || ctx.authorized(Resource::Topic, &t.name, Operation::Describe));
        for t in &mut resp.topics {
            if !ctx.authorized(Resource::Topic, &t.name, Operation::Describe) {
                for p in &mut t.partitions {
                    p.committed_offset = -1;
                    p.committed_leader_epoch = -1;
                    p.metadata = Some(super::str_bytes(""));
                    p.error_code = topic_failed();
                }
            }
        }
        return resp;
    }
    let named: Vec<(String, bool)> = req
        .groups
        .iter()
        .map(|g| (g.group_id.to_string(), g.topics.is_some()))
        .collect();
    let mut resp = groups::offset_fetch(ctx, req);
    for g in &mut resp.groups {
        let is_named = named
            .iter()
            .any(|(id, n)| id.as_str() == g.group_id.as_str() && *n);
        if group_denied(ctx, &g.group_id, Operation::Describe) {
            g.topics.clear();
            g.error_code = group_failed();
            continue;
        }
        g.topics
            .retain(|t| is_named || ctx.authorized(Resource::Topic, &t.name, Operation::Describe));
        for t in &mut g.topics {
            if !ctx.authorized(Resource::Topic, &t.name, Operation::Describe) {
                for p in &mut t.partitions {
                    p.committed_offset = -1;
                    p.committed_leader_epoch = -1;
                    p.metadata = Some(super::str_bytes(""));
                    p.error_code = topic_failed();
                }
            }
        }
    }
    resp
}

pub(super) fn list_groups(ctx: &Context, req: ListGroupsRequest) -> ListGroupsResponse {
    let mut resp = groups::list_groups(ctx, req);
    // DESCRIBE on the cluster lists every group; without it, those the session may describe.
    if !ctx.cluster_authorized(Operation::Describe) {
        resp.groups
            .retain(|g| ctx.authorized(Resource::Group, &g.group_id, Operation::Describe));
    }
    resp
}

pub(super) fn describe_groups(
    ctx: &Context,
    mut req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let include_operations = req.include_authorized_operations;
    let (allowed, refused): (Vec<_>, Vec<_>) = std::mem::take(&mut req.groups)
        .into_iter()
        .partition(|g| ctx.authorized(Resource::Group, g, Operation::Describe));
    req.groups = allowed;
    let mut resp = if req.groups.is_empty() {
        DescribeGroupsResponse::default()
    } else {
        groups::describe_groups(ctx, req)
    };
    if include_operations {
        let image = ctx.cluster.image();
        for g in &mut resp.groups {
            g.authorized_operations = ctx.authorized_operations(
                &image,
                ResourceType::Group,
                &g.group_id,
                GROUP_OPERATIONS,
            );
        }
    }
    resp.groups.extend(refused.into_iter().map(|g| {
        describe_groups_response::DescribedGroup::default()
            .with_group_id(g)
            .with_error_code(group_failed())
    }));
    resp
}

pub(super) fn delete_groups(ctx: &Context, mut req: DeleteGroupsRequest) -> Reply {
    let (allowed, refused): (Vec<_>, Vec<_>) = std::mem::take(&mut req.groups_names)
        .into_iter()
        .partition(|g| ctx.authorized(Resource::Group, g, Operation::Delete));
    let refused: Vec<_> = refused
        .into_iter()
        .map(|g| {
            delete_groups_response::DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(group_failed())
        })
        .collect();
    if allowed.is_empty() {
        return Reply::now(ResponseKind::DeleteGroups(
            DeleteGroupsResponse::default().with_results(refused),
        ));
    }
    req.groups_names = allowed;
    with_refused(groups::delete_groups(ctx, req), move |r| {
        if let ResponseKind::DeleteGroups(resp) = r {
            resp.results.extend(refused);
        }
    })
}

pub(super) fn offset_delete(ctx: &Context, mut req: OffsetDeleteRequest) -> Reply {
    if group_denied(ctx, &req.group_id, Operation::Delete) {
        return Reply::now(ResponseKind::OffsetDelete(
            OffsetDeleteResponse::default().with_error_code(group_failed()),
        ));
    }
    let (allowed, refused): (Vec<_>, Vec<_>) = std::mem::take(&mut req.topics)
        .into_iter()
        .partition(|t| ctx.authorized(Resource::Topic, &t.name, Operation::Read));
    let refused: Vec<_> = refused
        .into_iter()
        .map(|t| {
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(topic_failed())
                        })
                        .collect(),
                )
        })
        .collect();
    req.topics = allowed;
    with_refused(groups::offset_delete(ctx, req), move |r| {
        if let ResponseKind::OffsetDelete(resp) = r {
            resp.topics.extend(refused);
        }
    })
}
