//! Fetch: whole batches from each partition, bounded by `max_bytes` (KIP-74: the first batch
//! always comes), long-polling up to `max_wait_ms` until `min_bytes` are available, woken by
//! appends. Sessionless: every response carries session id 0, which tells KIP-227 clients that
//! no session was created, so they keep sending full fetch requests.
//!
//! Consumers read from the partition leader up to the high watermark. A follower's fetch
//! (replica id >= 0) reads up to the log end, and its fetch offset tells the leader how far
//! the follower's log reaches, which moves the high watermark. So a fetch is a follower's only
//! from an assigned replica naming its current broker epoch (Fetch v15+ ReplicaState,
//! KIP-903); others get NOT_LEADER_OR_FOLLOWER.
//!
//! From v12 a fetcher may say which leader epoch its last record had; if this log ended that
//! epoch before the fetch offset, the answer is the diverging epoch instead of records
//! (KIP-320), so the fetcher truncates rather than reading past the divergence.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{
    EpochEndOffset, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ResponseKind, TopicName};
use sluice_storage::{LeaderEpoch, Log, Offset, ReadOptions, TopicPartition};
use uuid::Uuid;

use super::registry::{Operation, Resource};
use super::{Context, Reply};
use crate::clock::now_ms;
use crate::delayed;
use crate::error::BrokerError;
use crate::error_map;
use crate::replica_manager::{FollowerFetch, Partition};

/// Isolation level READ_COMMITTED.
const READ_COMMITTED: i8 = 1;

struct PlannedPartition {
    index: i32,
    fetch_offset: i64,
    max_bytes: i32,
    /// Epoch of the last record the fetcher holds (Fetch v12+), or -1.
    last_fetched_epoch: i32,
    part: Result<Arc<Partition>, i16>,
}

struct PlannedTopic {
    name: Option<TopicName>,
    id: Uuid,
    partitions: Vec<PlannedPartition>,
}

struct Plan {
    topics: Vec<PlannedTopic>,
    max_bytes: usize,
    min_bytes: usize,
    read_committed: bool,
    /// A follower's fetch reads up to the log end, not the high watermark.
    from_follower: bool,
    /// Told of disk failures met reading.
    rm: Arc<crate::replica_manager::ReplicaManager>,
}

fn plan(ctx: &Context, req: &FetchRequest) -> Plan {
    // From v15 a follower names itself and its broker epoch in ReplicaState (KIP-903);
    // before, only its id. A fetch without an epoch is refused as a follower's.
    let (replica_id, broker_epoch) = if ctx.version >= 15 {
        (
            req.replica_state.replica_id.0,
            req.replica_state.replica_epoch,
        )
    } else {
        (req.replica_id.0, -1)
    };
    let from_follower = replica_id >= 0;
    let node = ctx.rm.node_id();
    let now = now_ms();
    let registered_epoch = from_follower
        .then(|| {
            ctx.cluster
                .image()
                .brokers
                .get(&replica_id)
                .map(|b| b.epoch)
        })
        .flatten();
    // A follower reads as a broker (CLUSTER_ACTION on the cluster), a consumer needs READ on
    // each topic; either refusal is TOPIC_AUTHORIZATION_FAILED per partition, as in Kafka.
    let image = ctx.cluster.image();
    let follower_allowed = from_follower && ctx.cluster_authorized(Operation::ClusterAction);
    let readable = |name: &str| {
        if from_follower {
            follower_allowed
        } else {
            ctx.authorized_in(&image, Resource::Topic, name, Operation::Read)
        }
    };
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let topic = if ctx.version >= 13 {
                ctx.rm.topic_by_id(t.topic_id)
            } else {
                ctx.rm.topic(t.topic.as_str())
            };
            // By name, the refusal comes before existence; by id, an unknown id is answered
            // first (there is no name to authorize).
            let allowed = match &topic {
                Some(topic) => readable(&topic.meta.name),
                None if ctx.version >= 13 => true,
                None => readable(t.topic.as_str()),
            };
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let part = match &topic {
                        _ if !allowed => {
                            Err(error_map::code(&BrokerError::TopicAuthorizationFailed))
                        }
                        None if ctx.version >= 13 => {
                            Err(error_map::code(&BrokerError::UnknownTopicId))
                        }
                        None => Err(error_map::code(&BrokerError::UnknownTopicOrPartition)),
                        Some(topic) => {
                            let tp = TopicPartition::new(topic.meta.name.clone(), p.partition);
                            let checked = ctx.rm.partition(&tp).and_then(|part| {
                                if from_follower {
                                    let fetch = FollowerFetch {
                                        replica: replica_id,
                                        broker_epoch,
                                        fetch_offset: Offset(p.fetch_offset),
                                        log_start_offset: Offset(p.log_start_offset),
                                        current_leader_epoch: p.current_leader_epoch,
                                    };
                                    part.on_follower_fetch(node, &fetch, registered_epoch, now)?;
                                } else {
                                    part.leader_epoch_for(node, p.current_leader_epoch)?;
                                }
                                Ok(part)
                            });
                            checked.map_err(|e| error_map::code(&e))
                        }
                    };
                    PlannedPartition {
                        index: p.partition,
                        fetch_offset: p.fetch_offset,
                        max_bytes: p.partition_max_bytes,
                        last_fetched_epoch: if ctx.version >= 12 {
                            p.last_fetched_epoch
                        } else {
                            -1
                        },
                        part,
                    }
                })
                .collect();
            PlannedTopic {
                name: Some(t.topic.clone()),
                id: t.topic_id,
                partitions,
            }
        })
        .collect();
    Plan {
        topics,
        max_bytes: req.max_bytes.max(0) as usize,
        min_bytes: req.min_bytes.max(0) as usize,
        read_committed: req.isolation_level == READ_COMMITTED,
        from_follower,
        rm: Arc::clone(&ctx.rm),
    }
}

/// Reads every planned partition once; returns the response and its record bytes.
fn read(plan: &Plan) -> (FetchResponse, usize) {
    let mut remaining = plan.max_bytes;
    let mut total = 0usize;
    let mut responses = Vec::with_capacity(plan.topics.len());
    for t in &plan.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for planned in &t.partitions {
            let mut pd = PartitionData::default()
                .with_partition_index(planned.index)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1);
            if plan.read_committed {
                pd.aborted_transactions = Some(Vec::new());
            }
            let part = match &planned.part {
                Ok(part) => part,
                Err(code) => {
                    partitions.push(pd.with_error_code(*code));
                    continue;
                }
            };
            let o = part.log.offsets();
            pd = pd
                .with_high_watermark(o.high_watermark.0)
                .with_last_stable_offset(o.last_stable.0)
                .with_log_start_offset(o.log_start.0);
            match diverging_epoch(&part.log, planned.last_fetched_epoch, planned.fetch_offset) {
                Ok(None) => {}
                Ok(Some(diverging)) => {
                    partitions.push(
                        pd.with_diverging_epoch(diverging)
                            .with_records(Some(Bytes::new())),
                    );
                    continue;
                }
                Err(e) => {
                    partitions.push(
                        pd.with_error_code(error_map::code(&e))
                            .with_records(Some(Bytes::new())),
                    );
                    continue;
                }
            }
            let max_offset = if plan.from_follower {
                o.log_end
            } else if plan.read_committed {
                o.last_stable
            } else {
                o.high_watermark
            };
            let opts = ReadOptions {
                from: Offset(planned.fetch_offset),
                max_bytes: (planned.max_bytes.max(0) as usize).min(remaining),
                max_offset: Some(max_offset),
                min_one_batch: total == 0,
            };
            match part.log.read(&opts) {
                Ok(data) => {
                    total += data.records.len();
                    remaining = remaining.saturating_sub(data.records.len());
                    pd = pd.with_records(Some(data.records));
                }
                Err(e) => {
                    plan.rm.storage_error(&e);
                    let e = crate::error::BrokerError::from(e);
                    pd = pd
                        .with_error_code(error_map::code(&e))
                        .with_records(Some(Bytes::new()));
                }
            }
            partitions.push(pd);
        }
        let mut tr = FetchableTopicResponse::default()
            .with_topic_id(t.id)
            .with_partitions(partitions);
        if let Some(name) = &t.name {
            tr = tr.with_topic(name.clone());
        }
        responses.push(tr);
    }
    (
        FetchResponse::default()
            .with_session_id(0)
            .with_responses(responses),
        total,
    )
}

/// KIP-320 (Fetch v12+): when the epoch of the fetcher's last record ended in this log before
/// the fetch offset, or is one this log never had, the fetcher holds records this log does
/// not. It gets no records but the epoch and end offset to truncate to, as Kafka's
/// `Partition.fetchRecords` answers. An epoch newer than any this log has cannot be placed:
/// OFFSET_OUT_OF_RANGE, as in Kafka.
fn diverging_epoch(
    log: &Log,
    last_fetched_epoch: i32,
    fetch_offset: i64,
) -> Result<Option<EpochEndOffset>, BrokerError> {
    if last_fetched_epoch < 0 {
        return Ok(None);
    }
    let (epoch, end) = log
        .end_offset_for_epoch(LeaderEpoch(last_fetched_epoch))
        .ok_or_else(|| {
            BrokerError::OffsetOutOfRange(format!(
                "no leader epoch {last_fetched_epoch} or older in this log"
            ))
        })?;
    Ok(
        (epoch.0 < last_fetched_epoch || end.0 < fetch_offset).then(|| {
            EpochEndOffset::default()
                .with_epoch(epoch.0)
                .with_end_offset(end.0)
        }),
    )
}

pub(super) fn handle(ctx: Context, req: FetchRequest) -> Reply {
    let plan = plan(&ctx, &req);
    let (resp, bytes) = read(&plan);
    // Errors and divergence are answered at once: waiting would not change them.
    let answer_now = resp
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .any(|p| p.error_code != 0 || p.diverging_epoch.epoch >= 0);
    if bytes >= plan.min_bytes || req.max_wait_ms <= 0 || answer_now {
        return Reply::now(ResponseKind::Fetch(resp));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms as u64);
    Reply::Later(Box::pin(async move {
        let parts: Vec<Arc<Partition>> = plan
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().filter_map(|p| p.part.clone().ok()))
            .collect();
        // Enough bytes, or whatever there is at the deadline.
        let filled = delayed::wait_on(&parts, deadline, || {
            let (resp, bytes) = read(&plan);
            (bytes >= plan.min_bytes).then_some(resp)
        })
        .await;
        ResponseKind::Fetch(filled.unwrap_or_else(|| read(&plan).0))
    }))
}
