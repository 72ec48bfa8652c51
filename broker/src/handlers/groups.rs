//! Consumer-group APIs: thin adapters between the protocol and `GroupCoordinator`.
//!
//! One file for the eleven group APIs because each adapter is a few lines of field mapping;
//! every rule lives in `group/`. Requests that may write to `__consumer_offsets` answer
//! later: the coordinator waits until the ISR has the records.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{delete_groups_response, *};
use sluice_replication::controller::ControllerError;
use sluice_storage::TopicPartition;

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::protocol::StrBytes;

use super::{str_bytes, Context, Reply};
use crate::error::BrokerError;
use crate::group::state::JoinResult;
use crate::group::GroupCoordinator;
use crate::group::{
    CommitParams, FetchedOffset, GroupError, JoinParams, SyncParams, OFFSETS_TOPIC,
};

/// FindCoordinator key types.
const KEY_GROUP: i8 = 0;

pub(super) async fn find_coordinator(
    ctx: Context,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let keys: Vec<StrBytes> = if ctx.version >= 4 {
        req.coordinator_keys.clone()
    } else {
        vec![req.key.clone()]
    };
    let mut found = Vec::with_capacity(keys.len());
    for key in keys {
        let answer = if req.key_type == KEY_GROUP {
            coordinator_of(&ctx, key.as_str()).await
        } else {
            // Transaction coordinators do not exist yet.
            Err(GroupError::CoordinatorNotAvailable)
        };
        found.push((key, answer));
    }
    if ctx.version >= 4 {
        let coordinators = found
            .into_iter()
            .map(|(key, answer)| {
                let c = Coordinator::default().with_key(key);
                match answer {
                    Ok((node, host, port)) => c
                        .with_node_id(BrokerId(node))
                        .with_host(str_bytes(host))
                        .with_port(port),
                    Err(e) => c
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(e.code()),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let answer = found
        .pop()
        .map_or(Err(GroupError::CoordinatorNotAvailable), |(_, a)| a);
    match answer {
        Ok((node, host, port)) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(node))
            .with_host(str_bytes(host))
            .with_port(port),
        Err(e) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(-1))
            .with_port(-1)
            .with_error_code(e.code()),
    }
}

/// The broker leading the group's `__consumer_offsets` partition; creates the topic on
/// first use, as Kafka does.
async fn coordinator_of(ctx: &Context, group: &str) -> Result<(i32, String, i32), GroupError> {
    if ctx.rm.topic(OFFSETS_TOPIC).is_none() {
        let cfg = ctx.groups.config();
        let rf = ctx.rm.config().cluster.offsets_rf();
        let configs = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("segment.bytes".to_string(), "104857600".to_string()),
        ]);
        match ctx
            .cluster
            .create_topic(
                &ctx.rm,
                OFFSETS_TOPIC,
                cfg.offsets_partitions,
                rf,
                configs,
                Vec::new(),
            )
            .await
        {
            Ok(_) => {}
            Err(BrokerError::Controller(ControllerError::TopicAlreadyExists(_))) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot create {OFFSETS_TOPIC}");
                return Err(GroupError::CoordinatorNotAvailable);
            }
        }
    }
    let image = ctx.cluster.image();
    let p = ctx.groups.partition_of(group);
    let leader = image
        .topic_by_name(OFFSETS_TOPIC)
        .and_then(|t| t.partitions.get(p as usize))
        .map(|p| p.leader)
        .filter(|l| *l >= 0)
        .ok_or(GroupError::CoordinatorNotAvailable)?;
    let e = image
        .brokers
        .get(&leader)
        .filter(|b| !b.fenced)
        .and_then(|b| super::endpoint(b, ctx.session.listener))
        .ok_or(GroupError::CoordinatorNotAvailable)?;
    Ok((leader, e.host.clone(), e.port as i32))
}

pub(super) fn join(ctx: &Context, req: JoinGroupRequest) -> Reply {
    let params = JoinParams {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: ctx.client_id.clone().unwrap_or_default(),
        client_host: ctx.session.client_host.clone(),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if ctx.version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: ctx.version >= 4,
    };
    let to_response = |r: JoinResult| {
        let members = r
            .members
            .into_iter()
            .map(|(id, inst, md)| {
                JoinGroupResponseMember::default()
                    .with_member_id(str_bytes(id))
                    .with_group_instance_id(inst.map(str_bytes))
                    .with_metadata(md)
            })
            .collect();
        ResponseKind::JoinGroup(
            JoinGroupResponse::default()
                .with_error_code(r.error)
                .with_generation_id(r.generation)
                .with_protocol_type(r.protocol_type.map(str_bytes))
                .with_protocol_name(r.protocol_name.map(str_bytes))
                .with_leader(str_bytes(r.leader))
                .with_member_id(str_bytes(r.member_id))
                .with_members(members),
        )
    };
    let groups = Arc::clone(&ctx.groups);
    Reply::Later(Box::pin(
        async move { to_response(groups.join(params).await) },
    ))
}

pub(super) fn sync(ctx: &Context, req: SyncGroupRequest) -> Reply {
    let params = SyncParams {
        group_id: req.group_id.to_string(),
        generation: req.generation_id,
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let (protocol_type, protocol_name) = (req.protocol_type, req.protocol_name);
    let groups = Arc::clone(&ctx.groups);
    Reply::Later(Box::pin(async move {
        let (error, assignment) = groups.sync(params).await;
        ResponseKind::SyncGroup(
            SyncGroupResponse::default()
                .with_error_code(error)
                .with_assignment(assignment)
                .with_protocol_type(protocol_type)
                .with_protocol_name(protocol_name),
        )
    }))
}

pub(super) fn heartbeat(ctx: &Context, req: HeartbeatRequest) -> HeartbeatResponse {
    HeartbeatResponse::default().with_error_code(ctx.groups.heartbeat(
        req.group_id.as_str(),
        req.generation_id,
        req.member_id.as_str(),
        req.group_instance_id.as_deref(),
    ))
}

pub(super) fn leave(ctx: &Context, req: LeaveGroupRequest) -> Reply {
    let members: Vec<(String, Option<String>)> = if ctx.version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let (groups, version) = (Arc::clone(&ctx.groups), ctx.version);
    Reply::Later(Box::pin(async move {
        let resp = match groups.leave(req.group_id.as_str(), &members).await {
            // v3+: the group's error at the top level, as Kafka answers, where clients look
            // for NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS.
            Err(code) => LeaveGroupResponse::default().with_error_code(code),
            Ok(codes) if version >= 3 => {
                let resp = members
                    .into_iter()
                    .zip(&codes)
                    .map(|((id, inst), code)| {
                        MemberResponse::default()
                            .with_member_id(str_bytes(id))
                            .with_group_instance_id(inst.map(str_bytes))
                            .with_error_code(*code)
                    })
                    .collect();
                LeaveGroupResponse::default().with_members(resp)
            }
            Ok(codes) => {
                LeaveGroupResponse::default().with_error_code(codes.first().copied().unwrap_or(0))
            }
        };
        ResponseKind::LeaveGroup(resp)
    }))
}

pub(super) fn offset_commit(ctx: &Context, req: OffsetCommitRequest) -> Reply {
    let mut offsets = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            offsets.push((
                TopicPartition::new(t.name.as_str(), p.partition_index),
                p.committed_offset,
                p.committed_leader_epoch,
                p.committed_metadata.as_ref().map(|m| m.to_string()),
            ));
        }
    }
    let params = CommitParams {
        group_id: req.group_id.to_string(),
        generation: req.generation_id_or_member_epoch,
        member_id: req.member_id.to_string(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        offsets,
    };
    let groups = Arc::clone(&ctx.groups);
    Reply::Later(Box::pin(async move {
        let results = groups.commit(params).await;
        ResponseKind::OffsetCommit(commit_response(&req, &results))
    }))
}

fn commit_response(
    req: &OffsetCommitRequest,
    results: &[(TopicPartition, i16)],
) -> OffsetCommitResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let partitions = results
                .iter()
                .filter(|(tp, _)| tp.topic == t.name.as_str())
                .map(|(tp, code)| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(tp.partition)
                        .with_error_code(*code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

fn group_by_topic(offsets: Vec<FetchedOffset>) -> Vec<(String, Vec<FetchedOffset>)> {
    let mut out: Vec<(String, Vec<FetchedOffset>)> = Vec::new();
    for o in offsets {
        match out.iter_mut().find(|(t, _)| *t == o.0.topic) {
            Some((_, v)) => v.push(o),
            None => out.push((o.0.topic.clone(), vec![o])),
        }
    }
    out
}

pub(super) fn offset_fetch(ctx: &Context, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let wanted = |topics: Option<Vec<(String, Vec<i32>)>>| {
        topics.map(|ts| {
            ts.into_iter()
                .flat_map(|(t, ps)| {
                    ps.into_iter()
                        .map(move |p| TopicPartition::new(t.clone(), p))
                })
                .collect::<Vec<_>>()
        })
    };
    if ctx.version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                let topics = wanted(g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.to_string(), t.partition_indexes))
                        .collect()
                }));
                let fetched = match ctx.groups.fetch_offsets(g.group_id.as_str(), topics) {
                    Ok(f) => f,
                    Err(code) => {
                        return OffsetFetchResponseGroup::default()
                            .with_group_id(g.group_id)
                            .with_error_code(code)
                    }
                };
                let topics = group_by_topic(fetched)
                    .into_iter()
                    .map(|(t, os)| {
                        let ps = os
                            .into_iter()
                            .map(|(tp, o, e, m)| {
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(tp.partition)
                                    .with_committed_offset(o)
                                    .with_committed_leader_epoch(e)
                                    .with_metadata(m.map(str_bytes))
                            })
                            .collect();
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(str_bytes(t)))
                            .with_partitions(ps)
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = wanted(req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.to_string(), t.partition_indexes))
            .collect()
    }));
    let (fetched, error) = match ctx
        .groups
        .fetch_offsets(req.group_id.as_str(), topics.clone())
    {
        Ok(f) => (f, 0),
        // The group-level error field exists from v2. v0-1 carry it on every requested
        // partition (Kafka's OffsetFetchRequest.getErrorResponse); an empty answer would read
        // as "nothing committed" to kafka-python and aiokafka, which would then reset to
        // auto.offset.reset during a coordinator move or load (issue 22 item 2).
        Err(code) if ctx.version < 2 => {
            let requested = topics.unwrap_or_default().into_iter();
            (
                requested
                    .map(|tp| (tp, -1, -1, Some(String::new())))
                    .collect(),
                code,
            )
        }
        Err(code) => return OffsetFetchResponse::default().with_error_code(code),
    };
    let topics = group_by_topic(fetched)
        .into_iter()
        .map(|(t, os)| {
            let ps = os
                .into_iter()
                .map(|(tp, o, e, m)| {
                    let p = OffsetFetchResponsePartition::default()
                        .with_partition_index(tp.partition)
                        .with_committed_offset(o)
                        .with_metadata(m.map(str_bytes))
                        .with_error_code(error);
                    if ctx.version >= 5 {
                        p.with_committed_leader_epoch(e)
                    } else {
                        p
                    }
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(str_bytes(t)))
                .with_partitions(ps)
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

pub(super) fn list_groups(ctx: &Context, req: ListGroupsRequest) -> ListGroupsResponse {
    let groups = ctx
        .groups
        .list()
        .into_iter()
        .filter(|(_, _, state)| {
            req.states_filter.is_empty()
                || req
                    .states_filter
                    .iter()
                    .any(|s| s.as_str().eq_ignore_ascii_case(state))
        })
        .filter(|_| {
            req.types_filter.is_empty()
                || req
                    .types_filter
                    .iter()
                    .any(|t| t.as_str().eq_ignore_ascii_case("classic"))
        })
        .map(|(id, pt, state)| {
            let g = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(id)))
                .with_protocol_type(str_bytes(pt));
            let g = if ctx.version >= 4 {
                g.with_group_state(str_bytes(state))
            } else {
                g
            };
            if ctx.version >= 5 {
                g.with_group_type(str_bytes("classic"))
            } else {
                g
            }
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub(super) fn describe_groups(ctx: &Context, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let groups = req
        .groups
        .into_iter()
        .map(|id| match ctx.groups.describe(id.as_str()) {
            Err(code) => DescribedGroup::default()
                .with_group_id(id)
                .with_error_code(code),
            Ok(Some(d)) => {
                let members = d
                    .members
                    .into_iter()
                    .map(|(mid, inst, client, host, md, assignment)| {
                        DescribedGroupMember::default()
                            .with_member_id(str_bytes(mid))
                            .with_group_instance_id(if ctx.version >= 4 {
                                inst.map(str_bytes)
                            } else {
                                None
                            })
                            .with_client_id(str_bytes(client))
                            .with_client_host(str_bytes(host))
                            .with_member_metadata(md)
                            .with_member_assignment(assignment)
                    })
                    .collect();
                DescribedGroup::default()
                    .with_group_id(id)
                    .with_group_state(str_bytes(d.state))
                    .with_protocol_type(str_bytes(d.protocol_type))
                    .with_protocol_data(str_bytes(d.protocol))
                    .with_members(members)
            }
            // Kafka describes an unknown group as Dead with no members.
            Ok(None) => DescribedGroup::default()
                .with_group_id(id)
                .with_group_state(str_bytes("Dead")),
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub(super) fn delete_groups(ctx: &Context, req: DeleteGroupsRequest) -> Reply {
    let groups = Arc::clone(&ctx.groups);
    Reply::Later(Box::pin(async move {
        let mut results = Vec::with_capacity(req.groups_names.len());
        for g in req.groups_names {
            results.push(
                delete_groups_response::DeletableGroupResult::default()
                    .with_error_code(groups.delete(g.as_str()).await)
                    .with_group_id(g),
            );
        }
        ResponseKind::DeleteGroups(DeleteGroupsResponse::default().with_results(results))
    }))
}

pub(super) fn offset_delete(ctx: &Context, req: OffsetDeleteRequest) -> Reply {
    let groups = Arc::clone(&ctx.groups);
    Reply::Later(Box::pin(async move {
        ResponseKind::OffsetDelete(offset_delete_response(&groups, req).await)
    }))
}

async fn offset_delete_response(
    groups: &GroupCoordinator,
    req: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let tps = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| TopicPartition::new(t.name.as_str(), p.partition_index))
        })
        .collect();
    let (code, results) = groups.delete_offsets(req.group_id.as_str(), tps).await;
    let topics = group_by_topic(
        results
            .into_iter()
            .map(|(tp, c)| (tp, c as i64, 0, None))
            .collect(),
    )
    .into_iter()
    .map(|(t, rs)| {
        OffsetDeleteResponseTopic::default()
            .with_name(TopicName(str_bytes(t)))
            .with_partitions(
                rs.into_iter()
                    .map(|(tp, c, _, _)| {
                        OffsetDeleteResponsePartition::default()
                            .with_partition_index(tp.partition)
                            .with_error_code(c as i16)
                    })
                    .collect(),
            )
    })
    .collect();
    OffsetDeleteResponse::default()
        .with_error_code(code)
        .with_topics(topics)
}
