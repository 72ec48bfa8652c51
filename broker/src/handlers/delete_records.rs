//! DeleteRecords: move each partition's log start offset up (-1 = to the high watermark), then
//! answer once every live replica has moved its own there (the low watermark), or with
//! REQUEST_TIMED_OUT when the request's timeout passes first, as Kafka's DelayedDeleteRecords.
//! Followers learn the new log start from their next fetch and report theirs in the one after.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use sluice_storage::{Offset, TopicPartition};
use tokio::time::Instant;

use super::registry::{Operation, Resource};
use super::Context;
use crate::delayed;
use crate::error::BrokerError;
use crate::error_map;
use crate::replica_manager::Partition;

/// One partition of the request: waiting for the low watermark to reach a log start, or done.
enum State {
    Waiting(Arc<Partition>, i64),
    Done(Result<i64, i16>),
}

pub(super) async fn handle(ctx: Context, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut topics: Vec<(_, Vec<(i32, State)>)> = req
        .topics
        .into_iter()
        .map(|t| {
            // DELETE on the topic, checked before existence, as Kafka does.
            let allowed = ctx.authorized(Resource::Topic, t.name.as_str(), Operation::Delete);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let tp = TopicPartition::new(t.name.as_str(), p.partition_index);
                    if !allowed {
                        let e = BrokerError::TopicAuthorizationFailed;
                        return (p.partition_index, State::Done(Err(error_map::code(&e))));
                    }
                    let state = ctx
                        .rm
                        .leader_partition(&tp, -1)
                        .and_then(|(part, _)| {
                            let target = if p.offset == -1 {
                                part.log.offsets().high_watermark
                            } else {
                                Offset(p.offset)
                            };
                            let start = part.log.delete_records_before(target)?;
                            Ok(State::Waiting(part, start.0))
                        })
                        .unwrap_or_else(|e: BrokerError| State::Done(Err(error_map::code(&e))));
                    (p.partition_index, state)
                })
                .collect();
            (t.name, partitions)
        })
        .collect();

    let node = ctx.rm.node_id();
    let deadline = Instant::now() + Duration::from_millis(req.timeout_ms.max(0) as u64);
    let waiting_on: Vec<Arc<Partition>> = topics
        .iter()
        .flat_map(|(_, ps)| ps.iter())
        .filter_map(|(_, state)| match state {
            State::Waiting(part, _) => Some(Arc::clone(part)),
            State::Done(_) => None,
        })
        .collect();
    // Woken when a follower reports a new log start, a leadership moves or the image changes
    // (a fenced follower no longer counts).
    delayed::wait_on(&waiting_on, deadline, || {
        let image = ctx.cluster.image();
        let alive = |id: i32| image.brokers.get(&id).is_some_and(|b| !b.fenced);
        let mut waiting = false;
        for (_, partitions) in &mut topics {
            for (_, state) in partitions.iter_mut() {
                let State::Waiting(part, start) = state else {
                    continue;
                };
                match part.low_watermark(node, alive) {
                    None => {
                        *state =
                            State::Done(Err(error_map::code(&BrokerError::NotLeaderOrFollower)));
                    }
                    Some(low) if low >= Offset(*start) => *state = State::Done(Ok(low.0)),
                    Some(_) => waiting = true,
                }
            }
        }
        (!waiting).then_some(())
    })
    .await;

    let topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(index, state)| {
                    let r = DeleteRecordsPartitionResult::default()
                        .with_partition_index(index)
                        .with_low_watermark(-1);
                    match state {
                        State::Done(Ok(low)) => r.with_low_watermark(low),
                        State::Done(Err(code)) => r.with_error_code(code),
                        State::Waiting(..) => {
                            let e = BrokerError::TimedOut(
                                "followers did not reach the new log start in time".into(),
                            );
                            r.with_error_code(error_map::code(&e))
                        }
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
